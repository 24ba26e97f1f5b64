// The CNI plugin executable, run as the container runtime runs it: a child process with CNI_* env and the network
// config on stdin, against the embedded Kubernetes API server and a fake node agent on a unix socket.
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api } from '@kubernetes/client-node';
import { start, kubeConfigFor, type ApiServer } from '../waypoint-controller/apiserver/index.js';
import { runPlugin, type PluginDeps } from '../cni-plugin/plugin/plugin.js';
import { silentLogger } from '../cni-plugin/plugin/log.js';
import { isCidr } from '../cni-plugin/plugin/spec.js';
import { fakeAgent, runWithStdin, type FakeAgent, type Run } from './lab/cni-plugin-io.js';

const MAIN = fileURLToPath(new URL('../cni-plugin/plugin/main.js', import.meta.url));

// ---------------------------------------------------------------- fixtures

let dir: string;
let api: ApiServer;
let kubeconfig: string;
let agent: FakeAgent;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ambit-cni-plugin-'));
  api = await start({});
  kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kubeConfigFor(api.url).exportConfig());
  agent = await fakeAgent(join(dir, 'pluginevent.sock'));
  const core = kubeConfigFor(api.url).makeApiClient(CoreV1Api);
  const ns = (name: string, labels: Record<string, string> = {}) => core.createNamespace({ body: { metadata: { name, labels } } });
  const pod = (namespace: string, name: string, labels: Record<string, string> = {}, hostNetwork = false) =>
    core.createNamespacedPod({ namespace, body: { metadata: { name, labels }, spec: { hostNetwork, containers: [{ name: 'app', image: 'app:1' }] } } });
  await ns('mesh', { 'istio.io/dataplane-mode': 'ambient' });
  await ns('plain');
  await pod('mesh', 'web-1');
  await pod('mesh', 'opted-out', { 'istio.io/dataplane-mode': 'none' });
  await pod('mesh', 'host-net', {}, true);
  await pod('plain', 'legacy');
  await pod('plain', 'own-label', { 'istio.io/dataplane-mode': 'ambient' });
  const ks = await core.readNamespace({ name: 'kube-system' });
  ks.metadata = { ...ks.metadata, name: 'kube-system', labels: { ...ks.metadata?.labels, 'istio.io/dataplane-mode': 'ambient' } };
  await core.replaceNamespace({ name: 'kube-system', body: ks });
  await pod('kube-system', 'coredns-1');
});

test.after.always(async () => {
  await agent?.close();
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

test.beforeEach(() => {
  agent.received = [];
  agent.status = 200;
  agent.reply = '';
});

function runCni(env: Record<string, string | undefined>, stdin: string): Promise<Run> {
  const clean: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
  return runWithStdin(process.execPath, [MAIN], clean, stdin);
}

const NETNS = '/var/run/netns/cni-8c1f2d9e-5b7a-4c3e-9f10-1a2b3c4d5e6f';

function cniEnv(command: string | undefined, pod?: [string, string], extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: 'a1b2c3d4e5f6',
    CNI_NETNS: NETNS,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: pod ? `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod[0]};K8S_POD_NAME=${pod[1]};K8S_POD_INFRA_CONTAINER_ID=a1b2c3d4e5f6;K8S_POD_UID=0b0e7c1e-1111-2222-3333-444455556666` : undefined,
    ...extra,
  };
}

/** What bridge + host-local hand to the next plugin (1.0.0), dual-stack. */
const PREV_RESULT_V1 = {
  cniVersion: '1.0.0',
  interfaces: [
    { name: 'cni0', mac: '2a:9e:1c:55:01:0f' },
    { name: 'veth3b1f9a2c', mac: 'd6:4f:11:83:ab:70' },
    { name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: NETNS },
  ],
  ips: [
    { interface: 2, address: '10.244.1.5/24', gateway: '10.244.1.1' },
    { interface: 2, address: 'fd00:10:244:1::5/64', gateway: 'fd00:10:244:1::1' },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '::/0', gw: 'fd00:10:244:1::1' }],
  dns: {},
};

