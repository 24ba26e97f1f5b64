// End to end, shared (in-pod) mode: one ztunnel per node serves the enrolled pods of its node from listeners inside
// their network namespaces. Traffic: pod -> pod over a service VIP and pod IPs (same node and cross node), peers
// outside the mesh, load balancing, and calls to ztunnel's own ports. One cluster for the whole file.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { exchange, httpIn, listenIn, nameServer, sha256, type Exchange } from './lab/apps.js';
import { Cluster } from './lab/cluster.js';
import type { Netns } from './lab/netns.js';
import { eventually } from './lab/ztunnel-proc.js';
import { counter, INPOD_CLUSTER, INPOD_VIP } from './lab/fixtures.js';

const VIP = INPOD_VIP;
const HOST = { echo: 'echo.default.svc.cluster.local', who: 'who.default.svc.cluster.local', plain: 'plain.legacy.svc.cluster.local' } as const;
const ID = { sleep: 'spiffe://cluster.local/ns/default/sa/sleep', echo: 'spiffe://cluster.local/ns/default/sa/echo' } as const;
const M = {
  opened: 'istio_tcp_connections_opened_total',
  closed: 'istio_tcp_connections_closed_total',
  received: 'istio_tcp_received_bytes_total',
  sent: 'istio_tcp_sent_bytes_total',
} as const;
const MiB = 1024 * 1024;

const cluster = new Cluster(INPOD_CLUSTER);

/** What an echo app saw of one connection: the peer address and the first bytes (a per-call tag). */
interface Accepted {
  server: string;
  remote?: string;
  head: string;
  bytes: number;
}
const accepted: Accepted[] = [];
const servers: net.Server[] = [];

/** An echo app that records every connection it accepts. */
function recordingEcho(pod: string, port: number): Promise<net.Server> {
  return listenIn(cluster.pod(pod).ns, '0.0.0.0', port, (s) => {
    const rec: Accepted = { server: pod, remote: s.remoteAddress, head: '', bytes: 0 };
    accepted.push(rec);
    s.on('data', (c: Buffer) => {
      if (rec.head.length < 32) rec.head += c.subarray(0, 32 - rec.head.length).toString('latin1');
      rec.bytes += c.length;
    });
    s.pipe(s);
  });
}

test.before(async () => {
  await cluster.start();
  for (const p of ['server-a', 'server-b']) {
    servers.push(await recordingEcho(p, 8080));
    servers.push(await nameServer(cluster.pod(p).ns, '0.0.0.0', 7070, p));
  }
  servers.push(await recordingEcho('plain-server', 9090));
});

test.after.always(async () => {
  for (const s of servers) s.close();
  await cluster.cleanup();
});

const ns = (pod: string) => cluster.pod(pod).ns;
const ip = (pod: string) => cluster.pod(pod).ip;
const complete = (node: string) => cluster.zt(node).lines('connection complete');
const metrics = async (node: string) => (await httpIn(cluster.node(node).ns, 'GET', 15020, '/stats/prometheus')).body;
const tail = (node: string) => `\n--- ${node} ztunnel log ---\n${cluster.zt(node).log().slice(-3000)}`;

type Call = Exchange;

/** Connect from inside `from`, send `payload`, half-close, collect everything until the connection closes (bounded). */
const call = (from: Netns, host: string, port: number, payload: Buffer | string = Buffer.alloc(0), timeoutMs = 15_000): Promise<Call> =>
  exchange(from, host, port, payload, timeoutMs);

let seq = 0;
/** A payload that starts with a unique tag, so the echo app's record tells which replica got it. */
function tagged(size: number): { tag: string; payload: Buffer } {
  const tag = `#${++seq}-${randomBytes(4).toString('hex')}|`;
  const payload = Buffer.concat([Buffer.from(tag), randomBytes(Math.max(0, size - tag.length))]);
  return { tag, payload };
}

