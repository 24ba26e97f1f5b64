// L7 AuthorizationPolicies -> Envoy RBAC (envoy.filters.http.rbac on HTTP ports, envoy.filters.network.rbac on TCP
// ports), with Istio's semantics: a DENY filter first, then an ALLOW filter only if some ALLOW policy applies (no
// ALLOW policy -> allow; an ALLOW policy none of whose rules can match -> deny everything).
//
// Identities: main_internal is an internal connection without TLS, so principals and namespaces match the HBONE
// client's SPIFFE id that connect_terminate put in filter state (FS_PEER_PRINCIPAL), not `authenticated`.
//
// Fail closed: what cannot be enforced where it lands never widens access. On a TCP port an HTTP-only field
// (hosts, methods, paths, request.* conditions) drops the whole rule from an ALLOW (it never matches) and is left
// out of a DENY rule (which then matches more). A condition key we do not support at all is treated the same way
// on HTTP ports.
import { serviceKey, type L7Condition, type L7Operation, type L7Policy, type L7Rule, type L7Source, type WaypointService } from '../model.js';
import { typed, type Json, type JsonObject } from './common.js';
import { FS_PEER_PRINCIPAL } from './names.js';

export type RbacMode = 'http' | 'tcp';
type Action = L7Policy['action'];

/** Marker: this rule cannot match (an ALLOW rule using something the port cannot check). */
const DROP = Symbol('drop');
type Part = JsonObject | typeof DROP | undefined;

const ANY: JsonObject = { any: true };

const and = (key: 'and_rules' | 'and_ids', items: JsonObject[]): JsonObject =>
  items.length === 0 ? ANY : items.length === 1 ? items[0]! : { [key]: { [key === 'and_rules' ? 'rules' : 'ids']: items } };
const or = (key: 'or_rules' | 'or_ids', items: JsonObject[]): JsonObject =>
  items.length === 1 ? items[0]! : { [key]: { [key === 'or_rules' ? 'rules' : 'ids']: items } };

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Istio's string forms: `*` anything, `x*` prefix, `*x` suffix, else exact. */
function stringMatch(v: string, base = '', ignoreCase = false): JsonObject {
  const ic: JsonObject = ignoreCase ? { ignore_case: true } : {};
  if (v === '*') return base ? { prefix: base, ...ic } : { safe_regex: { regex: '.+' } };
  if (v.endsWith('*')) return { prefix: base + v.slice(0, -1), ...ic };
  if (v.startsWith('*')) return base ? { safe_regex: { regex: `${escapeRegex(base)}.*${escapeRegex(v.slice(1))}` } } : { suffix: v.slice(1), ...ic };
  return { exact: base + v, ...ic };
}

const peer = (string_match: JsonObject): JsonObject => ({ filter_state: { key: FS_PEER_PRINCIPAL, string_match } });
const principalId = (p: string) => peer(stringMatch(p, 'spiffe://'));
const namespaceId = (ns: string) => (ns === '*' ? peer({ prefix: 'spiffe://' }) : peer({ safe_regex: { regex: `.*/ns/${escapeRegex(ns)}/.*` } }));

function cidr(block: string): JsonObject {
  const [ip, len] = block.split('/');
  return { address_prefix: ip!, prefix_len: len !== undefined ? Number(len) : ip!.includes(':') ? 128 : 32 };
}

const header = (name: string, v: string, ignoreCase = false): JsonObject => ({ header: { name, string_match: stringMatch(v, '', ignoreCase) } });

/** A list field: `values` any-of, `notValues` none-of; undefined when neither is set. */
function listPart(
  kind: 'rules' | 'ids',
  values: readonly string[] | readonly number[] | undefined,
  notValues: readonly string[] | readonly number[] | undefined,
  one: (v: never) => JsonObject,
): JsonObject[] {
  const orKey = kind === 'rules' ? 'or_rules' : 'or_ids';
  const notKey = kind === 'rules' ? 'not_rule' : 'not_id';
  const out: JsonObject[] = [];
  if (values && values.length > 0) out.push(or(orKey, (values as never[]).map(one)));
  if (notValues && notValues.length > 0) out.push({ [notKey]: or(orKey, (notValues as never[]).map(one)) });
  return out;
}

const l7Only = (action: Action): typeof DROP | undefined => (action === 'ALLOW' ? DROP : undefined);

function operation(op: L7Operation, mode: RbacMode, action: Action): Part {
  const parts: JsonObject[] = [];
  const httpOnly = [op.hosts, op.notHosts, op.methods, op.notMethods, op.paths, op.notPaths].some((l) => l && l.length > 0);
  if (httpOnly && mode === 'tcp' && action === 'ALLOW') return DROP;
  if (mode === 'http') {
    parts.push(...listPart('rules', op.hosts, op.notHosts, (h: string) => header(':authority', h, true)));
    parts.push(...listPart('rules', op.methods, op.notMethods, (m: string) => header(':method', m)));
    parts.push(...listPart('rules', op.paths, op.notPaths, (p: string) => ({ url_path: { path: stringMatch(p) } })));
  }
  parts.push(...listPart('rules', op.ports, op.notPorts, (p: number) => ({ destination_port: p })));
  return and('and_rules', parts);
}

