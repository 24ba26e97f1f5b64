// ztunnel and waypoints: the outbound route decision (pure), the waypoint fields from xDS and the local file, their
// way to proxy threads, the on-demand lookup of a missing waypoint, and /config_dump.
import test from 'ava';
import { pino } from 'pino';
import { ADDRESS_TYPE_URL, AddressCodec, type MessageInit } from '../protos/index.js';
import type * as pb from '../protos/index.js';
import { dumpState } from '../ztunnel/admin/config-dump.js';
import { resolveAndRoute, route, type Picker, type Route } from '../ztunnel/proxy/route.js';
import { parseLocalConfig } from '../ztunnel/sources/local-config.js';
import { ProxyState, type AddressResolver } from '../ztunnel/state/index.js';
import { sharedGatewayAddress } from '../ztunnel/state/intern.js';
import { ProfiledWorkload } from '../ztunnel/state/profiled-workload.js';
import { applyOp, encodeOp } from '../ztunnel/state/replica.js';
import type { GatewayAddress, Service, Workload } from '../ztunnel/state/types.js';
import { XdsClient } from '../ztunnel/xds/client.js';
import { convertAddress, XdsConvertError } from '../ztunnel/xds/convert.js';

// ---------------------------------------------------------------- a namespace with a waypoint

const API = 'shop/api.shop.svc.cluster.local';
const WP_HOST = 'waypoint.shop.svc.cluster.local';
const WP = `shop/${WP_HOST}`;
const VIP = '10.96.0.10';
const WP_VIP = '10.96.0.50';
const ID = {
  api: 'spiffe://cluster.local/ns/shop/sa/api',
  waypoint: 'spiffe://cluster.local/ns/shop/sa/waypoint',
  waypointSan: 'spiffe://cluster.local/ns/shop/sa/waypoint-svc',
};
const byHostname: GatewayAddress = { kind: 'hostname', namespace: 'shop', hostname: WP_HOST, hboneMtlsPort: 15008 };
const byVip: GatewayAddress = { kind: 'address', network: '', address: WP_VIP, hboneMtlsPort: 15008 };

function wl(name: string, over: Partial<Workload> = {}): Workload {
  return {
    uid: `Kubernetes//v1/Pod/shop/${name}`, name, namespace: 'shop', serviceAccount: 'api', trustDomain: 'cluster.local',
    workloadIps: [], network: '', protocol: 'HBONE', node: 'node-a', hostname: '', canonicalName: name, canonicalRevision: 'latest',
    workloadName: name, workloadType: 'pod', clusterId: 'Kubernetes', status: 'Healthy', authorizationPolicies: [],
    services: new Map(), ...over,
  };
}
const serves = (svc: string, ...pairs: [number, number][]) => new Map([[svc, new Map(pairs)]]);

function apiService(over: Partial<Service> = {}): Service {
  return { name: 'api', namespace: 'shop', hostname: 'api.shop.svc.cluster.local', vips: [{ network: '', address: VIP }], ports: new Map([[80, 8080]]), subjectAltNames: [], ...over };
}
/** The waypoint's Service: 15008 is a named target port, which its pods map to 15088 (to show the mapping is applied). */
function waypointService(over: Partial<Service> = {}): Service {
  return {
    name: 'waypoint', namespace: 'shop', hostname: WP_HOST, vips: [{ network: '', address: WP_VIP }],
    ports: new Map([[15021, 15021], [15008, 0]]), subjectAltNames: [ID.waypointSan], ...over,
  };
}
/** A waypoint pod: not captured (TCP), serving the waypoint Service. */
const waypointPod = (name: string, ip: string, over: Partial<Workload> = {}) =>
  wl(name, { serviceAccount: 'waypoint', protocol: 'TCP', workloadIps: [ip], services: serves(WP, [15008, 15088]), ...over });

interface Mesh {
  service?: Partial<Service>;
  /** The api pod's own waypoint. */
  podWaypoint?: GatewayAddress;
  waypointPods?: Workload[];
  withWaypointService?: boolean;
}

const apiPod = (gw?: GatewayAddress) => wl('api-1', { workloadIps: ['10.0.0.1'], services: serves(API, [80, 8080]), ...(gw && { waypoint: gw }) });
const client = wl('client', { serviceAccount: 'sleep', workloadIps: ['10.0.0.7'] });

