// Delta ADS server of the control plane, driven by a real grpc-js client over 127.0.0.1.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  AddressCodec,
  AuthorizationCodec,
  toStruct,
  type Address,
} from '../protos/index.js';
import {
  AggregatedDiscoveryServiceDefinition,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
} from '../protos/xds.js';
import { ResourceStore, XdsServer, addressGroups, addressNameAndAliases, type XdsServerOptions } from '../waypoint-controller/xds/index.js';
import { ipToBytes } from '../ztunnel/net/ip.js';

// ------------------------------------------------------------------ fixtures

const NET = 'net1';

function workload(name: string, ip: string, extra: Partial<Address['workload']> = {}): Address {
  return AddressCodec.create({
    workload: {
      uid: `Kubernetes//v1/Pod/shop/${name}`,
      name,
      namespace: 'shop',
      network: NET,
      addresses: [ipToBytes(ip)],
      serviceAccount: name,
      ...extra,
    },
  });
}

function service(name: string, vip: string): Address {
  return AddressCodec.create({
    service: {
      name,
      namespace: 'shop',
      hostname: `${name}.shop.svc.cluster.local`,
      addresses: [{ network: NET, address: ipToBytes(vip) }],
      ports: [{ servicePort: 80, targetPort: 8080 }],
    },
  });
}

function putAddress(store: ResourceStore, a: Address): string {
  const { name, aliases } = addressNameAndAliases(a);
  store.set(ADDRESS_TYPE_URL, name, AddressCodec.encode(a), aliases, addressGroups(a));
  return name;
}

const uid = (name: string) => `Kubernetes//v1/Pod/shop/${name}`;
const svcName = (name: string) => `shop/${name}.shop.svc.cluster.local`;
/** Workload.services entry making a workload a member of service `name` of the fixtures. */
const memberOf = (...svcs: string[]) => ({
  services: Object.fromEntries(svcs.map((s) => [svcName(s), { ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 0 }] }])),
});

// ------------------------------------------------------------------ client

const AdsClient = grpc.makeGenericClientConstructor(
  AggregatedDiscoveryServiceDefinition as unknown as grpc.ServiceDefinition,
  'AggregatedDiscoveryService',
);

const NODE = {
  id: 'ztunnel~10.244.0.5~ztunnel-abc.istio-system~istio-system.svc.cluster.local',
  cluster: '',
  metadata: toStruct({ NAME: 'ztunnel-abc', NAMESPACE: 'istio-system', INSTANCE_IPS: '10.244.0.5', NODE_NAME: 'node-a' }),
};

type AdsStream = grpc.ClientDuplexStream<Partial<DeltaDiscoveryRequest>, DeltaDiscoveryResponse>;

/** A plaintext DeltaAggregatedResources stream to 127.0.0.1:port with the given call metadata. */
function openAds(port: number, metadata: Record<string, string>): { client: grpc.Client; stream: AdsStream } {
  const client = new AdsClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  const method = (client as unknown as Record<string, (md: grpc.Metadata) => AdsStream>).deltaAggregatedResources!;
  return { client, stream: method.call(client, md) };
}

class TestClient {
  private readonly client: grpc.Client;
  private readonly stream: AdsStream;
  private readonly queue: DeltaDiscoveryResponse[] = [];
  private waiter: (() => void) | undefined;
  ended = false;

  constructor(port: number) {
    ({ client: this.client, stream: this.stream } = openAds(port, { clusterid: 'Kubernetes' }));
    this.stream.on('data', (r: DeltaDiscoveryResponse) => {
      this.queue.push(r);
      this.waiter?.();
    });
    this.stream.on('error', () => {
      this.ended = true;
      this.waiter?.();
    });
    this.stream.on('end', () => {
      this.ended = true;
      this.waiter?.();
    });
  }

  send(req: Partial<DeltaDiscoveryRequest>): void {
    this.stream.write({ typeUrl: ADDRESS_TYPE_URL, ...req });
  }

