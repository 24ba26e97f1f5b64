// End to end, dedicated mode: real ztunnel processes in network namespaces, apps captured by iptables.
import test from 'ava';
import type net from 'node:net';
import { connectTcp } from '../ztunnel/native/index.js';
import { echoServer, exchange, holdOpen, httpIn, listenIn, nameServer, sha256 } from './lab/apps.js';
import { DedicatedMesh } from './lab/dedicated.js';
import { counter, ECHO_HOST, HOSTS, ID, IP, meshConfig } from './lab/fixtures.js';
import { eventually } from './lab/ztunnel-proc.js';

const mesh = new DedicatedMesh();
const servers: net.Server[] = [];

test.before(async () => {
  await mesh.start(HOSTS, meshConfig(), { UNSTABLE_ENABLE_SOCKS5: 'true' });
  for (const [h, ip] of [['server1', IP.server1], ['server2', IP.server2]] as const) {
    servers.push(await echoServer(mesh.host(h), ip, 8080));
    servers.push(await nameServer(mesh.host(h), ip, 7070, h));
  }
  servers.push(await echoServer(mesh.host('plain'), '0.0.0.0', 9090));
});

test.after.always(async () => {
  for (const s of servers) s.close();
  await mesh.cleanup();
});

const client = () => mesh.host('client');

for (const size of [0, 1, 64 * 1024 * 1024]) {
  test.serial(`${size} bytes travel app->app over HBONE byte-exact, both directions`, async (t) => {
    const payload = Buffer.alloc(size);
    for (let i = 0; i + 4 <= size; i += 4096) payload.writeUInt32BE(i, i); // not all zeros, so reordering would show
    const r = await exchange(client(), IP.server1, 8080, payload, 120_000);
    t.is(r.error, undefined);
    t.is(r.received.length, size);
    t.is(sha256(r.received), sha256(payload));
  });
}

test.serial('half-close from the server side: the client may keep sending after the server finished', async (t) => {
  let afterEnd = 0;
  const gotAll = new Promise<void>((resolve) => {
    void listenIn(mesh.host('server2'), IP.server2, 6060, (s) => {
      s.end('bye'); // server half-closes first
      s.on('data', (c: Buffer) => (afterEnd += c.length));
      s.on('end', () => resolve());
    }).then((srv) => servers.push(srv));
  });
  await eventually('listener', () => servers.length >= 6);
  const s = await holdOpen(client(), IP.server2, 6060);
  const first = await new Promise<string>((resolve) => {
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString()));
    s.once('end', () => resolve(got));
  });
  s.end(Buffer.alloc(100_000, 1)); // only now does the client finish
  await gotAll;
  t.is(first, 'bye');
  t.is(afterEnd, 100_000);
});

test.serial('identities show in access logs on both sides', async (t) => {
  await exchange(client(), IP.server1, 8080, Buffer.from('who are you'));
  const out = await eventually('client access log', () =>
    mesh.zt('client').lines('connection complete').find((l) => l['dst.addr'] === `${IP.server1}:8080`),
  );
  t.is(out['src.identity'], ID.client);
  t.is(out['dst.identity'], ID.server);
  t.is(out['dst.hbone_addr'], `${IP.server1}:15008`);
  t.is(out.direction, 'outbound');
  const inb = await eventually('server access log', () =>
    mesh.zt('server1').lines('connection complete').find((l) => l.direction === 'inbound' && l['src.identity'] === ID.client),
  );
  t.is(inb['dst.identity'], ID.server);
  t.is(inb['src.workload'], 'client');
});

test.serial('metrics count connections and bytes exactly on both sides', async (t) => {
  const dstLabels = { reporter: 'destination', source_principal: ID.client, destination_workload: 'server2' };
  const srcLabels = { reporter: 'source', destination_workload: 'server2', connection_security_policy: 'mutual_tls' };
  const read = async (zt: string) => (await httpIn(mesh.host(zt), 'GET', 15020, '/stats/prometheus')).body;
  const snapshot = async () => {
    const [s, c] = [await read('server2'), await read('client')];
    return {
      opened: counter(s, 'istio_tcp_connections_opened_total', dstLabels),
      closed: counter(s, 'istio_tcp_connections_closed_total', dstLabels),
      received: counter(s, 'istio_tcp_received_bytes_total', dstLabels),
      sent: counter(s, 'istio_tcp_sent_bytes_total', dstLabels),
      srcReceived: counter(c, 'istio_tcp_received_bytes_total', srcLabels),
      srcClosed: counter(c, 'istio_tcp_connections_closed_total', srcLabels),
    };
  };
  const before = await snapshot();
  const r = await exchange(client(), IP.server2, 8080, Buffer.alloc(12_345, 9));
  t.is(r.received.length, 12_345);
  const after = await eventually('closed counters', async () => {
    const s = await snapshot();
    return s.closed > before.closed && s.srcClosed > before.srcClosed ? s : undefined;
  });
  t.is(after.opened - before.opened, 1);
  t.is(after.closed - before.closed, 1);
  t.is(after.received - before.received, 12_345);
  t.is(after.sent - before.sent, 12_345);
  t.is(after.srcReceived - before.srcReceived, 12_345);
});

