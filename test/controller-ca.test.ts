// The mesh CA end to end: the controller's CA (root in a Secret, TokenReview through the embedded API server) issues
// node-scoped certificates to the lab's ztunnels over TLS; refusals with real tokens; rotation; restarts.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import type net from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { CaClient } from '../ztunnel/identity/ca-client.js';
import { x509 } from '../ztunnel/identity/x509.js';
import { tlsChannel } from '../ztunnel/net/grpc-tls.js';
import { ProxyState } from '../ztunnel/state/index.js';
import { XdsClient } from '../ztunnel/xds/client.js';
import { echoServer, exchange, holdOpen, httpIn } from './lab/apps.js';
import { Cluster } from './lab/cluster.js';
import { LabControlPlane } from './lab/control-plane.js';
import { echoes, sleep } from './lab/waits.js';
import { eventually } from './lab/ztunnel-proc.js';

const TTL = 8; // seconds: renewed at half, so rotation shows within a test
const cp = new LabControlPlane();
const envs = new Map<string, Record<string, string>>();
const servers: net.Server[] = [];
const cluster = new Cluster(
  {
    nodes: [
      { name: 'node1', pods: [{ name: 'client', namespace: 'shop', serviceAccount: 'sleep', enrolled: true }] },
      { name: 'node2', pods: [{ name: 'server', namespace: 'shop', serviceAccount: 'echo', enrolled: true }, { name: 'extra', namespace: 'shop', serviceAccount: 'extra', enrolled: true }] },
    ],
  },
  { startZtunnels: false, envFor: (n) => ({ ...envs.get(n), WORKLOAD_CERT_TTL_SECONDS: String(TTL) }) },
);
const silent = pino({ level: 'silent' });
let root = '';

type Cert = { identity: string; state: string; certChain: { serialNumber: string }[]; rootCerts: { serialNumber: string }[] };
const certs = async (node: string) => (JSON.parse((await httpIn(cluster.node(node).ns, 'GET', 15000, '/config_dump')).body) as { certificates: Cert[] }).certificates;

test.before(async () => {
  await cp.start([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } }]);
  for (const sa of ['sleep', 'echo', 'extra'])
    await cp.core!.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: sa } } });
  await cluster.start();
  for (const p of cluster.allPods()) await cp.runPod(p, { app: p.name });
  for (const node of ['node1', 'node2']) {
    await cp.relay(cluster.node(node).ns);
    envs.set(node, await cp.ztunnelEnv(node, cluster.lab.dir));
    await cluster.startZtunnel(node);
  }
  servers.push(await echoServer(cluster.pod('server').ns, '0.0.0.0', 8080));
  root = join(cluster.lab.dir, 'mesh-root.pem');
});

test.after.always(async () => {
  for (const s of servers) s.close();
  await cluster.cleanup();
  await cp.stop();
});

test.serial('ztunnels hold certificates from the controller for their own node\'s identities only, and traffic carries them', async (t) => {
  const rootCert = new x509.X509Certificate(cp.controller!.rootPem);
  const n1 = await eventually('node1 certificate', async () => ((await certs('node1')).some((c) => c.state === 'Available') ? certs('node1') : undefined));
  const n2 = await eventually('node2 certificates', async () => ((await certs('node2')).filter((c) => c.state === 'Available').length === 2 ? certs('node2') : undefined));
  t.deepEqual(n1.map((c) => c.identity), ['spiffe://cluster.local/ns/shop/sa/sleep']);
  t.deepEqual(n2.map((c) => c.identity).sort(), ['spiffe://cluster.local/ns/shop/sa/echo', 'spiffe://cluster.local/ns/shop/sa/extra']);
  for (const c of [...n1, ...n2]) t.is(c.rootCerts[0]?.serialNumber, rootCert.serialNumber);
  const r = await exchange(cluster.pod('client').ns, cluster.pod('server').ip, 8080, Buffer.from('over mTLS'));
  t.is(r.received.toString(), 'over mTLS');
  const line = await eventually('inbound log', () => cluster.zt('node2').lines('connection complete').find((l) => l.direction === 'inbound'));
  t.is(line['src.identity'], 'spiffe://cluster.local/ns/shop/sa/sleep');
});

/** A CA client as a given caller: the token is minted by the API server, so TokenReview is the real one. */
async function askCa(token: string, identity: { namespace: string; serviceAccount: string }, clusterId = 'Kubernetes') {
  const tokenPath = join(cluster.lab.dir, `t-${Math.random().toString(36).slice(2)}`);
  writeFileSync(tokenPath, token);
  const client = new CaClient(
    { address: `127.0.0.1:${cp.controller!.tlsPort}`, rootCertPath: root, serverName: 'istiod.istio-system.svc', tokenPath, clusterId },
    silent,
  );
  try {
    await client.issue({ trustDomain: 'cluster.local', ...identity }, 600);
    return 'issued';
  } catch (e) {
    return (e as Error).message;
  } finally {
    client.close?.();
  }
}

