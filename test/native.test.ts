/**
 * Tests for the native addon (ztunnel/native). Needs root: creates its own
 * network namespace, only talks to loopback addresses inside it, and
 * deletes it in an always-hook.
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { fstatSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import selfsigned from 'selfsigned';

import * as native from '../ztunnel/native/index.js';

const execFileP = promisify(execFile);

const NS = `ambit-nt-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
let nsfd = -1;
let nsCreated = false;
const cleanupPaths: string[] = [];
const openServers: net.Server[] = [];

function inNs(cmd: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', NS, cmd, ...args], { encoding: 'utf8' });
}

function threadNetns(): string {
  return readlinkSync('/proc/thread-self/ns/net');
}

/** Identity of the namespace behind an nsfs fd (the inode of nsfs). */
function nsIdOfFd(fd: number): string {
  const st = fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

function nsIdOfThread(): string {
  const st = statSync('/proc/thread-self/ns/net');
  return `${st.dev}:${st.ino}`;
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Listen on an fd from listenTcp; the server owns (and closes) the fd. */
async function serve(fd: number, handler: (s: net.Socket) => void, server?: net.Server): Promise<net.Server> {
  const srv = server ?? net.createServer(handler);
  if (server) srv.on('connection', handler);
  openServers.push(srv);
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ fd }, () => {
      srv.off('error', reject);
      resolve();
    });
  });
  return srv;
}

function portOf(srv: net.Server): number {
  return (srv.address() as net.AddressInfo).port;
}

function closeServer(srv: net.Server): Promise<void> {
  return new Promise((resolve) => srv.close(() => resolve()));
}

/** Read everything until close; rejects on error. */
function readAll(sock: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.once('error', reject);
    sock.once('close', (hadError) => {
      if (!hadError) resolve(Buffer.concat(chunks).toString());
    });
  });
}

function iptablesPackets(bin: string, table: string, chain: string, match: string): number {
  const out = inNs(bin, '-w', '-t', table, '-L', chain, '-v', '-n', '-x');
  const line = out.split('\n').find((l) => l.includes(match));
  if (!line) throw new Error(`no rule matching ${match} in\n${out}`);
  return Number(line.trim().split(/\s+/)[0]);
}

let rootNs = '';

test.before(() => {
  rootNs = threadNetns();
  execFileSync('ip', ['netns', 'add', NS]);
  nsCreated = true;
  execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
  nsfd = native.openNetns(`/var/run/netns/${NS}`);
});

/** Synchronous, idempotent; also run on process exit in case the worker crashes. */
function cleanup(): void {
  if (nsfd >= 0) native.closeFd(nsfd);
  nsfd = -1;
  if (nsCreated) {
    nsCreated = false;
    execFileSync('ip', ['netns', 'del', NS]);
  }
  for (const p of cleanupPaths.splice(0)) rmSync(p, { force: true });
}
process.once('exit', cleanup);

test.after.always(async () => {
  for (const srv of openServers) if (srv.listening) await closeServer(srv);
  cleanup();
});

test.serial('openNetns returns an fd for the namespace, distinct from ours', (t) => {
  t.not(nsIdOfFd(nsfd), nsIdOfThread());
  // same namespace as the one `ip netns exec` enters
  t.is(inNs('readlink', '/proc/self/ns/net').trim(), `net:[${fstatSync(nsfd).ino}]`);
  const err = t.throws(() => native.openNetns('/var/run/netns/does-not-exist-ambit')) as native.NativeError;
  t.is(err.code, 'ENOENT');
  t.is(err.errno, -2);
  t.is(err.syscall, 'open');
});

