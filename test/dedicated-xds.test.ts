// End to end: real dedicated-mode ztunnel processes configured over workload xDS (XDS_ADDRESS) by a fake delta ADS
// server running in this process. Each ztunnel reaches it at 127.0.0.1:15010 inside its own netns (loopback is not
// captured), where a relay forwards to the server on this process's loopback.
import net from 'node:net';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, AddressCodec, AuthorizationCodec, type MessageInit } from '../protos/index.js';
import type * as pb from '../protos/index.js';
import { AggregatedDiscoveryServiceDefinition, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type XdsResource } from '../protos/xds.js';
import { echoServer, exchange, httpIn, listenIn } from './lab/apps.js';
import { DedicatedMesh, type HostSpec } from './lab/dedicated.js';
import { ID, IP } from './lab/fixtures.js';
import { eventually } from './lab/ztunnel-proc.js';

const v4 = (s: string) => Uint8Array.from(s.split('.').map(Number));
const ECHO = 'echo.default.svc.cluster.local';
const uid = (name: string) => `Kubernetes//v1/Pod/default/${name}`;

function wl(name: string, ip: string, sa: string, over: MessageInit<pb.Workload> = {}): { name: string; ips: string[]; res: XdsResource } {
  const w: MessageInit<pb.Workload> = {
    uid: uid(name), name, namespace: 'default', addresses: [v4(ip)], tunnelProtocol: 'HBONE', serviceAccount: sa, status: 'HEALTHY', ...over,
  };
  return { name: uid(name), ips: [`/${ip}`], res: { name: uid(name), version: '1', aliases: [], resource: { type_url: ADDRESS_TYPE_URL, value: AddressCodec.encode({ workload: w }) } } };
}

/** A fake control plane with a fixed set of resources: wildcard streams get all, on-demand ones what they name. */
class FakeControlPlane {
  readonly addresses = [
    wl('client', IP.client, 'sleep'),
    wl('server1', IP.server1, 'echo', { services: { [`default/${ECHO}`]: { ports: [{ servicePort: 80, targetPort: 8080 }] } } }),
    {
      name: `default/${ECHO}`, ips: [`/${IP.echoVip}`],
      res: {
        name: `default/${ECHO}`, version: '1', aliases: [],
        resource: { type_url: ADDRESS_TYPE_URL, value: AddressCodec.encode({ service: { name: 'echo', namespace: 'default', hostname: ECHO, addresses: [{ network: '', address: v4(IP.echoVip) }], ports: [{ servicePort: 80, targetPort: 8080 }] } }) },
      },
    },
  ];
  policies = new Map<string, XdsResource>();
  readonly streams = new Set<grpc.ServerDuplexStream<DeltaDiscoveryRequest, Partial<DeltaDiscoveryResponse>>>();
  readonly requests: DeltaDiscoveryRequest[] = [];
  private nonce = 0;
  readonly server = new grpc.Server();
  port = 0;

  async start(): Promise<void> {
    this.server.addService(AggregatedDiscoveryServiceDefinition as unknown as grpc.ServiceDefinition, {
      deltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, Partial<DeltaDiscoveryResponse>>) => {
        this.streams.add(call);
        call.on('error', () => {});
        call.on('end', () => (this.streams.delete(call), call.end()));
        call.on('data', (r: DeltaDiscoveryRequest) => {
          this.requests.push(r);
          if (r.responseNonce) return;
          const wildcard = r.node !== undefined && r.resourceNamesSubscribe.length === 0;
          if (r.typeUrl === AUTHORIZATION_TYPE_URL) return this.send(call, r.typeUrl, wildcard ? [...this.policies.values()] : []);
          const names = r.resourceNamesSubscribe.filter((n) => n !== '*');
          const hits = wildcard ? this.addresses : this.addresses.filter((a) => names.some((n) => n === a.name || a.ips.includes(n)));
          const missing = names.filter((n) => !this.addresses.some((a) => n === a.name || a.ips.includes(n)));
          if (wildcard || hits.length || missing.length || r.node) this.send(call, r.typeUrl, hits.map((a) => ({ ...a.res, aliases: a.ips })), missing);
        });
      },
    });
    this.port = await new Promise<number>((res, rej) => this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  }

