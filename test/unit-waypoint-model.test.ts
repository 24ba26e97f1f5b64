// Kubernetes objects -> the waypoint model: services and endpoints, HTTPRoutes (rules, precedence, references,
// status), AuthorizationPolicies with targetRefs (attachment, fail-closed translation, status).
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import test from 'ava';
import fc from 'fast-check';
import type { AuthorizationPolicy } from '../waypoint-controller/translate/authorization.js';
import type { HttpRouteRule, PortProtocol, WaypointModel } from '../waypoint-controller/waypoint/model.js';
import { parseGatewayDuration } from '../waypoint-controller/waypoint/translate-duration.js';
import { buildWaypointModel, type WaypointModelInput } from '../waypoint-controller/waypoint/translate-model.js';
import { authorizationPolicyStatus, translatePolicy } from '../waypoint-controller/waypoint/translate-policies.js';
import { compileRoute, httpRouteStatus, orderRules, type RouteContext } from '../waypoint-controller/waypoint/translate-routes.js';
import { portProtocol } from '../waypoint-controller/waypoint/translate-services.js';
import type { HTTPRoute, HTTPRouteRuleSpec, ParentRef, RouteParentStatus } from '../waypoint-controller/waypoint/translate-types.js';

// ---- fixtures ----

function svc(name: string, ns = 'shop', ports: NonNullable<V1Service['spec']>['ports'] = [{ name: 'http', port: 80, targetPort: 'web' as never }]): V1Service {
  return { metadata: { name, namespace: ns }, spec: { clusterIP: `10.96.0.${name.length}`, selector: { app: name }, ports } };
}

function pod(app: string, ip: string, o: { ns?: string; sa?: string; ready?: boolean; phase?: string } = {}): V1Pod {
  return {
    metadata: { name: `${app}-${ip}`, namespace: o.ns ?? 'shop', labels: { app } },
    spec: { ...(o.sa ? { serviceAccountName: o.sa } : {}), containers: [{ name: 'c', ports: [{ name: 'web', containerPort: 8080 }] }] },
    status: { phase: o.phase ?? 'Running', podIP: ip, conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] },
  };
}

const WEB = svc('web');
const API = svc('api');
const DB = svc('db', 'shop', [{ name: 'tcp-pg', port: 5432 }]);
const OTHER = svc('other', 'ops');
const parent = (name = 'web', extra: Partial<ParentRef> = {}): ParentRef => ({ group: '', kind: 'Service', name, ...extra });

function route(name: string, rules: HTTPRouteRuleSpec[], o: { ns?: string; created?: string; parents?: ParentRef[] } = {}): HTTPRoute {
  return {
    metadata: { name, namespace: o.ns ?? 'shop', creationTimestamp: o.created ?? '2026-01-01T00:00:00Z', generation: 3 },
    spec: { parentRefs: o.parents ?? [parent()], rules },
  };
}

const policy = (name: string, spec: AuthorizationPolicy['spec'], ns = 'shop'): AuthorizationPolicy => ({ metadata: { name, namespace: ns }, spec });
const gatewayRef = (name = 'waypoint') => ({ group: 'gateway.networking.k8s.io', kind: 'Gateway', name });

function build(o: Partial<WaypointModelInput> = {}) {
  return buildWaypointModel({
    waypoint: { namespace: 'shop', name: 'waypoint' },
    trustDomain: 'cluster.local',
    domainSuffix: 'cluster.local',
    bound: [WEB, DB],
    services: [WEB, API, DB, OTHER],
    pods: [pod('web', '10.1.0.2', { sa: 'web' }), pod('web', '10.1.0.1', { ready: false }), pod('api', '10.1.0.3'), pod('web', '10.1.0.9', { ns: 'ops' })],
    ...o,
  });
}

const rulesOf = (m: WaypointModel, svcName = 'web', port = 80): HttpRouteRule[] =>
  m.services.find((s) => s.name === svcName)!.ports.find((p) => p.port === port)!.routes;
const condition = (s: RouteParentStatus | undefined, type: string) => s?.conditions.find((c) => c.type === type);
const ctxOf = (services: V1Service[]): RouteContext => ({ services: new Map(services.map((s) => [`${s.metadata!.namespace}/${s.metadata!.name}`, s])), referenceGrants: [], domainSuffix: 'cluster.local' });

// ---- services and endpoints ----