/** The same from 0.3.1 plugins (per-IP `version`). */
const PREV_RESULT_031 = {
  cniVersion: '0.3.1',
  interfaces: PREV_RESULT_V1.interfaces,
  ips: [{ version: '4', interface: 2, address: '10.244.1.5/24', gateway: '10.244.1.1' }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

function conf(extra: Record<string, unknown> = {}, version = '1.0.0', prevResult: unknown = PREV_RESULT_V1): string {
  return JSON.stringify({
    cniVersion: version,
    name: 'k8s-pod-network',
    type: 'ambit-cni',
    kubeconfig,
    cni_event_address: agent.socket,
    exclude_namespaces: ['kube-system'],
    cni_event_timeout_ms: 2000,
    kube_attempts: 1,
    ...(prevResult === undefined ? {} : { prevResult }),
    ...extra,
  });
}

function cniError(t: { is: (a: unknown, b: unknown, m?: string) => void; truthy: (a: unknown, m?: string) => void }, r: Run, code: number, msg: RegExp) {
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 1, `one JSON line on stdout: ${r.stdout}`);
  const e = JSON.parse(lines[0]!) as { cniVersion: string; code: number; msg: string; details: string };
  t.is(e.code, code, `code of ${r.stdout}`);
  t.truthy(msg.test(e.msg), `message "${e.msg}" matches ${msg}`);
  t.is(typeof e.cniVersion, 'string');
  t.is(typeof e.details, 'string');
  t.truthy(r.code !== 0 && r.code !== null, 'non-zero exit');
  return e;
}

// ---------------------------------------------------------------- commands

test.serial('VERSION lists the supported versions', async (t) => {
  const r = await runCni({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
  t.is(r.code, 0);
  t.deepEqual(JSON.parse(r.stdout), { cniVersion: '1.0.0', supportedVersions: ['0.3.1', '0.4.0', '1.0.0'] });
});

test.serial('ADD for a pod outside the mesh passes prevResult through unchanged and tells nobody', async (t) => {
  const r = await runCni(cniEnv('ADD', ['plain', 'legacy']), conf());
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), PREV_RESULT_V1);
  t.is(agent.received.length, 0);
});

test.serial('ADD with a 0.3.1 chain passes the 0.3.1 prevResult through unchanged', async (t) => {
  const r = await runCni(cniEnv('ADD', ['plain', 'legacy']), conf({}, '0.3.1', PREV_RESULT_031));
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), PREV_RESULT_031);
});

test.serial('ADD for a pod in an ambient namespace sends Istio\'s add event to the node agent', async (t) => {
  const r = await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf());
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), PREV_RESULT_V1);
  t.is(agent.received.length, 1);
  const got = agent.received[0]!;
  t.is(got.method, 'POST');
  t.is(got.url, '/cmdadd');
  t.is(got.contentType, 'application/json');
  // Byte for byte what Go's encoding/json makes of Istio's CNIPluginAddEvent.
  t.is(got.body, '{"Netns":"' + NETNS + '","PodName":"web-1","PodNamespace":"mesh","IPs":[' +
    '{"Interface":2,"Address":{"IP":"10.244.1.5","Mask":"////AA=="},"Gateway":"10.244.1.1"},' +
    '{"Interface":2,"Address":{"IP":"fd00:10:244:1::5","Mask":"//////////8AAAAAAAAAAA=="},"Gateway":"fd00:10:244:1::1"}]}');
});

test.serial('ADD with a 0.3.1 prevResult sends the IPs too', async (t) => {
  const r = await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf({}, '0.3.1', PREV_RESULT_031));
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), PREV_RESULT_031);
  t.deepEqual(JSON.parse(agent.received[0]!.body).IPs, [{ Interface: 2, Address: { IP: '10.244.1.5', Mask: '////AA==' }, Gateway: '10.244.1.1' }]);
});

test.serial('enrollment follows the pod label, opt-out, hostNetwork and excluded namespaces', async (t) => {
  const add = (ns: string, name: string) => runCni(cniEnv('ADD', [ns, name]), conf());
  const own = await add('plain', 'own-label');
  t.is(own.code, 0, own.stderr);
  t.is(agent.received.length, 1, 'pod label ambient enrolls in an unlabelled namespace');
  t.is(JSON.parse(agent.received[0]!.body).PodName, 'own-label');
  for (const [ns, name] of [['mesh', 'opted-out'], ['mesh', 'host-net'], ['kube-system', 'coredns-1'], ['kube-system', 'no-such-pod']] as const) {
    const r = await add(ns, name);
    t.is(r.code, 0, `${ns}/${name}: ${r.stdout} ${r.stderr}`);
    t.deepEqual(JSON.parse(r.stdout), PREV_RESULT_V1);
  }
  t.is(agent.received.length, 1, 'none of them reached the agent');
  // Not a Kubernetes pod at all (no K8S_* args): passed through without any lookup.
  const bare = await runCni(cniEnv('ADD'), conf({ kubeconfig: join(dir, 'missing') }));
  t.is(bare.code, 0, bare.stderr);
  t.deepEqual(JSON.parse(bare.stdout), PREV_RESULT_V1);
});

