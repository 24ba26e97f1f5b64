// HTTPRoute rules of one service port -> the Envoy routes of its inline route configuration.
//
// Order: Gateway API precedence over all matches of all rules (exact path, then longer prefix, then method, then
// more headers, then more query parameters; ties keep the model's order, which is the routes' own order).
// No rule -> the default route to the service's own cluster. Rules but no match -> Envoy's 404, as Gateway API wants.
// Timeouts: route.timeout defaults to none (Envoy's own default is 15 s; Istio sets 0s).
import type { BackendRef, HeaderChanges, HttpFilter, HttpMatch, HttpRouteRule } from '../model.js';
import { ms, type JsonObject } from './common.js';
import { vipName } from './names.js';

/** The cluster of a backend service port (all backends are reached through connect_originate, like bound ones). */
export const backendCluster = (b: BackendRef): string => vipName(b.port, 'http', b.hostname);

function stringMatch(type: 'Exact' | 'RegularExpression', value: string): JsonObject {
  return type === 'Exact' ? { exact: value } : { safe_regex: { regex: value } };
}

/** Envoy RouteMatch of one HTTPRouteMatch. */
export function routeMatch(m: HttpMatch | undefined): JsonObject {
  const out: JsonObject = {};
  const p = m?.path;
  if (!p || (p.type === 'PathPrefix' && p.value.replace(/\/+$/, '') === '')) out.prefix = '/';
  else if (p.type === 'Exact') out.path = p.value;
  else if (p.type === 'PathPrefix') out.path_separated_prefix = p.value.replace(/\/+$/, '');
  else out.safe_regex = { regex: p.value };
  const headers: JsonObject[] = (m?.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), string_match: stringMatch(h.type, h.value) }));
  if (m?.method) headers.push({ name: ':method', string_match: { exact: m.method } });
  if (headers.length > 0) out.headers = headers;
  const qp = (m?.queryParams ?? []).map((q) => ({ name: q.name, string_match: stringMatch(q.type, q.value) }));
  if (qp.length > 0) out.query_parameters = qp;
  return out;
}

