// `npm run example`: two workloads in their own network namespaces, each with a dedicated-mode ztunnel,
// talking over HBONE; prints what happened and removes everything again.
import { echoServer, exchange, httpIn } from './apps.js';
import { DedicatedMesh } from './dedicated.js';
import { counter } from './fixtures.js';

const config = {
  workloads: [
    { name: 'sleep', namespace: 'demo', serviceAccount: 'sleep', workloadIps: ['10.200.0.11'], protocol: 'HBONE' },
    { name: 'echo', namespace: 'demo', serviceAccount: 'echo', workloadIps: ['10.200.0.21'], protocol: 'HBONE', services: { 'demo/echo.demo.svc.cluster.local': { 80: 8080 } } },
  ],
  services: [{ name: 'echo', namespace: 'demo', hostname: 'echo.demo.svc.cluster.local', vips: ['/10.96.0.10'], ports: { 80: 8080 } }],
  policies: [
    { name: 'only-sleep-on-8080', namespace: 'demo', scope: 'Namespace', action: 'Allow', rules: [[[{ principals: [{ Exact: 'cluster.local/ns/demo/sa/sleep' }], destinationPorts: [8080] }]]] },
  ],
};

const mesh = new DedicatedMesh();
let stopping = false;
const cleanup = async () => {
  if (stopping) return;
  stopping = true;
  await mesh.cleanup();
};
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

try {
  console.log('starting two namespaces with a ztunnel each (dedicated mode) ...');
  await mesh.start(
    [
      { name: 'sleep', ips: ['10.200.0.11'], mesh: { namespace: 'demo', serviceAccount: 'sleep' } },
      { name: 'echo', ips: ['10.200.0.21'], mesh: { namespace: 'demo', serviceAccount: 'echo' } },
    ],
    config,
  );
  const servers = [await echoServer(mesh.host('echo'), '10.200.0.21', 8080), await echoServer(mesh.host('echo'), '10.200.0.21', 9090)];
  const payload = Buffer.alloc(1 << 20, 1);
  const viaVip = await exchange(mesh.host('sleep'), '10.96.0.10', 80, payload);
  console.log(`sleep -> echo.demo VIP 10.96.0.10:80: ${viaVip.received.length} of ${payload.length} bytes echoed back`);
  const line = mesh.zt('sleep').lines('connection complete').at(-1) ?? {};
  console.log(`  over mTLS (HBONE to ${line['dst.hbone_addr']}): ${line['src.identity']} -> ${line['dst.identity']}`);
  const denied = await exchange(mesh.host('sleep'), '10.200.0.21', 9090, Buffer.from('hello'));
  console.log(`sleep -> echo:9090: ${denied.received.length === 0 ? 'denied by AuthorizationPolicy demo/only-sleep-on-8080' : 'unexpectedly allowed'}`);
  const metrics = (await httpIn(mesh.host('echo'), 'GET', 15020, '/metrics')).body;
  const labels = { reporter: 'destination', destination_service: 'echo.demo.svc.cluster.local' };
  console.log(
    `echo's ztunnel metrics for echo.demo: ${counter(metrics, 'istio_tcp_connections_opened_total', labels)} connection(s), ` +
      `${counter(metrics, 'istio_tcp_received_bytes_total', labels)} bytes in, ${counter(metrics, 'istio_tcp_sent_bytes_total', labels)} bytes out`,
  );
  console.log(`ztunnel logs: ${mesh.zt('sleep').logPath}, ${mesh.zt('echo').logPath} (removed at exit)`);
  for (const s of servers) s.close();
} catch (e) {
  console.error(`example failed: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