test.serial('ADD with no prevResult answers an empty result of the config version', async (t) => {
  const r = await runCni(cniEnv('ADD', ['plain', 'legacy']), conf({}, '0.4.0', undefined));
  t.is(r.code, 0, r.stderr);
  t.is(JSON.parse(r.stdout).cniVersion, '0.4.0');
});

test.serial('node agent down: ADD for an enrolled pod fails closed with a clear error; a non-enrolled pod still starts', async (t) => {
  const gone = join(dir, 'no-agent.sock');
  const r = await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf({ cni_event_address: gone }));
  const e = cniError(t, r, 11, /mesh\/web-1 is in the ambient mesh .*node agent cannot be reached at .*no-agent\.sock.*ENOENT/);
  t.regex(e.msg, /refusing to start the pod outside the mesh/);
  const ok = await runCni(cniEnv('ADD', ['plain', 'legacy']), conf({ cni_event_address: gone }));
  t.is(ok.code, 0, ok.stderr);
  t.deepEqual(JSON.parse(ok.stdout), PREV_RESULT_V1);
});

test.serial('node agent answers 500: ADD fails with its message', async (t) => {
  agent.status = 500;
  agent.reply = 'failed to create redirection rules';
  const r = await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf());
  cniError(t, r, 999, /node agent rejected pod mesh\/web-1.*500: failed to create redirection rules/);
  t.is(agent.received.length, 1);
});

test.serial('node agent that never answers: ADD fails within the bound', async (t) => {
  const sock = join(dir, 'hang.sock');
  const hang = createServer(() => { /* never answers */ });
  await new Promise<void>((r) => hang.listen(sock, r));
  try {
    const t0 = Date.now();
    const r = await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf({ cni_event_address: sock, cni_event_timeout_ms: 300 }));
    cniError(t, r, 11, /no answer within 300 ms/);
    t.true(Date.now() - t0 < 5000);
  } finally {
    hang.closeAllConnections();
    await new Promise<void>((r) => hang.close(() => r()));
  }
});

test.serial('Kubernetes API unreachable: ADD fails with try-again-later', async (t) => {
  const badKc = join(dir, 'bad-kubeconfig');
  writeFileSync(badKc, kubeConfigFor('http://127.0.0.1:1').exportConfig());
  const r = await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf({ kubeconfig: badKc, kube_timeout_ms: 1000 }));
  cniError(t, r, 11, /cannot decide whether pod mesh\/web-1 belongs in the ambient mesh: Kubernetes API lookup failed/);
  t.is(agent.received.length, 0);
});

test.serial('DEL and CHECK succeed without side effects', async (t) => {
  for (const cmd of ['DEL', 'CHECK']) {
    const r = await runCni(cniEnv(cmd, ['mesh', 'web-1']), conf());
    t.is(r.code, 0, `${cmd}: ${r.stdout} ${r.stderr}`);
    t.is(r.stdout, '', `${cmd} prints nothing`);
  }
  // DEL needs no netns (the runtime may have removed it already), and works while the agent is down.
  const del = await runCni(cniEnv('DEL', ['mesh', 'web-1'], { CNI_NETNS: undefined }), conf({ cni_event_address: join(dir, 'gone.sock') }));
  t.is(del.code, 0, del.stdout);
  t.is(agent.received.length, 0);
});

test.serial('GC and STATUS answer success with no output', async (t) => {
  for (const cmd of ['GC', 'STATUS']) {
    const r = await runCni({ CNI_COMMAND: cmd, CNI_PATH: '/opt/cni/bin' }, conf());
    t.is(r.code, 0, `${cmd}: ${r.stdout}`);
    t.is(r.stdout, '');
  }
});

// ---------------------------------------------------------------- errors

