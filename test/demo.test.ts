// The README's first command must keep working: run the demo and check what it reports and that it cleans up.
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readlinkSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DEMO = fileURLToPath(new URL('./lab/demo.js', import.meta.url));

/** The lab names everything `amb<pid in base 36>x..` (netns, and its scratch directory /tmp/amb...-*). */
const labPrefix = (pid: number) => `amb${pid.toString(36)}x`;

/** Nothing of the run may be left: no netns, no process (ztunnel, Envoy) writing its log into the run's directory. */
function assertNothingLeft(t: ExecutionContext, pid: number): void {
  const prefix = labPrefix(pid);
  t.deepEqual(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(prefix)), []);
  const procs: string[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const out = readlinkSync(`/proc/${p}/fd/1`);
      if (out.includes(`/${prefix}`)) procs.push(`${p}: ${readlinkSync(`/proc/${p}/exe`)}`);
    } catch {}
  }
  t.deepEqual(procs, [], 'processes of the demo still running');
}

const num = (s: string, re: RegExp, t: ExecutionContext): number => {
  const m = re.exec(s);
  t.truthy(m, `no ${re} in the output`);
  return Number(m?.[1] ?? NaN);
};

test('npm run demo: mTLS identities, both pods, a denied call, metrics; a waypoint with a 90/10 split, header routing, an L7 DENY and its stats; cleanup', (t) => {
  const started = Date.now();
  const r = spawnSync(process.execPath, [DEMO], { encoding: 'utf8', timeout: 110_000 });
  t.log(`demo took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  // The demo keeps the logs for its user; the test checks they are there and removes them.
  const logs = /ztunnel logs .*: (\/\S+)/.exec(r.stdout)?.[1];
  if (logs) t.teardown(() => rmSync(logs, { recursive: true, force: true }));
  t.is(r.status, 0, r.stderr);
  t.true(Date.now() - started < 120_000, 'the demo must stay under 2 minutes');
  t.deepEqual(readdirSync(logs!).sort(), ['waypoint-envoy.log', 'ztunnel-node1.log', 'ztunnel-node2.log']);
  const out = r.stdout;

  // L4: mTLS with identities, both pods of the Service, a plain-text neighbour, a denied call, metrics.
  t.regex(out, /mTLS over HBONE: spiffe:\/\/cluster\.local\/ns\/frontend\/sa\/client -> spiffe:\/\/cluster\.local\/ns\/backend\/sa\/echo/);
  t.regex(out, /echo-v1-1 \(saw the call come from 10\.244\.1\.2\)/);
  t.regex(out, /echo-v2-1 \(saw the call come from 10\.244\.1\.2\)/);
  t.regex(out, /denied by AuthorizationPolicy backend\/only-frontend/);
  const conns = [...out.matchAll(/echo\.backend\.svc\.cluster\.local: (\d+) connections, (\d+) bytes in/g)];
  t.is(conns.length, 2);
  t.is(conns.reduce((n, m) => n + Number(m[1]), 0), 16);
  t.true(conns.reduce((n, m) => n + Number(m[2]), 0) > 16 * 1024); // sixteen 1 KiB bodies plus HTTP headers
  t.regex(out, /16\/16 POSTs of 1 KiB \(latency p50 [\d.]+ ms/);

  // The waypoint: the applied Gateway, what the controller created, the Envoy pod, Programmed, the binding.
  t.regex(out, /\| kind: Gateway\n.*\n.*\n\s+\|\s+gatewayClassName: istio-waypoint/);
  t.regex(out, /ServiceAccount backend\/waypoint /);
  t.regex(out, /ConfigMap backend\/waypoint-envoy-bootstrap /);
  t.regex(out, /Deployment backend\/waypoint: 1 replica, container istio-proxy runs `envoy`/);
  const clusterIp = /Service backend\/waypoint: ClusterIP (\d+\.\d+\.\d+\.\d+), ports 15021\/status-port, 15008\/mesh/.exec(out)?.[1];
  t.truthy(clusterIp, 'the waypoint Service');
  const podIp = /runs pod backend\/waypoint-\S+ on node2 \((10\.244\.2\.\d+)\): Envoy \d+\.\d+\.\d+, ready after/.exec(out)?.[1];
  t.truthy(podIp, 'the waypoint pod');
  t.true(out.includes(`Gateway backend/waypoint: Programmed=True, addresses ${clusterIp}, waypoint.backend.svc.cluster.local`));
  t.regex(out, /Service backend\/echo: istio\.io\/WaypointBound=True \(bound to waypoint\.backend\.svc\.cluster\.local\)/);
  // Through the waypoint: the backend sees the waypoint's address; each hop's identities.
  t.regex(out, new RegExp(`-> 200 from echo-v[12]-1, which saw the call come from ${podIp!.replace(/\./g, '\\.')} \\(the waypoint\\)`));
  t.true(
    out.includes(`node1 ztunnel: client-1 -> 10.96.0.1:80 sent to the waypoint ${podIp}:15008 over HBONE: spiffe://cluster.local/ns/frontend/sa/client -> spiffe://cluster.local/ns/backend/sa/waypoint`),
  );
  t.regex(out, /ztunnel: waypoint -> echo-v[12]-1 over HBONE: spiffe:\/\/cluster\.local\/ns\/backend\/sa\/waypoint -> spiffe:\/\/cluster\.local\/ns\/backend\/sa\/echo/);

  // The HTTPRoute: 90/10 within bounds (Binomial(200, 0.1): mean 20, sd 4.2; bounds over 3.5 sd), the header match.
  t.regex(out, /HTTPRoute backend\/echo, parent Service echo: Accepted=True, ResolvedRefs=True/);
  const split = /200 GETs without the header: v1 (\d+) \([\d.]+%\), v2 (\d+) \([\d.]+%\) \(asked 90\/10\)/.exec(out);
  t.truthy(split, 'the measured split (only v1 and v2 answered)');
  const [v1, v2] = [Number(split?.[1]), Number(split?.[2])];
  t.is(v1 + v2, 200);
  t.true(v2 >= 5 && v2 <= 40, `v2 got ${v2} of 200`);
  t.regex(out, /20 GETs with x-version: v2: v2 20\n/);

  // The L7 AuthorizationPolicy: DELETE 403, GET 200.
  t.regex(out, /AuthorizationPolicy backend\/no-delete: WaypointAccepted=True/);
  t.regex(out, /5 x DELETE \/items\/N -> 5 x 403 \("RBAC: access denied"\)/);
  t.regex(out, /5 x GET \/items\/N -> 5 x 200 \(answered by echo-v[12]-1/);

  // The waypoint's own stats agree with what the client saw.
  const requests = num(out, /HTTP requests for echo\.backend\.svc\.cluster\.local:80: (\d+), by status/, t);
  t.true(requests >= 200 + 20 + 10, `${requests} requests`);
  t.true(num(out, /by status 2xx (\d+)/, t) >= 200 + 20 + 5);
  t.true(num(out, /by status 2xx \d+, 4xx (\d+)/, t) >= 5);
  t.true(num(out, /forwarded to echo-v1\.backend: (\d+) requests/, t) >= v1);
  t.true(num(out, /forwarded to echo-v2\.backend: (\d+) requests/, t) >= v2 + 20);
  t.true(num(out, /RBAC \(AuthorizationPolicy no-delete\): (\d+) denied/, t) >= 5);
  t.true(num(out, /RBAC \(AuthorizationPolicy no-delete\): \d+ denied, (\d+) allowed/, t) >= 5);
  t.true(num(out, /HBONE: (\d+) CONNECT tunnels in/, t) >= requests);
  t.true(num(out, /(\d+) mTLS connection\(s\) out to the backend pods' ztunnels/, t) >= 1);

  assertNothingLeft(t, r.pid!);
});

test('Ctrl-C while the waypoint runs: the demo removes everything and exits 130', async (t) => {
  // As a terminal does: SIGINT to the whole process group (the demo, its ztunnels and the waypoint's Envoy).
  const child = spawn(process.execPath, [DEMO], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const running = new Promise<void>((resolve) =>
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (/runs pod backend\/waypoint-/.test(out)) resolve();
    }),
  );
  const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
  t.teardown(() => clearTimeout(timer));
  await Promise.race([running, exited]);
  t.regex(out, /runs pod backend\/waypoint-/, 'the demo got as far as the waypoint pod');
  process.kill(-child.pid!, 'SIGINT');
  t.is(await exited, 130);
  t.regex(out, /tearing down/);
  assertNothingLeft(t, child.pid!);
});
