/**
 * Typed loader for the ambit_native Node-API addon (ambit_native.c).
 *
 * Everything here is synchronous and Linux-only. Errors are thrown as
 * `NativeError` (a plain Error with `code` = errno name such as
 * 'EADDRINUSE', `errno` = negative errno like Node's own system errors,
 * and `syscall`). Bad argument types throw TypeError.
 *
 * fd ownership:
 *  - fds handed to Node (`server.listen({ fd })`, `new net.Socket({ fd })`)
 *    are owned by Node from then on; Node closes them. Do not closeFd them.
 *  - every other fd returned here (netns fds, seqpacket fds, fds received
 *    via SCM_RIGHTS) must be closed with closeFd().
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';

export interface SockAddr {
  address: string;
  port: number;
  family: 4 | 6;
}

export interface ListenTcpOptions {
  /** fd of a network namespace (from openNetns); omitted = current netns */
  netnsFd?: number;
  /** numeric IPv4/IPv6 address; '::' is dual-stack (IPV6_V6ONLY=0) */
  host: string;
  port: number;
  /** default 511 */
  backlog?: number;
  /** SO_MARK */
  mark?: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT */
  transparent?: boolean;
  /** IP_FREEBIND / IPV6_FREEBIND */
  freebind?: boolean;
  reusePort?: boolean;
  /** default true */
  reuseAddr?: boolean;
  /** TCP_NODELAY, which accepted sockets inherit */
  noDelay?: boolean;
}

export interface SocketTcpOptions {
  netnsFd?: number;
  family: 4 | 6;
  mark?: number;
  transparent?: boolean;
  freebind?: boolean;
  reuseAddr?: boolean;
  /** bind before connect (e.g. a spoofed source with transparent: true) */
  bindAddress?: string;
  /** bind port (default 0 when bindAddress is given) */
  bindPort?: number;
}

export interface SeqpacketMessage {
  data: Buffer;
  /** fd received via SCM_RIGHTS (CLOEXEC); caller must closeFd() it */
  fd?: number;
  /** a zero-length read without an fd: the peer closed the connection */
  eof?: boolean;
}

export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

/** Opaque watcher handle from the addon. */
type WatchHandle = { readonly __watchHandle: unique symbol };

interface Addon {
  listenTcp(opts: ListenTcpOptions): number;
  socketTcp(opts: SocketTcpOptions): number;
  originalDst(fd: number): SockAddr;
  localAddress(fd: number): SockAddr;
  setMark(fd: number, mark: number): void;
  getMark(fd: number): number;
  getNoDelay(fd: number): boolean;
  openNetns(path: string): number;
  closeFd(fd: number): void;
  seqpacketListen(path: string, backlog?: number): number;
  seqpacketConnect(path: string): number;
  seqpacketAccept(fd: number): number;
  seqpacketSend(fd: number, data: Uint8Array, passFd?: number): void;
  seqpacketRecv(fd: number, maxLen?: number): SeqpacketMessage | null;
  watchFd(fd: number, events: number, cb: (status: number, events: number) => void): WatchHandle;
  unwatchFd(h: WatchHandle): void;
  refWatch(h: WatchHandle, ref: boolean): void;
}

function loadAddon(): Addon {
  const require = createRequire(import.meta.url);
  const candidates = [
    // compiled: dist/ztunnel/native/index.js -> <repo>/ztunnel/native/build/Release
    new URL('../../../ztunnel/native/build/Release/ambit_native.node', import.meta.url),
    // run from source: ztunnel/native/index.ts -> ./build/Release
    new URL('./build/Release/ambit_native.node', import.meta.url),
  ].map((u) => fileURLToPath(u));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `ambit native addon is not built (looked for ${candidates.join(', ')}); run npm run build:native`,
    );
  }
  return require(found) as Addon;
}

const addon: Addon = loadAddon();

/**
 * A TCP listening socket created in `netnsFd` (setns -> socket -> setns back,
 * then options, bind, listen). Non-blocking, CLOEXEC. Use with
 * `server.listen({ fd })`; `server.address()` works afterwards.
 */
export function listenTcp(opts: ListenTcpOptions): number {
  return addon.listenTcp(opts);
}

/**
 * An unconnected, non-blocking TCP socket created in `netnsFd` with options
 * set and optionally bound. Use with `new net.Socket({ fd }).connect(port, host)`.
 */
export function socketTcp(opts: SocketTcpOptions): number {
  return addon.socketTcp(opts);
}

export interface ConnectTcpOptions extends Omit<SocketTcpOptions, 'family'> {
  host: string;
  port: number;
  /** default: derived from host */
  family?: 4 | 6;
  allowHalfOpen?: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
}

/**
 * socketTcp() + `new net.Socket({ fd, manualStart: true })` + connect(), in
 * one synchronous step. Prefer this over wrapping the fd yourself:
 *
 * `new net.Socket({ fd })` on an unconnected fd starts reading at once; if
 * connect() is not called before the next event-loop poll, the read fails
 * with ENOTCONN and the socket is destroyed, and a later connect() then
 * silently creates a NEW socket in the current (root) netns. `manualStart`
 * (an internal but long-standing net.Socket option) defers the first read
 * until the connection is established.
 */
