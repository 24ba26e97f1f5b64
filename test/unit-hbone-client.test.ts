// The HBONE client's failure paths that must not leave a tunnel waiting forever: a peer that accepts TCP but never
// completes TLS, and a CONNECT the peer cancels without answering.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { dialHbone } from '../ztunnel/hbone/client.js';
import { HbonePool } from '../ztunnel/hbone/pool.js';
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
