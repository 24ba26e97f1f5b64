// Waypoints end to end, with real Envoy: the controller provisions a waypoint for a Gateway of class istio-waypoint,
// the lab kubelet runs its Deployment's pod (upstream Envoy in a pod netns with the ConfigMap's bootstrap and a
// bound token), the controller configures that Envoy over xDS, and a client's traffic to the bound Service goes
// client ztunnel -> waypoint -> server ztunnel, cross-node, with HTTPRoutes and L7 AuthorizationPolicies applied.
import { AppsV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node';
import test from 'ava';
import type http from 'node:http';
import type net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { toStruct } from '../protos/index.js';
import { AggregatedDiscoveryServiceDefinition, type DeltaDiscoveryResponse } from '../protos/xds.js';
import { ENVOY_TYPE_URLS, typeLabel } from '../waypoint-controller/xds/index.js';
import tls from 'node:tls';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { parseIdentity } from '../ztunnel/identity/spiffe.js';
import { connectTcp } from '../ztunnel/native/index.js';
import { echoHttpServer, echoServer, holdOpen, httpIn, httpRequest, type EchoAnswer } from './lab/apps.js';
import { AmbientCluster } from './lab/ambient-cluster.js';
import { eventually } from './lab/ztunnel-proc.js';

const NS = 'shop';
const lab = new AmbientCluster({
  nodes: [
    { name: 'node1', pods: [{ name: 'client', namespace: NS, serviceAccount: 'sleep', enrolled: true }, { name: 'other', namespace: NS, serviceAccount: 'other', enrolled: true }, { name: 'wp-a', namespace: NS }] },
    {
      name: 'node2',
      pods: [
        { name: 'echo-v1', namespace: NS, serviceAccount: 'echo', enrolled: true },
        { name: 'echo-v2', namespace: NS, serviceAccount: 'echo', enrolled: true },
        { name: 'mirror', namespace: NS, serviceAccount: 'mirror', enrolled: true },
        { name: 'wp-b', namespace: NS },
      ],
    },
  ],
  slots: ['wp-a', 'wp-b'],
  labels: { 'echo-v1': { app: 'echo', version: 'v1' }, 'echo-v2': { app: 'echo', version: 'v2' }, mirror: { app: 'mirror' } },
});
const servers: (net.Server | http.Server)[] = [];
const mirrored: EchoAnswer[] = [];
let servedCount = 0;
let custom: CustomObjectsApi;
const vips: Record<string, string> = {};
const GW = { group: 'gateway.networking.k8s.io', version: 'v1' };
const AdsClient = grpc.makeGenericClientConstructor(AggregatedDiscoveryServiceDefinition as unknown as grpc.ServiceDefinition, 'AggregatedDiscoveryService');

const svc = (name: string, selector: Record<string, string>, labels: Record<string, string> = {}, extraPorts: object[] = []): KubernetesObject =>
  ({
    apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: NS, labels },
    spec: { selector, ports: [{ name: 'http', port: 80, targetPort: 8080 }, ...extraPorts] },
  }) as KubernetesObject;

const get = (path: string, headers: Record<string, string> = {}, method = 'GET', from = 'client') =>
  httpRequest(lab.pod(from).ns, { method, host: vips.echo!, port: 80, path, headers, timeoutMs: 10_000, keepAlive: true });
const who = (body: string) => (JSON.parse(body) as EchoAnswer).who;

test.before(async () => {
  await lab.start([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    svc('echo', { app: 'echo' }, { 'istio.io/use-waypoint': 'waypoint' }, [{ name: 'tcp-echo', port: 9000, targetPort: 9000 }]),
    svc('echo-v1', { app: 'echo', version: 'v1' }),
    svc('echo-v2', { app: 'echo', version: 'v2' }),
    svc('echo-mirror', { app: 'mirror' }),
  ]);
  custom = lab.cp.api!.kubeConfig().makeApiClient(CustomObjectsApi);
  for (const name of ['echo', 'echo-v1', 'echo-v2']) vips[name] = (await lab.cp.core!.readNamespacedService({ namespace: NS, name })).spec!.clusterIP!;
  for (const p of ['echo-v1', 'echo-v2']) {
    servers.push(await echoHttpServer(lab.pod(p).ns, '0.0.0.0', 8080, p, () => servedCount++));
    servers.push(await echoServer(lab.pod(p).ns, '0.0.0.0', 9000));
  }
  servers.push(await echoHttpServer(lab.pod('mirror').ns, '0.0.0.0', 8080, 'mirror', (a) => mirrored.push(a)));
});

