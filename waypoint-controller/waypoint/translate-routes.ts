// Gateway API HTTPRoute (GAMMA: a Service parentRef) -> the waypoint's HttpRouteRules, in Gateway API precedence,
// and the route's status per parent. Invalid rules are dropped and reported (Gateway API's PartiallyInvalid: the
// other rules keep working); unresolvable backends keep their share of the weight, which gets a 500.
import type { V1Service } from '@kubernetes/client-node';
import type { BackendRef, HeaderChanges, HttpFilter, HttpMatch, HttpRouteRule, WaypointService, WeightedBackend } from './model.js';
import { parseGatewayDuration } from './translate-duration.js';
import { portProtocol } from './translate-services.js';
import {
  GATEWAY_GROUP,
  MESH_CONTROLLER,
  isCoreGroup,
  isList,
  nsName,
  type BackendObjectRef,
  type Condition,
  type HTTPRoute,
  type HTTPRouteFilter,
  type HTTPRouteMatchSpec,
  type HTTPRouteRuleSpec,
  type HeaderModifierSpec,
  type ParentRef,
  type PathModifierSpec,
  type ReferenceGrant,
  type RouteParentStatus,
  type StringMatchSpec,
} from './translate-types.js';

/** What a route's backendRefs resolve against. */
export interface RouteContext {
  /** Every Service, by `<namespace>/<name>`. */
  services: Map<string, V1Service>;
  referenceGrants: ReferenceGrant[];
  domainSuffix: string;
}

interface Problem {
  reason: string;
  message: string;
}

/** A valid rule's translation, shared by the entries of its matches. */
type CompiledRule = Omit<HttpRouteRule, 'matches'>;

/** One match of one valid rule: the unit Gateway API's precedence orders. */
export interface RouteEntry {
  route: string;
  createdMs: number;
  rule: number;
  match: number;
  httpMatch: HttpMatch;
  compiled: CompiledRule;
}

/** A route's rules translated once, independent of its parents. */
export interface CompiledRoute {
  entries: RouteEntry[];
  ruleCount: number;
  /** Rules dropped as invalid, one message each. */
  invalid: Problem[];
  /** Unresolvable references (ResolvedRefs=False), in rule order. */
  refProblems: Problem[];
  /** `<namespace>/<name>` of the Services used as backends or mirrors. */
  backendServices: Set<string>;
}

const PATH_TYPES = new Set(['Exact', 'PathPrefix', 'RegularExpression']);
const VALUE_TYPES = new Set(['Exact', 'RegularExpression']);
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);
const REDIRECT_CODES = new Set([301, 302, 303, 307, 308]);
const MAX_WEIGHT = 1_000_000;

class RuleError extends Error {}
const fail = (message: string): never => {
  throw new RuleError(message);
};

const str = (v: unknown, what: string): string => (typeof v === 'string' ? v : fail(`${what} must be a string`));
const list = <T>(v: T[] | undefined, what: string): T[] => (v === undefined || v === null ? [] : isList(v) ? v : fail(`${what} must be a list`));
const int = (v: unknown, lo: number, hi: number, what: string): number =>
  typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi ? v : fail(`${what} must be an integer in [${lo}, ${hi}], not ${JSON.stringify(v)}`);

/** Envoy matches with RE2: a JavaScript syntax check, plus what RE2 lacks (lookaround, backreferences). */
function regex(v: unknown, what: string): string {
  const s = str(v, what);
  try {
    new RegExp(s);
  } catch {
    fail(`${what} ${JSON.stringify(s)} is not a valid regular expression`);
  }
  if (/\(\?<?[=!]|\\[1-9]/.test(s)) fail(`${what} ${JSON.stringify(s)} uses lookaround or backreferences, which RE2 does not support`);
  return s;
}

function valueMatches(specs: StringMatchSpec[] | undefined, what: string, fold: boolean): HttpMatch['headers'] {
  const seen = new Set<string>();
  const out: HttpMatch['headers'] = [];
  for (const m of list(specs, what)) {
    const type = m?.type ?? 'Exact';
    if (!VALUE_TYPES.has(type)) fail(`${what} type ${JSON.stringify(type)} is not supported`);
    const name = str(m.name, `${what} name`);
    if (!name) fail(`${what} name must not be empty`);
    const value = type === 'Exact' ? str(m.value, `${what} value`) : regex(m.value, `${what} value`);
    // Gateway API: of entries with equivalent names only the first counts (header names are case-insensitive).
    const key = fold ? name.toLowerCase() : name;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ type: type as 'Exact' | 'RegularExpression', name, value });
  }
  return out;
}