  send(call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, Partial<DeltaDiscoveryResponse>>, typeUrl: string, resources: XdsResource[], removedResources: string[] = []): void {
    call.write({ typeUrl, resources, removedResources, nonce: `n${++this.nonce}`, systemVersionInfo: '' });
  }

  setPolicy(name: string, p: MessageInit<pb.Authorization> | undefined): void {
    const key = `default/${name}`;
    if (p) this.policies.set(key, { name: key, version: String(++this.nonce), aliases: [], resource: { type_url: AUTHORIZATION_TYPE_URL, value: AuthorizationCodec.encode(p) } });
    else this.policies.delete(key);
    for (const s of this.streams) this.send(s, AUTHORIZATION_TYPE_URL, p ? [this.policies.get(key)!] : [], p ? [] : [key]);
  }
}

const HOSTS: HostSpec[] = [
  { name: 'client', ips: [IP.client], mesh: { namespace: 'default', serviceAccount: 'sleep' } },
  { name: 'server1', ips: [IP.server1], mesh: { namespace: 'default', serviceAccount: 'echo' } },
];

for (const onDemand of [false, true]) {
  test.serial(`ztunnels configured over xDS${onDemand ? ' on demand' : ''} carry traffic over HBONE and enforce a pushed policy`, async (t) => {
    const cp = new FakeControlPlane();
    await cp.start();
    const mesh = new DedicatedMesh();
    const relays: net.Server[] = [];
    try {
      const started = mesh.start(HOSTS, {}, { LOCAL_XDS_PATH: '', XDS_ADDRESS: '127.0.0.1:15010', XDS_ON_DEMAND: String(onDemand), LOG_LEVEL: 'debug' });
      // The namespaces appear during start; relay each one's 127.0.0.1:15010 to the control plane (the ztunnel retries until then).
      for (const h of HOSTS) {
        const ns = await eventually(`netns ${h.name}`, () => mesh.hosts.get(h.name));
        relays.push(await listenIn(ns, '127.0.0.1', 15010, (s) => {
          const up = net.connect(cp.port, '127.0.0.1');
          up.on('error', () => s.destroy());
          s.on('error', () => up.destroy());
          s.pipe(up).pipe(s);
        }));
      }
      await started;
      relays.push(await echoServer(mesh.host('server1'), IP.server1, 8080));

      const dump = JSON.parse((await httpIn(mesh.host('client'), 'GET', 15000, '/config_dump')).body) as { workloads: { name: string }[]; services: unknown[] };
      if (onDemand) t.deepEqual(dump.workloads.map((w) => w.name), ['client'], 'on demand: only the pinned own workload at first');
      else t.deepEqual(dump.workloads.map((w) => w.name).sort(), ['client', 'server1']);

      // To the pod IP: on demand, the connection is held until the workload arrives, then routed over HBONE.
      const viaPod = await exchange(mesh.host('client'), IP.server1, 8080, Buffer.from('hello over xds'));
      t.is(viaPod.error, undefined);
      t.is(viaPod.received.toString(), 'hello over xds');
      const line = await eventually('client access log', () =>
        mesh.zt('client').lines('connection complete').find((l) => l['dst.addr'] === `${IP.server1}:8080` && l.direction === 'outbound'),
      );
      t.is(line['dst.identity'], ID.server);
      t.is(line['dst.hbone_addr'], `${IP.server1}:15008`);
      if (onDemand) t.true(cp.requests.some((r) => r.resourceNamesSubscribe.includes(`/${IP.server1}`)), 'subscribed to <network>/<ip>');

      // A DENY pushed over xDS is enforced by server1's ztunnel; removing it allows again.
      cp.setPolicy('deny-8080', { name: 'deny-8080', namespace: 'default', scope: 'NAMESPACE', action: 'DENY', rules: [{ clauses: [{ matches: [{ destinationPorts: [8080] }] }] }] });
      await eventually('denied', async () => (await exchange(mesh.host('client'), IP.server1, 8080, Buffer.from('x'))).received.length === 0);
      cp.setPolicy('deny-8080', undefined);
      await eventually('allowed again', async () => (await exchange(mesh.host('client'), IP.server1, 8080, Buffer.from('x'))).received.toString() === 'x');
      t.pass();
    } finally {
      for (const r of relays) r.close();
      await mesh.cleanup();
      cp.server.forceShutdown();
    }
  });
}