function mesh(o: Mesh = {}): ProxyState {
  const state = new ProxyState();
  state.upsertService(apiService(o.service));
  if (o.withWaypointService !== false) state.upsertService(waypointService());
  for (const w of [client, apiPod(o.podWaypoint), ...(o.waypointPods ?? [waypointPod('waypoint-1', '10.0.9.1')])]) state.upsertWorkload(w);
  return state;
}

/** Picks index `i` and records how many candidates it was offered. */
function picker(i: number): Picker & { offered: number[] } {
  const offered: number[] = [];
  return Object.assign((n: number) => (offered.push(n), i), { offered });
}

const reasonOf = (r: Route) => (r.kind === 'reject' ? r.reason : `not a reject: ${r.kind}`);

// ---------------------------------------------------------------- the route decision table

test('a VIP whose service has a waypoint: HBONE to a healthy waypoint pod, :authority the VIP, waypoint identities', (t) => {
  const state = mesh({
    service: { waypoint: byHostname },
    waypointPods: [waypointPod('waypoint-sick', '10.0.9.2', { status: 'Unhealthy' }), waypointPod('waypoint-1', '10.0.9.1')],
  });
  const pick = picker(0);
  const r = route(state, '', VIP, 80, pick, client);
  t.deepEqual(pick.offered, [1], 'only the healthy waypoint pod is a candidate');
  t.like(r, {
    kind: 'hbone', hboneIp: '10.0.9.1', hbonePort: 15088, targetIp: VIP, targetPort: 80,
    expectedIdentities: [ID.waypoint, ID.waypointSan], workload: { name: 'waypoint-1' }, service: { name: 'api' }, waypoint: byHostname,
  });
  // The port need not be one of the service's: the waypoint decides what to do with it.
  t.like(route(state, '', VIP, 9999, picker(0), client), { kind: 'hbone', targetIp: VIP, targetPort: 9999, hboneIp: '10.0.9.1' });
});

test('a VIP whose service has no waypoint goes direct, even when the pod has a workload waypoint', (t) => {
  const r = route(mesh({ podWaypoint: byHostname }), '', VIP, 80, picker(0), client);
  t.like(r, { kind: 'hbone', hboneIp: '10.0.0.1', hbonePort: 15008, targetIp: '10.0.0.1', targetPort: 8080, expectedIdentities: [ID.api], workload: { name: 'api-1' } });
  t.false('waypoint' in r);
});

test('a pod IP whose workload has a waypoint goes through it, :authority the pod IP and port', (t) => {
  const state = mesh({ podWaypoint: byHostname });
  t.like(route(state, '', '10.0.0.1', 8080, picker(0), client), {
    kind: 'hbone', hboneIp: '10.0.9.1', hbonePort: 15088, targetIp: '10.0.0.1', targetPort: 8080,
    expectedIdentities: [ID.waypoint, ID.waypointSan], workload: { name: 'waypoint-1' }, service: undefined, waypoint: byHostname,
  });
  // Without a workload waypoint the pod IP goes direct.
  t.like(route(mesh(), '', '10.0.0.1', 8080, picker(0), client), { kind: 'hbone', hboneIp: '10.0.0.1', targetIp: '10.0.0.1', workload: { name: 'api-1' } });
});

test('waypoint by address: a VIP resolves through the waypoint service, a pod IP is that pod', (t) => {
  for (const gw of [byVip, byHostname]) {
    t.like(route(mesh({ service: { waypoint: gw } }), '', VIP, 80, picker(0), client), {
      kind: 'hbone', hboneIp: '10.0.9.1', hbonePort: 15088, targetIp: VIP, targetPort: 80, expectedIdentities: [ID.waypoint, ID.waypointSan],
      workload: { name: 'waypoint-1' }, waypoint: gw,
    });
  }
  // An address that is a waypoint pod's own: no service to map the port through, nor subjectAltNames.
  const byPod: GatewayAddress = { kind: 'address', network: '', address: '10.0.9.1', hboneMtlsPort: 15008 };
  t.like(route(mesh({ service: { waypoint: byPod } }), '', VIP, 80, picker(0), client), {
    kind: 'hbone', hboneIp: '10.0.9.1', hbonePort: 15008, targetIp: VIP, targetPort: 80, expectedIdentities: [ID.waypoint], workload: { name: 'waypoint-1' },
  });
});