test.serial('refusals with real tokens: no pod on the caller\'s node, another identity, wrong audience, bad token, wrong cluster', async (t) => {
  const api = cp.api!;
  const ztunnel1 = api.mintToken({ namespace: 'istio-system', serviceAccount: 'ztunnel', audiences: ['istio-ca'], pod: 'ztunnel-node1' }).token;
  t.is(await askCa(ztunnel1, { namespace: 'shop', serviceAccount: 'sleep' }), 'issued', 'node1 runs a sleep pod');
  t.regex(await askCa(ztunnel1, { namespace: 'shop', serviceAccount: 'echo' }), /PERMISSION_DENIED/, 'no echo pod on node1');
  const workload = api.mintToken({ namespace: 'shop', serviceAccount: 'sleep', audiences: ['istio-ca'], pod: 'client' }).token;
  t.is(await askCa(workload, { namespace: 'shop', serviceAccount: 'sleep' }), 'issued', 'its own identity');
  t.regex(await askCa(workload, { namespace: 'shop', serviceAccount: 'echo' }), /PERMISSION_DENIED/);
  const wrongAudience = api.mintToken({ namespace: 'shop', serviceAccount: 'sleep', audiences: ['something-else'], pod: 'client' }).token;
  t.regex(await askCa(wrongAudience, { namespace: 'shop', serviceAccount: 'sleep' }), /UNAUTHENTICATED/);
  t.regex(await askCa(`${workload.slice(0, -4)}AAAA`, { namespace: 'shop', serviceAccount: 'sleep' }), /UNAUTHENTICATED/);
  t.regex(await askCa(workload, { namespace: 'shop', serviceAccount: 'sleep' }, 'other-cluster'), /UNAUTHENTICATED/);
});

test.serial('xDS over TLS: a client without a valid token is refused, one with a token is served', async (t) => {
  const connect = async (token?: string) => {
    const tokenPath = join(cluster.lab.dir, `x-${Math.random().toString(36).slice(2)}`);
    writeFileSync(tokenPath, token ?? 'not-a-token');
    const tls = tlsChannel([cp.controller!.rootPem], `127.0.0.1:${cp.controller!.tlsPort}`, 'istiod.istio-system.svc');
    const state = new ProxyState();
    const client = new XdsClient(
      {
        address: `127.0.0.1:${cp.controller!.tlsPort}`, credentials: tls.credentials, channelOptions: tls.options, tokenPath, onDemand: false,
        node: { ip: '10.0.0.1', podName: 'probe', podNamespace: 'istio-system', nodeName: 'node1', clusterId: 'Kubernetes' },
        defaults: { trustDomain: 'cluster.local', clusterId: 'Kubernetes' },
      },
      state,
      silent,
    );
    client.start();
    // Served: wait for it (TLS, TokenReview and two first responses). Refused: nothing is to come, so a fixed wait.
    if (token) await eventually('served', () => client.ready() && state.workloads.size === 3).catch(() => {});
    else await sleep(1500);
    const result = { ready: client.ready(), workloads: state.workloads.size };
    client.close();
    return result;
  };
  t.deepEqual(await connect(), { ready: false, workloads: 0 });
  const token = cp.api!.mintToken({ namespace: 'istio-system', serviceAccount: 'ztunnel', audiences: ['istio-ca'], pod: 'ztunnel-node1' }).token;
  const served = await connect(token);
  t.true(served.ready);
  t.is(served.workloads, 3);
});

test.serial('certificates rotate at half-life without breaking an open connection', async (t) => {
  const before = (await certs('node1'))[0]!.certChain[0]!.serialNumber;
  const conn = await holdOpen(cluster.pod('client').ns, cluster.pod('server').ip, 8080);
  t.is(await echoes(conn, 'before'), 'before');
  const after = await eventually('a new serial', async () => {
    const s = (await certs('node1'))[0]?.certChain[0]?.serialNumber;
    return s && s !== before ? s : undefined;
  }, TTL * 1000 + 5000);
  t.not(after, before);
  t.is(await echoes(conn, 'after rotation'), 'after rotation');
  conn.destroy();
  t.is((await exchange(cluster.pod('client').ns, cluster.pod('server').ip, 8080, Buffer.from('new'))).received.toString(), 'new');
});

test.serial('an identity is forgotten when its last pod on the node is gone', async (t) => {
  await cluster.unenroll('extra');
  const ids = await eventually('extra forgotten', async () => {
    const c = await certs('node2');
    return c.some((x) => x.identity.endsWith('/sa/extra')) ? undefined : c.map((x) => x.identity);
  });
  t.deepEqual(ids, ['spiffe://cluster.local/ns/shop/sa/echo']);
});

test.serial('the root survives a controller restart, and ztunnels keep working across it', async (t) => {
  const rootBefore = cp.controller!.rootPem;
  await cp.restartController();
  t.is(cp.controller!.rootPem, rootBefore);
  await eventually('both ztunnels back', () => cp.controller!.xds.debugState().connections.length === 2, 20_000);
  t.is((await exchange(cluster.pod('client').ns, cluster.pod('server').ip, 8080, Buffer.from('after restart'))).received.toString(), 'after restart');
});
