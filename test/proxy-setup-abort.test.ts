// End to end, dedicated mode: a connection that ztunnel closes (policy change, drain) while its tunnel is still being
// opened must still end: its tracker entry goes away, the app socket is closed, and the access log line and the
// closed counter come once. The tunnel is held in setup by a peer that never answers: the server's app port drops
// ztunnel's SYNs (inbound), or an HBONE destination accepts TCP but never answers TLS (outbound). The last test drives
// the connection object on loopback: a tunnel answered after its connection was closed.
import test from 'ava';
import http2 from 'node:http2';
import net from 'node:net';
import { pino } from 'pino';
import { DownstreamConnection } from '../ztunnel/proxy/connections.js';
import { ConnectionTracker } from '../ztunnel/proxy/tracker.js';
import { ConnectionTelemetry } from '../ztunnel/telemetry/connection.js';
import { Metrics, trafficLabels } from '../ztunnel/telemetry/metrics.js';
import { holdOpen, httpIn, listenIn } from './lab/apps.js';
import { DedicatedMesh } from './lab/dedicated.js';
import { counter, HOSTS, ID, IP, meshConfig } from './lab/fixtures.js';
import { within } from './lab/waits.js';
import { eventually, type ZtunnelProc } from './lab/ztunnel-proc.js';

/** server1's app port where ztunnel's connect hangs (its SYNs are dropped). */
const STUCK_PORT = 7441;
/** An HBONE workload whose 15008 accepts TCP and then says nothing. */
const SINK_IP = '10.200.0.98';
const SINK = { name: 'sink', namespace: 'default', serviceAccount: 'sink', workloadIps: [SINK_IP], protocol: 'HBONE' };

const mesh = new DedicatedMesh();
const handles: (net.Server | net.Socket)[] = [];

test.before(async () => {
  await mesh.start(
    [...HOSTS.filter((h) => ['client', 'server1', 'tester'].includes(h.name)), { name: 'sink', ips: [SINK_IP] }],
    meshConfig({ extraWorkloads: [SINK] }),
    { CONNECTION_TERMINATION_DEADLINE: '2s' },
  );
  // Only ztunnel's own (marked) connection attempts to the app port are dropped; the app side is never touched.
  mesh.host('server1').iptables(`*filter\n-A OUTPUT -p tcp --dport ${STUCK_PORT} --syn -m mark --mark 0x539/0xfff -j DROP\nCOMMIT\n`);
  handles.push(await listenIn(mesh.host('sink'), SINK_IP, 15008, (s) => void handles.push(s)));
});

test.after.always(async () => {
  for (const h of handles.splice(0)) 'destroy' in h ? h.destroy() : h.close();
  await mesh.cleanup();
});

const tail = (zt: ZtunnelProc) => `\n--- ${zt.name} log ---\n${zt.log().slice(-3000)}`;

let policiesNow = '[]';

/** Set the policies and wait until server1 (the one enforcing them here) has reloaded (ztunnel skips an unchanged file). */
async function setPolicies(policies: unknown[]): Promise<void> {
  if (JSON.stringify(policies) === policiesNow) return;
  const before = mesh.zt('server1').lines('local config reloaded').length;
  mesh.writeConfig(meshConfig({ extraWorkloads: [SINK], policies }));
  await eventually('server1 reloaded', () => mesh.zt('server1').lines('local config reloaded').length > before);
  policiesNow = JSON.stringify(policies);
}

const DENY_STUCK = { name: 'deny-stuck', namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [[[{ destinationPorts: [STUCK_PORT] }]]] };

/** An app connection held open by the test (closed again at the end, pass or fail); `closed` resolves on its close. */
async function appConnection(ns: string, ip: string, port: number): Promise<{ sock: net.Socket; closed: Promise<void> }> {
  const sock = await within(holdOpen(mesh.host(ns), ip, port), 10_000, `connect to ${ip}:${port}`);
  handles.push(sock);
  sock.on('error', () => {});
  return { sock, closed: new Promise((resolve) => sock.once('close', () => resolve())) };
}