test('port protocol: appProtocol first, else the name prefix, as Istio; undeclared -> unknown (sniffed)', (t) => {
  const table: [{ name?: string; appProtocol?: string; port?: number }, PortProtocol][] = [
    [{ name: 'http' }, 'http'],
    [{ name: 'http-web' }, 'http'],
    [{ name: 'http2' }, 'http'],
    [{ name: 'http_proxy' }, 'http'],
    [{ name: 'grpc-api' }, 'http'],
    [{ name: 'grpc-web' }, 'http'],
    [{ name: 'grpc-web-x' }, 'http'],
    [{ name: 'h2c' }, 'http'],
    [{ name: 'HTTP' }, 'http'],
    [{ name: 'https' }, 'tcp'],
    [{ name: 'tcp-http' }, 'tcp'],
    [{ name: 'tls-x' }, 'tcp'],
    [{ name: 'mongo' }, 'tcp'],
    [{ name: 'mysql' }, 'tcp'],
    [{ name: 'redis-main' }, 'tcp'],
    [{ name: 'http', appProtocol: 'tcp' }, 'tcp'],
    [{ name: 'http', appProtocol: 'kubernetes.io/wss' }, 'tcp'],
    [{ name: 'web', appProtocol: 'http' }, 'http'],
    [{ name: 'web', appProtocol: 'kubernetes.io/h2c' }, 'http'],
    [{ name: 'web', appProtocol: 'kubernetes.io/ws' }, 'http'],
    [{ name: 'web', appProtocol: 'grpc' }, 'http'],
    // Undeclared: no name, a name without a known prefix, an appProtocol Istio does not know (it replaces the name).
    [{}, 'unknown'],
    [{ name: 'web' }, 'unknown'],
    [{ name: 'httpx' }, 'unknown'],
    [{ name: 'http', appProtocol: 'example.com/custom' }, 'unknown'],
    // Server-first well-known ports are never sniffed (SMTP, DNS, MySQL, MongoDB), unless declared otherwise.
    [{ port: 25 }, 'tcp'],
    [{ name: 'db', port: 3306 }, 'tcp'],
    [{ port: 27017 }, 'tcp'],
    [{ name: 'http', port: 3306 }, 'http'],
  ];
  for (const [p, want] of table) t.is(portProtocol({ port: 80, ...p }), want, JSON.stringify(p));
});

test('bound services: ports, VIPs, endpoints with identity, named target ports and health', (t) => {
  const { model } = build();
  t.deepEqual(model.services.map((s) => s.hostname), ['db.shop.svc.cluster.local', 'web.shop.svc.cluster.local']);
  const web = model.services[1]!;
  t.deepEqual(web.vips, ['10.96.0.3']);
  t.deepEqual(web.ports, [{ port: 80, targetPort: 0, protocol: 'http', routes: [] }]);
  t.deepEqual(web.endpoints, [
    { ip: '10.1.0.1', ports: { 80: 8080 }, identity: 'cluster.local/ns/shop/sa/default', healthy: false, hbone: true },
    { ip: '10.1.0.2', ports: { 80: 8080 }, identity: 'cluster.local/ns/shop/sa/web', healthy: true, hbone: true },
  ]);
  t.is(model.services[0]!.ports[0]!.protocol, 'tcp');
  t.deepEqual(model.backends, []);
  const finished = build({ pods: [pod('web', '10.1.0.5', { phase: 'Succeeded' })] }).model;
  t.deepEqual(finished.services[1]!.endpoints, []);
});

test('endpoints: HBONE only for pods in the mesh (enrolled pod or namespace, not opted out, or tunnel-labelled)', (t) => {
  const labelled = (ip: string, labels: Record<string, string>, o: { ns?: string; hostNetwork?: boolean } = {}): V1Pod => {
    const p = pod('web', ip, o);
    return { ...p, metadata: { ...p.metadata, labels: { ...p.metadata!.labels, ...labels } }, spec: { ...p.spec!, ...(o.hostNetwork ? { hostNetwork: true } : {}) } };
  };
  const pods = [
    labelled('10.1.0.1', {}),
    labelled('10.1.0.2', { 'istio.io/dataplane-mode': 'none' }),
    labelled('10.1.0.3', {}, { hostNetwork: true }),
    labelled('10.1.0.4', { 'istio.io/dataplane-mode': 'ambient' }, { ns: 'plain' }),
    labelled('10.1.0.5', {}, { ns: 'plain' }),
    labelled('10.1.0.6', { 'networking.istio.io/tunnel': 'http' }, { ns: 'plain' }),
  ];
  const web = (ns: string) => svc('web', ns);
  const hbone = (o: Partial<WaypointModelInput>) =>
    build({ bound: [web('shop'), web('plain')], services: [], pods, ...o }).model.services.flatMap((s) => s.endpoints.map((e) => `${e.ip}:${e.hbone}`));
  const namespaces = [{ metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } }, { metadata: { name: 'plain' } }];
  t.deepEqual(hbone({ namespaces }), ['10.1.0.4:true', '10.1.0.5:false', '10.1.0.6:true', '10.1.0.1:true', '10.1.0.2:false', '10.1.0.3:false']);
  // Without namespaces every namespace counts as ambient: only pods that opt out (or cannot be captured) are plaintext.
  t.deepEqual(hbone({}), ['10.1.0.4:true', '10.1.0.5:true', '10.1.0.6:true', '10.1.0.1:true', '10.1.0.2:false', '10.1.0.3:false']);
  // A namespace missing from the list given is not ambient.
  t.deepEqual(hbone({ namespaces: [] }).filter((e) => e.endsWith('true')), ['10.1.0.4:true', '10.1.0.6:true']);
});

