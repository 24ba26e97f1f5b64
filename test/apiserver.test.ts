// The embedded Kubernetes API server against the real @kubernetes/client-node client.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException, AppsV1Api, CoreV1Api, CustomObjectsApi, DiscoveryV1Api, KubernetesObjectApi, PatchStrategy, Watch, makeInformer,
  setHeaderOptions, type KubernetesObject, type V1Pod, type V1EndpointSlice, type ListWatch,
} from '@kubernetes/client-node';
import { apply } from '../waypoint-controller/apiserver/apply.js';
import { start, type ApiServer, type ApiServerOptions } from '../waypoint-controller/apiserver/index.js';

// ---------------------------------------------------------------- helpers

const servers: ApiServer[] = [];
const aborts: AbortController[] = [];
const informers: ListWatch<KubernetesObject>[] = [];
const dirs: string[] = [];

async function server(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const s = await start({ bookmarkIntervalMs: 100, ...opts });
  servers.push(s);
  return s;
}

test.after.always(async () => {
  for (const i of informers) await i.stop();
  for (const a of aborts) a.abort();
  await Promise.all(servers.map((s) => s.close()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'ambit-apiserver-'));
  dirs.push(d);
  return d;
}

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The Status object of a failed client call. */
async function statusOf(p: Promise<unknown>): Promise<{ code: number; reason: string; message: string; kind: string; details?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof ApiException)) throw e;
    const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
    return body;
  }
  throw new Error('expected the call to fail');
}

interface Ev { type: string; object: KubernetesObject & { code?: number; reason?: string } }

/** Start a raw watch (client Watch class); events collect in the returned array. */
async function watch(s: ApiServer, path: string, query: Record<string, string | number | boolean>): Promise<{ events: Ev[]; done: () => boolean }> {
  const events: Ev[] = [];
  let finished = false;
  const ac = await new Watch(s.kubeConfig()).watch(path, query, (type, object) => events.push({ type, object }), () => { finished = true; });
  aborts.push(ac);
  return { events, done: () => finished };
}

const pod = (name: string, labels: Record<string, string> = {}, extra: Partial<V1Pod> = {}): V1Pod => ({
  metadata: { name, labels },
  spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ name: 'http', containerPort: 8080 }] }], ...extra.spec },
});

async function ns(api: CoreV1Api, name: string): Promise<void> {
  await api.createNamespace({ body: { metadata: { name } } });
}

// ---------------------------------------------------------------- discovery and CRUD

test('discovery serves the kinds; KubernetesObjectApi works for core and custom kinds', async (t) => {
  const s = await server();
  const kc = s.kubeConfig();
  const res = await fetch(`${s.url}/apis`).then((r) => r.json()) as { groups: Array<{ name: string }> };
  t.deepEqual(res.groups.map((g) => g.name).sort(), ['apps', 'authentication.k8s.io', 'discovery.k8s.io', 'gateway.networking.k8s.io', 'security.istio.io']);
  const v1 = await fetch(`${s.url}/api/v1`).then((r) => r.json()) as { resources: Array<{ name: string; namespaced: boolean }> };
  t.is(v1.resources.find((r) => r.name === 'nodes')?.namespaced, false);
  t.is(v1.resources.find((r) => r.name === 'pods')?.namespaced, true);
  t.truthy(v1.resources.find((r) => r.name === 'pods/status'));

  const obj = KubernetesObjectApi.makeApiClient(kc);
  await obj.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'disc' } });
  const created = await obj.create({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'disc' },
    spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['evil'] } }] }] },
  } as KubernetesObject);
  t.truthy(created.metadata?.uid);
  t.truthy(created.metadata?.resourceVersion);
  const read = await obj.read({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'disc' } });
  t.is((read as unknown as { spec: { action: string } }).spec.action, 'DENY');
  await obj.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } });
  const nodes = await obj.list('v1', 'Node');
  t.deepEqual(nodes.items.map((n) => n.metadata?.name), ['node-a']);
  await obj.delete({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'disc' } });
  t.is((await statusOf(obj.read({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'disc' } }))).code, 404);

  // CustomObjectsApi for gateway API kinds, AppsV1Api for Deployments.
  const custom = kc.makeApiClient(CustomObjectsApi);
  await custom.createNamespacedCustomObject({
    group: 'gateway.networking.k8s.io', version: 'v1', namespace: 'disc', plural: 'gateways',
    body: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint' }, spec: { gatewayClassName: 'istio-waypoint', listeners: [] } },
  });
  await custom.createNamespacedCustomObject({
    group: 'gateway.networking.k8s.io', version: 'v1', namespace: 'disc', plural: 'httproutes',
    body: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r1' }, spec: { parentRefs: [{ name: 'waypoint' }] } },
  });
  const gws = await custom.listNamespacedCustomObject({ group: 'gateway.networking.k8s.io', version: 'v1', namespace: 'disc', plural: 'gateways' }) as { items: KubernetesObject[] };
  t.deepEqual(gws.items.map((g) => g.metadata?.name), ['waypoint']);
  const apps = kc.makeApiClient(AppsV1Api);
  await apps.createNamespacedDeployment({ namespace: 'disc', body: { metadata: { name: 'web' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } } } });
  t.is((await apps.readNamespacedDeployment({ namespace: 'disc', name: 'web' })).metadata?.generation, 1);
});

