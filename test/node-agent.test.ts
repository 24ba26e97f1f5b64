// The node agent end to end, in the lab: one node (netns) with pods (netns each), the embedded API server holding
// the pods and namespaces, the agent in-process (its netns lookup maps a pod name to the lab netns, its probe SNAT
// goes to the node netns) and a real shared-mode ztunnel in the node netns connected to the agent's ZDS socket.
// Issue 6, node agent tests 2, 3, 4 and 8. One cluster for the whole file; tests run in order.
import test, { type ExecutionContext } from 'ava';
import { CoreV1Api, PatchStrategy, Watch, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { existsSync, fstatSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { NodeAgent } from '../cni-plugin/agent/agent.js';
import { REDIRECTION_ANNOTATION } from '../cni-plugin/agent/enrollment.js';
import { startCniEventServer, startOpsServer } from '../cni-plugin/agent/servers.js';
import { ipNet, type CniPluginAddEvent } from '../cni-plugin/protocol.js';
import { start as startApi, type ApiServer } from '../waypoint-controller/apiserver/index.js';
import { closeFd, connectTcp, seqpacketConnect, seqpacketRecv, seqpacketSend } from '../ztunnel/native/index.js';
import { exchange, httpIn, listenIn } from './lab/apps.js';
import { Cluster } from './lab/cluster.js';
import type { Netns } from './lab/netns.js';
import { sleep } from './lab/waits.js';
import { eventually } from './lab/ztunnel-proc.js';

const NODE = 'node1';
const SHOP = 'shop';
const PLAIN = 'plain';
const MODE = 'istio.io/dataplane-mode';
const PROBE_IP = '169.254.7.127';
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const ISTIO_MIRROR = '/work/.mirror/istio+istio/repo';
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

const cluster = new Cluster(
  {
    nodes: [
      {
        name: NODE,
        pods: [
          { name: 'app-a', namespace: SHOP, serviceAccount: 'sa-a' },
          { name: 'app-b', namespace: SHOP, serviceAccount: 'sa-b' },
          { name: 'late', namespace: SHOP, serviceAccount: 'sa-late' },
          { name: 'other', namespace: PLAIN, serviceAccount: 'default' },
        ],
      },
    ],
  },
  {
    startZtunnels: false,
    probeSnat: false, // the agent does it
    envFor: () => ({ INPOD_UDS: zdsSocket }),
  },
);
const zdsSocket = join(cluster.lab.dir, 'agent-ztunnel.sock');
const cniSocket = join(cluster.lab.dir, 'agent-pluginevent.sock');
const agentLog = join(cluster.lab.dir, 'node-agent.log');

let api: ApiServer;
let core: CoreV1Api;
/** Pods the injected lookup refuses (they must come through a CNI event). */
const cniOnly = new Set(['late']);

interface AgentHandle {
  agent: NodeAgent;
  cni: http.Server;
  ops: http.Server;
  opsPort: number;
  stop(): Promise<void>;
}
let current: AgentHandle | undefined;

async function startAgent(): Promise<AgentHandle> {
  const agent = new NodeAgent({
    kubeConfig: api.kubeConfig(),
    nodeName: NODE,
    zdsSocket,
    hostNetns: cluster.node(NODE).ns,
    lookupNetns: ({ name }) => (cniOnly.has(name) ? undefined : `/run/netns/${cluster.pod(name).ns.name}`),
    zdsAckTimeoutMs: 2000,
    retryMinMs: 400,
    retryMaxMs: 2000,
    logger: pino({ level: 'debug' }, pino.destination({ dest: agentLog, sync: true, append: true })),
  });
  let cni: http.Server | undefined;
  let ops: { server: http.Server; port: number } | undefined;
  try {
    ops = await startOpsServer(agent, 0, '127.0.0.1');
    await agent.start();
    cni = await startCniEventServer(agent, cniSocket);
  } catch (e) {
    cni?.close();
    ops?.server.close();
    await agent.stop();
    throw e;
  }
  const h: AgentHandle = {
    agent, cni, ops: ops.server, opsPort: ops.port,
    async stop() {
      h.cni.close();
      h.ops.close();
      await agent.stop();
    },
  };
  return h;
}
const agent = () => current!.agent;

// ---------------------------------------------------------------- the apps

interface App {
  server: net.Server;
  remotes: string[];
}
const apps = new Map<string, App>();
async function startApp(pod: string): Promise<void> {
  const app: App = { server: undefined as unknown as net.Server, remotes: [] };
  app.server = await listenIn(cluster.pod(pod).ns, '0.0.0.0', 8080, (s) => {
    app.remotes.push(s.remoteAddress ?? '?');
    s.pipe(s);
  });
  apps.set(pod, app);
}

// ---------------------------------------------------------------- API helpers

async function createPod(name: string, withIp = true): Promise<V1Pod> {
  const p = cluster.pod(name);
  const created = await core.createNamespacedPod({
    namespace: p.namespace,
    body: { metadata: { name }, spec: { nodeName: NODE, serviceAccountName: p.serviceAccount, containers: [{ name: 'app', image: 'app:1' }] } },
  });
  if (withIp) await setPodIp(name);
  return created;
}
async function setPodIp(name: string): Promise<void> {
  const p = cluster.pod(name);
  await core.patchNamespacedPodStatus({ name, namespace: p.namespace, body: { status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] } } }, merge);
}
const labelNs = (ns: string, value: string | null) => core.patchNamespace({ name: ns, body: { metadata: { labels: { [MODE]: value } } } }, merge);
const labelPod = (name: string, value: string | null) =>
  core.patchNamespacedPod({ name, namespace: cluster.pod(name).namespace, body: { metadata: { labels: { [MODE]: value } } } }, merge);
