// Kubernetes objects -> the workload API, with Istio's semantics.
import type { V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import test from 'ava';
import { AddressCodec, AuthorizationCodec } from '../protos/index.js';
import { authorize } from '../ztunnel/rbac/authorize.js';
import { toAuthorization, type AuthorizationPolicy } from '../waypoint-controller/translate/authorization.js';
import { isEnrolled, owningWorkload } from '../waypoint-controller/translate/labels.js';
import { toService } from '../waypoint-controller/translate/service.js';
import { toWorkload } from '../waypoint-controller/translate/workload.js';
import { parseIdentity } from '../ztunnel/identity/spiffe.js';
import { convertAuthorization } from '../ztunnel/xds/convert.js';

const ctx = { clusterId: 'Kubernetes', trustDomain: 'cluster.local', network: '', domainSuffix: 'cluster.local' };
const ns = (labels: Record<string, string> = {}): V1Namespace => ({ metadata: { name: 'shop', labels } });

function pod(over: Partial<V1Pod> & { labels?: Record<string, string>; ready?: boolean } = {}): V1Pod {
  return {
    metadata: {
      name: 'web-7d9f8-abcde', namespace: 'shop',
      labels: { app: 'web', version: 'v2', 'pod-template-hash': '7d9f8', ...over.labels },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7d9f8', uid: 'rs', controller: true }],
    },
    spec: { nodeName: 'node1', serviceAccountName: 'web', containers: [{ name: 'c', image: 'x', ports: [{ name: 'http', containerPort: 8080 }] }], ...over.spec },
    status: {
      phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }],
      conditions: [{ type: 'Ready', status: over.ready === false ? 'False' : 'True' }],
    },
  };
}

