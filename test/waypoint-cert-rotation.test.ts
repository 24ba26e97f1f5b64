// The waypoint's certificate comes from the controller's CA over SDS and is renewed at half its lifetime: with an
// 8 s maximum lifetime, the Envoy's certificate changes within seconds while traffic keeps flowing through it.
import { CustomObjectsApi, type KubernetesObject } from '@kubernetes/client-node';
import test from 'ava';
import type http from 'node:http';
import { echoHttpServer, httpIn, httpRequest } from './lab/apps.js';
import { AmbientCluster } from './lab/ambient-cluster.js';
import { eventually } from './lab/ztunnel-proc.js';

const NS = 'shop';
const lab = new AmbientCluster({
  nodes: [
    { name: 'node1', pods: [{ name: 'client', namespace: NS, serviceAccount: 'sleep', enrolled: true }, { name: 'wp', namespace: NS }] },
    { name: 'node2', pods: [{ name: 'echo', namespace: NS, serviceAccount: 'echo', enrolled: true }] },
  ],
  slots: ['wp'],
});
const servers: http.Server[] = [];

test.before(async () => {
  await lab.start(
    [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' } } },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: NS }, spec: { selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } } as KubernetesObject,
    ],
    { maxCertTtlSeconds: 8 },
  );
  servers.push(await echoHttpServer(lab.pod('echo').ns, '0.0.0.0', 8080, 'echo'));
});

test.after.always(async () => {
  for (const s of servers) s.close();
  await lab.cleanup();
});

/** The serial of the waypoint Envoy's own certificate, from its admin /certs. */
async function envoySerial(): Promise<string | undefined> {
  const wp = lab.kubelet!.podsOf(NS, 'waypoint')[0];
  if (!wp) return undefined;
  const certs = JSON.parse((await httpIn(wp.slot.ns, 'GET', 15000, '/certs')).body) as { certificates: { cert_chain?: { serial_number: string; subject_alt_names: { uri?: string }[] }[] }[] };
  const own = certs.certificates.flatMap((c) => c.cert_chain ?? []).find((c) => c.subject_alt_names.some((s) => s.uri === 'spiffe://cluster.local/ns/shop/sa/waypoint'));
  return own?.serial_number;
}

test('the waypoint gets a new certificate at half its lifetime, and traffic keeps passing', async (t) => {
  const custom = lab.cp.api!.kubeConfig().makeApiClient(CustomObjectsApi);
  await custom.createNamespacedCustomObject({
    group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', namespace: NS,
    body: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: NS }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } },
  });
  await lab.waypointProgrammed(NS, 'waypoint');
  const vip = (await lab.cp.core!.readNamespacedService({ namespace: NS, name: 'echo' })).spec!.clusterIP!;
  const call = () => httpRequest(lab.pod('client').ns, { host: vip, port: 80, path: '/', keepAlive: true }).then((r) => r.status, () => 0);
  await eventually('a call through the waypoint', async () => (await call()) === 200 || undefined, 20_000);
  const first = await eventually('the waypoint certificate', envoySerial);
  const second = await eventually('a renewed certificate', async () => {
    const s = await envoySerial();
    return s && s !== first ? s : undefined;
  }, 15_000);
  t.not(second, first);
  t.is(await call(), 200);
});
