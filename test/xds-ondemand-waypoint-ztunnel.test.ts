// End to end, dedicated mode over workload xDS on demand (XDS_ON_DEMAND): a connection to a VIP whose Service names a
// waypoint by hostname is held while ztunnel fetches the VIP, then the waypoint Service; it then arrives at the
// waypoint (the python3-h2 stand-in) as CONNECT VIP:port. A waypoint the control plane does not know refuses the
// connection. The control plane is a fake delta ADS server in this process that answers what is subscribed (a service
// with its workloads, as istiod does); each ztunnel reaches it at 127.0.0.1:15010 in its netns through a relay.
import net from 'node:net';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, AddressCodec, type MessageInit } from '../protos/index.js';
import type * as pb from '../protos/index.js';
import { AggregatedDiscoveryServiceDefinition, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type XdsResource } from '../protos/xds.js';
import { exchange, httpIn, listenIn } from './lab/apps.js';
import { DedicatedMesh, type HostSpec } from './lab/dedicated.js';
import { claimAddresses, WaypointStub } from './lab/waypoint-stub.js';
import { eventually } from './lab/ztunnel-proc.js';

const IP = { client: '10.200.0.11', server: '10.200.0.21', waypoint: '10.200.0.50', echoVip: '10.96.0.10', lostVip: '10.96.0.11', waypointVip: '10.96.0.50' } as const;
const ECHO = 'echo.default.svc.cluster.local';
const LOST = 'lost.default.svc.cluster.local';
const WAYPOINT = 'waypoint.default.svc.cluster.local';
const v4 = (s: string) => Uint8Array.from(s.split('.').map(Number));

type Stream = grpc.ServerDuplexStream<DeltaDiscoveryRequest, Partial<DeltaDiscoveryResponse>>;
/** An address resource under its name, with its `<network>/<ip>` aliases and the services it is an endpoint of. */
interface Entry { name: string; aliases: string[]; members?: string[]; res: XdsResource }

function entry(name: string, ips: string[], address: MessageInit<pb.Address>): Entry {
  const aliases = ips.map((ip) => `/${ip}`);
  return { name, aliases, res: { name, version: '1', aliases, resource: { type_url: ADDRESS_TYPE_URL, value: AddressCodec.encode(address) } } };
}
function pod(name: string, ip: string, sa: string, services: Record<string, number[]> = {}, tunnelProtocol: 'HBONE' | 'NONE' = 'HBONE'): Entry {
  const uid = `Kubernetes//v1/Pod/default/${name}`;
  const svc = Object.fromEntries(Object.entries(services).map(([k, ports]) => [k, { ports: ports.map((p) => ({ servicePort: p, targetPort: p })) }]));
  const e = entry(uid, [ip], { workload: { uid, name, namespace: 'default', addresses: [v4(ip)], tunnelProtocol, serviceAccount: sa, status: 'HEALTHY', services: svc } });
  return { ...e, members: Object.keys(services) };
}
function service(name: string, vip: string, ports: number[], waypoint?: string): Entry {
  const hostname = `${name}.default.svc.cluster.local`;
  return entry(`default/${hostname}`, [vip], {
    service: {
      name, namespace: 'default', hostname, addresses: [{ network: '', address: v4(vip) }], ports: ports.map((p) => ({ servicePort: p, targetPort: p === 80 ? 8080 : p })),
      ...(waypoint && { waypoint: { hostname: { namespace: 'default', hostname: waypoint }, hboneMtlsPort: 15008 } }),
    },
  });
}

const RESOURCES: Entry[] = [
  pod('client', IP.client, 'sleep'),
  pod('server', IP.server, 'echo', { [`default/${ECHO}`]: [80], [`default/${LOST}`]: [80] }),
  pod('waypoint-1', IP.waypoint, 'waypoint', { [`default/${WAYPOINT}`]: [15008] }, 'NONE'),
  service('echo', IP.echoVip, [80], WAYPOINT),
  service('lost', IP.lostVip, [80], 'missing.default.svc.cluster.local'),
  service('waypoint', IP.waypointVip, [15008]),
];

/** Answers each subscription with what it names (a service with its endpoints) and says "removed" for unknown names. */
class FakeControlPlane {
  readonly subscribed: string[] = [];
  readonly server = new grpc.Server();
  private nonce = 0;
  port = 0;

