// How ztunnel makes its sockets: inside a given network namespace (a pod's, or its own), with ztunnel's mark
// so the redirection rules let them through.
import type net from 'node:net';
import { connectTcp, listenTcp } from '../native/index.js';

/** Mark on every socket ztunnel opens, matched by the in-pod rules (Istio's 0x539). */
export const ZTUNNEL_MARK = 0x539;

export interface ConnectOptions {
  /** Connect from this (foreign) address, keeping the original client's IP (IP_TRANSPARENT). */
  spoofSource?: string;
}

export interface SocketFactory {
  /** Start a TCP connection; errors arrive as 'error' events. */
  connect(ip: string, port: number, opts?: ConnectOptions): net.Socket;
  /**
   * Listen on host:port; rejects with a clear error when the port is taken. Accepted sockets have TCP_NODELAY: a
   * proxy passes on small writes (a request, a reply) as they come.
   */
  listen(server: net.Server, host: string, port: number): Promise<void>;
}

/** Resolves once the socket has connected, rejects with its connect error. */
export function connected(sock: net.Socket): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.off('error', reject);
      resolve(sock);
    });
  });
}

export function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  if (err.code === 'EADDRINUSE') return new Error(`port ${port} on ${host} is already in use (is another ztunnel running?)`);
  if (err.code === 'EACCES') return new Error(`no permission to listen on ${host}:${port}`);
  return new Error(`cannot listen on ${host}:${port}: ${err.message}`);
}

export function listenOn(server: net.Server, opts: net.ListenOptions | { fd: number }, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(listenError(err, host, port));
    server.once('error', onError);
    server.listen(opts, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * Sockets in one network namespace: `netnsFd` for a pod's (shared mode), or none for ztunnel's own (dedicated mode).
 * SO_REUSEPORT lets a new ztunnel take over a pod's ports while the old one drains, as Istio's does.
 */
export class NetnsSocketFactory implements SocketFactory {
  constructor(
    private readonly netnsFd: number | undefined,
    private readonly reusePort: boolean,
    private readonly mark: number = ZTUNNEL_MARK,
  ) {}

  connect(ip: string, port: number, opts: ConnectOptions = {}): net.Socket {
    const spoof = opts.spoofSource ? { transparent: true, bindAddress: opts.spoofSource } : {};
    return connectTcp({ netnsFd: this.netnsFd, host: ip, port, mark: this.mark, allowHalfOpen: true, noDelay: true, ...spoof });
  }

  listen(server: net.Server, host: string, port: number): Promise<void> {
    let fd: number;
    try {
      fd = listenTcp({ netnsFd: this.netnsFd, host, port, mark: this.mark, reusePort: this.reusePort, noDelay: true });
    } catch (err) {
      return Promise.reject(listenError(err as NodeJS.ErrnoException, host, port));
    }
    return listenOn(server, { fd }, host, port);
  }
}