// ---- HTTPRoute rules ----

test('HTTPRoute rules: a table of inputs and the rules they become', (t) => {
  const be = (name: string, port = 80, weight?: number) => ({ name, port, ...(weight !== undefined ? { weight } : {}) });
  const table: { what: string; rule: HTTPRouteRuleSpec; want: Partial<HttpRouteRule> }[] = [
    {
      what: 'no match: PathPrefix "/", weight 1',
      rule: { backendRefs: [be('web')] },
      want: { matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], backends: [{ namespace: 'shop', hostname: 'web.shop.svc.cluster.local', port: 80, weight: 1 }] },
    },
    {
      what: 'path, headers (first of equivalent names), query, method',
      rule: {
        matches: [{ path: { type: 'Exact', value: '/a' }, headers: [{ name: 'X-A', value: '1' }, { name: 'x-a', value: '2' }, { type: 'RegularExpression', name: 'b', value: 'v.*' }], queryParams: [{ name: 'q', value: 'x' }], method: 'get' }],
      },
      want: {
        matches: [{ path: { type: 'Exact', value: '/a' }, headers: [{ type: 'Exact', name: 'X-A', value: '1' }, { type: 'RegularExpression', name: 'b', value: 'v.*' }], queryParams: [{ type: 'Exact', name: 'q', value: 'x' }], method: 'GET' }],
        backends: [],
      },
    },
    {
      what: 'weighted backends; a 0 weight gets no entry',
      rule: { backendRefs: [be('web', 80, 90), be('api', 80, 10), be('api', 80, 0)] },
      want: { backends: [{ namespace: 'shop', hostname: 'web.shop.svc.cluster.local', port: 80, weight: 90 }, { namespace: 'shop', hostname: 'api.shop.svc.cluster.local', port: 80, weight: 10 }] },
    },
    {
      what: 'filters',
      rule: {
        matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-s', value: '1' }], remove: ['x-r'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-a', value: '2' }] } },
          { type: 'URLRewrite', urlRewrite: { hostname: 'new', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } },
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'api', port: 80 }, fraction: { numerator: 1, denominator: 4 } } },
        ],
        backendRefs: [be('web')],
      },
      want: {
        filters: [
          { type: 'RequestHeaderModifier', changes: { set: [{ name: 'x-s', value: '1' }], add: [], remove: ['x-r'] } },
          { type: 'ResponseHeaderModifier', changes: { set: [], add: [{ name: 'x-a', value: '2' }], remove: [] } },
          { type: 'URLRewrite', hostname: 'new', path: { type: 'ReplacePrefixMatch', value: '/new' } },
          { type: 'RequestMirror', backend: { namespace: 'shop', hostname: 'api.shop.svc.cluster.local', port: 80 }, percent: 25 },
        ],
      },
    },
    {
      what: 'redirect: default 302',
      rule: { filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', port: 8443, path: { type: 'ReplaceFullPath', replaceFullPath: '/x' } } }] },
      want: { filters: [{ type: 'RequestRedirect', statusCode: 302, scheme: 'https', port: 8443, path: { type: 'ReplaceFullPath', value: '/x' } }], backends: [] },
    },
    {
      what: 'timeouts',
      rule: { timeouts: { request: '1h30m', backendRequest: '500ms' }, backendRefs: [be('web')] },
      want: { requestTimeoutMs: 5_400_000, backendRequestTimeoutMs: 500 },
    },
    { what: 'timeout 0 = none', rule: { timeouts: { request: '0s' } }, want: { requestTimeoutMs: 0 } },
  ];
  for (const { what, rule, want } of table) {
    const { model, routes } = build({ httpRoutes: [route('r', [rule])] });
    const rules = rulesOf(model);
    t.is(rules.length, 1, what);
    t.like(rules[0], { name: 'shop/r/0', ...want }, what);
    t.is(condition(routes[0]!.parents[0], 'Accepted')?.status, 'True', what);
    t.is(condition(routes[0]!.parents[0], 'ResolvedRefs')?.status, 'True', what);
  }
});