const readPod = (name: string) => core.readNamespacedPod({ name, namespace: cluster.pod(name).namespace });
const annotation = async (name: string) => (await readPod(name)).metadata?.annotations?.[REDIRECTION_ANNOTATION];
const uidOf = async (name: string) => (await readPod(name)).metadata!.uid!;

/** What the (lab) control plane tells ztunnel: enrolled pods speak HBONE. */
function meshConfig(enrolled: string[]): void {
  for (const p of cluster.allPods()) p.enrolled = enrolled.includes(p.name);
  cluster.writeConfig();
}

// ---------------------------------------------------------------- lab probes

const ns = (pod: string): Netns => cluster.pod(pod).ns;
/** Our rules in a netns: the -A lines of every table that mention our chains, and the fwmark rule. */
function inpodState(n: Netns): { rules: string[]; ipRules: string[] } {
  const rules = n.exec('iptables-save').split('\n').filter((l) => l.startsWith('-A ') && l.includes('AMBIT_'));
  const ipRules = n.exec('ip', '-4', 'rule', 'show').split('\n').filter((l) => l.includes('lookup 100'));
  return { rules, ipRules };
}
const allRules = (n: Netns) => n.exec('iptables-save').split('\n').filter((l) => l.startsWith('-A ') || l.startsWith('*'));
const ztPods = async () =>
  ((JSON.parse((await httpIn(cluster.node(NODE).ns, 'GET', 15000, '/config_dump')).body) as { pods?: { uid: string; name: string; state: string }[] }).pods ?? []);
const listening = (n: Netns) =>
  [...new Set(n.exec('ss', '-Htln').split('\n').map((l) => l.trim().split(/\s+/)[3]).filter((a): a is string => !!a).map((a) => Number(a.slice(a.lastIndexOf(':') + 1))))].sort(
    (a, b) => a - b,
  );
const complete = () => cluster.zt(NODE).lines('connection complete');

