// ztunnel's workload xDS client against a fake delta ADS server (grpc-js, in this process, on 127.0.0.1).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, AddressCodec, AuthorizationCodec, fromStruct, type MessageInit } from '../protos/index.js';
import type * as pb from '../protos/index.js';
import { AggregatedDiscoveryServiceDefinition, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type XdsResource } from '../protos/xds.js';
import { resolveAndRoute } from '../ztunnel/proxy/route.js';
import { ProxyState } from '../ztunnel/state/index.js';
import { XdsClient, type XdsClientOptions } from '../ztunnel/xds/client.js';

const log = pino({ level: 'silent' });
const v4 = (s: string) => Uint8Array.from(s.split('.').map(Number));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

type Call = grpc.ServerDuplexStream<DeltaDiscoveryRequest, Partial<DeltaDiscoveryResponse>>;

/** A fake control plane: records every request and header, lets the test push responses to the latest stream. */
class FakeAds {
  readonly requests: DeltaDiscoveryRequest[] = [];
  readonly headers: grpc.Metadata[] = [];
  streams = 0;
  private server?: grpc.Server;
  private call?: Call;
  private nonce = 0;
  port = 0;

  async start(port = 0): Promise<void> {
    const server = new grpc.Server();
    server.addService(AggregatedDiscoveryServiceDefinition as unknown as grpc.ServiceDefinition, {
      deltaAggregatedResources: (call: Call) => {
        this.streams++;
        this.call = call;
        this.headers.push(call.metadata);
        call.on('data', (r: DeltaDiscoveryRequest) => this.requests.push(r));
        call.on('error', () => {});
        call.on('end', () => call.end());
      },
    });
    this.port = await new Promise<number>((res, rej) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    this.server = server;
  }

  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
    this.call = undefined;
  }

  /** Push a response; returns its nonce. */
  push(typeUrl: string, resources: XdsResource[], removedResources: string[] = []): string {
    const nonce = `n${++this.nonce}`;
    if (!this.call) throw new Error('no stream');
    this.call.write({ typeUrl, resources, removedResources, nonce, systemVersionInfo: '' });
    return nonce;
  }

  /** The request answering a nonce (ACK or NACK). */
  reply(nonce: string): DeltaDiscoveryRequest | undefined {
    return this.requests.find((r) => r.responseNonce === nonce);
  }

  async waitReply(nonce: string): Promise<DeltaDiscoveryRequest> {
    await until(() => this.reply(nonce) !== undefined, `the reply to ${nonce}`);
    return this.reply(nonce)!;
  }
}