test('invalid rules are dropped and reported; a route of only invalid rules is not accepted', (t) => {
  const bad: [string, HTTPRouteRuleSpec, RegExp][] = [
    ['bad duration', { timeouts: { request: '10x' } }, /timeouts\.request: "10x" is not a Gateway API duration/],
    ['fractional duration', { timeouts: { request: '1.5s' } }, /not a Gateway API duration/],
    ['backendRequest over request', { timeouts: { request: '1s', backendRequest: '2s' } }, /must not exceed/],
    ['relative path', { matches: [{ path: { value: 'a' } }] }, /must start with/],
    ['RE2 lacks lookahead', { matches: [{ path: { type: 'RegularExpression', value: '/(?=a)' } }] }, /RE2/],
    ['broken regex', { matches: [{ headers: [{ type: 'RegularExpression', name: 'h', value: '(' }] }] }, /not a valid regular expression/],
    ['unknown filter', { filters: [{ type: 'CORS' }] }, /filter type "CORS" is not supported/],
    ['prefix rewrite without prefix match', { matches: [{ path: { type: 'Exact', value: '/a' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }] }, /ReplacePrefixMatch/],
    ['redirect + rewrite', { filters: [{ type: 'RequestRedirect', requestRedirect: {} }, { type: 'URLRewrite', urlRewrite: {} }] }, /cannot be combined/],
    ['bad method', { matches: [{ method: 'FETCH' }] }, /method/],
    ['bad weight', { backendRefs: [{ name: 'web', port: 80, weight: -1 }] }, /weight/],
  ];
  for (const [what, rule, msg] of bad) {
    const good: HTTPRouteRuleSpec = { matches: [{ path: { value: '/ok' } }], backendRefs: [{ name: 'web', port: 80 }] };
    const { model, routes } = build({ httpRoutes: [route('r', [good, rule])] });
    t.deepEqual(rulesOf(model).map((r) => r.name), ['shop/r/0'], what);
    const st = routes[0]!.parents[0];
    t.is(condition(st, 'Accepted')?.status, 'True', what);
    t.like(condition(st, 'PartiallyInvalid'), { status: 'True', reason: 'UnsupportedValue' }, what);
    t.regex(condition(st, 'PartiallyInvalid')!.message, msg, what);
    const only = build({ httpRoutes: [route('r', [rule])] });
    t.deepEqual(rulesOf(only.model), [], what);
    t.like(condition(only.routes[0]!.parents[0], 'Accepted'), { status: 'False', reason: 'UnsupportedValue' }, what);
  }
});

test('Gateway API durations', (t) => {
  const good: [string, number][] = [['10s', 10_000], ['500ms', 500], ['1h30m', 5_400_000], ['1h30m30s500ms', 5_430_500], ['0s', 0], ['00060m', 3_600_000], ['1h1h', 7_200_000], ['99999h', 99999 * 3_600_000]];
  for (const [s, ms] of good) t.deepEqual(parseGatewayDuration(s), { ms }, s);
  for (const s of ['', '10', '1.5s', '-1s', '1d', '1us', '100000s', '1h2m3s4ms5s', ' 1s', 10, undefined]) t.true('error' in parseGatewayDuration(s), String(s));
});

// ---- precedence ----

test('precedence across routes: exact, longest prefix, method, headers, query; then oldest, then ns/name', (t) => {
  const m = (match: object) => ({ matches: [match], backendRefs: [{ name: 'web', port: 80 }] });
  const routes = [
    route('a-prefix-short', [m({ path: { value: '/a' } })]),
    route('b-exact', [m({ path: { type: 'Exact', value: '/a' } })]),
    route('c-regex', [m({ path: { type: 'RegularExpression', value: '/a/.*/long' } })]),
    route('d-prefix-long', [m({ path: { value: '/a/b' } })]),
    route('e-method', [m({ path: { value: '/a' }, method: 'GET' })]),
    route('f-headers', [m({ path: { value: '/a' }, headers: [{ name: 'x', value: '1' }] }), m({ path: { value: '/a' }, headers: [{ name: 'x', value: '1' }, { name: 'y', value: '1' }] })]),
    route('g-query', [m({ path: { value: '/a' }, queryParams: [{ name: 'q', value: '1' }] })]),
    route('h-older-tie', [m({ path: { value: '/a' } })], { created: '2025-01-01T00:00:00Z' }),
    route('a-prefix-short', [m({ path: { value: '/a' } })], { ns: 'ops', parents: [parent('web', { namespace: 'shop' })] }),
  ];
  const { model } = build({ waypoint: { namespace: 'ops', name: 'waypoint' }, httpRoutes: routes });
  t.deepEqual(rulesOf(model).map((r) => r.name), [
    'shop/b-exact/0',
    'shop/d-prefix-long/0',
    'shop/e-method/0',
    'shop/f-headers/1',
    'shop/f-headers/0',
    'shop/g-query/0',
    'shop/h-older-tie/0',
    'ops/a-prefix-short/0',
    'shop/a-prefix-short/0',
    'shop/c-regex/0',
  ]);
});

test('matches of one rule are ordered separately and joined again when adjacent', (t) => {
  const rule = { matches: [{ path: { value: '/x' } }, { path: { value: '/xy' } }, { path: { type: 'Exact', value: '/z' } }] };
  const other = { matches: [{ path: { value: '/xyz' } }] };
  const { model } = build({ httpRoutes: [route('r', [rule]), route('s', [other])] });
  t.deepEqual(rulesOf(model).map((r) => [r.name, r.matches.map((m) => m.path!.value)]), [
    ['shop/r/0', ['/z']],
    ['shop/s/0', ['/xyz']],
    ['shop/r/0', ['/xy', '/x']],
  ]);
});

test('property: the order of rules does not depend on the order routes arrive in', (t) => {
  const matchArb = fc.record({
    path: fc.record({ type: fc.constantFrom('Exact', 'PathPrefix', 'RegularExpression'), value: fc.constantFrom('/', '/a', '/a/b', '/ab') }),
    method: fc.option(fc.constantFrom('GET', 'POST'), { nil: undefined }),
    headers: fc.array(fc.record({ name: fc.constantFrom('a', 'b', 'c'), value: fc.constant('1') }), { maxLength: 3 }),
  });
  const routeArb = fc.record({ name: fc.constantFrom('r1', 'r2', 'r3', 'r4'), ns: fc.constantFrom('shop', 'ops'), day: fc.integer({ min: 1, max: 3 }), rules: fc.array(fc.record({ matches: fc.array(matchArb, { minLength: 1, maxLength: 3 }) }), { minLength: 1, maxLength: 3 }) });
  fc.assert(
    fc.property(fc.uniqueArray(routeArb, { selector: (r) => `${r.ns}/${r.name}`, maxLength: 4 }), fc.infiniteStream(fc.nat()), (rs, rand) => {
      const routes = rs.map((r) => route(r.name, r.rules as HTTPRouteRuleSpec[], { ns: r.ns, created: `2026-01-0${r.day}T00:00:00Z`, parents: [parent('web', { namespace: 'shop' })] }));
      const entries = routes.flatMap((r) => compileRoute(r, ctxOf([WEB])).entries);
      const shuffled = [...entries].sort(() => (rand.next().value % 3) - 1);
      const a = orderRules(entries);
      t.deepEqual(orderRules(shuffled), a);
      // Every exact match comes before every prefix match, which comes before every regex.
      const rank = a.flatMap((r) => r.matches.map((m) => ({ Exact: 0, PathPrefix: 1, RegularExpression: 2 })[m.path!.type]));
      t.deepEqual(rank, [...rank].sort());
    }),
  );
});

// ---- references ----

test('backends: not found or not permitted keep their weight as a 500 share; unbound backends join model.backends', (t) => {
  const r = route('r', [{ backendRefs: [{ name: 'web', port: 80, weight: 2 }, { name: 'gone', port: 80, weight: 3 }, { name: 'other', namespace: 'ops', port: 80 }, { name: 'api', port: 80 }, { name: 'api', weight: 5 }] }]);
  const { model, routes } = build({ httpRoutes: [r] });
  t.like(rulesOf(model)[0], { unresolvedBackendWeight: 9, backends: [{ hostname: 'web.shop.svc.cluster.local', weight: 2 }, { hostname: 'api.shop.svc.cluster.local', weight: 1 }] });
  const refs = condition(routes[0]!.parents[0], 'ResolvedRefs')!;
  t.like(refs, { status: 'False', reason: 'BackendNotFound' });
  t.regex(refs.message, /backend\(gone\.shop\.svc\.cluster\.local\) not found/);
  t.regex(refs.message, /ops\/other is not accessible .* ReferenceGrant/);
  t.regex(refs.message, /port is required/);
  t.is(condition(routes[0]!.parents[0], 'Accepted')!.status, 'True');
  t.deepEqual(model.backends.map((b) => [b.hostname, b.endpoints.map((e) => e.ip)]), [['api.shop.svc.cluster.local', ['10.1.0.3']]]);

  const grant = { metadata: { name: 'g', namespace: 'ops' }, spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'shop' }], to: [{ group: '', kind: 'Service' }] } };
  const granted = build({ httpRoutes: [route('r', [{ backendRefs: [{ name: 'other', namespace: 'ops', port: 80 }] }])], referenceGrants: [grant] });
  t.like(rulesOf(granted.model)[0], { backends: [{ namespace: 'ops', hostname: 'other.ops.svc.cluster.local', weight: 1 }] });
  t.deepEqual(granted.model.backends.map((b) => b.hostname), ['other.ops.svc.cluster.local']);
  t.is(condition(granted.routes[0]!.parents[0], 'ResolvedRefs')!.status, 'True');

  const kind = build({ httpRoutes: [route('r', [{ backendRefs: [{ group: 'x.io', kind: 'Thing', name: 'web', port: 80 }] }])] });
  t.like(condition(kind.routes[0]!.parents[0], 'ResolvedRefs'), { status: 'False', reason: 'InvalidKind' });
  t.like(rulesOf(kind.model)[0], { backends: [], unresolvedBackendWeight: 1 });
});

