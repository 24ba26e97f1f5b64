// End to end, shared (in-pod) mode: what ZDS and ztunnel's own lifecycle do to the pods it serves. Readiness
// before/after the first snapshot, NACKs for bad ZDS input, Del/Add of a pod, leaving and re-joining the mesh, a
// node agent reconnect, a ztunnel restart, and SIGTERM with a connection termination deadline. One cluster for the
// whole file; each test leaves it serving again (except the last, which stops node1's ztunnel for good). Every wait
// is bounded.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type net from 'node:net';
import { WorkloadRequestCodec } from '../protos/index.js';
import { exchange, holdOpen, httpIn, listenIn, type Exchange } from './lab/apps.js';
import { Cluster } from './lab/cluster.js';
import type { Netns } from './lab/netns.js';
import { ZdsServer } from './lab/zds-server.js';
import { eventually, ZtunnelProc } from './lab/ztunnel-proc.js';
import { echoes, sleep, within } from './lab/waits.js';
import { INPOD_CLUSTER, INPOD_VIP } from './lab/fixtures.js';

const VIP = INPOD_VIP;
const ID = { sleep: 'spiffe://cluster.local/ns/default/sa/sleep', echo: 'spiffe://cluster.local/ns/default/sa/echo' } as const;
const DEADLINE_MS = 3000;
const ENV = { CONNECTION_TERMINATION_DEADLINE: `${DEADLINE_MS / 1000}s` };

const cluster = new Cluster(INPOD_CLUSTER, { env: ENV });

/** The pods' apps: started once, never restarted; `conns` counts what each one accepted and from where. */
interface App {
  server: net.Server;
  conns: { remote?: string }[];
}
const apps = new Map<string, App>();
const sockets = new Set<net.Socket>();
/** Things a test started by hand, removed in after.always if the test did not get to it. */
const extraZtunnels: ZtunnelProc[] = [];
const extraZds: ZdsServer[] = [];

async function startApp(pod: string, port: number): Promise<void> {
  const app: App = { server: undefined as unknown as net.Server, conns: [] };
  app.server = await listenIn(cluster.pod(pod).ns, '0.0.0.0', port, (s) => {
    app.conns.push({ remote: s.remoteAddress });
    s.pipe(s);
  });
  apps.set(pod, app);
}

test.before(async () => {
  await cluster.start();
  for (const p of ['server-a', 'server-b']) await startApp(p, 8080);
  await startApp('plain-server', 9090);
});

test.after.always(async () => {
  for (const s of sockets) s.destroy();
  for (const z of extraZtunnels) await z.stop().catch(() => {});
  for (const z of extraZds) z.close();
  for (const a of apps.values()) a.server.close();
  await cluster.cleanup();
});

const ns = (pod: string) => cluster.pod(pod).ns;
const ip = (pod: string) => cluster.pod(pod).ip;
const tail = (z: ZtunnelProc) => `\n--- ${z.name} ztunnel log ---\n${z.log().slice(-3000)}`;

type Call = Exchange;

/** Connect from inside `from`, send `payload`, half-close, collect everything until the connection closes (bounded). */
const call = (from: Netns, host: string, port: number, payload: Buffer | string = Buffer.alloc(0), timeoutMs = 10_000): Promise<Call> =>
  exchange(from, host, port, payload, timeoutMs);

/** A round trip that must work: the echo comes back byte-exact. */
async function works(t: ExecutionContext, from: string, host: string, port: number, what = `${from} -> ${host}:${port}`): Promise<void> {
  const payload = randomBytes(3000);
  const r = await call(ns(from), host, port, payload);
  t.is(r.error, undefined, what);
  t.true(r.received.equals(payload), `${what}: ${r.received.length} of ${payload.length} bytes came back`);
}

/** A held-open client connection that records how it ended. */
interface Held {
  sock: net.Socket;
  /** The app's own address (src.addr in ztunnel's outbound log). */
  local: string;
  error?: string;
  endedAt?: number;
  /** Resolves when the peer ended it or it closed (whichever first): the connection is over for the app. */
  over: Promise<void>;
}

async function hold(from: string, host: string, port: number): Promise<Held> {
  const sock = await within(holdOpen(ns(from), host, port), 10_000, `connect ${from} -> ${host}:${port}`);
  sockets.add(sock);
  const h: Held = { sock, local: `${sock.localAddress}:${sock.localPort}`, over: Promise.resolve() };
  sock.on('error', (e) => (h.error ??= (e as NodeJS.ErrnoException).code ?? e.message));
  h.over = new Promise((resolve) => {
    const done = () => ((h.endedAt ??= Date.now()), resolve());
    sock.once('end', done);
    sock.once('close', done);
  });
  return h;
}

