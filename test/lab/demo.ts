// `npm run demo`: a two-node ambient mesh in network namespaces. Pods in two namespaces are enrolled, handed to each
// node's ztunnel (shared mode) over ZDS, and talk over HBONE; an AuthorizationPolicy denies one call. Prints what
// happened, keeps the ztunnel logs, and removes everything (also on Ctrl-C).
import { copyFileSync, mkdirSync } from 'node:fs';
import type http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exchange, httpIn, httpServer, timedHttpCalls } from './apps.js';
import { Cluster } from './cluster.js';
import { counter } from './fixtures.js';

const ECHO = 'echo.backend.svc.cluster.local';
const cluster = new Cluster({
  nodes: [
    {
      name: 'node1',
      pods: [
        { name: 'client', namespace: 'frontend', serviceAccount: 'client', enrolled: true },
        { name: 'echo-1', namespace: 'backend', serviceAccount: 'echo', enrolled: true },
      ],
    },
    {
      name: 'node2',
      pods: [
        { name: 'echo-2', namespace: 'backend', serviceAccount: 'echo', enrolled: true },
        { name: 'legacy', namespace: 'legacy', serviceAccount: 'default', enrolled: false },
      ],
    },
  ],
  services: [{ name: 'echo', namespace: 'backend', vip: '10.96.0.10', ports: { 80: 8080 }, selectorPods: ['echo-1', 'echo-2'] }],
  policies: [
    {
      name: 'only-frontend', namespace: 'backend', scope: 'Namespace', action: 'Allow',
      rules: [[[{ namespaces: [{ Exact: 'frontend' }] }]]],
    },
  ],
});

const step = (msg: string) => console.log(`\u2022 ${msg}`);
let done = false;
async function teardown(): Promise<void> {
  if (done) return;
  done = true;
  step('tearing down namespaces and ztunnels ...');
  await cluster.cleanup();
}
process.on('SIGINT', () => void teardown().then(() => process.exit(130)));
process.on('SIGTERM', () => void teardown().then(() => process.exit(143)));

const servers: (net.Server | http.Server)[] = [];
try {
  const t0 = Date.now();
  step('building a 2-node cluster: node netns, pod netns, veths, routes; in-pod redirection rules for enrolled pods ...');
  step('starting a ztunnel per node (shared mode); each receives its pods over ZDS ...');
  await cluster.start();
  step(`cluster ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const name of ['echo-1', 'echo-2', 'legacy']) servers.push(await httpServer(cluster.pod(name).ns, '0.0.0.0', 8080, name));

  console.log('\nCalls');
  const stats = await timedHttpCalls(cluster.pod('client').ns, '10.96.0.10', 80, 8, Buffer.alloc(1024, 0x61));
  const line = await waitForLine('node1', (l) => l['dst.service'] === ECHO);
  console.log(
    `  frontend/client (${cluster.pod('client').ip}) -> http://echo.backend VIP 10.96.0.10:80: ${stats.calls - stats.errors}/${stats.calls} POSTs of 1 KiB ` +
      `(latency p50 ${stats.p50Ms.toFixed(1)} ms, p99 ${stats.p99Ms.toFixed(1)} ms, each a new connection), answered by:`,
  );
  for (const who of stats.answers) console.log(`    ${who}`);
  console.log(`    mTLS over HBONE: ${line['src.identity']} -> ${line['dst.identity']}`);
  const plain = await timedHttpCalls(cluster.pod('client').ns, cluster.pod('legacy').ip, 8080, 1, Buffer.alloc(0));
  console.log(`  frontend/client -> legacy/legacy (not in the mesh): answered by ${plain.answers[0] ?? 'nobody'}, plain TCP without identity`);
  const denied = await exchange(cluster.pod('legacy').ns, cluster.pod('echo-2').ip, 8080);
  console.log(
    `  legacy/legacy -> backend/echo-2: ${denied.received.length === 0 ? 'denied by AuthorizationPolicy backend/only-frontend (no mesh identity)' : 'unexpectedly allowed'}`,
  );

  console.log('\nMetrics (reporter=destination, read from each node\'s ztunnel on :15020)');
  for (const node of ['node1', 'node2']) {
    const text = (await httpIn(cluster.node(node).ns, 'GET', 15020, '/metrics')).body;
    const l = { reporter: 'destination', destination_service: ECHO };
    console.log(
      `  ${node}: ${ECHO}: ${counter(text, 'istio_tcp_connections_opened_total', l)} connections, ` +
        `${counter(text, 'istio_tcp_received_bytes_total', l)} bytes in, ${counter(text, 'istio_tcp_sent_bytes_total', l)} bytes out`,
    );
  }

  const logs = join(tmpdir(), `ambit-demo-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(logs, { recursive: true });
  for (const node of ['node1', 'node2']) copyFileSync(cluster.zt(node).logPath, join(logs, `ztunnel-${node}.log`));
  console.log(`\nztunnel logs (JSON lines, access log lines have "scope":"access"): ${logs}\n`);
} catch (e) {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  for (const s of servers) s.close();
  await teardown();
}

async function waitForLine(node: string, pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const hit = cluster.zt(node).lines('connection complete').find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {};
}
