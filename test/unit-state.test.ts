// Unit tests for the state stores (workloads, services, policies, ProxyState) and pure outbound routing.
import test from 'ava';
import { ProxyState } from '../ztunnel/state/index.js';
import { contentHash, sharedPortMap, sharedProfile, sharedServicePorts, sharedStrings } from '../ztunnel/state/intern.js';
import { PolicyStore } from '../ztunnel/state/policies.js';
import { ProfiledWorkload } from '../ztunnel/state/profiled-workload.js';
import { ServiceStore } from '../ztunnel/state/services.js';
import { WorkloadStore } from '../ztunnel/state/workloads.js';
import type { Authorization, Service, Workload } from '../ztunnel/state/types.js';
import { HBONE_PORT, route, routeToService, targetPort, type Picker } from '../ztunnel/proxy/route.js';

// ---------------------------------------------------------------- helpers

const SVC = 'shop/api.shop.svc.cluster.local';

function wl(name: string, over: Partial<Workload> = {}): Workload {
  return {
    uid: `Kubernetes//v1/Pod/shop/${name}`, name, namespace: 'shop', serviceAccount: 'api', trustDomain: 'cluster.local',
    workloadIps: [], network: '', protocol: 'HBONE', node: 'node-a', hostname: '', canonicalName: name, canonicalRevision: 'latest',
    workloadName: name, workloadType: 'pod', clusterId: 'Kubernetes', status: 'Healthy', authorizationPolicies: [],
    services: new Map(), ...over,
  };
}
const ports = (...pairs: [number, number][]) => new Map(pairs);
const serves = (...pairs: [number, number][]) => new Map([[SVC, ports(...pairs)]]);

function svc(over: Partial<Service> = {}): Service {
  return {
    name: 'api', namespace: 'shop', hostname: 'api.shop.svc.cluster.local', vips: [{ network: '', address: '10.96.0.10' }],
    ports: ports([80, 8080]), subjectAltNames: [], ...over,
  };
}
function pol(name: string, scope: Authorization['scope'], namespace = 'shop'): Authorization {
  return { name, namespace, scope, action: 'Allow', rules: [], dryRun: false };
}
const names = (xs: Iterable<{ name: string }>) => [...xs].map((x) => x.name).sort();
const uids = (s: ServiceStore, key = SVC) => [...s.endpoints(key)].map((e) => e.workloadUid).sort();
function changes(state: ProxyState): () => number {
  let n = 0;
  state.on('change', () => n++);
  return () => n;
}

// ---------------------------------------------------------------- WorkloadStore

test('WorkloadStore: by uid and by (network, ip)', (t) => {
  const s = new WorkloadStore();
  const a = wl('a', { workloadIps: ['10.0.0.1', 'fd00::1'], network: 'net1' });
  s.upsert(a);
  t.is(s.size, 1);
  t.is(s.get(a.uid), a);
  t.is(s.byAddress('net1', '10.0.0.1'), a);
  t.is(s.byAddress('net1', 'fd00::1'), a);
  t.is(s.byAddress('', '10.0.0.1'), undefined, 'another network');
  t.is(s.byAddress('net1', '10.0.0.2'), undefined);
  t.deepEqual([...s.all()], [a]);
});

test('WorkloadStore: re-upsert replaces old addresses and network', (t) => {
  const s = new WorkloadStore();
  s.upsert(wl('a', { workloadIps: ['10.0.0.1', '10.0.0.2'] }));
  const moved = wl('a', { workloadIps: ['10.0.0.3'], network: 'net2' });
  s.upsert(moved);
  t.is(s.size, 1);
  t.is(s.get(moved.uid), moved);
  t.is(s.byAddress('', '10.0.0.1'), undefined);
  t.is(s.byAddress('', '10.0.0.2'), undefined);
  t.is(s.byAddress('', '10.0.0.3'), undefined);
  t.is(s.byAddress('net2', '10.0.0.3'), moved);
});

