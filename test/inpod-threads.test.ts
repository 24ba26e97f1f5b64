// Shared mode with ZTUNNEL_WORKER_THREADS=2: every pod gets a second set of SO_REUSEPORT listeners served by a proxy
// thread with its own replica of the state. Connections must land on both threads, and each thread must behave as the
// main thread does: traffic, counters (summed on /stats/prometheus), policy changes and pod removal.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { echoServer, exchange, holdOpen, httpIn } from './lab/apps.js';
import { Cluster } from './lab/cluster.js';
import { counter, INPOD_CLUSTER } from './lab/fixtures.js';
import { echoes } from './lab/waits.js';
import { eventually } from './lab/ztunnel-proc.js';

const cluster = new Cluster(INPOD_CLUSTER, { env: { ZTUNNEL_WORKER_THREADS: '2' } });
const servers: net.Server[] = [];
const held: net.Socket[] = [];

test.before(async () => {
  await cluster.start();
  servers.push(await echoServer(cluster.pod('server-b').ns, '0.0.0.0', 8080));
});

test.after.always(async () => {
  for (const s of held) s.destroy();
  for (const s of servers) s.close();
  await cluster.cleanup();
});

const metrics = async (node: string) => (await httpIn(cluster.node(node).ns, 'GET', 15020, '/stats/prometheus')).body;
/** Thread of a log line: proxy threads add their index, the main thread none. */
const threadOf = (line: Record<string, unknown>) => (line.thread as number | undefined) ?? 0;

/** Listening sockets on a port inside a pod's netns. */
function listeners(pod: string, port: number): number {
  const out = execFileSync('ip', ['netns', 'exec', cluster.pod(pod).ns.name, 'ss', '-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

test.serial('config_dump reports the thread count; every enrolled pod has a listener per thread on each port', async (t) => {
  const dump = JSON.parse((await httpIn(cluster.node('node1').ns, 'GET', 15000, '/config_dump')).body) as { config: { workerThreads: number } };
  t.is(dump.config.workerThreads, 2);
  for (const port of [15001, 15006, 15008]) t.is(listeners('server-b', port), 2, `port ${port}`);
  t.is(listeners('outsider', 15008), 0, 'a pod outside the mesh has none');
});

test.serial('connections spread over both threads on both nodes; every byte arrives; counters add up over the threads', async (t) => {
  const before = { src: counter(await metrics('node1'), 'istio_tcp_connections_closed_total', { reporter: 'source', destination_workload: 'server-b' }) };
  const N = 40;
  for (let i = 0; i < N; i++) {
    const payload = randomBytes(1024 + i);
    const r = await exchange(cluster.pod('client').ns, cluster.pod('server-b').ip, 8080, payload, 15_000);
    t.true(r.received.equals(payload), `connection ${i} echoed byte-exact`);
  }
  await eventually('access logs of every connection on both nodes', () =>
    cluster.zt('node1').lines('connection complete').length >= N && cluster.zt('node2').lines('connection complete').length >= N);
  for (const node of ['node1', 'node2']) {
    const threads = new Set(cluster.zt(node).lines('connection complete').map(threadOf));
    t.deepEqual([...threads].sort(), [0, 1], `${node}: connections served by the main thread and the proxy thread`);
  }
  const m1 = await metrics('node1');
  const m2 = await metrics('node2');
  t.is(counter(m1, 'istio_tcp_connections_closed_total', { reporter: 'source', destination_workload: 'server-b' }) - before.src, N);
  t.is(counter(m2, 'istio_tcp_connections_opened_total', { reporter: 'destination', source_workload: 'client', destination_workload: 'server-b' }), N);
  const bytes = N * 1024 + (N * (N - 1)) / 2;
  t.is(counter(m2, 'istio_tcp_received_bytes_total', { reporter: 'destination', source_workload: 'client', destination_workload: 'server-b' }), bytes);
});

test.serial('a DENY policy closes open connections on every thread', async (t) => {
  const N = 16;
  for (let i = 0; i < N; i++) {
    const s = await holdOpen(cluster.pod('client').ns, cluster.pod('server-b').ip, 8080);
    held.push(s);
    await echoes(s, `held-${i}`);
  }
  const closed = held.map((s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve()))));
  const before = cluster.zt('node2').lines('connection complete').length;
  cluster.setPolicies([
    { name: 'deny-sleep', namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/sleep' }] }]]] },
  ]);
  try {
    await eventually('every held connection closed', async () => (await Promise.race([Promise.all(closed).then(() => true), new Promise((r) => setTimeout(() => r(false), 200))])) as boolean, 15_000);
    const closing = cluster.zt('node2').lines('connection complete').slice(before);
    t.is(closing.length, N, 'each held connection logged once on the server node');
    t.deepEqual([...new Set(closing.map(threadOf))].sort(), [0, 1], 'closed by both threads');
    const r = await exchange(cluster.pod('client').ns, cluster.pod('server-b').ip, 8080, 'denied?', 15_000);
    t.is(r.received.length, 0, 'a new connection is denied');
  } finally {
    cluster.setPolicies([]);
  }
});

test.serial('removing a pod from the mesh closes its listeners on every thread; adding it back opens them again', async (t) => {
  await cluster.unenroll('server-b');
  await eventually('server-b listeners gone', () => listeners('server-b', 15008) === 0 && listeners('server-b', 15001) === 0);
  t.pass();
  await cluster.enroll('server-b');
  await eventually('server-b listeners back on both threads', () => listeners('server-b', 15008) === 2);
  const r = await exchange(cluster.pod('client').ns, cluster.pod('server-b').ip, 8080, 'back', 15_000);
  t.is(r.received.toString(), 'back');
});