/**
 * The connection is over for the app: the other side ended or reset it without the app doing anything. With
 * `passive: false` the app only learns at its next write, which must fail (reset) rather than echo.
 */
async function broken(t: ExecutionContext, h: Held, what: string, passive = true): Promise<void> {
  if (!passive) await t.throwsAsync(echoes(h.sock, 'anyone there?', 5000), undefined, what);
  await within(h.over, 10_000, `${what}: connection closed`);
}

/** TCP ports listening in a namespace. */
function listening(n: Netns): number[] {
  const ports = n
    .exec('ss', '-Htln')
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[3])
    .filter((a): a is string => !!a)
    .map((a) => Number(a.slice(a.lastIndexOf(':') + 1)));
  return [...new Set(ports)].sort((a, b) => a - b);
}
const ztunnelPorts = (n: Netns) => listening(n).filter((p) => p === 15001 || p === 15006 || p === 15008);

const ready = async (node: string) => (await httpIn(cluster.node(node).ns, 'GET', 15021, '/healthz/ready').catch(() => undefined))?.status;

interface PodDump {
  uid: string;
  name: string;
  state: string;
}
const podsServed = async (node: string) =>
  ((JSON.parse((await httpIn(cluster.node(node).ns, 'GET', 15000, '/config_dump')).body) as { pods: PodDump[] }).pods)
    .map((p) => `${p.name}:${p.state}`)
    .sort();

// ---------------------------------------------------------------------------------------------------------------
// Readiness

test.serial('readiness: 503 until the first ZDS snapshot has been handled, then 200', async (t) => {
  const node = cluster.node('node2');
  await cluster.stopZtunnel('node2');
  // A ztunnel whose node agent is not there yet: the admin servers come up, the snapshot cannot.
  const path = join(cluster.lab.dir, 'node2-late.sock');
  const zt = new ZtunnelProc(node.ns, cluster.lab.dir, 'node2-late', {
    PROXY_MODE: 'shared', INPOD_UDS: path, LOCAL_XDS_PATH: cluster.configPath, LOCAL_CA_CERT: cluster.caCert, LOCAL_CA_KEY: cluster.caKey, NODE_NAME: 'node2', ...ENV,
  });
  extraZtunnels.push(zt);
  let zds: ZdsServer | undefined;
  try {
    await eventually(`readiness endpoint up${tail(zt)}`, async () => (await ready('node2')) === 503, 15_000);
    for (let i = 0; i < 5; i++) {
      await sleep(150);
      t.is(await ready('node2'), 503, 'not ready without a snapshot');
    }
    t.deepEqual(await podsServed('node2'), []);
    t.is(zt.lines('pod snapshot reconciled').length, 0);

    // The node agent appears with one pod in its snapshot.
    zds = new ZdsServer(path);
    extraZds.push(zds);
    const pod = cluster.pod('server-b');
    void zds.addPod({ uid: pod.uid, name: pod.name, namespace: pod.namespace, serviceAccount: pod.serviceAccount, netns: pod.ns });
    await within(zds.waitSynced(1, 15_000), 16_000, `snapshot acked${tail(zt)}`);
    await eventually('ready after the snapshot', async () => (await ready('node2')) === 200, 5000);
    t.deepEqual(await podsServed('node2'), ['server-b:Up']);
    const msgs = zt.lines().map((l) => l.msg);
    const order = ['ztunnel started; waiting for the pod snapshot', 'connected to the node agent (ZDS)', 'pod received, starting proxy', 'pod snapshot reconciled'].map((m) => msgs.indexOf(m));
    t.true(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)), `log order ${JSON.stringify(order)}`);
    t.is(zt.lines('pod snapshot reconciled')[0]!.pods, 1);
    t.true(zds.events.every((e) => e.outcome === 'ack' && e.error === ''), JSON.stringify(zds.events));
    await works(t, 'client', ip('server-b'), 8080, 'served by the late ztunnel');
  } finally {
    // Back to the cluster's own ztunnel and node agent, also when an assertion above failed.
    await zt.stop();
    zds?.close();
    await cluster.startZtunnel('node2');
  }
  await works(t, 'client', ip('server-b'), 8080, 'served by the cluster ztunnel again');
});

// ---------------------------------------------------------------------------------------------------------------
// Bad ZDS input