test('WorkloadStore: remove cleans every index and returns the old workload', (t) => {
  const s = new WorkloadStore();
  const a = wl('a', { workloadIps: ['10.0.0.1'] });
  const b = wl('b', { workloadIps: ['10.0.0.2'] });
  s.upsert(a);
  s.upsert(b);
  t.is(s.remove(a.uid), a);
  t.is(s.remove(a.uid), undefined);
  t.is(s.get(a.uid), undefined);
  t.is(s.byAddress('', '10.0.0.1'), undefined);
  t.is(s.byAddress('', '10.0.0.2'), b);
  t.is(s.size, 1);
});

test('WorkloadStore: removing a workload leaves an address another workload took over', (t) => {
  const s = new WorkloadStore();
  const old = wl('old', { workloadIps: ['10.0.0.1'] });
  const fresh = wl('new', { workloadIps: ['10.0.0.1'] });
  s.upsert(old);
  s.upsert(fresh);
  t.is(s.byAddress('', '10.0.0.1'), fresh);
  s.remove(old.uid);
  t.is(s.byAddress('', '10.0.0.1'), fresh);
});

// ---------------------------------------------------------------- ServiceStore

test('ServiceStore: by key, VIP (per network) and hostname', (t) => {
  const s = new ServiceStore();
  const api = svc({ vips: [{ network: '', address: '10.96.0.10' }, { network: 'net2', address: 'fd00:96::10' }] });
  s.upsert(api);
  t.is(s.size, 1);
  t.is(s.get(SVC), api);
  t.is(s.byAddress('', '10.96.0.10'), api);
  t.is(s.byAddress('net2', 'fd00:96::10'), api);
  t.is(s.byAddress('net2', '10.96.0.10'), undefined);
  t.is(s.byHostname('api.shop.svc.cluster.local'), api);
  t.is(s.byHostname('api'), undefined);
  t.deepEqual([...s.all()], [api]);
});

test('ServiceStore: a hostname shared by two namespaces survives removing one of them', (t) => {
  const s = new ServiceStore();
  const a = svc({ namespace: 'shop', hostname: 'api.example.com', vips: [] });
  const b = svc({ namespace: 'other', hostname: 'api.example.com', vips: [] });
  s.upsert(a);
  s.upsert(b);
  t.is(s.byHostname('api.example.com'), b);
  s.remove('other/api.example.com');
  t.is(s.byHostname('api.example.com'), a);
  s.remove('shop/api.example.com');
  t.is(s.byHostname('api.example.com'), undefined);
});

test('ServiceStore: re-upsert replaces VIPs and hostname; remove cleans everything', (t) => {
  const s = new ServiceStore();
  s.upsert(svc());
  const v2 = svc({ vips: [{ network: '', address: '10.96.0.99' }] });
  s.upsert(v2);
  t.is(s.size, 1);
  t.is(s.byAddress('', '10.96.0.10'), undefined);
  t.is(s.byAddress('', '10.96.0.99'), v2);
  t.is(s.remove(SVC), v2);
  t.is(s.remove(SVC), undefined);
  t.is(s.get(SVC), undefined);
  t.is(s.byAddress('', '10.96.0.99'), undefined);
  t.is(s.byHostname(v2.hostname), undefined);
  t.is(s.size, 0);
});

test('ServiceStore: same hostname in two namespaces, the last one added wins and removing the other keeps it', (t) => {
  const s = new ServiceStore();
  const a = svc({ namespace: 'a', hostname: 'db.example.com', vips: [] });
  const b = svc({ namespace: 'b', hostname: 'db.example.com', vips: [] });
  s.upsert(a);
  s.upsert(b);
  t.is(s.byHostname('db.example.com'), b);
  s.remove('a/db.example.com');
  t.is(s.byHostname('db.example.com'), b);
});

test('ServiceStore: endpoints exist before the service and follow add/remove', (t) => {
  const s = new ServiceStore();
  const a = wl('a', { services: serves([80, 8080]) });
  s.addEndpoints(a);
  t.is(s.get(SVC), undefined);
  t.deepEqual([...s.endpoints(SVC)], [{ workloadUid: a.uid, ports: a.services.get(SVC)! }]);
  s.removeEndpoints(a);
  t.deepEqual([...s.endpoints(SVC)], []);
  t.deepEqual([...s.endpoints('shop/unknown')], []);
});

