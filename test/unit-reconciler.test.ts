// The controller's reconciler: Kubernetes cache changes -> the minimal set of xDS resource updates.
import type { V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import test from 'ava';
import { ADDRESS_TYPE_URL, AddressCodec, AUTHORIZATION_TYPE_URL } from '../protos/index.js';
import { newCache, objectKey } from '../waypoint-controller/controller/cache.js';
import { Reconciler, type ResourceSink } from '../waypoint-controller/controller/reconciler.js';

class RecordingSink implements ResourceSink {
  readonly resources = new Map<string, { bytes: Uint8Array; aliases: string[]; groups: string[] }>();
  readonly log: string[] = [];
  set(typeUrl: string, name: string, bytes: Uint8Array, aliases: string[] = [], groups: string[] = []): void {
    this.resources.set(`${typeUrl}|${name}`, { bytes, aliases, groups });
    this.log.push(`set ${name}`);
  }
  delete(typeUrl: string, name: string): void {
    this.resources.delete(`${typeUrl}|${name}`);
    this.log.push(`delete ${name}`);
  }
  address(name: string) {
    const r = this.resources.get(`${ADDRESS_TYPE_URL}|${name}`);
    return r && { ...AddressCodec.decode(r.bytes), aliases: r.aliases, groups: r.groups };
  }
}

const ctx = { clusterId: 'Kubernetes', trustDomain: 'cluster.local', network: '', domainSuffix: 'cluster.local', rootNamespace: 'istio-system' };
const ambientNs: V1Namespace = { metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } };
const mkPod = (name: string, ip: string, labels: Record<string, string> = { app: 'web' }): V1Pod => ({
  metadata: { name, namespace: 'shop', labels },
  spec: { nodeName: 'node1', containers: [{ name: 'c', image: 'x' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] },
});
const svc: V1Service = { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.20', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 as never }] } };

function setup() {
  const cache = newCache();
  const sink = new RecordingSink();
  const r = new Reconciler(cache, sink, ctx);
  cache.namespaces.set('shop', ambientNs);
  for (const p of [mkPod('a', '10.244.1.2'), mkPod('b', '10.244.1.3'), mkPod('other', '10.244.1.4', { app: 'db' })]) cache.pods.set(objectKey(p), p);
  cache.services.set('shop/web', svc);
  r.syncAll();
  sink.log.length = 0;
  return { cache, sink, r };
}

test('initial sync publishes workloads and services with <network>/<ip> aliases', (t) => {
  const { sink } = setup();
  const a = sink.address('Kubernetes//v1/Pod/shop/a')!;
  t.deepEqual(a.aliases, ['/10.244.1.2']);
  t.is(a.workload!.tunnelProtocol, 'HBONE');
  t.truthy(a.workload!.services['shop/web.shop.svc.cluster.local']);
  t.falsy(sink.address('Kubernetes//v1/Pod/shop/other')!.workload!.services['shop/web.shop.svc.cluster.local']);
  t.deepEqual(sink.address('shop/web.shop.svc.cluster.local')!.aliases, ['/10.96.0.20']);
  // Workloads are published as members of their services (the keys of Workload.services); services have no groups.
  t.deepEqual(a.groups, ['shop/web.shop.svc.cluster.local']);
  t.deepEqual(sink.address('Kubernetes//v1/Pod/shop/other')!.groups, []);
  t.deepEqual(sink.address('shop/web.shop.svc.cluster.local')!.groups, []);
});

test('a pod change touches only that pod; a deletion removes it', (t) => {
  const { cache, sink, r } = setup();
  const a = mkPod('a', '10.244.1.2');
  a.status!.conditions = [{ type: 'Ready', status: 'False' }];
  cache.pods.set('shop/a', a);
  r.changed('pods', 'shop/a');
  t.deepEqual(sink.log, ['set Kubernetes//v1/Pod/shop/a']);
  t.is(sink.address('Kubernetes//v1/Pod/shop/a')!.workload!.status, 'UNHEALTHY');
  cache.pods.delete('shop/a');
  r.changed('pods', 'shop/a');
  t.deepEqual(sink.log.slice(1), ['delete Kubernetes//v1/Pod/shop/a']);
});

test('a namespace label change re-evaluates its pods; a selector policy is listed on the pods it selects', (t) => {
  const { cache, sink, r } = setup();
  cache.namespaces.set('shop', { metadata: { name: 'shop' } });
  r.changed('namespaces', 'shop');
  t.is(sink.address('Kubernetes//v1/Pod/shop/a')!.workload!.tunnelProtocol, 'NONE');
  cache.policies.set('shop/web-only', { metadata: { name: 'web-only', namespace: 'shop' }, spec: { selector: { matchLabels: { app: 'web' } }, rules: [{}] } });
  r.changed('policies', 'shop/web-only');
  t.true(sink.resources.has(`${AUTHORIZATION_TYPE_URL}|shop/web-only`));
  t.deepEqual(sink.address('Kubernetes//v1/Pod/shop/a')!.workload!.authorizationPolicies, ['shop/web-only']);
  t.deepEqual(sink.address('Kubernetes//v1/Pod/shop/other')!.workload!.authorizationPolicies, []);
  cache.policies.set('shop/web-only', { metadata: { name: 'web-only', namespace: 'shop' }, spec: { action: 'CUSTOM' } });
  r.changed('policies', 'shop/web-only');
  t.false(sink.resources.has(`${AUTHORIZATION_TYPE_URL}|shop/web-only`), 'a policy ztunnel does not enforce is withdrawn');
});

test('node topology labels become the locality of the pods on that node', (t) => {
  const { cache, sink, r } = setup();
  cache.nodes.set('node1', { metadata: { name: 'node1', labels: { 'topology.kubernetes.io/region': 'eu', 'topology.kubernetes.io/zone': 'eu-1a' } } });
  r.changed('nodes', 'node1');
  t.deepEqual(sink.address('Kubernetes//v1/Pod/shop/a')!.workload!.locality, { region: 'eu', zone: 'eu-1a', subzone: '' });
});