test.serial('ZDS: a malformed packet, an Add without a netns fd and an fd with a non-Add message get a NACK; ztunnel keeps serving', async (t) => {
  const zds = cluster.zds('node1');
  const zt = cluster.zt('node1');
  const conns = zds.connections;
  const client = cluster.pod('client');

  const garbage = await zds.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]));
  t.regex(garbage, /malformed/);
  const valid = WorkloadRequestCodec.encode({ payload: 'add', add: { uid: 'u-half', workloadInfo: { name: 'half', namespace: 'default', serviceAccount: 'x' } } });
  const truncated = await zds.sendRaw(valid.subarray(0, valid.length - 3));
  t.not(truncated, '', 'a truncated Add is refused');
  t.regex(await zds.sendRaw(Buffer.alloc(1, 0x08)), /./, 'a field without its value is refused');

  const ghost = { uid: 'Kubernetes//v1/Pod/default/ghost', workloadInfo: { name: 'ghost', namespace: 'default', serviceAccount: 'ghost' } };
  const noFd = await zds.request({ payload: 'add', add: ghost });
  t.regex(noFd, /without the pod's network namespace fd/);

  // A Del for a served pod with an fd attached: refused as a whole, so the pod stays served.
  const delWithFd = await zds.request({ payload: 'del', del: { uid: client.uid } }, ns('outsider').fd);
  t.regex(delWithFd, /file descriptor came with a non-Add message/);
  const keepWithFd = await zds.request({ payload: 'keep', keep: { uid: client.uid } }, ns('outsider').fd);
  t.regex(keepWithFd, /file descriptor came with a non-Add message/);
  const snapshotWithFd = await zds.request({ payload: 'snapshotSent', snapshotSent: {} }, ns('outsider').fd);
  t.regex(snapshotWithFd, /file descriptor came with a non-Add message/);

  t.log({ garbage, truncated, noFd, delWithFd });
  t.is(zt.lines('ZDS request failed').length >= 6, true, tail(zt));
  // Same connection, same process, same pods, still ready, still serving.
  t.true(zds.connected);
  t.is(zds.connections, conns, 'no reconnect');
  t.is(zt.child.exitCode, null);
  t.is(await ready('node1'), 200);
  t.deepEqual(await podsServed('node1'), ['client:Up', 'server-a:Up']);
  t.deepEqual(ztunnelPorts(ns('client')), [15001, 15006, 15008]);
  await works(t, 'client', ip('server-b'), 8080);
  await works(t, 'client', ip('server-a'), 8080);
  await works(t, 'outsider', ip('server-a'), 8080);
  // A good request on the same connection is still acked normally.
  t.is(await zds.request({ payload: 'del', del: { uid: 'Kubernetes//v1/Pod/default/never-added' } }), '');
});

// ---------------------------------------------------------------------------------------------------------------
// Del / Add

test.serial('ZDS Del closes the pod\'s connections and listeners at once; a later Add restores it without restarting the app', async (t) => {
  const pod = cluster.pod('server-b');
  const app = apps.get('server-b')!;
  const zt = cluster.zt('node2');
  const mesh = await hold('client', pod.ip, 8080);
  const plain = await hold('outsider', pod.ip, 8080);
  t.is(await echoes(mesh.sock, 'over hbone'), 'over hbone');
  t.is(await echoes(plain.sock, 'over 15006'), 'over 15006');
  t.deepEqual(ztunnelPorts(pod.ns), [15001, 15006, 15008]);

  t.is(await cluster.zds('node2').delPod(pod.uid), '');
  await broken(t, mesh, 'mesh connection after Del');
  await broken(t, plain, 'plaintext connection after Del');
  t.is(mesh.error, 'ECONNRESET', 'reset, not a clean end');
  t.is(plain.error, 'ECONNRESET', 'reset, not a clean end');
  t.deepEqual(ztunnelPorts(pod.ns), [], 'listeners closed');
  t.deepEqual(listening(pod.ns), [8080], 'the app itself still runs');
  t.deepEqual(await podsServed('node2'), []);
  t.is(zt.lines('pod deleted, draining its proxy').at(-1)?.uid, pod.uid);
  // The pod's redirection rules are still in place (Del only), so nothing reaches the app behind ztunnel's back.
  const viaMesh = await call(ns('client'), pod.ip, 8080, 'nobody home');
  t.is(viaMesh.received.length, 0);
  t.truthy(viaMesh.error, 'the client sees the failure');
  const direct = await call(ns('outsider'), pod.ip, 8080, 'nobody home');
  t.is(direct.received.length, 0);
  t.is(direct.error, 'ECONNREFUSED', 'redirected to 15006, where nothing listens');

  const connsBefore = app.conns.length;
  t.is(await cluster.enroll('server-b'), '', 'Add acked');
  t.deepEqual(ztunnelPorts(pod.ns), [15001, 15006, 15008]);
  t.deepEqual(await podsServed('node2'), ['server-b:Up']);
  await works(t, 'client', pod.ip, 8080, 'mesh after Add');
  await works(t, 'outsider', pod.ip, 8080, 'plaintext after Add');
  // The same app object served them, seeing the real clients.
  t.true(app.server.listening);
  t.deepEqual(app.conns.slice(connsBefore).map((c) => c.remote), [ip('client'), ip('outsider')]);
  t.is(zt.child.exitCode, null);
});

