// End to end, dedicated mode: L4 authorization, HBONE request validation and peer authentication, and interop
// with an HTTP/2 stack that is not Node's (python3-h2).
import test from 'ava';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { ClientHttp2Session, OutgoingHttpHeaders } from 'node:http2';
import type net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dialHbone } from '../ztunnel/hbone/client.js';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import type { WorkloadCertificate } from '../ztunnel/identity/manager.js';
import { connectTcp } from '../ztunnel/native/index.js';
import type { SocketFactory } from '../ztunnel/net/sockets.js';
import { echoServer, exchange, holdOpen, httpIn } from './lab/apps.js';
import { DedicatedMesh } from './lab/dedicated.js';
import { counter, HOSTS, ID, IP, meshConfig, type MeshOptions } from './lab/fixtures.js';
import { eventually } from './lab/ztunnel-proc.js';

const mesh = new DedicatedMesh();
const servers: net.Server[] = [];
let ca: LocalCa;
const PY = '/usr/bin/python3';
const INTEROP = fileURLToPath(new URL('../../test/interop/', import.meta.url));

test.before(async () => {
  await mesh.start(HOSTS, meshConfig());
  ca = await LocalCa.open(mesh.caCert, mesh.caKey, 'cluster.local');
  for (const [h, ip] of [['server1', IP.server1], ['server2', IP.server2]] as const) servers.push(await echoServer(mesh.host(h), ip, 8080));
  servers.push(await echoServer(mesh.host('server1'), IP.server1, 8081));
  servers.push(await echoServer(mesh.host('plain'), IP.plain, 9090));
});

test.after.always(async () => {
  for (const s of servers) s.close();
  await mesh.cleanup();
});

/** Apply a config and wait until every ztunnel has reloaded it. */
async function apply(o: MeshOptions): Promise<void> {
  const before = [...mesh.ztunnels.values()].map((z) => z.lines('local config reloaded').length);
  mesh.writeConfig(meshConfig(o));
  await eventually('all ztunnels reloaded', () => [...mesh.ztunnels.values()].every((z, i) => z.lines('local config reloaded').length > before[i]!));
}

const nsPolicy = (name: string, action: 'Allow' | 'Deny', match: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  name, namespace: 'default', scope: 'Namespace', action, rules: [[[match]]], ...extra,
});
const SLEEP = { Exact: 'cluster.local/ns/default/sa/sleep' };

async function cert(trustDomain: string, sa: string): Promise<WorkloadCertificate> {
  const issued = await ca.issue({ trustDomain, namespace: 'default', serviceAccount: sa }, 3600);
  return { identity: '', chainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem, rootsPem: issued.rootsPem, serial: '', notBefore: new Date(), notAfter: new Date() };
}

/** Sockets from the tester namespace: it has no capture rules, so it can speak HBONE to 15008 directly. */
const testerSockets = (): SocketFactory => ({
  connect: (ip, port) => connectTcp({ netnsFd: mesh.host('tester').fd, host: ip, port, allowHalfOpen: true }),
  listen: () => Promise.reject(new Error('not used')),
});

async function connectStatus(session: ClientHttp2Session, headers: OutgoingHttpHeaders): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = session.request(headers, { endStream: false });
    s.on('response', (h) => {
      resolve(Number(h[':status']));
      s.close();
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`stream closed without a response (rst ${s.rstCode})`)));
  });
}

const reachable = async (ip: string, port: number) => (await exchange(mesh.host('client'), ip, port, Buffer.from('ping'))).received.toString() === 'ping';

test.serial('DENY beats ALLOW', async (t) => {
  await apply({ policies: [nsPolicy('allow-sleep', 'Allow', { principals: [SLEEP] }), nsPolicy('deny-8080', 'Deny', { destinationPorts: [8080] })] });
  t.false(await reachable(IP.server1, 8080));
  t.true(await reachable(IP.server1, 8081));
  const denied = await eventually('deny log', () => mesh.zt('server1').lines('connection failed').find((l) => String(l.error).includes('deny-8080')));
  t.is(denied.status, 401);
});

test.serial('with an ALLOW policy, anything it does not match is denied', async (t) => {
  await apply({ policies: [nsPolicy('allow-other', 'Allow', { principals: [{ Exact: 'cluster.local/ns/default/sa/other' }] })] });
  t.false(await reachable(IP.server1, 8080));
  await apply({ policies: [nsPolicy('allow-sleep', 'Allow', { principals: [SLEEP], destinationPorts: [8080] })] });
  t.true(await reachable(IP.server1, 8080));
  t.false(await reachable(IP.server1, 8081));
});