function compileMatch(m: HTTPRouteMatchSpec): HttpMatch {
  if (typeof m !== 'object' || m === null) fail('a match must be an object');
  const type = m.path?.type ?? 'PathPrefix';
  if (!PATH_TYPES.has(type)) fail(`path match type ${JSON.stringify(type)} is not supported`);
  const raw = m.path?.value ?? '/';
  const value = type === 'RegularExpression' ? regex(raw, 'path') : str(raw, 'path');
  if (type !== 'RegularExpression' && !value.startsWith('/')) fail(`path ${JSON.stringify(value)} must start with "/"`);
  const out: HttpMatch = {
    path: { type: type as 'Exact' | 'PathPrefix' | 'RegularExpression', value },
    headers: valueMatches(m.headers, 'header match', true),
    queryParams: valueMatches(m.queryParams, 'query parameter match', false),
  };
  if (m.method !== undefined) {
    const method = str(m.method, 'method').toUpperCase();
    if (!METHODS.has(method)) fail(`method ${JSON.stringify(m.method)} is not an HTTP method Gateway API supports`);
    out.method = method;
  }
  return out;
}

function headerChanges(spec: HeaderModifierSpec | undefined, what: string): HeaderChanges {
  const pairs = (v: { name: string; value: string }[] | undefined, op: string) =>
    list(v, `${what}.${op}`).map((h) => ({ name: str(h?.name, `${what}.${op} name`), value: str(h?.value, `${what}.${op} value`) }));
  return { set: pairs(spec?.set, 'set'), add: pairs(spec?.add, 'add'), remove: list(spec?.remove, `${what}.remove`).map((r) => str(r, `${what}.remove`)) };
}

function pathModifier(p: PathModifierSpec | undefined, matches: HttpMatch[], what: string): { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string } | undefined {
  if (p === undefined) return undefined;
  if (p.type === 'ReplaceFullPath') return { type: p.type, value: str(p.replaceFullPath, `${what} replaceFullPath`) };
  if (p.type === 'ReplacePrefixMatch') {
    // Gateway API: only a prefix match defines which prefix to replace.
    if (!matches.every((m) => m.path?.type === 'PathPrefix')) fail(`${what} ReplacePrefixMatch needs every match to be a PathPrefix match`);
    return { type: p.type, value: str(p.replacePrefixMatch, `${what} replacePrefixMatch`) };
  }
  return fail(`${what} path type ${JSON.stringify(p.type)} is not supported`);
}

/** A cross-namespace reference needs a ReferenceGrant in the target namespace (Gateway API). */
function granted(grants: ReferenceGrant[], fromNs: string, toNs: string, name: string): boolean {
  return grants.some(
    (g) =>
      g.metadata?.namespace === toNs &&
      (g.spec?.from ?? []).some((f) => f.group === GATEWAY_GROUP && f.kind === 'HTTPRoute' && f.namespace === fromNs) &&
      (g.spec?.to ?? []).some((t) => isCoreGroup(t.group) && t.kind === 'Service' && (!t.name || t.name === name)),
  );
}