test.serial('malformed stdin is a decoding failure (6)', async (t) => {
  cniError(t, await runCni(cniEnv('ADD', ['mesh', 'web-1']), '{"cniVersion": "1.0.0", "name": '), 6, /error unmarshalling network config/);
  cniError(t, await runCni(cniEnv('ADD', ['mesh', 'web-1']), '[1,2,3]'), 6, /not a JSON object/);
  cniError(t, await runCni(cniEnv('ADD', ['mesh', 'web-1']), ''), 6, /error unmarshalling/);
  cniError(t, await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf({ prevResult: 'oops' })), 6, /prevResult/);
  cniError(t, await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf({ prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.1.2.3' }] } })), 6, /not a CIDR/);
});

test.serial('an unknown or missing cniVersion is incompatible (1); CHECK needs 0.4.0', async (t) => {
  const e = cniError(t, await runCni(cniEnv('ADD', ['mesh', 'web-1']), conf({}, '9.9.9')), 1, /incompatible CNI versions/);
  t.regex(e.details, /config is "9\.9\.9", plugin supports \["0\.3\.1","0\.4\.0","1\.0\.0"\]/);
  cniError(t, await runCni(cniEnv('DEL', ['mesh', 'web-1']), conf({}, '0.2.0')), 1, /incompatible/);
  cniError(t, await runCni(cniEnv('ADD'), JSON.stringify({ name: 'x', type: 'ambit-cni' })), 1, /incompatible/);
  cniError(t, await runCni(cniEnv('CHECK', ['mesh', 'web-1']), conf({}, '0.3.1', PREV_RESULT_031)), 1, /does not allow CHECK/);
  t.is(agent.received.length, 0);
});

test.serial('missing or bad environment is an invalid-environment error (4)', async (t) => {
  cniError(t, await runCni(cniEnv(undefined, ['mesh', 'web-1']), conf()), 4, /\[CNI_COMMAND\] missing/);
  cniError(t, await runCni(cniEnv('ADD', ['mesh', 'web-1'], { CNI_NETNS: undefined }), conf()), 4, /\[CNI_NETNS\] missing/);
  cniError(t, await runCni(cniEnv('ADD', ['mesh', 'web-1'], { CNI_CONTAINERID: undefined, CNI_PATH: undefined }), conf()), 4, /\[CNI_CONTAINERID,CNI_PATH\] missing/);
  cniError(t, await runCni(cniEnv('FROB'), conf()), 4, /unknown CNI_COMMAND: FROB/);
  cniError(t, await runCni(cniEnv('ADD', undefined, { CNI_IFNAME: 'a-very-long-interface-name' }), conf()), 4, /interface name/);
  cniError(t, await runCni(cniEnv('ADD', undefined, { CNI_ARGS: 'K8S_POD_NAME' }), conf()), 4, /ARGS: invalid pair/);
  t.is(agent.received.length, 0);
});

test.serial('a config without a network name is an invalid network config (7)', async (t) => {
  cniError(t, await runCni(cniEnv('ADD'), JSON.stringify({ cniVersion: '1.0.0', type: 'ambit-cni' })), 7, /missing network name/);
  cniError(t, await runCni(cniEnv('ADD'), conf({ exclude_namespaces: 'kube-system' })), 7, /exclude_namespaces/);
});

// ---------------------------------------------------------------- properties

/** An independent statement of what a valid ADD input is (no K8S args, so no lookups). */
function validAddInput(stdin: string): boolean {
  let o: unknown;
  try { o = JSON.parse(stdin); } catch { return false; }
  if (!o || typeof o !== 'object' || Array.isArray(o)) return false;
  const c = o as Record<string, unknown>;
  if (typeof c.name !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(c.name)) return false;
  if (!['0.3.1', '0.4.0', '1.0.0'].includes(c.cniVersion as string)) return false;
  for (const k of ['kubeconfig', 'cni_event_address', 'type', 'cni_agent_run_dir', 'pod_namespace', 'plugin_log_level', 'agent_pod_prefix']) {
    if (c[k] !== undefined && c[k] !== null && typeof c[k] !== 'string') return false;
  }
  if (c.exclude_namespaces !== undefined && c.exclude_namespaces !== null &&
    !(Array.isArray(c.exclude_namespaces) && c.exclude_namespaces.every((x) => typeof x === 'string'))) return false;
  if (c.ambient_enabled !== undefined && c.ambient_enabled !== null && typeof c.ambient_enabled !== 'boolean') return false;
  if (c.kubernetes && typeof c.kubernetes === 'object' && !Array.isArray(c.kubernetes)) {
    const kk = (c.kubernetes as Record<string, unknown>).kubeconfig;
    if (kk !== undefined && kk !== null && typeof kk !== 'string') return false;
  }
  for (const k of ['cni_event_timeout_ms', 'kube_timeout_ms', 'kube_attempts']) if (c[k] !== undefined && c[k] !== null) return false;
  const p = c.prevResult;
  if (p === undefined || p === null) return true;
  if (typeof p !== 'object' || Array.isArray(p)) return false;
  const ips = (p as Record<string, unknown>).ips;
  if (ips === undefined || ips === null) return true;
  return Array.isArray(ips) && ips.every((ip) => ip && typeof ip === 'object' && !Array.isArray(ip) &&
    typeof ip.address === 'string' && isCidr(ip.address) &&
    (ip.gateway === undefined || (typeof ip.gateway === 'string' && isCidr(`${ip.gateway}/0`))) &&
    (ip.interface === undefined || (Number.isInteger(ip.interface) && ip.interface >= 0)));
}

const validConfig = fc.record({
  cniVersion: fc.constantFrom('0.3.1', '0.4.0', '1.0.0'),
  name: fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,20}$/),
  type: fc.constant('ambit-cni'),
  prevResult: fc.option(fc.record({
    ips: fc.array(fc.record({
      address: fc.oneof(fc.ipV4().map((a) => `${a}/24`), fc.constant('fd00::5/64')),
      gateway: fc.ipV4(),
      interface: fc.nat(5),
    }, { requiredKeys: ['address'] }), { maxLength: 3 }),
    dns: fc.constant({}),
  }), { nil: undefined }),
}, { requiredKeys: ['cniVersion', 'name', 'type'] });

