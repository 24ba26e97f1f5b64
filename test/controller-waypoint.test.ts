// The controller provisions waypoints through the Kubernetes API (the embedded API server): a Gateway of class
// istio-waypoint gets its ServiceAccount, bootstrap ConfigMap, Deployment and Service (server-side applied, owned by
// the Gateway, labelled as istiod labels them), status Accepted then Programmed with addresses once a waypoint pod
// is ready; a bound Service says so in its status; deleting the Gateway removes all of it.
import { AppsV1Api, CustomObjectsApi, type CoreV1Api, type KubernetesObject, type V1Service } from '@kubernetes/client-node';
import test from 'ava';
import { ADDRESS_TYPE_URL, AddressCodec } from '../protos/index.js';
import type { Gateway } from '../waypoint-controller/waypoint/gateway.js';
import { LabControlPlane } from './lab/control-plane.js';
import { eventually } from './lab/ztunnel-proc.js';

const cp = new LabControlPlane();
let core: CoreV1Api;
let apps: AppsV1Api;
let custom: CustomObjectsApi;
const GW = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways' };

const getGateway = (name: string) => custom.getNamespacedCustomObject({ ...GW, namespace: 'shop', name }) as Promise<Gateway>;
const exists = <T>(p: Promise<T>) => p.then(() => true, () => false);
const cond = (conds: { type: string; status: string; reason?: string }[] | undefined, type: string) => conds?.find((c) => c.type === type);
const publishedService = (key: string) => {
  const r = cp.controller!.store.get(ADDRESS_TYPE_URL, key);
  return r && AddressCodec.decode(r.body).service;
};

test.before(async () => {
  await cp.start([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop', labels: { 'istio.io/use-waypoint': 'waypoint' } }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } } as KubernetesObject,
    {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'waypoint-params', namespace: 'shop' },
      data: { deployment: 'spec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - name: istio-proxy\n        resources:\n          limits:\n            memory: 512Mi\n' },
    } as KubernetesObject,
  ]);
  core = cp.core!;
  const kc = cp.api!.kubeConfig();
  apps = kc.makeApiClient(AppsV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
});

test.after.always(async () => {
  await cp.stop();
});

test.serial('the GatewayClass istio-waypoint exists with controller istio.io/mesh-controller and is Accepted', async (t) => {
  const cls = await eventually('GatewayClass accepted', async () => {
    const c = (await custom.getClusterCustomObject({ group: GW.group, version: GW.version, plural: 'gatewayclasses', name: 'istio-waypoint' }).catch(() => undefined)) as
      | { spec: { controllerName: string }; status?: { conditions?: { type: string; status: string }[] } }
      | undefined;
    return c && cond(c.status?.conditions, 'Accepted')?.status === 'True' ? c : undefined;
  });
  t.is(cls.spec.controllerName, 'istio.io/mesh-controller');
});

test.serial('the mesh root is published as ConfigMap istio-ca-root-cert in every namespace', async (t) => {
  for (const namespace of ['shop', 'other', 'istio-system']) {
    const cm = await eventually(`root in ${namespace}`, () => core.readNamespacedConfigMap({ namespace, name: 'istio-ca-root-cert' }).catch(() => undefined));
    t.is(cm.data?.['root-cert.pem'], cp.controller!.rootPem);
  }
  await core.createNamespace({ body: { metadata: { name: 'late' } } });
  const late = await eventually('root in a new namespace', () => core.readNamespacedConfigMap({ namespace: 'late', name: 'istio-ca-root-cert' }).catch(() => undefined));
  t.is(late.data?.['root-cert.pem'], cp.controller!.rootPem);
});