test('a waypoint the state does not know is a reject, never the direct path', (t) => {
  for (const gw of [byHostname, byVip]) {
    const r = route(mesh({ service: { waypoint: gw }, withWaypointService: false, waypointPods: [] }), '', VIP, 80, picker(0), client);
    t.like(r, { kind: 'reject', waypoint: gw, waypointUnknown: true, service: { name: 'api' } });
    t.regex(reasonOf(r), /^waypoint (shop\/waypoint\.shop\.svc\.cluster\.local|\/10\.96\.0\.50) not found$/);
  }
  t.like(route(mesh({ podWaypoint: byHostname, withWaypointService: false }), '', '10.0.0.1', 8080, picker(0), client), { kind: 'reject', waypointUnknown: true });
});

test('a waypoint without a healthy endpoint on its HBONE port is a reject', (t) => {
  const cases: [string, Mesh, RegExp][] = [
    ['no pods', { waypointPods: [] }, /no healthy endpoint for waypoint\.shop\.svc\.cluster\.local:15008/],
    ['only unhealthy pods', { waypointPods: [waypointPod('w', '10.0.9.1', { status: 'Unhealthy' })] }, /no healthy endpoint/],
    ['pods in another network', { waypointPods: [waypointPod('w', '10.0.9.1', { network: 'far' })] }, /no healthy endpoint/],
    ['a pod without the port', { waypointPods: [waypointPod('w', '10.0.9.1', { services: serves(WP, [15021, 15021]) })] }, /no healthy endpoint/],
  ];
  for (const [what, m, reason] of cases) {
    const pick = picker(0);
    const r = route(mesh({ ...m, service: { waypoint: byHostname } }), '', VIP, 80, pick, client);
    t.like(r, { kind: 'reject', waypoint: byHostname }, what);
    t.false('waypointUnknown' in r, what);
    t.regex(reasonOf(r), reason, what);
    t.deepEqual(pick.offered, [], `${what}: nothing to pick`);
  }
  const noPort = mesh({ service: { waypoint: { ...byHostname, hboneMtlsPort: 15009 } } });
  t.regex(reasonOf(route(noPort, '', VIP, 80, picker(0), client)), /service waypoint\.shop\.svc\.cluster\.local has no port 15009/);
  const sickPod = mesh({ service: { waypoint: { kind: 'address', network: '', address: '10.0.9.1', hboneMtlsPort: 15008 } }, waypointPods: [waypointPod('w', '10.0.9.1', { status: 'Unhealthy' })] });
  t.regex(reasonOf(route(sickPod, '', VIP, 80, picker(0), client)), /workload w is not healthy/);
});

test("a waypoint's own pods are not sent to their waypoint (Istio's check_from_waypoint)", (t) => {
  const wp = waypointPod('waypoint-1', '10.0.9.1');
  const other = waypointPod('waypoint-other', '10.0.8.1', { services: new Map() });
  const state = mesh({ service: { waypoint: byHostname }, podWaypoint: byHostname, waypointPods: [wp, other] });
  t.like(route(state, '', VIP, 80, picker(0), wp), { kind: 'hbone', hboneIp: '10.0.0.1', targetIp: '10.0.0.1', targetPort: 8080, workload: { name: 'api-1' } });
  t.like(route(state, '', '10.0.0.1', 8080, picker(0), wp), { kind: 'hbone', hboneIp: '10.0.0.1', workload: { name: 'api-1' } });
  // The same identity on another pod that is not an endpoint of the waypoint is no exception; nor is an unknown source.
  t.like(route(state, '', VIP, 80, picker(0), other), { kind: 'hbone', hboneIp: '10.0.9.1', waypoint: byHostname });
  t.like(route(state, '', VIP, 80, picker(0)), { kind: 'hbone', hboneIp: '10.0.9.1', waypoint: byHostname });
  // A waypoint named by its pod's own address.
  const byPod: GatewayAddress = { kind: 'address', network: '', address: '10.0.9.1', hboneMtlsPort: 15008 };
  t.like(route(mesh({ podWaypoint: byPod, waypointPods: [wp] }), '', '10.0.0.1', 8080, picker(0), wp), { kind: 'hbone', hboneIp: '10.0.0.1' });
});

// ---------------------------------------------------------------- on demand

