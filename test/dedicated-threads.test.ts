// Dedicated mode with ZTUNNEL_WORKER_THREADS=2: the proxy thread shares ztunnel's ports with the main thread through
// SO_REUSEPORT. Connections are served by both, a drain waits for the ones held on either thread, and at its deadline
// closes them on both, each with its access-log line.
import test from 'ava';
import type net from 'node:net';
import { echoServer, holdOpen, httpIn } from './lab/apps.js';
import { DedicatedMesh, type HostSpec } from './lab/dedicated.js';
import { counter, HOSTS, IP, meshConfig } from './lab/fixtures.js';
import { echoes, within } from './lab/waits.js';
import { eventually, ZtunnelProc } from './lab/ztunnel-proc.js';

const mesh = new DedicatedMesh();
const handles: (net.Server | net.Socket)[] = [];

test.after.always(async () => {
  for (const h of handles) 'destroy' in h ? h.destroy() : h.close();
  await mesh.cleanup();
});

test.serial('connections spread over both threads; SIGTERM waits for those held on either thread, then exit 0', async (t) => {
  const hosts: HostSpec[] = HOSTS.filter((h) => h.name === 'client' || h.name === 'server1');
  await mesh.start(hosts, meshConfig(), { ZTUNNEL_WORKER_THREADS: '2', CONNECTION_TERMINATION_DEADLINE: '20s' });
  handles.push(await echoServer(mesh.host('server1'), IP.server1, 8080));
  const zt = mesh.zt('client');

  const N = 12;
  const held: net.Socket[] = [];
  for (let i = 0; i < N; i++) {
    const s = await within(holdOpen(mesh.host('client'), IP.server1, 8080), 10_000, `connection ${i}`);
    handles.push(s);
    held.push(s);
    t.is(await echoes(s, `hello ${i}`), `hello ${i}`);
  }
  const metrics = (await httpIn(mesh.host('client'), 'GET', 15020, '/stats/prometheus')).body;
  t.is(counter(metrics, 'istio_tcp_connections_opened_total', { reporter: 'source', destination_workload: 'server1' }), N, 'opened, summed over the threads');

  process.kill(zt.child.pid!, 'SIGTERM');
  const draining = await eventually('draining log line', () => zt.lines('draining')[0]);
  t.is(draining.open, N, 'open connections counted on both threads');
  for (const [i, s] of held.entries()) t.is(await echoes(s, `during drain ${i}`), `during drain ${i}`);
  t.is(zt.child.exitCode, null, 'still draining while connections are open');

  for (const s of held) s.end();
  t.is(await within(zt.exited, 15_000, 'ztunnel exit after the last connection ended'), 0);
  const done = zt.lines('connection complete');
  t.is(done.length, N);
  t.deepEqual([...new Set(done.map((l) => (l.thread as number | undefined) ?? 0))].sort(), [0, 1], 'served by both threads');
  t.true(done.every((l) => l.error === undefined));
  t.is(zt.lines('drain deadline reached; closing remaining connections').length, 0);
});

test.serial('at the drain deadline, connections held on both threads are closed, and each one is logged before exit', async (t) => {
  // A new client ztunnel (the first test's has exited) with a 1 s drain deadline.
  const client = HOSTS.find((h) => h.name === 'client')!;
  const zt = new ZtunnelProc(mesh.host('client'), mesh.lab.dir, 'client-deadline', {
    PROXY_MODE: 'dedicated',
    PROXY_WORKLOAD_INFO: `${client.mesh!.namespace}/client/${client.mesh!.serviceAccount}`,
    LOCAL_XDS_PATH: mesh.configPath,
    LOCAL_CA_CERT: mesh.caCert,
    LOCAL_CA_KEY: mesh.caKey,
    NODE_NAME: 'client',
    ZTUNNEL_WORKER_THREADS: '2',
    CONNECTION_TERMINATION_DEADLINE: '1s',
  });
  mesh.ztunnels.set('client', zt); // stopped by the cleanup if the test fails
  await zt.ready();
  const N = 12;
  for (let i = 0; i < N; i++) {
    const s = await within(holdOpen(mesh.host('client'), IP.server1, 8080), 10_000, `connection ${i}`);
    handles.push(s);
    s.on('error', () => {}); // reset at the deadline
    t.is(await echoes(s, `held ${i}`), `held ${i}`);
  }
  process.kill(zt.child.pid!, 'SIGTERM');
  t.is(await within(zt.exited, 15_000, 'ztunnel exit after the deadline'), 0);
  const threadsOf = (lines: Record<string, unknown>[]) => [...new Set(lines.map((l) => (l.thread as number | undefined) ?? 0))].sort();
  t.deepEqual(threadsOf(zt.lines('drain deadline reached; closing remaining connections')), [0, 1], 'each thread reached it');
  const done = zt.lines('connection complete');
  t.is(done.length, N, 'every connection closed at the deadline has its access-log line, also on the proxy thread');
  t.deepEqual(threadsOf(done), [0, 1], 'held on both threads');
  t.true(done.every((l) => typeof l.error === 'string'), 'closed, not ended by the client');
});