export function connectTcp(opts: ConnectTcpOptions, onConnect?: () => void): net.Socket {
  const { host, port, allowHalfOpen, noDelay, keepAlive, ...rest } = opts;
  const ipFamily = net.isIP(host);
  if (ipFamily === 0) throw new TypeError(`connectTcp: host must be an IP address, got ${host}`);
  const family = opts.family ?? (ipFamily as 4 | 6);
  const fd = socketTcp({ ...rest, family });
  let sock: net.Socket;
  try {
    sock = new net.Socket({
      fd,
      allowHalfOpen,
      noDelay,
      keepAlive,
      manualStart: true,
    } as net.SocketConstructorOpts);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return sock.connect({ host, port }, onConnect);
}

/** SO_ORIGINAL_DST (IPv4, incl. v4-mapped on dual-stack) / IP6T_SO_ORIGINAL_DST. */
export function originalDst(fd: number): SockAddr {
  return addon.originalDst(fd);
}

/** getsockname() of an IP socket (v4-mapped addresses are reported as IPv4). */
export function localAddress(fd: number): SockAddr {
  return addon.localAddress(fd);
}

export function setMark(fd: number, mark: number): void {
  addon.setMark(fd, mark);
}

export function getMark(fd: number): number {
  return addon.getMark(fd);
}

export function getNoDelay(fd: number): boolean {
  return addon.getNoDelay(fd);
}

/** open(path, O_RDONLY|O_CLOEXEC), e.g. /var/run/netns/<name> or /proc/<pid>/ns/net */
export function openNetns(path: string): number {
  return addon.openNetns(path);
}

export function closeFd(fd: number): void {
  addon.closeFd(fd);
}

/** Close a descriptor we own on a cleanup path, where a failure (already closed) has nothing left to undo. */
export function closeFdQuietly(fd: number): void {
  try {
    addon.closeFd(fd);
  } catch {}
}

/**
 * The kernel fd of a net.Socket / net.Server handle (libuv-owned: do not
 * close it yourself). Throws if the handle is gone or not fd-backed.
 */
export function socketFd(sock: net.Socket | net.Server): number {
  const fd = (sock as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error('socketFd: socket has no open file descriptor (closed or not yet connected)');
  }
  return fd;
}

// ---------------------------------------------------------------------------
// AF_UNIX SOCK_SEQPACKET (all fds non-blocking and CLOEXEC).
// A path starting with '@' is an abstract socket name.
// ---------------------------------------------------------------------------

/** socket + bind + listen. Does not unlink an existing path. */
export function seqpacketListen(path: string, backlog?: number): number {
  return addon.seqpacketListen(path, backlog);
}

/** Non-blocking connect (AF_UNIX completes immediately; EAGAIN = backlog full). */
export function seqpacketConnect(path: string): number {
  return addon.seqpacketConnect(path);
}

/** accept4(); -1 when no connection is pending. */
export function seqpacketAccept(fd: number): number {
  return addon.seqpacketAccept(fd);
}

/** One sendmsg() (MSG_NOSIGNAL), with `passFd` attached via SCM_RIGHTS if given. */
export function seqpacketSend(fd: number, data: Uint8Array, passFd?: number): void {
  addon.seqpacketSend(fd, data, passFd);
}

/**
 * One recvmsg(MSG_CMSG_CLOEXEC). null when nothing is queued (EAGAIN);
 * `{ data: <empty>, eof: true }` when the peer closed. At most one fd is
 * kept; extra fds in the same message are closed. A message longer than
 * maxLen (default 65536) throws EMSGSIZE (the message is discarded).
 */
export function seqpacketRecv(fd: number, maxLen?: number): SeqpacketMessage | null {
  return addon.seqpacketRecv(fd, maxLen);
}

// ---------------------------------------------------------------------------
// Readiness notification
// ---------------------------------------------------------------------------

export interface FdWatcher {
  /** Stop watching. Must be called before the fd is closed. Idempotent. */
  close(): void;
  /** Let the process exit while the watcher is active. */
  unref(): this;
  ref(): this;
}

const liveWatchers = new Set<FdWatcher>();

/**
 * Calls `onReadable` on the event loop whenever `fd` is readable (libuv
 * uv_poll, level-triggered: keep calling seqpacketRecv/seqpacketAccept until
 * it returns null/-1, otherwise the callback fires again on the next loop
 * turn). Peer hang-up is reported as readable (recv then returns eof).
 * `onError` gets poll errors (e.g. EBADF); the watcher is closed first.
 *
 * Never use this on an fd that Node itself also owns (net.Socket/Server),
 * and close() the watcher before closeFd(fd).
 */
export function watchReadable(
  fd: number,
  onReadable: () => void,
  onError?: (err: Error) => void,
): FdWatcher {
  let handle: WatchHandle | null = null;
  const watcher: FdWatcher = {
    close() {
      if (handle) {
        addon.unwatchFd(handle);
        handle = null;
        liveWatchers.delete(watcher);
      }
    },
    unref() {
      if (handle) addon.refWatch(handle, false);
      return this;
    },
    ref() {
      if (handle) addon.refWatch(handle, true);
      return this;
    },
  };
  handle = addon.watchFd(fd, 1 /* UV_READABLE */, (status) => {
    if (status < 0) {
      watcher.close();
      const code = getSystemErrorName(status);
      const err = new Error(`watchReadable uv_poll ${code}: poll error on fd ${fd}`) as NativeError;
      err.errno = status;
      err.code = code;
      err.syscall = 'uv_poll';
      if (onError) onError(err);
      else throw err;
      return;
    }
    onReadable();
  });
  liveWatchers.add(watcher);
  return watcher;
}
