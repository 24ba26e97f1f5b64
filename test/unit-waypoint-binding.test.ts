// Waypoint binding with istiod's precedence, and what the reconciler publishes from it: the table of labels on
// the object and its namespace, waypoint-for, cross-namespace and readiness -> Service.waypoint / Workload.waypoint
// in the workload xDS a ztunnel receives, and the reason when a binding did not take.
import type { V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import test from 'ava';
import { ADDRESS_TYPE_URL, AddressCodec } from '../protos/index.js';
import { newCache, objectKey } from '../waypoint-controller/controller/cache.js';
import { Reconciler, type ResourceSink } from '../waypoint-controller/controller/reconciler.js';
import { serviceBinding, workloadBinding, type Binding } from '../waypoint-controller/waypoint/binding.js';
import { toWaypoint, type Gateway, type Waypoint } from '../waypoint-controller/waypoint/gateway.js';

const DOMAIN = 'cluster.local';

const gateway = (ns: string, name: string, labels: Record<string, string> = {}, from?: string): Gateway => ({
  metadata: { name, namespace: ns, labels },
  spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', ...(from ? { allowedRoutes: { namespaces: { from } } } : {}) }] },
});
const waypointService = (ns: string, name: string, ip: string): V1Service => ({
  metadata: { name, namespace: ns, labels: { 'gateway.istio.io/managed': 'istio.io-mesh-controller' } },
  spec: { clusterIP: ip, clusterIPs: [ip], selector: { 'gateway.networking.k8s.io/gateway-name': name }, ports: [{ port: 15008 }] },
});
const pod = (ns: string, name: string, ip: string, labels: Record<string, string>, ready = true): V1Pod => ({
  metadata: { name, namespace: ns, labels },
  spec: { nodeName: 'node1', containers: [{ name: 'c', image: 'x' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
});
const ns = (name: string, labels: Record<string, string> = {}): V1Namespace => ({ metadata: { name, labels: { 'istio.io/dataplane-mode': 'ambient', ...labels } } });
const svc = (namespace: string, name: string, labels: Record<string, string> = {}): V1Service => ({
  metadata: { name, namespace, labels }, spec: { clusterIP: '10.96.1.1', selector: { app: name }, ports: [{ port: 80 }] },
});

/** Waypoints: shop/wp (service, ready), shop/wl (workload), shop/both (all), shop/cold (no ready pod yet), shop/down (was ready: addresses reported), infra/shared (All namespaces), infra/private (Same). */
function waypoints(): Map<string, Waypoint> {
  const gws: [Gateway, V1Service, V1Pod[]][] = [
    [gateway('shop', 'wp'), waypointService('shop', 'wp', '10.96.9.1'), [pod('shop', 'wp-1', '10.244.9.1', { 'gateway.networking.k8s.io/gateway-name': 'wp' })]],
    [gateway('shop', 'wl', { 'istio.io/waypoint-for': 'workload' }), waypointService('shop', 'wl', '10.96.9.2'), [pod('shop', 'wl-1', '10.244.9.2', { 'gateway.networking.k8s.io/gateway-name': 'wl' })]],
    [gateway('shop', 'both', { 'istio.io/waypoint-for': 'all' }), waypointService('shop', 'both', '10.96.9.3'), [pod('shop', 'both-1', '10.244.9.3', { 'gateway.networking.k8s.io/gateway-name': 'both' })]],
    [gateway('shop', 'cold'), waypointService('shop', 'cold', '10.96.9.4'), [pod('shop', 'cold-1', '10.244.9.4', { 'gateway.networking.k8s.io/gateway-name': 'cold' }, false)]],
    [
      { ...gateway('shop', 'down'), status: { addresses: [{ type: 'IPAddress', value: '10.96.9.7' }] } },
      waypointService('shop', 'down', '10.96.9.7'),
      [pod('shop', 'down-1', '10.244.9.7', { 'gateway.networking.k8s.io/gateway-name': 'down' }, false)],
    ],
    [gateway('infra', 'shared', {}, 'All'), waypointService('infra', 'shared', '10.96.9.5'), [pod('infra', 'shared-1', '10.244.9.5', { 'gateway.networking.k8s.io/gateway-name': 'shared' })]],
    [gateway('infra', 'private'), waypointService('infra', 'private', '10.96.9.6'), [pod('infra', 'private-1', '10.244.9.6', { 'gateway.networking.k8s.io/gateway-name': 'private' })]],
  ];
  return new Map(gws.map(([g, s, ps]) => [`${g.metadata!.namespace}/${g.metadata!.name}`, toWaypoint(g, undefined, s, ps, DOMAIN)]));
}

const summary = (b: Binding) => (b.kind === 'bound' ? `bound ${b.waypoint.namespace}/${b.waypoint.name}` : b.kind === 'failed' ? `failed ${b.reason}` : 'unbound');
const W = 'istio.io/use-waypoint';
const WNS = 'istio.io/use-waypoint-namespace';

const serviceCases: [string, Record<string, string>, Record<string, string>, string][] = [
  ['no label anywhere', {}, {}, 'unbound'],
  ['service label', { [W]: 'wp' }, {}, 'bound shop/wp'],
  ['namespace label is inherited', {}, { [W]: 'wp' }, 'bound shop/wp'],
  ['service label beats the namespace', { [W]: 'both' }, { [W]: 'wp' }, 'bound shop/both'],
  ['none on the service stops inheritance', { [W]: 'none' }, { [W]: 'wp' }, 'unbound'],
  ['missing waypoint', { [W]: 'nope' }, {}, 'failed NotFound'],
  ['workload-only waypoint refuses a service', { [W]: 'wl' }, {}, 'failed UnsupportedTrafficType'],
  ['waypoint-for all accepts a service', { [W]: 'both' }, {}, 'bound shop/both'],
  ['waypoint without a ready pod: not yet', { [W]: 'cold' }, {}, 'failed NotReady'],
  ['waypoint that was ready and is down: still bound (ztunnel refuses, never bypasses)', { [W]: 'down' }, {}, 'bound shop/down'],
  ['cross-namespace allowed by allowedRoutes All', { [W]: 'shared', [WNS]: 'infra' }, {}, 'bound infra/shared'],
  ['cross-namespace denied by the default Same', { [W]: 'private', [WNS]: 'infra' }, {}, 'failed AttachmentDenied'],
  ['namespace label with use-waypoint-namespace', {}, { [W]: 'shared', [WNS]: 'infra' }, 'bound infra/shared'],
];

for (const [name, own, nsLabels, want] of serviceCases) {
  test(`service binding: ${name}`, (t) => {
    t.is(summary(serviceBinding(svc('shop', 'web', own), ns('shop', nsLabels), waypoints())), want);
  });
}

const workloadCases: [string, Record<string, string>, Record<string, string>, string][] = [
  ['pod label on a workload waypoint', { [W]: 'wl' }, {}, 'bound shop/wl'],
  ['pod label on a service-only waypoint is an error', { [W]: 'wp' }, {}, 'failed UnsupportedTrafficType'],
  ['inherited service-only waypoint: silently none', {}, { [W]: 'wp' }, 'unbound'],
  ['inherited all waypoint', {}, { [W]: 'both' }, 'bound shop/both'],
  ['none on the pod', { [W]: 'none' }, { [W]: 'both' }, 'unbound'],
];

for (const [name, own, nsLabels, want] of workloadCases) {
  test(`workload binding: ${name}`, (t) => {
    t.is(summary(workloadBinding(pod('shop', 'web-1', '10.244.1.5', { app: 'web', ...own }), ns('shop', nsLabels), waypoints())), want);
  });
}

test("a waypoint's own Service and pods never get a waypoint", (t) => {
  const all = waypoints();
  t.is(summary(serviceBinding(waypointService('shop', 'both', '10.96.9.3'), ns('shop', { [W]: 'both' }), all)), 'unbound');
  t.is(summary(workloadBinding(pod('shop', 'both-1', '10.244.9.3', { 'gateway.networking.k8s.io/gateway-name': 'both' }), ns('shop', { [W]: 'both' }), all)), 'unbound');
});

class Sink implements ResourceSink {
  readonly resources = new Map<string, Uint8Array>();
  set(typeUrl: string, name: string, bytes: Uint8Array): void {
    this.resources.set(`${typeUrl}|${name}`, bytes);
  }
  delete(typeUrl: string, name: string): void {
    this.resources.delete(`${typeUrl}|${name}`);
  }
  address(name: string) {
    const b = this.resources.get(`${ADDRESS_TYPE_URL}|${name}`);
    return b && AddressCodec.decode(b);
  }
}

test('the reconciler publishes Service.waypoint once the waypoint is ready, and withdraws it when the Gateway goes', (t) => {
  const cache = newCache();
  const sink = new Sink();
  const r = new Reconciler(cache, sink, { clusterId: 'Kubernetes', trustDomain: DOMAIN, network: '', domainSuffix: DOMAIN, rootNamespace: 'istio-system' });
  cache.namespaces.set('shop', ns('shop'));
  const web = svc('shop', 'web', { [W]: 'wp' });
  cache.services.set('shop/web', web);
  const app = pod('shop', 'web-1', '10.244.1.5', { app: 'web', [W]: 'none' });
  cache.pods.set(objectKey(app), app);
  r.syncAll();
  t.is(sink.address('shop/web.shop.svc.cluster.local')!.service!.waypoint, undefined, 'no Gateway yet');
  t.is(r.serviceBindings.get('shop/web')?.kind, 'failed');

  cache.gateways.set('shop/wp', gateway('shop', 'wp'));
  r.changed('gateways', 'shop/wp');
  cache.services.set('shop/wp', waypointService('shop', 'wp', '10.96.9.1'));
  r.changed('services', 'shop/wp');
  t.is(sink.address('shop/web.shop.svc.cluster.local')!.service!.waypoint, undefined, 'no ready waypoint pod yet');
  const wpPod = pod('shop', 'wp-1', '10.244.9.1', { 'gateway.networking.k8s.io/gateway-name': 'wp' });
  cache.pods.set(objectKey(wpPod), wpPod);
  r.changed('pods', objectKey(wpPod));
  const published = sink.address('shop/web.shop.svc.cluster.local')!.service!;
  t.deepEqual(published.waypoint?.hostname, { namespace: 'shop', hostname: 'wp.shop.svc.cluster.local' });
  t.is(published.waypoint?.hboneMtlsPort, 15008);
  t.is(sink.address('Kubernetes//v1/Pod/shop/web-1')!.workload!.waypoint, undefined, 'a pod never takes its Service\'s waypoint');
  t.is(sink.address('Kubernetes//v1/Pod/shop/wp-1')!.workload!.waypoint, undefined);
  t.is(sink.address('shop/wp.shop.svc.cluster.local')!.service!.waypoint, undefined);

  cache.gateways.delete('shop/wp');
  r.changed('gateways', 'shop/wp');
  t.is(sink.address('shop/web.shop.svc.cluster.local')!.service!.waypoint, undefined, 'Gateway deleted: traffic as before');
  t.like(r.serviceBindings.get('shop/web'), { kind: 'failed', reason: 'NotFound' });
});