test.serial('listenTcp in netns: reachable inside, not from the root netns', async (t) => {
  const lfd = native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0 });
  t.is(threadNetns(), rootNs, 'thread switched back');
  let accepted = 0;
  const srv = await serve(lfd, (s) => {
    accepted++;
    s.end(`hello ${s.remoteAddress}`);
  });
  const port = portOf(srv);
  t.deepEqual(native.localAddress(lfd), { address: '127.0.0.1', port, family: 4 });

  // 1. a client socket created by socketTcp in the same netns
  const viaSocketTcp = await readAll(
    new net.Socket({ fd: native.socketTcp({ netnsFd: nsfd, family: 4 }) }).connect(port, '127.0.0.1'),
  );
  t.is(viaSocketTcp, 'hello 127.0.0.1');

  // 2. a separate process running inside the netns
  const script =
    `const s=require('net').connect(${port},'127.0.0.1');` +
    `s.on('data',d=>process.stdout.write(d));` +
    `s.on('error',e=>{console.error(e.code);process.exit(2)});`;
  const { stdout } = await execFileP('ip', ['netns', 'exec', NS, process.execPath, '-e', script]);
  t.is(stdout, 'hello 127.0.0.1');
  t.is(accepted, 2);

  // 3. not reachable from the root netns (unless something unrelated happens
  //    to listen on the same port there: then it is still not our server)
  const rootErr = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  await new Promise((r) => setTimeout(r, 50));
  t.is(accepted, 2, 'root-netns connection must not reach the netns server');
  if (rootErr !== 'connected') t.is(rootErr, 'ECONNREFUSED');

  // the listener is visible inside the netns
  t.regex(inNs('ss', '-Hltn'), new RegExp(`127\\.0\\.0\\.1:${port}\\b`));
  await closeServer(srv);
});

test.serial('listenTcp errors: EADDRINUSE, reusePort, bad arguments, bad netns fd', async (t) => {
  const lfd = native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0 });
  const { port } = native.localAddress(lfd);

  const err = t.throws(() => native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port })) as native.NativeError;
  t.is(err.code, 'EADDRINUSE');
  t.is(err.errno, -98);
  t.is(err.syscall, 'bind');
  t.true(err.message.includes(`127.0.0.1:${port}`), err.message);
  t.is(threadNetns(), rootNs);

  // the same port in the root netns is a different socket namespace: free
  const rootFd = native.listenTcp({ host: '127.0.0.1', port });
  native.closeFd(rootFd);

  // SO_REUSEPORT on both sockets allows a second listener
  const a = native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0, reusePort: true });
  const p2 = native.localAddress(a).port;
  const b = native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: p2, reusePort: true });
  t.is(native.localAddress(b).port, p2);
  native.closeFd(a);
  native.closeFd(b);
  native.closeFd(lfd);

  t.throws(() => native.listenTcp({ host: 'localhost', port: 1 }), { instanceOf: TypeError });
  t.throws(() => native.listenTcp({ host: '127.0.0.1', port: 70000 }), { instanceOf: TypeError });
  t.throws(() => native.listenTcp({ host: '127.0.0.1', port: 1, mark: -1 }), { instanceOf: TypeError });

  // setns onto something that is not a netns fd fails cleanly
  const notNs = native.seqpacketListen(`@ambit-nt-notns-${process.pid}`);
  const bad = t.throws(() => native.listenTcp({ netnsFd: notNs, host: '127.0.0.1', port: 0 })) as native.NativeError;
  t.is(bad.code, 'EINVAL');
  t.is(bad.syscall, 'setns');
  native.closeFd(notNs);
  t.is(threadNetns(), rootNs);
});

test.serial('listenTcp on :: is dual-stack; options are applied', async (t) => {
  const lfd = native.listenTcp({ netnsFd: nsfd, host: '::', port: 0, mark: 7, transparent: true, freebind: true });
  t.is(native.getMark(lfd), 7);
  const srv = await serve(lfd, (s) => s.end(String(s.remoteAddress)));
  const port = portOf(srv);
  t.is(await readAll(native.connectTcp({ netnsFd: nsfd, host: '127.0.0.1', port })), '::ffff:127.0.0.1');
  t.is(await readAll(native.connectTcp({ netnsFd: nsfd, host: '::1', port })), '::1');
  await closeServer(srv);
});