test.after.always(async () => {
  for (const s of servers) s.close();
  await lab.cleanup();
});

const apply = (plural: string, body: object) => custom.createNamespacedCustomObject({ ...GW, plural, namespace: NS, body });
const applyPolicy = (body: object) => custom.createNamespacedCustomObject({ group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespace: NS, body });
const removePolicy = (name: string) => custom.deleteNamespacedCustomObject({ group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespace: NS, name });

/** Every response the controller sent to a waypoint Envoy, for every type: ACKed, none NACKed. */
function assertNoNacks(t: { is: (a: unknown, b: unknown, m?: string) => void }) {
  for (const c of lab.cp.controller!.xds.debugState().connections.filter((x) => x.waypoint)) {
    for (const [type, w] of Object.entries(c.types)) t.is(w.nacks, 0, `${c.node?.id} NACKed ${type}: ${w.lastNack?.message}`);
  }
}

async function envoyStats(slot: string): Promise<string> {
  return (await httpIn(lab.pod(slot).ns, 'GET', 15090, '/stats/prometheus', lab.pod(slot).ip)).body;
}

test.serial('a Gateway of class istio-waypoint becomes a running Envoy waypoint, Programmed, and the Service binds to it', async (t) => {
  await apply('gateways', {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: NS },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  });
  const addresses = await lab.waypointProgrammed(NS, 'waypoint', 60_000);
  t.is(addresses[1]?.value, 'waypoint.shop.svc.cluster.local');
  const pods = lab.kubelet!.podsOf(NS, 'waypoint');
  t.is(pods.length, 1);
  // The Envoy got every type from us and ACKed it.
  const conn = await eventually('waypoint xDS stream', () => lab.cp.controller!.xds.debugState().connections.find((c) => c.waypoint === `${NS}/waypoint`));
  for (const type of [ENVOY_TYPE_URLS[0]!, ENVOY_TYPE_URLS[1]!]) t.true((conn.types[type]?.acks ?? 0) > 0, `${type} ACKed`);
  assertNoNacks(t);
  // Traffic to the Service now passes the waypoint: ztunnel node1 knows the waypoint for the Service.
  await eventually('client ztunnel sees the waypoint', async () => {
    const dump = JSON.parse((await httpIn(lab.cluster.node('node1').ns, 'GET', 15000, '/config_dump')).body) as { services: { hostname: string; waypoint?: unknown }[] };
    return dump.services.find((s) => s.hostname === 'echo.shop.svc.cluster.local')?.waypoint;
  });
});

test.serial('HTTP to the Service goes client ztunnel -> waypoint -> server ztunnel cross-node, with the identities of each hop', async (t) => {
  const r = await eventually('a call through the waypoint', async () => {
    const x = await get('/hello').catch(() => undefined);
    return x?.status === 200 ? x : undefined;
  }, 20_000);
  t.regex(who(r.body), /^echo-v[12]$/);
  const wp = lab.kubelet!.podsOf(NS, 'waypoint')[0]!;
  // The server's ztunnel saw the waypoint's identity on the inbound HBONE connection.
  const inbound = await eventually('server inbound line', () =>
    lab.cluster.zt('node2').lines('connection complete').find((l) => l.direction === 'inbound' && l['src.identity'] === 'spiffe://cluster.local/ns/shop/sa/waypoint'),
  );
  t.is(inbound['src.addr']?.toString().split(':')[0], wp.slot.ip);
  // The client's ztunnel sent it to the waypoint pod, asking for the VIP.
  const outbound = await eventually('client outbound line', () =>
    lab.cluster.zt('node1').lines('connection complete').find((l) => l.direction === 'outbound' && l['dst.hbone_addr'] === `${wp.slot.ip}:15008`),
  );
  t.is(outbound['dst.addr'], `${vips.echo}:80`);
  t.is(outbound['src.identity'], 'spiffe://cluster.local/ns/shop/sa/sleep');
});