const acceptedFor = (tag: string) => eventually(`the echo app's record of ${tag}`, () => accepted.find((a) => a.head.startsWith(tag)));

/** TCP ports listening in a namespace. */
function listening(n: Netns): number[] {
  const ports = n
    .exec('ss', '-Htln')
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[3])
    .filter((a): a is string => !!a)
    .map((a) => Number(a.slice(a.lastIndexOf(':') + 1)));
  return [...new Set(ports)].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------------------------
// Where the listeners are

test.serial('ztunnel listens inside each enrolled pod (15001/15006/15008); not in pods outside the mesh, not on the node', (t) => {
  for (const p of ['client', 'server-a', 'server-b']) t.deepEqual(listening(ns(p)).filter((x) => x > 15000 && x < 15100), [15001, 15006, 15008], p);
  t.deepEqual(listening(ns('outsider')), []);
  t.deepEqual(listening(ns('plain-server')), [9090]);
  for (const n of ['node1', 'node2']) t.deepEqual(listening(cluster.node(n).ns), [15000, 15020, 15021], n);
  const admin = cluster.node('node1').ns.exec('ss', '-Htln', 'sport = :15000');
  t.regex(admin, /127\.0\.0\.1:15000/, 'admin on localhost only');
});

// ---------------------------------------------------------------------------------------------------------------
// 1. pod -> pod inside the mesh

test.serial('pod -> service VIP reaches the replica on the same node and the one on the other node, byte-exact; the app sees the client pod IP', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 40 && seen.size < 2; i++) {
    const { tag, payload } = tagged(1000 + i);
    const r = await call(ns('client'), VIP.echo, 80, payload);
    t.is(r.error, undefined);
    t.true(r.received.equals(payload), `echo of ${payload.length} bytes came back as ${r.received.length} bytes`);
    const acc = await acceptedFor(tag);
    t.is(acc.remote, ip('client'), 'original source kept');
    t.is(acc.bytes, payload.length);
    seen.add(acc.server);
  }
  t.deepEqual([...seen].sort(), ['server-a', 'server-b']);
});

for (const size of [0, 8 * MiB]) {
  test.serial(`${size} bytes over the VIP, byte-exact`, async (t) => {
    const before = accepted.length;
    const { tag, payload } = size ? tagged(size) : { tag: '', payload: Buffer.alloc(0) };
    const r = await call(ns('client'), VIP.echo, 80, payload, 60_000);
    t.is(r.error, undefined);
    t.is(r.received.length, size);
    t.is(sha256(r.received), sha256(payload));
    const acc = size ? await acceptedFor(tag) : await eventually('the app saw the connection', () => accepted.slice(before).find((a) => a.server !== 'plain-server'));
    t.is(acc.remote, ip('client'));
    t.is(acc.bytes, size);
  });
}

for (const [where, server] of [['same node', 'server-a'], ['cross node', 'server-b']] as const) {
  test.serial(`pod -> pod IP, ${where}: 0 B, 1 B and 8 MiB byte-exact; the app sees the client pod IP`, async (t) => {
    for (const size of [0, 1, 8 * MiB]) {
      const before = accepted.length;
      const payload = size > 1 ? tagged(size).payload : Buffer.alloc(size, 0x5a);
      const r = await call(ns('client'), ip(server), 8080, payload, 60_000);
      t.is(r.error, undefined, `${size} B`);
      t.is(r.received.length, size);
      t.is(sha256(r.received), sha256(payload));
      const acc = await eventually(`${server} saw the ${size} B connection`, () => accepted.slice(before).find((a) => a.server === server));
      t.is(acc.remote, ip('client'));
      t.is(acc.bytes, size);
    }
  });
}