// ---------------------------------------------------------------- PolicyStore

test('PolicyStore: forWorkload = global + own namespace + selected via authorizationPolicies', (t) => {
  const s = new PolicyStore();
  for (const p of [
    pol('global', 'Global', 'istio-system'),
    pol('ns-shop', 'Namespace', 'shop'),
    pol('ns-other', 'Namespace', 'other'),
    pol('selected', 'WorkloadSelector'),
    pol('not-selected', 'WorkloadSelector'),
  ]) s.upsert(p);
  t.is(s.size, 5);
  const w = wl('a', { authorizationPolicies: ['shop/selected', 'shop/missing'] });
  t.deepEqual(names(s.forWorkload(w)), ['global', 'ns-shop', 'selected']);
  t.deepEqual(names(s.forWorkload(wl('b', { namespace: 'other' }))), ['global', 'ns-other']);
});

test('PolicyStore: a non-selector policy named by a workload is not added twice', (t) => {
  const s = new PolicyStore();
  s.upsert(pol('ns-shop', 'Namespace'));
  s.upsert(pol('global', 'Global'));
  const w = wl('a', { authorizationPolicies: ['shop/ns-shop', 'shop/global'] });
  t.deepEqual(names(s.forWorkload(w)), ['global', 'ns-shop']);
});

test('PolicyStore: upsert replaces by key, including a change of scope; remove cleans all indexes', (t) => {
  const s = new PolicyStore();
  s.upsert(pol('p', 'Global'));
  const asNs = pol('p', 'Namespace');
  s.upsert(asNs);
  t.is(s.size, 1);
  t.is(s.get('shop/p'), asNs);
  t.deepEqual(s.forWorkload(wl('x', { namespace: 'elsewhere' })), [], 'no longer global');
  t.deepEqual(s.forWorkload(wl('y')), [asNs]);
  const asSel = pol('p', 'WorkloadSelector');
  s.upsert(asSel);
  t.deepEqual(s.forWorkload(wl('y')), [], 'no longer namespace-wide');
  t.deepEqual(s.forWorkload(wl('y', { authorizationPolicies: ['shop/p'] })), [asSel]);
  t.is(s.remove('shop/p'), asSel);
  t.is(s.remove('shop/p'), undefined);
  t.is(s.size, 0);
  t.deepEqual(s.forWorkload(wl('y', { authorizationPolicies: ['shop/p'] })), []);
});

// ---------------------------------------------------------------- ProxyState

test('ProxyState: endpoints appear when a workload names a service, even before the service exists', (t) => {
  const state = new ProxyState();
  const a = wl('a', { workloadIps: ['10.0.0.1'], services: serves([80, 8080]) });
  state.upsertWorkload(a);
  t.deepEqual(uids(state.services), [a.uid]);
  state.services.upsert(svc());
  t.deepEqual([...state.endpointsOf(svc())].map((e) => e.workload), [a]);
});

test('ProxyState: endpoints follow a workload that changes or drops its services', (t) => {
  const state = new ProxyState();
  const other = 'shop/other.shop.svc.cluster.local';
  state.upsertWorkload(wl('a', { services: serves([80, 8080]) }));
  state.upsertWorkload(wl('a', { services: new Map([[other, ports([90, 9090])]]) }));
  t.deepEqual(uids(state.services), []);
  t.deepEqual([...state.services.endpoints(other)].map((e) => [...e.ports]), [[[90, 9090]]]);
  state.upsertWorkload(wl('a'));
  t.deepEqual(uids(state.services, other), []);
});

test('ProxyState: removeWorkload cleans the workload and its endpoints, and emits one change', (t) => {
  const state = new ProxyState();
  const a = wl('a', { workloadIps: ['10.0.0.1'], services: serves([80, 8080]) });
  const b = wl('b', { workloadIps: ['10.0.0.2'], services: serves([80, 8080]) });
  state.upsertWorkload(a);
  state.upsertWorkload(b);
  const count = changes(state);
  state.removeWorkload(a.uid);
  t.is(count(), 1);
  t.is(state.workloads.get(a.uid), undefined);
  t.is(state.findDestination('', '10.0.0.1'), undefined);
  t.deepEqual(uids(state.services), [b.uid]);
  state.removeWorkload(a.uid);
  t.is(count(), 1, 'removing an unknown workload is not a change');
});

