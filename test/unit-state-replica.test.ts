// A proxy thread's replica of the state (state/replica.ts): every change on the main thread's state, encoded and
// structured-cloned as postMessage would, then replayed, must give an equal state and the same 'change' events.
import test from 'ava';
import { ProxyState } from '../ztunnel/state/index.js';
import { sharedPortMap, sharedProfile, sharedServicePorts, sharedStrings } from '../ztunnel/state/intern.js';
import { ProfiledWorkload } from '../ztunnel/state/profiled-workload.js';
import { applyOp, encodeOp } from '../ztunnel/state/replica.js';
import type { Authorization, Service, Workload } from '../ztunnel/state/types.js';

const SVC = 'shop/api.shop.svc.cluster.local';

const plain = (name: string, ip: string): Workload => ({
  uid: `Kubernetes//v1/Pod/shop/${name}`, name, namespace: 'shop', serviceAccount: 'api', trustDomain: 'cluster.local',
  workloadIps: [ip], network: '', protocol: 'HBONE', node: 'node-a', hostname: '', canonicalName: 'api', canonicalRevision: 'v1',
  workloadName: 'api', workloadType: 'pod', clusterId: 'Kubernetes', status: 'Healthy', authorizationPolicies: ['shop/p1'],
  services: new Map([[SVC, new Map([[80, 8080]])]]),
});
const profile = sharedProfile({
  namespace: 'shop', serviceAccount: 'web', trustDomain: 'cluster.local', network: 'net1', protocol: 'TCP', hostname: '', canonicalName: '',
  canonicalRevision: 'v2', workloadName: '', workloadType: 'deployment', clusterId: 'Kubernetes', status: 'Unhealthy',
  authorizationPolicies: sharedStrings(['shop/p2']), services: sharedServicePorts([[SVC, sharedPortMap([[80, 9090]])]]),
});
const profiled = (name: string, ip: string) => new ProfiledWorkload(`Kubernetes//v1/Pod/shop/${name}`, name, [ip], 'node-b', profile);
const service = (vip: string): Service => ({
  name: 'api', namespace: 'shop', hostname: 'api.shop.svc.cluster.local', vips: [{ network: '', address: vip }], ports: new Map([[80, 0]]), subjectAltNames: ['spiffe://x/y'],
});
const policy = (name: string): Authorization => ({
  name, namespace: 'shop', scope: 'Namespace', action: 'Deny', dryRun: false,
  rules: [[[{ namespaces: [{ exact: 'a' }], notNamespaces: [], principals: [], notPrincipals: [], serviceAccounts: [], notServiceAccounts: [], sourceIps: [{ address: '10.0.0.0', prefixLen: 8 }], notSourceIps: [], destinationIps: [], notDestinationIps: [], destinationPorts: [80], notDestinationPorts: [] }]]],
});

/** Everything a reader can see, as plain data (getters read out). */
function view(s: ProxyState): unknown {
  const fields = (w: Workload) => ({
    uid: w.uid, name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount, trustDomain: w.trustDomain, workloadIps: w.workloadIps,
    network: w.network, protocol: w.protocol, node: w.node, hostname: w.hostname, canonicalName: w.canonicalName, canonicalRevision: w.canonicalRevision,
    workloadName: w.workloadName, workloadType: w.workloadType, clusterId: w.clusterId, status: w.status,
    authorizationPolicies: [...w.authorizationPolicies], services: [...w.services].map(([k, m]) => [k, [...m]]),
  });
  return {
    workloads: [...s.workloads.all()].map(fields),
    services: [...s.services.all()].map((x) => ({ ...x, ports: [...x.ports], endpoints: [...s.endpointsOf(x)].map((e) => e.workload.uid) })),
    policies: [...s.policies.all()],
    byAddress: ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.96.0.1'].map((ip) => s.findDestination('', ip)?.kind ?? s.findDestination('net1', ip)?.kind),
  };
}

function pair() {
  const primary = new ProxyState();
  const replica = new ProxyState();
  primary.mirror = (op) => applyOp(replica, structuredClone(encodeOp(op)));
  const events = { primary: 0, replica: 0 };
  primary.on('change', () => events.primary++);
  replica.on('change', () => events.replica++);
  return { primary, replica, events };
}

test('every kind of change replays to an equal state with the same change events', (t) => {
  const { primary, replica, events } = pair();
  const steps: [string, () => void][] = [
    ['replace', () => primary.replace({ workloads: [plain('a', '10.0.0.1')], services: [service('10.96.0.1')], policies: [policy('p1')] })],
    ['upsert profiled', () => primary.upsertWorkload(profiled('b', '10.0.0.2'))],
    ['upsert profiled 2', () => primary.upsertWorkload(profiled('c', '10.0.0.3'))],
    ['re-upsert plain with a new address', () => primary.upsertWorkload(plain('a', '10.0.0.9'))],
    ['remove workload', () => primary.removeWorkload('Kubernetes//v1/Pod/shop/c')],
    ['upsert policy', () => primary.upsertPolicy(policy('p2'))],
    ['remove policy', () => primary.removePolicy('shop/p1')],
    ['remove service', () => primary.removeService(SVC)],
    ['upsert service', () => primary.upsertService(service('10.96.0.2'))],
    ['batch, then changed()', () => {
      primary.upsertWorkload(profiled('d', '10.0.0.4'), false);
      primary.removePolicy('shop/p2', false);
      primary.changed();
    }],
    ['replace with nothing', () => primary.replace({ workloads: [], services: [], policies: [] })],
  ];
  for (const [what, step] of steps) {
    step();
    t.deepEqual(view(replica), view(primary), what);
    t.is(events.replica, events.primary, `${what}: change events`);
  }
  t.is(events.primary, steps.length);
});

test('replicas of one deployment share one profile on the replica too', (t) => {
  const { primary, replica } = pair();
  primary.upsertWorkload(profiled('b', '10.0.0.2'));
  primary.upsertWorkload(profiled('c', '10.0.0.3'));
  const [b, c] = [...replica.workloads.all()] as ProfiledWorkload[];
  t.true(b instanceof ProfiledWorkload && c instanceof ProfiledWorkload);
  t.is(b!.profile, c!.profile);
  t.is(b!.canonicalName, 'b', 'an empty canonical name still stands for the own name');
  t.true(Object.isFrozen(b!.profile));
});
