// The CNI plugin end to end, started as a container runtime starts pods: the lab runtime (test/lab/cni-runtime.ts)
// runs a conflist of the reference `bridge` + `host-local` plugins chained with ours, with the real CNI protocol,
// inside a node netns. The embedded API server holds the pods; the node agent runs in-process (its /cmdadd socket is
// the plugin's cni_event_address); a real shared-mode ztunnel in the node netns gets enrolled pods over ZDS.
// Issue 6, tests 1 and 5.
import test from 'ava';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { NodeAgent } from '../cni-plugin/agent/agent.js';
import { REDIRECTION_ANNOTATION } from '../cni-plugin/agent/enrollment.js';
import { startCniEventServer } from '../cni-plugin/agent/servers.js';
import { kubeConfigFor, start as startApi, type ApiServer } from '../waypoint-controller/apiserver/index.js';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { exchange, listenIn } from './lab/apps.js';
import { CniRuntime, type AddOutcome, type RuntimePod, type Sandbox } from './lab/cni-runtime.js';
import { Lab, type Netns } from './lab/netns.js';
import { sleep } from './lab/waits.js';
import { eventually, ZtunnelProc } from './lab/ztunnel-proc.js';

const NODE = 'node1';
const MESH = 'shop';
const PLAIN = 'plain';
const MODE = 'istio.io/dataplane-mode';
const SUBNET = '10.245.1.0/24';
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

const lab = new Lab();
const zdsSocket = join(lab.dir, 'agent-ztunnel.sock');
const cniSocket = join(lab.dir, 'agent-pluginevent.sock');
const agentLog = join(lab.dir, 'node-agent.log');
const configPath = join(lab.dir, 'ztunnel-config.yaml');
const caCert = join(lab.dir, 'root-cert.pem');
const caKey = join(lab.dir, 'root-key.pem');

let node: Netns;
let api: ApiServer;
let core: CoreV1Api;
let runtime: CniRuntime;
let ztunnel: ZtunnelProc | undefined;
const relays: net.Server[] = [];
const servers: net.Server[] = [];
/** Netns paths of pods the runtime started: the agent's lookup for running pods (after their CNI ADD). */
const started = new Map<string, string>();

interface AgentHandle {
  cni: http.Server;
  agent: NodeAgent;
  stop(): Promise<void>;
}
let agentHandle: AgentHandle | undefined;

async function startAgent(): Promise<AgentHandle> {
  const agent = new NodeAgent({
    kubeConfig: api.kubeConfig(),
    nodeName: NODE,
    zdsSocket,
    hostNetns: node,
    lookupNetns: ({ name, namespace }) => started.get(`${namespace}/${name}`),
    zdsAckTimeoutMs: 5000,
    retryMinMs: 400,
    retryMaxMs: 2000,
    logger: pino({ level: 'debug' }, pino.destination({ dest: agentLog, sync: true, append: true })),
  });
  let cni: http.Server | undefined;
  try {
    await agent.start();
    cni = await startCniEventServer(agent, cniSocket);
  } catch (e) {
    cni?.close();
    await agent.stop();
    throw e;
  }
  return {
    agent, cni,
    async stop() {
      await new Promise<void>((r) => cni.close(() => r()));
      await agent.stop();
    },
  };
}

// ---------------------------------------------------------------- the "kubelet"

interface Pod extends RuntimePod {
  serviceAccount: string;
  enrolled: boolean;
  sandbox?: Sandbox;
}
const pods = new Map<string, Pod>();

/** ztunnel's local config: every running pod a workload (HBONE when enrolled), at the IP the CNI result gave it. */
function writeZtunnelConfig(): void {
  const workloads = [...pods.values()].filter((p) => p.sandbox).map((p) => ({
    uid: `Kubernetes//v1/Pod/${p.namespace}/${p.name}`, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount,
    workloadIps: [p.sandbox!.ip], protocol: p.enrolled ? 'HBONE' : 'TCP', node: NODE,
  }));
  writeFileSync(`${configPath}.tmp`, stringify({ workloads, services: [], policies: [] }));
  renameSync(`${configPath}.tmp`, configPath);
}