test('ProxyState: each upsertWorkload emits exactly one change', (t) => {
  const state = new ProxyState();
  const count = changes(state);
  state.upsertWorkload(wl('a'));
  state.upsertWorkload(wl('a', { workloadIps: ['10.0.0.9'] }));
  t.is(count(), 2);
});

test('ProxyState: endpointsOf skips endpoints whose workload is unknown', (t) => {
  const state = new ProxyState();
  state.services.addEndpoints(wl('ghost', { services: serves([80, 8080]) }));
  state.upsertWorkload(wl('a', { services: serves([80, 8080]) }));
  t.deepEqual([...state.endpointsOf(svc())].map((e) => e.workload.name), ['a']);
});

test('ProxyState: findDestination prefers a workload IP over a VIP and respects the network', (t) => {
  const state = new ProxyState();
  const a = wl('a', { workloadIps: ['10.0.0.1'], network: 'net1' });
  state.upsertWorkload(a);
  state.services.upsert(svc({ vips: [{ network: 'net1', address: '10.96.0.10' }, { network: 'net1', address: '10.0.0.1' }] }));
  t.deepEqual(state.findDestination('net1', '10.0.0.1'), { kind: 'workload', workload: a });
  t.like(state.findDestination('net1', '10.96.0.10'), { kind: 'service', service: { hostname: 'api.shop.svc.cluster.local' } });
  t.is(state.findDestination('', '10.96.0.10'), undefined);
  t.is(state.findDestination('net1', '10.9.9.9'), undefined);
});

test('ProxyState.replace: old content gone, new content indexed, exactly one change', (t) => {
  const state = new ProxyState();
  state.upsertWorkload(wl('old', { workloadIps: ['10.0.0.1'], services: serves([80, 8080]) }));
  state.services.upsert(svc());
  state.policies.upsert(pol('old-pol', 'Global'));
  const count = changes(state);

  const fresh = wl('new', { workloadIps: ['10.0.0.2'], services: new Map([['shop/web', ports([80, 80])]]) });
  const web = svc({ name: 'web', hostname: 'web', vips: [{ network: '', address: '10.96.0.20' }] });
  state.replace({ workloads: [fresh], services: [web], policies: [pol('new-pol', 'Namespace')] });

  t.is(count(), 1);
  t.deepEqual(names(state.workloads.all()), ['new']);
  t.deepEqual(names(state.services.all()), ['web']);
  t.deepEqual(names(state.policies.all()), ['new-pol']);
  t.is(state.findDestination('', '10.0.0.1'), undefined);
  t.is(state.findDestination('', '10.96.0.10'), undefined);
  t.is(state.services.byHostname('api.shop.svc.cluster.local'), undefined);
  t.deepEqual(uids(state.services), [], 'endpoints of the removed workload are gone');
  t.deepEqual(uids(state.services, 'shop/web'), [fresh.uid]);
  t.deepEqual(names(state.policies.forWorkload(fresh)), ['new-pol']);
});

test('ProxyState.replace with an empty config empties everything', (t) => {
  const state = new ProxyState();
  state.upsertWorkload(wl('a', { services: serves([80, 8080]) }));
  state.services.upsert(svc());
  state.policies.upsert(pol('p', 'Global'));
  state.replace({ workloads: [], services: [], policies: [] });
  t.deepEqual([state.workloads.size, state.services.size, state.policies.size], [0, 0, 0]);
  t.deepEqual(uids(state.services), []);
});

// ---------------------------------------------------------------- route

/** Picks index `i` and records how many candidates it was offered. */
function picker(i: number): Picker & { offered: number[] } {
  const offered: number[] = [];
  return Object.assign((n: number) => (offered.push(n), i), { offered });
}