test.serial('a waypoint Gateway gets its ServiceAccount, bootstrap, Deployment and Service, then Programmed once a pod is ready', async (t) => {
  await custom.createNamespacedCustomObject({
    ...GW, namespace: 'shop',
    body: {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'shop', labels: { 'istio.io/waypoint-for': 'service' } },
      spec: {
        gatewayClassName: 'istio-waypoint',
        listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
        infrastructure: { labels: { team: 'shop' }, annotations: { note: 'ours' }, parametersRef: { group: '', kind: 'ConfigMap', name: 'waypoint-params' } },
      },
    },
  });
  const gw = await getGateway('waypoint');
  const d = await eventually('Deployment', () => apps.readNamespacedDeployment({ namespace: 'shop', name: 'waypoint' }).catch(() => undefined));
  const owner = d.metadata?.ownerReferences?.[0];
  t.like(owner, { kind: 'Gateway', name: 'waypoint', uid: gw.metadata!.uid });
  t.like(d.metadata?.labels, { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'gateway.istio.io/managed': 'istio.io-mesh-controller', team: 'shop' });
  t.is(d.spec?.replicas, 2, 'the parametersRef overlay sets replicas');
  const pod = d.spec!.template;
  t.like(pod.metadata?.labels, { 'istio.io/dataplane-mode': 'none', 'gateway.networking.k8s.io/gateway-name': 'waypoint' });
  t.is(pod.metadata?.annotations?.note, 'ours');
  const c = pod.spec!.containers[0]!;
  t.is(c.resources?.limits?.memory, '512Mi', 'overlay merged into the container by name');
  t.truthy(c.image);
  t.true(pod.spec!.volumes!.some((v) => v.projected?.sources?.[0]?.serviceAccountToken?.audience === 'istio-ca'));
  t.true(pod.spec!.volumes!.some((v) => v.configMap?.name === 'istio-ca-root-cert'));
  const sa = await core.readNamespacedServiceAccount({ namespace: 'shop', name: 'waypoint' });
  t.is(sa.metadata?.ownerReferences?.[0]?.uid, gw.metadata!.uid);
  const cm = await core.readNamespacedConfigMap({ namespace: 'shop', name: 'waypoint-envoy-bootstrap' });
  t.truthy(cm.data?.['envoy.json']);
  const svc = await core.readNamespacedService({ namespace: 'shop', name: 'waypoint' });
  t.deepEqual(svc.spec?.ports?.map((p) => [p.name, p.port, p.appProtocol]), [['status-port', 15021, 'tcp'], ['mesh', 15008, 'hbone']]);
  t.deepEqual(svc.spec?.selector, { 'gateway.networking.k8s.io/gateway-name': 'waypoint' });

  const pending = await eventually('Accepted, not Programmed', async () => {
    const g = await getGateway('waypoint');
    return cond(g.status?.conditions, 'Accepted')?.status === 'True' && cond(g.status?.conditions, 'Programmed') ? g : undefined;
  });
  t.like(cond(pending.status?.conditions, 'Programmed'), { status: 'False', reason: 'AddressNotAssigned' });
  t.deepEqual(pending.status?.addresses ?? [], []);
  t.is(publishedService('shop/web.shop.svc.cluster.local')?.waypoint, undefined, 'nothing binds before the waypoint is ready');
  const notReady = await eventually('Service condition NotReady', async () => {
    const s = await core.readNamespacedService({ namespace: 'shop', name: 'web' });
    return cond(s.status?.conditions, 'istio.io/WaypointBound') ? s : undefined;
  });
  t.like(cond(notReady.status?.conditions, 'istio.io/WaypointBound'), { status: 'False', reason: 'NotReady' });

  // The kubelet's part: a pod of the Deployment becomes ready.
  await cp.runPod({ name: 'waypoint-abc', namespace: 'shop', node: 'node1', serviceAccount: 'waypoint', ip: '10.244.1.50' } as never, { ...pod.metadata!.labels! });
  const programmed = await eventually('Programmed', async () => {
    const g = await getGateway('waypoint');
    return cond(g.status?.conditions, 'Programmed')?.status === 'True' ? g : undefined;
  });
  t.deepEqual(programmed.status?.addresses, [{ type: 'IPAddress', value: svc.spec!.clusterIP }, { type: 'Hostname', value: 'waypoint.shop.svc.cluster.local' }]);
  const listener = (programmed.status?.listeners as { name: string; conditions: { type: string; status: string }[] }[])[0]!;
  t.is(listener.name, 'mesh');
  t.is(cond(listener.conditions, 'Accepted')?.status, 'True');
  const bound = await eventually('Service.waypoint in xDS', () => publishedService('shop/web.shop.svc.cluster.local')?.waypoint);
  t.deepEqual(bound.hostname, { namespace: 'shop', hostname: 'waypoint.shop.svc.cluster.local' });
  const s = await eventually('Service condition bound', async () => {
    const x: V1Service = await core.readNamespacedService({ namespace: 'shop', name: 'web' });
    return cond(x.status?.conditions, 'istio.io/WaypointBound')?.status === 'True' ? x : undefined;
  });
  t.truthy(s);
  // The waypoint's own xDS store now serves the bound service: its VIP cluster and endpoints, and the SDS secrets.
  const store = cp.controller!.waypointStores.get('shop/waypoint');
  const names = (type: string) => store.list(`type.googleapis.com/${type}`).map((r) => r.name);
  await eventually('bound service in the waypoint config', () => names('envoy.config.cluster.v3.Cluster').some((n) => n.includes('web.shop.svc.cluster.local')));
  t.true(names('envoy.config.listener.v3.Listener').includes('connect_terminate'));
  t.deepEqual(names('envoy.extensions.transport_sockets.tls.v3.Secret').sort(), ['ROOTCA', 'default']);
});

