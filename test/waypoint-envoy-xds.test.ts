// A real upstream Envoy 1.40 as a waypoint, fed over our delta ADS (TLS, token re-read from a file): it ACKs every
// type, /config_dump shows the resources, a bad resource is NACKed once (no loop) while the last good config keeps
// serving, and a reconnect presents the rotated token.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, SECRET_TYPE_URL } from '../protos/envoy.js';
import { caMaterialFromData, generateRootSecretData, issueServingCertificate } from '../waypoint-controller/ca/index.js';
import { waypointBootstrap, waypointEnvoyResources, waypointSecrets } from '../waypoint-controller/waypoint/envoy/index.js';
import { ResourceStore, storeEnvoyResources, WaypointStores, XdsServer, type ConnectionDebug } from '../waypoint-controller/xds/index.js';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { parseIdentity } from '../ztunnel/identity/spiffe.js';
import { smallModel } from './fixtures/waypoint-envoy/model.js';
import { EnvoyProc, envoyAvailable } from './lab/envoy.js';
import { eventually } from './lab/ztunnel-proc.js';

const WP = 'shop/waypoint';
const NODE = 'waypoint~127.0.0.1~waypoint-7d9f-abcde.shop~shop.svc.cluster.local';
const SERVER_NAME = 'istiod.istio-system.svc';
const TYPES = [LISTENER_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, SECRET_TYPE_URL];

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Fixture {
  dir: string;
  stores: WaypointStores;
  tokens: string[];
  creds: grpc.ServerCredentials;
  rootPath: string;
  tokenPath: string;
}

async function fixture(): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-wp-envoy-'));
  const ca = await caMaterialFromData(await generateRootSecretData('cluster.local'), { kind: 'created', namespace: 'istio-system', name: 'ambit-ca' });
  const serving = await issueServingCertificate(ca, { dnsNames: [SERVER_NAME] });
  const rootPath = join(dir, 'root-cert.pem');
  writeFileSync(rootPath, serving.rootPem);
  const tokenPath = join(dir, 'istio-token');
  writeFileSync(tokenPath, 'token-1');
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(serving.rootPem), [{ cert_chain: Buffer.from(serving.certChainPem), private_key: Buffer.from(serving.privateKeyPem) }], false);
  return { dir, stores: new WaypointStores(), tokens: [], creds, rootPath, tokenPath };
}

function startServer(f: Fixture): XdsServer {
  return new XdsServer({
    store: new ResourceStore(),
    debounceMs: 10,
    log: pino({ level: process.env.LOG_LEVEL ?? 'silent' }),
    waypoints: { stores: f.stores, waypointOf: (n) => (n.podNamespace === 'shop' && n.podName.startsWith('waypoint-') ? WP : undefined) },
    authenticate: async ({ metadata }) => {
      f.tokens.push(String(metadata.get('authorization')[0] ?? ''));
      return undefined;
    },
  });
}

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const waypointConn = (s: XdsServer): ConnectionDebug | undefined => s.debugState().connections.find((c) => c.waypoint === WP);

/** Every type subscribed, answered and ACKed (last nonce sent = last acked), no NACK. */
function allAcked(s: XdsServer): ConnectionDebug | undefined {
  const c = waypointConn(s);
  if (!c) return undefined;
  const ok = TYPES.every((t) => {
    const w = c.types[t];
    return w && w.pushes > 0 && w.nonceAcked === w.nonceSent && w.nacks === 0;
  });
  return ok ? c : undefined;
}

const names = (dump: { configs: Record<string, unknown>[] }, type: string, list: string, pick: (e: Record<string, unknown>) => string): string[] => {
  const c = dump.configs.find((x) => x['@type'] === type) as Record<string, Record<string, unknown>[]> | undefined;
  return (c?.[list] ?? []).map(pick).sort();
};