function mesh(...workloads: Workload[]): ProxyState {
  const state = new ProxyState();
  state.services.upsert(svc({ ports: ports([80, 8080], [81, 0]), subjectAltNames: ['spiffe://cluster.local/ns/shop/sa/api-svc'] }));
  for (const w of workloads) state.upsertWorkload(w);
  return state;
}

test('route: unknown destination passes through', (t) => {
  t.deepEqual(route(mesh(), '', '1.2.3.4', 443), { kind: 'passthrough', ip: '1.2.3.4', port: 443 });
});

test('route: a workload IP routes straight to it (HBONE with its identity, or TCP)', (t) => {
  const h = wl('h', { workloadIps: ['10.0.0.1'], serviceAccount: 'sa-h' });
  const p = wl('p', { workloadIps: ['10.0.0.2'], protocol: 'TCP' });
  const state = mesh(h, p);
  t.deepEqual(route(state, '', '10.0.0.1', 9000), {
    kind: 'hbone', hboneIp: '10.0.0.1', hbonePort: HBONE_PORT, targetIp: '10.0.0.1', targetPort: 9000,
    expectedIdentities: ['spiffe://cluster.local/ns/shop/sa/sa-h'], workload: h, service: undefined,
  });
  t.is(HBONE_PORT, 15008);
  t.deepEqual(route(state, '', '10.0.0.2', 9000), { kind: 'tcp', ip: '10.0.0.2', port: 9000, workload: p, service: undefined });
});

test('route: a VIP goes to a healthy endpoint in the same network, with workload + service identities', (t) => {
  const ok = wl('ok', { workloadIps: ['10.0.0.1'], services: serves([80, 8080]) });
  const sick = wl('sick', { workloadIps: ['10.0.0.2'], services: serves([80, 8080]), status: 'Unhealthy' });
  const far = wl('far', { workloadIps: ['10.0.0.3'], services: serves([80, 8080]), network: 'net2' });
  const state = mesh(sick, far, ok);
  const pick = picker(0);
  const r = route(state, '', '10.96.0.10', 80, pick);
  t.deepEqual(pick.offered, [1], 'only the healthy, same-network endpoint is a candidate');
  t.like(r, {
    kind: 'hbone', hboneIp: '10.0.0.1', hbonePort: 15008, targetIp: '10.0.0.1', targetPort: 8080,
    expectedIdentities: ['spiffe://cluster.local/ns/shop/sa/api', 'spiffe://cluster.local/ns/shop/sa/api-svc'],
    workload: { name: 'ok' }, service: { name: 'api' },
  });
});

test('route: service subjectAltNames equal to the workload identity are not repeated', (t) => {
  const state = new ProxyState();
  state.services.upsert(svc({ subjectAltNames: ['spiffe://cluster.local/ns/shop/sa/api'] }));
  state.upsertWorkload(wl('a', { workloadIps: ['10.0.0.1'], services: serves([80, 8080]) }));
  const r = route(state, '', '10.96.0.10', 80, picker(0));
  t.like(r, { kind: 'hbone', expectedIdentities: ['spiffe://cluster.local/ns/shop/sa/api'] });
});

test('route: a TCP endpoint of a service gets a tcp route to the target port', (t) => {
  const state = mesh(wl('a', { workloadIps: ['10.0.0.1'], services: serves([80, 8080]), protocol: 'TCP' }));
  t.like(route(state, '', '10.96.0.10', 80, picker(0)), { kind: 'tcp', ip: '10.0.0.1', port: 8080, service: { name: 'api' } });
});

test('route: the picker chooses among the candidates in order', (t) => {
  const ws = ['a', 'b', 'c'].map((n, i) => wl(n, { workloadIps: [`10.0.0.${i + 1}`], services: serves([80, 8080]) }));
  const state = mesh(...ws);
  for (const [i, n] of ['a', 'b', 'c'].entries()) {
    const pick = picker(i);
    t.like(route(state, '', '10.96.0.10', 80, pick), { workload: { name: n } });
    t.deepEqual(pick.offered, [3]);
  }
});