test.serial('an HTTPRoute on the bound Service is Accepted by the mesh controller; one on an unbound Service is not', async (t) => {
  await core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'plain' }, spec: { selector: { app: 'plain' }, ports: [{ name: 'http', port: 80 }] } } });
  const route = (name: string, parent: string) => ({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'shop' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: parent, port: 80 }], rules: [{ backendRefs: [{ name: parent, port: 80 }] }] },
  });
  for (const [name, parent] of [['to-web', 'web'], ['to-plain', 'plain']]) {
    await custom.createNamespacedCustomObject({ group: GW.group, version: GW.version, plural: 'httproutes', namespace: 'shop', body: route(name, parent) });
  }
  const status = (name: string) =>
    eventually(`${name} status`, async () => {
      const r = (await custom.getNamespacedCustomObject({ group: GW.group, version: GW.version, plural: 'httproutes', namespace: 'shop', name })) as {
        status?: { parents?: { controllerName: string; conditions: { type: string; status: string; reason: string }[] }[] };
      };
      return r.status?.parents?.[0];
    });
  const web = await status('to-web');
  t.is(web.controllerName, 'istio.io/mesh-controller');
  t.like(cond(web.conditions, 'Accepted'), { status: 'True' });
  const plain = await status('to-plain');
  t.like(cond(plain.conditions, 'Accepted'), { status: 'False' });
});

test.serial('an unexpected listener is Accepted=False/UnsupportedProtocol', async (t) => {
  await custom.createNamespacedCustomObject({
    ...GW, namespace: 'shop',
    body: {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'odd', namespace: 'shop' },
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }, { name: 'web', port: 80, protocol: 'HTTP' }] },
    },
  });
  const g = await eventually('status', async () => {
    const x = await getGateway('odd');
    return (x.status?.listeners?.length ?? 0) === 2 ? x : undefined;
  });
  t.like(cond(g.status?.conditions, 'Accepted'), { status: 'False', reason: 'ListenersNotValid' });
  const web = (g.status!.listeners as { name: string; conditions: { type: string; status: string; reason: string }[] }[]).find((l) => l.name === 'web')!;
  t.like(cond(web.conditions, 'Accepted'), { status: 'False', reason: 'UnsupportedProtocol' });
  await custom.deleteNamespacedCustomObject({ ...GW, namespace: 'shop', name: 'odd' });
});

test.serial('deleting the Gateway deletes what it owns, and the Service is no longer bound', async (t) => {
  await custom.deleteNamespacedCustomObject({ ...GW, namespace: 'shop', name: 'waypoint' });
  await eventually('owned objects gone', async () => {
    const left = await Promise.all([
      exists(apps.readNamespacedDeployment({ namespace: 'shop', name: 'waypoint' })),
      exists(core.readNamespacedService({ namespace: 'shop', name: 'waypoint' })),
      exists(core.readNamespacedServiceAccount({ namespace: 'shop', name: 'waypoint' })),
      exists(core.readNamespacedConfigMap({ namespace: 'shop', name: 'waypoint-envoy-bootstrap' })),
    ]);
    return left.every((x) => !x) || undefined;
  });
  await eventually('Service.waypoint withdrawn', () => (publishedService('shop/web.shop.svc.cluster.local')?.waypoint ? undefined : true));
  await eventually('waypoint xDS store dropped', () => !cp.controller!.waypointStores.has('shop/waypoint'));
  const s = await eventually('Service condition NotFound', async () => {
    const x = await core.readNamespacedService({ namespace: 'shop', name: 'web' });
    return cond(x.status?.conditions, 'istio.io/WaypointBound')?.reason === 'NotFound' ? x : undefined;
  });
  t.truthy(s);
});