test('parents: port and sectionName select ports; unknown-protocol ports accept routes; a declared TCP port or a missing one is not accepted', (t) => {
  const two = svc('web', 'shop', [{ name: 'http', port: 80, targetPort: 'web' as never }, { name: 'http-admin', port: 81 }, { name: 'tcp', port: 82 }, { port: 83 }]);
  const rule = [{ backendRefs: [{ name: 'web', port: 80 }] }];
  const run = (p: ParentRef) => build({ bound: [two], services: [two], httpRoutes: [route('r', rule, { parents: [p] })] });
  const all = run(parent()).model.services[0]!.ports;
  t.deepEqual(all.map((p) => [p.protocol, p.routes.length]), [['http', 1], ['http', 1], ['tcp', 0], ['unknown', 1]]);
  t.deepEqual(run(parent('web', { port: 81 })).model.services[0]!.ports.map((p) => p.routes.length), [0, 1, 0, 0]);
  t.deepEqual(run(parent('web', { sectionName: 'http' })).model.services[0]!.ports.map((p) => p.routes.length), [1, 0, 0, 0]);
  const unnamed = run(parent('web', { port: 83 }));
  t.like(condition(unnamed.routes[0]!.parents[0], 'Accepted'), { status: 'True' });
  t.deepEqual(unnamed.model.services[0]!.ports.map((p) => p.routes.length), [0, 0, 0, 1]);
  const tcp = run(parent('web', { port: 82 }));
  t.like(condition(tcp.routes[0]!.parents[0], 'Accepted'), { status: 'False', reason: 'NoMatchingParent' });
  t.regex(condition(tcp.routes[0]!.parents[0], 'Accepted')!.message, /is declared TCP/);
  t.like(condition(run(parent('web', { port: 99 })).routes[0]!.parents[0], 'Accepted'), { status: 'False', reason: 'NoMatchingParent' });
});

