// `npm run demo`: a two-node ambient mesh in network namespaces, driven by a control plane. The cluster is Kubernetes
// YAML (demo-cluster.yaml) in the embedded API server; the lab runs the Deployments' pods, the controller turns the
// objects into workload xDS, and each node's ztunnel (shared mode) gets its pods over ZDS and its config over xDS.
// Then a waypoint for the backend (demo-waypoint.ts): the controller provisions it, the lab kubelet runs its Envoy in
// a spare pod netns, and an HTTPRoute and an L7 AuthorizationPolicy act on the client's HTTP.
// Prints what happened, keeps the ztunnel logs, and removes everything (also on Ctrl-C and on failure).
import type { KubernetesObject, V1Deployment, V1Namespace, V1Service } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { exchange, httpIn, httpServer, timedHttpCalls } from './apps.js';
import { Cluster, type NodeSpec } from './cluster.js';
import { LabControlPlane } from './control-plane.js';
import { waypointDemo } from './demo-waypoint.js';
import { findEnvoy } from './envoy.js';
import { counter } from './fixtures.js';
import { LabKubelet } from './kubelet.js';
import { eventually } from './ztunnel-proc.js';

const YAML = fileURLToPath(new URL('../../../test/lab/demo-cluster.yaml', import.meta.url));
const objects = parseAllDocuments(readFileSync(YAML, 'utf8')).map((d) => d.toJS() as KubernetesObject);
const namespaces = new Map(objects.filter((o) => o.kind === 'Namespace').map((o) => [o.metadata!.name!, o as V1Namespace]));
const deployments = objects.filter((o) => o.kind === 'Deployment') as V1Deployment[];

// Spread every Deployment's replicas over the two nodes, as a scheduler would.
const NODES = ['node1', 'node2'];
const nodes: NodeSpec[] = NODES.map((name) => ({ name, pods: [] }));
const podTemplates = new Map<string, { labels: Record<string, string>; deployment: V1Deployment }>();
let slot = 0;
for (const d of deployments) {
  for (let i = 0; i < (d.spec?.replicas ?? 1); i++) {
    const name = `${d.metadata!.name}-${i + 1}`;
    const ns = d.metadata!.namespace!;
    nodes[slot++ % nodes.length]!.pods.push({
      name, namespace: ns, serviceAccount: d.spec?.template.spec?.serviceAccountName ?? 'default',
      enrolled: namespaces.get(ns)?.metadata?.labels?.['istio.io/dataplane-mode'] === 'ambient',
    });
    podTemplates.set(name, { labels: { ...d.spec?.template.metadata?.labels, 'pod-template-hash': 'lab' }, deployment: d });
  }
}
// A spare pod netns (not in the mesh, no Pod object yet) where the lab kubelet runs the waypoint's Envoy.
const SLOT = 'slot-1';
nodes[1]!.pods.push({ name: SLOT, namespace: 'backend' });

const cp = new LabControlPlane();
const ztunnelEnv = new Map<string, Record<string, string>>();
const cluster = new Cluster({ nodes }, { startZtunnels: false, envFor: (node) => ztunnelEnv.get(node) });
const ECHO = 'echo.backend.svc.cluster.local';
/** Enough calls that both pods (echo-v1-1, echo-v2-1) answer (random choice: both are missed with odds of 2 in 65536). */
const CALLS = 16;
const step = (msg: string) => console.log(`\u2022 ${msg}`);
let kubelet: LabKubelet | undefined;
const servers: http.Server[] = [];
let done = false;
async function teardown(): Promise<void> {
  if (done) return;
  done = true;
  step('tearing down the waypoint, namespaces, ztunnels and the control plane ...');
  for (const s of servers) s.close();
  await kubelet?.stop().catch(() => {});
  await cluster.cleanup().catch(() => {});
  await cp.stop().catch(() => {});
  sweepOwn();
}
/** Whatever is left of this run (a step interrupted half-way): its namespaces and every process in them. */
function sweepOwn(): void {
  try {
    for (const name of execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!)) {
      if (!name.startsWith(`${cluster.lab.prefix}-`)) continue;
      try {
        for (const pid of execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
      } catch {}
      try {
        execFileSync('ip', ['netns', 'del', name]);
      } catch {}
    }
  } catch {}
}
process.once('exit', sweepOwn);
const bail = (code: number) => {
  if (code !== 1 && !done) console.log(`\ninterrupted (${code === 130 ? 'SIGINT' : code === 143 ? 'SIGTERM' : 'SIGHUP'})`);
  if (done) {
    // A second Ctrl-C (or a teardown that hangs): remove what is left and go.
    sweepOwn();
    process.exit(code);
  }
  const force = setTimeout(() => bail(code), 20_000);
  void teardown().finally(() => {
    clearTimeout(force);
    process.exit(code);
  });
};
process.on('SIGINT', () => bail(130));
process.on('SIGTERM', () => bail(143));
process.on('SIGHUP', () => bail(129));
process.on('uncaughtException', (e) => {
  console.error(`demo failed: ${e.message}`);
  bail(1);
});
process.on('unhandledRejection', (e) => {
  console.error(`demo failed: ${(e as Error)?.message ?? String(e)}`);
  bail(1);
});