test.serial('a service VIP balances across endpoints with named and numeric target ports', async (t) => {
  const seen = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const r = await exchange(client(), IP.whoVip, 80); // numeric target port 7070
    t.is(r.error, undefined);
    const name = r.received.toString();
    seen.set(name, (seen.get(name) ?? 0) + 1);
  }
  t.deepEqual([...seen.keys()].sort(), ['server1', 'server2']);
  const echo = await exchange(client(), IP.echoVip, 80, Buffer.from('via named port')); // 80 -> 8080 from the workloads' map
  t.is(echo.received.toString(), 'via named port');
  const log = await eventually('service in log', () =>
    mesh.zt('client').lines('connection complete').find((l) => l['dst.service'] === ECHO_HOST),
  );
  t.regex(String(log['dst.addr']), /:8080$/);
});

test.serial('an unhealthy endpoint gets no traffic', async (t) => {
  mesh.writeConfig(meshConfig({ server2Status: 'Unhealthy' }));
  await eventually('reload', () => mesh.zt('client').lines('local config reloaded').length > 0);
  for (let i = 0; i < 20; i++) t.is((await exchange(client(), IP.whoVip, 80)).received.toString(), 'server1');
  mesh.writeConfig(meshConfig());
  await eventually('reload back', () => mesh.zt('client').lines('local config reloaded').length > 1);
});

test.serial('TCP-protocol workloads get plain TCP; unknown destinations pass through', async (t) => {
  const viaVip = await exchange(client(), IP.plainVip, 80, Buffer.from('to plain'));
  t.is(viaVip.received.toString(), 'to plain');
  const direct = await exchange(client(), IP.plain, 9090, Buffer.from('direct'));
  t.is(direct.received.toString(), 'direct');
  const unknown = await exchange(client(), IP.unknown, 9090, Buffer.from('nobody knows me'));
  t.is(unknown.received.toString(), 'nobody knows me');
  // ztunnel writes the line after its side closed, which may be just after the app saw the close.
  const complete = (pred: (l: Record<string, unknown>) => boolean) =>
    eventually('access log line', () => mesh.zt('client').lines('connection complete').find(pred));
  const plainLine = await complete((l) => l['dst.addr'] === `${IP.plain}:9090` && !!l['dst.service']);
  t.is(plainLine['dst.hbone_addr'], undefined);
  t.is(plainLine['src.identity'], undefined); // no mTLS, so no identity claimed
  t.truthy(await complete((l) => l['dst.addr'] === `${IP.unknown}:9090` && !l['dst.workload']));
});

test.serial("connections to ztunnel's own ports are refused", async (t) => {
  // From the app, 127.0.0.1 is not redirected; its own pod IP is: 15001 there would loop into ztunnel.
  const r = await exchange(client(), IP.client, 15001, Buffer.from('loop?'));
  t.is(r.received.length, 0);
  t.truthy(r.error);
});

test.serial('/config_dump lists what the local file declares', async (t) => {
  const dump = JSON.parse((await httpIn(client(), 'GET', 15000, '/config_dump')).body) as {
    workloads: { name: string; uid: string; workloadIps: string[] }[];
    services: { hostname: string; vips: string[]; endpoints: unknown[] }[];
    policies: unknown[];
    certificates: { identity: string; state: string }[];
  };
  t.deepEqual(dump.workloads.map((w) => w.name).sort(), ['client', 'plain', 'server1', 'server2']);
  t.is(dump.workloads.find((w) => w.name === 'client')!.uid, 'Kubernetes//v1/Pod/default/client');
  const echo = dump.services.find((s) => s.hostname === ECHO_HOST)!;
  t.deepEqual(echo.vips, [`/${IP.echoVip}`]);
  t.is(echo.endpoints.length, 2);
  t.deepEqual(dump.policies, []);
  t.truthy(dump.certificates.find((c) => c.identity === ID.client && c.state === 'Available'));
});

test.serial('streams share pooled HBONE connections', async (t) => {
  for (let i = 0; i < 20; i++) t.is((await exchange(client(), IP.server2, 8080, Buffer.from(`n${i}`))).received.toString(), `n${i}`);
  // Every tunnel to server2 went over the one pooled connection (from ztunnel's own socket, so no redirect).
  const hbone = client().exec('ss', '-Htn', 'state', 'established', 'dst', `${IP.server2}:15008`).trim().split('\n').filter(Boolean);
  t.is(hbone.length, 1);
});

test.serial('SOCKS5 on 127.0.0.1:15080 tunnels to the named destination', async (t) => {
  const s = connectTcp({ netnsFd: client().fd, host: '127.0.0.1', port: 15080, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((resolve) => s.on('close', () => resolve()));
  await new Promise<void>((resolve, reject) => (s.once('connect', resolve), s.once('error', reject)));
  const [a, b, c, d] = IP.server1.split('.').map(Number) as [number, number, number, number];
  // greeting (no auth), then CONNECT IPv4 server1:8080, then the payload; the proxy answers 05 00 and 05 00 ... .
  // Greeting and request in one segment: the proxy must keep what follows the greeting.
  s.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, a, b, c, d, 8080 >> 8, 8080 & 0xff]));
  await eventually('SOCKS5 replies', () => Buffer.concat(chunks).length >= 12);
  s.end('through socks');
  await closed;
  const all = Buffer.concat(chunks);
  t.deepEqual([...all.subarray(0, 4)], [5, 0, 5, 0]);
  t.is(all.subarray(12).toString(), 'through socks');
  const line = await eventually('socks access log', () =>
    mesh.zt('client').lines('connection complete').find((l) => String(l['src.addr']).startsWith('127.0.0.1:') && l['dst.addr'] === `${IP.server1}:8080`),
  );
  t.is(line['dst.identity'], ID.server);
});