/** A resolver that records what is asked and runs `answer` for a fetch. */
function fakeResolver(answer: (name: string) => void = () => {}): AddressResolver & { asked: string[] } {
  const asked: string[] = [];
  const ask = (what: string, name: string) => (asked.push(`${what} ${name}`), answer(name), Promise.resolve());
  return {
    asked,
    fetch: (network, ip) => ask('fetch', `${network}/${ip}`),
    touch: (network, ip) => void asked.push(`touch ${network}/${ip}`),
    fetchService: (namespace, hostname) => ask('fetchService', `${namespace}/${hostname}`),
    touchService: (namespace, hostname) => void asked.push(`touchService ${namespace}/${hostname}`),
  };
}

test('on demand: a missing waypoint is fetched (by hostname or address), then routed to; still missing is a reject', async (t) => {
  for (const [gw, wanted] of [[byHostname, `fetchService ${WP}`], [byVip, `fetch /${WP_VIP}`]] as const) {
    const state = mesh({ service: { waypoint: gw }, withWaypointService: false, waypointPods: [] });
    // The control plane answers a service subscription with its workloads too.
    state.resolver = fakeResolver(() => {
      state.upsertService(waypointService());
      state.upsertWorkload(waypointPod('waypoint-1', '10.0.9.1'));
    });
    t.like(await resolveAndRoute(state, '', VIP, 80, picker(0), client), { kind: 'hbone', hboneIp: '10.0.9.1', hbonePort: 15088, targetIp: VIP });
    t.deepEqual((state.resolver as ReturnType<typeof fakeResolver>).asked, [`touch /${VIP}`, wanted]);
  }
  const state = mesh({ service: { waypoint: byHostname }, withWaypointService: false, waypointPods: [] });
  const nobody = fakeResolver();
  state.resolver = nobody;
  t.like(await resolveAndRoute(state, '', VIP, 80, picker(0), client), { kind: 'reject', waypointUnknown: true });
  t.deepEqual(nobody.asked, [`touch /${VIP}`, `fetchService ${WP}`]);
});

test('on demand: a known waypoint is touched, not fetched; a destination without one asks nothing more', async (t) => {
  const state = mesh({ service: { waypoint: byHostname } });
  const r = fakeResolver();
  state.resolver = r;
  t.like(await resolveAndRoute(state, '', VIP, 80, picker(0), client), { kind: 'hbone', hboneIp: '10.0.9.1' });
  t.deepEqual(r.asked, [`touch /${VIP}`, `touchService ${WP}`]);
  const plain = mesh();
  const q = fakeResolver();
  plain.resolver = q;
  await resolveAndRoute(plain, '', VIP, 80, picker(0), client);
  t.deepEqual(q.asked, [`touch /${VIP}`]);
});

const silent = pino({ level: 'silent' });
const D = { trustDomain: 'cluster.local', clusterId: 'Kubernetes' };
const v4 = (s: string) => Uint8Array.from(s.split('.').map(Number));
const addrRes = (name: string, a: MessageInit<pb.Address>) => ({ name, version: 'v1', aliases: [], resource: { type_url: ADDRESS_TYPE_URL, value: AddressCodec.encode(a) } });

test('XdsClient.fetchService subscribes to <ns>/<hostname> and holds until the service arrives', async (t) => {
  const state = new ProxyState();
  const client = new XdsClient(
    { address: '127.0.0.1:1', node: { ip: '10.0.0.100', podName: 'zt', podNamespace: 'istio-system', nodeName: 'n', clusterId: 'Kubernetes' }, onDemand: true, defaults: D, onDemandTimeoutMs: 10_000 },
    state,
    silent,
  );
  t.teardown(() => client.close());
  let done = false;
  const fetched = client.fetchService('shop', WP_HOST).then(() => (done = true));
  t.deepEqual(client.subscriptions(), [WP]);
  await new Promise((r) => setImmediate(r));
  t.false(done);
  client.handle({
    typeUrl: ADDRESS_TYPE_URL, nonce: 'n1', systemVersionInfo: '', removedResources: [],
    resources: [addrRes(WP, { service: { name: 'waypoint', namespace: 'shop', hostname: WP_HOST, addresses: [{ network: '', address: v4(WP_VIP) }], ports: [{ servicePort: 15008, targetPort: 15008 }] } })],
  });
  await fetched;
  t.truthy(state.services.get(WP));
  await client.fetchService('shop', WP_HOST); // known: at once
  client.touchService('shop', WP_HOST);
  client.sweep(60_000);
  t.deepEqual(client.subscriptions(), [WP], 'used, so kept');
  client.sweep(-1);
  t.deepEqual(client.subscriptions(), []);
  t.is(state.services.get(WP), undefined, 'dropped with its subscription');
});