/** A Service backend, or why it cannot be used (Gateway API's ResolvedRefs reasons; Istio's messages). */
function resolveBackend(b: BackendObjectRef, fromNs: string, ctx: RouteContext): { ref: BackendRef; service: string } | Problem {
  const kind = b.kind ?? 'Service';
  if (kind !== 'Service' || !isCoreGroup(b.group)) return { reason: 'InvalidKind', message: `referencing unsupported backendRef: group "${b.group ?? ''}" kind "${kind}"` };
  if (typeof b.name !== 'string' || !b.name) return { reason: 'BackendNotFound', message: 'backendRef without a name' };
  const ns = b.namespace ?? fromNs;
  if (ns !== fromNs && !granted(ctx.referenceGrants, fromNs, ns, b.name)) {
    return { reason: 'RefNotPermitted', message: `backendRef ${ns}/${b.name} is not accessible to an HTTPRoute in namespace "${fromNs}" (missing a ReferenceGrant?)` };
  }
  const hostname = `${b.name}.${ns}.svc.${ctx.domainSuffix}`;
  if (b.port === undefined || b.port === null) return { reason: 'InvalidDestination', message: `port is required in backendRef ${ns}/${b.name}` };
  const svc = ctx.services.get(`${ns}/${b.name}`);
  if (!svc) return { reason: 'BackendNotFound', message: `backend(${hostname}) not found` };
  if (!(svc.spec?.ports ?? []).some((p) => p.port === b.port && (p.protocol ?? 'TCP') === 'TCP')) {
    return { reason: 'BackendNotFound', message: `backend(${hostname}) has no TCP port ${b.port}` };
  }
  return { ref: { namespace: ns, hostname, port: b.port }, service: `${ns}/${b.name}` };
}

interface RuleScope {
  fromNs: string;
  ctx: RouteContext;
  problems: Problem[];
  backends: Set<string>;
}

function compileFilter(f: HTTPRouteFilter, matches: HttpMatch[], s: RuleScope): HttpFilter | undefined {
  switch (f?.type) {
    case 'RequestHeaderModifier':
      return { type: f.type, changes: headerChanges(f.requestHeaderModifier, 'requestHeaderModifier') };
    case 'ResponseHeaderModifier':
      return { type: f.type, changes: headerChanges(f.responseHeaderModifier, 'responseHeaderModifier') };
    case 'RequestRedirect': {
      const r = f.requestRedirect ?? {};
      if (r.scheme !== undefined && r.scheme !== 'http' && r.scheme !== 'https') fail(`redirect scheme ${JSON.stringify(r.scheme)} is not http or https`);
      const statusCode = r.statusCode ?? 302;
      if (!REDIRECT_CODES.has(statusCode)) fail(`redirect statusCode ${JSON.stringify(statusCode)} is not one of ${[...REDIRECT_CODES].join(', ')}`);
      const path = pathModifier(r.path, matches, 'requestRedirect');
      return {
        type: f.type,
        statusCode,
        ...(r.scheme !== undefined ? { scheme: r.scheme } : {}),
        ...(r.hostname !== undefined ? { hostname: str(r.hostname, 'redirect hostname') } : {}),
        ...(path ? { path } : {}),
        ...(r.port !== undefined ? { port: int(r.port, 1, 65535, 'redirect port') } : {}),
      };
    }
    case 'URLRewrite': {
      const r = f.urlRewrite ?? {};
      const path = pathModifier(r.path, matches, 'urlRewrite');
      return { type: f.type, ...(r.hostname !== undefined ? { hostname: str(r.hostname, 'rewrite hostname') } : {}), ...(path ? { path } : {}) };
    }
    case 'RequestMirror': {
      const m = f.requestMirror;
      if (!m?.backendRef) fail('requestMirror needs a backendRef');
      let percent: number | undefined;
      if (m!.percent !== undefined) percent = int(m!.percent, 0, 100, 'mirror percent');
      else if (m!.fraction !== undefined) {
        const den = m!.fraction.denominator ?? 100;
        const num = int(m!.fraction.numerator, 0, Number.MAX_SAFE_INTEGER, 'mirror fraction numerator');
        if (!(typeof den === 'number' && den > 0 && num <= den)) fail('mirror fraction needs 0 <= numerator <= denominator, denominator > 0');
        percent = (100 * num) / den;
      }
      const r = resolveBackend(m!.backendRef, s.fromNs, s.ctx);
      if ('reason' in r) {
        s.problems.push(r); // Gateway API: an unresolvable mirror is reported; the rule still serves, unmirrored
        return undefined;
      }
      s.backends.add(r.service);
      return { type: f.type, backend: r.ref, ...(percent !== undefined ? { percent } : {}) };
    }
    default:
      return fail(`filter type ${JSON.stringify(f?.type)} is not supported`);
  }
}