/** Create the pod object (scheduled on the node), run it through the CNI runtime, report its IP and readiness. */
async function runPod(name: string, namespace: string, enrolled: boolean): Promise<{ pod: Pod; outcome: AddOutcome }> {
  const pod: Pod = { name, namespace, serviceAccount: `sa-${name}`, enrolled };
  await core.createNamespacedPod({
    namespace,
    body: { metadata: { name }, spec: { nodeName: NODE, serviceAccountName: pod.serviceAccount, containers: [{ name: 'app', image: 'app:1' }] } },
  });
  pods.set(name, pod);
  const outcome = await runtime.add(pod);
  if (outcome.ok) {
    pod.sandbox = outcome.sandbox;
    started.set(`${namespace}/${name}`, outcome.sandbox.netnsPath);
    await core.patchNamespacedPodStatus(
      { name, namespace, body: { status: { phase: 'Running', podIP: pod.sandbox.ip, podIPs: [{ ip: pod.sandbox.ip }], conditions: [{ type: 'Ready', status: 'True' }] } } },
      merge,
    );
    writeZtunnelConfig();
    servers.push(await listenIn(pod.sandbox.netns, '0.0.0.0', 8080, (s) => s.pipe(s)));
  }
  return { pod, outcome };
}

const annotation = async (p: Pod) => (await core.readNamespacedPod({ name: p.name, namespace: p.namespace })).metadata?.annotations?.[REDIRECTION_ANNOTATION];
const ambitRules = (n: Netns) => n.exec('iptables-save').split('\n').filter((l) => l.startsWith('-A ') && l.includes('AMBIT_'));
const complete = () => ztunnel!.lines('connection complete');
const tailLog = () => {
  try {
    return `\n--- node agent log ---\n${execFileSync('tail', ['-c', '3000', agentLog], { encoding: 'utf8' })}`;
  } catch {
    return '';
  }
};

async function call(from: Pod, to: Pod): Promise<{ ok: boolean; lines: Record<string, unknown>[] }> {
  const before = complete().length;
  const msg = `hello ${to.name} from ${from.name} ${Math.random()}`;
  const r = await exchange(from.sandbox!.netns, to.sandbox!.ip, 8080, Buffer.from(msg), 10_000);
  await sleep(300); // let ztunnel write its access log line (held for up to 100 ms)
  return { ok: r.received.toString() === msg, lines: complete().slice(before) };
}

const cniSummary = (o: AddOutcome) =>
  JSON.stringify(o.runs.map((r) => ({ type: r.type, code: r.code, stdout: r.stdout.slice(0, 800), stderr: r.stderr.slice(-800) })));

// ---------------------------------------------------------------- setup

test.before(async () => {
  try {
    node = lab.netns(NODE);
    await LocalCa.open(caCert, caKey, 'cluster.local');
    api = await startApi({ bookmarkIntervalMs: 200 });
    core = api.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: MESH, labels: { [MODE]: 'ambient' } } } });
    await core.createNamespace({ body: { metadata: { name: PLAIN } } });
    // The plugin runs in the node netns: relay its 127.0.0.1:<port> to the API server on ours.
    relays.push(
      await listenIn(node, '127.0.0.1', api.port, (s) => {
        const up = net.connect(api.port, '127.0.0.1');
        up.on('error', () => s.destroy());
        s.on('error', () => up.destroy());
        s.pipe(up).pipe(s);
      }),
    );
    const kubeconfig = join(lab.dir, 'ambit-cni-kubeconfig');
    writeFileSync(kubeconfig, kubeConfigFor(api.url).exportConfig());
    runtime = new CniRuntime(lab, node, {
      name: `${lab.prefix}-podnet`,
      cniVersion: '1.0.0',
      plugins: [
        {
          type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: false,
          ipam: { type: 'host-local', ranges: [[{ subnet: SUBNET }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(lab.dir, 'ipam') },
        },
        { type: 'ambit-cni', kubeconfig, cni_event_address: cniSocket, exclude_namespaces: ['kube-system'], kube_attempts: 2, cni_event_timeout_ms: 20_000 },
      ],
    });
    writeZtunnelConfig();
    agentHandle = await startAgent();
    ztunnel = new ZtunnelProc(node, lab.dir, NODE, {
      PROXY_MODE: 'shared', INPOD_UDS: zdsSocket, LOCAL_XDS_PATH: configPath, LOCAL_CA_CERT: caCert, LOCAL_CA_KEY: caKey, NODE_NAME: NODE,
    });
    await ztunnel.ready(20_000);
  } catch (e) {
    await teardown();
    throw e;
  }
});