// ---------------------------------------------------------------- where the fields come from

const gwPb = (g: MessageInit<pb.GatewayAddress>): MessageInit<pb.GatewayAddress> => ({ hboneMtlsPort: 15008, ...g });
const decoded = (a: MessageInit<pb.Address>) => AddressCodec.decode(AddressCodec.encode(a));
const workloadPb = (name: string, waypoint?: MessageInit<pb.GatewayAddress>): MessageInit<pb.Workload> => ({
  uid: `Kubernetes//v1/Pod/shop/${name}`, name, namespace: 'shop', addresses: [v4('10.0.0.5')], tunnelProtocol: 'HBONE', serviceAccount: 'api',
  status: 'HEALTHY', workloadType: 'POD', ...(waypoint && { waypoint }),
});

test('xDS: Service.waypoint and Workload.waypoint convert in both forms, shared between their users', (t) => {
  const svc = convertAddress(decoded({ service: { name: 'api', namespace: 'shop', hostname: 'api.shop.svc.cluster.local', waypoint: gwPb({ hostname: { namespace: 'shop', hostname: WP_HOST } }) } }), D);
  if (svc.kind !== 'service') return t.fail();
  t.deepEqual(svc.service.waypoint, byHostname);
  t.true(Object.isFrozen(svc.service.waypoint));
  const none = convertAddress(decoded({ service: { name: 'b', namespace: 'shop', hostname: 'b.shop.svc.cluster.local' } }), D);
  t.false('waypoint' in (none as { service: Service }).service, 'no property when there is no waypoint');

  const viaAddress = gwPb({ address: { network: '', address: v4(WP_VIP) } });
  const [a, b, c] = [workloadPb('api-1', viaAddress), workloadPb('api-2', viaAddress), workloadPb('api-3')].map((w) => convertAddress(decoded({ workload: w }), D));
  if (a?.kind !== 'workload' || b?.kind !== 'workload' || c?.kind !== 'workload') return t.fail();
  t.deepEqual(a.workload.waypoint, byVip);
  t.is(a.workload.waypoint, b.workload.waypoint, 'one shared object');
  t.is(a.workload.waypoint, sharedGatewayAddress(byVip));
  // The waypoint is part of the profile the replicas share: no field of its own per workload.
  t.true(a.workload instanceof ProfiledWorkload && b.workload instanceof ProfiledWorkload && c.workload instanceof ProfiledWorkload);
  t.is((a.workload as ProfiledWorkload).profile, (b.workload as ProfiledWorkload).profile);
  t.not((a.workload as ProfiledWorkload).profile, (c.workload as ProfiledWorkload).profile);
  t.is(c.workload.waypoint, undefined);
  t.deepEqual(Object.keys(a.workload), ['uid', 'name', 'workloadIps', 'node', 'profile']);
});

test('xDS: a waypoint without a destination or with a bad address is a conversion error naming the field', (t) => {
  const bad = (waypoint: MessageInit<pb.GatewayAddress>) => () => convertAddress(decoded({ workload: workloadPb('x', waypoint) }), D);
  t.throws(bad(gwPb({})), { instanceOf: XdsConvertError, message: /workload\.waypoint: neither hostname nor address is set/ });
  t.throws(bad(gwPb({ address: { network: '', address: new Uint8Array(3) } })), { message: /workload\.waypoint\.address\.address: an IP address has 4 or 16 bytes/ });
  t.throws(bad(gwPb({ hostname: { namespace: '', hostname: WP_HOST } })), { message: /waypoint\.hostname\.namespace: required/ });
  t.throws(() => convertAddress(decoded({ service: { name: 'a', namespace: 'shop', hostname: 'a', waypoint: gwPb({}) } }), D), { message: /service\.waypoint: neither/ });
});