/** Sort key per Gateway API precedence (smaller first). */
function precedence(m: HttpMatch | undefined): number[] {
  const p = m?.path;
  const exact = p?.type === 'Exact' ? 0 : 1;
  const prefixLen = p?.type === 'PathPrefix' ? p.value.length : p?.type === 'Exact' ? p.value.length : 0;
  return [exact, -prefixLen, m?.method ? 0 : 1, -(m?.headers.length ?? 0), -(m?.queryParams.length ?? 0)];
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function headerChanges(c: HeaderChanges, prefix: 'request' | 'response'): JsonObject {
  const add = [
    ...c.set.map((h) => ({ header: { key: h.name, value: h.value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' })),
    ...c.add.map((h) => ({ header: { key: h.name, value: h.value }, append_action: 'APPEND_IF_EXISTS_OR_ADD' })),
  ];
  return {
    ...(add.length > 0 ? { [`${prefix}_headers_to_add`]: add } : {}),
    ...(c.remove.length > 0 ? { [`${prefix}_headers_to_remove`]: c.remove } : {}),
  };
}

const REDIRECT_CODES: Record<number, string> = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

function redirect(f: Extract<HttpFilter, { type: 'RequestRedirect' }>): JsonObject {
  const out: JsonObject = { response_code: REDIRECT_CODES[f.statusCode] ?? 'FOUND' };
  if (f.scheme) out.scheme_redirect = f.scheme;
  if (f.hostname) out.host_redirect = f.hostname;
  if (f.port) out.port_redirect = f.port;
  if (f.path?.type === 'ReplaceFullPath') out.path_redirect = f.path.value;
  else if (f.path?.type === 'ReplacePrefixMatch') out.prefix_rewrite = f.path.value;
  return out;
}

/** URLRewrite on a route action. A prefix replaced by "/" uses a regex so `/foo/bar` becomes `/bar`, not `//bar`. */
function rewrite(f: Extract<HttpFilter, { type: 'URLRewrite' }>, m: HttpMatch | undefined): JsonObject {
  const out: JsonObject = {};
  if (f.hostname) out.host_rewrite_literal = f.hostname;
  if (f.path?.type === 'ReplaceFullPath') out.regex_rewrite = { pattern: { regex: '^/.*$' }, substitution: f.path.value };
  else if (f.path?.type === 'ReplacePrefixMatch') {
    const matched = m?.path?.type === 'PathPrefix' ? m.path.value.replace(/\/+$/, '') : '';
    if (f.path.value === '/' && matched) out.regex_rewrite = { pattern: { regex: `^${matched.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/*` }, substitution: '/' };
    else out.prefix_rewrite = f.path.value;
  }
  return out;
}

/** Istio's default waypoint retry policy, with timeouts.backendRequest as the per-try timeout. */
function retryPolicy(rule: HttpRouteRule): JsonObject {
  return {
    retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
    num_retries: 2,
    retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate' } }],
    host_selection_retry_max_attempts: 5,
    ...(rule.backendRequestTimeoutMs !== undefined ? { per_try_timeout: ms(rule.backendRequestTimeoutMs) } : {}),
  };
}

function action(rule: HttpRouteRule, m: HttpMatch | undefined): JsonObject {
  const backends = rule.backends.filter((b) => b.weight > 0);
  if (backends.length === 0) return { direct_response: { status: 500 } };
  const route: JsonObject =
    backends.length === 1
      ? { cluster: backendCluster(backends[0]!) }
      : { weighted_clusters: { clusters: backends.map((b) => ({ name: backendCluster(b), weight: b.weight })) } };
  route.timeout = ms(rule.requestTimeoutMs ?? 0);
  route.retry_policy = retryPolicy(rule);
  const mirrors: JsonObject[] = [];
  for (const f of rule.filters) {
    if (f.type === 'URLRewrite') Object.assign(route, rewrite(f, m));
    else if (f.type === 'RequestMirror') {
      mirrors.push({
        cluster: backendCluster(f.backend),
        ...(f.percent !== undefined && f.percent < 100 ? { runtime_fraction: { default_value: { numerator: f.percent, denominator: 'HUNDRED' } } } : {}),
      });
    }
  }
  if (mirrors.length > 0) route.request_mirror_policies = mirrors;
  return { route };
}

function oneRoute(rule: HttpRouteRule, m: HttpMatch | undefined): JsonObject {
  const out: JsonObject = { name: rule.name, match: routeMatch(m) };
  const redir = rule.filters.find((f) => f.type === 'RequestRedirect');
  Object.assign(out, redir ? { redirect: redirect(redir) } : action(rule, m));
  for (const f of rule.filters) {
    if (f.type === 'RequestHeaderModifier') Object.assign(out, headerChanges(f.changes, 'request'));
    else if (f.type === 'ResponseHeaderModifier') Object.assign(out, headerChanges(f.changes, 'response'));
  }
  return out;
}

/** The routes of one HTTP service port (`own`: its own cluster, for the default route). */
export function httpRoutes(rules: readonly HttpRouteRule[], own: BackendRef): JsonObject[] {
  if (rules.length === 0) {
    return [{ name: 'default', match: { prefix: '/' }, route: { cluster: backendCluster(own), timeout: '0s', retry_policy: retryPolicy({ name: '', matches: [], filters: [], backends: [] }) } }];
  }
  const pairs = rules.flatMap((rule, i) => (rule.matches.length > 0 ? rule.matches : [undefined]).map((m, j) => ({ rule, m, order: i * 1000 + j })));
  pairs.sort((a, b) => compare(precedence(a.m), precedence(b.m)) || a.order - b.order);
  return pairs.map(({ rule, m }) => oneRoute(rule, m));
}
