// Interop of the controller's delta ADS server with an independent client: Debian's python3-grpcio with message
// classes that protoc generated (at test time, into a temp dir) from our protos and Envoy's. The Python client
// (test/interop/ads_client.py) subscribes by wildcard and ACKs, and on demand by `<network>/<ip>`; what it gets is
// compared with what our own ztunnel xDS client gets from the same server. Everything runs on 127.0.0.1.
import { CoreV1Api, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import test from 'ava';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../protos/index.js';
import { start as startApiServer, type ApiServer } from '../waypoint-controller/apiserver/index.js';
import { Controller } from '../waypoint-controller/controller/controller.js';
import type { TypeWatchDebug } from '../waypoint-controller/xds/connection.js';
import { ProxyState } from '../ztunnel/state/index.js';
import { XdsClient } from '../ztunnel/xds/client.js';

const PY = '/usr/bin/python3';
const PROTOC = '/usr/bin/protoc';
const CLIENT = fileURLToPath(new URL('../../test/interop/ads_client.py', import.meta.url));
const PROTOS_DIR = fileURLToPath(new URL('../../protos/', import.meta.url));
const XDS_DEPS = join(dirname(createRequire(import.meta.url).resolve('@grpc/grpc-js-xds/package.json')), 'deps');
/** protoc include path: our protos, Envoy's API and its dependencies, then the well-known types. */
const INCLUDES = [PROTOS_DIR, ...['envoy-api', 'googleapis', 'protoc-gen-validate', 'xds'].map((d) => join(XDS_DEPS, d)), '/usr/include'];
const ROOT_PROTOS = ['workload.proto', 'authorization.proto', 'envoy/service/discovery/v3/ads.proto'];

const NS = 'shop';
const PODS = [
  { name: 'echo-a', ip: '10.244.1.10', app: 'echo', sa: 'echo' },
  { name: 'echo-b', ip: '10.244.1.11', app: 'echo', sa: 'echo' },
  { name: 'sleep', ip: '10.244.1.12', app: 'sleep', sa: 'sleep' },
];
const uid = (pod: string) => `Kubernetes//v1/Pod/${NS}/${pod}`;
const SVC_NAME = `${NS}/echo.${NS}.svc.cluster.local`;
const POLICY_NAME = `${NS}/deny-9`;
const PY_NODE = 'ztunnel~10.244.9.1~py-ads.istio-system~istio-system.svc.cluster.local';
const PY_NODE_ONDEMAND = 'ztunnel~10.244.9.2~py-ads-od.istio-system~istio-system.svc.cluster.local';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

// ------------------------------------------------------------------ protoc --python_out

/** Every .proto file reachable from `roots` through imports, as protoc's virtual paths. */
function importClosure(roots: string[]): string[] {
  const seen = new Set<string>();
  const todo = [...roots];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const dir = INCLUDES.find((d) => existsSync(join(d, f)));
    if (!dir) throw new Error(`${f} is on no include path (${INCLUDES.join(', ')})`);
    for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm)) todo.push(m[1]!);
  }
  return [...seen].sort();
}

/** Generates the Python message modules into a fresh temp dir; google/protobuf/* come from python3-protobuf. */
function generatePython(): { dir: string; files: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'ads-py-'));
  const files = importClosure(ROOT_PROTOS).filter((f) => !f.startsWith('google/protobuf/'));
  const r = spawnSync(PROTOC, [...INCLUDES.map((i) => `-I${i}`), `--python_out=${dir}`, ...files], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`protoc --python_out failed (${r.status ?? r.signal}): ${r.stderr}`);
  return { dir, files };
}

// ------------------------------------------------------------------ the Python client

interface PyResource {
  name: string;
  version: string;
  aliases: string[];
  summary: Record<string, unknown>;
}
interface PyResponse {
  stream: string;
  type_url: string;
  nonce: string;
  resources: PyResource[];
  removed: string[];
}
interface PyDone {
  event: 'done';
  acked: Record<string, string[]>;
}

class PyClient {
  readonly responses: PyResponse[] = [];
  done?: PyDone;
  stderr = '';
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly exited: Promise<void>;