/** A call from one pod to another's app (port 8080); returns whether it echoed and what ztunnel logged for it. */
async function call(from: string, to: string): Promise<{ ok: boolean; ztunnelLines: Record<string, unknown>[]; remote?: string }> {
  const before = complete().length;
  const seen = apps.get(to)!.remotes.length;
  const msg = `hello ${to} from ${from} ${Math.random()}`;
  const r = await exchange(ns(from), cluster.pod(to).ip, 8080, Buffer.from(msg), 10_000);
  await sleep(300); // let ztunnel write its access log line
  return { ok: r.received.toString() === msg, ztunnelLines: complete().slice(before), remote: apps.get(to)!.remotes[seen] };
}

async function assertServed(t: ExecutionContext, pods: string[], what: string): Promise<void> {
  const uids = await Promise.all(pods.map(uidOf));
  const zp = await waitLogged(`${what}: ztunnel serves ${pods.join(', ')}`, async () => {
    const list = await ztPods();
    return uids.every((u) => list.some((p) => p.uid === u && p.state === 'Up')) ? list : undefined;
  }, 15_000);
  t.is(zp.length, pods.length, `${what}: ztunnel serves exactly the enrolled pods: ${JSON.stringify(zp)}`);
  for (const p of pods) t.deepEqual(listening(ns(p)).filter((x) => x > 15000 && x < 15100), [15001, 15006, 15008], `${what}: ${p}`);
}

async function assertMeshTraffic(t: ExecutionContext, from: string, to: string, what: string): Promise<void> {
  const before = complete().length;
  const r = await call(from, to);
  t.true(r.ok, `${what}: echo`);
  t.is(r.remote, cluster.pod(from).ip, `${what}: the app sees the client pod's IP`);
  // The access-log line is written once ztunnel has closed both sides, which can be later still.
  const carried = (l: Record<string, unknown>) => l.direction === 'outbound' && l['src.workload'] === from && l['dst.workload'] === to;
  const lines = await eventually(`${what}: outbound line`, () => complete().slice(before).some(carried) && complete().slice(before)).catch(() => complete().slice(before));
  t.true(lines.some(carried), `${what}: ztunnel carried it: ${JSON.stringify(lines)}`);
}

// ---------------------------------------------------------------- ZDS capture client (protoc-generated encodings)

interface Packet {
  data: Buffer;
  fd?: number;
}
class ZdsCapture {
  readonly fd: number;
  readonly packets: Packet[] = [];
  ack = true;
  constructor(path: string, private readonly hello: Buffer, private readonly ackBytes: Buffer) {
    this.fd = seqpacketConnect(path);
    seqpacketSend(this.fd, this.hello);
  }
  poll(): void {
    for (;;) {
      const m = seqpacketRecv(this.fd);
      if (!m || m.eof) return;
      this.packets.push({ data: Buffer.from(m.data), fd: m.fd });
      if (this.ack) seqpacketSend(this.fd, this.ackBytes);
    }
  }
  async waitFor(what: string, n: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.poll();
      if (this.packets.length >= n) return;
      if (Date.now() > deadline) throw new Error(`ZDS capture: timed out waiting for ${what} (${this.packets.length}/${n} packets)`);
      await sleep(10);
    }
  }
  close(): void {
    for (const p of this.packets) if (p.fd !== undefined) try { closeFd(p.fd); } catch {}
    try {
      closeFd(this.fd);
    } catch {}
  }
}
const captures: ZdsCapture[] = [];
const watches: AbortController[] = [];

