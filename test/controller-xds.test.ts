// The control plane end to end: Kubernetes objects in the embedded API server -> controller -> delta xDS -> the
// shared-mode ztunnels of a two-node lab cluster, which then carry traffic between the pods.
import type { CoreV1Api, KubernetesObject } from '@kubernetes/client-node';
import test from 'ava';
import net from 'node:net';
import { ADDRESS_TYPE_URL } from '../protos/index.js';
import { echoServer, exchange, holdOpen, httpIn } from './lab/apps.js';
import { Cluster } from './lab/cluster.js';
import { LAB_XDS_ENV, LabControlPlane } from './lab/control-plane.js';
import { eventually } from './lab/ztunnel-proc.js';

const cp = new LabControlPlane();
let core: CoreV1Api;
const servers: net.Server[] = [];
const cluster = new Cluster(
  {
    nodes: [
      { name: 'node1', pods: [{ name: 'client', namespace: 'shop', serviceAccount: 'sleep', enrolled: true }, { name: 'server-a', namespace: 'shop', serviceAccount: 'echo', enrolled: true }] },
      { name: 'node2', pods: [{ name: 'server-b', namespace: 'shop', serviceAccount: 'echo', enrolled: true }] },
    ],
  },
  { env: LAB_XDS_ENV },
);

const createReadyPod = (name: string, app: string) => cp.runPod(cluster.pod(name), { app });

type Dump = { workloads: { name: string; status: string; services: Record<string, unknown> }[]; services: { hostname: string; endpoints: unknown[] }[] };
const dump = async (node: string) => JSON.parse((await httpIn(cluster.node(node).ns, 'GET', 15000, '/config_dump')).body) as Dump;
const addressPushes = () =>
  cp.controller!.xds.debugState().connections.map((c) => (c.types as Record<string, { pushes: number }>)[ADDRESS_TYPE_URL]?.pushes ?? 0);
let vip = '';

test.before(async () => {
  await cp.start([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: 'shop' }, spec: { selector: { app: 'echo' }, ports: [{ port: 80, targetPort: 8080 }] } } as KubernetesObject,
  ]);
  core = cp.core!;
  vip = (await core.readNamespacedService({ name: 'echo', namespace: 'shop' })).spec!.clusterIP!;
  // Each node's ztunnel dials 127.0.0.1:15010 in its own netns; relay that to the controller on this process's loopback.
  const started = cluster.start();
  for (const node of ['node1', 'node2']) await cp.relay(await eventually(`netns of ${node}`, () => { try { return cluster.node(node).ns; } catch { return undefined; } }));
  await started;
  for (const p of ['server-a', 'server-b']) servers.push(await echoServer(cluster.pod(p).ns, '0.0.0.0', 8080));
});

test.after.always(async () => {
  for (const s of servers) s.close();
  await cluster.cleanup();
  await cp.stop();
});

test.serial('pods created and made ready through the API reach both ztunnels, and traffic flows over the VIP', async (t) => {
  await createReadyPod('client', 'sleep');
  await createReadyPod('server-a', 'echo');
  await createReadyPod('server-b', 'echo');
  for (const node of ['node1', 'node2']) {
    const d = await eventually(`${node} sees all pods`, async () => {
      const x = await dump(node);
      return x.workloads.length === 3 && x.services.find((s) => s.hostname === 'echo.shop.svc.cluster.local')?.endpoints.length === 2 ? x : undefined;
    });
    t.true(d.workloads.every((w) => w.status === 'Healthy'));
  }
  for (let i = 0; i < 12; i++) {
    const r = await exchange(cluster.pod('client').ns, vip, 80, Buffer.from(`call ${i}`));
    t.is(r.received.toString(), `call ${i}`);
  }
  // Access-log lines are written when the ztunnel closes both sides, possibly after the client has its answer.
  const inbound = () => ['node1', 'node2'].flatMap((node) => cluster.zt(node).lines('connection complete').filter((l) => l.direction === 'inbound'));
  const seen = await eventually('an inbound line per call', () => inbound().length >= 12 && inbound());
  t.deepEqual([...new Set(seen.map((l) => String(l['dst.workload'])))].sort(), ['server-a', 'server-b']);
  const line = cluster.zt('node1').lines('connection complete').find((l) => l.direction === 'outbound');
  t.is(line?.['src.identity'], 'spiffe://cluster.local/ns/shop/sa/sleep');
  // The controller's debug endpoint lists both ztunnels with their node names; metrics count the pushes.
  const get = async (path: string) => (await fetch(`http://127.0.0.1:${cp.controller!.monitoringPort}${path}`)).text();
  const debug = JSON.parse(await get('/debug/connections')) as { connections: { node: { metadata?: Record<string, unknown>; id: string } }[] };
  t.is(debug.connections.length, 2);
  t.regex(await get('/metrics'), /pilot_xds_pushes/);
});

test.serial('a relabel and a deletion each arrive as one delta and change what ztunnel routes to', async (t) => {
  await new Promise((r) => setTimeout(r, 300)); // let earlier pushes settle
  const before = addressPushes();
  const pod = await core.readNamespacedPod({ name: 'server-b', namespace: 'shop' });
  pod.metadata!.labels = { app: 'other' };
  await core.replaceNamespacedPod({ name: 'server-b', namespace: 'shop', body: pod });
  await eventually('server-b leaves the service', async () =>
    (await dump('node1')).services.find((s) => s.hostname === 'echo.shop.svc.cluster.local')?.endpoints.length === 1);
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(addressPushes(), before.map((n) => n + 1), 'one push per ztunnel for one pod change');
  for (let i = 0; i < 6; i++) t.is((await exchange(cluster.pod('client').ns, vip, 80, Buffer.from('x'))).received.toString(), 'x');
  await core.deleteNamespacedPod({ name: 'server-b', namespace: 'shop' });
  await eventually('server-b gone from node1', async () => !(await dump('node1')).workloads.some((w) => w.name === 'server-b'));
  t.pass();
});

test.serial('with the controller gone, ztunnels keep serving on their last state', async (t) => {
  const held = await holdOpen(cluster.pod('client').ns, cluster.pod('server-a').ip, 8080);
  await cp.controller!.stop();
  const echoed = new Promise<string>((resolve) => held.once('data', (c: Buffer) => resolve(c.toString())));
  held.write('still');
  t.is(await echoed, 'still');
  held.destroy();
  t.is((await exchange(cluster.pod('client').ns, vip, 80, Buffer.from('new'))).received.toString(), 'new');
});