test.serial('a dry-run DENY only logs', async (t) => {
  await apply({ policies: [nsPolicy('would-deny', 'Deny', { namespaces: [{ Exact: 'default' }] }, { dryRun: true })] });
  t.true(await reachable(IP.server2, 8080));
  const log = await eventually('dry-run log', () => mesh.zt('server2').lines('dry-run policy evaluated').find((l) => l.policy === 'default/would-deny'));
  t.is(log.matched, true);
});

test.serial('plaintext from outside the mesh is subject to policy too', async (t) => {
  await apply({ policies: [] });
  const tester = mesh.host('tester');
  t.is((await exchange(tester, IP.server1, 8080, Buffer.from('plain'))).received.toString(), 'plain');
  await apply({ policies: [nsPolicy('allow-sleep', 'Allow', { principals: [SLEEP] })] });
  t.is((await exchange(tester, IP.server1, 8080, Buffer.from('plain'))).received.length, 0);
});

test.serial('a policy change closes an open connection that is no longer allowed', async (t) => {
  await apply({ policies: [] });
  const s = await holdOpen(mesh.host('client'), IP.server1, 8080);
  const echoed = new Promise<string>((resolve) => s.once('data', (c: Buffer) => resolve(c.toString())));
  s.write('still here');
  t.is(await echoed, 'still here');
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  await apply({ policies: [nsPolicy('deny-sleep', 'Deny', { principals: [SLEEP] })] });
  await closed;
  t.true(s.destroyed);
  await apply({ policies: [] });
});

test.serial('HBONE requests: denied 401, foreign :authority 400, non-CONNECT 400, closed port 503', async (t) => {
  await apply({ policies: [nsPolicy('deny-8081', 'Deny', { destinationPorts: [8081] })] });
  const session = await dialHbone({ ip: IP.server1, port: 15008, expectedIdentities: [ID.server] }, await cert('cluster.local', 'tester'), testerSockets());
  try {
    t.is(await connectStatus(session, { ':method': 'CONNECT', ':authority': `${IP.server1}:8080` }), 200);
    t.is(await connectStatus(session, { ':method': 'CONNECT', ':authority': `${IP.server1}:8081` }), 401);
    t.is(await connectStatus(session, { ':method': 'CONNECT', ':authority': `${IP.server2}:8080` }), 400);
    t.is(await connectStatus(session, { ':method': 'GET', ':path': '/', ':scheme': 'https', ':authority': `${IP.server1}:8080` }), 400);
    t.is(await connectStatus(session, { ':method': 'CONNECT', ':authority': `${IP.server1}:9999` }), 503);
  } finally {
    session.destroy();
    await apply({ policies: [] });
  }
});

test.serial('a peer the state does not know is named by the baggage of its CONNECT, in the access log and metrics', async (t) => {
  const session = await dialHbone({ ip: IP.server1, port: 15008, expectedIdentities: [ID.server] }, await cert('cluster.local', 'nightly'), testerSockets());
  try {
    const baggage = 'k8s.cluster.name=Kubernetes,k8s.namespace.name=batch,k8s.cronjob.name=nightly,service.name=reports,service.version=v7';
    const s = session.request({ ':method': 'CONNECT', ':authority': `${IP.server1}:8080`, baggage }, { endStream: false });
    const echoed = new Promise<string>((resolve, reject) => {
      s.once('data', (c: Buffer) => resolve(c.toString()));
      s.once('error', reject);
    });
    s.write('from a stranger');
    t.is(await echoed, 'from a stranger');
    s.close();
  } finally {
    session.destroy();
  }
  const id = 'spiffe://cluster.local/ns/default/sa/nightly';
  const line = await eventually('inbound line of the stranger', () =>
    mesh.zt('server1').lines('connection complete').find((l) => l.direction === 'inbound' && l['src.identity'] === id));
  t.is(line['src.workload'], 'nightly');
  t.is(line['src.namespace'], 'batch');
  const text = (await httpIn(mesh.host('server1'), 'GET', 15020, '/metrics')).body;
  const labels = { reporter: 'destination', source_principal: id, source_workload: 'nightly', source_workload_namespace: 'batch', source_canonical_service: 'reports', source_canonical_revision: 'v7', source_cluster: 'Kubernetes' };
  t.is(counter(text, 'istio_tcp_connections_closed_total', labels), 1);
  t.is(counter(text, 'istio_tcp_received_bytes_total', labels), 'from a stranger'.length);
});