test.serial('HTTPRoute: a 90/10 split within bounds, a header match, redirect, rewrite, mirror and a request timeout', async (t) => {
  await apply('httproutes', {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'echo', namespace: NS },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }],
      rules: [
        { matches: [{ headers: [{ name: 'x-version', value: 'v2' }] }], backendRefs: [{ name: 'echo-v2', port: 80 }] },
        { matches: [{ path: { type: 'PathPrefix', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }] },
        { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } }], backendRefs: [{ name: 'echo-v1', port: 80 }] },
        { matches: [{ path: { type: 'PathPrefix', value: '/copy' } }], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'echo-mirror', port: 80 } } }], backendRefs: [{ name: 'echo-v1', port: 80 }] },
        { matches: [{ path: { type: 'PathPrefix', value: '/slow' } }], timeouts: { request: '500ms' }, backendRefs: [{ name: 'echo-v1', port: 80 }] },
        { backendRefs: [{ name: 'echo-v1', port: 80, weight: 90 }, { name: 'echo-v2', port: 80, weight: 10 }] },
      ],
    },
  });
  await eventually('route in effect', async () => (await get('/old/x').catch(() => undefined))?.status === 301 || undefined, 15_000);
  assertNoNacks(t);

  const N = 400;
  let v2 = 0;
  for (let i = 0; i < N; i++) if (who((await get(`/split/${i}`)).body) === 'echo-v2') v2++;
  // Binomial(400, 0.1): mean 40, sd 6; the bounds are over 3.5 sd wide on both sides.
  t.true(v2 >= 19 && v2 <= 61, `v2 got ${v2} of ${N}`);

  for (let i = 0; i < 5; i++) t.is(who((await get('/any', { 'x-version': 'v2' })).body), 'echo-v2');
  const redirect = await get('/old/page');
  t.is(redirect.status, 301);
  t.regex(String(redirect.headers.location), /\/new\/page$/);
  const rewritten = JSON.parse((await get('/api/items')).body) as EchoAnswer;
  t.is(rewritten.who, 'echo-v1');
  t.is(rewritten.path, '/v1/items');
  const before = mirrored.length;
  t.is(who((await get('/copy/me')).body), 'echo-v1');
  await eventually('mirrored request', () => mirrored.slice(before).find((a) => a.path === '/copy/me'));
  const slow = await get('/slow/3000');
  t.is(slow.status, 504);
  t.is((await get('/slow/10')).status, 200);
});

test.serial('L7 AuthorizationPolicy on the waypoint: DENY by method answers 403 while GET passes; ALLOW by principal, path and header', async (t) => {
  const targetRefs = [{ kind: 'Service', group: '', name: 'echo' }];
  await applyPolicy({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'no-delete', namespace: NS },
    spec: { targetRefs, action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] },
  });
  await eventually('deny in effect', async () => (await get('/x', {}, 'DELETE')).status === 403 || undefined, 15_000);
  t.is((await get('/x')).status, 200);
  await removePolicy('no-delete');
  await eventually('deny gone', async () => (await get('/x', {}, 'DELETE')).status === 200 || undefined, 15_000);

  // The waypoint sees the client's identity: an ALLOW for sleep lets `client` through and not `other`.
  await applyPolicy({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'only-sleep', namespace: NS },
    spec: {
      targetRefs, action: 'ALLOW',
      rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/sleep'] } }], to: [{ operation: { paths: ['/ok/*'] } }], when: [{ key: 'request.headers[x-team]', values: ['a'] }] }],
    },
  });
  await eventually('allow in effect', async () => (await get('/ok/1', { 'x-team': 'a' }, 'GET', 'other')).status === 403 || undefined, 15_000);
  t.is((await get('/ok/1', { 'x-team': 'a' })).status, 200);
  t.is((await get('/ok/1', { 'x-team': 'b' })).status, 403, 'header');
  t.is((await get('/nope', { 'x-team': 'a' })).status, 403, 'path');
  t.is((await get('/ok/1', { 'x-team': 'a' }, 'GET', 'other')).status, 403, 'principal');
  await removePolicy('only-sleep');
  assertNoNacks(t);
});

/**
 * Sends `text` on a TCP connection and reads the echo back before closing: Envoy's CONNECT termination does not carry
 * a half-close through the waypoint (the tunnel ends with it), so the client must not finish sending first.
 */
async function echoRoundTrip(from: string, port: number, text: string): Promise<string> {
  const s = await holdOpen(lab.pod(from).ns, vips.echo!, port).catch(() => undefined);
  if (!s) return '';
  return new Promise((resolve) => {
    let got = '';
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, 5000);
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.length >= text.length) done();
    });
    s.on('close', done);
    s.on('error', done);
    s.write(text);
  });
}