const PY = `
import sys, json
sys.path.insert(0, sys.argv[1])
import zds_pb2 as z
from google.protobuf import json_format
req = json.load(sys.stdin)
out = {
  "hello": z.ZdsHello(version=z.V1).SerializeToString().hex(),
  "ack": z.WorkloadResponse(ack=z.Ack()).SerializeToString().hex(),
  "nack": z.WorkloadResponse(ack=z.Ack(error="boom")).SerializeToString().hex(),
  "packets": [],
}
for h in req:
  b = bytes.fromhex(h)
  m = z.WorkloadRequest()
  m.ParseFromString(b)
  d = json_format.MessageToDict(m, preserving_proto_field_name=True)
  again = json_format.ParseDict(d, z.WorkloadRequest()).SerializeToString()
  out["packets"].append({"which": m.WhichOneof("payload"), "fields": d, "canonical": again == b})
print(json.dumps(out))
`;
interface PyOut {
  hello: string;
  ack: string;
  nack: string;
  packets: { which: string | null; fields: Record<string, Record<string, unknown>>; canonical: boolean }[];
}
/** Compile a zds.proto with protoc --python_out into `dir`, and decode packets with the generated classes. */
function protocDecoder(protoDir: string, dir: string): (packets: Buffer[]) => PyOut {
  mkdirSync(dir, { recursive: true });
  execFileSync('protoc', [`--proto_path=${protoDir}`, `--python_out=${dir}`, join(protoDir, 'zds.proto')], { stdio: 'pipe' });
  const script = join(dir, 'decode.py');
  writeFileSync(script, PY);
  return (packets) =>
    JSON.parse(execFileSync('/usr/bin/python3', [script, dir], { input: JSON.stringify(packets.map((p) => p.toString('hex'))), encoding: 'utf8', timeout: 30_000 })) as PyOut;
}

// ---------------------------------------------------------------- setup

test.before(async () => {
  try {
    await cluster.start();
    api = await startApi({ bookmarkIntervalMs: 200 });
    core = api.kubeConfig().makeApiClient(CoreV1Api);
    for (const n of [SHOP, PLAIN]) await core.createNamespace({ body: { metadata: { name: n } } });
    for (const p of ['app-a', 'app-b', 'other']) {
      await createPod(p);
      await startApp(p);
    }
    await startApp('late');
    current = await startAgent();
    await cluster.startZtunnel(NODE);
  } catch (e) {
    await teardown();
    throw e;
  }
});

async function teardown(): Promise<void> {
  for (const c of captures) c.close();
  for (const w of watches) w.abort();
  for (const a of apps.values()) a.server.close();
  await current?.stop().catch(() => {});
  await cluster.cleanup();
  await api?.close().catch(() => {});
}
test.after.always(teardown);

/** eventually(), with the end of the agent's log (as of the failure) in the error. */
const waitLogged = <T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs?: number): Promise<T> =>
  eventually(what, check, timeoutMs).catch((e: Error) => {
    throw new Error(`${e.message}${tailLog()}`);
  });
const tailLog = () => `\n--- node agent log ---\n${execFileSync('tail', ['-c', '4000', agentLog], { encoding: 'utf8' })}`;

// ---------------------------------------------------------------- 2. label after start, label removed