test('parents: unbound, missing, consumer routes and non-Service parents', (t) => {
  const r = route('r', [{ backendRefs: [{ name: 'web', port: 80 }] }], {
    parents: [parent('web'), parent('api'), parent('ghost'), { name: 'ingress' }, parent('web', { namespace: 'shop' })],
  });
  const built = build({ httpRoutes: [r] });
  // This waypoint claims only its bound parent (spelled twice: one parent, with the namespace defaulted).
  t.deepEqual(built.routes[0]!.parents.map((p) => p.parentRef.name), ['web']);
  const st = httpRouteStatus(r, built.routes[0]!.parents, ctxOf([WEB, API]));
  t.deepEqual(st.map((s) => s.parentRef.name), ['web', 'api', 'ghost']);
  t.true(st.every((s) => s.controllerName === 'istio.io/mesh-controller'));
  t.like(condition(st[0], 'ResolvedWaypoints'), { status: 'True', reason: 'ResolvedWaypoints', observedGeneration: 3 });
  t.like(condition(st[1], 'Accepted'), { status: 'False', reason: 'MissingUseWaypointLabel' });
  t.regex(condition(st[1], 'ResolvedWaypoints')!.message, /route will not be respected/);
  t.like(condition(st[2], 'Accepted'), { status: 'False', reason: 'NoMatchingParent', message: 'parent service: "ghost" not found' });
  t.like(condition(st[2], 'ResolvedWaypoints'), { status: 'False', message: 'parent not found' });
  const custom = httpRouteStatus(r, [], ctxOf([WEB, API]), () => ({ reason: 'WaypointNotFound', message: 'waypoint shop/x does not exist' }));
  t.like(condition(custom[0], 'Accepted'), { reason: 'WaypointNotFound' });

  const consumer = route('c', [{}], { ns: 'ops', parents: [parent('web', { namespace: 'shop' })] });
  const c = build({ httpRoutes: [consumer] });
  t.like(condition(c.routes[0]!.parents[0], 'Accepted'), { status: 'False', reason: 'UnsupportedValue' });
  t.deepEqual(rulesOf(c.model), []);
});

// ---- AuthorizationPolicy attachment ----

test('policy attachment: Gateway, Service, GatewayClass from the root namespace only, other waypoints not here', (t) => {
  const cls = { group: 'gateway.networking.k8s.io', kind: 'GatewayClass', name: 'istio-waypoint' };
  const table: [string, AuthorizationPolicy, 'all' | string[] | undefined][] = [
    ['Gateway', policy('p', { targetRefs: [gatewayRef()] }), 'all'],
    ['deprecated targetRef', policy('p', { targetRef: gatewayRef() }), 'all'],
    ['Gateway from another namespace', policy('p', { targetRefs: [{ ...gatewayRef(), namespace: 'shop' }] }, 'ops'), undefined],
    ['another waypoint', policy('p', { targetRefs: [gatewayRef('other-waypoint')] }), undefined],
    ['Gateway without its group', policy('p', { targetRefs: [{ kind: 'Gateway', name: 'waypoint' }] }), undefined],
    ['bound Service', policy('p', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }] }), ['shop/web.shop.svc.cluster.local']],
    ['bound Service, group core', policy('p', { targetRefs: [{ group: 'core', kind: 'Service', name: 'web' }, { kind: 'Service', name: 'db' }] }), ['shop/db.shop.svc.cluster.local', 'shop/web.shop.svc.cluster.local']],
    ['unbound Service', policy('p', { targetRefs: [{ group: '', kind: 'Service', name: 'api' }] }), undefined],
    ['GatewayClass from the root namespace', policy('p', { targetRefs: [cls] }, 'istio-system'), 'all'],
    ['GatewayClass from another namespace', policy('p', { targetRefs: [cls] }), undefined],
    ['selector only: ztunnel\'s', policy('p', { selector: { matchLabels: { app: 'web' } } }), undefined],
  ];
  for (const [what, ap, want] of table) {
    const { model, policies } = build({ authorizationPolicies: [ap] });
    t.deepEqual(model.policies[0]?.appliesTo, want, what);
    t.is(policies.length, want ? 1 : 0, what);
  }
});

