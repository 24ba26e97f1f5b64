// The xDS server's waypoint serving, driven by grpc-js clients: each waypoint node is served its own store (Envoy
// types only), a change reaches only the waypoint it concerns, ztunnels keep their store, an unknown waypoint is
// refused, a NACK is recorded without a resend, EDS is by name.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { ADDRESS_TYPE_URL, AddressCodec, toStruct } from '../protos/index.js';
import { CLUSTER_TYPE_URL, decodeEnvoy, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL } from '../protos/envoy.js';
import { AggregatedDiscoveryServiceDefinition, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from '../protos/xds.js';
import { waypointEnvoyResources } from '../waypoint-controller/waypoint/envoy/index.js';
import { ResourceStore, storeEnvoyResources, WaypointStores, XdsServer } from '../waypoint-controller/xds/index.js';
import { smallModel } from './fixtures/waypoint-envoy/model.js';

const AdsClient = grpc.makeGenericClientConstructor(AggregatedDiscoveryServiceDefinition as unknown as grpc.ServiceDefinition, 'AggregatedDiscoveryService');
type AdsStream = grpc.ClientDuplexStream<Partial<DeltaDiscoveryRequest>, DeltaDiscoveryResponse>;

class Client {
  readonly client: grpc.Client;
  readonly stream: AdsStream;
  readonly got: DeltaDiscoveryResponse[] = [];
  status: grpc.StatusObject | undefined;

  constructor(port: number, readonly nodeId: string) {
    this.client = new AdsClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const method = (this.client as unknown as Record<string, (md: grpc.Metadata) => AdsStream>).deltaAggregatedResources!;
    this.stream = method.call(this.client, new grpc.Metadata());
    this.stream.on('data', (r: DeltaDiscoveryResponse) => this.got.push(r));
    this.stream.on('error', () => {});
    this.stream.on('status', (s: grpc.StatusObject) => (this.status = s));
  }

  private first = true;
  send(req: Partial<DeltaDiscoveryRequest>): void {
    const node = this.first ? { node: { id: this.nodeId, cluster: '', metadata: toStruct({}) } } : {};
    this.first = false;
    this.stream.write({ resourceNamesSubscribe: [], resourceNamesUnsubscribe: [], initialResourceVersions: {}, ...node, ...req });
  }

  async next(timeoutMs = 3000): Promise<DeltaDiscoveryResponse> {
    const deadline = Date.now() + timeoutMs;
    while (this.got.length === 0) {
      if (Date.now() > deadline || this.status) throw new Error(`no response for ${this.nodeId} (status ${this.status?.code})`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.got.shift()!;
  }

  async drain(ms: number): Promise<DeltaDiscoveryResponse[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.got.splice(0);
  }

  close(): void {
    this.stream.cancel();
    this.client.close();
  }
}

const node = (pod: string, type = 'waypoint') => `${type}~10.0.0.1~${pod}.shop~shop.svc.cluster.local`;
const listenerNames = (r: DeltaDiscoveryResponse) => r.resources.map((x) => x.name).sort();

test('waypoints are served from their own stores; changes reach only their waypoint; ztunnels are unaffected', async (t) => {
  const main = new ResourceStore();
  main.set(ADDRESS_TYPE_URL, 'Kubernetes//v1/Pod/shop/x', AddressCodec.encode({ workload: { uid: 'Kubernetes//v1/Pod/shop/x', name: 'x' } }));
  const stores = new WaypointStores();
  const server = new XdsServer({
    store: main,
    debounceMs: 5,
    log: pino({ level: 'silent' }),
    waypoints: { stores, waypointOf: (n) => (n.podName.startsWith('a-') ? 'shop/a' : n.podName.startsWith('b-') ? 'shop/b' : undefined) },
  });
  t.teardown(() => server.close(100));
  const port = await server.listen('127.0.0.1:0');
  const resA = waypointEnvoyResources(smallModel());
  storeEnvoyResources(stores.get('shop/a'), resA);
  storeEnvoyResources(stores.get('shop/b'), { listeners: resA.listeners.slice(0, 1) });

  const a = new Client(port, node('a-1'));
  const b = new Client(port, node('b-1'));
  const z = new Client(port, node('ztunnel-1', 'ztunnel'));
  t.teardown(() => [a, b, z].forEach((c) => c.close()));

  a.send({ typeUrl: LISTENER_TYPE_URL });
  b.send({ typeUrl: LISTENER_TYPE_URL });
  z.send({ typeUrl: ADDRESS_TYPE_URL });
  const la = await a.next();
  t.deepEqual(listenerNames(la), resA.listeners.map((l) => l.name as string).sort());
  t.is(decodeEnvoy('envoy.config.listener.v3.Listener', la.resources.find((r) => r.name === 'connect_terminate')!.resource!.value).name, 'connect_terminate');
  t.deepEqual(listenerNames(await b.next()), ['connect_terminate']);
  t.deepEqual((await z.next()).resources.map((r) => r.name), ['Kubernetes//v1/Pod/shop/x']);
  a.send({ typeUrl: LISTENER_TYPE_URL, responseNonce: la.nonce });

  // A ztunnel asking for Envoy types and a waypoint asking for ztunnel types get nothing.
  z.send({ typeUrl: LISTENER_TYPE_URL });
  a.send({ typeUrl: ADDRESS_TYPE_URL });
  t.deepEqual(await z.drain(100), []);
  t.deepEqual(await a.drain(0), []);

  // EDS by name: a known name and an unknown one.
  a.send({ typeUrl: ENDPOINT_TYPE_URL, resourceNamesSubscribe: ['inbound-vip|9090|tcp|reviews.shop.svc.cluster.local', 'nope'] });
  const eds = await a.next();
  t.deepEqual(eds.resources.map((r) => r.name), ['inbound-vip|9090|tcp|reviews.shop.svc.cluster.local']);
  t.deepEqual(eds.removedResources, ['nope']);

  // A change in b's store reaches b only.
  storeEnvoyResources(stores.get('shop/b'), { listeners: [] });
  t.deepEqual((await b.next()).removedResources, ['connect_terminate']);
  t.deepEqual(await a.drain(100), []);
  t.deepEqual(await z.drain(0), []);

  // A NACK is recorded and not answered with a resend.
  a.send({ typeUrl: CLUSTER_TYPE_URL });
  const cds = await a.next();
  a.send({ typeUrl: CLUSTER_TYPE_URL, responseNonce: cds.nonce, errorDetail: { code: 3, message: 'bad cluster' } });
  t.deepEqual(await a.drain(150), []);
  const conn = server.debugState().connections.find((c) => c.waypoint === 'shop/a')!;
  t.is(conn.types[CLUSTER_TYPE_URL]!.nacks, 1);
  t.is(conn.types[CLUSTER_TYPE_URL]!.lastNack?.message, 'bad cluster');
  t.regex(await server.registry.metrics(), /pilot_total_xds_rejects\{type="cluster"\} 1/);
  t.deepEqual(server.debugState().waypoints['shop/b'], {
    [LISTENER_TYPE_URL]: 0,
    [CLUSTER_TYPE_URL]: 0,
    [ENDPOINT_TYPE_URL]: 0,
    'type.googleapis.com/envoy.config.route.v3.RouteConfiguration': 0,
    'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret': 0,
  });

  // Forgetting a waypoint's store ends its streams.
  stores.delete('shop/b');
  await new Promise((r) => setTimeout(r, 200));
  t.is(b.status?.code, grpc.status.OK);
  t.falsy(server.debugState().connections.find((c) => c.waypoint === 'shop/b'));
  t.truthy(server.debugState().connections.find((c) => c.waypoint === 'shop/a'));

  // A waypoint node we cannot place is refused (its Envoy retries with backoff).
  const c = new Client(port, node('c-1'));
  t.teardown(() => c.close());
  c.send({ typeUrl: LISTENER_TYPE_URL });
  await new Promise((r) => setTimeout(r, 200));
  t.is(c.status?.code, grpc.status.FAILED_PRECONDITION);
  t.deepEqual(c.got, []);
});
