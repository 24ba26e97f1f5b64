// End to end, dedicated mode: ztunnel's lifecycle (drain, deadline, admin quit, start-up failures, config reloads, log level).
// Every test gets its own small mesh, because most of them stop a ztunnel; every wait is bounded.
import test from 'ava';
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import net from 'node:net';
import { connectTcp } from '../ztunnel/native/index.js';
import { echoServer, exchange, holdOpen, httpIn, listenIn } from './lab/apps.js';
import { DEDICATED_RULES, DedicatedMesh, type HostSpec } from './lab/dedicated.js';
import { counter, HOSTS, IP, meshConfig } from './lab/fixtures.js';
import type { Netns } from './lab/netns.js';
import { eventually, ZTUNNEL_MAIN, ZtunnelProc } from './lab/ztunnel-proc.js';
import { echoes, sleep, within } from './lab/waits.js';

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/** A mesh plus the app sockets a test opened in it; everything is closed by dispose(). */
class Scope {
  readonly mesh = new DedicatedMesh();
  private readonly handles: (net.Server | net.Socket)[] = [];

  track<T extends net.Server | net.Socket>(h: T): T {
    this.handles.push(h);
    return h;
  }

  /** Start client and server1 with an echo server on server1:8080; the client's host and its ztunnel. */
  async clientAndEcho(env: Record<string, string> = {}): Promise<{ client: Netns; zt: ZtunnelProc }> {
    await this.mesh.start(hosts('client', 'server1'), meshConfig(), env);
    this.track(await echoServer(this.mesh.host('server1'), IP.server1, 8080));
    return { client: this.mesh.host('client'), zt: this.mesh.zt('client') };
  }

  async dispose(): Promise<void> {
    for (const h of this.handles.splice(0)) {
      if (h instanceof net.Server) h.close();
      else h.destroy();
    }
    await this.mesh.cleanup();
  }
}

const open = new Set<Scope>();

test.after.always(async () => {
  for (const s of [...open]) await s.dispose();
  open.clear();
});

/** Run `fn` with a fresh scope; the mesh and every app socket are removed afterwards, pass or fail. */
async function withScope<T>(fn: (s: Scope) => Promise<T>): Promise<T> {
  const s = new Scope();
  open.add(s);
  try {
    return await fn(s);
  } finally {
    open.delete(s);
    await s.dispose();
  }
}

const hosts = (...names: string[]): HostSpec[] => HOSTS.filter((h) => names.includes(h.name));
/** A host on the lab network without a ztunnel (the test starts one itself, or none). */
const bare = (name: string): HostSpec => ({ name, ips: hosts(name)[0]!.ips });

/** The environment DedicatedMesh gives its ztunnels, for tests that start one by hand. */
function ztEnv(mesh: DedicatedMesh, name: string, serviceAccount: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PROXY_MODE: 'dedicated',
    PROXY_WORKLOAD_INFO: `default/${name}/${serviceAccount}`,
    LOCAL_XDS_PATH: mesh.configPath,
    LOCAL_CA_CERT: mesh.caCert,
    LOCAL_CA_KEY: mesh.caKey,
    NODE_NAME: name,
    ...extra,
  };
}

/** Start a ztunnel by hand in a host of the mesh (registered, so mesh cleanup kills it). */
function spawnZtunnel(mesh: DedicatedMesh, name: string, serviceAccount: string): ZtunnelProc {
  const zt = new ZtunnelProc(mesh.host(name), mesh.lab.dir, name, ztEnv(mesh, name, serviceAccount));
  mesh.ztunnels.set(name, zt);
  return zt;
}


/** A held-open client connection that records how it ended. */
interface Held {
  sock: net.Socket;
  error?: string;
  closedAt?: number;
  closed: Promise<void>;
}

async function hold(scope: Scope, ns: Netns, host: string, port: number): Promise<Held> {
  const sock = scope.track(await within(holdOpen(ns, host, port), 10_000, `connect to ${host}:${port}`));
  const h: Held = { sock, closed: Promise.resolve() };
  sock.on('error', (e) => (h.error = (e as NodeJS.ErrnoException).code ?? e.message));
  h.closed = new Promise((resolve) => sock.once('close', () => ((h.closedAt = Date.now()), resolve())));
  return h;
}