test('core CRUD: generateName, optimistic concurrency, delete; errors are Status objects', async (t) => {
  const s = await server();
  const api = s.kubeConfig().makeApiClient(CoreV1Api);
  await ns(api, 'crud');
  const p = await api.createNamespacedPod({ namespace: 'crud', body: { metadata: { generateName: 'web-' }, spec: { containers: [{ name: 'c', image: 'i' }] } } });
  t.regex(p.metadata!.name!, /^web-[a-z0-9]{5}$/);
  t.truthy(p.metadata?.uid);
  t.true(p.metadata?.creationTimestamp instanceof Date);
  t.is(p.status?.phase, 'Pending');
  t.is(p.spec?.serviceAccountName, 'default');

  const name = p.metadata!.name!;
  const updated = await api.replaceNamespacedPod({ namespace: 'crud', name, body: { ...p, metadata: { ...p.metadata, labels: { v: '2' } } } });
  t.true(Number(updated.metadata!.resourceVersion) > Number(p.metadata!.resourceVersion));
  const stale = await statusOf(api.replaceNamespacedPod({ namespace: 'crud', name, body: { ...p, metadata: { ...p.metadata, labels: { v: '3' } } } }));
  t.is(stale.code, 409);
  t.is(stale.reason, 'Conflict');
  t.is(stale.kind, 'Status');

  const dup = await statusOf(api.createNamespacedPod({ namespace: 'crud', body: { metadata: { name }, spec: { containers: [] } } }));
  t.is(dup.code, 409);
  t.is(dup.reason, 'AlreadyExists');
  const bad = await statusOf(api.createNamespacedPod({ namespace: 'crud', body: { metadata: { name: 'Bad_Name' }, spec: { containers: [] } } }));
  t.is(bad.code, 422);
  t.is(bad.reason, 'Invalid');
  t.regex(bad.message, /metadata.name/);
  const noName = await statusOf(api.createNamespacedPod({ namespace: 'crud', body: { metadata: {}, spec: { containers: [] } } }));
  t.is(noName.code, 422);
  const noNs = await statusOf(api.createNamespacedPod({ namespace: 'nope', body: { metadata: { name: 'x' }, spec: { containers: [] } } }));
  t.is(noNs.code, 404);
  const badSel = await statusOf(api.listNamespacedPod({ namespace: 'crud', labelSelector: 'a in (b' }));
  t.is(badSel.code, 400);
  t.is(badSel.reason, 'BadRequest');
  const badField = await statusOf(api.listNamespacedPod({ namespace: 'crud', fieldSelector: 'spec.nope=x' }));
  t.is(badField.code, 400);

  const raw = await fetch(`${s.url}/api/v1/namespaces/crud/pods/${name}`, { method: 'POST', body: '{}' });
  t.is(raw.status, 405);
  t.is((await raw.json() as { reason: string }).reason, 'MethodNotAllowed');
  const malformed = await fetch(`${s.url}/api/v1/namespaces/crud/pods`, { method: 'POST', body: '{not json', headers: { 'content-type': 'application/json' } });
  t.is(malformed.status, 400);
  const unknown = await fetch(`${s.url}/api/v1/widgets`);
  t.is(unknown.status, 404);

  await api.deleteNamespacedPod({ namespace: 'crud', name });
  const nf = await statusOf(api.readNamespacedPod({ namespace: 'crud', name }));
  t.is(nf.code, 404);
  t.is(nf.reason, 'NotFound');
  t.is(nf.message, `pods "${name}" not found`);
});