const anyStdin = fc.oneof(
  fc.string(),
  fc.json(),
  validConfig.map((c) => JSON.stringify(c)),
  // A valid config with one field replaced by arbitrary JSON.
  fc.tuple(validConfig, fc.constantFrom('cniVersion', 'name', 'prevResult', 'exclude_namespaces', 'ambient_enabled', 'kubeconfig'), fc.jsonValue())
    .map(([c, k, v]) => JSON.stringify({ ...c, [k]: v })),
);

const noDeps: PluginDeps = {
  kube: () => Promise.reject(new Error('no lookups expected')),
  sendAddEvent: () => Promise.reject(new Error('no events expected')),
  log: silentLogger,
  sleep: () => Promise.resolve(),
};

function checkOutput(stdout: string, exitCode: number | null, stdin: string): void {
  if (exitCode === 0) {
    if (!validAddInput(stdin)) throw new Error(`exit 0 for invalid input ${stdin}`);
    const out = JSON.parse(stdout);
    if (typeof out !== 'object' || typeof out.cniVersion !== 'string') throw new Error(`bad result ${stdout}`);
  } else {
    if (validAddInput(stdin)) throw new Error(`failure for valid input ${stdin}: ${stdout}`);
    const lines = stdout.trim().split('\n');
    if (lines.length !== 1) throw new Error(`more than one line: ${stdout}`);
    const e = JSON.parse(lines[0]!);
    if (typeof e.code !== 'number' || typeof e.msg !== 'string' || typeof e.cniVersion !== 'string') throw new Error(`not a CNI error: ${stdout}`);
  }
}

test.serial('property: any stdin gives one JSON document, and success exactly for valid input (in process)', async (t) => {
  await fc.assert(fc.asyncProperty(anyStdin, async (stdin) => {
    const r = await runPlugin(cniEnv('ADD'), stdin, noDeps);
    checkOutput(r.stdout, r.exitCode, stdin);
  }), { numRuns: 2000 });
  t.pass();
});

test.serial('property: the executable never prints anything but CNI JSON', async (t) => {
  await fc.assert(fc.asyncProperty(anyStdin, async (stdin) => {
    const r = await runCni(cniEnv('ADD'), stdin);
    checkOutput(r.stdout, r.code, stdin);
  }), { numRuns: 30 });
  t.pass();
});