test.serial('listenTcp noDelay: accepted sockets inherit TCP_NODELAY from the listener', async (t) => {
  const accepted = async (noDelay: boolean) => {
    const lfd = native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0, noDelay });
    t.is(native.getNoDelay(lfd), noDelay);
    let inherited: boolean | undefined;
    const srv = await serve(lfd, (s) => {
      inherited = native.getNoDelay(native.socketFd(s));
      s.end('x');
    });
    t.is(await readAll(native.connectTcp({ netnsFd: nsfd, host: '127.0.0.1', port: portOf(srv) })), 'x');
    await closeServer(srv);
    return inherited;
  };
  t.is(await accepted(false), false);
  t.is(await accepted(true), true);
});

test.serial('socketTcp in netns: net.Socket({fd}).connect works, mark is applied', async (t) => {
  inNs('iptables', '-w', '-A', 'OUTPUT', '-o', 'lo', '-p', 'tcp', '-m', 'mark', '--mark', '0x539', '-j', 'ACCEPT');
  const lfd = native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0 });
  const srv = await serve(lfd, (s) => s.end('marked'));
  const port = portOf(srv);

  // unmarked connection: counter stays 0
  t.is(await readAll(native.connectTcp({ netnsFd: nsfd, host: '127.0.0.1', port })), 'marked');
  t.is(iptablesPackets('iptables', 'filter', 'OUTPUT', 'mark match 0x539'), 0);

  const fd = native.socketTcp({ netnsFd: nsfd, family: 4, mark: 0x539 });
  t.is(native.getMark(fd), 0x539);
  native.setMark(fd, 0x53a);
  t.is(native.getMark(fd), 0x53a);
  native.setMark(fd, 0x539);
  const sock = new net.Socket({ fd }).connect(port, '127.0.0.1');
  t.is(await readAll(sock), 'marked');
  t.true(iptablesPackets('iptables', 'filter', 'OUTPUT', 'mark match 0x539') > 0);

  // explicit bind before connect
  const bfd = native.socketTcp({ netnsFd: nsfd, family: 4, bindAddress: '127.0.0.5', bindPort: 0 });
  t.is(native.localAddress(bfd).address, '127.0.0.5');
  const bsrv = await serve(
    native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0 }),
    (s) => s.end(String(s.remoteAddress)),
  );
  t.is(await readAll(new net.Socket({ fd: bfd }).connect(portOf(bsrv), '127.0.0.1')), '127.0.0.5');

  t.throws(() => native.socketTcp({ family: 5 as 4 }), { instanceOf: TypeError });
  t.throws(() => native.socketTcp({ family: 4, bindAddress: '::1' }), { instanceOf: TypeError });
  await closeServer(srv);
  await closeServer(bsrv);
});

test.serial('net.Socket({fd}) on an unconnected fd: connect in the same tick or use connectTcp', async (t) => {
  const srv = await serve(native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0 }), (s) => s.end('ok'));
  const port = portOf(srv);

  // Measured pitfall: a plain net.Socket({fd}) starts reading immediately; one
  // loop turn later the read fails with ENOTCONN and the socket is destroyed.
  const raw = new net.Socket({ fd: native.socketTcp({ netnsFd: nsfd, family: 4 }) });
  const err = await new Promise<NodeJS.ErrnoException>((resolve) => raw.once('error', resolve));
  t.is(err.code, 'ENOTCONN');
  t.true(raw.destroyed);

  // connectTcp (manualStart) survives a delayed connect
  const fd = native.socketTcp({ netnsFd: nsfd, family: 4 });
  const s = new net.Socket({ fd, manualStart: true } as net.SocketConstructorOpts);
  await new Promise((r) => setTimeout(r, 30));
  t.false(s.destroyed);
  t.is(await readAll(s.connect(port, '127.0.0.1')), 'ok');
  await closeServer(srv);
});