test.serial('identities in the access logs of both nodes\' ztunnels, same node and cross node', async (t) => {
  for (const [server, node] of [['server-a', 'node1'], ['server-b', 'node2']] as const) {
    const inboundBefore = complete(node).length;
    const msg = `who is calling ${server}?`;
    const r = await call(ns('client'), ip(server), 8080, msg);
    t.is(r.received.toString(), msg);
    const out = await eventually(`outbound line on node1${tail('node1')}`, () => complete('node1').find((l) => l['src.addr'] === `${ip('client')}:${r.localPort}`));
    t.like(out, {
      direction: 'outbound',
      'src.identity': ID.sleep,
      'dst.identity': ID.echo,
      'src.workload': 'client',
      'dst.workload': server,
      'dst.addr': `${ip(server)}:8080`,
      'dst.hbone_addr': `${ip(server)}:15008`,
      bytes_sent: msg.length,
      bytes_recv: msg.length,
    });
    t.is(out.error, undefined);
    // Inbound lines carry the tunnel's address, not the app's: this call is the one with its byte counts.
    const inb = await eventually(`inbound line on ${node}${tail(node)}`, () =>
      complete(node)
        .slice(inboundBefore)
        .find((l) => l.direction === 'inbound' && l['dst.addr'] === `${ip(server)}:8080` && l.bytes_recv === msg.length),
    );
    t.like(inb, { 'src.identity': ID.sleep, 'dst.identity': ID.echo, 'src.workload': 'client', 'dst.workload': server, bytes_recv: msg.length, bytes_sent: msg.length });
    // The tunnel left the client pod's netns with the client pod's IP.
    t.true(String(inb['src.addr']).startsWith(`${ip('client')}:`), String(inb['src.addr']));
    t.is(inb.error, undefined);
  }
  // The VIP's hostname shows up on the outbound side.
  const r = await call(ns('client'), VIP.echo, 80, 'via the service');
  const out = await eventually('outbound line for the VIP call', () => complete('node1').find((l) => l['src.addr'] === `${ip('client')}:${r.localPort}`));
  t.is(out['dst.service'], HOST.echo);
});

test.serial('metrics: destination_service and identities on both sides (source on the client\'s node, destination on the server\'s), bytes exact', async (t) => {
  const src = { reporter: 'source', source_workload: 'client', source_principal: ID.sleep, destination_service: HOST.echo, destination_principal: ID.echo, connection_security_policy: 'mutual_tls' };
  const dst = (w: string) => ({
    reporter: 'destination', destination_workload: w, destination_service: HOST.echo, source_workload: 'client', source_principal: ID.sleep,
    destination_principal: ID.echo, connection_security_policy: 'mutual_tls',
  });
  const side = (text: string, labels: Record<string, string>) => ({
    opened: counter(text, M.opened, labels), closed: counter(text, M.closed, labels), received: counter(text, M.received, labels), sent: counter(text, M.sent, labels),
  });
  const snapshot = async () => {
    const [m1, m2] = await Promise.all([metrics('node1'), metrics('node2')]);
    return { src: side(m1, src), 'server-a': side(m1, dst('server-a')), 'server-b': side(m2, dst('server-b')) };
  };
  // Start from a quiet state: every connection of the earlier tests has been counted as closed on both sides.
  const before = await eventually('earlier connections all closed', async () => {
    const s = await snapshot();
    return s.src.opened === s.src.closed && s['server-a'].opened === s['server-a'].closed && s['server-b'].opened === s['server-b'].closed ? s : undefined;
  });
  const calls = { 'server-a': 0, 'server-b': 0 };
  const bytes = { 'server-a': 0, 'server-b': 0 };
  for (let i = 0; i < 40 && (calls['server-a'] < 2 || calls['server-b'] < 2); i++) {
    const { tag, payload } = tagged(5000 + 17 * i);
    const r = await call(ns('client'), VIP.echo, 80, payload);
    t.true(r.received.equals(payload));
    const server = (await acceptedFor(tag)).server as 'server-a' | 'server-b';
    calls[server]++;
    bytes[server] += payload.length;
  }
  const n = calls['server-a'] + calls['server-b'];
  const total = bytes['server-a'] + bytes['server-b'];
  const after = await eventually('every close counted on both nodes', async () => {
    const s = await snapshot();
    return s.src.closed - before.src.closed >= n && (['server-a', 'server-b'] as const).every((w) => s[w].closed - before[w].closed >= calls[w]) ? s : undefined;
  });
  t.log(`calls: ${JSON.stringify(calls)}, bytes: ${JSON.stringify(bytes)}`);
  t.is(after.src.opened - before.src.opened, n);
  t.is(after.src.closed - before.src.closed, n);
  t.is(after.src.received - before.src.received, total);
  t.is(after.src.sent - before.src.sent, total);
  for (const w of ['server-a', 'server-b'] as const) {
    t.is(after[w].opened - before[w].opened, calls[w], w);
    t.is(after[w].closed - before[w].closed, calls[w], w);
    t.is(after[w].received - before[w].received, bytes[w], w);
    t.is(after[w].sent - before[w].sent, bytes[w], w);
  }
  // Each side reports only its own role.
  const m2 = await metrics('node2');
  t.is(counter(m2, M.opened, { reporter: 'source', source_workload: 'client' }), 0, 'node2 runs no client');
});