  async start(): Promise<void> {
    this.server.addService(AggregatedDiscoveryServiceDefinition as unknown as grpc.ServiceDefinition, {
      deltaAggregatedResources: (call: Stream) => {
        call.on('error', () => {});
        call.on('end', () => call.end());
        call.on('data', (r: DeltaDiscoveryRequest) => {
          if (r.responseNonce) return;
          if (r.typeUrl === AUTHORIZATION_TYPE_URL) return this.send(call, r.typeUrl, []);
          const names = r.resourceNamesSubscribe.filter((n) => n !== '*');
          this.subscribed.push(...names);
          const hits = RESOURCES.filter((e) => names.some((n) => n === e.name || e.aliases.includes(n)));
          const members = RESOURCES.filter((e) => e.members?.some((m) => hits.some((h) => h.name === m)));
          const missing = names.filter((n) => !hits.some((e) => n === e.name || e.aliases.includes(n)));
          this.send(call, r.typeUrl, [...new Set([...hits, ...members])].map((e) => e.res), missing);
        });
      },
    });
    this.port = await new Promise<number>((res, rej) => this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  }

  private send(call: Stream, typeUrl: string, resources: XdsResource[], removedResources: string[] = []): void {
    call.write({ typeUrl, resources, removedResources, nonce: `n${++this.nonce}`, systemVersionInfo: '' });
  }
}

const HOSTS: HostSpec[] = [
  { name: 'client', ips: [IP.client], mesh: { namespace: 'default', serviceAccount: 'sleep' } },
  { name: 'server', ips: [IP.server], mesh: { namespace: 'default', serviceAccount: 'echo' } },
  { name: 'waypoint', ips: [IP.waypoint] },
];

const cp = new FakeControlPlane();
const mesh = new DedicatedMesh();
const servers: net.Server[] = [];
let stub: WaypointStub | undefined;
let backendCalls = 0;

test.before(async () => {
  await cp.start();
  const started = mesh.start(HOSTS, {}, { LOCAL_XDS_PATH: '', XDS_ADDRESS: '127.0.0.1:15010', XDS_ON_DEMAND: 'true' });
  // The namespaces appear during start; relay each meshed one's 127.0.0.1:15010 to the control plane (ztunnel retries until then).
  for (const h of HOSTS.filter((x) => x.mesh)) {
    const ns = await eventually(`netns ${h.name}`, () => mesh.hosts.get(h.name));
    servers.push(await listenIn(ns, '127.0.0.1', 15010, (s) => {
      const up = net.connect(cp.port, '127.0.0.1');
      up.on('error', () => s.destroy());
      s.on('error', () => up.destroy());
      s.pipe(up).pipe(s);
    }));
  }
  await started;
  servers.push(await listenIn(mesh.host('server'), IP.server, 8080, (s) => (backendCalls++, s.resume(), s.end('backend'))));
  const wp = mesh.host('waypoint');
  claimAddresses(wp, [IP.echoVip, IP.lostVip]);
  for (const ip of [IP.echoVip, IP.lostVip]) servers.push(await listenIn(wp, ip, 80, (s) => (s.resume(), s.end(`waypoint tunnel to ${s.localAddress}:${s.localPort}`))));
  stub = await WaypointStub.start({
    ns: wp, ip: IP.waypoint, caCert: mesh.caCert, caKey: mesh.caKey, dir: mesh.lab.dir,
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'waypoint' },
  });
});

test.after.always(async () => {
  await stub?.stop();
  for (const s of servers) s.close();
  await mesh.cleanup();
  cp.server.forceShutdown();
});

test.serial('on demand: the VIP, then its waypoint Service are fetched; the connection arrives at the waypoint as CONNECT VIP:port', async (t) => {
  const r = await exchange(mesh.host('client'), IP.echoVip, 80, 'hello', 15_000);
  t.is(r.error, undefined);
  t.is(r.received.toString(), `waypoint tunnel to ${IP.echoVip}:80`);
  t.is(backendCalls, 0);
  t.true(cp.subscribed.includes(`/${IP.echoVip}`));
  t.true(cp.subscribed.includes(`default/${WAYPOINT}`), 'the waypoint Service by its name');
  const dump = JSON.parse((await httpIn(mesh.host('client'), 'GET', 15000, '/config_dump')).body) as { services: { hostname: string; waypoint?: unknown }[] };
  t.deepEqual(dump.services.find((s) => s.hostname === ECHO)?.waypoint, { destination: `default/${WAYPOINT}`, hboneMtlsPort: 15008 });
  t.truthy(dump.services.find((s) => s.hostname === WAYPOINT));
});

test.serial('on demand: a waypoint the control plane does not know refuses the connection', async (t) => {
  const r = await exchange(mesh.host('client'), IP.lostVip, 80, 'hello', 15_000);
  t.is(r.received.length, 0);
  t.truthy(r.error);
  t.is(backendCalls, 0);
  t.true(cp.subscribed.includes('default/missing.default.svc.cluster.local'));
  const line = await eventually('the refusal', () => mesh.zt('client').lines('connection failed').find((l) => l['src.addr'] === `${IP.client}:${r.localPort}`));
  t.is(line.error, 'waypoint default/missing.default.svc.cluster.local not found');
  t.is(line['dst.waypoint'], 'default/missing.default.svc.cluster.local');
});