test('policy status: WaypointAccepted as Istio, with what was not enforced', (t) => {
  const world = { services: ctxOf([WEB, API]).services, rootNamespace: 'istio-system' };
  const ok = policy('p', { targetRefs: [gatewayRef()], rules: [{ to: [{ operation: { methods: ['GET'] } }] }] });
  const claimed = build({ authorizationPolicies: [ok] }).policies[0]!.bindings;
  t.deepEqual(authorizationPolicyStatus(ok, claimed, world), { type: 'WaypointAccepted', status: 'True', reason: 'Accepted', message: 'bound to shop/waypoint' });

  const mixed = policy('p', { targetRefs: [gatewayRef(), { group: '', kind: 'Service', name: 'api' }, { group: '', kind: 'Service', name: 'ghost' }] });
  const st = authorizationPolicyStatus(mixed, build({ authorizationPolicies: [mixed] }).policies[0]!.bindings, world)!;
  t.like(st, { status: 'True', reason: 'PartiallyInvalid' });
  t.regex(st.message, /Service\.core:shop\/api \(Service shop\/api is not bound to a waypoint\)/);
  t.regex(st.message, /Service shop\/ghost was not found/);

  const cls = policy('p', { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'GatewayClass', name: 'istio-waypoint' }] });
  t.like(authorizationPolicyStatus(cls, [], world), { status: 'False', reason: 'Invalid', message: 'Invalid targetRefs: GatewayClass.gateway.networking.k8s.io:istio-waypoint (AuthorizationPolicy must be in the root namespace `istio-system` when referencing a GatewayClass)' });

  const jwt = policy('p', { targetRefs: [gatewayRef()], rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] });
  const j = authorizationPolicyStatus(jwt, build({ authorizationPolicies: [jwt] }).policies[0]!.bindings, world)!;
  t.like(j, { status: 'True', reason: 'UnsupportedValue' });
  t.regex(j.message, /^bound to shop\/waypoint; rule 0 cannot enforce requestPrincipals \(needs JWT/);
  t.is(authorizationPolicyStatus(policy('p', { selector: { matchLabels: {} } }), [], world), undefined);
});

// ---- AuthorizationPolicy translation: fail closed ----

test('policy fields map to L7 rules; principals stay without spiffe://', (t) => {
  const tr = translatePolicy(
    policy('p', {
      action: 'ALLOW',
      rules: [
        {
          from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/b', 'cluster.local/ns/c/sa/d'], notNamespaces: ['x'], ipBlocks: ['10.0.0.0/8'] } }],
          to: [{ operation: { hosts: ['web'], ports: ['80'], methods: ['GET'], notPaths: ['/admin*'] } }],
          when: [{ key: 'request.headers[x-user]', values: ['alice'] }, { key: 'destination.port', notValues: ['81'] }, { key: 'source.principal', values: ['spiffe://td/ns/a/sa/b'] }],
        },
      ],
    }),
  );
  t.deepEqual(tr, {
    notes: [],
    policy: {
      action: 'ALLOW',
      rules: [
        {
          from: [{ principals: ['cluster.local/ns/a/sa/b', 'cluster.local/ns/c/sa/d'], notNamespaces: ['x'], ipBlocks: ['10.0.0.0/8'] }],
          to: [{ hosts: ['web'], ports: [80], methods: ['GET'], notPaths: ['/admin*'] }],
          when: [{ key: 'request.headers[x-user]', values: ['alice'] }, { key: 'destination.port', notValues: ['81'] }, { key: 'source.principal', values: ['td/ns/a/sa/b'] }],
        },
      ],
    },
  });
});