function compileTimeouts(t: HTTPRouteRuleSpec['timeouts']): Pick<HttpRouteRule, 'requestTimeoutMs' | 'backendRequestTimeoutMs'> {
  const parse = (v: string | undefined, what: string): number | undefined => {
    if (v === undefined) return undefined;
    const d = parseGatewayDuration(v);
    return 'error' in d ? fail(`timeouts.${what}: ${d.error}`) : d.ms;
  };
  const request = parse(t?.request, 'request');
  const backend = parse(t?.backendRequest, 'backendRequest');
  // Gateway API (its CEL rule): one attempt cannot outlast a bounded request (0 = no timeout).
  if (request && backend !== undefined && backend > request) fail(`timeouts.backendRequest (${t!.backendRequest}) must not exceed timeouts.request (${t!.request})`);
  return { ...(request !== undefined ? { requestTimeoutMs: request } : {}), ...(backend !== undefined ? { backendRequestTimeoutMs: backend } : {}) };
}

function compileRule(spec: HTTPRouteRuleSpec, name: string, s: RuleScope): { rule: CompiledRule; matches: HttpMatch[] } {
  if (typeof spec !== 'object' || spec === null) fail('a rule must be an object');
  const specs = list(spec.matches, 'matches');
  const matches = (specs.length ? specs : [{}]).map(compileMatch); // no match = PathPrefix "/" (the CRD default)
  // References are checked into a scratch list so that a rule dropped later reports only why it was dropped.
  const scope: RuleScope = { ...s, problems: [], backends: new Set() };
  const filters = list(spec.filters, 'filters').map((f) => compileFilter(f, matches, scope)).filter((f): f is HttpFilter => f !== undefined);
  const types = new Set(filters.map((f) => f.type));
  if (types.has('RequestRedirect') && types.has('URLRewrite')) fail('RequestRedirect and URLRewrite cannot be combined');
  const backends: WeightedBackend[] = [];
  let unresolved = 0;
  for (const b of list(spec.backendRefs, 'backendRefs')) {
    if (typeof b !== 'object' || b === null) fail('a backendRef must be an object');
    if (list(b.filters, 'backendRef filters').length) fail('filters on a backendRef are not supported');
    const weight = b.weight === undefined ? 1 : int(b.weight, 0, MAX_WEIGHT, 'backendRef weight');
    const r = resolveBackend(b, s.fromNs, s.ctx);
    if ('reason' in r) {
      scope.problems.push(r);
      unresolved += weight;
    } else {
      scope.backends.add(r.service);
      if (weight > 0) backends.push({ ...r.ref, weight }); // as Istio: a 0-weight backend gets no traffic and no cluster
    }
  }
  const timeouts = compileTimeouts(spec.timeouts);
  s.problems.push(...scope.problems);
  for (const b of scope.backends) s.backends.add(b);
  return { matches, rule: { name, filters, backends, ...(unresolved ? { unresolvedBackendWeight: unresolved } : {}), ...timeouts } };
}

const createdMs = (route: HTTPRoute): number => {
  const t = route.metadata?.creationTimestamp;
  const ms = t === undefined ? NaN : new Date(t).getTime();
  return Number.isNaN(ms) ? Number.MAX_SAFE_INTEGER : ms; // unknown age sorts as the youngest
};

/** Translate a route's rules (independent of its parents). Never throws: invalid rules are listed in `invalid`. */
export function compileRoute(route: HTTPRoute, ctx: RouteContext): CompiledRoute {
  const key = nsName(route);
  const out: CompiledRoute = { entries: [], ruleCount: 0, invalid: [], refProblems: [], backendServices: new Set() };
  const rules: unknown = route.spec?.rules;
  const specs = isList(rules) && rules.length ? (rules as HTTPRouteRuleSpec[]) : [{}]; // the CRD's default: one rule matching "/"
  out.ruleCount = specs.length;
  const scope: RuleScope = { fromNs: route.metadata?.namespace ?? '', ctx, problems: out.refProblems, backends: out.backendServices };
  const created = createdMs(route);
  specs.forEach((spec, i) => {
    try {
      const { rule, matches } = compileRule(spec, `${key}/${i}`, scope);
      matches.forEach((httpMatch, m) => out.entries.push({ route: key, createdMs: created, rule: i, match: m, httpMatch, compiled: rule }));
    } catch (e) {
      out.invalid.push({ reason: 'UnsupportedValue', message: `rule ${i}: ${e instanceof RuleError ? e.message : String(e)}` });
    }
  });
  return out;
}

