// WaypointModel -> Envoy resources (pure): golden-style assertions on the small model (a service with an HTTP port
// and a TCP port, a 90/10 split for a header match, a DENY and an ALLOW policy), the edge cases of routes and RBAC,
// the strict proto3 JSON encoder, the bootstrap, and — when the binary is there — `envoy --mode validate` of it all.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeEnvoy, encodeEnvoy, encodeEnvoyResource, EnvoyJsonError, type JsonObject } from '../protos/envoy.js';
import type { HttpRouteRule, L7Policy, WaypointModel } from '../waypoint-controller/waypoint/model.js';
import {
  waypointBootstrap,
  waypointEnvoyArgs,
  waypointEnvoyResources,
  waypointSecrets,
  type EnvoyResources,
} from '../waypoint-controller/waypoint/envoy/index.js';
import { rulePolicy, rbacRules } from '../waypoint-controller/waypoint/envoy/rbac.js';
import { unsniffedPorts } from '../waypoint-controller/waypoint/envoy/main-internal.js';
import { httpRoutes } from '../waypoint-controller/waypoint/envoy/routes.js';
import { ResourceStore, storeEnvoyResources, WaypointStores, ENVOY_TYPE_URLS } from '../waypoint-controller/xds/index.js';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { parseIdentity } from '../ztunnel/identity/spiffe.js';
import { LEGACY_ID, RATINGS_ID, REVIEWS_ID, REVIEWS_V2_ID, smallModel, sniffedModel, TD, WEB } from './fixtures/waypoint-envoy/model.js';
import { envoyAvailable, staticValidationConfig, validateEnvoyConfig } from './lab/envoy.js';

const HTTP = 'inbound-vip|9080|http|reviews.shop.svc.cluster.local';
const TCP = 'inbound-vip|9090|tcp|reviews.shop.svc.cluster.local';
const V2 = 'inbound-vip|9080|http|reviews-v2.shop.svc.cluster.local';
const R_HTTP = 'inbound-vip|80|http|ratings.shop.svc.cluster.local';
const R_TCP = 'inbound-vip|80|tcp|ratings.shop.svc.cluster.local';
const R_9090 = 'inbound-vip|9090|tcp|ratings.shop.svc.cluster.local';
const NI = 'type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.';
const action = (name: string) => ({ action: { name: 'chain', typed_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: name } } });

type O = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const byName = (list: JsonObject[], name: string): O => {
  const r = list.find((x) => x.name === name || x.cluster_name === name);
  if (!r) throw new Error(`no ${name} among ${list.map((x) => x.name ?? x.cluster_name).join(', ')}`);
  return r as O;
};
const chain = (res: EnvoyResources, name: string): O => (byName(res.listeners, 'main_internal') as O).filter_chains.find((c: O) => c.name === name);
const hcmOf = (c: O): O => c.filters.find((f: O) => f.name === 'envoy.filters.network.http_connection_manager').typed_config;

test('resource names: listeners, clusters, endpoints of the small model', (t) => {
  const res = waypointEnvoyResources(smallModel());
  t.deepEqual(
    res.listeners.map((l) => l.name),
    ['connect_terminate', 'main_internal', `connect_originate|${REVIEWS_ID}`, `connect_originate|${REVIEWS_V2_ID}`],
  );
  t.deepEqual(
    res.clusters.map((c) => c.name),
    ['main_internal', HTTP, TCP, V2, `connect_originate|${REVIEWS_ID}`, `connect_originate|${REVIEWS_V2_ID}`],
  );
  t.deepEqual(res.endpoints.map((e) => e.cluster_name), [HTTP, TCP, V2]);
  t.deepEqual(res.routes, [], 'routes are inline (no RDS)');
});

