// End to end, dedicated mode: ztunnel sends traffic through a waypoint. The waypoint pod is a stand-in (python3-h2's
// HBONE server with the waypoint identity's certificate, not captured, as waypoint pods are not); it tunnels each
// CONNECT to its :authority, which inside its namespace is a small app on that very address: what the app answers
// tells which address the CONNECT asked for. The real backend counts what reaches it.
import test from 'ava';
import type net from 'node:net';
import { exchange, listenIn } from './lab/apps.js';
import { DedicatedMesh, type HostSpec } from './lab/dedicated.js';
import { claimAddresses, WaypointStub } from './lab/waypoint-stub.js';
import { eventually } from './lab/ztunnel-proc.js';

const IP = { client: '10.200.0.11', server: '10.200.0.21', waypoint: '10.200.0.50', echoVip: '10.96.0.10', waypointVip: '10.96.0.50' } as const;
const ECHO_HOST = 'echo.default.svc.cluster.local';
const WAYPOINT_HOST = 'waypoint.default.svc.cluster.local';
const ID = { client: 'spiffe://cluster.local/ns/default/sa/sleep', waypoint: 'spiffe://cluster.local/ns/default/sa/waypoint' };

const HOSTS: HostSpec[] = [
  { name: 'client', ips: [IP.client], mesh: { namespace: 'default', serviceAccount: 'sleep' } },
  { name: 'server', ips: [IP.server], mesh: { namespace: 'default', serviceAccount: 'echo' } },
  // Waypoint pods are never captured: no ztunnel, no redirection there.
  { name: 'waypoint', ips: [IP.waypoint] },
];

interface Options {
  /** The echo service's waypoint (Istio's local-config shape); none when undefined. */
  serviceWaypoint?: Record<string, unknown>;
  /** The echo pod's own waypoint. */
  podWaypoint?: Record<string, unknown>;
  /** The waypoint pod: absent, or its status and service account. */
  waypointPod?: { status: 'Healthy' | 'Unhealthy'; serviceAccount?: string };
  waypointService?: boolean;
}

const BY_HOSTNAME = { destination: `default/${WAYPOINT_HOST}`, hboneMtlsPort: 15008 };
const BY_VIP = { destination: `/${IP.waypointVip}`, hboneMtlsPort: 15008 };

function config(o: Options): unknown {
  return {
    workloads: [
      { name: 'client', namespace: 'default', serviceAccount: 'sleep', workloadIps: [IP.client], protocol: 'HBONE' },
      {
        name: 'server', namespace: 'default', serviceAccount: 'echo', workloadIps: [IP.server], protocol: 'HBONE',
        services: { [`default/${ECHO_HOST}`]: { 80: 8080 } }, ...(o.podWaypoint && { waypoint: o.podWaypoint }),
      },
      ...(o.waypointPod
        ? [{
            name: 'waypoint-1', namespace: 'default', serviceAccount: o.waypointPod.serviceAccount ?? 'waypoint', workloadIps: [IP.waypoint],
            protocol: 'TCP', status: o.waypointPod.status, services: { [`default/${WAYPOINT_HOST}`]: { 15008: 15008, 15021: 15021 } },
          }]
        : []),
    ],
    services: [
      { name: 'echo', namespace: 'default', hostname: ECHO_HOST, vips: [`/${IP.echoVip}`], ports: { 80: 8080 }, ...(o.serviceWaypoint && { waypoint: o.serviceWaypoint }) },
      ...(o.waypointService === false ? [] : [{ name: 'waypoint', namespace: 'default', hostname: WAYPOINT_HOST, vips: [`/${IP.waypointVip}`], ports: { 15008: 15008, 15021: 15021 } }]),
    ],
    policies: [],
  };
}

const HEALTHY: Options = { serviceWaypoint: BY_HOSTNAME, waypointPod: { status: 'Healthy' } };

const mesh = new DedicatedMesh();
const servers: net.Server[] = [];
let stub: WaypointStub | undefined;
let backendCalls = 0;

test.before(async () => {
  await mesh.start(HOSTS, config(HEALTHY));
  servers.push(await listenIn(mesh.host('server'), IP.server, 8080, (s) => (backendCalls++, s.resume(), s.end('backend'))));
  const wp = mesh.host('waypoint');
  // What the stub's tunnels reach: an app on the VIP and on the pod IP, inside the waypoint's namespace.
  claimAddresses(wp, [IP.echoVip, IP.server]);
  for (const [ip, port] of [[IP.echoVip, 80], [IP.server, 8080]] as const) {
    servers.push(await listenIn(wp, ip, port, (s) => (s.resume(), s.end(`waypoint tunnel to ${s.localAddress}:${s.localPort}`))));
  }
  stub = await WaypointStub.start({
    ns: wp, ip: IP.waypoint, caCert: mesh.caCert, caKey: mesh.caKey, dir: mesh.lab.dir,
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'waypoint' },
  });
});

test.after.always(async () => {
  await stub?.stop();
  for (const s of servers) s.close();
  await mesh.cleanup();
});

let applied = JSON.stringify(config(HEALTHY));

/** Apply a config and wait until both ztunnels have reloaded it (an unchanged file is not reloaded). */
async function apply(o: Options): Promise<void> {
  const text = JSON.stringify(config(o));
  if (text === applied) return;
  applied = text;
  const zs = [...mesh.ztunnels.values()];
  const before = zs.map((z) => z.lines('local config reloaded').length);
  mesh.writeConfig(config(o));
  await eventually('both ztunnels reloaded', () => zs.every((z, i) => z.lines('local config reloaded').length > before[i]!));
}