// ---------------------------------------------------------------------------------------------------------------
// 2. peers outside the mesh

test.serial('mesh client -> server outside the mesh (VIP and pod IP): plaintext works, no identities, policy "unknown"', async (t) => {
  const labels = { reporter: 'source', source_workload: 'client', destination_workload: 'plain-server', connection_security_policy: 'unknown', destination_principal: 'unknown' };
  const before = counter(await metrics('node1'), M.closed, labels);
  const beforeSvc = counter(await metrics('node1'), M.closed, { ...labels, destination_service: HOST.plain });
  for (const [host, port] of [[VIP.plain, 80], [ip('plain-server'), 9090]] as const) {
    const { tag, payload } = tagged(4321);
    const r = await call(ns('client'), host, port, payload);
    t.is(r.error, undefined);
    t.true(r.received.equals(payload), `${host}:${port}`);
    const acc = await acceptedFor(tag);
    t.is(acc.server, 'plain-server');
    t.is(acc.remote, ip('client'), 'the connection left the client pod with its own IP');
    const out = await eventually(`outbound line for ${host}:${port}${tail('node1')}`, () => complete('node1').find((l) => l['src.addr'] === `${ip('client')}:${r.localPort}`));
    t.like(out, { direction: 'outbound', 'dst.addr': `${ip('plain-server')}:9090`, 'dst.workload': 'plain-server', 'src.workload': 'client' });
    t.is(out['src.identity'], undefined);
    t.is(out['dst.identity'], undefined);
    t.is(out['dst.hbone_addr'], undefined);
    t.is(out.error, undefined);
    if (host === VIP.plain) t.is(out['dst.service'], HOST.plain);
  }
  const m1 = await eventually('closes counted', async () => {
    const m = await metrics('node1');
    return counter(m, M.closed, labels) - before >= 2 ? m : undefined;
  });
  t.is(counter(m1, M.closed, labels) - before, 2);
  t.is(counter(m1, M.closed, { ...labels, destination_service: HOST.plain }) - beforeSvc, 1);
  t.is(counter(m1, M.closed, { reporter: 'source', destination_workload: 'plain-server', connection_security_policy: 'mutual_tls' }), 0);
  // No ztunnel sits in front of the plain server.
  t.is(counter(await metrics('node2'), M.opened, { destination_workload: 'plain-server' }), 0);
});