async function teardown(): Promise<void> {
  for (const s of servers) s.close();
  await runtime?.delAllPods().catch(() => {});
  await agentHandle?.stop().catch(() => {});
  agentHandle = undefined;
  await ztunnel?.stop().catch(() => {});
  for (const r of relays) r.close();
  await api?.close().catch(() => {});
  lab.cleanup();
}
test.after.always(teardown);

// ---------------------------------------------------------------- 1. pods started through a real conflist

test.serial('pods started through a bridge + host-local + ambit-cni conflist: enrolled pods\' traffic goes through ztunnel, others\' does not', async (t) => {
  t.timeout(90_000);
  const a = await runPod('app-a', MESH, true);
  t.true(a.outcome.ok, cniSummary(a.outcome) + tailLog());
  const b = await runPod('app-b', MESH, true);
  t.true(b.outcome.ok, cniSummary(b.outcome) + tailLog());
  const c = await runPod('plain-c', PLAIN, false);
  t.true(c.outcome.ok, cniSummary(c.outcome));
  const d = await runPod('plain-d', PLAIN, false);
  t.true(d.outcome.ok, cniSummary(d.outcome));
  if (!a.outcome.ok || !b.outcome.ok || !c.outcome.ok || !d.outcome.ok) return;

  // The reference plugins did their part: addresses from host-local in the subnet, eth0 in the pod, cni0 in the node.
  for (const p of [a, b, c, d]) {
    t.regex(p.pod.sandbox!.ip, /^10\.245\.1\.\d+$/, `${p.pod.name}: IP from host-local`);
    t.regex(p.pod.sandbox!.netns.exec('ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'), new RegExp(`${p.pod.sandbox!.ip.replace(/\./g, '\\.')}/24`));
    const res = p.outcome.ok ? p.outcome.sandbox.result : {};
    t.is(res.cniVersion, '1.0.0', `${p.pod.name}: chained result version`);
    t.true((res.interfaces as unknown[] | undefined)?.length! >= 2, `${p.pod.name}: ambit-cni passed bridge's result through`);
  }
  t.regex(node.exec('ip', '-o', 'link', 'show', 'cni0'), /cni0/);
  t.is(new Set([a, b, c, d].map((p) => p.pod.sandbox!.ip)).size, 4);

  // The enrolled pods were set up before their ADD returned: rules in place and annotated.
  for (const p of [a, b]) {
    t.true(ambitRules(p.pod.sandbox!.netns).length >= 6, `${p.pod.name}: in-pod rules installed by the time ADD returned`);
    t.is(await annotation(p.pod), 'enabled', p.pod.name);
  }
  for (const p of [c, d]) {
    t.deepEqual(ambitRules(p.pod.sandbox!.netns), [], `${p.pod.name}: no rules`);
    t.is(await annotation(p.pod), undefined, p.pod.name);
  }
  const uidA = (await core.readNamespacedPod({ name: 'app-a', namespace: MESH })).metadata!.uid!;
  t.true(agentHandle!.agent.zds.events.some((e) => e.kind === 'add' && e.uid === uidA && e.outcome === 'ack'), 'ztunnel acked app-a\'s Add');
  // ztunnel serves the enrolled pods (its in-pod listeners exist) once it read the config with their IPs.
  await eventually('ztunnel listens in app-a', () => /:15001\b/.test(a.pod.sandbox!.netns.exec('ss', '-Htln')), 15_000);

  // Enrolled -> enrolled: through ztunnel (outbound from app-a, to app-b).
  const mesh = await eventually('a call through ztunnel', async () => {
    const r = await call(a.pod, b.pod);
    return r.ok && r.lines.some((l) => l.direction === 'outbound' && l['src.workload'] === 'app-a' && l['dst.workload'] === 'app-b') ? r : undefined;
  }, 20_000).catch((e: Error) => {
    throw new Error(`${e.message}\n--- ztunnel log ---\n${ztunnel!.log().slice(-3000)}${tailLog()}`);
  });
  t.true(mesh.ok);
  // Not enrolled -> not enrolled: straight, ztunnel sees nothing.
  const plain = await call(c.pod, d.pod);
  t.true(plain.ok, 'plain call echoed');
  t.deepEqual(plain.lines, [], 'ztunnel did not carry the non-enrolled pod\'s call');
  t.false(complete().some((l) => l['src.workload'] === 'plain-c'), 'no ztunnel log line names plain-c as a source');
});