test.serial('a TCP port behind the waypoint carries bytes, and an L4 policy on it applies', async (t) => {
  // (The previous test's policies may take a moment to leave the waypoint.)
  const echoed = await eventually('tcp echo', async () => (await echoRoundTrip('client', 9000, 'tcp through the waypoint')) || undefined, 15_000);
  t.is(echoed, 'tcp through the waypoint');
  await applyPolicy({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'tcp-deny-other', namespace: NS },
    spec: { targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/other'] } }], to: [{ operation: { ports: ['9000'] } }] }] },
  });
  await eventually('tcp deny in effect', async () => (await echoRoundTrip('other', 9000, 'x')) === '' || undefined, 15_000);
  t.is(await echoRoundTrip('client', 9000, 'still'), 'still');
  await removePolicy('tcp-deny-other');
});

test.serial("Envoy's admin is not reachable from other pods, and HBONE to the waypoint without a mesh certificate is refused", async (t) => {
  const wp = lab.kubelet!.podsOf(NS, 'waypoint')[0]!;
  await t.throwsAsync(httpIn(lab.pod('client').ns, 'GET', 15000, '/config_dump', wp.slot.ip));
  // From a pod that is not captured (a spare slot): TLS to 15008 with a certificate for a mesh identity, once from the
  // mesh CA and once from another CA. Envoy's HTTP/2 SETTINGS (bytes back) come only for the mesh one.
  const spare = lab.pod(wp.slot.name === 'wp-a' ? 'wp-b' : 'wp-a');
  const identity = 'spiffe://cluster.local/ns/shop/sa/sleep';
  const mesh = await lab.cp.controller!.issuer.issueKeyPair(identity, 600);
  const foreign = await (await LocalCa.open(lab.cluster.caCert, lab.cluster.caKey, 'cluster.local')).issue(parseIdentity(identity), 600);
  const hello = (cert: string, key: string) =>
    new Promise<number>((resolve) => {
      let got = 0;
      const s = tls.connect({ socket: connectTcp({ netnsFd: spare.ns.fd, host: wp.slot.ip, port: 15008 }), cert, key, ALPNProtocols: ['h2'], rejectUnauthorized: false });
      const done = () => (clearTimeout(timer), s.destroy(), resolve(got));
      const timer = setTimeout(done, 3000);
      // The HTTP/2 client preface and an empty SETTINGS frame: Envoy answers with its SETTINGS.
      s.once('secureConnect', () => s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])));
      s.on('data', (c: Buffer) => (got += c.length));
      s.on('error', done);
      s.on('close', done);
    });
  t.true((await hello(mesh.certChain.join(''), mesh.privateKeyPem)) > 0, 'a mesh certificate gets HTTP/2 going');
  t.is(await hello(foreign.chainPem.join(''), foreign.privateKeyPem), 0, 'a certificate from another CA gets nothing');
  const stats = await envoyStats(wp.slot.name);
  t.regex(stats, /envoy_listener_manager_lds_update_rejected\{?[^}]*\}? 0/);
});