const PATH_RANK = { Exact: 3, PathPrefix: 2, RegularExpression: 1 } as const;
const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Gateway API precedence: exact path, then the longest prefix (regular expressions after prefixes, longest first, as
 * Istio ranks them), a method, most headers, most query parameters; ties go to the oldest route, then
 * `<namespace>/<name>`, then rule and match order.
 */
export function comparePrecedence(a: RouteEntry, b: RouteEntry): number {
  const pa = a.httpMatch.path!;
  const pb = b.httpMatch.path!;
  return (
    PATH_RANK[pb.type] - PATH_RANK[pa.type] ||
    pb.value.length - pa.value.length ||
    Number(b.httpMatch.method !== undefined) - Number(a.httpMatch.method !== undefined) ||
    b.httpMatch.headers.length - a.httpMatch.headers.length ||
    b.httpMatch.queryParams.length - a.httpMatch.queryParams.length ||
    a.createdMs - b.createdMs ||
    cmp(a.route, b.route) ||
    a.rule - b.rule ||
    a.match - b.match
  );
}

/** The rules of one service port, first match wins: sorted entries, adjacent matches of one rule joined again. */
export function orderRules(entries: RouteEntry[]): HttpRouteRule[] {
  const out: HttpRouteRule[] = [];
  let last: RouteEntry | undefined;
  for (const e of [...entries].sort(comparePrecedence)) {
    if (last && last.compiled === e.compiled) out[out.length - 1]!.matches.push(e.httpMatch);
    else out.push({ ...e.compiled, matches: [e.httpMatch] });
    last = e;
  }
  return out;
}

// ---- parents and status ----

export const isServiceParent = (ref: ParentRef | undefined): boolean => typeof ref === 'object' && ref !== null && ref.kind === 'Service' && isCoreGroup(ref.group);

/** `<namespace>/<name>` of a Service parent. */
export const parentService = (route: HTTPRoute, ref: ParentRef): string => `${ref.namespace ?? route.metadata?.namespace ?? ''}/${ref.name}`;

/** A parentRef's identity with its defaults applied (Gateway API: parentRefs of a route are distinct). */
export const parentRefKey = (route: HTTPRoute, r: ParentRef): string =>
  JSON.stringify([r.group ?? '', r.kind ?? '', r.namespace ?? route.metadata?.namespace ?? '', r.name, r.sectionName ?? '', r.port ?? '']);

const cond = (type: string, ok: boolean, reason: string, message: string, generation: number | undefined): Condition => ({
  type,
  status: ok ? 'True' : 'False',
  reason,
  message,
  ...(generation !== undefined ? { observedGeneration: generation } : {}),
});

function conditions(route: HTTPRoute, c: CompiledRoute, accepted: Problem | undefined, waypoint: Problem | undefined): Condition[] {
  const g = route.metadata?.generation;
  const allInvalid = c.invalid.length === c.ruleCount;
  const denied = accepted ?? (allInvalid ? { reason: 'UnsupportedValue', message: c.invalid.map((p) => p.message).join('; ') } : undefined);
  const out = [denied ? cond('Accepted', false, denied.reason, denied.message, g) : cond('Accepted', true, 'Accepted', 'Route was valid', g)];
  if (!denied && c.invalid.length) out.push(cond('PartiallyInvalid', true, 'UnsupportedValue', `dropped invalid rules: ${c.invalid.map((p) => p.message).join('; ')}`, g));
  out.push(
    c.refProblems.length
      ? cond('ResolvedRefs', false, c.refProblems[0]!.reason, c.refProblems.map((p) => p.message).join('; '), g)
      : cond('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved', g),
  );
  out.push(waypoint ? cond('ResolvedWaypoints', false, waypoint.reason, waypoint.message, g) : cond('ResolvedWaypoints', true, 'ResolvedWaypoints', 'All waypoints resolved', g));
  return out;
}

const parentStatus = (ref: ParentRef, conds: Condition[]): RouteParentStatus => ({ parentRef: ref, controllerName: MESH_CONTROLLER, conditions: conds });

