// The demo's second half (`npm run demo`): a waypoint for the backend. What the user applies (a Gateway of class
// istio-waypoint, an HTTPRoute, an L7 AuthorizationPolicy) is Kubernetes YAML, printed as it is applied; the
// controller provisions the waypoint, the lab kubelet runs its Deployment (real Envoy in a spare pod netns), and
// the demo measures what the waypoint does to HTTP from frontend/client-1 to the backend Service.
import { AppsV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node';
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { httpIn, httpRequest, type HttpAnswer } from './apps.js';
import type { Cluster } from './cluster.js';
import type { LabControlPlane } from './control-plane.js';
import type { LabKubelet } from './kubelet.js';
import { eventually } from './ztunnel-proc.js';

export const GATEWAY_YAML = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: backend}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
`;

export const ROUTE_YAML = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: backend}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: echo-v2, port: 80}]
  - backendRefs: [{name: echo-v1, port: 80, weight: 90}, {name: echo-v2, port: 80, weight: 10}]
`;

export const POLICY_YAML = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: backend}
spec:
  targetRefs: [{kind: Service, group: "", name: echo}]
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
`;

/** Requests of the weighted split. Binomial(200, 0.1) for v2: mean 20, sd 4.2. */
export const SPLIT_CALLS = 200;
export const HEADER_CALLS = 20;

const GW = { group: 'gateway.networking.k8s.io', version: 'v1' };
const NS = 'backend';
const ECHO = `echo.${NS}.svc.cluster.local`;
const indent = (text: string, by: string) => text.trimEnd().split('\n').map((l) => by + l).join('\n');
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
/** httpServer's answer: "<pod> (saw the call come from <ip>)". */
const who = (a: HttpAnswer) => a.body.split(' ')[0] ?? '';
const version = (pod: string) => /-(v\d+)-/.exec(pod)?.[1] ?? pod;

interface Conditioned {
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

export async function waypointDemo(cp: LabControlPlane, cluster: Cluster, kubelet: LabKubelet, vip: string): Promise<void> {
  const kc = cp.api!.kubeConfig();
  const custom = kc.makeApiClient(CustomObjectsApi);
  const apps = kc.makeApiClient(AppsV1Api);
  const core = cp.core!;
  const client = cluster.pod('client-1');
  const call = (method: string, path: string, headers: Record<string, string> = {}) =>
    httpRequest(client.ns, { method, host: vip, port: 80, path, headers, timeoutMs: 10_000, keepAlive: true });
  const applyYaml = async (yaml: string, plural: string) => {
    const body = parse(yaml) as KubernetesObject;
    const group = body.apiVersion!.split('/')[0]!;
    await custom.createNamespacedCustomObject({ group, version: 'v1', plural, namespace: NS, body });
  };

  // ---------------------------------------------------------------- 1. the waypoint
  console.log('\nWaypoint for the backend (L7 proxy: the controller runs Envoy for it)');
  console.log('  you apply:');
  console.log(indent(GATEWAY_YAML, '    | '));
  const t0 = Date.now();
  await applyYaml(GATEWAY_YAML, 'gateways');
  const [sa, cm, dep, svc] = await eventually(
    'the waypoint objects',
    async () => {
      const got = await Promise.all([
        core.readNamespacedServiceAccount({ namespace: NS, name: 'waypoint' }).catch(() => undefined),
        core.readNamespacedConfigMap({ namespace: NS, name: 'waypoint-envoy-bootstrap' }).catch(() => undefined),
        apps.readNamespacedDeployment({ namespace: NS, name: 'waypoint' }).catch(() => undefined),
        core.readNamespacedService({ namespace: NS, name: 'waypoint' }).catch(() => undefined),
      ]);
      return got.every(Boolean) ? got : undefined;
    },
    20_000,
  );
  const container = dep!.spec!.template.spec!.containers[0]!;
  console.log(`  the controller created (owned by the Gateway, after ${secs(Date.now() - t0)}):`);
  console.log(`    ServiceAccount ${NS}/${sa!.metadata!.name} (the waypoint's identity: spiffe://cluster.local/ns/${NS}/sa/${sa!.metadata!.name})`);
  console.log(`    ConfigMap ${NS}/${cm!.metadata!.name} (Envoy bootstrap: delta ADS over TLS to the controller, with the pod's bound token)`);
  console.log(`    Deployment ${NS}/${dep!.metadata!.name}: ${dep!.spec!.replicas} replica, container ${container.name} runs \`${container.command?.join(' ')}\` as uid ${container.securityContext?.runAsUser}`);
  console.log(`    Service ${NS}/${svc!.metadata!.name}: ClusterIP ${svc!.spec!.clusterIP}, ports ${svc!.spec!.ports!.map((p) => `${p.port}/${p.name}`).join(', ')}`);
  const pod = await eventually('the waypoint pod ready', () => kubelet.podsOf(NS, 'waypoint').find((p) => p.ready), 45_000).catch((e: Error) => {
    const log = kubelet.podsOf(NS, 'waypoint')[0]?.logPath;
    const tail = log && existsSync(log) ? readFileSync(log, 'utf8').trimEnd().split('\n').slice(-10).join('\n') : '(no pod started)';
    throw new Error(`${e.message}; the waypoint's Envoy log ends with:\n${tail}`);
  });
  const info = await httpIn(pod.slot.ns, 'GET', 15000, '/server_info').then((r) => JSON.parse(r.body) as { version?: string }).catch(() => ({ version: undefined }));
  const envoyVersion = /\/(\d+\.\d+\.\d+)\//.exec(info.version ?? '')?.[1] ?? 'unknown version';
  console.log(`  the lab kubelet runs pod ${NS}/${pod.name} on ${pod.slot.node} (${pod.slot.ip}): Envoy ${envoyVersion}, ready after ${secs(Date.now() - t0)} (its config came over xDS)`);
  const addresses = await eventually('Gateway Programmed', async () => {
    const g = (await custom.getNamespacedCustomObject({ ...GW, plural: 'gateways', namespace: NS, name: 'waypoint' })) as Conditioned & { status?: { addresses?: { value: string }[] } };
    return g.status?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True') ? g.status.addresses : undefined;
  }, 30_000);
  console.log(`  Gateway ${NS}/waypoint: Programmed=True, addresses ${addresses!.map((a) => a.value).join(', ')}`);

  console.log(`  you bind the backend Service to it: kubectl label service -n ${NS} echo istio.io/use-waypoint=waypoint`);
  await core.patchNamespacedService(
    { namespace: NS, name: 'echo', body: { metadata: { labels: { 'istio.io/use-waypoint': 'waypoint' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  const bound = await eventually('Service echo WaypointBound', async () => {
    const s = (await core.readNamespacedService({ namespace: NS, name: 'echo' })) as Conditioned;
    return s.status?.conditions?.find((c) => c.type === 'istio.io/WaypointBound' && c.status === 'True');
  }, 15_000);
  console.log(`  Service ${NS}/echo: ${bound.type}=True (${bound.message})`);
  await eventually('the client ztunnel to learn the waypoint', async () => {
    const dump = JSON.parse((await httpIn(cluster.node(client.node).ns, 'GET', 15000, '/config_dump')).body) as { services: { hostname: string; waypoint?: unknown }[] };
    return dump.services.find((s) => s.hostname === ECHO)?.waypoint;
  }, 15_000);
  const first = await eventually('a call through the waypoint', async () => {
    const r = await call('GET', '/hello').catch(() => undefined);
    return r?.status === 200 ? r : undefined;
  }, 20_000);
  const from = /come from ([\d.]+)/.exec(first.body)?.[1];
  console.log(`  GET http://echo.backend/hello -> ${first.status} from ${who(first)}, which saw the call come from ${from}${from === pod.slot.ip ? ' (the waypoint)' : ''}; the hops:`);
  const out = await eventually('the client ztunnel to log the waypoint hop', () =>
    cluster.zt(client.node).lines('connection complete').find((l) => l.direction === 'outbound' && l['dst.hbone_addr'] === `${pod.slot.ip}:15008`),
  );
  console.log(`    ${client.node} ztunnel: client-1 -> ${out['dst.addr']} sent to the waypoint ${out['dst.hbone_addr']} over HBONE: ${out['src.identity']} -> ${out['dst.identity']}`);
  const inbound = await eventually('a backend ztunnel to log the waypoint as source', () => {
    for (const n of cluster.allNodes()) {
      const l = cluster.zt(n.name).lines('connection complete').find((x) => x.direction === 'inbound' && String(x['src.identity']).endsWith(`/ns/${NS}/sa/waypoint`));
      if (l) return { node: n.name, l };
    }
    return undefined;
  });
  console.log(`    ${inbound.node} ztunnel: waypoint -> ${inbound.l['dst.workload']} over HBONE: ${inbound.l['src.identity']} -> ${inbound.l['dst.identity']} (allowed by only-frontend's waypoint rule)`);

  // ---------------------------------------------------------------- 2, 3. an HTTPRoute
  console.log('\nHTTPRoute: a 90/10 split between echo-v1 and echo-v2, and x-version: v2 always to v2');
  console.log('  you apply:');
  console.log(indent(ROUTE_YAML, '    | '));
  await applyYaml(ROUTE_YAML, 'httproutes');
  const parents = await eventually('HTTPRoute status', async () => {
    const r = (await custom.getNamespacedCustomObject({ ...GW, plural: 'httproutes', namespace: NS, name: 'echo' })) as {
      status?: { parents?: { parentRef: { name: string }; conditions: { type: string; status: string }[] }[] };
    };
    const p = r.status?.parents?.[0];
    return p?.conditions.some((c) => c.type === 'Accepted' && c.status === 'True') ? p : undefined;
  }, 15_000);
  console.log(`  HTTPRoute ${NS}/echo, parent Service ${parents.parentRef.name}: ${parents.conditions.map((c) => `${c.type}=${c.status}`).join(', ')}`);
  await eventually('the waypoint Envoy to have the route', async () => (await httpIn(pod.slot.ns, 'GET', 15000, '/config_dump')).body.includes('x-version'), 15_000);
  const split = new Map<string, number>();
  for (let i = 0; i < SPLIT_CALLS; i++) {
    const r = await call('GET', `/split/${i}`);
    const key = r.status === 200 ? version(who(r)) : `HTTP ${r.status}`;
    split.set(key, (split.get(key) ?? 0) + 1);
  }
  const pct = (n: number, of: number) => `${((100 * n) / of).toFixed(1)}%`;
  console.log(
    `  ${SPLIT_CALLS} GETs without the header: ${[...split].sort().map(([k, n]) => `${k} ${n} (${pct(n, SPLIT_CALLS)})`).join(', ')} (asked 90/10)`,
  );
  const header = new Map<string, number>();
  for (let i = 0; i < HEADER_CALLS; i++) {
    const r = await call('GET', `/header/${i}`, { 'x-version': 'v2' });
    const key = r.status === 200 ? version(who(r)) : `HTTP ${r.status}`;
    header.set(key, (header.get(key) ?? 0) + 1);
  }
  console.log(`  ${HEADER_CALLS} GETs with x-version: v2: ${[...header].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);

  // ---------------------------------------------------------------- 4. an L7 AuthorizationPolicy
  console.log('\nL7 AuthorizationPolicy on the waypoint: no DELETE on the backend');
  console.log('  you apply:');
  console.log(indent(POLICY_YAML, '    | '));
  await applyYaml(POLICY_YAML, 'authorizationpolicies');
  await eventually('the DENY in effect', async () => (await call('DELETE', '/items/0')).status === 403 || undefined, 15_000);
  const policy = (await custom.getNamespacedCustomObject({ group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespace: NS, name: 'no-delete' })) as Conditioned;
  for (const c of policy.status?.conditions ?? []) console.log(`  AuthorizationPolicy ${NS}/no-delete: ${c.type}=${c.status}${c.message ? ` (${c.message})` : ''}`);
  for (const method of ['DELETE', 'GET']) {
    const answers = new Map<string, number>();
    const said = new Set<string>();
    for (let i = 1; i <= 5; i++) {
      const r = await call(method, `/items/${i}`);
      answers.set(String(r.status), (answers.get(String(r.status)) ?? 0) + 1);
      said.add(r.status === 200 ? who(r) : `"${r.body.trim()}"`);
    }
    const what = [...said].sort().join(', ');
    console.log(`  5 x ${method} /items/N -> ${[...answers].map(([s, n]) => `${n} x ${s}`).join(', ')} (${method === 'GET' ? `answered by ${what}` : what})`);
  }

  // ---------------------------------------------------------------- 5. what the waypoint saw
  console.log(`\nThe waypoint's view (its Envoy's stats: GET ${pod.slot.ip}:15090/stats/prometheus in the waypoint pod)`);
  const stats = parseProm((await httpIn(pod.slot.ns, 'GET', 15090, '/stats/prometheus', pod.slot.ip)).body);
  for (const line of summarise(stats)) console.log(`  ${line}`);
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}

/**
 * A few readable lines: requests by status class, per backend cluster, RBAC, HBONE tunnels. Envoy's default tag
 * extraction cuts a cluster or listener name at its first dot (`inbound-vip|80|http|echo-v1.backend.svc...` becomes
 * the label `inbound-vip|80|http|echo-v1` and the rest goes into the metric name), so metrics are matched by suffix.
 */
function summarise(stats: Sample[]): string[] {
  const of = (kind: 'http' | 'cluster', suffix: string) => (s: Sample) =>
    s.name.startsWith(`envoy_${kind}_`) && (s.name === `envoy_${kind}_${suffix}` || s.name.endsWith(`_${suffix}`)) && !s.name.endsWith(`_external_${suffix}`);
  const sum = (match: (s: Sample) => boolean, pred: (l: Record<string, string>) => boolean = () => true) =>
    stats.filter((s) => match(s) && pred(s.labels)).reduce((n, s) => n + s.value, 0);
  const lines: string[] = [];
  // The HTTP connection manager of the Service's VIP (not the readiness/stats listeners).
  const vipHcm = (l: Record<string, string>) => (l.envoy_http_conn_manager_prefix ?? '').startsWith('inbound-vip|80|http|echo');
  const classes = ['2', '3', '4', '5']
    .map((c) => [c, sum(of('http', 'downstream_rq_xx'), (l) => vipHcm(l) && l.envoy_response_code_class === c)] as const)
    .filter(([, n]) => n > 0);
  lines.push(`HTTP requests for ${ECHO}:80: ${sum(of('http', 'downstream_rq_total'), vipHcm)}, by status ${classes.map(([c, n]) => `${c}xx ${n}`).join(', ')}`);
  const clusters = new Map<string, Map<string, number>>();
  for (const s of stats.filter(of('cluster', 'upstream_rq'))) {
    const name = s.labels.envoy_cluster_name ?? '';
    if (!name.startsWith('inbound-vip|')) continue;
    const host = name.split('|')[3] ?? name;
    const m = clusters.get(host) ?? new Map<string, number>();
    m.set(s.labels.envoy_response_code ?? '?', (m.get(s.labels.envoy_response_code ?? '?') ?? 0) + s.value);
    clusters.set(host, m);
  }
  for (const [host, codes] of [...clusters].sort()) {
    const total = [...codes.values()].reduce((a, b) => a + b, 0);
    const note = host === 'echo' ? ' (the Service itself: before the HTTPRoute)' : '';
    lines.push(`forwarded to ${host}.${NS}: ${total} request${total === 1 ? '' : 's'}, ${[...codes].sort().map(([c, n]) => `${n} x ${c}`).join(', ')}${note}`);
  }
  lines.push(`RBAC (AuthorizationPolicy no-delete): ${sum(of('http', 'rbac_denied'), vipHcm)} denied, ${sum(of('http', 'rbac_allowed'), vipHcm)} allowed`);
  const terminate = (l: Record<string, string>) => l.envoy_http_conn_manager_prefix === 'connect_terminate';
  const originate = (l: Record<string, string>) => (l.envoy_cluster_name ?? '').startsWith('connect_originate|');
  lines.push(
    `HBONE: ${sum(of('http', 'downstream_rq_total'), terminate)} CONNECT tunnels in from the client's ztunnel over ${sum(of('http', 'downstream_cx_total'), terminate)} mTLS connection(s); ` +
      `${sum(of('cluster', 'upstream_cx_total'), originate)} mTLS connection(s) out to the backend pods' ztunnels`,
  );
  return lines;
}