test.serial('client outside the mesh -> mesh pod (same node and cross node): plaintext via 15006, orig src, no identities, policy "unknown" on the server\'s node', async (t) => {
  for (const [server, node] of [['server-a', 'node1'], ['server-b', 'node2']] as const) {
    const labels = { reporter: 'destination', source_workload: 'outsider', destination_workload: server, connection_security_policy: 'unknown', source_principal: 'unknown' };
    const before = counter(await metrics(node), M.closed, labels);
    const linesBefore = complete(node).length;
    const { tag, payload } = tagged(2345);
    const r = await call(ns('outsider'), ip(server), 8080, payload);
    t.is(r.error, undefined);
    t.true(r.received.equals(payload), server);
    const acc = await acceptedFor(tag);
    t.is(acc.server, server);
    t.is(acc.remote, ip('outsider'), 'ztunnel connected to the app with the outside client\'s IP');
    const inb = await eventually(`inbound line on ${node}${tail(node)}`, () =>
      complete(node).slice(linesBefore).find((l) => l['src.addr'] === `${ip('outsider')}:${r.localPort}`),
    );
    t.like(inb, { direction: 'inbound', 'dst.addr': `${ip(server)}:8080`, 'dst.workload': server, 'src.workload': 'outsider', bytes_recv: payload.length, bytes_sent: payload.length });
    t.is(inb['src.identity'], undefined);
    t.is(inb['dst.identity'], undefined);
    t.is(inb.error, undefined);
    const m = await eventually('close counted', async () => {
      const text = await metrics(node);
      return counter(text, M.closed, labels) > before ? text : undefined;
    });
    t.is(counter(m, M.closed, labels) - before, 1);
    t.is(counter(m, M.closed, { reporter: 'destination', source_workload: 'outsider', connection_security_policy: 'mutual_tls' }), 0);
  }
  // The outside client's own node does not report it as a source.
  t.is(counter(await metrics('node1'), M.opened, { reporter: 'source', source_workload: 'outsider' }), 0);
});

// ---------------------------------------------------------------------------------------------------------------
// 3. load balancing

test.serial('a VIP with endpoints on two nodes: both replicas answer', async (t) => {
  const seen = new Map<string, number>();
  for (let i = 0; i < 24; i++) {
    const r = await call(ns('client'), VIP.who, 80);
    t.is(r.error, undefined);
    const name = r.received.toString();
    seen.set(name, (seen.get(name) ?? 0) + 1);
  }
  t.log(`replicas: ${JSON.stringify(Object.fromEntries(seen))}`);
  t.deepEqual([...seen.keys()].sort(), ['server-a', 'server-b']);
  const both = (lines: Record<string, unknown>[]) => lines.some((l) => l['dst.addr'] === `${ip('server-a')}:7070`) && lines.some((l) => l['dst.addr'] === `${ip('server-b')}:7070`);
  const lines = await eventually('access-log lines to both replicas', () => {
    const l = complete('node1').filter((x) => x['dst.service'] === HOST.who);
    return both(l) && l;
  }).catch(() => []);
  t.true(both(lines));
});

// ---------------------------------------------------------------------------------------------------------------
// 4. ztunnel's own ports

const DATA_PORTS = [15001, 15006, 15008];
const OPS_PORTS = [15000, 15020, 15021];
/** Would get an answer from an echo, and from the admin, metrics or readiness servers. */
const PROBE = 'GET /healthz/ready HTTP/1.1\r\nHost: ztunnel\r\nConnection: close\r\n\r\n';

const noAnswer = (t: import('ava').ExecutionContext, r: Call, what: string) => {
  t.false(r.received.includes(PROBE), `${what}: the request came back (${r.error ?? 'no error'})`);
  t.false(r.received.includes('HTTP/'), `${what}: got an HTTP answer (${r.received.length} bytes)`);
};