const svc: V1Service = {
  metadata: { name: 'web', namespace: 'shop' },
  spec: { clusterIP: '10.96.0.20', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' as never }, { port: 90, targetPort: 9090 as never }] },
};

test('enrollment: namespace label, pod label, opt-out, host network', (t) => {
  t.true(isEnrolled(pod(), ns({ 'istio.io/dataplane-mode': 'ambient' })));
  t.false(isEnrolled(pod(), ns()));
  t.true(isEnrolled(pod({ labels: { 'istio.io/dataplane-mode': 'ambient' } }), ns()));
  t.false(isEnrolled(pod({ labels: { 'istio.io/dataplane-mode': 'none' } }), ns({ 'istio.io/dataplane-mode': 'ambient' })));
  t.false(isEnrolled(pod({ spec: { hostNetwork: true, containers: [] } }), ns({ 'istio.io/dataplane-mode': 'ambient' })));
});

test('a pod becomes a workload with uid, identity, owner, canonical names, services and policies', (t) => {
  const w = toWorkload(pod(), ns({ 'istio.io/dataplane-mode': 'ambient' }), [svc], [{ key: 'shop/only-web', namespace: 'shop', selector: { app: 'web' } }], ctx)!;
  const decoded = AddressCodec.decode(AddressCodec.encode({ workload: w })).workload!;
  t.like(decoded, {
    uid: 'Kubernetes//v1/Pod/shop/web-7d9f8-abcde', tunnelProtocol: 'HBONE', serviceAccount: 'web', node: 'node1', status: 'HEALTHY',
    workloadType: 'DEPLOYMENT', workloadName: 'web', canonicalName: 'web', canonicalRevision: 'v2',
  });
  t.deepEqual([...decoded.addresses[0]!], [10, 244, 1, 5]);
  t.deepEqual(decoded.authorizationPolicies, ['shop/only-web']);
  // Named target port resolved against the container; numeric kept.
  t.deepEqual(
    decoded.services['shop/web.shop.svc.cluster.local']!.ports.map((p) => [p.servicePort, p.targetPort]),
    [[80, 8080], [90, 9090]],
  );
  t.is(AddressCodec.decode(AddressCodec.encode({ workload: toWorkload(pod({ ready: false }), ns(), [], [], ctx)! })).workload!.status, 'UNHEALTHY');
  t.is(toWorkload({ ...pod(), status: { phase: 'Pending' } }, ns(), [], [], ctx), undefined);
});

test('owners: ReplicaSet -> Deployment, Job from a CronJob, bare pod', (t) => {
  t.deepEqual(owningWorkload(pod()), { type: 'DEPLOYMENT', name: 'web', kind: 'deployment' });
  const job = pod();
  job.metadata!.ownerReferences = [{ apiVersion: 'batch/v1', kind: 'Job', name: 'nightly-28512345', uid: 'j', controller: true }];
  t.is(owningWorkload(job).type, 'CRONJOB');
  t.is(owningWorkload(job).name, 'nightly');
  const bare = pod();
  bare.metadata!.ownerReferences = [];
  t.deepEqual(owningWorkload(bare), { type: 'POD', name: 'web-7d9f8-abcde', kind: 'pod' });
});

test('a service keeps numeric target ports and marks named ones 0', (t) => {
  const s = AddressCodec.decode(AddressCodec.encode({ service: toService(svc, ctx) })).service!;
  t.is(s.hostname, 'web.shop.svc.cluster.local');
  t.deepEqual([...s.addresses[0]!.address], [10, 96, 0, 20]);
  t.deepEqual(s.ports.map((p) => [p.servicePort, p.targetPort]), [[80, 0], [90, 9090]]);
});

const ap = (spec: AuthorizationPolicy['spec'], namespace = 'shop'): AuthorizationPolicy => ({ metadata: { name: 'p', namespace }, spec });

/** Translate, send through the wire format, convert as ztunnel's xDS client does, and evaluate with ztunnel's evaluator. */
function decide(policy: AuthorizationPolicy, conn: { src?: string; srcIp?: string; port?: number }) {
  const tr = toAuthorization(policy, 'istio-system');
  if (tr.kind !== 'ztunnel') throw new Error(tr.reason);
  const model = convertAuthorization(AuthorizationCodec.decode(AuthorizationCodec.encode(tr.authorization)));
  return authorize([model], {
    srcIp: conn.srcIp ?? '10.244.1.9', dstIp: '10.244.1.5', dstPort: conn.port ?? 8080,
    srcIdentity: conn.src ? parseIdentity(conn.src) : undefined,
  }).allowed;
}

const FRONT = 'spiffe://cluster.local/ns/front/sa/ui';

test('scope: root namespace -> GLOBAL, no selector -> NAMESPACE, selector -> WORKLOAD_SELECTOR; waypoint and CUSTOM policies skipped', (t) => {
  const scope = (p: AuthorizationPolicy) => {
    const tr = toAuthorization(p, 'istio-system');
    return tr.kind === 'ztunnel' ? tr.authorization.scope : tr.kind;
  };
  t.is(scope(ap({}, 'istio-system')), 'GLOBAL');
  t.is(scope(ap({})), 'NAMESPACE');
  t.is(scope(ap({ selector: { matchLabels: { app: 'web' } } })), 'WORKLOAD_SELECTOR');
  t.is(scope(ap({ targetRefs: [{ kind: 'Service', name: 'web' }] })), 'skip');
  t.is(scope(ap({ action: 'CUSTOM' })), 'skip');
});

test('from/to/when become clauses with Istio semantics', (t) => {
  const p = ap({ action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/front/*'] } }], to: [{ operation: { ports: ['8080'] } }] }] });
  t.true(decide(p, { src: FRONT, port: 8080 }));
  t.false(decide(p, { src: FRONT, port: 9090 }));
  t.false(decide(p, { src: 'spiffe://cluster.local/ns/other/sa/x', port: 8080 }));
  const byNs = ap({ action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['front'] } }], when: [{ key: 'source.ip', values: ['10.244.0.0/16'] }] }] });
  t.true(decide(byNs, { src: FRONT }));
  t.false(decide(byNs, { src: FRONT, srcIp: '10.1.1.1' }));
  t.false(decide(ap({ action: 'ALLOW' }), { src: FRONT }), 'an ALLOW without rules allows nothing');
  t.true(decide(ap({ action: 'ALLOW', rules: [{}] }), { src: FRONT }), 'an empty rule matches everything');
});

test('L7 attributes fail closed: dropped from ALLOW (allow less), ignored in DENY (deny more)', (t) => {
  const allowGet = ap({ action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['front'] } }], to: [{ operation: { methods: ['GET'] } }] }] });
  t.false(decide(allowGet, { src: FRONT }), 'an ALLOW that needs the HTTP method cannot match at L4');
  const denyGet = ap({ action: 'DENY', rules: [{ from: [{ source: { namespaces: ['front'] } }], to: [{ operation: { methods: ['GET'] } }] }] });
  t.false(decide(denyGet, { src: FRONT }), 'a DENY that names the HTTP method denies the whole connection');
  t.true(decide(denyGet, { src: 'spiffe://cluster.local/ns/other/sa/x' }), '... but only for the sources it names');
  const denyHeader = ap({ action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-user]', values: ['bob'] }] }] });
  t.false(decide(denyHeader, { src: FRONT }));
});