test.serial('tls.connect({ socket }) over a socketTcp fd', async (t) => {
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'ambit-native-test' }]);
  const tsrv = tls.createServer({ key: pems.private, cert: pems.cert }, (s) => s.end(`tls ${s.getProtocol()}`));
  const srv = await serve(native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0 }), () => {}, tsrv);
  const port = portOf(srv);

  const raw = new net.Socket({ fd: native.socketTcp({ netnsFd: nsfd, family: 4 }) }).connect(port, '127.0.0.1');
  const a = tls.connect({ socket: raw, rejectUnauthorized: false, servername: 'ambit-native-test' });
  t.regex(await readAll(a), /^tls TLSv1\.[23]$/);

  const b = tls.connect({
    socket: native.connectTcp({ netnsFd: nsfd, host: '127.0.0.1', port }),
    rejectUnauthorized: false,
  });
  t.regex(await readAll(b), /^tls TLSv1\.[23]$/);
  await closeServer(srv);
});

test.serial('originalDst after iptables REDIRECT (IPv4, IPv6, v4 on a dual-stack listener)', async (t) => {
  const seen: native.SockAddr[] = [];
  const handler = (s: net.Socket) => {
    seen.push(native.originalDst(native.socketFd(s)));
    s.end(`${s.localAddress} ${s.localPort}`);
  };
  const srv4 = await serve(native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0 }), handler);
  const srv6 = await serve(native.listenTcp({ netnsFd: nsfd, host: '::', port: 0 }), handler);
  const p4 = portOf(srv4);
  const p6 = portOf(srv6);
  inNs('iptables', '-w', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '127.0.0.2', '--dport', '80', '-j', 'REDIRECT', '--to-ports', String(p4));
  inNs('iptables', '-w', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '127.0.0.3', '--dport', '81', '-j', 'REDIRECT', '--to-ports', String(p6));
  inNs('ip6tables', '-w', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '::1', '--dport', '82', '-j', 'REDIRECT', '--to-ports', String(p6));

  // client sockets created inside the netns, no JS runs there
  const r4 = await readAll(new net.Socket({ fd: native.socketTcp({ netnsFd: nsfd, family: 4 }) }).connect(80, '127.0.0.2'));
  t.is(r4, `127.0.0.1 ${p4}`, 'REDIRECT landed on the listener');
  t.deepEqual(seen[0], { address: '127.0.0.2', port: 80, family: 4 });

  t.is(await readAll(native.connectTcp({ netnsFd: nsfd, host: '127.0.0.3', port: 81 })), `::ffff:127.0.0.1 ${p6}`);
  t.deepEqual(seen[1], { address: '127.0.0.3', port: 81, family: 4 });

  t.is(await readAll(native.connectTcp({ netnsFd: nsfd, host: '::1', port: 82 })), `::1 ${p6}`);
  t.deepEqual(seen[2], { address: '::1', port: 82, family: 6 });

  t.is(iptablesPackets('iptables', 'nat', 'OUTPUT', 'redir ports ' + p4), 1);

  // not a socket / not IP
  const sp = native.seqpacketListen(`@ambit-nt-od-${process.pid}`);
  t.throws(() => native.originalDst(sp), { code: 'EAFNOSUPPORT' });
  native.closeFd(sp);
  t.throws(() => native.socketFd(new net.Socket()), { message: /no open file descriptor/ });

  await closeServer(srv4);
  await closeServer(srv6);
});