test.serial("a token of another service account cannot obtain the waypoint's configuration (it holds the waypoint's private key)", async (t) => {
  const wp = lab.kubelet!.podsOf(NS, 'waypoint')[0]!;
  const token = lab.cp.api!.mintToken({ namespace: NS, serviceAccount: 'sleep', audiences: ['istio-ca'], pod: 'client' }).token;
  const creds = grpc.credentials.createSsl(Buffer.from(lab.cp.controller!.rootPem));
  const client = new AdsClient(`127.0.0.1:${lab.cp.controller!.tlsPort}`, creds, { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' });
  t.teardown(() => client.close());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  const stream = (client as unknown as Record<string, (m: grpc.Metadata) => grpc.ClientDuplexStream<object, DeltaDiscoveryResponse>>).deltaAggregatedResources!.call(client, md);
  const got: DeltaDiscoveryResponse[] = [];
  stream.on('data', (r: DeltaDiscoveryResponse) => got.push(r));
  stream.on('error', () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
  stream.write({
    node: { id: `waypoint~${wp.slot.ip}~${wp.name}.${NS}~${NS}.svc.cluster.local`, cluster: '', metadata: toStruct({}) },
    typeUrl: ENVOY_TYPE_URLS[4]!, resourceNamesSubscribe: ['default'], resourceNamesUnsubscribe: [], initialResourceVersions: {},
  });
  const s = await status;
  t.is(s.code, grpc.status.FAILED_PRECONDITION);
  t.deepEqual(got, []);
});

test.serial('no configuration the controller sent was rejected by any waypoint Envoy in this file', async (t) => {
  const nacks = (await lab.cp.controller!.xds.metrics.nacks.get()).values;
  for (const type of ENVOY_TYPE_URLS) t.is(nacks.find((v) => v.labels.type === typeLabel(type))?.value ?? 0, 0, `NACKs of ${type}`);
  for (const p of lab.kubelet!.podsOf(NS, 'waypoint')) {
    const rejected = (await envoyStats(p.slot.name)).split('\n').filter((l) => /^envoy_\S*update_rejected/.test(l) && !/ 0$/.test(l));
    t.deepEqual(rejected, [], `${p.name} rejected an update`);
  }
});

test.serial('the waypoint pod killed: new connections go to its replacement; no waypoint pod: refused, not bypassed', async (t) => {
  const first = lab.kubelet!.podsOf(NS, 'waypoint')[0]!;
  await lab.cp.core!.deleteNamespacedPod({ namespace: NS, name: first.name });
  const next = await eventually('replacement ready', () => lab.kubelet!.podsOf(NS, 'waypoint').find((p) => p.name !== first.name && p.ready), 60_000);
  await eventually('traffic through the replacement', async () => {
    const r = await get('/after').catch(() => undefined);
    return r?.status === 200 || undefined;
  }, 20_000);
  const line = await eventually('outbound to the replacement', () =>
    lab.cluster.zt('node1').lines('connection complete').find((l) => l.direction === 'outbound' && l['dst.hbone_addr'] === `${next.slot.ip}:15008`),
  );
  t.truthy(line);

  // Scale to zero: the waypoint has no ready pod; its bound Service's traffic is refused rather than sent around it.
  await lab.cp.api!.kubeConfig().makeApiClient(AppsV1Api).patchNamespacedDeployment(
    { namespace: NS, name: 'waypoint', body: { spec: { replicas: 0 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  await eventually('no waypoint pod', () => lab.kubelet!.podsOf(NS, 'waypoint').length === 0 || undefined, 20_000);
  const served = () => servedCount;
  const before = served();
  await eventually('refused', async () => (await get('/down').catch((e: Error) => e)) instanceof Error || undefined, 20_000);
  for (let i = 0; i < 5; i++) await t.throwsAsync(get(`/down/${i}`));
  t.is(served(), before, 'nothing reached the backends around the waypoint');
  const failed = lab.cluster.zt('node1').lines('connection failed').filter((l) => l['dst.waypoint']);
  t.regex(String(failed.at(-1)?.error), /no healthy endpoint/);
});