/** Opened and closed connection counters of one ztunnel, for the series that match `labels`. */
async function counts(host: string, labels: Record<string, string>): Promise<{ opened: number; closed: number }> {
  const text = (await httpIn(mesh.host(host), 'GET', 15020, '/metrics')).body;
  return { opened: counter(text, 'istio_tcp_connections_opened_total', labels), closed: counter(text, 'istio_tcp_connections_closed_total', labels) };
}

/** server1's ztunnel's connection attempts to the stuck app port (each stays in SYN-SENT until the kernel gives up). */
const appConnectsInFlight = () =>
  mesh.host('server1').exec('ss', '-Htn', 'state', 'syn-sent', 'dst', `${IP.server1}:${STUCK_PORT}`).split('\n').filter(Boolean).length;

const PLAIN_IN = { reporter: 'destination', destination_workload: 'server1', connection_security_policy: 'unknown' };
const HBONE_IN = { reporter: 'destination', destination_workload: 'server1', connection_security_policy: 'mutual_tls' };
const HBONE_OUT = { reporter: 'source', destination_workload: 'server1', connection_security_policy: 'mutual_tls' };

test.serial('inbound plaintext: a policy change while the app is being connected ends the connection once', async (t) => {
  await setPolicies([]);
  const before = await counts('server1', PLAIN_IN);
  const connectingBefore = appConnectsInFlight();
  const app = await appConnection('tester', IP.server1, STUCK_PORT);
  const srcAddr = `${IP.tester}:${app.sock.localPort}`;
  await eventually('server1 connecting to the app', () => appConnectsInFlight() > connectingBefore);

  await setPolicies([DENY_STUCK]);
  await within(app.closed, 10_000, `app socket closed by the policy change${tail(mesh.zt('server1'))}`);
  const after = await eventually('closed counter', async () => {
    const c = await counts('server1', PLAIN_IN);
    return c.closed > before.closed && c;
  }).catch(() => counts('server1', PLAIN_IN));
  t.is(after.opened - before.opened, 1);
  t.is(after.closed - before.closed, 1, `the connection was never finished${tail(mesh.zt('server1'))}`);
  // The access-log line is held for up to 100 ms (telemetry/log.ts), so it may go out after the counters were read.
  const lines = await eventually('its access-log line', () => {
    const l = mesh.zt('server1').lines('connection complete').filter((x) => x['src.addr'] === srcAddr);
    return l.length > 0 && l;
  }).catch(() => []);
  t.is(lines.length, 1);
  t.regex(String(lines[0]?.error), /policy re-check/);
});

test.serial('inbound HBONE: a policy change while the app is being connected resets the tunnel on both sides', async (t) => {
  await setPolicies([]);
  const [inBefore, outBefore] = [await counts('server1', HBONE_IN), await counts('client', HBONE_OUT)];
  const connectingBefore = appConnectsInFlight();
  const app = await appConnection('client', IP.server1, STUCK_PORT);
  await eventually('server1 connecting to the app', () => appConnectsInFlight() > connectingBefore);

  await setPolicies([DENY_STUCK]);
  // server1 resets the stream, so the client's ztunnel gives up on the tunnel and closes the app's socket.
  await within(app.closed, 10_000, `app socket closed by the policy change${tail(mesh.zt('server1'))}`);
  const settled = async () => {
    const [i, o] = [await counts('server1', HBONE_IN), await counts('client', HBONE_OUT)];
    return i.closed > inBefore.closed && o.closed > outBefore.closed && { i, o };
  };
  const { i, o } = await eventually('closed counters', settled).catch(async () => ({ i: await counts('server1', HBONE_IN), o: await counts('client', HBONE_OUT) }));
  t.deepEqual([i.opened - inBefore.opened, i.closed - inBefore.closed], [1, 1], 'server1 (destination)');
  t.deepEqual([o.opened - outBefore.opened, o.closed - outBefore.closed], [1, 1], 'client (source)');
  const inbound = await eventually('its access-log line', () => {
    const l = mesh.zt('server1').lines('connection complete').filter((x) => x.direction === 'inbound' && x['dst.addr'] === `${IP.server1}:${STUCK_PORT}` && x['src.identity'] === ID.client);
    return l.length > 0 && l;
  }).catch(() => []);
  t.is(inbound.length, 1);
  t.regex(String(inbound[0]?.error), /policy re-check/);
});