test.serial('a pod leaving the mesh (rules removed, Del) and joining again (rules, Add): mTLS, then plaintext, then mTLS', async (t) => {
  const held = await hold('client', ip('server-b'), 8080);
  t.is(await echoes(held.sock, 'in the mesh'), 'in the mesh');
  const inbound = async () => {
    const before = cluster.zt('node2').lines('connection complete').length;
    await works(t, 'client', ip('server-b'), 8080);
    // This call's line (works() sends 3000 bytes), not a late one of the connection reset at the Del.
    return eventually('node2 inbound line', () => cluster.zt('node2').lines('connection complete').slice(before).find((l) => l.direction === 'inbound' && l.bytes_recv === 3000));
  };
  t.is(await cluster.unenroll('client'), '');
  try {
    // ztunnel resets the connection on Del, but the rules are already gone by then (Istio's order), so that reset
    // cannot be translated back to the app's socket here: the app learns at its next write, which is reset.
    await broken(t, held, 'the client\'s connection when it left the mesh', false);
    t.regex(String(held.error), /ECONNRESET|EPIPE/);
    const closedByZtunnel = await eventually('node1 logs the close of the held connection', () =>
      cluster.zt('node1').lines('connection complete').find((l) => l['src.addr'] === held.local),
    );
    t.truthy(closedByZtunnel.error, 'ztunnel closed its side at the Del');
    t.deepEqual(ztunnelPorts(ns('client')), []);
    t.deepEqual(await podsServed('node1'), ['server-a:Up']);
    const plain = await inbound();
    t.is(plain['src.identity'], undefined, 'plaintext, received on 15006');
    t.is(plain['src.workload'], 'client');
  } finally {
    // Back in, also when an assertion above failed, so the next tests start from an enrolled client.
    t.is(await cluster.enroll('client'), '');
  }
  t.deepEqual(ztunnelPorts(ns('client')), [15001, 15006, 15008]);
  const mtls = await inbound();
  t.is(mtls['src.identity'], ID.sleep);
  t.is(mtls['dst.identity'], ID.echo);
});

// ---------------------------------------------------------------------------------------------------------------
// Node agent reconnect

test.serial('node agent reconnect: the new snapshot keeps the pods it names (their open connections survive) and drops the others', async (t) => {
  const zds = cluster.zds('node1');
  const zt = cluster.zt('node1');
  const { connections, snapshots } = zds;
  const kept = await hold('client', ip('server-b'), 8080);
  const dropped = await hold('outsider', ip('server-a'), 8080);
  t.is(await echoes(kept.sock, 'before'), 'before');
  t.is(await echoes(dropped.sock, 'before'), 'before');

  // The agent restarts and, meanwhile, forgets server-a (no Del is sent: nobody is connected to receive it).
  zds.disconnect();
  t.is(await zds.delPod(cluster.pod('server-a').uid), undefined);
  await zds.waitSynced(snapshots + 1);
  t.is(zds.connections, connections + 1);
  await eventually('ztunnel reconciled', () => zt.lines('pod snapshot reconciled').at(-1)?.pods === 1);

  t.is(await echoes(kept.sock, 'after the reconnect'), 'after the reconnect', 'a pod named again keeps its connections');
  t.is(kept.endedAt, undefined);
  await broken(t, dropped, 'connection to the pod the snapshot no longer names');
  t.deepEqual(ztunnelPorts(ns('client')), [15001, 15006, 15008]);
  t.deepEqual(ztunnelPorts(ns('server-a')), []);
  t.deepEqual(await podsServed('node1'), ['client:Up']);
  t.is(await ready('node1'), 200);

  t.is(await cluster.enroll('server-a'), '');
  await works(t, 'outsider', ip('server-a'), 8080);
  await works(t, 'client', ip('server-a'), 8080);
  kept.sock.end();
});

// ---------------------------------------------------------------------------------------------------------------
// ztunnel restart