test.serial('a namespace labelled after its pods started: pods enrolled without restart; label removed: rules gone, ZDS Del, annotation removed', async (t) => {
  t.timeout(90_000);
  // Before: nothing in the mesh.
  for (const p of ['app-a', 'app-b', 'other']) t.deepEqual(inpodState(ns(p)).rules, [], p);
  t.deepEqual(await ztPods(), []);
  const plain = await call('app-a', 'app-b');
  t.true(plain.ok);
  t.is(plain.ztunnelLines.length, 0, 'not captured before enrollment');
  const appServerBefore = apps.get('app-b')!.server;

  meshConfig(['app-a', 'app-b']);
  await labelNs(SHOP, 'ambient');
  for (const p of ['app-a', 'app-b']) {
    t.is(await waitLogged(`annotation on ${p}`, async () => ((await annotation(p)) === 'enabled' ? 'enabled' : undefined), 15_000), 'enabled');
    const st = inpodState(ns(p));
    t.true(st.rules.length >= 6, `${p}: rules installed: ${st.rules.join('\n')}`);
    t.is(st.ipRules.length, 1, `${p}: one fwmark rule`);
  }
  t.is(await annotation('other'), undefined, 'the other namespace stays out');
  t.deepEqual(inpodState(ns('other')).rules, []);
  await assertServed(t, ['app-a', 'app-b'], 'after labelling');
  t.is(apps.get('app-b')!.server, appServerBefore, 'the app kept running (no restart)');
  await assertMeshTraffic(t, 'app-a', 'app-b', 'enrolled');
  // The node's probe SNAT lists exactly the enrolled pods.
  const snat = () => allRules(cluster.node(NODE).ns).filter((l) => l.includes('AMBIT_POSTRT') && l.includes('SNAT')).map((l) => /-d (\S+)\/32/.exec(l)?.[1]).sort();
  t.deepEqual(snat(), [cluster.pod('app-a').ip, cluster.pod('app-b').ip].sort());

  // Label removed.
  const uids = await Promise.all(['app-a', 'app-b'].map(uidOf));
  await labelNs(SHOP, null);
  meshConfig([]);
  for (const p of ['app-a', 'app-b']) {
    await waitLogged(`annotation removed from ${p}`, async () => ((await annotation(p)) === undefined ? true : undefined), 15_000);
    t.deepEqual(inpodState(ns(p)), { rules: [], ipRules: [] }, `${p}: rules gone`);
  }
  for (const uid of uids) t.true(agent().zds.events.some((e) => e.kind === 'del' && e.uid === uid && e.outcome === 'ack' && e.error === ''), `ZDS Del for ${uid}`);
  await eventually('ztunnel dropped the pods', async () => ((await ztPods()).length === 0 ? true : undefined));
  t.deepEqual(snat(), []);
  const after = await call('app-a', 'app-b');
  t.true(after.ok);
  t.is(after.ztunnelLines.length, 0, 'not captured after the label went');
  t.is(agent().enrolledPods().size, 0);
});

// ---------------------------------------------------------------- 3. kubelet-style probe

test.serial('a kubelet-style probe from the node netns to an enrolled pod reaches the app directly (source 169.254.7.127)', async (t) => {
  meshConfig(['app-a', 'app-b']);
  await labelNs(SHOP, 'ambient');
  for (const p of ['app-a', 'app-b']) await waitLogged(`annotation on ${p}`, async () => ((await annotation(p)) === 'enabled' ? true : undefined), 15_000);
  await assertServed(t, ['app-a', 'app-b'], 'relabelled');
  const before = complete().length;
  const seen = apps.get('app-b')!.remotes.length;
  const reply = await new Promise<string>((resolve, reject) => {
    let got = '';
    const s = connectTcp({ netnsFd: cluster.node(NODE).ns.fd, host: cluster.pod('app-b').ip, port: 8080, allowHalfOpen: true });
    const timer = setTimeout(() => s.destroy(new Error('probe timed out')), 5000);
    s.on('data', (c: Buffer) => (got += c.toString()));
    s.on('error', (e) => (clearTimeout(timer), reject(e)));
    s.on('close', () => (clearTimeout(timer), resolve(got)));
    s.once('connect', () => s.end('GET /healthz'));
  });
  t.is(reply, 'GET /healthz');
  t.is(apps.get('app-b')!.remotes[seen], PROBE_IP, 'the app saw the probe SNAT address');
  await sleep(300);
  t.is(complete().slice(before).length, 0, 'ztunnel did not see the probe');
});

// ---------------------------------------------------------------- CNI event path

