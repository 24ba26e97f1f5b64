// The HBONE client and its pool, on loopback: failure paths that must not leave a tunnel waiting forever (a peer that
// accepts TCP but never completes TLS, a CONNECT the peer cancels without answering), and the pool under a storm of
// new tunnels (streams multiplexed up to the per-connection limit, a failed dial, idle connections retired).
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { dialHbone } from '../ztunnel/hbone/client.js';
import { HbonePool, type PoolOptions } from '../ztunnel/hbone/pool.js';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { CertificateManager } from '../ztunnel/identity/manager.js';
import type { SocketFactory } from '../ztunnel/net/sockets.js';
import { within } from './lab/waits.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-hbone-client-'));
const closers: (() => void)[] = [];
test.after.always(() => {
  for (const c of closers) c();
  rmSync(dir, { recursive: true, force: true });
});

/** A loopback server; closed after the tests. */
async function listen<S extends net.Server>(server: S): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  return (server.address() as AddressInfo).port;
}

const loopback: SocketFactory = {
  connect: (ip, port) => net.connect({ host: ip, port, allowHalfOpen: true }),
  listen: () => Promise.reject(new Error('not used')),
};

test('dialHbone gives up on a peer that accepts TCP but never answers TLS', async (t) => {
  const held: net.Socket[] = [];
  const port = await listen(net.createServer((s) => held.push(s.resume()))); // read, so the client's close is seen
  closers.push(() => held.forEach((s) => s.destroy()));
  const ca = await LocalCa.open(join(dir, 'ca.pem'), join(dir, 'ca.key'), 'cluster.local');
  const cert = await new CertificateManager(ca, 3600, pino({ level: 'silent' })).get({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' });
  const dial = dialHbone({ ip: '127.0.0.1', port, expectedIdentities: ['spiffe://cluster.local/ns/default/sa/echo'] }, cert, loopback, 300);
  await t.throwsAsync(within(dial, 5000, 'dialHbone to a silent peer'), { message: /no TLS handshake within 300 ms/ });
  t.is(held.length, 1, 'the TCP connection was made');
  await within(new Promise((r) => (held[0]!.destroyed ? r(null) : held[0]!.once('close', r))), 5000, 'the client closing the TCP connection');
});

test('a CONNECT the peer cancels without a response fails the tunnel instead of waiting forever', async (t) => {
  const server = http2.createServer();
  server.on('stream', (stream) => stream.close(http2.constants.NGHTTP2_CANCEL));
  const port = await listen(server);
  const pool = new HbonePool(async () => http2.connect(`http://127.0.0.1:${port}`));
  closers.push(() => pool.close());
  const key = { srcIdentity: 'spiffe://cluster.local/ns/default/sa/sleep', expectedIdentities: [], dstIp: '127.0.0.1', dstPort: port, srcIp: '10.0.0.1' };
  const tunnel = pool.connect(key, { ':method': 'CONNECT', ':authority': '10.0.0.2:80' });
  await t.throwsAsync(within(tunnel, 5000, 'the cancelled CONNECT'), { message: /closed before a response \(code 8\)/ });
});

/** An h2c CONNECT server that answers 200 and echoes; counts the sessions it accepted. */
async function echoConnectServer(): Promise<{ port: number; sessions: () => number }> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => sessions.add(session));
  closers.push(() => sessions.forEach((session) => session.destroy())); // also when a test failed with tunnels open
  server.on('stream', (stream, headers) => {
    if (headers[':method'] !== 'CONNECT') return stream.respond({ ':status': 400 }, { endStream: true });
    stream.respond({ ':status': 200 });
    stream.pipe(stream);
  });
  return { port: await listen(server), sessions: () => sessions.size };
}

const poolKey = (port: number) => ({ srcIdentity: 'spiffe://cluster.local/ns/default/sa/sleep', expectedIdentities: [], dstIp: '127.0.0.1', dstPort: port, srcIp: '10.0.0.1' });

/** A pool whose connections go to `port` (h2c), counting its dials; closed after the tests. */
function countingPool(port: number, opts: PoolOptions = {}) {
  let dials = 0;
  const pool = new HbonePool(async () => (dials++, http2.connect(`http://127.0.0.1:${port}`)), opts);
  closers.push(() => pool.close());
  return { pool, key: poolKey(port), dials: () => dials };
}
const CONNECT = { ':method': 'CONNECT', ':authority': '10.0.0.2:80' };

/** One byte through the tunnel and back, then close it. */
async function roundTrip(s: http2.ClientHttp2Stream, byte: string): Promise<string> {
  const back = new Promise<string>((resolve, reject) => (s.once('data', (c: Buffer) => resolve(c.toString())), s.once('error', reject)));
  s.write(byte);
  const got = await back;
  s.close();
  return got;
}

test('a storm of 250 new tunnels to one peer dials 3 connections of at most 100 streams, all reused afterwards', async (t) => {
  const server = await echoConnectServer();
  const { pool, key, dials } = countingPool(server.port, { maxStreams: 100 });
  const storm = await within(Promise.all(Array.from({ length: 250 }, () => pool.connect(key, CONNECT))), 10_000, 'the storm');
  t.is(dials(), 3, 'one dial per 100 streams, none per tunnel');
  t.is(pool.connectionCount, 3);
  t.is(new Set(storm.map((s) => s.session)).size, 3);
  const closed = storm.map((s) => new Promise((r) => s.once('close', r)));
  t.deepEqual(await Promise.all(storm.map((s, i) => roundTrip(s, String(i % 10)))), storm.map((_, i) => String(i % 10)));
  await within(Promise.all(closed), 5000, 'streams closed');
  // Their slots are free again: the next storm of the same size needs no new connection.
  const again = await within(Promise.all(Array.from({ length: 250 }, () => pool.connect(key, CONNECT))), 10_000, 'the second storm');
  t.is(dials(), 3);
  t.is(server.sessions(), 3);
  for (const s of again) s.close();
});

test('a dial that fails fails every tunnel waiting on it, and the next tunnel dials again', async (t) => {
  const server = await echoConnectServer();
  let dials = 0;
  const pool = new HbonePool(async () => {
    if (++dials === 1) throw new Error('peer unreachable');
    return http2.connect(`http://127.0.0.1:${server.port}`);
  });
  closers.push(() => pool.close());
  const key = poolKey(server.port);
  const waiting = await Promise.allSettled(Array.from({ length: 20 }, () => pool.connect(key, CONNECT)));
  t.true(waiting.every((r) => r.status === 'rejected' && /peer unreachable/.test(String(r.reason))));
  t.is(dials, 1);
  t.is(pool.connectionCount, 0, 'the failed connection is not kept');
  t.is(await roundTrip(await within(pool.connect(key, CONNECT), 5000, 'a tunnel after the failure'), 'x'), 'x');
  t.is(dials, 2);
});

test('a connection without streams is retired after the idle timeout; the next tunnel dials anew', async (t) => {
  const server = await echoConnectServer();
  const { pool, key, dials } = countingPool(server.port, { idleTimeoutMs: 200 });
  const first = await within(pool.connect(key, CONNECT), 5000, 'first tunnel');
  t.is(await roundTrip(first, 'a'), 'a');
  await within(new Promise((r) => first.session!.once('close', r)), 5000, 'the idle connection closing');
  t.is(pool.connectionCount, 0);
  t.is(await roundTrip(await within(pool.connect(key, CONNECT), 5000, 'a tunnel after the idle timeout'), 'b'), 'b');
  t.is(dials(), 2);
});