test.serial('seqpacket: listen/connect/accept/send/recv with a passed netns fd', async (t) => {
  const path = join(tmpdir(), `ambit-nt-${process.pid}-${Math.random().toString(36).slice(2, 8)}.sock`);
  cleanupPaths.push(path);
  const before = fdCount();

  const lfd = native.seqpacketListen(path);
  t.is(native.seqpacketAccept(lfd), -1, 'nothing pending');
  const cfd = native.seqpacketConnect(path);
  const sfd = native.seqpacketAccept(lfd);
  t.true(sfd >= 0);

  t.is(native.seqpacketRecv(sfd), null, 'EAGAIN -> null');

  // wait for readability through the uv_poll watcher
  const got: native.SeqpacketMessage[] = [];
  let wakeups = 0;
  const done = new Promise<void>((resolve, reject) => {
    const w = native.watchReadable(
      sfd,
      () => {
        wakeups++;
        for (;;) {
          const m = native.seqpacketRecv(sfd);
          if (!m) break;
          got.push(m);
          if (m.eof) {
            w.close();
            resolve();
            return;
          }
        }
      },
      reject,
    );
  });

  native.seqpacketSend(cfd, Buffer.from('hello'), nsfd);
  native.seqpacketSend(cfd, new Uint8Array([1, 2, 3]));
  await new Promise((r) => setTimeout(r, 20));
  native.closeFd(cfd);
  await done;

  t.true(wakeups >= 1);
  t.is(got.length, 3);
  t.is(got[0].data.toString(), 'hello');
  t.is(typeof got[0].fd, 'number');
  t.is(nsIdOfFd(got[0].fd!), nsIdOfFd(nsfd), 'received fd is the same netns');
  t.not(nsIdOfFd(got[0].fd!), nsIdOfThread());
  t.not(got[0].fd, nsfd);
  t.deepEqual([...got[1].data], [1, 2, 3]);
  t.is(got[1].fd, undefined);
  t.true(got[2].eof);
  t.is(got[2].data.length, 0);

  // a received netns fd is usable
  const tfd = native.listenTcp({ netnsFd: got[0].fd!, host: '127.0.0.1', port: 0 });
  native.closeFd(tfd);
  native.closeFd(got[0].fd!);

  // message longer than maxLen
  const c2 = native.seqpacketConnect(path);
  const s2 = native.seqpacketAccept(lfd);
  native.seqpacketSend(c2, Buffer.alloc(100), nsfd);
  t.throws(() => native.seqpacketRecv(s2, 10), { code: 'EMSGSIZE' });
  native.seqpacketSend(c2, Buffer.alloc(10));
  t.is(native.seqpacketRecv(s2, 10)!.data.length, 10);
  native.closeFd(s2);
  t.throws(() => native.seqpacketSend(c2, Buffer.from('x')), { code: 'EPIPE' });
  native.closeFd(c2);

  native.closeFd(sfd);
  native.closeFd(lfd);
  t.is(fdCount(), before, 'no fd leaked (passed fds and EMSGSIZE path included)');

  t.throws(() => native.seqpacketConnect(path + '.missing'), { code: 'ENOENT' });
  t.throws(() => native.seqpacketListen(path), { code: 'EADDRINUSE' });
  t.throws(() => native.seqpacketSend(0x7ffffff0, Buffer.from('x')), { code: 'EBADF' });
});

test.serial('abstract seqpacket socket and watcher ref/unref/close', async (t) => {
  const name = `@ambit-nt-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const lfd = native.seqpacketListen(name);
  const accepted = new Promise<number>((resolve) => {
    const w = native.watchReadable(lfd, () => {
      const fd = native.seqpacketAccept(lfd);
      if (fd >= 0) {
        w.close();
        w.close(); // idempotent
        resolve(fd);
      }
    });
    w.unref().ref();
  });
  const cfd = native.seqpacketConnect(name);
  const sfd = await accepted;
  native.seqpacketSend(sfd, Buffer.from('x'));
  t.is(native.seqpacketRecv(cfd)!.data.toString(), 'x');
  native.closeFd(sfd);
  t.true(native.seqpacketRecv(cfd)!.eof);
  native.closeFd(cfd);
  native.closeFd(lfd);
});

test.serial('no fd leaks and the thread never stays in the other netns', (t) => {
  const before = fdCount();
  for (let i = 0; i < 50; i++) {
    const l = native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port: 0 });
    const { port } = native.localAddress(l);
    t.throws(() => native.listenTcp({ netnsFd: nsfd, host: '127.0.0.1', port }), { code: 'EADDRINUSE' });
    native.closeFd(l);
    native.closeFd(native.socketTcp({ netnsFd: nsfd, family: 6, mark: 1 }));
    t.throws(() => native.socketTcp({ netnsFd: nsfd, family: 4, bindAddress: '10.9.9.9' }), { code: 'EADDRNOTAVAIL' });
  }
  t.is(fdCount(), before);
  t.is(threadNetns(), rootNs);
});