test('local config: `waypoint: {destination, hboneMtlsPort}` on services and workloads, as Istio writes it', (t) => {
  const cfg = parseLocalConfig(
    `
workloads:
- name: api-1
  namespace: shop
  workloadIps: [10.0.0.1]
  waypoint: {destination: "/${WP_VIP}", hboneMtlsPort: 15008}
- name: api-2
  namespace: shop
  waypoint: {destination: "net1/fd00::50"}
- name: api-3
  namespace: shop
services:
- name: api
  namespace: shop
  hostname: api.shop.svc.cluster.local
  waypoint:
    destination: ${WP}
    hboneMtlsPort: 15009
`,
    D,
  );
  t.deepEqual(cfg.workloads[0]!.waypoint, byVip);
  t.deepEqual(cfg.workloads[1]!.waypoint, { kind: 'address', network: 'net1', address: 'fd00::50', hboneMtlsPort: 15008 }, 'the port defaults to 15008');
  t.false('waypoint' in cfg.workloads[2]!);
  t.deepEqual(cfg.services[0]!.waypoint, { ...byHostname, hboneMtlsPort: 15009 });
  const bad = (waypoint: string) => () => parseLocalConfig(`services: [{name: a, namespace: shop, hostname: a, waypoint: ${waypoint}}]`, D);
  t.throws(bad('{destination: waypoint}'), { message: /services\[0\]\.waypoint\.destination: expected "<network>\/<ip>" or "<namespace>\/<hostname>"/ });
  t.throws(bad('{destination: a/b/c}'), { message: /waypoint\.destination: expected/ });
  t.throws(bad('{hostname: x}'), { message: /services\[0\]\.waypoint\.hostname: unknown field/ });
  t.throws(bad('{destination: shop/w, hboneMtlsPort: 70000}'), { message: /waypoint\.hboneMtlsPort: not a port/ });
  t.throws(bad('{}'), { message: /waypoint\.destination: required/ });
});

test('proxy threads: waypoints survive the replica path, shared again on the other side', (t) => {
  const primary = new ProxyState();
  const replica = new ProxyState();
  primary.mirror = (op) => applyOp(replica, structuredClone(encodeOp(op)));
  const gw = sharedGatewayAddress(byHostname);
  const profiled = (name: string) => {
    const c = convertAddress(decoded({ workload: workloadPb(name, gwPb({ hostname: { namespace: 'shop', hostname: WP_HOST } })) }), D);
    return (c as { workload: Workload }).workload;
  };
  primary.replace({ workloads: [wl('plain', { waypoint: byVip })], services: [apiService({ waypoint: gw })], policies: [] });
  primary.upsertWorkload(profiled('api-1'));
  primary.upsertWorkload(profiled('api-2'));
  primary.upsertService(waypointService({ waypoint: undefined }));
  primary.upsertWorkload(waypointPod('waypoint-1', '10.0.9.1'));
  const w = (s: ProxyState, name: string) => s.workloads.get(`Kubernetes//v1/Pod/shop/${name}`)!;
  t.deepEqual(w(replica, 'plain').waypoint, byVip);
  t.deepEqual(w(replica, 'api-1').waypoint, byHostname);
  t.is(w(replica, 'api-1').waypoint, w(replica, 'api-2').waypoint);
  t.is(w(replica, 'api-1').waypoint, gw, 'the same pool as xDS conversion');
  t.is(replica.services.get(API)!.waypoint, gw);
  t.is(replica.services.get(WP)!.waypoint, undefined);
  for (const s of [primary, replica]) {
    t.like(route(s, '', VIP, 80, picker(0)), { kind: 'hbone', hboneIp: '10.0.9.1', hbonePort: 15088, targetIp: VIP, targetPort: 80, expectedIdentities: [ID.waypoint, ID.waypointSan], waypoint: gw });
  }
});

// ---------------------------------------------------------------- /config_dump

test('config_dump: each service and workload shows its waypoint as Istio ztunnel does', (t) => {
  const state = mesh({ service: { waypoint: byHostname }, podWaypoint: byVip });
  const dump = JSON.parse(JSON.stringify(dumpState(state))) as { workloads: Record<string, unknown>[]; services: Record<string, unknown>[] };
  const svc = (name: string) => dump.services.find((s) => s.name === name)!;
  const workload = (name: string) => dump.workloads.find((w) => w.name === name)!;
  t.deepEqual(svc('api').waypoint, { destination: WP, hboneMtlsPort: 15008 });
  t.deepEqual(workload('api-1').waypoint, { destination: `/${WP_VIP}`, hboneMtlsPort: 15008 });
  t.false('waypoint' in svc('waypoint'));
  t.false('waypoint' in workload('client'));
  t.like(svc('api'), { hostname: 'api.shop.svc.cluster.local', vips: [`/${VIP}`], ports: { 80: 8080 } });
});