const call = async (ip: string, port: number) => exchange(mesh.host('client'), ip, port, 'hello', 15_000);
const answer = async (ip: string, port: number) => (await call(ip, port)).received.toString();

/** The client ztunnel's access-log line of a given message for a client port. */
const clientLine = (msg: string, localPort: number | undefined) =>
  eventually(`${msg} for client port ${localPort}`, () => mesh.zt('client').lines(msg).find((l) => l['src.addr'] === `${IP.client}:${localPort}`));

test.serial('a connection to a VIP whose service has a waypoint arrives at the waypoint as CONNECT VIP:port, from the client identity', async (t) => {
  await apply(HEALTHY);
  const before = backendCalls;
  const peers = stub!.peers().length;
  const r = await call(IP.echoVip, 80);
  t.is(r.error, undefined);
  t.is(r.received.toString(), `waypoint tunnel to ${IP.echoVip}:80`);
  t.is(backendCalls, before, 'nothing went around the waypoint');
  t.deepEqual(stub!.peers().slice(peers), [ID.client], 'one HBONE connection, with the client workload certificate');
  const line = await clientLine('connection complete', r.localPort);
  t.like(line, {
    'dst.addr': `${IP.echoVip}:80`, 'dst.hbone_addr': `${IP.waypoint}:15008`, 'dst.waypoint': `default/${WAYPOINT_HOST}`,
    'dst.service': ECHO_HOST, 'dst.workload': 'waypoint-1', 'dst.identity': ID.waypoint, 'src.identity': ID.client,
  });
  // The waypoint named by its VIP instead of its hostname: the same path.
  await apply({ ...HEALTHY, serviceWaypoint: BY_VIP });
  t.is(await answer(IP.echoVip, 80), `waypoint tunnel to ${IP.echoVip}:80`);
  t.is(backendCalls, before);
});

test.serial('a pod IP whose workload has a waypoint goes through it as CONNECT podIP:port; via the service it goes direct', async (t) => {
  await apply({ waypointPod: { status: 'Healthy' }, podWaypoint: BY_VIP });
  const before = backendCalls;
  t.is(await answer(IP.server, 8080), `waypoint tunnel to ${IP.server}:8080`);
  t.is(backendCalls, before);
  // Service-addressed, and the service has no waypoint: the pod's own waypoint does not apply.
  t.is(await answer(IP.echoVip, 80), 'backend');
  t.is(backendCalls, before + 1);
  // Without any waypoint the pod IP goes direct too.
  await apply({ waypointPod: { status: 'Healthy' } });
  t.is(await answer(IP.server, 8080), 'backend');
});

test.serial('a waypoint without a healthy endpoint, or unknown, refuses the connection and nothing reaches the backend', async (t) => {
  const cases: [string, Options, RegExp][] = [
    ['waypoint pod unhealthy', { serviceWaypoint: BY_HOSTNAME, waypointPod: { status: 'Unhealthy' } }, /no healthy endpoint for waypoint\.default\.svc\.cluster\.local:15008/],
    ['waypoint pod gone', { serviceWaypoint: BY_HOSTNAME }, /no healthy endpoint/],
    ['waypoint service gone', { serviceWaypoint: BY_HOSTNAME, waypointService: false }, /waypoint default\/waypoint\.default\.svc\.cluster\.local not found/],
    ['pod waypoint gone', { podWaypoint: BY_VIP, waypointService: false }, /waypoint \/10\.96\.0\.50 not found/],
  ];
  for (const [what, o, reason] of cases) {
    await apply(o);
    const before = backendCalls;
    const failedBefore = mesh.zt('client').lines('connection failed').length;
    const r = await call(o.podWaypoint ? IP.server : IP.echoVip, o.podWaypoint ? 8080 : 80);
    t.is(r.received.length, 0, what);
    t.truthy(r.error, `${what}: the connection is refused`);
    t.is(backendCalls, before, `${what}: not sent around the waypoint`);
    // The reset can beat the client's connect completion, leaving no local port to match the line by: take the new one.
    const line = await eventually(`${what}: connection failed line`, () => mesh.zt('client').lines('connection failed')[failedBefore]);
    t.regex(String(line.error), reason, what);
    t.is(line['dst.waypoint'], o.podWaypoint ? `/${IP.waypointVip}` : `default/${WAYPOINT_HOST}`, what);
  }
  // Healthy again: through the waypoint once more.
  await apply(HEALTHY);
  t.is(await answer(IP.echoVip, 80), `waypoint tunnel to ${IP.echoVip}:80`);
});

test.serial('a waypoint pod that presents another identity than its workload is not used', async (t) => {
  await apply({ ...HEALTHY, waypointPod: { status: 'Healthy', serviceAccount: 'not-the-waypoint' } });
  const before = backendCalls;
  const r = await call(IP.echoVip, 80);
  t.is(r.received.length, 0);
  t.is(backendCalls, before);
  const line = await clientLine('connection complete', r.localPort);
  t.regex(String(line.error), /server identity spiffe:\/\/cluster\.local\/ns\/default\/sa\/waypoint is not one of .*sa\/not-the-waypoint/);
  await apply(HEALTHY);
});