function source(src: L7Source): JsonObject {
  const parts: JsonObject[] = [
    ...listPart('ids', src.principals, src.notPrincipals, principalId),
    ...listPart('ids', src.namespaces, src.notNamespaces, namespaceId),
    ...listPart('ids', src.ipBlocks, src.notIpBlocks, (b: string) => ({ direct_remote_ip: cidr(b) })),
  ];
  return and('and_ids', parts);
}

/** A `when` condition: which side of the Envoy policy it lands on, or DROP/undefined (see the header comment). */
function condition(c: L7Condition, mode: RbacMode, action: Action): { permission?: JsonObject[]; principal?: JsonObject[] } | typeof DROP | undefined {
  const k = c.key;
  const ids = (one: (v: string) => JsonObject) => ({ principal: listPart('ids', c.values, c.notValues, one) });
  const rules = (one: (v: string) => JsonObject) => ({ permission: listPart('rules', c.values, c.notValues, one) });
  if (k === 'source.ip') return ids((v) => ({ direct_remote_ip: cidr(v) }));
  if (k === 'source.namespace') return ids(namespaceId);
  if (k === 'source.principal') return ids(principalId);
  if (k === 'destination.port') return rules((v) => ({ destination_port: Number(v) }));
  if (k === 'destination.ip') return rules((v) => ({ destination_ip: cidr(v) }));
  const hdr = /^request\.headers\[(.+)\]$/.exec(k);
  if (mode === 'http' && hdr) return ids((v) => header(hdr[1]!.toLowerCase(), v));
  if (mode === 'http' && k === 'remote.ip') return ids((v) => ({ remote_ip: cidr(v) }));
  return l7Only(action); // HTTP-only on a TCP port, or a key we do not support (request.auth.*, ...)
}

/** One rule as an Envoy RBAC Policy, or undefined when it can never match. */
export function rulePolicy(rule: L7Rule, mode: RbacMode, action: Action): JsonObject | undefined {
  const ops: JsonObject[] = [];
  for (const op of rule.to) {
    const p = operation(op, mode, action);
    if (p === DROP) return undefined;
    if (p) ops.push(p);
  }
  const permissions: JsonObject[] = ops.length > 0 ? [or('or_rules', ops)] : [];
  const principals: JsonObject[] = rule.from.length > 0 ? [or('or_ids', rule.from.map(source))] : [];
  for (const c of rule.when) {
    const r = condition(c, mode, action);
    if (r === DROP) return undefined;
    if (r) {
      permissions.push(...(r.permission ?? []));
      principals.push(...(r.principal ?? []));
    }
  }
  return { permissions: [and('and_rules', permissions)], principals: [and('and_ids', principals)] };
}

/** Envoy RBAC `rules` of one action for one service (undefined: no policy of that action applies). */
export function rbacRules(policies: readonly L7Policy[], svc: WaypointService, mode: RbacMode, action: Action): JsonObject | undefined {
  const key = serviceKey(svc);
  const applicable = policies.filter((p) => p.action === action && (p.appliesTo === 'all' || p.appliesTo.includes(key)));
  if (applicable.length === 0) return undefined;
  const out: Record<string, Json> = {};
  for (const p of [...applicable].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    p.rules.forEach((r, i) => {
      const policy = rulePolicy(r, mode, action);
      if (policy) out[`${p.name}[${i}]`] = policy;
    });
  }
  return { action, policies: out };
}

/** The RBAC filters of one HTTP chain, DENY before ALLOW. */
export function httpRbacFilters(policies: readonly L7Policy[], svc: WaypointService): JsonObject[] {
  return (['DENY', 'ALLOW'] as const).flatMap((action) => {
    const rules = rbacRules(policies, svc, 'http', action);
    return rules ? [typed(`envoy.filters.http.rbac.${action.toLowerCase()}`, 'envoy.extensions.filters.http.rbac.v3.RBAC', { rules })] : [];
  });
}

/** The network RBAC filters of one TCP chain, DENY before ALLOW. */
export function tcpRbacFilters(policies: readonly L7Policy[], svc: WaypointService, statPrefix: string): JsonObject[] {
  return (['DENY', 'ALLOW'] as const).flatMap((action) => {
    const rules = rbacRules(policies, svc, 'tcp', action);
    const name = `envoy.filters.network.rbac.${action.toLowerCase()}`;
    return rules ? [typed(name, 'envoy.extensions.filters.network.rbac.v3.RBAC', { stat_prefix: `${statPrefix}.${action.toLowerCase()}.`, rules })] : [];
  });
}