try {
  const t0 = Date.now();
  findEnvoy(); // the waypoint's Envoy (test/lab/install-deps.sh installs it): fail now rather than half-way
  step(`starting the control plane: embedded Kubernetes API server with ${objects.length} objects from demo-cluster.yaml, the controller and its CA ...`);
  await cp.start(objects);
  step('building 2 nodes and their pods (network namespaces, veths, routes, in-pod rules for ambient namespaces) ...');
  await cluster.start();
  step('running the pods: creating them in the API server and reporting their IPs and readiness ...');
  for (const p of cluster.allPods()) {
    if (p.name === SLOT) continue;
    const { labels, deployment: d } = podTemplates.get(p.name)!;
    const rs = `${d.metadata!.name}-lab`;
    await cp.runPod(p, labels, { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs, uid: rs, controller: true }] }, d.spec?.template.spec?.containers);
    if (p.name !== 'client-1') servers.push(await httpServer(p.ns, '0.0.0.0', 8080, p.name));
  }
  step('starting a ztunnel per node with a bound token: pods arrive over ZDS, config over xDS (TLS), certificates from the controller\'s CA ...');
  for (const node of NODES) {
    await cp.relay(cluster.node(node).ns);
    ztunnelEnv.set(node, await cp.ztunnelEnv(node, cluster.lab.dir));
    await cluster.startZtunnel(node);
  }
  await cp.relay(cluster.pod(SLOT).ns); // the waypoint reaches the controller at 127.0.0.1:15012, as ztunnels do
  kubelet = new LabKubelet(cp.api!, [cluster.pod(SLOT)], cluster.lab.dir);
  kubelet.start();
  const vip = ((await cp.core!.readNamespacedService({ name: 'echo', namespace: 'backend' })) as V1Service).spec!.clusterIP!;
  await eventually('the ztunnels to learn every pod', async () => {
    for (const node of NODES) {
      const d = JSON.parse((await httpIn(cluster.node(node).ns, 'GET', 15000, '/config_dump')).body) as { workloads: unknown[]; services: { hostname: string; endpoints: unknown[] }[] };
      if (d.workloads.length !== cluster.allPods().length - 1 || d.services.find((s) => s.hostname === ECHO)?.endpoints.length !== 2) return false;
    }
    return true;
  }, 20_000);
  step(`cluster ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const client = cluster.pod('client-1');
  console.log('\nCalls');
  const stats = await timedHttpCalls(client.ns, vip, 80, CALLS, Buffer.alloc(1024, 0x61));
  const line = await waitForLine('node1', (l) => l['dst.service'] === ECHO);
  console.log(
    `  frontend/client-1 (${client.ip}) -> http://echo.backend VIP ${vip}:80: ${stats.calls - stats.errors}/${stats.calls} POSTs of 1 KiB ` +
      `(latency p50 ${stats.p50Ms.toFixed(1)} ms, p99 ${stats.p99Ms.toFixed(1)} ms, each a new connection), answered by:`,
  );
  for (const who of stats.answers) console.log(`    ${who}`);
  console.log(`    mTLS over HBONE: ${line['src.identity']} -> ${line['dst.identity']}`);
  const legacy = cluster.pod('legacy-1');
  const plain = await timedHttpCalls(client.ns, legacy.ip, 8080, 1, Buffer.alloc(0));
  console.log(`  frontend/client-1 -> legacy/legacy-1 (not in the mesh): answered by ${plain.answers[0] ?? 'nobody'}, plain TCP without identity`);
  const denied = await exchange(legacy.ns, cluster.pod('echo-v1-1').ip, 8080);
  console.log(
    `  legacy/legacy-1 -> backend/echo-v1-1: ${denied.received.length === 0 ? 'denied by AuthorizationPolicy backend/only-frontend (no mesh identity)' : 'unexpectedly allowed'}`,
  );

  console.log("\nMetrics (reporter=destination, read from each node's ztunnel on :15020)");
  for (const node of NODES) {
    const text = (await httpIn(cluster.node(node).ns, 'GET', 15020, '/metrics')).body;
    const l = { reporter: 'destination', destination_service: ECHO };
    console.log(
      `  ${node}: ${ECHO}: ${counter(text, 'istio_tcp_connections_opened_total', l)} connections, ` +
        `${counter(text, 'istio_tcp_received_bytes_total', l)} bytes in, ${counter(text, 'istio_tcp_sent_bytes_total', l)} bytes out`,
    );
  }
  const debug = cp.controller!.xds.debugState();
  console.log(`\nControl plane: ${debug.connections.length} ztunnels connected over delta xDS (TLS); resources ${JSON.stringify(debug.resources)}`);
  for (const node of NODES) {
    const d = JSON.parse((await httpIn(cluster.node(node).ns, 'GET', 15000, '/config_dump')).body) as { certificates: { identity: string; state: string; certChain: { serialNumber: string; expirationTime: string }[] }[] };
    for (const c of d.certificates) console.log(`  ${node} ztunnel holds ${c.identity}: ${c.state}, serial ${c.certChain[0]?.serialNumber ?? '-'}, expires ${c.certChain[0]?.expirationTime ?? '-'}`);
  }

  await waypointDemo(cp, cluster, kubelet, vip);

  const logs = join(tmpdir(), `ambit-demo-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(logs, { recursive: true });
  for (const node of NODES) copyFileSync(cluster.zt(node).logPath, join(logs, `ztunnel-${node}.log`));
  const wp = kubelet.podsOf('backend', 'waypoint')[0];
  if (wp) copyFileSync(wp.logPath, join(logs, 'waypoint-envoy.log'));
  console.log(`\nztunnel logs (JSON lines, access log lines have "scope":"access") and the waypoint's Envoy log: ${logs}\n`);
} catch (e) {
  if (!done) {
    console.error(`demo failed: ${(e as Error).message}`);
    process.exitCode = 1;
  }
} finally {
  await teardown();
}

async function waitForLine(node: string, pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return eventually('access log line', () => cluster.zt(node).lines('connection complete').find(pred)).catch(() => ({}));
}
