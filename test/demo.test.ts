// The README's first command must keep working: run the demo and check what it reports and that it cleans up.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DEMO = fileURLToPath(new URL('./lab/demo.js', import.meta.url));

test('npm run demo: mTLS identities, both replicas, a denied call, metrics, cleanup', (t) => {
  const r = spawnSync(process.execPath, [DEMO], { encoding: 'utf8', timeout: 90_000 });
  // The demo keeps both nodes' logs for its user; the test checks they are there and removes them.
  const logs = /ztunnel logs .*: (\/\S+)/.exec(r.stdout)?.[1];
  if (logs) t.teardown(() => rmSync(logs, { recursive: true, force: true }));
  t.is(r.status, 0, r.stderr);
  t.deepEqual(readdirSync(logs!).sort(), ['ztunnel-node1.log', 'ztunnel-node2.log']);
  t.regex(r.stdout, /mTLS over HBONE: spiffe:\/\/cluster\.local\/ns\/frontend\/sa\/client -> spiffe:\/\/cluster\.local\/ns\/backend\/sa\/echo/);
  t.regex(r.stdout, /echo-1 \(saw the call come from 10\.244\.1\.2\)/);
  t.regex(r.stdout, /echo-2 \(saw the call come from 10\.244\.1\.2\)/);
  t.regex(r.stdout, /denied by AuthorizationPolicy backend\/only-frontend/);
  const conns = [...r.stdout.matchAll(/echo\.backend\.svc\.cluster\.local: (\d+) connections, (\d+) bytes in/g)];
  t.is(conns.length, 2);
  t.is(conns.reduce((n, m) => n + Number(m[1]), 0), 16);
  t.true(conns.reduce((n, m) => n + Number(m[2]), 0) > 16 * 1024); // sixteen 1 KiB bodies plus HTTP headers
  t.regex(r.stdout, /16\/16 POSTs of 1 KiB \(latency p50 [\d.]+ ms/);
  // The lab names everything `amb<pid in base 36>x..`: nothing of the demo's may be left.
  const prefix = `amb${r.pid.toString(36)}x`;
  t.deepEqual(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(prefix)), []);
});
