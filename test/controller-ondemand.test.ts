// The control plane with on-demand ztunnels (XDS_ON_DEMAND=true), end to end: Kubernetes objects in the embedded API
// server -> controller -> delta xDS -> the shared-mode ztunnels of a two-node lab cluster. Each ztunnel subscribes to
// its own pods (pinned by uid) and to the destination IPs its pods talk to, so a change reaches only the ztunnels that
// asked for it; the first connection to an unknown pod is held until the answer arrives; and a controller restart is
// survived (traffic between known pods goes on; the ztunnels reconnect and get only what changed meanwhile). A
// subscription to a Service VIP brings the service's workloads too, and pods that join the service later follow.
// The ztunnels run two threads (ZTUNNEL_WORKER_THREADS=2), so a proxy thread's lookups go through the main thread's
// xDS client too (single-threaded on-demand ztunnels are covered by dedicated-xds).
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import test from 'ava';
import net from 'node:net';
import { pino, type Logger } from 'pino';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../protos/index.js';
import { start as startApiServer, type ApiServer } from '../waypoint-controller/apiserver/index.js';
import { Controller } from '../waypoint-controller/controller/controller.js';
import type { ConnectionDebug } from '../waypoint-controller/xds/connection.js';
import { echoServer, exchange, holdOpen, httpIn, listenIn } from './lab/apps.js';
import { Cluster } from './lab/cluster.js';
import { eventually } from './lab/ztunnel-proc.js';

const NODES = ['node1', 'node2'] as const;
type NodeName = (typeof NODES)[number];

let api: ApiServer;
let controller: Controller | undefined;
let core: CoreV1Api;
/** Where the relays send the ztunnels' xDS streams: the current controller's port. */
let xdsPort = 0;
const servers: net.Server[] = [];
const relaySockets = new Set<net.Socket>();
/** Per node: while `held`, bytes from the controller to that node's ztunnel are queued instead of delivered. */
const gates = new Map<NodeName, { held: boolean; queue: (() => void)[] }>(NODES.map((n) => [n, { held: false, queue: [] }]));
/** The controller's log (debug level, JSON lines): 'xDS push' lines carry conn, typeUrl, resources, removed. */
let controllerLog: Record<string, unknown>[] = [];

const cluster = new Cluster(
  {
    nodes: [
      { name: 'node1', pods: [{ name: 'client', namespace: 'shop', serviceAccount: 'sleep', enrolled: true }, { name: 'server-a', namespace: 'shop', serviceAccount: 'echo', enrolled: true }] },
      {
        name: 'node2',
        pods: [
          { name: 'server-b', namespace: 'shop', serviceAccount: 'echo', enrolled: true },
          // Created in Kubernetes only later: in test 2 (late) and while the controller is down (offline).
          { name: 'late', namespace: 'shop', serviceAccount: 'echo', enrolled: true },
          { name: 'offline', namespace: 'shop', serviceAccount: 'echo', enrolled: true },
        ],
      },
    ],
  },
  { env: { LOCAL_XDS_PATH: '', XDS_ADDRESS: '127.0.0.1:15010', XDS_ON_DEMAND: 'true', ZTUNNEL_WORKER_THREADS: '2' } },
);