function postCmdAdd(body: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: cniSocket, path: '/cmdadd', method: 'POST', headers: { 'content-type': 'application/json' }, timeout: 20_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('timeout', () => req.destroy(new Error('cmdadd timed out')));
    req.on('error', reject);
    req.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

test.serial('CNI /cmdadd: a new pod set up from the event\'s netns, 200 only once ztunnel acked; refusals for pods outside the mesh', async (t) => {
  meshConfig(['app-a', 'app-b', 'late']);
  await createPod('late', false); // no IP yet, and the netns lookup does not know it
  const late = cluster.pod('late');
  const ev: CniPluginAddEvent = { Netns: `/run/netns/${late.ns.name}`, PodName: 'late', PodNamespace: SHOP, IPs: [{ Address: ipNet(`${late.ip}/32`), Gateway: null, Interface: null }] };
  const r = await postCmdAdd(ev);
  t.is(r.status, 200, r.text + tailLog());
  // Everything is in place when the plugin hears back.
  t.is(await annotation('late'), 'enabled');
  t.true(inpodState(late.ns).rules.length >= 6);
  const uid = await uidOf('late');
  t.true(agent().zds.events.some((e) => e.kind === 'add' && e.uid === uid && e.outcome === 'ack' && e.error === ''));
  await setPodIp('late'); // kubelet reports the IP later: no second Add
  await assertServed(t, ['app-a', 'app-b', 'late'], 'after the CNI event');
  await assertMeshTraffic(t, 'late', 'app-a', 'CNI-enrolled pod');
  t.is(agent().zds.events.filter((e) => e.kind === 'add' && e.uid === uid).length, 1);

  const notMesh = await postCmdAdd({ Netns: `/run/netns/${ns('other').name}`, PodName: 'other', PodNamespace: PLAIN, IPs: [] });
  t.is(notMesh.status, 500);
  t.regex(notMesh.text, /not enabled for ambient/);
  t.deepEqual(inpodState(ns('other')).rules, []);
  const unknown = await postCmdAdd({ Netns: '/run/netns/nope', PodName: 'ghost', PodNamespace: SHOP, IPs: [] });
  t.is(unknown.status, 500);
  t.regex(unknown.text, /not in the node agent's cache/);
  t.is((await postCmdAdd('{not json')).status, 400);
  cniOnly.delete('late'); // running now: a restarted agent finds it as it finds any running pod
});

// ---------------------------------------------------------------- 4. restarts

test.serial('node agent restart: no duplicated rules, ztunnel reconciles from the new snapshot, pods keep working', async (t) => {
  t.timeout(90_000);
  const enrolled = ['app-a', 'app-b', 'late'];
  const before = Object.fromEntries([...enrolled, 'other'].map((p) => [p, allRules(ns(p))]));
  const ipRulesBefore = Object.fromEntries(enrolled.map((p) => [p, inpodState(ns(p)).ipRules]));
  const nodeBefore = allRules(cluster.node(NODE).ns);
  const uids = await Promise.all(enrolled.map(uidOf));
  const ztConnsBefore = cluster.zt(NODE).lines().length;

  await current!.stop();
  current = undefined;
  current = await startAgent();
  // ztunnel reconnects and acks a snapshot naming every enrolled pod.
  await waitLogged(`snapshot acked by ztunnel`, () => agent().zds.snapshots >= 1, 20_000);
  const snap = agent().zds.events.filter((e) => e.snapshot && e.kind === 'add');
  t.deepEqual(snap.map((e) => e.uid).sort(), [...uids].sort());
  t.true(snap.every((e) => e.outcome === 'ack' && e.error === ''), JSON.stringify(snap));
  for (const p of [...enrolled, 'other']) t.deepEqual(allRules(ns(p)), before[p], `${p}: rules unchanged, none duplicated`);
  for (const p of enrolled) t.deepEqual(inpodState(ns(p)).ipRules, ipRulesBefore[p], `${p}: one fwmark rule`);
  t.deepEqual(allRules(cluster.node(NODE).ns), nodeBefore, 'node probe SNAT unchanged');
  for (const p of enrolled) t.is(await annotation(p), 'enabled', p);
  await assertServed(t, enrolled, 'after the agent restart');
  await assertMeshTraffic(t, 'app-a', 'app-b', 'after the agent restart');
  await assertMeshTraffic(t, 'app-b', 'late', 'after the agent restart');
  t.true(cluster.zt(NODE).lines().length > ztConnsBefore);
  // Health and metrics of the new agent.
  const get = (path: string) => fetch(`http://127.0.0.1:${current!.opsPort}${path}`);
  t.is((await get('/healthz')).status, 200);
  t.is((await get('/readyz')).status, 200);
  const m = await (await get('/metrics')).text();
  t.regex(m, /ambit_nodeagent_enrolled_pods\{state="enabled"\} 3/);
  t.regex(m, /ambit_nodeagent_zds_connections 1/);
});

test.serial('ztunnel restart: it receives the snapshot again and serves all pods', async (t) => {
  t.timeout(90_000);
  const enrolled = ['app-a', 'app-b', 'late'];
  const uids = await Promise.all(enrolled.map(uidOf));
  const conns = agent().zds.connections;
  const snaps = agent().zds.snapshots;
  await cluster.stopZtunnel(NODE);
  await cluster.startZtunnel(NODE);
  await waitLogged('a new ZDS connection with its snapshot', () => agent().zds.connections > conns && agent().zds.snapshots > snaps, 20_000);
  const latest = agent().zds.connections;
  const snap = agent().zds.events.filter((e) => e.conn === latest && e.snapshot && e.kind === 'add');
  t.deepEqual(snap.map((e) => e.uid).sort(), [...uids].sort());
  await assertServed(t, enrolled, 'after the ztunnel restart');
  await assertMeshTraffic(t, 'late', 'app-b', 'after the ztunnel restart');
  for (const p of enrolled) t.is(await annotation(p), 'enabled', p);
});

// ---------------------------------------------------------------- 8. Istio compatibility of the ZDS bytes

test.serial('ZDS packets decode with protoc-generated classes (ours and Istio\'s zds.proto) and are canonical; netns fds ride with Adds only; a lost Ack gives pending, then a retry', async (t) => {
  t.timeout(90_000);
  const ours = protocDecoder(join(REPO, 'protos'), join(cluster.lab.dir, 'py-ours'));
  const consts = ours([]);
  t.is(consts.hello, '0801');
  t.is(consts.ack, '0a00');
  const hello = Buffer.from(consts.hello, 'hex');
  const ack = Buffer.from(consts.ack, 'hex');
  const enrolled = ['app-a', 'app-b', 'late'];
  const expectAdd = async (p: string) => ({
    add: { uid: await uidOf(p), workload_info: { name: p, namespace: cluster.pod(p).namespace, service_account: cluster.pod(p).serviceAccount } },
  });
  const inode = (path: string) => statSync(path).ino;

  // 1. A capture client connects: it gets the snapshot (it is the newest connection now).
  const c1 = new ZdsCapture(zdsSocket, hello, ack);
  captures.push(c1);
  await c1.waitFor('snapshot', enrolled.length + 1);
  // 2. A pod joins while it is the newest connection: the Add comes here. We do not ack it.
  c1.ack = false;
  // Every value the annotation takes (the pending phase can be short: the agent retries at once).
  const history: (string | undefined)[] = [];
  const watch = await new Watch(api.kubeConfig()).watch(
    `/api/v1/namespaces/${PLAIN}/pods`, { fieldSelector: 'metadata.name=other' },
    (_type, obj: V1Pod) => history.push(obj.metadata?.annotations?.[REDIRECTION_ANNOTATION]),
    () => {},
  );
  watches.push(watch);
  meshConfig([...enrolled, 'other']);
  await labelPod('other', 'ambient');
  await c1.waitFor('live Add', enrolled.length + 2);
  // The Ack deadline passes: the agent drops this connection, marks the pod pending, retries on ztunnel's connection.
  await eventually('enabled after the retry', async () => ((await annotation('other')) === 'enabled' ? true : undefined), 15_000).catch((e: Error) => {
    throw new Error(`${e.message}; annotation history ${JSON.stringify(history)}${tailLog()}`);
  });
  await eventually('the watch saw it', () => history.at(-1) === 'enabled');
  const changes = history.filter((v, i) => i === 0 || v !== history[i - 1]);
  t.deepEqual(changes, [undefined, 'pending', 'enabled'], 'not annotated until acked; pending after the lost Ack; enabled after the retry');
  await assertServed(t, [...enrolled, 'other'], 'after the retried Add');
  // 3. A second capture client: snapshot again (with the new pod), then the pod leaves: the Del reaches every connection.
  const c2 = new ZdsCapture(zdsSocket, hello, ack);
  captures.push(c2);
  await c2.waitFor('second snapshot', enrolled.length + 2);
  await labelPod('other', null);
  meshConfig(enrolled);
  await c2.waitFor('Del', enrolled.length + 3);
  await waitLogged('other unenrolled', async () => ((await annotation('other')) === undefined ? true : undefined));
  t.deepEqual(inpodState(ns('other')).rules, []);

  const packets = [...c1.packets, ...c2.packets];
  const decoders: [string, (p: Buffer[]) => PyOut][] = [['ours', ours]];
  const istioProto = join(cluster.lab.dir, 'istio-proto');
  try {
    mkdirSync(istioProto, { recursive: true });
    writeFileSync(join(istioProto, 'zds.proto'), execFileSync('git', ['-C', ISTIO_MIRROR, 'show', 'HEAD:pkg/zdsapi/zds.proto'], { encoding: 'utf8' }));
    decoders.push(['istio', protocDecoder(istioProto, join(cluster.lab.dir, 'py-istio'))]);
  } catch {
    t.log('Istio mirror not available: decoding with our zds.proto only');
  }
  const otherUid = await uidOf('other');
  const snap1 = await Promise.all(enrolled.map(expectAdd));
  const snap2 = await Promise.all([...enrolled, 'other'].map(expectAdd));
  const byUid = (a: { add: { uid: string } }, b: { add: { uid: string } }) => a.add.uid.localeCompare(b.add.uid);
  for (const [which, decode] of decoders) {
    const out = decode(packets.map((p) => p.data));
    t.true(out.packets.every((p) => p.canonical), `${which}: every packet is exactly the canonical encoding of its fields`);
    const d1 = out.packets.slice(0, c1.packets.length);
    const d2 = out.packets.slice(c1.packets.length);
    const n = enrolled.length;
    t.deepEqual(d1.slice(0, n).map((p) => p.fields).sort(byUid as never), [...snap1].sort(byUid), `${which}: first snapshot`);
    t.deepEqual(d1[n]!.fields, { snapshot_sent: {} }, `${which}: SnapshotSent`);
    t.deepEqual(d1[n + 1]!.fields, await expectAdd('other'), `${which}: live Add`);
    t.deepEqual(d2.slice(0, n + 1).map((p) => p.fields).sort(byUid as never), [...snap2].sort(byUid), `${which}: second snapshot`);
    t.deepEqual(d2[n + 1]!.fields, { snapshot_sent: {} });
    t.deepEqual(d2[n + 2]!.fields, { del: { uid: otherUid } }, `${which}: Del`);
    t.deepEqual(out.packets.map((p) => p.which), [...Array(n).fill('add'), 'snapshot_sent', 'add', ...Array(n + 1).fill('add'), 'snapshot_sent', 'del']);
  }
  // The netns fd travels with each Add (and only with Adds) and is the pod's netns.
  const podByUid = new Map(await Promise.all([...enrolled, 'other'].map(async (p) => [await uidOf(p), p] as const)));
  const decoded = ours(packets.map((p) => p.data)).packets;
  packets.forEach((p, i) => {
    const d = decoded[i]!;
    if (d.which !== 'add') return t.is(p.fd, undefined, `no fd with ${d.which}`);
    t.not(p.fd, undefined, 'an Add carries the netns fd');
    const pod = podByUid.get((d.fields.add as { uid: string }).uid)!;
    t.is(fstatSync(p.fd!).ino, inode(`/run/netns/${ns(pod).name}`), `the fd is ${pod}'s netns`);
  });
  t.true(existsSync(zdsSocket));
  for (const c of captures.splice(0)) c.close();
  for (const w of watches.splice(0)) w.abort();
  // ztunnel still serves the enrolled pods.
  await assertMeshTraffic(t, 'app-a', 'late', 'after the capture clients left');
});