// ---------------------------------------------------------------- list / watch

test('watch resumes from a list resourceVersion with ADDED/MODIFIED/DELETED', async (t) => {
  const s = await server();
  const api = s.kubeConfig().makeApiClient(CoreV1Api);
  await ns(api, 'w');
  await api.createNamespacedPod({ namespace: 'w', body: pod('a') });
  const list = await api.listNamespacedPod({ namespace: 'w' });
  const rv = list.metadata!.resourceVersion!;
  t.deepEqual(list.items.map((p) => p.metadata?.name), ['a']);
  // Changes made before the watch starts are delivered from history.
  await api.createNamespacedPod({ namespace: 'w', body: pod('b') });
  await api.patchNamespacedPod({ namespace: 'w', name: 'a', body: { metadata: { labels: { x: 'y' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  await api.deleteNamespacedPod({ namespace: 'w', name: 'b' });
  const w = await watch(s, '/api/v1/namespaces/w/pods', { resourceVersion: rv });
  await waitFor('3 events', () => w.events.length >= 3);
  t.deepEqual(w.events.map((e) => `${e.type} ${e.object.metadata?.name}`), ['ADDED b', 'MODIFIED a', 'DELETED b']);
  const rvs = w.events.map((e) => Number(e.object.metadata?.resourceVersion));
  t.true(rvs.every((v, i) => i === 0 || v > rvs[i - 1]!));
  // Live events follow.
  await api.createNamespacedPod({ namespace: 'w', body: pod('c') });
  await waitFor('live event', () => w.events.length >= 4);
  t.is(w.events[3]!.type, 'ADDED');
  // A watch without resourceVersion starts with the current objects.
  const w2 = await watch(s, '/api/v1/namespaces/w/pods', {});
  await waitFor('initial', () => w2.events.length >= 2);
  t.deepEqual(w2.events.map((e) => `${e.type} ${e.object.metadata?.name}`), ['ADDED a', 'ADDED c']);
  // timeoutSeconds ends the stream.
  const w3 = await watch(s, '/api/v1/namespaces/w/pods', { resourceVersion: rv, timeoutSeconds: 1 });
  await waitFor('timeout', () => w3.done(), 4000);
  t.pass();
});

test('expired resourceVersion: watch gets ERROR 410 Expired, list Exact gets 410', async (t) => {
  const s = await server({ historySize: 5 });
  const api = s.kubeConfig().makeApiClient(CoreV1Api);
  await ns(api, 'old');
  const rv = (await api.listNamespacedPod({ namespace: 'old' })).metadata!.resourceVersion!;
  for (let i = 0; i < 8; i++) await api.createNamespacedPod({ namespace: 'old', body: pod(`p${i}`) });
  const w = await watch(s, '/api/v1/namespaces/old/pods', { resourceVersion: rv });
  await waitFor('error event', () => w.events.length >= 1 && w.done());
  t.is(w.events[0]!.type, 'ERROR');
  t.is(w.events[0]!.object.code, 410);
  t.is(w.events[0]!.object.reason, 'Expired');
  const st = await statusOf(api.listNamespacedPod({ namespace: 'old', resourceVersion: rv, resourceVersionMatch: 'Exact' }));
  t.is(st.code, 410);
  t.is(st.reason, 'Expired');
  // A recent version still resumes.
  const recent = (await api.listNamespacedPod({ namespace: 'old' })).metadata!.resourceVersion!;
  const ok = await watch(s, '/api/v1/namespaces/old/pods', { resourceVersion: recent });
  await api.deleteNamespacedPod({ namespace: 'old', name: 'p0' });
  await waitFor('delete', () => ok.events.length >= 1);
  t.is(ok.events[0]!.type, 'DELETED');
});

test('bookmarks arrive with allowWatchBookmarks and carry the current resourceVersion', async (t) => {
  const s = await server({ bookmarkIntervalMs: 50 });
  const api = s.kubeConfig().makeApiClient(CoreV1Api);
  const rv = (await api.listNamespace()).metadata!.resourceVersion!;
  const w = await watch(s, '/api/v1/namespaces', { resourceVersion: rv, allowWatchBookmarks: true });
  await ns(api, 'bm');
  await waitFor('bookmark', () => w.events.some((e) => e.type === 'BOOKMARK' && Number(e.object.metadata?.resourceVersion) > Number(rv)));
  const b = w.events.find((e) => e.type === 'BOOKMARK')!;
  t.is(b.object.kind, 'Namespace');
  const plain = await watch(s, '/api/v1/namespaces', { resourceVersion: rv });
  await new Promise((r) => setTimeout(r, 200));
  t.false(plain.events.some((e) => e.type === 'BOOKMARK'));
});

test('informer sees add/update/delete and survives a relist after its version expired', async (t) => {
  const s = await server({ historySize: 10 });
  const kc = s.kubeConfig();
  const api = kc.makeApiClient(CoreV1Api);
  await ns(api, 'inf');
  await ns(api, 'churn');
  await api.createNamespacedPod({ namespace: 'inf', body: pod('first') });
  const inf = makeInformer(kc, '/api/v1/namespaces/inf/pods', () => api.listNamespacedPod({ namespace: 'inf' }));
  informers.push(inf as unknown as ListWatch<KubernetesObject>);
  const seen: string[] = [];
  inf.on('add', (p) => seen.push(`add ${p.metadata?.name}`));
  inf.on('update', (p) => seen.push(`update ${p.metadata?.name} ${p.metadata?.labels?.v ?? ''}`));
  inf.on('delete', (p) => seen.push(`delete ${p.metadata?.name}`));
  inf.on('error', (e) => seen.push(`error ${String(e)}`));
  await inf.start();
  await waitFor('initial add', () => seen.includes('add first'));
  await api.createNamespacedPod({ namespace: 'inf', body: pod('second') });
  await api.patchNamespacedPod({ namespace: 'inf', name: 'second', body: { metadata: { labels: { v: '1' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  await api.deleteNamespacedPod({ namespace: 'inf', name: 'first' });
  await waitFor('live events', () => seen.includes('delete first'));
  t.deepEqual(seen, ['add first', 'add second', 'update second 1', 'delete first']);

  // Cut the watch and, before the client can reconnect, change things and push its version out of history.
  seen.length = 0;
  const podType = s.registry.forKind('v1', 'Pod')!;
  s.dropWatches();
  s.ops.delete(podType, 'inf', 'second', undefined);
  s.ops.create(podType, 'inf', pod('third'));
  for (let i = 0; i < 12; i++) s.ops.create(podType, 'churn', pod(`c${i}`));
  await waitFor('relist', () => seen.includes('add third') && seen.includes('delete second'), 8000);
  t.deepEqual(inf.list('inf').map((p) => p.metadata?.name), ['third']);
  // And it keeps watching after the relist.
  await api.createNamespacedPod({ namespace: 'inf', body: pod('fourth') });
  await waitFor('after relist', () => seen.includes('add fourth'), 8000);
  t.false(seen.some((x) => x.startsWith('error')));
});

// ---------------------------------------------------------------- writes

test('server-side apply creates, then updates, removes dropped fields, and reports conflicts', async (t) => {
  const s = await server();
  const kc = s.kubeConfig();
  const api = kc.makeApiClient(CoreV1Api);
  const obj = KubernetesObjectApi.makeApiClient(kc);
  await ns(api, 'ssa');
  const svc = (labels: Record<string, string>, port = 80): KubernetesObject => ({
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'ssa', labels },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port, targetPort: 'http' }] },
  } as KubernetesObject);
  const created = await obj.patch(svc({ a: '1', b: '2' }), undefined, undefined, 'deployer', undefined, PatchStrategy.ServerSideApply);
  t.deepEqual(created.metadata?.labels, { a: '1', b: '2' });
  t.regex((created as unknown as { spec: { clusterIP: string } }).spec.clusterIP, /^10\.96\./);
  t.is(created.metadata?.managedFields?.[0]?.manager, 'deployer');
  t.is(created.metadata?.managedFields?.[0]?.operation, 'Apply');
  const updated = await obj.patch(svc({ a: '2' }, 81), undefined, undefined, 'deployer', undefined, PatchStrategy.ServerSideApply);
  t.deepEqual(updated.metadata?.labels, { a: '2' });
  t.is((updated as unknown as { spec: { ports: Array<{ port: number }> } }).spec.ports[0]!.port, 81);
  t.is(updated.metadata?.uid, created.metadata?.uid);
  t.true(Number(updated.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion));
  // Another manager: a disjoint field is fine, a differing owned field conflicts unless forced.
  await api.patchNamespacedService({ name: 'web', namespace: 'ssa', fieldManager: 'other', body: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', labels: { c: '3' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply));
  const conflict = await statusOf(api.patchNamespacedService({ name: 'web', namespace: 'ssa', fieldManager: 'other', body: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', labels: { a: 'mine' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply)));
  t.is(conflict.code, 409);
  t.regex(conflict.message, /deployer/);
  const forced = await api.patchNamespacedService({ name: 'web', namespace: 'ssa', fieldManager: 'other', force: true, body: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', labels: { a: 'mine', c: '3' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply));
  t.deepEqual(forced.metadata?.labels, { a: 'mine', c: '3' });
  // The deployer lost ownership of `a`: its next apply without `a` leaves it in place.
  const after = await obj.patch(svc({}, 81), undefined, undefined, 'deployer', undefined, PatchStrategy.ServerSideApply);
  t.deepEqual(after.metadata?.labels, { a: 'mine', c: '3' });
  // A manager that stops applying a field it alone owns removes it.
  const dropped = await api.patchNamespacedService({ name: 'web', namespace: 'ssa', fieldManager: 'other', body: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', labels: { a: 'mine' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply));
  t.deepEqual(dropped.metadata?.labels, { a: 'mine' });
  // A no-op apply does not bump the resourceVersion.
  const again = await api.patchNamespacedService({ name: 'web', namespace: 'ssa', fieldManager: 'other', body: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', labels: { a: 'mine' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply));
  t.is(again.metadata?.resourceVersion, dropped.metadata?.resourceVersion);
  const missingManager = await fetch(`${s.url}/api/v1/namespaces/ssa/services/web`, { method: 'PATCH', headers: { 'content-type': 'application/apply-patch+yaml' }, body: 'apiVersion: v1\nkind: Service\n' });
  t.is(missingManager.status, 400);
});

test('server-side apply: re-applying the same fields later keeps the manager entry (and so the object) unchanged', (t) => {
  const base = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } };
  const applied = { ...base, data: { a: '1' } };
  const first = apply({ live: base, applied, manager: 'm', force: false, apiVersion: 'v1', managedFields: [], now: '2026-01-01T00:00:00Z' });
  const again = apply({ live: first.object, applied, manager: 'm', force: false, apiVersion: 'v1', managedFields: first.managedFields, now: '2026-01-01T00:00:01Z' });
  t.deepEqual(again.managedFields, first.managedFields, 'a no-op apply one second later');
  const changed = apply({ live: first.object, applied: { ...base, data: { a: '1', b: '2' } }, manager: 'm', force: false, apiVersion: 'v1', managedFields: first.managedFields, now: '2026-01-01T00:00:02Z' });
  t.is(changed.managedFields[0]!.time, '2026-01-01T00:00:02Z', 'owning other fields is a new entry time');
});

test('merge patch and JSON patch; status and spec are updated independently', async (t) => {
  const s = await server();
  const api = s.kubeConfig().makeApiClient(CoreV1Api);
  await ns(api, 'st');
  await api.createNamespacedPod({ namespace: 'st', body: pod('p', { app: 'x' }) });
  const merged = await api.patchNamespacedPod({ namespace: 'st', name: 'p', body: { metadata: { labels: { app: null, tier: 'web' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  t.deepEqual(merged.metadata?.labels, { tier: 'web' });
  const jp = await api.patchNamespacedPod({ namespace: 'st', name: 'p', body: [{ op: 'add', path: '/metadata/annotations', value: { a: 'b' } }] });
  t.deepEqual(jp.metadata?.annotations, { a: 'b' });

  const cur = await api.readNamespacedPod({ namespace: 'st', name: 'p' });
  const st = await api.replaceNamespacedPodStatus({
    namespace: 'st', name: 'p',
    body: { ...cur, spec: { ...cur.spec!, containers: [{ name: 'app', image: 'changed:2' }] }, status: { phase: 'Running', podIP: '10.0.0.5', conditions: [{ type: 'Ready', status: 'True' }] } },
  });
  t.is(st.status?.phase, 'Running');
  t.is(st.spec?.containers[0]!.image, 'app:1', 'status update leaves spec alone');
  const gen = st.metadata?.generation;
  const sp = await api.replaceNamespacedPod({ namespace: 'st', name: 'p', body: { ...st, spec: { ...st.spec!, activeDeadlineSeconds: 30 }, status: { phase: 'Failed' } } });
  t.is(sp.status?.phase, 'Running', 'main endpoint ignores status');
  t.is(sp.spec?.activeDeadlineSeconds, 30);
  t.is(sp.metadata?.generation, gen! + 1);
  const ps = await api.patchNamespacedPodStatus({ namespace: 'st', name: 'p', body: { status: { phase: 'Succeeded' }, spec: { activeDeadlineSeconds: 99 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  t.is(ps.status?.phase, 'Succeeded');
  t.is(ps.spec?.activeDeadlineSeconds, 30);
  // Status via server-side apply on the subresource.
  const applied = await api.patchNamespacedPodStatus({ namespace: 'st', name: 'p', fieldManager: 'kubelet', body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, status: { podIP: '10.0.0.6' } } },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply));
  t.is(applied.status?.podIP, '10.0.0.6');
  t.is(applied.status?.phase, 'Succeeded');
});

test('label and field selectors on list and watch', async (t) => {
  const s = await server();
  const api = s.kubeConfig().makeApiClient(CoreV1Api);
  await ns(api, 'sel1');
  await ns(api, 'sel2');
  await api.createNamespacedPod({ namespace: 'sel1', body: pod('a', { app: 'web', tier: 'fe' }, { spec: { containers: [], nodeName: 'node-a' } }) });
  await api.createNamespacedPod({ namespace: 'sel1', body: pod('b', { app: 'db' }, { spec: { containers: [], nodeName: 'node-b' } }) });
  await api.createNamespacedPod({ namespace: 'sel2', body: pod('c', { app: 'web' }, { spec: { containers: [], nodeName: 'node-a' } }) });
  const names = async (o: { labelSelector?: string; fieldSelector?: string }) =>
    (await api.listPodForAllNamespaces(o)).items.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`);
  t.deepEqual(await names({ fieldSelector: 'spec.nodeName=node-a' }), ['sel1/a', 'sel2/c']);
  t.deepEqual(await names({ fieldSelector: 'spec.nodeName!=node-a' }), ['sel1/b']);
  t.deepEqual(await names({ fieldSelector: 'metadata.namespace=sel1,metadata.name=b' }), ['sel1/b']);
  t.deepEqual(await names({ labelSelector: 'app=web' }), ['sel1/a', 'sel2/c']);
  t.deepEqual(await names({ labelSelector: 'app==web,tier' }), ['sel1/a']);
  t.deepEqual(await names({ labelSelector: 'app!=web' }), ['sel1/b']);
  t.deepEqual(await names({ labelSelector: 'app in (db, web),!tier' }), ['sel1/b', 'sel2/c']);
  t.deepEqual(await names({ labelSelector: 'app notin (web)' }), ['sel1/b']);
  t.deepEqual((await api.listNamespacedPod({ namespace: 'sel1', labelSelector: 'app=web' })).items.map((p) => p.metadata?.name), ['a']);
  // Paging.
  const page1 = await api.listPodForAllNamespaces({ limit: 2 });
  t.is(page1.items.length, 2);
  const page2 = await api.listPodForAllNamespaces({ limit: 2, _continue: page1.metadata!._continue! });
  t.deepEqual(page2.items.map((p) => p.metadata?.name), ['c']);

  // A watch with a label selector sees relabelling as ADDED / DELETED.
  const rv = (await api.listNamespacedPod({ namespace: 'sel1' })).metadata!.resourceVersion!;
  const w = await watch(s, '/api/v1/namespaces/sel1/pods', { resourceVersion: rv, labelSelector: 'app=web' });
  const mp = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  await api.patchNamespacedPod({ namespace: 'sel1', name: 'b', body: { metadata: { labels: { app: 'web' } } } }, mp);
  await api.patchNamespacedPod({ namespace: 'sel1', name: 'b', body: { metadata: { labels: { x: '1' } } } }, mp);
  await api.patchNamespacedPod({ namespace: 'sel1', name: 'a', body: { metadata: { labels: { app: 'other' } } } }, mp);
  await waitFor('3 events', () => w.events.length >= 3);
  t.deepEqual(w.events.map((e) => `${e.type} ${e.object.metadata?.name}`), ['ADDED b', 'MODIFIED b', 'DELETED a']);
  const fw = await watch(s, '/api/v1/pods', { fieldSelector: 'spec.nodeName=node-b' });
  await waitFor('field watch', () => fw.events.length >= 1);
  t.deepEqual(fw.events.map((e) => e.object.metadata?.name), ['b']);
});

// ---------------------------------------------------------------- endpoints controller

test('endpoints controller builds EndpointSlices with readiness and named ports', async (t) => {
  const s = await server();
  const kc = s.kubeConfig();
  const api = kc.makeApiClient(CoreV1Api);
  const disc = kc.makeApiClient(DiscoveryV1Api);
  await ns(api, 'ep');
  const svc = await api.createNamespacedService({ namespace: 'ep', body: {
    metadata: { name: 'web' },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'metrics', port: 9100, targetPort: 9100 }] },
  } });
  const mkPod = async (name: string, port: number, node: string, ip: string, ready: boolean) => {
    const p = await api.createNamespacedPod({ namespace: 'ep', body: {
      metadata: { name, labels: { app: 'web' } },
      spec: { nodeName: node, containers: [{ name: 'app', image: 'i', ports: [{ name: 'http', containerPort: port }] }] },
    } });
    await api.replaceNamespacedPodStatus({ namespace: 'ep', name, body: { ...p, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } } });
  };
  await mkPod('web-1', 8080, 'node-a', '10.1.0.1', true);
  await mkPod('web-2', 8080, 'node-b', '10.1.0.2', false);
  await mkPod('web-3', 9090, 'node-a', '10.1.0.3', true);
  await api.createNamespacedPod({ namespace: 'ep', body: pod('other', { app: 'db' }) });

  const slices = async () => (await disc.listNamespacedEndpointSlice({ namespace: 'ep', labelSelector: 'kubernetes.io/service-name=web' })).items;
  const all = await waitFor('slices', async () => {
    const ss = await slices();
    return ss.reduce((n, sl) => n + (sl.endpoints?.length ?? 0), 0) === 3 && ss;
  });
  t.is(all.length, 2, 'pods resolving the named port differently go to different slices');
  const byPort = (p: number) => all.find((sl: V1EndpointSlice) => sl.ports?.some((x) => x.name === 'http' && x.port === p))!;
  const s8080 = byPort(8080);
  t.deepEqual(s8080.ports?.map((p) => [p.name, p.port, p.protocol]), [['http', 8080, 'TCP'], ['metrics', 9100, 'TCP']]);
  t.deepEqual((s8080.endpoints ?? []).map((e) => [e.addresses[0], e.conditions?.ready, e.nodeName, e.targetRef?.name]), [
    ['10.1.0.1', true, 'node-a', 'web-1'], ['10.1.0.2', false, 'node-b', 'web-2'],
  ]);
  t.deepEqual((byPort(9090).endpoints ?? []).map((e) => e.targetRef?.name), ['web-3']);
  t.is(s8080.addressType, 'IPv4');
  t.is(s8080.metadata?.ownerReferences?.[0]?.uid, svc.metadata?.uid);
  t.is(s8080.metadata?.labels?.['kubernetes.io/service-name'], 'web');

  // Readiness follows the pod.
  await api.patchNamespacedPodStatus({ namespace: 'ep', name: 'web-2', body: { status: { conditions: [{ type: 'Ready', status: 'True' }] } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  await waitFor('ready', async () => (await slices()).flatMap((sl) => sl.endpoints ?? []).find((e) => e.targetRef?.name === 'web-2')?.conditions?.ready === true);
  // Pod deletion removes its endpoint; service deletion removes the slices.
  await api.deleteNamespacedPod({ namespace: 'ep', name: 'web-3' });
  await waitFor('web-3 gone', async () => (await slices()).length === 1);
  await api.deleteNamespacedService({ namespace: 'ep', name: 'web' });
  await waitFor('slices gone', async () => (await slices()).length === 0);
  t.pass();
});

// ---------------------------------------------------------------- seeding, persistence, auth

test('seeding from YAML and persistence across a restart with stateDir', async (t) => {
  const seedDir = tmp();
  const stateDir = tmp();
  writeFileSync(join(seedDir, 'app.yaml'), [
    'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    istio.io/dataplane-mode: ambient',
    'apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  selector:\n    app: api\n  ports:\n  - port: 80',
    'apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: api-1\n    namespace: shop\n    labels:\n      app: api\n  spec:\n    containers: []\n  status:\n    podIP: 10.2.0.1\n    conditions:\n    - type: Ready\n      status: "True"',
  ].join('\n---\n'));
  const s1 = await server({ seedDir, stateDir });
  const api1 = s1.kubeConfig().makeApiClient(CoreV1Api);
  t.is((await api1.readNamespace({ name: 'shop' })).metadata?.labels?.['istio.io/dataplane-mode'], 'ambient');
  t.is((await api1.readNamespacedPod({ namespace: 'shop', name: 'api-1' })).status?.podIP, '10.2.0.1', 'seeded status is kept');
  await api1.createNamespacedSecret({ namespace: 'shop', body: { metadata: { name: 'tok' }, stringData: { a: 'b' } } });
  await api1.deleteNamespacedPod({ namespace: 'shop', name: 'api-1' });
  const rvBefore = Number((await api1.listNamespace()).metadata!.resourceVersion);
  const ip = (await api1.readNamespacedService({ namespace: 'shop', name: 'api' })).spec?.clusterIP;
  await s1.close();

  const s2 = await server({ seedDir, stateDir });
  const api2 = s2.kubeConfig().makeApiClient(CoreV1Api);
  t.is((await api2.readNamespacedSecret({ namespace: 'shop', name: 'tok' })).metadata?.name, 'tok');
  t.is((await statusOf(api2.readNamespacedPod({ namespace: 'shop', name: 'api-1' }))).code, 404, 'a kept state wins over the seed');
  t.is((await api2.readNamespacedService({ namespace: 'shop', name: 'api' })).spec?.clusterIP, ip);
  const ns2 = await api2.createNamespace({ body: { metadata: { name: 'later' } } });
  t.true(Number(ns2.metadata?.resourceVersion) > rvBefore, 'resourceVersion counter continues');
});

test('bearer token is required when configured', async (t) => {
  const s = await server({ token: 's3cret' });
  const api = s.kubeConfig().makeApiClient(CoreV1Api);
  t.true((await api.listNamespace()).items.length > 0);
  const r = await fetch(`${s.url}/api/v1/namespaces`);
  t.is(r.status, 401);
});