  /** Next response, waiting at most timeoutMs. */
  async next(timeoutMs = 3000): Promise<DeltaDiscoveryResponse> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0 || this.ended) throw new Error(`no xDS response within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queue.shift()!;
  }

  /** Resolves with whatever arrived within ms (expected: nothing). */
  async drain(ms: number): Promise<DeltaDiscoveryResponse[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.queue.splice(0);
  }

  ack(resp: DeltaDiscoveryResponse): void {
    this.send({ typeUrl: resp.typeUrl, responseNonce: resp.nonce });
  }

  close(): void {
    try {
      this.stream.end();
      this.stream.cancel();
    } catch {
      // ignore
    }
    this.client.close();
  }
}

// ------------------------------------------------------------------ harness

const servers: XdsServer[] = [];
const clients: TestClient[] = [];

const lines: string[] = [];
const log = pino(
  { level: 'warn' },
  new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  }),
);

/** ztunnel's on-demand start: subscribe and unsubscribe "*" = subscribed to nothing. */
const ON_DEMAND = { resourceNamesSubscribe: ['*'], resourceNamesUnsubscribe: ['*'] };

/** A server on a store seeded with workloads a, b and service web; `connect(first)` opens a client stream and sends
 *  its first request (NODE, and wildcard unless `first` says otherwise). */
async function setup(opts: { debounceMs?: number; maxDelayMs?: number; authenticate?: XdsServerOptions['authenticate'] } = {}) {
  const store = new ResourceStore();
  const server = new XdsServer({ store, debounceMs: opts.debounceMs ?? 20, maxDelayMs: opts.maxDelayMs ?? 200, log, authenticate: opts.authenticate });
  servers.push(server);
  const port = await server.listen('127.0.0.1:0');
  putAddress(store, workload('a', '10.0.0.1'));
  putAddress(store, workload('b', '10.0.0.2'));
  putAddress(store, service('web', '10.96.0.10'));
  const connect = (first: Partial<DeltaDiscoveryRequest> = {}) => {
    const c = new TestClient(port);
    clients.push(c);
    c.send({ node: NODE, ...first });
    return c;
  };
  return { store, server, port, connect };
}

const names = (r: DeltaDiscoveryResponse) => r.resources.map((x) => x.name).sort();
const decodeAddr = (r: DeltaDiscoveryResponse, i = 0) => AddressCodec.decode(r.resources[i]!.resource!.value);

test.after.always(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.close(500)));
});

// ------------------------------------------------------------------ tests

test.serial('wildcard subscription gets every resource; node and clusterid are recorded', async (t) => {
  const { store, server, connect } = await setup();
  const c = connect();
  const r = await c.next();
  t.is(r.typeUrl, ADDRESS_TYPE_URL);
  t.deepEqual(names(r), [uid('a'), uid('b'), 'shop/web.shop.svc.cluster.local'].sort());
  t.deepEqual(r.removedResources, []);
  t.truthy(r.nonce);
  for (const res of r.resources) {
    t.is(res.resource?.type_url, ADDRESS_TYPE_URL);
    t.truthy(res.version);
  }
  const conn = server.debugState().connections[0]!;
  t.is(conn.node?.id, NODE.id);
  t.is(conn.node?.proxyType, 'ztunnel');
  t.is(conn.node?.ip, '10.244.0.5');
  t.is(conn.node?.podName, 'ztunnel-abc');
  t.is(conn.node?.podNamespace, 'istio-system');
  t.is(conn.node?.nodeName, 'node-a');
  t.is(conn.clusterId, 'Kubernetes');
  t.true(conn.types[ADDRESS_TYPE_URL]!.wildcard);

  // Authorization is served on the same stream.
  store.set(AUTHORIZATION_TYPE_URL, 'shop/deny-all', AuthorizationCodec.encode({ name: 'deny-all', namespace: 'shop' }));
  c.send({ typeUrl: AUTHORIZATION_TYPE_URL });
  const ra = await c.next();
  t.is(ra.typeUrl, AUTHORIZATION_TYPE_URL);
  t.deepEqual(names(ra), ['shop/deny-all']);
  t.is(AuthorizationCodec.decode(ra.resources[0]!.resource!.value).name, 'deny-all');
});

test.serial('an update reaches wildcard subscribers as one delta with only the changed resource; removal as removed_resources', async (t) => {
  const { store, connect } = await setup();
  const c1 = connect();
  const c2 = connect();
  const first = await c1.next();
  await c2.next();
  c1.ack(first);

  putAddress(store, workload('a', '10.0.0.1', { serviceAccount: 'changed' }));
  for (const c of [c1, c2]) {
    const r = await c.next();
    t.deepEqual(names(r), [uid('a')]);
    t.deepEqual(r.removedResources, []);
    t.is(decodeAddr(r).workload?.serviceAccount, 'changed');
    t.not(r.nonce, first.nonce);
  }
  // Same content again: no push.
  const same = workload('a', '10.0.0.1', { serviceAccount: 'changed' });
  const { name: sameName, aliases: sameAliases } = addressNameAndAliases(same);
  t.false(store.set(ADDRESS_TYPE_URL, sameName, AddressCodec.encode(same), sameAliases));
  t.deepEqual(await c1.drain(150), []);

  store.delete(ADDRESS_TYPE_URL, uid('b'));
  for (const c of [c1, c2]) {
    const r = await c.next();
    t.deepEqual(r.resources, []);
    t.deepEqual(r.removedResources, [uid('b')]);
  }
});

test.serial('explicit subscription by name and by <network>/<ip> alias gets only that; unknown keys come back removed', async (t) => {
  const { store, server, connect } = await setup();
  // ztunnel's on-demand start, answered empty.
  const c = connect(ON_DEMAND);
  const r0 = await c.next();
  t.deepEqual(r0.resources, []);
  t.deepEqual(r0.removedResources, []);
  t.false(server.debugState().connections[0]!.types[ADDRESS_TYPE_URL]!.wildcard);

  c.send({ resourceNamesSubscribe: [`${NET}/10.0.0.2`] });
  const r1 = await c.next();
  t.deepEqual(names(r1), [uid('b')]);
  t.deepEqual(r1.resources[0]!.aliases, [`${NET}/10.0.0.2`]);
  t.deepEqual(r1.removedResources, []);

  c.send({ resourceNamesSubscribe: [uid('a')] });
  const r2 = await c.next();
  t.deepEqual(names(r2), [uid('a')]);

  c.send({ resourceNamesSubscribe: [`${NET}/10.96.0.10`] });
  const r3 = await c.next();
  t.deepEqual(names(r3), ['shop/web.shop.svc.cluster.local']);
  t.is(decodeAddr(r3).service?.hostname, 'web.shop.svc.cluster.local');

  c.send({ resourceNamesSubscribe: [`${NET}/10.9.9.9`] });
  const r4 = await c.next();
  t.deepEqual(r4.resources, []);
  t.deepEqual(r4.removedResources, [`${NET}/10.9.9.9`]);

  t.deepEqual(server.debugState().connections[0]!.types[ADDRESS_TYPE_URL]!.subscribed, [
    `${NET}/10.0.0.2`, `${NET}/10.9.9.9`, `${NET}/10.96.0.10`, uid('a'),
  ].sort());

  // A change to the resource found through the alias is pushed under its canonical name...
  putAddress(store, workload('b', '10.0.0.2', { serviceAccount: 'b2' }));
  const r5 = await c.next();
  t.deepEqual(names(r5), [uid('b')]);
  // ...and so is its removal.
  store.delete(ADDRESS_TYPE_URL, uid('b'));
  const r6 = await c.next();
  t.deepEqual(r6.removedResources, [uid('b')]);
  // A pod appearing later at a subscribed IP that was unknown is sent too.
  putAddress(store, workload('late', '10.9.9.9'));
  const r7 = await c.next();
  t.deepEqual(names(r7), [uid('late')]);
});

test.serial('a change to a resource nobody subscribed to reaches no one', async (t) => {
  const { store, server, connect } = await setup();
  putAddress(store, workload('other', '10.0.0.50'));
  const c = connect({ resourceNamesSubscribe: [uid('a')] });
  const r0 = await c.next();
  t.deepEqual(names(r0), [uid('a')]);

  putAddress(store, workload('other', '10.0.0.50', { serviceAccount: 'x' }));
  putAddress(store, workload('brand-new', '10.0.0.51'));
  store.delete(ADDRESS_TYPE_URL, uid('b'));
  t.deepEqual(await c.drain(300), []);
  t.is(server.debugState().connections[0]!.types[ADDRESS_TYPE_URL]!.pushes, 1);
});

test.serial('unsubscribe stops updates and is not answered', async (t) => {
  const { store, connect } = await setup();
  const c = connect({ resourceNamesSubscribe: [uid('a'), `${NET}/10.0.0.2`] });
  const r0 = await c.next();
  t.deepEqual(names(r0), [uid('a'), uid('b')]);
  c.ack(r0);
  c.send({ resourceNamesUnsubscribe: [uid('a'), `${NET}/10.0.0.2`] });
  t.deepEqual(await c.drain(150), []);
  putAddress(store, workload('a', '10.0.0.1', { serviceAccount: 'x' }));
  putAddress(store, workload('b', '10.0.0.2', { serviceAccount: 'x' }));
  store.delete(ADDRESS_TYPE_URL, uid('a'));
  t.deepEqual(await c.drain(300), []);

  // Wildcard subscribers can leave the wildcard with "*".
  const w = connect();
  await w.next();
  w.send({ resourceNamesUnsubscribe: ['*'] });
  await w.drain(100);
  putAddress(store, workload('b', '10.0.0.2', { serviceAccount: 'y' }));
  t.deepEqual(await w.drain(300), []);
});

test.serial('ACK is tracked; a NACK is logged with its reason, counted and not answered by a resend', async (t) => {
  const { store, server, connect } = await setup();
  const c = connect();
  const r0 = await c.next();
  c.ack(r0);
  await c.drain(50);
  let dbg = server.debugState().connections[0]!.types[ADDRESS_TYPE_URL]!;
  t.is(dbg.nonceAcked, r0.nonce);
  t.is(dbg.acks, 1);

  putAddress(store, workload('a', '10.0.0.1', { serviceAccount: 'bad' }));
  const r1 = await c.next();
  c.send({ responseNonce: r1.nonce, errorDetail: { code: 3, message: `${uid('a')}: invalid workload` } });
  t.deepEqual(await c.drain(400), [], 'no resend after a NACK');
  dbg = server.debugState().connections[0]!.types[ADDRESS_TYPE_URL]!;
  t.is(dbg.nacks, 1);
  t.is(dbg.nonceNacked, r1.nonce);
  t.is(dbg.lastNack?.message, `${uid('a')}: invalid workload`);
  t.true(lines.some((l) => l.includes('NACK') && l.includes('invalid workload')));
  const metrics = await server.registry.metrics();
  t.regex(metrics, /pilot_total_xds_rejects\{type="address"\} 1/);
  t.regex(metrics, /pilot_xds 1/);
  t.regex(metrics, /pilot_xds_pushes\{type="address"\} 2/);
  t.regex(metrics, /ambit_xds_pushed_bytes_total\{type="address"\} \d+/);

  // A fixed version is pushed normally afterwards.
  putAddress(store, workload('a', '10.0.0.1', { serviceAccount: 'good' }));
  const r2 = await c.next();
  t.deepEqual(names(r2), [uid('a')]);
  t.is(decodeAddr(r2).workload?.serviceAccount, 'good');
});

test.serial('reconnect with initial_resource_versions gets only what changed meanwhile', async (t) => {
  const { store, connect } = await setup();
  const c1 = connect();
  const r0 = await c1.next();
  const held = Object.fromEntries(r0.resources.map((r) => [r.name, r.version]));
  c1.close();

  putAddress(store, workload('b', '10.0.0.2', { serviceAccount: 'b2' })); // changed
  store.delete(ADDRESS_TYPE_URL, 'shop/web.shop.svc.cluster.local'); // removed
  putAddress(store, workload('c', '10.0.0.3')); // new
  await new Promise((r) => setTimeout(r, 60));

  const c2 = connect({ initialResourceVersions: held });
  const r1 = await c2.next();
  t.deepEqual(names(r1), [uid('b'), uid('c')]);
  t.deepEqual(r1.removedResources, ['shop/web.shop.svc.cluster.local']);
  t.deepEqual(await c2.drain(150), []);

  // A client that does not know versions (ztunnel sends "") gets everything it has again.
  const c3 = connect({ initialResourceVersions: { [uid('a')]: '', gone: '' } });
  const r2 = await c3.next();
  t.deepEqual(names(r2), [uid('a'), uid('b'), uid('c')]);
  t.deepEqual(r2.removedResources, ['gone']);
});

test.serial('debounce coalesces a burst into one push, and a steady stream is not starved', async (t) => {
  const { store, server, connect } = await setup({ debounceMs: 50, maxDelayMs: 150 });
  const c = connect();
  await c.next();

  const N = 30;
  for (let i = 0; i < N; i++) putAddress(store, workload(`burst-${i % 5}`, `10.1.0.${i % 5}`, { serviceAccount: `v${i}` }));
  const r = await c.next();
  t.deepEqual(names(r), [0, 1, 2, 3, 4].map((i) => uid(`burst-${i}`)).sort());
  t.deepEqual(await c.drain(150), [], 'one push for the whole burst');
  // Each resource carries its last content.
  const sa = r.resources.map((_, i) => decodeAddr(r, i).workload?.serviceAccount).sort();
  t.deepEqual(sa, ['v25', 'v26', 'v27', 'v28', 'v29']);

  // Steady stream: an update every 20 ms (< debounce) for ~600 ms still gets pushes out within maxDelay.
  const start = Date.now();
  let i = 0;
  const timer = setInterval(() => putAddress(store, workload('steady', '10.2.0.1', { serviceAccount: `s${i++}` })), 20);
  const got: number[] = [];
  try {
    while (Date.now() - start < 600) {
      const left = 600 - (Date.now() - start);
      try {
        await c.next(Math.max(1, left));
        got.push(Date.now() - start);
      } catch {
        break;
      }
    }
  } finally {
    clearInterval(timer);
  }
  t.true(got.length >= 2, `pushes during the stream: ${got.join(',')}`);
  t.true(got[0]! <= 150 + 100, `first push after ${got[0]} ms`);
  t.true(got.length < i, `fewer pushes (${got.length}) than updates (${i})`);
  await c.drain(250);
  t.deepEqual(server.debugState().pendingChanges, {});
});

test.serial('two clients: only the on-demand subscriber of a resource receives it; wildcard receives all', async (t) => {
  const { store, server, connect } = await setup();
  const wild = connect();
  const od1 = connect(ON_DEMAND);
  const od2 = connect(ON_DEMAND);
  await wild.next();
  await od1.next();
  await od2.next();
  od1.send({ resourceNamesSubscribe: [`${NET}/10.0.0.1`] });
  t.deepEqual(names(await od1.next()), [uid('a')]);

  putAddress(store, workload('a', '10.0.0.1', { serviceAccount: 'z' }));
  t.deepEqual(names(await wild.next()), [uid('a')]);
  t.deepEqual(names(await od1.next()), [uid('a')]);
  t.deepEqual(await od2.drain(250), []);
  t.is(server.debugState().connections.length, 3);
  od2.close();
  await od2.drain(200);
  t.is(server.debugState().connections.length, 2);
});

test.serial('on-demand subscription to a service VIP gets the service and its workloads; pods joining later follow', async (t) => {
  const { store, server, connect } = await setup();
  putAddress(store, workload('web-1', '10.0.1.1', memberOf('web')));
  putAddress(store, workload('web-2', '10.0.1.2', memberOf('web')));
  putAddress(store, service('api', '10.96.0.11'));
  putAddress(store, workload('api-1', '10.0.2.1', memberOf('api')));
  const wild = connect();
  const od1 = connect(ON_DEMAND);
  const od2 = connect(ON_DEMAND);
  t.is((await wild.next()).resources.length, 7);
  await od1.next();
  await od2.next();

  // VIP -> the service plus its workloads (istiod's Lookup), each under its canonical name with its aliases.
  od1.send({ resourceNamesSubscribe: [`${NET}/10.96.0.10`] });
  const r1 = await od1.next();
  t.deepEqual(names(r1), [svcName('web'), uid('web-1'), uid('web-2')].sort());
  t.deepEqual(r1.removedResources, []);
  const aliasesOf = (r: DeltaDiscoveryResponse, n: string) => r.resources.find((x) => x.name === n)!.aliases;
  t.deepEqual(aliasesOf(r1, svcName('web')), [`${NET}/10.96.0.10`]);
  t.deepEqual(aliasesOf(r1, uid('web-1')), [`${NET}/10.0.1.1`]);
  // The client is now subscribed to those workloads by name (istiod: ResourceNames = subs + what was sent).
  t.deepEqual(server.debugState().connections.find((c) => c.types[ADDRESS_TYPE_URL]!.subscribed.length > 0)!.types[ADDRESS_TYPE_URL]!.subscribed, [
    `${NET}/10.96.0.10`, uid('web-1'), uid('web-2'),
  ].sort());
  od2.send({ resourceNamesSubscribe: [uid('a')] });
  t.deepEqual(names(await od2.next()), [uid('a')]);

  // A new pod of the service reaches the VIP subscriber (and the wildcard client), not the other on-demand client.
  putAddress(store, workload('web-3', '10.0.1.3', memberOf('web')));
  t.deepEqual(names(await od1.next()), [uid('web-3')]);
  t.deepEqual(names(await wild.next()), [uid('web-3')]);
  t.deepEqual(await od2.drain(200), []);

  // A pod of another service reaches only the wildcard client.
  putAddress(store, workload('api-2', '10.0.2.2', memberOf('api')));
  t.deepEqual(names(await wild.next()), [uid('api-2')]);
  t.deepEqual(await od1.drain(200), []);

  // An existing pod joining the service (a label change) is sent too; od2, which holds it, sees the update.
  putAddress(store, workload('a', '10.0.0.1', memberOf('web')));
  t.deepEqual(names(await od1.next()), [uid('a')]);
  t.deepEqual(names(await od2.next()), [uid('a')]);
  await wild.next();

  // A pod leaving the service stays subscribed, as with istiod: its update and later removal are pushed.
  putAddress(store, workload('web-1', '10.0.1.1'));
  const left = await od1.next();
  t.deepEqual(names(left), [uid('web-1')]);
  t.deepEqual(decodeAddr(left).workload?.services, {});
  store.delete(ADDRESS_TYPE_URL, uid('web-1'));
  t.deepEqual((await od1.next()).removedResources, [uid('web-1')]);
  t.deepEqual(await od2.drain(200), []);

  // A VIP subscribed before its service exists: the service comes later with its pods.
  od2.send({ resourceNamesSubscribe: [`${NET}/10.96.0.12`] });
  t.deepEqual((await od2.next()).removedResources, [`${NET}/10.96.0.12`]);
  store.batch(() => {
    putAddress(store, workload('late-1', '10.0.3.1', memberOf('late')));
    putAddress(store, service('late', '10.96.0.12'));
  });
  t.deepEqual(names(await od2.next()), [svcName('late'), uid('late-1')].sort());
  t.deepEqual(await od1.drain(200), []);
});

test('store: groups are indexed both ways and a change of groups alone is notified', (t) => {
  const store = new ResourceStore();
  const changes: string[][] = [];
  store.onChange((c) => changes.push([...c.names]));
  const body = new Uint8Array([1, 2, 3]);
  t.true(store.set(ADDRESS_TYPE_URL, 'w1', body, ['n/10.0.0.1'], ['s1', 's2']));
  t.true(store.set(ADDRESS_TYPE_URL, 'w2', body, ['n/10.0.0.2'], ['s1']));
  t.deepEqual(store.membersOf(ADDRESS_TYPE_URL, 's1').map((r) => r.name).sort(), ['w1', 'w2']);
  t.deepEqual([...store.groupsOf(ADDRESS_TYPE_URL, 'w1')], ['s1', 's2']);
  const v = store.get(ADDRESS_TYPE_URL, 'w1')!.version;
  t.false(store.set(ADDRESS_TYPE_URL, 'w1', body, ['n/10.0.0.1'], ['s2', 's1']), 'same groups in another order: no-op');
  t.true(store.set(ADDRESS_TYPE_URL, 'w1', body, ['n/10.0.0.1'], ['s2']));
  t.is(store.get(ADDRESS_TYPE_URL, 'w1')!.version, v, 'the version covers what clients see only');
  t.deepEqual(store.membersOf(ADDRESS_TYPE_URL, 's1').map((r) => r.name), ['w2']);
  store.delete(ADDRESS_TYPE_URL, 'w2');
  t.deepEqual(store.membersOf(ADDRESS_TYPE_URL, 's1'), []);
  t.deepEqual(changes, [['w1'], ['w2'], ['w1'], ['w2']]);
});

test('an authenticate hook decides per stream: refused streams end UNAUTHENTICATED, accepted ones are served', async (t) => {
  const seen: { token: string; localPort: number | undefined }[] = [];
  const { port } = await setup({
    authenticate: async ({ metadata, localPort }) => {
      const token = String(metadata.get('authorization')[0] ?? '');
      seen.push({ token, localPort });
      return token === 'Bearer good' ? undefined : 'no valid token';
    },
  });
  const call = (token?: string) => {
    const { client, stream } = openAds(port, token ? { authorization: token } : {});
    const outcome = new Promise<string>((resolve) => {
      stream.on('data', (r: DeltaDiscoveryResponse) => resolve(`data ${r.resources.length}`));
      stream.on('error', (e: grpc.ServiceError) => resolve(`error ${e.code} ${e.details}`));
    });
    stream.write({ typeUrl: ADDRESS_TYPE_URL });
    return outcome.finally(() => {
      stream.cancel();
      client.close();
    });
  };
  t.is(await call('Bearer bad'), `error ${grpc.status.UNAUTHENTICATED} no valid token`);
  t.is(await call(), `error ${grpc.status.UNAUTHENTICATED} no valid token`);
  t.is(await call('Bearer good'), 'data 3', 'the request sent before the decision is not lost');
  t.deepEqual(seen.map((s) => s.localPort), [port, port, port], 'the hook learns which listener the call came in on');
});