/** Connect from inside `ns` (optionally with a socket mark) and report 'connected' or the error code. */
function tryConnect(ns: Netns, host: string, port: number, mark?: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connectTcp({ netnsFd: ns.fd, host, port, ...(mark === undefined ? {} : { mark }) });
    const timer = setTimeout(() => (s.destroy(), resolve('timeout')), 5000);
    s.once('connect', () => (clearTimeout(timer), s.destroy(), resolve('connected')));
    s.once('error', (e) => (clearTimeout(timer), resolve((e as NodeJS.ErrnoException).code ?? e.message)));
  });
}

/** `ip netns exec` execs, so the spawned pid is node running ztunnel's main.js itself: a signal to it reaches ztunnel. */
function ztunnelPid(zt: ZtunnelProc): { pid: number; exe: string; argv: string[] } {
  const pid = zt.child.pid!;
  return { pid, exe: readlinkSync(`/proc/${pid}/exe`), argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean) };
}

const tail = (zt: ZtunnelProc) => `\n--- ${zt.name} log ---\n${zt.log().slice(-3000)}`;

// ---------------------------------------------------------------------------------------------------------------
// Drain

test.serial('SIGTERM drains: not ready, no new connections, open ones keep working, exit 0 once they end', async (t) => {
  await withScope(async (scope) => {
    const { client, zt } = await scope.clientAndEcho({ CONNECTION_TERMINATION_DEADLINE: '20s' });

    const proc = ztunnelPid(zt);
    t.is(realpathSync(proc.exe), realpathSync(process.execPath), 'the spawned pid is node, not a lingering `ip`');
    t.true(proc.argv.includes(ZTUNNEL_MAIN));
    t.log(`ztunnel pid ${proc.pid}: ${proc.argv.join(' ')}`);

    const conn = await hold(scope, client, IP.server1, 8080);
    t.is(await echoes(conn.sock, 'before drain'), 'before drain');

    process.kill(proc.pid, 'SIGTERM');
    const draining = await eventually('draining log line', () => zt.lines('draining')[0]);
    t.is(draining.reason, 'SIGTERM');
    t.is(draining.open, 1);
    t.is(draining.deadlineMs, 20_000);

    // Readiness reports the drain (the admin servers stay up until it is done).
    t.is((await httpIn(client, 'GET', 15021, '/healthz/ready')).status, 503);
    // The outbound listener is closed: a new connection from the app is refused.
    const fresh = await exchange(client, IP.server1, 8080, Buffer.from('too late'), 5000);
    t.is(fresh.received.length, 0);
    t.is(fresh.error, 'ECONNREFUSED');

    // The connection that was open keeps flowing both ways, and the process waits for it.
    for (let i = 0; i < 5; i++) t.is(await echoes(conn.sock, `during drain ${i}`), `during drain ${i}`);
    await sleep(500);
    t.is(zt.child.exitCode, null, `ztunnel exited while a connection was open${tail(zt)}`);
    t.is(await echoes(conn.sock, 'still here'), 'still here');

    // The client finishes: the echo server ends too, the connection completes cleanly and ztunnel exits 0.
    const endedAt = Date.now();
    conn.sock.end();
    await within(conn.closed, 10_000, 'connection close after the client ended');
    t.is(conn.error, undefined);
    const code = await within(zt.exited, 10_000, `client ztunnel exit${tail(zt)}`);
    t.is(code, 0);
    t.true(Date.now() - endedAt < 5000, 'exit soon after the last connection ended');
    t.is(zt.lines('drain deadline reached; closing remaining connections').length, 0);
    t.is(zt.lines('ztunnel stopped').length, 1);
    const done = zt.lines('connection complete').find((l) => l['dst.addr'] === `${IP.server1}:8080`);
    t.truthy(done, tail(zt));
    t.is(done!.error, undefined);
  });
});