test.serial('outbound: a drain while the HBONE tunnel is still being opened closes the app socket and finishes the connection', async (t) => {
  const zt = mesh.zt('client');
  const app = await appConnection('client', SINK_IP, 8080);
  const srcAddr = `${IP.client}:${app.sock.localPort}`;
  // The tunnel is stuck in its TLS handshake: the sink took the TCP connection and says nothing.
  await eventually('sink reached', () => handles.some((h) => 'remoteAddress' in h && h.remoteAddress === IP.client && h.localPort === 15008));

  await httpIn(mesh.host('client'), 'POST', 15000, '/quitquitquit');
  t.true(Number((await eventually('draining log line', () => zt.lines('draining')[0])).open) >= 1, 'the connection in setup counts as open');
  await within(app.closed, 15_000, `app socket closed at the drain deadline${tail(zt)}`);
  t.is(await within(zt.exited, 15_000, `client ztunnel exit${tail(zt)}`), 0);
  const lines = zt.lines('connection complete').filter((l) => l['src.addr'] === srcAddr);
  t.is(lines.length, 1, `one access log line for the connection: ${JSON.stringify(lines)}${tail(zt)}`);
  t.is(lines[0]?.['dst.workload'], 'sink');
  t.is(lines[0]?.error, 'proxy closed');
});

test.serial('after those aborts nothing is left open: server1 drains at once', async (t) => {
  const zt = mesh.zt('server1');
  await httpIn(mesh.host('server1'), 'POST', 15000, '/quitquitquit');
  t.is(await within(zt.exited, 15_000, `server1 ztunnel exit${tail(zt)}`), 0);
  t.is(zt.lines('draining')[0]?.open, 0, tail(zt));
  t.is(zt.lines('drain deadline reached; closing remaining connections').length, 0);
});

test.serial('a CONNECT answered after its connection was closed is reset, and the connection ends once', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  const metrics = new Metrics();
  const h2 = http2.createServer();
  const answered = new Promise<http2.ServerHttp2Stream>((resolve) => h2.on('stream', (s) => (s.on('error', () => {}), s.respond({ ':status': 200 }), resolve(s))));
  const tcp = net.createServer((s) => s.on('error', () => {}));
  const open: { destroy(): void }[] = [];
  try {
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<net.Socket>((resolve) => tcp.once('connection', resolve));
    const app = net.connect((tcp.address() as net.AddressInfo).port, '127.0.0.1');
    app.on('error', () => {});
    open.push(app);
    const appClosed = new Promise<void>((resolve) => app.once('close', () => resolve()));
    const down = await within(accepted, 5000, 'app connection');
    const tracker = new ConnectionTracker();
    const telemetry = new ConnectionTelemetry(
      log, metrics, { direction: 'outbound', srcIp: '127.0.0.1', srcPort: app.localPort!, dstIp: '127.0.0.1', dstPort: 8080 },
      trafficLabels({ reporter: 'source', src: {}, dst: {}, mtls: true }),
    );
    const conn = new DownstreamConnection(tracker, telemetry, down);
    const session = http2.connect(`http://127.0.0.1:${(h2.address() as net.AddressInfo).port}`);
    open.push(session);
    session.on('error', () => {});
    const upstream = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:8080' }, { endStream: false });
    // As the pool hands it over: answered 200, no error listener of its own any more.
    await within(new Promise((resolve) => upstream.once('response', resolve)), 5000, 'CONNECT response');

    conn.close('proxy closed'); // drain or pod removal while the tunnel was being opened
    t.is(tracker.size, 0);
    conn.start(upstream); // the answer arrives afterwards
    const serverStream = await answered;
    await within(new Promise((resolve) => (serverStream.closed ? resolve(undefined) : serverStream.once('close', resolve))), 5000, 'tunnel reset');
    t.is(serverStream.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR, 'the peer sees a reset, not a clean end');
    await within(appClosed, 5000, 'app socket closed');
    const complete = lines.filter((l) => l.msg === 'connection complete');
    t.is(complete.length, 1);
    t.is(complete[0]?.error, 'proxy closed');
    t.regex(await metrics.registry.metrics(), /istio_tcp_connections_closed_total\{[^}]*\} 1\n/);
  } finally {
    for (const o of open) o.destroy();
    h2.close();
    tcp.close();
  }
});