function workload(name: string, ip: Uint8Array, over: MessageInit<pb.Workload> = {}): MessageInit<pb.Workload> {
  return {
    uid: `Kubernetes//v1/Pod/shop/${name}`, name, namespace: 'shop', addresses: [ip], tunnelProtocol: 'NONE', serviceAccount: 'sa', status: 'HEALTHY',
    services: { 'shop/api.shop.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080 }] } }, ...over,
  };
}
const addrRes = (name: string, a: MessageInit<pb.Address>, version = 'v1'): XdsResource => ({
  name, version, aliases: [], resource: { type_url: ADDRESS_TYPE_URL, value: AddressCodec.encode(a) },
});
const wlRes = (name: string, ip: Uint8Array, version = 'v1') => addrRes(`Kubernetes//v1/Pod/shop/${name}`, { workload: workload(name, ip) }, version);
const svcRes = addrRes('shop/api.shop.svc.cluster.local', {
  service: { name: 'api', namespace: 'shop', hostname: 'api.shop.svc.cluster.local', addresses: [{ network: '', address: v4('10.96.0.10') }], ports: [{ servicePort: 80, targetPort: 8080 }] },
});
const polRes = (name: string): XdsResource => ({
  name: `shop/${name}`, version: 'p1', aliases: [],
  resource: { type_url: AUTHORIZATION_TYPE_URL, value: AuthorizationCodec.encode({ name, namespace: 'shop', scope: 'NAMESPACE', action: 'DENY', rules: [{ clauses: [{ matches: [{ destinationPorts: [9] }] }] }] }) },
});

async function setup(t: { teardown(fn: () => void): void }, over: Partial<XdsClientOptions> = {}) {
  const server = new FakeAds();
  await server.start();
  const state = new ProxyState();
  const dir = mkdtempSync(join(tmpdir(), 'xds-'));
  writeFileSync(join(dir, 'token'), 'secret-token\n');
  const client = new XdsClient(
    {
      address: `127.0.0.1:${server.port}`,
      node: { ip: '10.0.0.100', podName: 'ztunnel-abc', podNamespace: 'istio-system', nodeName: 'node-a', clusterId: 'Kubernetes' },
      tokenPath: join(dir, 'token'),
      onDemand: false,
      defaults: { trustDomain: 'cluster.local', clusterId: 'Kubernetes' },
      ...over,
    },
    state,
    log,
  );
  client.start();
  t.teardown(() => {
    client.close();
    server.stop();
  });
  await until(() => server.requests.length >= 2, 'the initial requests');
  return { server, state, client };
}

const initial = (s: FakeAds, typeUrl: string, from = 0) => s.requests.slice(from).find((r) => r.typeUrl === typeUrl && r.node);

test('wildcard: node id, metadata and headers; resources land in the state; ACKs carry the nonce; ready after both types', async (t) => {
  const { server, state, client } = await setup(t);
  const a = initial(server, ADDRESS_TYPE_URL)!;
  const p = initial(server, AUTHORIZATION_TYPE_URL)!;
  t.truthy(a && p);
  t.deepEqual(a.resourceNamesSubscribe, []);
  t.deepEqual(p.resourceNamesSubscribe, []);
  t.is(a.node!.id, 'ztunnel~10.0.0.100~ztunnel-abc.istio-system~istio-system.svc.cluster.local');
  t.like(fromStruct(a.node!.metadata!), { NAME: 'ztunnel-abc', NAMESPACE: 'istio-system', INSTANCE_IPS: '10.0.0.100', NODE_NAME: 'node-a', CLUSTER_ID: 'Kubernetes' });
  t.deepEqual(server.headers[0]!.get('authorization'), ['Bearer secret-token']);
  t.deepEqual(server.headers[0]!.get('clusterid'), ['Kubernetes']);
  t.false(client.ready());

  const n1 = server.push(ADDRESS_TYPE_URL, [wlRes('api-1', v4('10.0.0.1')), wlRes('api-2', v4('10.0.0.2')), svcRes]);
  const ack1 = await server.waitReply(n1);
  t.is(ack1.typeUrl, ADDRESS_TYPE_URL);
  t.falsy(ack1.errorDetail);
  t.is(state.workloads.size, 2);
  t.is(state.findDestination('', '10.0.0.1')?.kind, 'workload');
  t.is(state.findDestination('', '10.96.0.10')?.kind, 'service');
  t.is([...state.endpointsOf(state.services.get('shop/api.shop.svc.cluster.local')!)].length, 2);
  t.false(client.ready(), 'not ready before Authorization');

  const n2 = server.push(AUTHORIZATION_TYPE_URL, [polRes('deny-9')]);
  const ack2 = await server.waitReply(n2);
  t.falsy(ack2.errorDetail);
  t.is(state.policies.get('shop/deny-9')?.action, 'Deny');
  t.true(client.ready());
});

test('removed_resources remove workloads, services and policies', async (t) => {
  const { server, state } = await setup(t);
  await server.waitReply(server.push(ADDRESS_TYPE_URL, [wlRes('api-1', v4('10.0.0.1')), wlRes('api-2', v4('10.0.0.2')), svcRes]));
  await server.waitReply(server.push(AUTHORIZATION_TYPE_URL, [polRes('deny-9')]));
  let changes = 0;
  state.on('change', () => changes++);
  await server.waitReply(server.push(ADDRESS_TYPE_URL, [], ['Kubernetes//v1/Pod/shop/api-1']));
  t.is(changes, 1, 'one change per response');
  t.is(state.findDestination('', '10.0.0.1'), undefined);
  t.truthy(state.findDestination('', '10.0.0.2'));
  t.is([...state.endpointsOf(state.services.get('shop/api.shop.svc.cluster.local')!)].length, 1);
  await server.waitReply(server.push(ADDRESS_TYPE_URL, [], ['shop/api.shop.svc.cluster.local']));
  t.is(state.services.size, 0);
  await server.waitReply(server.push(AUTHORIZATION_TYPE_URL, [], ['shop/deny-9']));
  t.is(state.policies.size, 0);
});

test('an invalid resource NACKs the whole response with a reason; the previous state stays', async (t) => {
  const { server, state, client } = await setup(t);
  await server.waitReply(server.push(ADDRESS_TYPE_URL, [wlRes('api-1', v4('10.0.0.1'))]));
  const bad = addrRes('Kubernetes//v1/Pod/shop/bad', { workload: workload('bad', Uint8Array.from([10, 0, 0, 9, 9])) });
  const n = server.push(ADDRESS_TYPE_URL, [wlRes('api-1', v4('10.0.0.11'), 'v2'), wlRes('api-3', v4('10.0.0.3')), bad], ['Kubernetes//v1/Pod/shop/api-1']);
  const nack = await server.waitReply(n);
  t.is(nack.errorDetail?.code, 3);
  t.regex(nack.errorDetail!.message, /Kubernetes\/\/v1\/Pod\/shop\/bad: workload\.addresses\[0\]: an IP address has 4 or 16 bytes, got 5/);
  // Nothing of that response was applied: api-1 kept its old address and was not removed; api-3 did not arrive.
  t.deepEqual(state.workloads.get('Kubernetes//v1/Pod/shop/api-1')?.workloadIps, ['10.0.0.1']);
  t.is(state.workloads.size, 1);
  t.deepEqual(client.known(ADDRESS_TYPE_URL), { 'Kubernetes//v1/Pod/shop/api-1': 'v1' });
  // A bad policy is NACKed too, and readiness waits for an accepted one.
  const badPol: XdsResource = { name: 'shop/x', version: '1', aliases: [], resource: { type_url: AUTHORIZATION_TYPE_URL, value: AuthorizationCodec.encode({ name: 'x', namespace: 'shop', rules: [{ clauses: [{ matches: [{ destinationPorts: [70000] }] }] }] }) } };
  const n2 = server.push(AUTHORIZATION_TYPE_URL, [badPol]);
  t.regex((await server.waitReply(n2)).errorDetail!.message, /shop\/x: .*destinationPorts\[0\]: not a port: 70000/);
  t.false(client.ready());
  // The stream goes on: the next good response is applied and ACKed.
  const ok = await server.waitReply(server.push(ADDRESS_TYPE_URL, [wlRes('api-3', v4('10.0.0.3'))]));
  t.falsy(ok.errorDetail);
  t.is(state.workloads.size, 2);
});

test('server restart: the client reconnects with initial_resource_versions of what it has', async (t) => {
  const { server, state, client } = await setup(t);
  await server.waitReply(server.push(ADDRESS_TYPE_URL, [wlRes('api-1', v4('10.0.0.1'), 'v7'), svcRes]));
  await server.waitReply(server.push(AUTHORIZATION_TYPE_URL, [polRes('deny-9')]));
  const port = server.port;
  server.stop();
  await sleep(100);
  const before = server.requests.length;
  await server.start(port);
  await until(() => server.streams >= 2 && server.requests.length >= before + 2, 'the reconnect', 20_000);
  const a = initial(server, ADDRESS_TYPE_URL, before)!;
  const p = initial(server, AUTHORIZATION_TYPE_URL, before)!;
  t.deepEqual(a.initialResourceVersions, { 'Kubernetes//v1/Pod/shop/api-1': 'v7', 'shop/api.shop.svc.cluster.local': 'v1' });
  t.deepEqual(p.initialResourceVersions, { 'shop/deny-9': 'p1' });
  t.is(a.node!.id, 'ztunnel~10.0.0.100~ztunnel-abc.istio-system~istio-system.svc.cluster.local');
  // The state kept serving meanwhile, and readiness stayed.
  t.truthy(state.findDestination('', '10.0.0.1'));
  t.true(client.ready());
  // The new stream works: a delta after the reconnect is applied.
  await server.waitReply(server.push(ADDRESS_TYPE_URL, [], ['Kubernetes//v1/Pod/shop/api-1']));
  t.is(state.findDestination('', '10.0.0.1'), undefined);
});

test('on-demand: no address subscription at first; fetch subscribes to <network>/<ip> and holds until the answer', async (t) => {
  const { server, state, client } = await setup(t, { onDemand: true, onDemandTimeoutMs: 400 });
  state.resolver = client;
  const a = initial(server, ADDRESS_TYPE_URL)!;
  t.deepEqual(a.resourceNamesSubscribe, ['*']);
  t.deepEqual(a.resourceNamesUnsubscribe, ['*']);
  t.deepEqual(initial(server, AUTHORIZATION_TYPE_URL)!.resourceNamesSubscribe, [], 'Authorization stays wildcard');
  await server.waitReply(server.push(AUTHORIZATION_TYPE_URL, []));
  t.true(client.ready(), 'ready after Authorization alone');

  // A held route: resolves once the server answers (under the workload's uid, as the name it chooses).
  const started = Date.now();
  const routed = resolveAndRoute(state, '', '10.0.0.9', 80);
  await until(() => server.requests.some((r) => r.resourceNamesSubscribe.includes('/10.0.0.9')), 'the on-demand subscription');
  t.is(state.findDestination('', '10.0.0.9'), undefined);
  await sleep(50);
  server.push(ADDRESS_TYPE_URL, [{ ...wlRes('api-9', v4('10.0.0.9')), aliases: ['/10.0.0.9'] }]);
  const r = await routed;
  t.is(r.kind, 'tcp');
  t.true(Date.now() - started < 400, 'answered before the bounded wait');
  t.truthy(state.findDestination('', '10.0.0.9'));

  // Never answered: bounded wait, then passthrough.
  const t0 = Date.now();
  const r2 = await resolveAndRoute(state, '', '10.0.0.99', 80);
  t.is(r2.kind, 'passthrough');
  t.true(Date.now() - t0 >= 380, `waited ${Date.now() - t0} ms`);
  t.true(server.requests.some((r) => r.resourceNamesSubscribe.includes('/10.0.0.99')));

  // An answer that says "no such resource" (removed) ends the wait at once.
  const t1 = Date.now();
  const f = client.fetch('', '10.0.0.98');
  await until(() => server.requests.some((r) => r.resourceNamesSubscribe.includes('/10.0.0.98')), 'the subscription');
  server.push(ADDRESS_TYPE_URL, [], ['/10.0.0.98']);
  await f;
  t.true(Date.now() - t1 < 380);

  // Unused subscriptions are dropped, with what they brought.
  client.sweep(0);
  await until(() => server.requests.some((r) => r.resourceNamesUnsubscribe.includes('/10.0.0.9')), 'the unsubscribe');
  const unsub = server.requests.find((r) => r.resourceNamesUnsubscribe.includes('/10.0.0.9'))!;
  t.true(unsub.resourceNamesUnsubscribe.includes('Kubernetes//v1/Pod/shop/api-9'));
  t.is(state.findDestination('', '10.0.0.9'), undefined);
});

test('on-demand: pinned names are subscribed, and resubscribed with known versions after a reconnect', async (t) => {
  const { server, client } = await setup(t, { onDemand: true });
  client.pin('Kubernetes//v1/Pod/shop/me');
  await until(() => server.requests.some((r) => r.resourceNamesSubscribe.includes('Kubernetes//v1/Pod/shop/me')), 'the pin');
  await server.waitReply(server.push(ADDRESS_TYPE_URL, [wlRes('me', v4('10.0.0.50'))]));
  const port = server.port;
  server.stop();
  await sleep(50);
  const before = server.requests.length;
  await server.start(port);
  await until(() => server.requests.length >= before + 2, 'the reconnect', 20_000);
  const a = initial(server, ADDRESS_TYPE_URL, before)!;
  t.deepEqual(a.resourceNamesSubscribe, ['Kubernetes//v1/Pod/shop/me']);
  t.deepEqual(a.resourceNamesUnsubscribe, []);
  t.deepEqual(a.initialResourceVersions, { 'Kubernetes//v1/Pod/shop/me': 'v1' });
});