test.serial('ztunnel restart: the node\'s pods lose their open connections, and get service back after the new snapshot, without a pod restart', async (t) => {
  const zds = cluster.zds('node1');
  const conns = zds.connections;
  const snapshots = zds.snapshots;
  const reconciled = cluster.zt('node1').lines('pod snapshot reconciled').length; // the restarted one appends to the same log
  const outbound = await hold('client', ip('server-b'), 8080);
  const inbound = await hold('outsider', ip('server-a'), 8080);
  t.is(await echoes(outbound.sock, 'before'), 'before');
  t.is(await echoes(inbound.sock, 'before'), 'before');
  const appA = apps.get('server-a')!;
  const connsA = appA.conns.length;

  await cluster.stopZtunnel('node1');
  // The kernel closes the dead process's sockets: the apps get an end of stream.
  await broken(t, outbound, 'outbound connection of a pod on the node');
  await broken(t, inbound, 'inbound connection to a pod on the node');
  // Meanwhile captured traffic has nowhere to go (it does not bypass the mesh).
  const down = await call(ns('client'), ip('server-b'), 8080, 'while down');
  t.is(down.error, 'ECONNREFUSED');
  t.is(down.received.length, 0);
  t.deepEqual(ztunnelPorts(ns('client')), []);

  const zt = await cluster.startZtunnel('node1'); // resolves once ready, i.e. after the snapshot
  t.is(zds.connections, conns + 1);
  t.true(zds.snapshots > snapshots);
  const after = zt.lines('pod snapshot reconciled');
  t.is(after.length, reconciled + 1);
  t.is(after.at(-1)!.pods, 2);
  t.deepEqual(ztunnelPorts(ns('client')), [15001, 15006, 15008]);
  await works(t, 'client', ip('server-b'), 8080);
  await works(t, 'client', ip('server-a'), 8080);
  await works(t, 'client', VIP.echo, 80);
  await works(t, 'outsider', ip('server-a'), 8080);
  t.true(appA.server.listening, 'the app was not restarted');
  t.true(appA.conns.length > connsA);
});

// ---------------------------------------------------------------------------------------------------------------
// SIGTERM (last: node1's ztunnel is gone afterwards)

test.serial('SIGTERM: open connections keep working until the deadline, new ones are refused, then exit 0', async (t) => {
  const zt = cluster.zt('node1');
  const held = await hold('client', ip('server-b'), 8080);
  t.is(await echoes(held.sock, 'before'), 'before');

  const t0 = Date.now();
  process.kill(zt.child.pid!, 'SIGTERM');
  const draining = await eventually(`draining log line${tail(zt)}`, () => zt.lines('draining')[0]);
  t.is(draining.reason, 'SIGTERM');
  t.is(draining.deadlineMs, DEADLINE_MS);
  t.true(Number(draining.open) >= 1);
  t.is(await ready('node1'), 503, 'not ready while draining');

  // New connections, outbound and inbound, are refused: the pod listeners are closed.
  const fresh = await call(ns('client'), ip('server-b'), 8080, 'too late');
  t.is(fresh.error, 'ECONNREFUSED');
  t.is(fresh.received.length, 0);
  const freshIn = await call(ns('outsider'), ip('server-a'), 8080, 'too late');
  t.is(freshIn.error, 'ECONNREFUSED');

  // The open one keeps flowing while the deadline has not passed.
  let i = 0;
  do {
    t.is(await echoes(held.sock, `draining ${i}`), `draining ${i}`);
    i++;
    await sleep(200);
  } while (Date.now() - t0 < DEADLINE_MS - 1000);
  t.log(`${i} round trips on the open connection during the drain`);
  t.is(zt.child.exitCode, null, 'still running while a connection is open');

  // At the deadline it is closed, and the process exits cleanly.
  await within(held.over, DEADLINE_MS + 5000, `connection closed at the deadline${tail(zt)}`);
  const elapsed = held.endedAt! - t0;
  t.log(`closed ${elapsed} ms after SIGTERM (${held.error ?? 'end'})`);
  t.true(elapsed >= DEADLINE_MS - 100, `closed after ${elapsed} ms, before the deadline`);
  t.true(elapsed < DEADLINE_MS + 4000, `closed after ${elapsed} ms`);
  const code = await within(zt.exited, 10_000, `exit after the drain${tail(zt)}`);
  t.is(code, 0);
  t.true(zt.lines('drain deadline reached; closing remaining connections').length >= 1);
  t.is(zt.lines('ztunnel stopped').length, 1);
  // The other node was not affected.
  t.is(cluster.zt('node2').child.exitCode, null);
  await works(t, 'outsider', ip('server-b'), 8080);
});