const uid = (pod: string) => `Kubernetes//v1/Pod/shop/${pod}`;
const ipName = (pod: string) => `/${cluster.pod(pod).ip}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function newController(): Controller {
  const lines: Record<string, unknown>[] = [];
  controllerLog = lines;
  const log: Logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return new Controller({
    kubeConfig: api.kubeConfig(), xdsAddress: '127.0.0.1:0', clusterId: 'Kubernetes', trustDomain: 'cluster.local', network: '',
    domainSuffix: 'cluster.local', rootNamespace: 'istio-system', log,
  });
}

async function startController(): Promise<Controller> {
  const c = newController();
  await c.start();
  controller = c;
  xdsPort = c.xdsPort;
  return c;
}

/** Relay one ztunnel's xDS connection (127.0.0.1:15010 in its node netns) to the current controller port. */
function relay(node: NodeName, s: net.Socket): void {
  const up = net.connect(xdsPort, '127.0.0.1');
  relaySockets.add(s).add(up);
  const deliver = (f: () => void) => {
    const g = gates.get(node)!;
    if (g.held) g.queue.push(f);
    else f();
  };
  up.on('error', () => s.destroy());
  s.on('error', () => up.destroy());
  up.on('close', () => deliver(() => s.destroy()));
  s.on('close', () => {
    up.destroy();
    relaySockets.delete(s);
    relaySockets.delete(up);
  });
  up.on('data', (c: Buffer) => deliver(() => s.write(c)));
  up.on('end', () => deliver(() => s.end()));
  s.pipe(up);
}

function holdGate(node: NodeName): void {
  gates.get(node)!.held = true;
}

function releaseGate(node: NodeName): void {
  const g = gates.get(node)!;
  g.held = false;
  for (const f of g.queue.splice(0)) f();
}

function podObject(name: string, labels: Record<string, string>): V1Pod {
  return {
    metadata: { name, namespace: 'shop', labels },
    spec: { nodeName: cluster.pod(name).node, serviceAccountName: cluster.pod(name).serviceAccount, containers: [{ name: 'app', image: 'app' }] },
  };
}

async function createReadyPod(name: string, labels: Record<string, string> = { app: 'echo', version: 'v1' }): Promise<void> {
  await core.createNamespacedPod({ namespace: 'shop', body: podObject(name, labels) });
  const ip = cluster.pod(name).ip;
  const current = await core.readNamespacedPod({ name, namespace: 'shop' });
  current.status = { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] };
  await core.replaceNamespacedPodStatus({ name, namespace: 'shop', body: current });
}

async function addLabels(name: string, labels: Record<string, string>): Promise<void> {
  const pod = await core.readNamespacedPod({ name, namespace: 'shop' });
  pod.metadata!.labels = { ...pod.metadata!.labels, ...labels };
  await core.replaceNamespacedPod({ name, namespace: 'shop', body: pod });
}

const setVersion = (name: string, version: string) => addLabels(name, { version });

type DumpWorkload = { name: string; status: string; canonicalRevision: string; workloadIps: string[]; services?: Record<string, unknown> };
type DumpService = { hostname: string; vips: string[]; endpoints: { workloadUid: string; status: string }[] };
type Dump = { workloads: DumpWorkload[]; services: DumpService[] };
const dump = async (node: NodeName) => JSON.parse((await httpIn(cluster.node(node).ns, 'GET', 15000, '/config_dump')).body) as Dump;
const names = async (node: NodeName) => (await dump(node)).workloads.map((w) => w.name).sort();
const revision = async (node: NodeName, pod: string) => (await dump(node)).workloads.find((w) => w.name === pod)?.canonicalRevision;

/** The controller's connections by the ztunnel's node (NODE_NAME in the xDS node metadata). */
function connections(): Map<string, ConnectionDebug> {
  const out = new Map<string, ConnectionDebug>();
  for (const c of controller?.xds.debugState().connections ?? []) if (c.node?.nodeName) out.set(c.node.nodeName, c);
  return out;
}
const addressWatch = (node: NodeName) => connections().get(node)?.types[ADDRESS_TYPE_URL];
const addressPushes = () => Object.fromEntries(NODES.map((n) => [n, addressWatch(n)?.pushes ?? 0])) as Record<NodeName, number>;
const subscribed = (node: NodeName) => addressWatch(node)?.subscribed ?? [];
// A connection's access-log line is written when the ztunnel has closed both sides, which can be after the client has
// its answer, and reaches us through a pipe: wait for it.
const outboundTo = (node: NodeName, workload: string, count = 1) =>
  eventually(`${count} outbound line(s) ${node} -> ${workload}`, () => {
    const lines = cluster.zt(node).lines('connection complete').filter((l) => l.direction === 'outbound' && l['dst.workload'] === workload);
    return lines.length >= count && lines;
  });

const echo = async (from: string, to: string, payload: string) =>
  (await exchange(cluster.pod(from).ns, cluster.pod(to).ip, 8080, Buffer.from(payload), 15_000)).received.toString();

test.before(async () => {
  api = await startApiServer({ port: 0 });
  core = api.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } } });
  await startController();
  const started = cluster.start();
  for (const node of NODES) {
    const ns = await eventually(`netns of ${node}`, () => { try { return cluster.node(node).ns; } catch { return undefined; } });
    servers.push(await listenIn(ns, '127.0.0.1', 15010, (s) => relay(node, s)));
  }
  await started;
  for (const p of ['server-a', 'server-b', 'late', 'offline']) servers.push(await echoServer(cluster.pod(p).ns, '0.0.0.0', 8080));
});

test.after.always(async () => {
  for (const n of NODES) releaseGate(n);
  for (const s of servers) s.close();
  for (const s of relaySockets) s.destroy();
  await controller?.stop();
  await cluster.cleanup();
  await api?.close();
});

test.serial('on demand: each ztunnel subscribes to its own pods and what they talk to, and a change reaches only its subscribers', async (t) => {
  // Subscribed to nothing at first but its own (ZDS-enrolled) pods, by uid; authorization stays wildcard.
  const conns = await eventually('both ztunnels connected, with both types', () => {
    const c = connections();
    return c.size === 2 && NODES.every((n) => c.get(n)?.types[ADDRESS_TYPE_URL] && c.get(n)?.types[AUTHORIZATION_TYPE_URL]) && c;
  });
  for (const node of NODES) {
    const types = conns.get(node)!.types;
    t.false(types[ADDRESS_TYPE_URL]!.wildcard, `${node}: addresses are not wildcard`);
    t.true(types[AUTHORIZATION_TYPE_URL]!.wildcard, `${node}: authorization is wildcard`);
  }
  // A ztunnel subscribes to each pod as its node agent hands it over, which can be after the stream is up.
  const own = { node1: [uid('client'), uid('server-a')].sort(), node2: [uid('late'), uid('offline'), uid('server-b')].sort() };
  for (const node of NODES) {
    await eventually(`${node} subscribed to its own pods`, () => subscribed(node).join() === own[node].join()).catch(() => {});
    t.deepEqual(subscribed(node), own[node]);
  }

  await createReadyPod('client', { app: 'sleep', version: 'v1' });
  await createReadyPod('server-a');
  await createReadyPod('server-b');
  await eventually('node1 has its own pods', async () => (await names('node1')).join() === 'client,server-a');
  await eventually('node2 has its own pod', async () => (await names('node2')).join() === 'server-b');
  for (const node of NODES) t.true((await dump(node)).workloads.every((w) => w.status === 'Healthy'));

  // node1's client talks to server-b: node1 subscribes to server-b's IP and learns it; node2 learns nothing of node1's pods.
  t.is(await echo('client', 'server-b', 'to b'), 'to b');
  t.true(subscribed('node1').includes(ipName('server-b')));
  t.deepEqual(await names('node1'), ['client', 'server-a', 'server-b']);
  t.deepEqual(await names('node2'), ['server-b']);
  const [out] = await outboundTo('node1', 'server-b');
  t.truthy(out?.['dst.hbone_addr'], 'routed over HBONE, not passed through');

  // server-a is node1's only: a change to it is one push to node1 and nothing to node2.
  await sleep(300); // let earlier pushes settle
  let before = addressPushes();
  await setVersion('server-a', 'v2');
  await eventually('node1 sees server-a v2', async () => (await revision('node1', 'server-a')) === 'v2');
  await sleep(300);
  t.deepEqual(addressPushes(), { node1: before.node1 + 1, node2: before.node2 }, 'only node1 is subscribed to server-a');
  t.false((await names('node2')).includes('server-a'));

  // server-b is node2's (pinned by uid) and node1's (subscribed by IP): a change to it reaches both, once each.
  before = addressPushes();
  await setVersion('server-b', 'v2');
  for (const node of NODES) await eventually(`${node} sees server-b v2`, async () => (await revision(node, 'server-b')) === 'v2');
  await sleep(300);
  t.deepEqual(addressPushes(), { node1: before.node1 + 1, node2: before.node2 + 1 });

  // client is node1's only.
  before = addressPushes();
  await setVersion('client', 'v2');
  await eventually('node1 sees client v2', async () => (await revision('node1', 'client')) === 'v2');
  await sleep(300);
  t.deepEqual(addressPushes(), { node1: before.node1 + 1, node2: before.node2 });
  t.false((await names('node2')).includes('client'));
});

test.serial('on demand: the first connection to an unknown pod IP is held until its address arrives, then routed over HBONE', async (t) => {
  await sleep(300);
  const before = addressPushes();
  await createReadyPod('late');
  // node2 runs late (pinned) and learns it; node1 has never heard of it and gets nothing.
  await eventually('node2 has late', async () => (await names('node2')).includes('late'));
  await sleep(300);
  t.deepEqual(addressPushes(), { node1: before.node1, node2: before.node2 + 1 });
  t.false((await names('node1')).includes('late'));
  t.false(subscribed('node1').includes(ipName('late')));

  // Hold back the controller's answers to node1 so the wait is visible: the connections are accepted by node1's ztunnel
  // (spread over both of its threads), which subscribes to late's IP and holds them.
  const HOLD_MS = 1500; // below the ztunnel's 5 s on-demand wait
  holdGate('node1');
  let settledAt = 0;
  let releasedAt = 0;
  const started = Date.now();
  const CALLS = 16;
  const calls = Promise.all(Array.from({ length: CALLS }, (_, i) => echo('client', 'late', `first contact ${i}`))).finally(() => (settledAt = Date.now()));
  try {
    await eventually('node1 subscribes to late', () => subscribed('node1').includes(ipName('late')));
    await sleep(Math.max(0, HOLD_MS - (Date.now() - started)));
    t.is(settledAt, 0, 'the connections are held while the answer is on its way');
    t.false((await names('node1')).includes('late'));
  } finally {
    releasedAt = Date.now();
    releaseGate('node1');
  }
  t.deepEqual(await calls, Array.from({ length: CALLS }, (_, i) => `first contact ${i}`));
  t.true(settledAt >= releasedAt, `completed ${settledAt - releasedAt} ms after the answer was let through`);

  // The answer reached node1's config, and the connection went to late over HBONE (not passed through after a timeout).
  t.true((await names('node1')).includes('late'));
  const out = await outboundTo('node1', 'late', CALLS);
  t.is(out.length, CALLS, 'node1 routed every connection to the workload late');
  t.true(out.every((l) => l['dst.hbone_addr'] === `${cluster.pod('late').ip}:15008`));
  t.deepEqual([...new Set(out.map((l) => (l.thread as number | undefined) ?? 0))].sort(), [0, 1], 'held and routed on both threads');
  t.is(cluster.zt('node1').lines('xds: no on-demand answer in time').length, 0);
  await eventually('node2 logs the inbound connection', () =>
    cluster.zt('node2').lines('connection complete').some((l) => l.direction === 'inbound' && l['dst.workload'] === 'late'));
  // Once known, the next connection is not held.
  const t0 = Date.now();
  t.is(await echo('client', 'late', 'again'), 'again');
  t.true(Date.now() - t0 < HOLD_MS, `second connection took ${Date.now() - t0} ms`);
});

test.serial('controller stopped: known pods keep talking; restarted: ztunnels reconnect and get only what changed meanwhile', async (t) => {
  await sleep(300);
  const subsBefore = Object.fromEntries(NODES.map((n) => [n, subscribed(n)]));
  t.true(subsBefore.node1!.includes(ipName('server-b')) && subsBefore.node1!.includes(ipName('late')));
  const held = await holdOpen(cluster.pod('client').ns, cluster.pod('server-b').ip, 8080);
  try {
    const first = new Promise<string>((resolve) => held.once('data', (c: Buffer) => resolve(c.toString())));
    held.write('before');
    t.is(await first, 'before');

    await controller!.stop();
    controller = undefined;
    for (const node of NODES)
      await eventually(`${node} notices the controller is gone`, () => cluster.zt(node).lines('xds stream ended; reconnecting').length > 0);

    // Existing and new connections between known pods, across nodes and within one.
    const echoed = new Promise<string>((resolve) => held.once('data', (c: Buffer) => resolve(c.toString())));
    held.write('during');
    t.is(await echoed, 'during');
    t.is(await echo('client', 'server-b', 'new to b'), 'new to b');
    t.is(await echo('client', 'server-a', 'new to a'), 'new to a');
    t.is(await echo('client', 'late', 'new to late'), 'new to late');

    // Changes while it is down: server-a relabelled (held by node1 only), offline created (pinned by node2 only).
    await setVersion('server-a', 'v3');
    await createReadyPod('offline');
    await sleep(200);
    t.is(await revision('node1', 'server-a'), 'v2');
    t.false((await names('node2')).includes('offline'));

    // A new controller on a new port; the relays follow it.
    await startController();
    const conns = await eventually(
      'both ztunnels reconnected',
      () => {
        const c = connections();
        return NODES.every((n) => (c.get(n)?.types[ADDRESS_TYPE_URL]?.pushes ?? 0) > 0 && (c.get(n)?.types[AUTHORIZATION_TYPE_URL]?.pushes ?? 0) > 0) ? c : undefined;
      },
      30_000,
    );
    // Same subscriptions as before the restart (pinned uids and on-demand IPs), re-sent by the ztunnels.
    for (const node of NODES) t.deepEqual(conns.get(node)!.types[ADDRESS_TYPE_URL]!.subscribed, subsBefore[node], `${node} resubscribed`);
    await eventually('node1 gets server-a v3', async () => (await revision('node1', 'server-a')) === 'v3');
    await eventually('node2 gets offline', async () => (await names('node2')).includes('offline'));
    await sleep(300);

    // The answer to each reconnect carried only what changed meanwhile.
    const firstPush = (conn: string, typeUrl: string) =>
      controllerLog.find((l) => l.msg === 'xDS push' && l.conn === conn && l.typeUrl === typeUrl) as { resources: number; removed: number } | undefined;
    const node1Addr = firstPush(conns.get('node1')!.id, ADDRESS_TYPE_URL);
    const node2Addr = firstPush(conns.get('node2')!.id, ADDRESS_TYPE_URL);
    t.log('first address push after the restart (resources/removed):', `node1 ${node1Addr?.resources}/${node1Addr?.removed}`, `node2 ${node2Addr?.resources}/${node2Addr?.removed}`);
    t.deepEqual({ resources: node1Addr?.resources, removed: node1Addr?.removed }, { resources: 1, removed: 0 }, 'node1: only server-a');
    t.deepEqual({ resources: node2Addr?.resources, removed: node2Addr?.removed }, { resources: 1, removed: 0 }, 'node2: only offline');
    for (const node of NODES) {
      const auth = firstPush(conns.get(node)!.id, AUTHORIZATION_TYPE_URL);
      t.deepEqual({ resources: auth?.resources, removed: auth?.removed }, { resources: 0, removed: 0 }, `${node}: no policy changed`);
    }
    t.deepEqual(addressPushes(), { node1: 1, node2: 1 }, 'one address push per reconnected ztunnel');
    t.deepEqual(await names('node1'), ['client', 'late', 'server-a', 'server-b']);
    t.deepEqual(await names('node2'), ['late', 'offline', 'server-b']);

    // The held connection survived it all; node1 reaches the new pod on demand through the new controller.
    const after = new Promise<string>((resolve) => held.once('data', (c: Buffer) => resolve(c.toString())));
    held.write('after');
    t.is(await after, 'after');
    t.is(await echo('client', 'offline', 'to offline'), 'to offline');
    t.true(subscribed('node1').includes(ipName('offline')));
    t.true((await names('node1')).includes('offline'));
  } finally {
    held.destroy();
  }
});

test.serial('on demand: a Service VIP brings the service with its workloads; a pod joining the service later is pushed', async (t) => {
  await sleep(300);
  // A service whose only endpoint is server-a, a node1 pod that node2 has never heard of.
  const FRONT = 'front.shop.svc.cluster.local';
  await addLabels('server-a', { tier: 'front' });
  await core.createNamespacedService({
    namespace: 'shop',
    body: { metadata: { name: 'front', namespace: 'shop' }, spec: { selector: { tier: 'front' }, ports: [{ port: 80, targetPort: 8080 as never }] } },
  });
  const vip = (await core.readNamespacedService({ name: 'front', namespace: 'shop' })).spec!.clusterIP!;
  await eventually('node1 has server-a in the service', async () =>
    Object.keys((await dump('node1')).workloads.find((w) => w.name === 'server-a')?.services ?? {}).length > 0);
  await sleep(300);
  t.false((await names('node2')).includes('server-a'));
  t.false((await dump('node2')).services.some((s) => s.hostname === FRONT));

  // server-b (node2) -> the VIP: node2 subscribes to the VIP and gets the service and its endpoint in one answer.
  const before = addressPushes();
  t.is((await exchange(cluster.pod('server-b').ns, vip, 80, Buffer.from('via vip'), 15_000)).received.toString(), 'via vip');
  t.is(addressPushes().node2, before.node2 + 1, 'one answer for the VIP, carrying the service and server-a');
  t.true(subscribed('node2').includes(`/${vip}`));
  t.true(subscribed('node2').includes(uid('server-a')), 'node2 is subscribed to the service workload');
  const d = await dump('node2');
  const svc = d.services.find((s) => s.hostname === FRONT);
  t.deepEqual(svc?.vips, [`/${vip}`]);
  t.deepEqual(svc?.endpoints.map((e) => [e.workloadUid, e.status]), [[uid('server-a'), 'Healthy']]);
  t.true(d.workloads.some((w) => w.name === 'server-a' && w.status === 'Healthy'));
  const [out] = await outboundTo('node2', 'server-a');
  t.is(out?.['dst.hbone_addr'], `${cluster.pod('server-a').ip}:15008`, 'routed to server-a over HBONE');
  t.false(cluster.zt('node2').lines('connection failed').some((l) => String(l.error).includes('no healthy endpoint')));

  // client (node1, unknown to node2) joins the service: pushed to node2, which now has two endpoints.
  await addLabels('client', { tier: 'front' });
  await eventually('node2 gets client as a second endpoint', async () =>
    (await dump('node2')).services.find((s) => s.hostname === FRONT)?.endpoints.length === 2);
  t.true((await names('node2')).includes('client'));
  t.true(subscribed('node2').includes(uid('client')));
});