test.serial('a pod calling ztunnel\'s own ports on localhost and on its pod IP: data ports accept and drop, admin/metrics/readiness refused', async (t) => {
  const refusedBefore = cluster.zt('node1').lines('connection failed').length;
  const outcomes: Record<string, string> = {};
  for (const host of ['127.0.0.1', ip('client')]) {
    for (const port of DATA_PORTS) {
      const r = await call(ns('client'), host, port, PROBE, 10_000);
      outcomes[`${host}:${port}`] = `${r.connected ? 'connected' : 'not connected'}, ${r.received.length} B back, ${r.error ?? 'closed'}`;
      noAnswer(t, r, `${host}:${port}`);
      t.not(r.error, 'timeout', `${host}:${port} is dropped at once, not left hanging`);
      // 15008 is a TLS server: at most a TLS alert record (content type 21) comes back, never data.
      if (port === 15008) t.true(r.received.length === 0 || r.received[0] === 0x15, `${host}:15008 sent ${r.received.length} bytes`);
      else t.is(r.received.length, 0, `${host}:${port}`);
    }
    for (const port of OPS_PORTS) {
      const r = await call(ns('client'), host, port, PROBE, 10_000);
      outcomes[`${host}:${port}`] = `${r.connected ? 'connected' : 'not connected'}, ${r.received.length} B back, ${r.error ?? 'closed'}`;
      t.false(r.connected, `${host}:${port}: nothing of ztunnel's listens in the pod`);
      t.is(r.error, 'ECONNREFUSED', `${host}:${port}`);
    }
  }
  t.log(outcomes);
  // ztunnel said why it refused the redirected ones (outbound 15001, inbound plaintext 15006).
  const ownPort = () => cluster.zt('node1').lines('connection failed').slice(refusedBefore).filter((l) => /own port/.test(String(l.error)));
  const refusals = await eventually('both refusals logged', () => ownPort().length >= 2 && ownPort()).catch(() => ownPort());
  t.true(refusals.length >= 2, JSON.stringify(refusals));
  t.is(cluster.zt('node1').child.exitCode, null);
});

test.serial('a pod outside the mesh calling an enrolled pod on ztunnel\'s ports gets nothing back', async (t) => {
  const outcomes: Record<string, string> = {};
  for (const port of [...DATA_PORTS, ...OPS_PORTS]) {
    const r = await call(ns('outsider'), ip('client'), port, PROBE, 10_000);
    outcomes[port] = `${r.connected ? 'connected' : 'not connected'}, ${r.received.length} B back, ${r.error ?? 'closed'}`;
    noAnswer(t, r, `client:${port}`);
    t.not(r.error, 'timeout', `client:${port}`);
    if (port === 15008) t.true(r.received.length === 0 || r.received[0] === 0x15);
    else t.is(r.received.length, 0, `client:${port}`);
  }
  t.log(outcomes);
});

test.serial('the node\'s admin port (15000) is unreachable from pods, in the mesh or not', async (t) => {
  const node = cluster.node('node1');
  // Captured: ztunnel passes it through from the pod, where the node's 127.0.0.1-only admin is not reachable.
  const captured = await call(ns('client'), node.ip, 15000, 'GET /config_dump HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 10_000);
  t.is(captured.received.length, 0, `admin answered a captured pod: ${captured.received.toString().slice(0, 200)}`);
  t.truthy(captured.error, 'the pod sees the failure (reset), not a clean empty answer');
  t.log(`from the enrolled pod: ${captured.connected ? 'connected' : 'not connected'}, ${captured.error}`);
  await t.throwsAsync(httpIn(ns('client'), 'GET', 15000, '/config_dump', node.ip));
  await t.throwsAsync(httpIn(ns('client'), 'POST', 15000, '/quitquitquit', node.ip));
  // Not captured: straight to the node, where nothing listens on its address.
  const direct = await call(ns('outsider'), node.ip, 15000, 'GET /config_dump HTTP/1.1\r\n\r\n', 10_000);
  t.is(direct.error, 'ECONNREFUSED');
  await t.throwsAsync(httpIn(ns('outsider'), 'POST', 15000, '/quitquitquit', node.ip));
  // ztunnel is alive and still serves.
  t.is(cluster.zt('node1').child.exitCode, null);
  t.is((await httpIn(node.ns, 'GET', 15021, '/healthz/ready')).status, 200);
  const r = await call(ns('client'), VIP.echo, 80, 'still serving');
  t.is(r.received.toString(), 'still serving');
});