test.serial('SIGTERM with a connection that never ends: closed at the deadline, then exit 0', async (t) => {
  await withScope(async (scope) => {
    const { mesh } = scope;
    await mesh.start(hosts('client', 'server1'), meshConfig(), { CONNECTION_TERMINATION_DEADLINE: '1s' });
    const serverSide: { sock: net.Socket; closed: boolean }[] = [];
    scope.track(
      await listenIn(mesh.host('server1'), IP.server1, 8080, (s) => {
        const rec = { sock: s, closed: false };
        serverSide.push(rec);
        s.once('close', () => (rec.closed = true));
        s.pipe(s);
      }),
    );
    const zt = mesh.zt('client');
    const conn = await hold(scope, mesh.host('client'), IP.server1, 8080);
    t.is(await echoes(conn.sock, 'hello'), 'hello');
    t.is(serverSide.length, 1);

    const t0 = Date.now();
    process.kill(ztunnelPid(zt).pid, 'SIGTERM');
    await within(conn.closed, 10_000, `ztunnel closing the connection at the deadline${tail(zt)}`);
    const elapsed = conn.closedAt! - t0;
    t.true(elapsed >= 900, `closed after ${elapsed} ms, before the 1 s deadline`);
    t.true(elapsed < 5000, `closed after ${elapsed} ms`);
    t.truthy(conn.error, 'the client sees a reset, not a clean end');
    t.log(`connection closed ${elapsed} ms after SIGTERM (${conn.error})`);

    const code = await within(zt.exited, 10_000, `client ztunnel exit${tail(zt)}`);
    t.is(code, 0);
    const deadline = zt.lines('drain deadline reached; closing remaining connections');
    t.is(deadline.length, 1, tail(zt));
    t.is(deadline[0]!.open, 1);
    // The far side does not hang on either: the server app's socket is closed too.
    await eventually('server-side socket closed', () => serverSide[0]!.closed, 10_000);
    t.pass();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Admin

test.serial('POST /quitquitquit stops ztunnel (exit 0); the admin port is bound to localhost only', async (t) => {
  await withScope(async (scope) => {
    const { mesh } = scope;
    await mesh.start(hosts('client', 'tester'), meshConfig());
    const client = mesh.host('client');
    const zt = mesh.zt('client');

    // On 127.0.0.1 it answers.
    t.is((await httpIn(client, 'GET', 15000, '/config_dump')).status, 200);
    // On the pod IP it does not: with ztunnel's mark the connection skips redirection and reaches the real ports,
    // where readiness (0.0.0.0) accepts and admin (127.0.0.1) refuses.
    t.is(await tryConnect(client, IP.client, 15021, 0x539), 'connected');
    t.is(await tryConnect(client, IP.client, 15000, 0x539), 'ECONNREFUSED');
    // From another namespace the request never gets an answer (redirected to inbound, which refuses ztunnel's ports).
    await t.throwsAsync(httpIn(mesh.host('tester'), 'GET', 15000, '/config_dump', IP.client));
    await t.throwsAsync(httpIn(mesh.host('tester'), 'POST', 15000, '/quitquitquit', IP.client));
    t.is(zt.child.exitCode, null);
    t.is((await httpIn(client, 'GET', 15021, '/healthz/ready')).status, 200);

    const r = await httpIn(client, 'POST', 15000, '/quitquitquit');
    t.is(r.status, 200);
    const code = await within(zt.exited, 10_000, `exit after /quitquitquit${tail(zt)}`);
    t.is(code, 0);
    t.is(zt.lines('draining')[0]?.reason, 'quitquitquit');
    t.is(zt.lines('ztunnel stopped').length, 1);
  });
});

test.serial('POST /logging: known levels are applied (200), unknown ones rejected (400)', async (t) => {
  await withScope(async (scope) => {
    const { client, zt } = await scope.clientAndEcho();

    const debug = await httpIn(client, 'POST', 15000, '/logging?level=debug');
    t.is(debug.status, 200);
    t.regex(debug.body, /debug/);
    const bad = await httpIn(client, 'POST', 15000, '/logging?level=chatty');
    t.is(bad.status, 400);
    t.regex(bad.body, /chatty/);
    t.is((await httpIn(client, 'POST', 15000, '/logging')).status, 400);

    // The level really changes: at warn, a clean connection leaves no access log line; back at info it does.
    const roundTrip = async (msg: string) => {
      const c = await hold(scope, client, IP.server1, 8080);
      const port = c.sock.localPort;
      t.is(await echoes(c.sock, msg), msg);
      c.sock.end();
      await within(c.closed, 10_000, 'round trip close');
      return `${IP.client}:${port}`;
    };
    const closed = async () => counter((await httpIn(client, 'GET', 15020, '/metrics')).body, 'istio_tcp_connections_closed_total', { reporter: 'source' });
    t.is((await httpIn(client, 'POST', 15000, '/logging?level=warn')).status, 200);
    const closedBefore = await closed();
    const quiet = await roundTrip('quiet');
    // ztunnel finishes the connection (counted, and not logged) before the level goes back.
    await eventually('the quiet connection finished', async () => (await closed()) > closedBefore);
    t.is((await httpIn(client, 'POST', 15000, '/logging?level=info')).status, 200);
    const loud = await roundTrip('loud');
    await eventually('access log at info', () => zt.lines('connection complete').find((l) => l['src.addr'] === loud));
    t.is(zt.lines().filter((l) => l['src.addr'] === quiet).length, 0);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Start-up failures

test.serial('a port already in use fails start-up with exit 1 and a message naming it', async (t) => {
  await withScope(async (scope) => {
    const { mesh } = scope;
    await mesh.start([bare('client')], meshConfig());
    const ns = mesh.host('client');
    ns.iptables(DEDICATED_RULES);
    scope.track(await listenIn(ns, '0.0.0.0', 15008, (s) => s.destroy()));

    const zt = spawnZtunnel(mesh, 'client', 'sleep');
    const code = await within(zt.exited, 20_000, `ztunnel exit with 15008 taken${tail(zt)}`);
    t.is(code, 1, tail(zt));
    const log = zt.log();
    t.regex(log, /^ztunnel: port 15008 on 0\.0\.0\.0 is already in use/m, 'a plain stderr line');
    const fatal = zt.lines('ztunnel failed to start')[0];
    t.regex(String(fatal?.err), /15008.*already in use/);
    t.is(zt.lines('ztunnel ready').length, 0);
  });
});

test.serial('a malformed local config at start: exit 1 naming the file and the field', async (t) => {
  await withScope(async (scope) => {
    const { mesh } = scope;
    const cfg = meshConfig() as { workloads: Record<string, unknown>[] };
    cfg.workloads[0] = { ...cfg.workloads[0], protocol: 'QUIC' };
    await mesh.start([bare('client')], cfg);
    mesh.host('client').iptables(DEDICATED_RULES);

    const zt = spawnZtunnel(mesh, 'client', 'sleep');
    const code = await within(zt.exited, 20_000, `ztunnel exit with a bad config${tail(zt)}`);
    t.is(code, 1, tail(zt));
    const stderr = zt.log().split('\n').find((l) => l.startsWith('ztunnel: '));
    t.truthy(stderr, tail(zt));
    t.true(stderr!.includes(mesh.configPath), stderr);
    t.true(stderr!.includes('workloads[0].protocol'), stderr);
    t.regex(stderr!, /QUIC/);
    t.is(zt.lines('ztunnel ready').length, 0);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Reloads

test.serial('a malformed config on reload keeps the last good state; a valid one is applied again', async (t) => {
  await withScope(async (scope) => {
    const { mesh } = scope;
    const { client, zt } = await scope.clientAndEcho();
    const dump = async () => JSON.parse((await httpIn(client, 'GET', 15000, '/config_dump')).body) as { workloads: { name: string; status: string }[] };
    const flows = async (msg: string) => {
      const r = await exchange(client, IP.server1, 8080, Buffer.from(msg), 10_000);
      t.is(r.error, undefined);
      t.is(r.received.toString(), msg);
    };

    await flows('first'); // any certificate issued lazily is in the dump from here on
    const before = await dump();

    const invalid = (n: number) => eventually(`invalid config #${n} logged`, () => {
      const l = zt.lines('local config invalid; keeping the last good state');
      return l.length >= n && l[n - 1];
    });
    mesh.writeConfig('::: not yaml');
    const first = await invalid(1);
    t.is(first.path, mesh.configPath);
    t.is(typeof first.err, 'string');
    await flows('after garbage');
    t.deepEqual(await dump(), before);

    mesh.writeConfig('workloads: [ {name: client,\n'); // not even YAML
    const second = await invalid(2);
    t.regex(String(second.err), /YAML/);
    await flows('after broken yaml');
    t.deepEqual(await dump(), before);
    t.is(zt.lines('local config reloaded').length, 0);
    t.is(zt.child.exitCode, null);

    // A valid file is applied again (and it is a change, so it cannot be mistaken for the old state).
    mesh.writeConfig(meshConfig({ server2Status: 'Unhealthy' }));
    await eventually('valid config reloaded', () => zt.lines('local config reloaded').length > 0);
    const after = await dump();
    t.is(after.workloads.find((w) => w.name === 'server2')?.status, 'Unhealthy');
    t.is(after.workloads.find((w) => w.name === 'server1')?.status, 'Healthy');
    await flows('after the fix');
  });
});