test.serial('peers are authenticated: another trust domain or no client certificate is rejected', async (t) => {
  const foreign = await dialHbone({ ip: IP.server1, port: 15008, expectedIdentities: [ID.server] }, await cert('evil.local', 'tester'), testerSockets());
  const outcome = await connectStatus(foreign, { ':method': 'CONNECT', ':authority': `${IP.server1}:8080` }).then(
    (status) => `status ${status}`,
    (err: Error) => `error ${err.message}`,
  );
  foreign.destroy();
  t.regex(outcome, /^error/);
  t.truthy(await eventually('rejection log', () => mesh.zt('server1').lines('HBONE client rejected: identity not in our trust domain').length > 0));

  // No client certificate at all: the TLS handshake itself must fail (or the first request, in TLS 1.3).
  const noCert = { ...(await cert('cluster.local', 'tester')), chainPem: [''], privateKeyPem: '' };
  await t.throwsAsync(async () => {
    const s = await dialHbone({ ip: IP.server1, port: 15008, expectedIdentities: [ID.server] }, noCert, testerSockets());
    try {
      await connectStatus(s, { ':method': 'CONNECT', ':authority': `${IP.server1}:8080` });
    } finally {
      s.destroy();
    }
  });
});

test.serial('our client refuses a server that presents an unexpected identity', async (t) => {
  const err = await t.throwsAsync(
    dialHbone({ ip: IP.server1, port: 15008, expectedIdentities: ['spiffe://cluster.local/ns/default/sa/someone-else'] }, await cert('cluster.local', 'tester'), testerSockets()),
  );
  t.regex(err!.message, /not one of/);
});

async function writePem(name: string, c: WorkloadCertificate): Promise<{ cert: string; key: string; ca: string }> {
  const base = join(mesh.lab.dir, name);
  writeFileSync(`${base}.pem`, c.chainPem.join('\n'));
  writeFileSync(`${base}.key`, c.privateKeyPem, { mode: 0o600 });
  writeFileSync(`${base}-ca.pem`, c.rootsPem.join('\n'));
  return { cert: `${base}.pem`, key: `${base}.key`, ca: `${base}-ca.pem` };
}

function run(ns: string, args: string[], input: Buffer, timeoutMs = 60_000): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
    p.stdin.end(input);
  });
}

test.serial('interop: a python3-h2 HBONE client tunnels through our 15008', async (t) => {
  const files = await writePem('py-client', await cert('cluster.local', 'tester'));
  const payload = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
  const r = await run(mesh.host('tester').name, [
    PY, join(INTEROP, 'hbone_client.py'), '--connect', `${IP.server1}:15008`, '--authority', `${IP.server1}:8080`,
    '--cert', files.cert, '--key', files.key, '--ca', files.ca, '--expect-san', ID.server,
  ], payload);
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.equals(payload));
});

test.serial('interop: our HBONE client tunnels through a python3-h2 CONNECT server', async (t) => {
  const pyId = 'spiffe://cluster.local/ns/default/sa/py';
  await apply({
    extraWorkloads: [{ name: 'pyserver', namespace: 'default', serviceAccount: 'py', workloadIps: [IP.tester], protocol: 'HBONE' }],
  });
  const files = await writePem('py-server', await cert('cluster.local', 'py'));
  const tester = mesh.host('tester');
  servers.push(await echoServer(tester, IP.tester, 7777));
  const py = spawn('ip', ['netns', 'exec', tester.name, PY, join(INTEROP, 'hbone_server.py'), '--listen', `${IP.tester}:15008`, '--cert', files.cert, '--key', files.key, '--ca', files.ca], { stdio: ['ignore', 'pipe', 'pipe'] });
  let peerLog = '';
  py.stderr.on('data', (c: Buffer) => (peerLog += c.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('python server not ready')), 15_000);
      py.stdout.on('data', (c: Buffer) => c.toString().includes('ready') && (clearTimeout(timer), resolve()));
    });
    const payload = Buffer.alloc(512 * 1024, 0x5a);
    const r = await exchange(mesh.host('client'), IP.tester, 7777, payload);
    t.is(r.error, undefined);
    t.true(r.received.equals(payload));
    t.true(peerLog.includes(`peer=${ID.client}`));
    const log = await eventually('access log', () => mesh.zt('client').lines('connection complete').find((l) => l['dst.identity'] === pyId));
    t.is(log['dst.hbone_addr'], `${IP.tester}:15008`);
  } finally {
    py.kill('SIGTERM');
    await apply({ policies: [] });
  }
});