test('unsupported fields fail closed: ALLOW allows less, DENY denies more, CUSTOM denies, AUDIT is ignored', (t) => {
  const rules = (action: string, r: unknown[]) => translatePolicy(policy('p', { action, rules: r as never }));
  const jwtFrom = { from: [{ source: { requestPrincipals: ['iss/sub'] } }], to: [{ operation: { methods: ['POST'] } }] };
  // ALLOW: the rule needs a JWT, so it can never match.
  t.deepEqual(rules('ALLOW', [jwtFrom]).policy!.rules, []);
  // DENY: the source matches anyone, so the rule denies every POST.
  t.deepEqual(rules('DENY', [jwtFrom]).policy!.rules, [{ from: [], to: [{ methods: ['POST'] }], when: [] }]);
  // Mixed source: DENY keeps its enforceable part.
  t.deepEqual(rules('DENY', [{ from: [{ source: { namespaces: ['a'], remoteIpBlocks: ['1.2.3.4'] } }] }]).policy!.rules, [{ from: [{ namespaces: ['a'] }], to: [], when: [] }]);
  // ALLOW with one of two sources unenforceable keeps the other.
  t.deepEqual(rules('ALLOW', [{ from: [{ source: { namespaces: ['a'] } }, { source: { requestPrincipals: ['*'] } }] }]).policy!.rules, [{ from: [{ namespaces: ['a'] }], to: [], when: [] }]);
  // when: request.auth.* and unknown keys.
  const claims = { when: [{ key: 'request.auth.claims[group]', values: ['admin'] }, { key: 'source.namespace', values: ['a'] }] };
  t.deepEqual(rules('ALLOW', [claims]).policy!.rules, []);
  t.deepEqual(rules('DENY', [claims]).policy!.rules, [{ from: [], to: [], when: [{ key: 'source.namespace', values: ['a'] }] }]);
  t.regex(rules('DENY', [claims]).notes[0]!, /request\.auth\.claims\[group\] \(needs JWT.*denies more than written/);
  // A bad value is as unenforceable as an unknown field.
  t.deepEqual(rules('ALLOW', [{ to: [{ operation: { ports: ['http'] } }] }]).policy!.rules, []);
  t.deepEqual(rules('DENY', [{ from: [{ source: { ipBlocks: ['10.0.0.300'] } }] }]).policy!.rules, [{ from: [], to: [], when: [] }]);
  // CUSTOM: deny what the external authorizer would have been asked about.
  const custom = translatePolicy(policy('p', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] } as never));
  t.deepEqual(custom.policy, { action: 'DENY', rules: [{ from: [], to: [{ paths: ['/admin'] }], when: [] }] });
  t.regex(custom.notes[0]!, /CUSTOM \(external authorization by opa\) is not supported.*denied \(fail closed\)/);
  // AUDIT never changes a decision: nothing to enforce.
  t.is(translatePolicy(policy('p', { action: 'AUDIT', rules: [{}] })).policy, undefined);
  // Unknown action: deny all.
  t.deepEqual(translatePolicy(policy('p', { action: 'MAYBE' })).policy, { action: 'DENY', rules: [{ from: [], to: [], when: [] }] });
  // In the model: DENY policies first.
  const { model } = build({
    authorizationPolicies: [policy('a-allow', { targetRefs: [gatewayRef()], rules: [{}] }), policy('b-custom', { targetRefs: [gatewayRef()], action: 'CUSTOM', rules: [{}] })],
  });
  t.deepEqual(model.policies.map((p) => [p.name, p.action]), [['shop/b-custom', 'DENY'], ['shop/a-allow', 'ALLOW']]);
});

// ---- robustness ----

test('property: malformed routes and policies never throw out of buildWaypointModel', (t) => {
  const anyRoute = fc.record({ metadata: fc.record({ name: fc.string(), namespace: fc.constantFrom('shop', 'ops') }), spec: fc.record({ parentRefs: fc.constant([parent()]), rules: fc.anything() }) });
  const anyRule = fc.record(
    { matches: fc.anything(), filters: fc.array(fc.record({ type: fc.constantFrom('RequestHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror', 'X'), requestMirror: fc.anything(), requestRedirect: fc.anything(), urlRewrite: fc.anything(), requestHeaderModifier: fc.anything() }, { requiredKeys: ['type'] })), backendRefs: fc.anything(), timeouts: fc.anything() },
    { requiredKeys: [] },
  );
  const ruleRoute = fc.array(anyRule, { maxLength: 3 }).map((rules) => route('r', rules as never));
  const anyPolicy = fc.record({ metadata: fc.record({ name: fc.string(), namespace: fc.constantFrom('shop', 'istio-system') }), spec: fc.record({ targetRefs: fc.constant([gatewayRef()]), action: fc.anything(), rules: fc.anything() }) });
  const anyPolicyRules = fc.array(fc.record({ from: fc.anything(), to: fc.anything(), when: fc.anything() }), { maxLength: 3 }).map((r) => policy('q', { targetRefs: [gatewayRef()], action: 'DENY', rules: r as never }));
  fc.assert(
    fc.property(fc.array(fc.oneof(anyRoute, ruleRoute), { maxLength: 3 }), fc.array(fc.oneof(anyPolicy, anyPolicyRules), { maxLength: 3 }), (routes, policies) => {
      const out = build({ httpRoutes: routes as HTTPRoute[], authorizationPolicies: policies as AuthorizationPolicy[] });
      // Every DENY policy that attaches stays a DENY: nothing malformed turns into an allow.
      for (const p of policies as AuthorizationPolicy[]) {
        if (p.metadata?.namespace === 'shop' && typeof p.spec?.action === 'string' && p.spec.action.toUpperCase() === 'DENY') t.true(out.model.policies.some((m) => m.name === `${p.metadata!.namespace}/${p.metadata!.name}` && m.action === 'DENY'));
      }
      for (const r of routes as HTTPRoute[]) httpRouteStatus(r, [], ctxOf([WEB]));
    }),
    { numRuns: 300 },
  );
  t.pass();
});