/** Which HTTP (or unknown-protocol) ports of a bound parent the route attaches to, or why none. */
function parentPorts(route: HTTPRoute, ref: ParentRef, svc: V1Service, bound: WaypointService, waypointNs: string): number[] | Problem {
  const routeNs = route.metadata?.namespace ?? '';
  const key = `${bound.namespace}/${bound.name}`;
  // Producer routes (the Service's namespace) and, as Istio, routes in the waypoint's namespace apply to every client.
  // GAMMA consumer routes apply only to clients in the route's namespace, which a waypoint cannot tell apart here.
  if (routeNs !== bound.namespace && routeNs !== waypointNs) {
    return { reason: 'UnsupportedValue', message: `consumer routes (an HTTPRoute in ${routeNs} for Service ${key}) are not supported by waypoints` };
  }
  const spec = (svc.spec?.ports ?? []).filter((p) => bound.ports.some((b) => b.port === p.port));
  const picked = ref.port !== undefined ? spec.filter((p) => p.port === ref.port) : ref.sectionName !== undefined ? spec.filter((p) => p.name === ref.sectionName) : spec;
  if (!picked.length) return { reason: 'NoMatchingParent', message: `Service ${key} has no port ${ref.port ?? JSON.stringify(ref.sectionName)}` };
  // Undeclared ports may carry HTTP (the waypoint sniffs them): routes apply there; declared TCP ports never.
  const http = picked.filter((p) => portProtocol(p) !== 'tcp');
  if (!http.length) {
    const which = picked.map((p) => p.port).join(', ');
    return { reason: 'NoMatchingParent', message: `Service ${key} port ${which} is declared TCP: name it http-*/grpc-* (or leave it unnamed) or set appProtocol http for HTTPRoutes to apply` };
  }
  return http.map((p) => p.port);
}

/** The status and attachment of one parentRef whose Service is bound to this waypoint. */
export function boundParent(
  route: HTTPRoute,
  compiled: CompiledRoute,
  ref: ParentRef,
  svc: V1Service,
  bound: WaypointService,
  waypointNs: string,
): { status: RouteParentStatus; ports: number[] } {
  const ports = parentPorts(route, ref, svc, bound, waypointNs);
  const denied = isList(ports) ? undefined : ports;
  const conds = conditions(route, compiled, denied, undefined);
  const accepted = conds[0]!.status === 'True';
  return { status: parentStatus(ref, conds), ports: accepted && isList(ports) ? ports : [] };
}

export const MISSING_WAYPOINT: Problem = {
  reason: 'MissingUseWaypointLabel',
  message: 'istio.io/use-waypoint label missing from parent and parent namespace; in ambient mode, route will not be respected',
};

/**
 * An HTTPRoute's whole `status.parents` (ours only: Service parents): the statuses waypoints claimed for the parents
 * bound to them (`claimed`, from every waypoint's model) and, for the others, why no waypoint serves them.
 * ambit has no sidecars, so a parent without a waypoint is not Accepted (Istio accepts it for sidecars and only says
 * so in ResolvedWaypoints). `unbound` lets the caller say why a Service has no waypoint (default: Istio's message).
 */
export function httpRouteStatus(
  route: HTTPRoute,
  claimed: RouteParentStatus[],
  ctx: RouteContext,
  unbound: (svc: V1Service) => Problem | undefined = () => undefined,
): RouteParentStatus[] {
  const refs = route.spec?.parentRefs;
  if (!isList(refs)) return [];
  const byKey = new Map(claimed.map((s) => [parentRefKey(route, s.parentRef), s]));
  const seen = new Set<string>();
  let compiled: CompiledRoute | undefined;
  const out: RouteParentStatus[] = [];
  for (const ref of refs as ParentRef[]) {
    if (!isServiceParent(ref)) continue; // not a mesh parent: another controller's
    const key = parentRefKey(route, ref);
    if (seen.has(key)) continue;
    seen.add(key);
    const mine = byKey.get(key);
    if (mine) {
      out.push(mine);
      continue;
    }
    compiled ??= compileRoute(route, ctx);
    const svc = ctx.services.get(parentService(route, ref));
    const why = svc
      ? (unbound(svc) ?? MISSING_WAYPOINT)
      : { reason: 'NoMatchingParent', message: `parent service: ${JSON.stringify(ref.name)} not found` };
    out.push(parentStatus(ref, conditions(route, compiled, why, svc ? why : { reason: 'NoMatchingParent', message: 'parent not found' })));
  }
  return out;
}