// ---------------------------------------------------------------- 5. node agent down

test.serial('node agent down: ADD for an enrolled pod fails with a CNI error; for a non-enrolled pod it succeeds', async (t) => {
  t.timeout(90_000);
  await agentHandle!.stop();
  agentHandle = undefined;
  const e = await runPod('app-late', MESH, true);
  t.false(e.outcome.ok, 'ADD of an enrolled pod must fail without the node agent');
  if (!e.outcome.ok) {
    const f = e.outcome.failed;
    t.is(f.type, 'ambit-cni');
    t.not(f.code, 0, 'non-zero exit');
    t.truthy(e.outcome.error, `a CNI error JSON on stdout: ${f.stdout}`);
    t.is(typeof e.outcome.error?.code, 'number');
    t.regex(e.outcome.error?.msg ?? '', /node agent cannot be reached/);
    t.regex(e.outcome.error?.msg ?? '', /shop\/app-late/);
    // The runtime cleaned up after the failed ADD (DEL through the conflist) and released the address.
    t.deepEqual(e.outcome.cleanup.map((r) => [r.type, r.code]), [['ambit-cni', 0], ['bridge', 0]]);
  }
  const p = await runPod('plain-late', PLAIN, false);
  t.true(p.outcome.ok, cniSummary(p.outcome));
  if (p.outcome.ok) {
    t.deepEqual(ambitRules(p.outcome.sandbox.netns), []);
    const d = pods.get('plain-d')!;
    const r = await exchange(p.outcome.sandbox.netns, d.sandbox!.ip, 8080, Buffer.from('still works'), 10_000);
    t.is(r.received.toString(), 'still works');
  }
  // The agent comes back: the enrolled pod can now start.
  // ztunnel reconnects to the new agent on its own backoff (up to a few seconds after this long an outage); until
  // then the agent rightly refuses enrolled pods.
  const connects = () => (readFileSync(agentLog, 'utf8').match(/"msg":"ztunnel connected"/g) ?? []).length;
  const before = connects();
  agentHandle = await startAgent();
  await eventually('ztunnel reconnected to the restarted node agent', () => connects() > before || undefined, 30_000);
  await core.deleteNamespacedPod({ name: 'app-late', namespace: MESH });
  await eventually('app-late gone from the API', async () => !(await core.listNamespacedPod({ namespace: MESH })).items.some((x) => x.metadata?.name === 'app-late'));
  const again = await runPod('app-late', MESH, true);
  t.true(again.outcome.ok, cniSummary(again.outcome) + tailLog());
  if (again.outcome.ok) t.true(ambitRules(again.outcome.sandbox.netns).length >= 6);
});

test.serial('DEL through the runtime removes the pods\' interfaces and frees their addresses', async (t) => {
  const before = [...pods.values()].filter((p) => p.sandbox).length;
  t.true(before > 0);
  for (const p of pods.values()) {
    if (!p.sandbox) continue;
    const runs = await runtime.del(p);
    t.deepEqual(runs.map((r) => [r.type, r.code]), [['ambit-cni', 0], ['bridge', 0]], `${p.name}: ${JSON.stringify(runs.map((r) => r.stderr))}`);
    p.sandbox = undefined;
  }
  t.is(node.exec('ip', '-o', 'link', 'show', 'type', 'veth').trim(), '', 'no pod veths left on the node');
});