test('connect_terminate: HBONE mTLS (TLS 1.3, client cert, h2, trust domain), CONNECT to main_internal, filter state shared ONCE', (t) => {
  const l = byName(waypointEnvoyResources(smallModel()).listeners, 'connect_terminate');
  t.deepEqual(l.address, { socket_address: { address: '0.0.0.0', port_value: 15008 } });
  const fc = l.filter_chains[0];
  const tls = fc.transport_socket.typed_config;
  t.is(tls['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
  t.true(tls.require_client_certificate);
  const ctx = tls.common_tls_context;
  t.deepEqual(ctx.tls_params, { tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_3' });
  t.deepEqual(ctx.alpn_protocols, ['h2']);
  t.is(ctx.tls_certificate_sds_secret_configs[0].name, 'default');
  t.is(ctx.combined_validation_context.validation_context_sds_secret_config.name, 'ROOTCA');
  t.deepEqual(ctx.combined_validation_context.default_validation_context.match_typed_subject_alt_names, [{ san_type: 'URI', matcher: { prefix: `spiffe://${TD}/` } }]);
  const hcm = hcmOf(fc);
  t.true(hcm.http2_protocol_options.allow_connect);
  t.deepEqual(hcm.upgrade_configs, [{ upgrade_type: 'CONNECT' }]);
  t.deepEqual(hcm.route_config.virtual_hosts[0].routes, [
    { match: { connect_matcher: {} }, route: { cluster: 'main_internal', upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] } },
  ]);
  const sfs = hcm.http_filters[0].typed_config;
  t.is(sfs['@type'], 'type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config');
  t.deepEqual(
    sfs.on_request_headers.map((e: O) => [e.object_key, e.factory_key ?? '', e.format_string.text_format_source.inline_string, e.shared_with_upstream]),
    [
      ['envoy.filters.listener.original_dst.local_ip', '', '%REQ(:AUTHORITY)%', 'ONCE'],
      ['envoy.filters.listener.original_dst.remote_ip', '', '%DOWNSTREAM_REMOTE_ADDRESS%', 'ONCE'],
      ['io.ambit.connect_authority', 'envoy.hashable_string', '%REQ(:AUTHORITY)%', 'ONCE'],
      ['io.ambit.peer_principal', 'envoy.hashable_string', '%DOWNSTREAM_PEER_URI_SAN%', 'ONCE'],
    ],
  );
  t.is(hcm.http_filters[1].name, 'envoy.filters.http.router');
});

test('main_internal: original_dst, then destination IP -> port -> chain', (t) => {
  const res = waypointEnvoyResources(smallModel());
  const l = byName(res.listeners, 'main_internal');
  t.deepEqual(l.internal_listener, {});
  t.is(l.listener_filters[0].name, 'envoy.filters.listener.original_dst');
  const ip = l.filter_chain_matcher.matcher_tree;
  t.is(ip.input.typed_config['@type'], 'type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DestinationIPInput');
  t.deepEqual(Object.keys(ip.exact_match_map.map), ['10.96.0.20'], 'only bound services get chains (not the backend reviews-v2)');
  const port = ip.exact_match_map.map['10.96.0.20'].matcher.matcher_tree;
  t.is(port.input.typed_config['@type'], 'type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput');
  t.deepEqual(
    Object.fromEntries(Object.entries(port.exact_match_map.map as Record<string, O>).map(([k, v]) => [k, v.action.typed_config.value])),
    { 9080: HTTP, 9090: TCP },
  );
  t.deepEqual(l.filter_chains.map((c: O) => c.name), [HTTP, TCP]);
  t.deepEqual(l.listener_filters.map((f: O) => f.name), ['envoy.filters.listener.original_dst'], 'every port declared: nothing to sniff');
  t.is(l.listener_filters_timeout, undefined);
});

test('unknown protocol: a TCP and an HTTP chain, picked by the sniffed application protocol after IP and port; http_inspector skips declared ports and times out to TCP', (t) => {
  const res = waypointEnvoyResources(sniffedModel(), { protocolDetectionTimeoutMs: 1500 });
  const l = byName(res.listeners, 'main_internal');
  t.deepEqual(l.filter_chains.map((c: O) => c.name), [R_TCP, R_HTTP, R_9090, HTTP, TCP]);
  const ports = l.filter_chain_matcher.matcher_tree.exact_match_map.map['10.96.0.60'].matcher.matcher_tree.exact_match_map.map;
  t.deepEqual(ports['9090'], action(R_9090), 'a declared TCP port goes straight to its chain');
  t.deepEqual(ports['80'], {
    matcher: {
      matcher_tree: {
        input: { name: 'application-protocol', typed_config: { '@type': `${NI}ApplicationProtocolInput` } },
        exact_match_map: { map: { "'http/1.1'": action(R_HTTP), "'h2c'": action(R_HTTP) } },
      },
      on_no_match: action(R_TCP),
    },
  });
  t.deepEqual(l.listener_filters, [
    { name: 'envoy.filters.listener.original_dst', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst' } },
    {
      name: 'envoy.filters.listener.http_inspector',
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector' },
      filter_disabled: { or_match: { rules: [{ destination_port_range: { start: 9080, end: 9081 } }, { destination_port_range: { start: 9090, end: 9091 } }] } },
    },
  ]);
  t.is(l.listener_filters_timeout, '1.500s');
  t.true(l.continue_on_listener_filters_timeout, 'a server-first protocol falls through to the TCP chain instead of being closed');
  t.is(byName(waypointEnvoyResources(sniffedModel()).listeners, 'main_internal').listener_filters_timeout, '5.000s', 'default');

  // The HTTP chain has the port's routes and the HTTP RBAC; the TCP chain the network RBAC, where the L7-only DENY
  // matches everything (fail closed, as on any TCP port).
  const http = hcmOf(chain(res, R_HTTP));
  t.deepEqual(http.route_config.virtual_hosts[0].routes.map((r: O) => [r.name, r.route.cluster]), [['shop/ratings/0', V2]]);
  t.deepEqual(http.http_filters.map((f: O) => f.name), ['envoy.filters.http.rbac.deny', 'envoy.filters.http.router']);
  const tcp = chain(res, R_TCP);
  t.deepEqual(tcp.filters.map((f: O) => f.name), ['envoy.filters.network.rbac.deny', 'envoy.filters.network.tcp_proxy']);
  t.deepEqual(tcp.filters[0].typed_config.rules.policies['shop/no-delete[0]'], { permissions: [{ any: true }], principals: [{ any: true }] });
  t.is(tcp.filters[1].typed_config.cluster, R_TCP);

  // Both have a cluster: the HTTP one with downstream-protocol options, the TCP one without; the same endpoints.
  t.truthy(byName(res.clusters, R_HTTP).typed_extension_protocol_options);
  t.is(byName(res.clusters, R_TCP).typed_extension_protocol_options, undefined);
  t.deepEqual(byName(res.endpoints, R_TCP).endpoints, byName(res.endpoints, R_HTTP).endpoints);
});

test('http_inspector skips a port only where every service declares it', (t) => {
  const m = sniffedModel();
  t.deepEqual(unsniffedPorts(m.services), [9080, 9090]);
  // reviews' 9080 is HTTP, but a service with 9080 undeclared makes the inspector run there too (it sees no VIP).
  m.services[0]!.ports.push({ port: 9080, targetPort: 9080, protocol: 'unknown', routes: [] });
  t.deepEqual(unsniffedPorts(m.services), [9090]);
  const l = byName(waypointEnvoyResources(m).listeners, 'main_internal');
  t.deepEqual(l.listener_filters[1].filter_disabled, { destination_port_range: { start: 9090, end: 9091 } });
  m.services[0]!.ports = m.services[0]!.ports.filter((p) => p.protocol === 'unknown');
  m.services.pop();
  t.deepEqual(unsniffedPorts(m.services), []);
  t.is(byName(waypointEnvoyResources(m).listeners, 'main_internal').listener_filters[1].filter_disabled, undefined, 'all sniffed: never disabled');
  t.is(unsniffedPorts(smallModel().services), undefined);
});

test('endpoints outside the mesh: a plain podIP:targetPort socket address (plaintext), no connect_originate for their identity', (t) => {
  const res = waypointEnvoyResources(sniffedModel());
  t.deepEqual(byName(res.endpoints, R_HTTP).endpoints[0].lb_endpoints, [
    {
      endpoint: { address: { envoy_internal_address: { server_listener_name: `connect_originate|${RATINGS_ID}`, endpoint_id: '10.1.0.8:8080' } } },
      metadata: { filter_metadata: { 'envoy.filters.listener.original_dst': { local: '10.1.0.8:8080' } } },
    },
    { endpoint: { address: { socket_address: { address: '10.2.0.9', port_value: 8081 } } } },
  ]);
  t.deepEqual(byName(res.endpoints, R_9090).endpoints[0].lb_endpoints[1], { endpoint: { address: { socket_address: { address: '10.2.0.9', port_value: 9090 } } } });
  const names = res.listeners.map((l) => l.name as string);
  t.true(names.includes(`connect_originate|${RATINGS_ID}`));
  t.false(names.some((n) => n.includes(LEGACY_ID)), 'the plaintext identity needs no HBONE listener or cluster');
  t.false(res.clusters.some((c) => (c.name as string).includes(LEGACY_ID)));
});

test('HTTP chain: DENY then ALLOW RBAC on the peer identity in filter state, then the router; routes in precedence order', (t) => {
  const c = chain(waypointEnvoyResources(smallModel()), HTTP);
  const hcm = hcmOf(c);
  t.is(hcm.codec_type, 'AUTO');
  t.deepEqual(hcm.http_filters.map((f: O) => f.name), ['envoy.filters.http.rbac.deny', 'envoy.filters.http.rbac.allow', 'envoy.filters.http.router']);
  const deny = hcm.http_filters[0].typed_config.rules;
  t.deepEqual(deny, {
    action: 'DENY',
    policies: { 'shop/no-delete[0]': { permissions: [{ header: { name: ':method', string_match: { exact: 'DELETE' } } }], principals: [{ any: true }] } },
  });
  const allow = hcm.http_filters[1].typed_config.rules;
  t.deepEqual(allow, {
    action: 'ALLOW',
    policies: {
      'shop/only-web[0]': { permissions: [{ any: true }], principals: [{ filter_state: { key: 'io.ambit.peer_principal', string_match: { exact: `spiffe://${WEB}` } } }] },
    },
  });
  const [canary, fallback, ...rest] = hcm.route_config.virtual_hosts[0].routes as O[];
  t.is(rest.length, 0);
  t.deepEqual(canary!.match, { path_separated_prefix: '/api', headers: [{ name: 'x-canary', string_match: { exact: 'yes' } }] });
  t.deepEqual(canary!.route.weighted_clusters, { clusters: [{ name: HTTP, weight: 90 }, { name: V2, weight: 10 }] });
  t.is(canary!.route.timeout, '5.000s');
  t.is(canary!.route.retry_policy.per_try_timeout, '1.500s');
  t.deepEqual(canary!.request_headers_to_add, [{ header: { key: 'x-via', value: 'waypoint' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }]);
  t.deepEqual(canary!.request_headers_to_remove, ['x-debug']);
  t.deepEqual(fallback!.match, { prefix: '/' });
  t.is(fallback!.route.cluster, HTTP);
  t.is(fallback!.route.timeout, '0.000s', 'no timeout unless asked (Envoy would default to 15 s)');
});

test('TCP chain: network RBAC keeps only L4: the L7-only DENY matches everything (fail closed), the L4 ALLOW stays', (t) => {
  const c = chain(waypointEnvoyResources(smallModel()), TCP);
  t.deepEqual(c.filters.map((f: O) => f.name), ['envoy.filters.network.rbac.deny', 'envoy.filters.network.rbac.allow', 'envoy.filters.network.tcp_proxy']);
  t.deepEqual(c.filters[0].typed_config.rules.policies['shop/no-delete[0]'], { permissions: [{ any: true }], principals: [{ any: true }] });
  t.deepEqual(Object.keys(c.filters[1].typed_config.rules.policies), ['shop/only-web[0]']);
  t.deepEqual(c.filters[2].typed_config, { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: TCP, cluster: TCP });
});

test('RBAC: an ALLOW rule with HTTP fields on a TCP port is dropped (the ALLOW then denies all); no ALLOW policy -> no ALLOW filter', (t) => {
  const allowGet: L7Policy = { name: 'shop/get', action: 'ALLOW', appliesTo: 'all', rules: [{ from: [], to: [{ methods: ['GET'] }], when: [] }] };
  const svc = smallModel().services[0]!;
  t.deepEqual(rbacRules([allowGet], svc, 'tcp', 'ALLOW'), { action: 'ALLOW', policies: {} });
  t.is(rbacRules([allowGet], svc, 'tcp', 'DENY'), undefined);
  const other: L7Policy = { ...allowGet, appliesTo: ['shop/ratings.shop.svc.cluster.local'] };
  t.is(rbacRules([other], svc, 'http', 'ALLOW'), undefined, 'a policy for another service does not apply');
  // An ALLOW policy without rules matches nothing.
  t.deepEqual(rbacRules([{ ...allowGet, rules: [] }], svc, 'http', 'ALLOW'), { action: 'ALLOW', policies: {} });
});

test('RBAC: sources, operations and conditions', (t) => {
  const p = rulePolicy(
    {
      from: [{ namespaces: ['front'], notPrincipals: [`${TD}/ns/front/sa/bad`], ipBlocks: ['10.0.0.0/8'] }],
      to: [{ paths: ['/admin*'], notMethods: ['GET'], ports: [9080], hosts: ['*.shop'] }],
      when: [
        { key: 'request.headers[X-User]', values: ['alice'] },
        { key: 'destination.port', notValues: ['9090'] },
      ],
    },
    'http',
    'ALLOW',
  ) as O;
  t.deepEqual(p.principals, [
    {
      and_ids: {
        ids: [
          { and_ids: { ids: [
            { not_id: { filter_state: { key: 'io.ambit.peer_principal', string_match: { exact: `spiffe://${TD}/ns/front/sa/bad` } } } },
            { filter_state: { key: 'io.ambit.peer_principal', string_match: { safe_regex: { regex: '.*/ns/front/.*' } } } },
            { direct_remote_ip: { address_prefix: '10.0.0.0', prefix_len: 8 } },
          ] } },
          { header: { name: 'x-user', string_match: { exact: 'alice' } } },
        ],
      },
    },
  ]);
  t.deepEqual(p.permissions, [
    {
      and_rules: {
        rules: [
          { and_rules: { rules: [
            { header: { name: ':authority', string_match: { suffix: '.shop', ignore_case: true } } },
            { not_rule: { header: { name: ':method', string_match: { exact: 'GET' } } } },
            { url_path: { path: { prefix: '/admin' } } },
            { destination_port: 9080 },
          ] } },
          { not_rule: { destination_port: 9090 } },
        ],
      },
    },
  ]);
  // Unsupported keys: an ALLOW rule using one never matches, a DENY rule ignores it (matches more).
  const jwt = { from: [], to: [], when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] };
  t.is(rulePolicy(jwt, 'http', 'ALLOW'), undefined);
  t.deepEqual(rulePolicy(jwt, 'http', 'DENY'), { permissions: [{ any: true }], principals: [{ any: true }] });
});

const rule = (r: Partial<HttpRouteRule>): HttpRouteRule => ({ name: 'r', matches: [], filters: [], backends: [{ namespace: 'shop', hostname: 'a.shop.svc.cluster.local', port: 80, weight: 1 }], ...r });
const own = { namespace: 'shop', hostname: 'a.shop.svc.cluster.local', port: 80 };

test('routes: all-zero weights -> 500; no rule -> default route; precedence; matches', (t) => {
  t.deepEqual(httpRoutes([rule({ backends: [{ ...own, weight: 0 }] })], own)[0]!.direct_response, { status: 500 });
  t.deepEqual(httpRoutes([rule({ backends: [] })], own)[0]!.direct_response, { status: 500 });
  const def = httpRoutes([], own);
  t.is(def.length, 1);
  t.deepEqual((def[0] as O).route.cluster, 'inbound-vip|80|http|a.shop.svc.cluster.local');
  const routes = httpRoutes(
    [
      rule({ name: 'prefix', matches: [{ path: { type: 'PathPrefix', value: '/a' }, headers: [], queryParams: [] }] }),
      rule({ name: 'longer', matches: [{ path: { type: 'PathPrefix', value: '/a/b/' }, headers: [], queryParams: [] }] }),
      rule({ name: 'exact', matches: [{ path: { type: 'Exact', value: '/a' }, headers: [], queryParams: [] }] }),
      rule({
        name: 'method',
        matches: [{ path: { type: 'RegularExpression', value: '/x/[0-9]+' }, headers: [], queryParams: [{ type: 'Exact', name: 'v', value: '2' }], method: 'POST' }],
      }),
    ],
    own,
  ) as O[];
  t.deepEqual(routes.map((r) => r.name), ['exact', 'longer', 'prefix', 'method']);
  t.deepEqual(routes[3]!.match, {
    safe_regex: { regex: '/x/[0-9]+' },
    headers: [{ name: ':method', string_match: { exact: 'POST' } }],
    query_parameters: [{ name: 'v', string_match: { exact: '2' } }],
  });
  t.deepEqual(routes[1]!.match, { path_separated_prefix: '/a/b' });
});

test('routes: redirect, rewrite, mirror, response headers', (t) => {
  const m = [{ path: { type: 'PathPrefix' as const, value: '/old' }, headers: [], queryParams: [] }];
  const [redir] = httpRoutes([rule({ matches: m, filters: [{ type: 'RequestRedirect', scheme: 'https', hostname: 'x.example', port: 8443, statusCode: 301, path: { type: 'ReplaceFullPath', value: '/new' } }] })], own) as O[];
  t.deepEqual(redir!.redirect, { response_code: 'MOVED_PERMANENTLY', scheme_redirect: 'https', host_redirect: 'x.example', port_redirect: 8443, path_redirect: '/new' });
  t.is(redir!.route, undefined);
  const [rw] = httpRoutes([rule({ matches: m, filters: [{ type: 'URLRewrite', hostname: 'b', path: { type: 'ReplacePrefixMatch', value: '/' } }] })], own) as O[];
  t.is(rw!.route.host_rewrite_literal, 'b');
  t.deepEqual(rw!.route.regex_rewrite, { pattern: { regex: '^/old/*' }, substitution: '/' });
  const [rw2] = httpRoutes([rule({ matches: m, filters: [{ type: 'URLRewrite', path: { type: 'ReplacePrefixMatch', value: '/new' } }] })], own) as O[];
  t.is(rw2!.route.prefix_rewrite, '/new');
  const [mir] = httpRoutes(
    [
      rule({
        filters: [
          { type: 'RequestMirror', backend: { namespace: 'shop', hostname: 'b.shop.svc.cluster.local', port: 80 }, percent: 25 },
          { type: 'ResponseHeaderModifier', changes: { set: [], add: [{ name: 'x-a', value: '1' }], remove: ['server'] } },
        ],
      }),
    ],
    own,
  ) as O[];
  t.deepEqual(mir!.route.request_mirror_policies, [{ cluster: 'inbound-vip|80|http|b.shop.svc.cluster.local', runtime_fraction: { default_value: { numerator: 25, denominator: 'HUNDRED' } } }]);
  t.deepEqual(mir!.response_headers_to_add, [{ header: { key: 'x-a', value: '1' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' }]);
  t.deepEqual(mir!.response_headers_to_remove, ['server']);
});

test('upstream: EDS clusters over ADS through internal_upstream; endpoints are connect_originate of their identity with podIP:targetPort', (t) => {
  const res = waypointEnvoyResources(smallModel());
  const c = byName(res.clusters, HTTP);
  t.is(c.type, 'EDS');
  t.deepEqual(c.eds_cluster_config.eds_config, { ads: {}, resource_api_version: 'V3' });
  t.deepEqual(c.transport_socket.typed_config.passthrough_metadata, [{ kind: { host: {} }, name: 'envoy.filters.listener.original_dst' }]);
  const cla = byName(res.endpoints, HTTP);
  t.deepEqual(cla.endpoints[0].lb_endpoints, [
    {
      endpoint: { address: { envoy_internal_address: { server_listener_name: `connect_originate|${REVIEWS_ID}`, endpoint_id: '10.1.0.5:8080' } } },
      metadata: { filter_metadata: { 'envoy.filters.listener.original_dst': { local: '10.1.0.5:8080' } } },
    },
  ], 'the unhealthy 10.1.0.6 is left out');
  t.is(byName(res.endpoints, TCP).endpoints[0].lb_endpoints[0].metadata.filter_metadata['envoy.filters.listener.original_dst'].local, '10.1.0.5:9090');
  const co = byName(res.clusters, `connect_originate|${REVIEWS_V2_ID}`);
  t.is(co.type, 'ORIGINAL_DST');
  t.deepEqual(co.original_dst_lb_config, { upstream_port_override: 15008 });
  t.true(co.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options.allow_connect);
  const ctx = co.transport_socket.typed_config.common_tls_context;
  t.deepEqual(ctx.combined_validation_context.default_validation_context.match_typed_subject_alt_names, [{ san_type: 'URI', matcher: { exact: `spiffe://${REVIEWS_V2_ID}` } }]);
  t.deepEqual(ctx.alpn_protocols, ['h2']);
  const ol = byName(res.listeners, `connect_originate|${REVIEWS_V2_ID}`);
  t.deepEqual(ol.filter_chains[0].filters[0].typed_config.tunneling_config, { hostname: '%DOWNSTREAM_LOCAL_ADDRESS%' });
  t.is(ol.filter_chains[0].filters[0].typed_config.cluster, `connect_originate|${REVIEWS_V2_ID}`);
  const v6 = waypointEnvoyResources({ ...smallModel(), backends: [{ ...smallModel().backends[0]!, endpoints: [{ ip: 'fd00::7', ports: { 9080: 9080 }, identity: REVIEWS_V2_ID, healthy: true, hbone: true }] }] });
  t.is(byName(v6.endpoints, V2).endpoints[0].lb_endpoints[0].endpoint.address.envoy_internal_address.endpoint_id, '[fd00::7]:9080');
});

test('proto3 JSON encoder: every resource encodes; typos and wrong shapes are errors with a path', (t) => {
  const res = waypointEnvoyResources(smallModel());
  const sniffed = waypointEnvoyResources(sniffedModel());
  for (const r of [res, sniffed].flatMap((x) => [...x.listeners, ...x.clusters, ...x.endpoints])) t.true(encodeEnvoyResource(r).body.length > 0);
  const cl = decodeEnvoy('envoy.config.cluster.v3.Cluster', encodeEnvoyResource(byName(res.clusters, HTTP)).body);
  t.deepEqual(cl.connect_timeout, { seconds: 10 });
  const e1 = t.throws(() => encodeEnvoyResource({ '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name: 'x', conect_timeout: '1s' }), { instanceOf: EnvoyJsonError });
  t.regex(e1.message, /conect_timeout: unknown field/);
  t.throws(() => encodeEnvoy('envoy.config.cluster.v3.Cluster', { type: 'NOPE' }), { message: /bad DiscoveryType/ });
  t.throws(() => encodeEnvoy('envoy.config.cluster.v3.Cluster', { connect_timeout: 5 }), { message: /not a duration/ });
  t.throws(() => encodeEnvoy('envoy.config.cluster.v3.Cluster', { load_assignment: { cluster_name: 'x', endpoints: {} } }), { message: /endpoints: repeated/ });
});

test('storeEnvoyResources: one batch per call, replaces only the kinds given; WaypointStores keeps waypoints apart', (t) => {
  const stores = new WaypointStores();
  const seen: string[] = [];
  stores.onChange((wp, c) => seen.push(`${wp} ${c.typeUrl.split('.').pop()} ${c.names.length}`));
  const res = waypointEnvoyResources(smallModel());
  const a = stores.get('shop/waypoint');
  storeEnvoyResources(a, res);
  t.deepEqual(seen, ['shop/waypoint Listener 4', 'shop/waypoint Cluster 6', 'shop/waypoint ClusterLoadAssignment 3']);
  t.is(a.size(ENVOY_TYPE_URLS[2]!), 3);
  seen.length = 0;
  storeEnvoyResources(a, { secrets: waypointSecrets({ certChainPem: 'c', privateKeyPem: 'k', rootCertPem: 'r' }) });
  t.deepEqual(seen, ['shop/waypoint Secret 2']);
  t.is(a.size(ENVOY_TYPE_URLS[0]!), 4, 'listeners kept');
  storeEnvoyResources(a, res);
  t.deepEqual(seen, ['shop/waypoint Secret 2'], 'same content: no change');
  t.throws(() => storeEnvoyResources(a, { listeners: [{ '@type': ENVOY_TYPE_URLS[0]!, name: 'x', nonsense: 1 }] }));
  t.is(a.size(ENVOY_TYPE_URLS[0]!), 4, 'a bad resource changes nothing');
  t.deepEqual(stores.keys(), ['shop/waypoint']);
  stores.delete('shop/waypoint');
  t.deepEqual(stores.keys(), []);
  t.true(new ResourceStore().size(ENVOY_TYPE_URLS[0]!) === 0);
});

test('bootstrap: delta ADS over Google gRPC with TLS to the mesh root, the token re-read by file_based_metadata; readiness and stats listeners', (t) => {
  const b = waypointBootstrap({
    xdsHost: '10.96.0.1',
    xdsPort: 15012,
    xdsServerName: 'istiod.istio-system.svc',
    rootCertPath: '/var/run/secrets/istio/root-cert.pem',
    tokenPath: '/var/run/secrets/tokens/istio-token',
    clusterId: 'Kubernetes',
  }) as O;
  t.deepEqual(b.admin.address.socket_address, { address: '127.0.0.1', port_value: 15000 });
  const ads = b.dynamic_resources.ads_config;
  t.is(ads.api_type, 'DELTA_GRPC');
  const g = ads.grpc_services[0];
  t.is(g.google_grpc.target_uri, '10.96.0.1:15012');
  t.is(g.google_grpc.channel_credentials.ssl_credentials.root_certs.filename, '/var/run/secrets/istio/root-cert.pem');
  t.deepEqual(g.google_grpc.call_credentials[0].from_plugin.typed_config.secret_data, { filename: '/var/run/secrets/tokens/istio-token' });
  t.is(g.google_grpc.call_credentials[0].from_plugin.typed_config.header_prefix, 'Bearer ');
  t.is(g.google_grpc.channel_args.args['grpc.ssl_target_name_override'].string_value, 'istiod.istio-system.svc');
  t.deepEqual(g.initial_metadata, [{ key: 'clusterid', value: 'Kubernetes' }]);
  t.deepEqual(b.static_resources.listeners.map((l: O) => [l.name, l.address.socket_address.port_value]), [['readiness', 15021], ['prometheus', 15090]]);
  t.is(b.bootstrap_extensions[0].name, 'envoy.bootstrap.internal_listener');
  t.true(encodeEnvoy('envoy.config.bootstrap.v3.Bootstrap', b).length > 0, 'a valid Bootstrap message');
  const args = waypointEnvoyArgs({ configPath: '/etc/ambit/bootstrap.json', gateway: 'waypoint' });
  t.is(args[args.indexOf('--service-node') + 1], 'waypoint~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local');
});

test('envoy --mode validate accepts the bootstrap with all resources of the small model (of the sniffed one, of an empty one)', async (t) => {
  if (!envoyAvailable()) return t.pass('no Envoy binary; skipped');
  const dir = mkdtempSync(join(tmpdir(), 'ambit-wp-validate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await LocalCa.open(join(dir, 'ca.pem'), join(dir, 'ca-key.pem'), TD);
  const cert = await ca.issue(parseIdentity(`spiffe://${TD}/ns/shop/sa/waypoint`), 3600);
  const rootPath = join(dir, 'ca.pem');
  const bootstrap = waypointBootstrap({ xdsHost: '127.0.0.1', xdsPort: 15012, xdsServerName: 'istiod.istio-system.svc', rootCertPath: rootPath, tokenPath: rootPath, clusterId: 'Kubernetes' });
  const secrets = waypointSecrets({ certChainPem: cert.chainPem.join(''), privateKeyPem: cert.privateKeyPem, rootCertPem: cert.rootsPem[0]! });
  const empty: WaypointModel = { ...smallModel(), services: [], backends: [], policies: [] };
  // The Deployment's command line supplies the node (as Kubernetes would expand it).
  const all = waypointEnvoyArgs({ configPath: 'unused', gateway: 'waypoint' });
  const args = ['--service-node', '--service-cluster', '--config-yaml']
    .flatMap((flag) => [flag, all[all.indexOf(flag) + 1]!])
    .map((a) => a.replace('$(INSTANCE_IP)', '10.0.0.9').replaceAll('$(POD_NAME)', 'waypoint-x').replaceAll('$(POD_NAMESPACE)', 'shop'));
  for (const model of [smallModel(), sniffedModel(), empty]) {
    const v = validateEnvoyConfig(staticValidationConfig(bootstrap, { ...waypointEnvoyResources(model), secrets }), args);
    t.true(v.ok, v.output.slice(-2000));
  }
});