test('a real Envoy waypoint ACKs our LDS/CDS/EDS/SDS over delta ADS, rejects a bad listener once and keeps serving; the token is re-read', async (t) => {
  if (!envoyAvailable()) return t.pass('no Envoy binary (test/lab/install-deps.sh); skipped');
  const f = await fixture();
  t.teardown(() => rmSync(f.dir, { recursive: true, force: true }));
  let server = startServer(f);
  t.teardown(() => server.close(100));
  const xdsPort = await server.listen('127.0.0.1:0', f.creds);

  // The mesh side: the waypoint's certificate and the resources of the small model.
  const mesh = await LocalCa.open(join(f.dir, 'mesh-ca.pem'), join(f.dir, 'mesh-ca-key.pem'), 'cluster.local');
  const cert = await mesh.issue(parseIdentity('spiffe://cluster.local/ns/shop/sa/waypoint'), 3600);
  const hbonePort = await freePort();
  const res = waypointEnvoyResources(smallModel(), { hbonePort });
  const store = f.stores.get(WP);
  storeEnvoyResources(store, {
    ...res,
    secrets: waypointSecrets({ certChainPem: cert.chainPem.join(''), privateKeyPem: cert.privateKeyPem, rootCertPem: cert.rootsPem[0]! }),
  });
  // Another waypoint's store: nothing of it may reach this Envoy.
  storeEnvoyResources(f.stores.get('other/waypoint'), { listeners: waypointEnvoyResources({ ...smallModel(), name: 'other' }, { hbonePort: hbonePort + 1 }).listeners.slice(0, 1) });

  const readinessPort = await freePort();
  const statsPort = await freePort();
  const bootstrap = waypointBootstrap({
    xdsHost: '127.0.0.1',
    xdsPort,
    xdsServerName: SERVER_NAME,
    rootCertPath: f.rootPath,
    tokenPath: f.tokenPath,
    clusterId: 'Kubernetes',
    readinessPort,
    statsPort,
    adminPort: await freePort(),
  });
  const envoy = new EnvoyProc({ bootstrap, node: NODE, cluster: 'waypoint.shop' });
  t.teardown(() => envoy.stop(2000, !!process.env.KEEP_ENVOY));
  await envoy.started();

  const conn = await eventually('Envoy to ACK every type', () => allAcked(server), 20_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${JSON.stringify(server.debugState(), null, 1)}\n${envoy.log().slice(-4000)}`);
  });
  t.is(conn.node?.proxyType, 'waypoint');
  t.deepEqual(f.tokens, ['Bearer token-1'], 'the token file, as a bearer token');
  t.deepEqual(conn.types[ENDPOINT_TYPE_URL]!.subscribed, res.endpoints.map((e) => e.cluster_name as string).sort(), 'EDS: named subscriptions');
  t.deepEqual(conn.types[SECRET_TYPE_URL]!.subscribed, ['ROOTCA', 'default']);

  // Envoy's own view: nothing rejected, everything there.
  const stats = await eventually('xDS stats', async () => {
    const s = await envoy.stats('update_');
    return (s.get('listener_manager.lds.update_success') ?? 0) > 0 && (s.get('sds.default.update_success') ?? 0) > 0 ? s : undefined;
  });
  const rejected = [...stats].filter(([k, v]) => k.endsWith('.update_rejected') && v !== 0);
  t.deepEqual(rejected, [], 'no update_rejected anywhere');
  for (const k of ['listener_manager.lds.update_rejected', 'cluster_manager.cds.update_rejected', 'sds.default.update_rejected', 'sds.ROOTCA.update_rejected']) t.is(stats.get(k), 0, k);
  for (const e of res.endpoints) t.is(stats.get(`cluster.${e.cluster_name as string}.update_rejected`), 0, `EDS ${e.cluster_name as string}`);

  const dump = await envoy.configDump();
  const listeners = names(dump, 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump', 'dynamic_listeners', (e) => e.name as string);
  t.deepEqual(listeners, res.listeners.map((l) => l.name as string).sort());
  const clusters = names(dump, 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump', 'dynamic_active_clusters', (e) => (e.cluster as { name: string }).name);
  t.deepEqual(clusters, res.clusters.map((c) => c.name as string).sort());
  const secrets = names(dump, 'type.googleapis.com/envoy.admin.v3.SecretsConfigDump', 'dynamic_active_secrets', (e) => e.name as string);
  t.deepEqual(secrets, ['ROOTCA', 'default']);
  const eds = dump.configs.find((x) => x['@type'] === 'type.googleapis.com/envoy.admin.v3.EndpointsConfigDump') as { dynamic_endpoint_configs: { endpoint_config: { cluster_name: string; endpoints?: { lb_endpoints?: unknown[] }[] } }[] };
  const http = eds.dynamic_endpoint_configs.find((e) => e.endpoint_config.cluster_name === 'inbound-vip|9080|http|reviews.shop.svc.cluster.local');
  t.is(http?.endpoint_config.endpoints?.[0]?.lb_endpoints?.length, 1, 'the healthy endpoint only');
  const ready = await envoy.admin('GET', '/ready');
  t.is(ready.status, 200, 'Envoy initialised (LIVE)');
  // The static listeners: readiness and Prometheus stats, and nothing else of the admin.
  t.is((await httpGet(readinessPort, '/healthz/ready')).status, 200);
  const prom = await httpGet(statsPort, '/stats/prometheus');
  t.is(prom.status, 200);
  t.regex(prom.body, /^envoy_listener_manager_lds_update_success\{\} \d+$/m);
  t.is((await httpGet(statsPort, '/config_dump')).status, 404);
  t.is((await httpGet(readinessPort, '/quitquitquit')).status, 404);

  // A listener Envoy must reject: a tcp_proxy without a cluster (a proto constraint).
  const before = waypointConn(server)!.types[LISTENER_TYPE_URL]!;
  const bad = {
    '@type': LISTENER_TYPE_URL,
    name: 'bad',
    address: { socket_address: { address: '127.0.0.1', port_value: await freePort() } },
    filter_chains: [{ filters: [{ name: 'tcp', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: 'bad' } }] }],
  };
  storeEnvoyResources(store, { listeners: [...res.listeners, bad] });
  const nacked = await eventually('the NACK', () => {
    const w = waypointConn(server)?.types[LISTENER_TYPE_URL];
    return w && w.nacks === 1 ? w : undefined;
  });
  t.regex(nacked.lastNack?.message ?? '', /bad/);
  t.is(nacked.pushes, before.pushes + 1);
  t.is(Number(/pilot_total_xds_rejects\{type="listener"\} (\d+)/.exec(await server.registry.metrics())?.[1]), 1, 'counted');
  await new Promise((r) => setTimeout(r, 1500));
  const later = waypointConn(server)!.types[LISTENER_TYPE_URL]!;
  t.is(later.pushes, nacked.pushes, 'not resent: no NACK loop');
  t.is(later.nacks, 1);
  const after = await envoy.stats('listener_manager.lds');
  t.is(after.get('listener_manager.lds.update_rejected'), 1);
  const dump2 = await envoy.configDump('dynamic_listeners');
  t.true(JSON.stringify(dump2).includes('"connect_terminate"'), 'the last good listeners still serve');
  t.is((await envoy.admin('GET', '/ready')).status, 200);

  // The fix is pushed and ACKed.
  storeEnvoyResources(store, { listeners: res.listeners });
  await eventually('the fix ACKed', () => {
    const w = waypointConn(server)?.types[LISTENER_TYPE_URL];
    return w && w.pushes === later.pushes + 1 && w.nonceAcked === w.nonceSent;
  });

  // Rotation: a new token in the file is what the next stream presents (the server restarts on the same port).
  // Envoy declares what it holds, so the new stream carries nothing it already has.
  writeFileSync(f.tokenPath, 'token-2');
  await server.close(100);
  server = startServer(f);
  await server.listen(`127.0.0.1:${xdsPort}`, f.creds);
  await eventually('Envoy to reconnect and ACK', () => allAcked(server), 30_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${JSON.stringify(server.debugState(), null, 1)}\n${envoy.log().slice(-3000)}`);
  });
  t.is(f.tokens.at(-1), 'Bearer token-2', 'the rotated token');
  const pushed = Number(/ambit_xds_pushed_resources_total\{type="listener"\} (\d+)/.exec(await server.registry.metrics())?.[1] ?? 0);
  t.is(pushed, 0, 'no listener resent after the reconnect');
  t.is((await envoy.stats('listener_manager.lds')).get('listener_manager.lds.update_rejected'), 1, 'still the one rejection');
});
