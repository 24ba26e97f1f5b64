// The state-heap benchmark (bench/state-heap.ts): its synthetic cluster converts, the XdsClient accepts it as delta
// responses and makes a working state of it, and the measurement runs and reports a well-formed result. Sizes are
// measured by the benchmark, never asserted here.
import test from 'ava';
import {
  benchClient, clusterShape, DEFAULTS, expectedService, expectedWorkload, fill, measureStateHeap, syntheticService, syntheticWorkload,
} from '../bench/state-heap.js';
import { ADDRESS_TYPE_URL, AddressCodec } from '../protos/index.js';
import { route } from '../ztunnel/proxy/route.js';
import { ProxyState } from '../ztunnel/state/index.js';
import { ProfiledWorkload } from '../ztunnel/state/profiled-workload.js';
import { convertAddress } from '../ztunnel/xds/convert.js';

const shape = clusterShape(1000);

test('synthetic addresses convert as xDS would deliver them', (t) => {
  const w = convertAddress(AddressCodec.decode(AddressCodec.encode(syntheticWorkload(shape, 42))), DEFAULTS);
  if (w.kind !== 'workload') return t.fail();
  const want = expectedWorkload(shape, 42);
  t.like(w.workload, { uid: want.uid, name: want.name, namespace: want.service.namespace, serviceAccount: `${want.service.name}-sa`, trustDomain: 'cluster.local', clusterId: 'Kubernetes', protocol: 'HBONE', status: 'Healthy', workloadType: 'deployment' });
  t.deepEqual(w.workload.workloadIps, [want.ip]);
  t.deepEqual([...w.workload.services.keys()], [want.service.key]);
  const s = convertAddress(AddressCodec.decode(AddressCodec.encode(syntheticService(shape, 4))), DEFAULTS);
  if (s.kind !== 'service') return t.fail();
  t.like(s.service, { hostname: expectedService(shape, 4).hostname, vips: [{ network: '', address: expectedService(shape, 4).vip }] });
});

test('the client accepts the cluster as delta responses; the state answers lookups by IP, uid and service VIP', (t) => {
  const state = new ProxyState();
  const client = benchClient(state);
  t.teardown(() => client.close());
  fill(client, shape);
  t.like(client.stats, { acks: 2, nacks: 0, connects: 0 });
  const known = client.known(ADDRESS_TYPE_URL);
  t.is(Object.keys(known).length, 1000 + shape.services);
  t.regex(known[expectedWorkload(shape, 537).uid]!, /^[\w-]{16}$/);
  t.regex(known[expectedService(shape, 53).key]!, /^[\w-]{16}$/);
  t.is(state.workloads.size, 1000);
  t.is(state.services.size, shape.services);
  for (const i of [0, 9, 10, 537, 999]) {
    const want = expectedWorkload(shape, i);
    const w = state.workloads.get(want.uid);
    t.is(w?.name, want.name, `pod ${i} by uid`);
    const dest = state.findDestination('', want.ip);
    t.true(dest?.kind === 'workload' && dest.workload === w, `pod ${i} by IP`);
    const svc = expectedService(shape, want.serviceIndex);
    const byVip = state.findDestination('', svc.vip);
    if (byVip?.kind !== 'service') return t.fail(`service ${want.serviceIndex} by VIP`);
    t.is(byVip.service.hostname, svc.hostname);
    t.true([...state.endpointsOf(byVip.service)].some((e) => e.workload === w), `pod ${i} is an endpoint of its service`);
    const r = route(state, '', svc.vip, 80, () => 0);
    t.like(r, { kind: 'hbone', targetPort: 8080, service: byVip.service });
  }
  // The replicas of a deployment share one profile; another deployment has its own.
  const profileOf = (i: number) => {
    const w = state.workloads.get(expectedWorkload(shape, i).uid);
    return w instanceof ProfiledWorkload ? w.profile : t.fail(`pod ${i} is not a ProfiledWorkload`);
  };
  for (const i of [11, 15, 19]) t.is(profileOf(i), profileOf(10), `pod ${i} shares pod 10's profile`);
  t.not(profileOf(9), profileOf(10));
});

test('measureStateHeap runs the benchmark in a fresh process and returns a well-formed result', async (t) => {
  const r = await measureStateHeap(1000);
  t.is(r.workloads, 1000);
  t.is(r.services, shape.services);
  t.true(r.heapBytes > 0);
  t.true(Number.isFinite(r.bytesPerWorkload) && r.bytesPerWorkload > 0);
});
