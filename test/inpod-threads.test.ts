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

// Tunnels from one client pod share its thread's pooled HBONE connection, so the server node's threads are told
// apart with plaintext connections from a pod outside the mesh (one TCP connection each, captured on 15006).
test.serial('connections spread over both threads on both nodes; every byte arrives; counters add up over the threads', async (t) => {
  const N = 40;
  for (const from of ['client', 'outsider']) {
    for (let i = 0; i < N; i++) {
      const payload = randomBytes(1024 + i);
      const r = await exchange(cluster.pod(from).ns, cluster.pod('server-b').ip, 8080, payload, 15_000);
      t.true(r.received.equals(payload), `${from} connection ${i} echoed byte-exact`);
    }
  }
  const lines = (node: string, workload: string) => cluster.zt(node).lines('connection complete').filter((l) => l['src.workload'] === workload);
  await eventually('access logs of every connection', () => lines('node1', 'client').length >= N && lines('node2', 'outsider').length >= N);
  t.deepEqual([...new Set(lines('node1', 'client').map(threadOf))].sort(), [0, 1], 'node1: outbound connections on both threads');
  t.deepEqual([...new Set(lines('node2', 'outsider').map(threadOf))].sort(), [0, 1], 'node2: inbound connections on both threads');
  const m1 = await metrics('node1');
  const m2 = await metrics('node2');
  t.is(counter(m1, 'istio_tcp_connections_closed_total', { reporter: 'source', source_workload: 'client', destination_workload: 'server-b' }), N);
  t.is(counter(m2, 'istio_tcp_connections_opened_total', { reporter: 'destination', source_workload: 'client', destination_workload: 'server-b' }), N);
  const bytes = N * 1024 + (N * (N - 1)) / 2;
  t.is(counter(m2, 'istio_tcp_received_bytes_total', { reporter: 'destination', source_workload: 'client', destination_workload: 'server-b' }), bytes);
  t.is(counter(m2, 'istio_tcp_received_bytes_total', { reporter: 'destination', source_workload: 'outsider', destination_workload: 'server-b' }), bytes);
});

test.serial('a DENY policy closes open connections on every thread', async (t) => {
  const conns: { from: string; sock: net.Socket }[] = [];
  for (const [from, n] of [['client', 8], ['outsider', 16]] as const) {
    for (let i = 0; i < n; i++) {
      const sock = await holdOpen(cluster.pod(from).ns, cluster.pod('server-b').ip, 8080);
      held.push(sock);
      conns.push({ from, sock });
      await echoes(sock, `held-${i}`);
    }
  }
  const closed = conns.map(({ sock }) => new Promise<void>((resolve) => (sock.destroyed ? resolve() : sock.once('close', () => resolve()))));
  const before = cluster.zt('node2').lines('connection complete').length;
  cluster.setPolicies([{ name: 'deny-8080', namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [[[{ destinationPorts: [8080] }]]] }]);
  try {
    await eventually('every held connection closed', async () => (await Promise.race([Promise.all(closed).then(() => true), new Promise((r) => setTimeout(() => r(false), 200))])) as boolean, 15_000);
    const closing = await eventually('the server node logging every close', () => {
      const l = cluster.zt('node2').lines('connection complete').slice(before);
      return l.length >= conns.length && l;
    });
    t.is(closing.length, conns.length, 'each held connection logged once on the server node');
    t.deepEqual([...new Set(closing.filter((l) => l['src.workload'] === 'outsider').map(threadOf))].sort(), [0, 1], 'closed by both threads');
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