test('route: a port the service does not have is rejected (the picker is not consulted)', (t) => {
  const state = mesh(wl('a', { workloadIps: ['10.0.0.1'], services: serves([80, 8080], [443, 8443]) }));
  const pick = picker(0);
  const r = route(state, '', '10.96.0.10', 443, pick);
  t.is(r.kind, 'reject');
  t.regex((r as { reason: string }).reason, /no port 443/);
  t.deepEqual(pick.offered, []);
});

test('route: no usable endpoint is a reject', (t) => {
  const state = mesh(
    wl('sick', { workloadIps: ['10.0.0.1'], services: serves([80, 8080]), status: 'Unhealthy' }),
    wl('no-ip', { services: serves([80, 8080]) }),
  );
  const r = route(state, '', '10.96.0.10', 80, picker(0));
  t.like(r, { kind: 'reject', service: { name: 'api' } });
  t.regex((r as { reason: string }).reason, /no healthy endpoint/);
});

test('targetPort: the workload\'s own mapping first, then the service\'s, 0 when neither', (t) => {
  const service = svc({ ports: ports([80, 8080], [81, 0], [82, 8282]) });
  const own = wl('own', { services: serves([80, 9999], [81, 8181]) });
  const bare = wl('bare');
  t.is(targetPort(service, own, 80), 9999);
  t.is(targetPort(service, own, 81), 8181, 'named port resolved by the workload');
  t.is(targetPort(service, own, 82), 8282);
  t.is(targetPort(service, bare, 80), 8080);
  t.is(targetPort(service, bare, 81), 0);
  t.is(targetPort(service, own, 83), 0);
  // A mapping for a different service does not count.
  t.is(targetPort(service, wl('x', { services: new Map([['shop/other', ports([82, 1])]]) }), 82), 8282);
});

test('routeToService: endpoints without a target port for the requested port are skipped', (t) => {
  const named = wl('named', { workloadIps: ['10.0.0.1'], services: serves([81, 8181]) });
  const unnamed = wl('unnamed', { workloadIps: ['10.0.0.2'], services: serves([80, 8080]) });
  const state = mesh(unnamed, named);
  const pick = picker(0);
  t.like(routeToService(state, state.services.get(SVC)!, 81, '', pick), { kind: 'hbone', targetIp: '10.0.0.1', targetPort: 8181 });
  t.deepEqual(pick.offered, [1]);
});

test('routeToService: the network argument selects endpoints', (t) => {
  const far = wl('far', { workloadIps: ['10.0.0.3'], services: serves([80, 8080]), network: 'net2' });
  const state = mesh(far);
  t.like(routeToService(state, state.services.get(SVC)!, 80, 'net2', picker(0)), { kind: 'hbone', targetIp: '10.0.0.3' });
  t.like(routeToService(state, state.services.get(SVC)!, 80, '', picker(0)), { kind: 'reject' });
});

// ---------------------------------------------------------------- profiled workloads and shared values

/** What wl(name, over) describes, as xDS conversion keeps it: a ProfiledWorkload with a shared profile. */
function profiled(name: string, over: Partial<Workload> = {}): ProfiledWorkload {
  const w = wl(name, over);
  const profile = sharedProfile({
    namespace: w.namespace, serviceAccount: w.serviceAccount, trustDomain: w.trustDomain, network: w.network, protocol: w.protocol,
    hostname: w.hostname, canonicalName: w.canonicalName === name ? '' : w.canonicalName, canonicalRevision: w.canonicalRevision,
    workloadName: w.workloadName === name ? '' : w.workloadName, workloadType: w.workloadType, clusterId: w.clusterId, status: w.status,
    authorizationPolicies: sharedStrings(w.authorizationPolicies), services: sharedServicePorts([...w.services]),
  });
  return new ProfiledWorkload(w.uid, w.name, w.workloadIps, w.node, profile);
}