  constructor(args: string[]) {
    this.proc = spawn(PY, [CLIENT, ...args], { stdio: 'pipe' });
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const o = JSON.parse(line) as PyResponse | PyDone;
      if ('event' in o) this.done = o;
      else this.responses.push(o);
    });
    this.proc.stderr.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) =>
      this.proc.on('close', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      }),
    );
  }

  /** Waits for the client's "done" line (it then holds its streams open until stdin closes). */
  async whenDone(timeoutMs = 30_000): Promise<PyDone> {
    return until('the Python client to finish its steps', () => {
      if (this.exit) throw new Error(`ads_client.py exited early (${this.exit.code ?? this.exit.signal}): ${this.stderr}`);
      return this.done;
    }, timeoutMs);
  }

  /** Closes stdin (ends the hold) and waits for the exit, killing the process if it overstays. */
  async finish(timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.proc.stdin.end();
    const t = setTimeout(() => this.kill(), timeoutMs);
    await this.exited;
    clearTimeout(t);
    return this.exit!;
  }

  kill(): void {
    if (!this.exit) this.proc.kill('SIGKILL');
  }
}

// ------------------------------------------------------------------ harness

let api: ApiServer | undefined;
let controller: Controller | undefined;
let ztunnel: XdsClient | undefined;
let genDir = '';
let genFiles: string[] = [];
const pyClients: PyClient[] = [];
const zState = new ProxyState();

function runPy(nodeId: string, mode: string[]): PyClient {
  const c = new PyClient([
    '--address', `127.0.0.1:${controller!.xdsPort}`, '--out-dir', genDir, '--node-id', nodeId,
    '--node-meta', 'NAME=py-ads', '--node-meta', 'NAMESPACE=istio-system', '--node-meta', 'NODE_NAME=node-py',
    '--timeout', '10', '--connect-timeout', '10', '--hold', '30', ...mode,
  ]);
  pyClients.push(c);
  return c;
}

/** The server's view of one connection's type watch, found by the client's node id. */
function watchOf(nodeId: string, typeUrl: string): TypeWatchDebug | undefined {
  const conn = controller!.xds.debugState().connections.find((c) => c.node?.id === nodeId);
  return conn?.types[typeUrl];
}

const storeSnapshot = (typeUrl: string) => Object.fromEntries(controller!.store.list(typeUrl).map((r) => [r.name, r.version]));
const sorted = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

test.before(async () => {
  const gen = generatePython();
  genDir = gen.dir;
  genFiles = gen.files;

  api = await startApiServer({ host: '127.0.0.1', port: 0 });
  const kc = api.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  controller = new Controller({
    kubeConfig: kc, xdsAddress: '127.0.0.1:0', clusterId: 'Kubernetes', trustDomain: 'cluster.local', network: '',
    domainSuffix: 'cluster.local', rootNamespace: 'istio-system', log: pino({ level: 'silent' }),
  });
  await core.createNamespace({ body: { metadata: { name: NS, labels: { 'istio.io/dataplane-mode': 'ambient' } } } });
  for (const p of PODS) {
    const body: V1Pod = {
      metadata: { name: p.name, namespace: NS, labels: { app: p.app } },
      spec: { nodeName: 'node1', serviceAccountName: p.sa, containers: [{ name: 'app', image: 'app' }] },
    };
    await core.createNamespacedPod({ namespace: NS, body });
    const current = await core.readNamespacedPod({ name: p.name, namespace: NS });
    current.status = { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }], conditions: [{ type: 'Ready', status: 'True' }] };
    await core.replaceNamespacedPodStatus({ name: p.name, namespace: NS, body: current });
  }
  await core.createNamespacedService({
    namespace: NS,
    body: { metadata: { name: 'echo' }, spec: { selector: { app: 'echo' }, ports: [{ port: 80, targetPort: 8080 as never }] } },
  });
  await custom.createNamespacedCustomObject({
    group: 'security.istio.io', version: 'v1', namespace: NS, plural: 'authorizationpolicies',
    body: {
      apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-9', namespace: NS },
      spec: { selector: { matchLabels: { app: 'echo' } }, action: 'DENY', rules: [{ to: [{ operation: { ports: ['9'] } }] }] },
    },
  });
  await controller.start();

  // Let the controller settle: every object translated, and no change for a while.
  await until('the controller to publish the pods, the service and the policy', () => {
    const a = storeSnapshot(ADDRESS_TYPE_URL);
    return PODS.every((p) => a[uid(p.name)]) && a[SVC_NAME] && storeSnapshot(AUTHORIZATION_TYPE_URL)[POLICY_NAME];
  });
  let last = '';
  let stableSince = Date.now();
  await until('the resource store to be stable', () => {
    const now = JSON.stringify([storeSnapshot(ADDRESS_TYPE_URL), storeSnapshot(AUTHORIZATION_TYPE_URL)]);
    if (now !== last || Object.keys(controller!.xds.debugState().pendingChanges).length > 0) {
      last = now;
      stableSince = Date.now();
    }
    return Date.now() - stableSince >= 500;
  });

  // Our own ztunnel xDS client, in this process, wildcard as in shared mode.
  ztunnel = new XdsClient(
    {
      address: `127.0.0.1:${controller.xdsPort}`,
      node: { ip: '10.244.9.9', podName: 'ztunnel-ts', podNamespace: 'istio-system', nodeName: 'node1', clusterId: 'Kubernetes' },
      onDemand: false,
      defaults: { trustDomain: 'cluster.local', clusterId: 'Kubernetes' },
    },
    zState,
    pino({ level: 'silent' }),
  );
  ztunnel.start();
  await until('our ztunnel client to be ready', () => ztunnel!.ready());
});

