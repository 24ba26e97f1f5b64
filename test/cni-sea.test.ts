// The CNI plugin as a single executable (Node SEA), run as kubelet hosts run it: with no Node.js anywhere on PATH.
// Builds dist/cni-plugin/ambit-cni through cni-plugin/build-sea.sh when it is missing or older than the plugin sources.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readSync, closeSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api } from '@kubernetes/client-node';
import { start, kubeConfigFor, type ApiServer } from '../waypoint-controller/apiserver/index.js';
import { fakeAgent, runWithStdin, type FakeAgent, type Run } from './lab/cni-plugin-io.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXE = join(ROOT, 'dist/cni-plugin/ambit-cni');
const BUILD = join(ROOT, 'cni-plugin/build-sea.sh');
const BUILD_TIMEOUT_MS = 100_000;

function newestSource(): number {
  const dirs = [join(ROOT, 'cni-plugin/plugin'), join(ROOT, 'cni-plugin')];
  let newest = statSync(BUILD).mtimeMs;
  for (const d of dirs) for (const f of readdirSync(d)) if (f.endsWith('.ts')) newest = Math.max(newest, statSync(join(d, f)).mtimeMs);
  return newest;
}

let buildError: string | undefined;
let dir: string;
let emptyPath: string;
let api: ApiServer;
let kubeconfig: string;
let agent: FakeAgent;

test.before(async () => {
  if (!existsSync(EXE) || statSync(EXE).mtimeMs < newestSource()) {
    buildError = await new Promise<string | undefined>((resolve) => {
      execFile('bash', [BUILD], { cwd: ROOT, timeout: BUILD_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
        resolve(err ? `${err.message}\n${stdout}\n${stderr}` : undefined));
    });
  }
  dir = mkdtempSync(join(tmpdir(), 'ambit-cni-sea-'));
  emptyPath = join(dir, 'empty-bin');
  mkdirSync(emptyPath);
  api = await start({});
  kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kubeConfigFor(api.url).exportConfig());
  const core = kubeConfigFor(api.url).makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'mesh', labels: { 'istio.io/dataplane-mode': 'ambient' } } } });
  await core.createNamespace({ body: { metadata: { name: 'plain' } } });
  for (const [namespace, name] of [['mesh', 'web-1'], ['plain', 'legacy']] as const) {
    await core.createNamespacedPod({ namespace, body: { metadata: { name }, spec: { containers: [{ name: 'app', image: 'app:1' }] } } });
  }
  agent = await fakeAgent(join(dir, 'pluginevent.sock'));
});

test.after.always(async () => {
  await agent?.close();
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs the executable with only the given environment and PATH set to an empty directory: no node to fall back on. */
function runSea(env: Record<string, string>, stdin: string): Promise<Run> {
  return runWithStdin(EXE, [], { PATH: emptyPath, ...env }, stdin);
}

const NETNS = '/var/run/netns/cni-8c1f2d9e-5b7a-4c3e-9f10-1a2b3c4d5e6f';
const PREV_RESULT = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: NETNS }],
  ips: [{ interface: 0, address: '10.244.1.5/24', gateway: '10.244.1.1' }],
  dns: {},
};

function addEnv(namespace: string, name: string): Record<string, string> {
  return {
    CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'a1b2c3d4e5f6', CNI_NETNS: NETNS, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=a1b2c3d4e5f6`,
  };
}

function conf(): string {
  return JSON.stringify({
    cniVersion: '1.0.0', name: 'k8s-pod-network', type: 'ambit-cni', kubeconfig, cni_event_address: agent.socket,
    cni_event_timeout_ms: 2000, kube_attempts: 1, prevResult: PREV_RESULT,
  });
}

test.serial('the executable exists and is a native ELF binary, not a script', (t) => {
  if (buildError) return t.fail(`build-sea.sh failed:\n${buildError}`);
  t.true(existsSync(EXE));
  const fd = openSync(EXE, 'r');
  const head = Buffer.alloc(4);
  readSync(fd, head, 0, 4, 0);
  closeSync(fd);
  t.deepEqual([...head], [0x7f, 0x45, 0x4c, 0x46], 'ELF magic');
  t.true((statSync(EXE).mode & 0o111) !== 0, 'executable bit');
  t.deepEqual(readdirSync(emptyPath), [], 'PATH is an empty directory');
});

test.serial('VERSION with no node on PATH', async (t) => {
  if (buildError) return t.fail('no executable');
  const r = await runSea({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), { cniVersion: '1.0.0', supportedVersions: ['0.3.1', '0.4.0', '1.0.0'] });
  t.notRegex(r.stderr, /ExperimentalWarning|single executable/i, 'no SEA warning on stderr');
});

test.serial('malformed stdin on ADD is a CNI decoding error (6) with a non-zero exit', async (t) => {
  if (buildError) return t.fail('no executable');
  const r = await runSea(addEnv('mesh', 'web-1'), '{"cniVersion": "1.0.0", "name": ');
  t.not(r.code, 0);
  t.not(r.code, null);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 1, `one JSON line on stdout: ${r.stdout}`);
  const e = JSON.parse(lines[0]!) as { cniVersion: string; code: number; msg: string; details: string };
  t.is(e.code, 6);
  t.regex(e.msg, /error unmarshalling network config/);
  t.is(e.cniVersion, '1.0.0');
  t.is(typeof e.details, 'string');
});

test.serial('the bundled Kubernetes client works: a pod outside the mesh passes through, a mesh pod reaches the agent', async (t) => {
  if (buildError) return t.fail('no executable');
  const plain = await runSea(addEnv('plain', 'legacy'), conf());
  t.is(plain.code, 0, plain.stderr);
  t.deepEqual(JSON.parse(plain.stdout), PREV_RESULT);
  t.is(agent.received.length, 0);

  const mesh = await runSea(addEnv('mesh', 'web-1'), conf());
  t.is(mesh.code, 0, mesh.stderr);
  t.deepEqual(JSON.parse(mesh.stdout), PREV_RESULT);
  t.is(agent.received.length, 1);
  t.is(agent.received[0]!.url, '/cmdadd');
  const ev = JSON.parse(agent.received[0]!.body) as { PodName?: string; PodNamespace?: string; Netns?: string };
  t.is(ev.PodName, 'web-1');
  t.is(ev.PodNamespace, 'mesh');
  t.is(ev.Netns, NETNS);
});