const WORKLOAD_FIELDS = [
  'uid', 'name', 'namespace', 'serviceAccount', 'trustDomain', 'workloadIps', 'network', 'protocol', 'node', 'hostname', 'canonicalName',
  'canonicalRevision', 'workloadName', 'workloadType', 'clusterId', 'status', 'authorizationPolicies', 'services',
] as const;
const fieldsOf = (w: Workload) => Object.fromEntries(WORKLOAD_FIELDS.map((k) => [k, w[k]]));

test('ProfiledWorkload: reads as the plain workload it stands for; replicas share one frozen profile', (t) => {
  const over: Partial<Workload> = { workloadIps: ['10.0.0.1'], node: 'node-b', canonicalName: 'api', workloadName: 'api', authorizationPolicies: ['shop/p'], services: serves([80, 8080]) };
  const a = profiled('api-1', over);
  t.deepEqual(fieldsOf(a), fieldsOf(wl('api-1', over)));
  const b = profiled('api-2', { ...over, workloadIps: ['10.0.0.2'], node: 'node-c' });
  t.is(b.profile, a.profile, 'uid, name, addresses and node are the replica\'s own');
  t.true(Object.isFrozen(a.profile));
  t.not(profiled('api-3', { ...over, status: 'Unhealthy' }).profile, a.profile);
  t.not(profiled('api-4', { ...over, services: serves([80, 9090]) }).profile, a.profile);
  // Names left empty by xDS default to the workload's own name, which differs per replica.
  const c = profiled('solo-1');
  const d = profiled('solo-2');
  t.is(c.profile, d.profile);
  t.deepEqual([c.canonicalName, c.workloadName, d.canonicalName, d.workloadName], ['solo-1', 'solo-1', 'solo-2', 'solo-2']);
  t.deepEqual(fieldsOf(c), fieldsOf(wl('solo-1')));
});

test('ProfiledWorkload: the state indexes and routes it as it does a plain workload', (t) => {
  const a = profiled('a', { workloadIps: ['10.0.0.1'], services: serves([80, 8080]) });
  const b = profiled('b', { workloadIps: ['10.0.0.2'], services: serves([80, 8080]), status: 'Unhealthy' });
  const state = mesh(a, b);
  t.is(state.workloads.get(a.uid), a);
  t.is(state.findDestination('', '10.0.0.2')?.kind, 'workload');
  t.deepEqual([...state.endpointsOf(state.services.get(SVC)!)].map((e) => e.workload.name).sort(), ['a', 'b']);
  t.like(route(state, '', '10.96.0.10', 80, picker(0)), {
    kind: 'hbone', targetIp: '10.0.0.1', targetPort: 8080, expectedIdentities: ['spiffe://cluster.local/ns/shop/sa/api', 'spiffe://cluster.local/ns/shop/sa/api-svc'],
  });
  state.removeWorkload(a.uid);
  t.is(state.findDestination('', '10.0.0.1'), undefined);
  t.like(route(state, '', '10.96.0.10', 80, picker(0)), { kind: 'reject' });
});

test('shared values: one per content, also when two contents have the same hash', (t) => {
  // Two policy lists whose contents collide in the pools' hash.
  const [x, y] = [['shop/p139599'], ['shop/p322382']];
  t.is(contentHash(x), contentHash(y));
  const a = sharedStrings(x);
  const b = sharedStrings(y);
  t.deepEqual([a, b], [x, y]);
  t.is(sharedStrings([...x]), a);
  t.is(sharedStrings([...y]), b);
  t.true(Object.isFrozen(a) && Object.isFrozen(b));
  t.not(sharedStrings(['shop/a', 'shop/b']), sharedStrings(['shop/b', 'shop/a']));
  const p80 = sharedPortMap([[80, 8080]]);
  t.is(sharedPortMap([[80, 8080]]), p80);
  t.deepEqual([...p80], [[80, 8080]]);
  t.not(sharedPortMap([[80, 8080], [81, 0]]), p80);
  t.is(sharedServicePorts([[SVC, p80]]), sharedServicePorts([[SVC, sharedPortMap([[80, 8080]])]]));
  t.not(sharedServicePorts([[SVC, p80]]), sharedServicePorts([[SVC, sharedPortMap([[80, 9090]])]]));
});