test.after.always(async () => {
  for (const c of pyClients) c.kill();
  ztunnel?.close();
  await controller?.stop();
  await api?.close();
  if (genDir) rmSync(genDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ tests

test.serial('protoc generates the Python modules for our protos and the delta ADS closure', (t) => {
  t.true(genFiles.includes('workload.proto') && genFiles.includes('authorization.proto'));
  t.true(genFiles.includes('envoy/service/discovery/v3/discovery.proto'));
  t.true(genFiles.includes('google/rpc/status.proto'));
  t.false(genFiles.some((f) => f.startsWith('google/protobuf/')), 'well-known types come from python3-protobuf');
  for (const f of genFiles) t.true(existsSync(join(genDir, f.replace(/\.proto$/, '_pb2.py'))), f);
});

test.serial('wildcard: the Python client gets the same names and versions as our ztunnel, and its ACKs are recorded', async (t) => {
  const py = runPy(PY_NODE, ['--wildcard']);
  const done = await py.whenDone();

  const first = (typeUrl: string) => py.responses.find((r) => r.type_url === typeUrl);
  const addr = first(ADDRESS_TYPE_URL);
  const authz = first(AUTHORIZATION_TYPE_URL);
  t.truthy(addr, 'an Address response');
  t.truthy(authz, 'an Authorization response');
  t.deepEqual(addr!.removed, []);
  t.deepEqual(authz!.removed, []);
  t.true(addr!.nonce.length > 0 && authz!.nonce.length > 0);
  t.deepEqual(done.acked.wildcard, py.responses.map((r) => r.nonce), 'every response ACKed');

  // The server saw the ACKs of exactly these nonces, on the Python client's connection, while it is connected.
  const aw = await until('the Address ACK on the server', () => { const w = watchOf(PY_NODE, ADDRESS_TYPE_URL); return w && w.acks >= 1 && w; });
  const zw = await until('the Authorization ACK on the server', () => { const w = watchOf(PY_NODE, AUTHORIZATION_TYPE_URL); return w && w.acks >= 1 && w; });
  t.true(aw.wildcard && zw.wildcard);
  t.is(aw.nacks + zw.nacks, 0);
  t.is(aw.nonceAcked, aw.nonceSent);
  t.is(zw.nonceAcked, zw.nonceSent);
  t.is(aw.nonceAcked, py.responses.filter((r) => r.type_url === ADDRESS_TYPE_URL).at(-1)!.nonce);
  t.is(zw.nonceAcked, py.responses.filter((r) => r.type_url === AUTHORIZATION_TYPE_URL).at(-1)!.nonce);
  const conn = controller!.xds.debugState().connections.find((c) => c.node?.id === PY_NODE)!;
  t.is(conn.clusterId, 'Kubernetes');
  t.like(conn.node, { proxyType: 'ztunnel', ip: '10.244.9.1', podName: 'py-ads', podNamespace: 'istio-system', nodeName: 'node-py' });

  // Same names and versions as our ztunnel client holds (and as the store has).
  const pyNames = (typeUrl: string) => {
    const m: Record<string, string> = {};
    for (const r of py.responses.filter((x) => x.type_url === typeUrl)) {
      for (const res of r.resources) m[res.name] = res.version;
      for (const n of r.removed) delete m[n];
    }
    return sorted(m);
  };
  await until('our ztunnel client to hold what the store has', () =>
    JSON.stringify(sorted(ztunnel!.known(ADDRESS_TYPE_URL))) === JSON.stringify(sorted(storeSnapshot(ADDRESS_TYPE_URL))) &&
    JSON.stringify(sorted(ztunnel!.known(AUTHORIZATION_TYPE_URL))) === JSON.stringify(sorted(storeSnapshot(AUTHORIZATION_TYPE_URL))));
  t.deepEqual(pyNames(ADDRESS_TYPE_URL), sorted(ztunnel!.known(ADDRESS_TYPE_URL)));
  t.deepEqual(pyNames(AUTHORIZATION_TYPE_URL), sorted(ztunnel!.known(AUTHORIZATION_TYPE_URL)));
  t.deepEqual(Object.keys(pyNames(ADDRESS_TYPE_URL)).sort(), [...PODS.map((p) => uid(p.name)), SVC_NAME].sort());
  t.deepEqual(Object.keys(pyNames(AUTHORIZATION_TYPE_URL)), [POLICY_NAME]);

  // What protoc's classes decoded agrees with what our ztunnel converted.
  for (const p of PODS) {
    const res = addr!.resources.find((r) => r.name === uid(p.name))!;
    t.like(res.summary, { kind: 'workload', uid: uid(p.name), name: p.name, namespace: NS, addresses: [p.ip], service_account: p.sa, status: 'HEALTHY' });
    t.deepEqual(res.summary.services, p.app === 'echo' ? [SVC_NAME] : []);
    t.deepEqual(res.summary.authorization_policies, p.app === 'echo' ? [POLICY_NAME] : []);
    const w = zState.workloads.get(uid(p.name))!;
    t.truthy(w, `ztunnel holds ${p.name}`);
    t.is(w.name, p.name);
    t.is(w.serviceAccount, p.sa);
  }
  const svc = addr!.resources.find((r) => r.name === SVC_NAME)!;
  const vip = zState.services.get(SVC_NAME)!.vips[0]!;
  t.like(svc.summary, { kind: 'service', name: 'echo', namespace: NS, hostname: `echo.${NS}.svc.cluster.local`, ports: [[80, 8080]] });
  t.deepEqual(svc.summary.addresses, [`${vip.network}/${vip.address}`]);
  t.like(authz!.resources[0]!.summary, { kind: 'authorization', name: 'deny-9', namespace: NS, action: 'DENY', scope: 'WORKLOAD_SELECTOR', rules: 1 });

  const exit = await py.finish();
  t.is(exit.code, 0, py.stderr);
  await until('the Python connection to be gone', () => !controller!.xds.debugState().connections.some((c) => c.node?.id === PY_NODE));
});

test.serial('on demand: subscribed to nothing, then `/<ip>` brings only that workload, named by its uid with the alias', async (t) => {
  const target = PODS[1]!;
  const key = `/${target.ip}`;
  const py = runPy(PY_NODE_ONDEMAND, ['--on-demand', key]);
  const done = await py.whenDone();

  t.is(py.responses.length, 2, JSON.stringify(py.responses));
  const [empty, answer] = py.responses as [PyResponse, PyResponse];
  t.is(empty.type_url, ADDRESS_TYPE_URL);
  t.deepEqual(empty.resources, []);
  t.deepEqual(empty.removed, []);
  t.is(answer.type_url, ADDRESS_TYPE_URL);
  t.deepEqual(answer.removed, []);
  t.deepEqual(answer.resources.map((r) => r.name), [uid(target.name)]);
  const res = answer.resources[0]!;
  t.deepEqual(res.aliases, [key]);
  t.is(res.version, ztunnel!.known(ADDRESS_TYPE_URL)[uid(target.name)], 'same version as the wildcard ztunnel holds');
  t.like(res.summary, { kind: 'workload', uid: uid(target.name), name: target.name, namespace: NS, addresses: [target.ip] });
  t.deepEqual(done.acked['on-demand'], [empty.nonce, answer.nonce]);

  const w = await until('both on-demand ACKs on the server', () => { const x = watchOf(PY_NODE_ONDEMAND, ADDRESS_TYPE_URL); return x && x.acks >= 2 && x; });
  t.false(w.wildcard);
  t.deepEqual(w.subscribed, [key]);
  t.is(w.held, 1);
  t.is(w.nacks, 0);
  t.is(w.nonceAcked, answer.nonce);
  t.is(w.nonceSent, answer.nonce);
  t.is(watchOf(PY_NODE_ONDEMAND, AUTHORIZATION_TYPE_URL), undefined, 'no Authorization subscription in this mode');

  const exit = await py.finish();
  t.is(exit.code, 0, py.stderr);
});

test.serial('the Python client exits non-zero with a message when it cannot reach a server', async (t) => {
  const py = new PyClient([
    '--address', '127.0.0.1:1', '--out-dir', genDir, '--node-id', PY_NODE, '--wildcard', '--connect-timeout', '1',
  ]);
  pyClients.push(py);
  const exit = await py.finish(15_000);
  t.is(exit.code, 2, py.stderr);
  t.regex(py.stderr, /could not connect to 127\.0\.0\.1:1/);
});
