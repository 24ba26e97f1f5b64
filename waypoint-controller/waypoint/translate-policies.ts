// security.istio.io AuthorizationPolicy with targetRefs -> L7Policy (what a waypoint enforces) and its
// `WaypointAccepted` status condition, as Istio writes it. Whatever cannot be enforced as written fails closed,
// as Istio does for ztunnel: an ALLOW rule that needs it is dropped (allow less), a DENY rule keeps its other
// parts (deny more); CUSTOM (external authorization) denies what it would have asked about.
import type { V1Service } from '@kubernetes/client-node';
import { parseCidr } from '../../ztunnel/net/ip.js';
import type { AuthorizationPolicy } from '../translate/authorization.js';
import { serviceKey, type L7Condition, type L7Policy, type L7Rule, type WaypointService } from './model.js';
import { GATEWAY_GROUP, WAYPOINT_CLASS, isCoreGroup, isList, type Condition, type PolicyBinding } from './translate-types.js';

export interface TargetRef {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
}

/** The enforceable part of a policy, independent of where it attaches. */
export interface PolicyTranslation {
  /** Absent when there is nothing to enforce (AUDIT). */
  policy?: Pick<L7Policy, 'action' | 'rules'>;
  /** What is not enforced as written, and which way that errs. */
  notes: string[];
}

type ApRule = NonNullable<NonNullable<AuthorizationPolicy['spec']>['rules']>[number];
type Convert = (v: unknown) => string | number;

const text: Convert = (v) => {
  if (typeof v !== 'string') throw new Error(`${JSON.stringify(v)} is not a string`);
  return v;
};
/** Istio's principals are SPIFFE ids without the scheme; tolerate it. */
const principal: Convert = (v) => text(v).toString().replace(/^spiffe:\/\//, '');
const cidr: Convert = (v) => {
  parseCidr(text(v) as string); // throws on a bad block
  return v as string;
};
const port: Convert = (v) => {
  const n = typeof v === 'number' ? v : /^\d+$/.test(String(v)) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${JSON.stringify(v)} is not a port`);
  return n;
};

const SOURCE: Record<string, Convert> = { principals: principal, notPrincipals: principal, namespaces: text, notNamespaces: text, ipBlocks: cidr, notIpBlocks: cidr };
const OPERATION: Record<string, Convert> = { hosts: text, notHosts: text, ports: port, notPorts: port, methods: text, notMethods: text, paths: text, notPaths: text };
/** `when` keys the waypoint's RBAC can match (remote.ip and request.headers only on HTTP ports: envoy/rbac.ts fails those closed on TCP). */
const WHEN: Record<string, Convert> = {
  'source.ip': cidr,
  'source.namespace': text,
  'source.principal': principal,
  'destination.ip': cidr,
  'destination.port': (v) => String(port(v)),
  'remote.ip': cidr,
};
const HEADER_KEY = /^request\.headers\[[^\]]+\]$/;

const why = (field: string): string =>
  /^(not)?[rR]equestPrincipals$|^request\.auth\./.test(field) ? `${field} (needs JWT authentication, which ambit's waypoints do not support)` : field;

/** An item's enforceable fields, and the names of those it had to leave out. */
function convertItem(obj: unknown, fields: Record<string, Convert>): { value: Record<string, (string | number)[]>; left: string[] } {
  const value: Record<string, (string | number)[]> = {};
  const left: string[] = [];
  if (obj !== undefined && obj !== null && typeof obj !== 'object') return { value, left: ['(not an object)'] };
  for (const [k, v] of Object.entries((obj ?? {}) as Record<string, unknown>)) {
    if (v === undefined || v === null || (isList(v) && v.length === 0)) continue; // an empty list is an absent field
    const conv = fields[k];
    if (!conv) left.push(why(k));
    else if (!isList(v)) left.push(`${k} (not a list)`);
    else {
      try {
        value[k] = v.map(conv);
      } catch (e) {
        left.push(`${k} (${(e as Error).message})`);
      }
    }
  }
  return { value, left };
}

/**
 * One clause (`from` or `to`): its items, or `undefined` when the rule can never match (ALLOW), or `[]` when the
 * clause must match anything (DENY with an item that had only unenforceable fields).
 */
function clause(items: unknown[] | undefined, inner: string, fields: Record<string, Convert>, allow: boolean, say: (m: string) => void): Record<string, (string | number)[]>[] | undefined {
  if (!isList(items) || items.length === 0) return [];
  const converted = items.map((i) => convertItem((i as Record<string, unknown> | undefined)?.[inner], fields));
  for (const c of converted) if (c.left.length) say(`cannot enforce ${c.left.join(', ')}`);
  if (allow) {
    const usable = converted.filter((c) => !c.left.length).map((c) => c.value);
    return usable.length ? usable : undefined;
  }
  if (converted.some((c) => c.left.length && !Object.keys(c.value).length)) return [];
  return converted.map((c) => c.value);
}

function condition(c: unknown): L7Condition | string {
  const o = (c ?? {}) as { key?: unknown; values?: unknown; notValues?: unknown };
  const key = typeof o.key === 'string' ? o.key : '';
  const conv = WHEN[key] ?? (HEADER_KEY.test(key) ? text : undefined);
  if (!conv) return `when ${why(key || JSON.stringify(o.key))}`;
  const out: L7Condition = { key };
  try {
    for (const f of ['values', 'notValues'] as const) {
      const v = o[f];
      if (v === undefined || v === null) continue;
      if (!isList(v)) throw new Error(`${f} is not a list`);
      if (v.length) out[f] = v.map((x) => String(conv(x)));
    }
  } catch (e) {
    return `when ${key} (${(e as Error).message})`;
  }
  return out.values || out.notValues ? out : `when ${key} (no values)`;
}

function convertRule(r: ApRule, allow: boolean, say: (m: string) => void): L7Rule | undefined {
  if (typeof r !== 'object' || r === null) {
    say('is not an object');
    return allow ? undefined : { from: [], to: [], when: [] };
  }
  const from = clause(r.from, 'source', SOURCE, allow, say);
  const to = clause(r.to, 'operation', OPERATION, allow, say);
  if (!from || !to) return undefined;
  const when: L7Condition[] = [];
  for (const c of isList(r.when) ? r.when : []) {
    const w = condition(c);
    if (typeof w !== 'string') when.push(w);
    else {
      say(`cannot enforce ${w}`);
      if (allow) return undefined;
    }
  }
  return { from, to, when };
}

/** The policy's rules as the waypoint enforces them. Never throws. */
export function translatePolicy(ap: AuthorizationPolicy): PolicyTranslation {
  const spec = ap.spec ?? {};
  const notes: string[] = [];
  const raw = typeof spec.action === 'string' ? spec.action.toUpperCase() : spec.action === undefined ? 'ALLOW' : String(spec.action);
  if (raw === 'AUDIT') return { notes: ['AUDIT is not supported and ignored (audit policies never change whether a request is allowed)'] };
  if (raw !== 'ALLOW' && raw !== 'DENY' && raw !== 'CUSTOM') {
    return { policy: { action: 'DENY', rules: [{ from: [], to: [], when: [] }] }, notes: [`action ${JSON.stringify(spec.action)} is unknown: all requests to its targets are denied (fail closed)`] };
  }
  const action = raw === 'ALLOW' ? 'ALLOW' : 'DENY';
  if (raw === 'CUSTOM') {
    const provider = (spec as { provider?: { name?: string } }).provider?.name;
    notes.push(`CUSTOM (external authorization${provider ? ` by ${provider}` : ''}) is not supported: the requests it would send to the authorizer are denied (fail closed)`);
  }
  const allow = action === 'ALLOW';
  const rawRules: unknown = spec.rules;
  if (rawRules !== undefined && rawRules !== null && !isList(rawRules)) {
    notes.push(allow ? 'rules is not a list: the policy allows nothing' : 'rules is not a list: all requests to its targets are denied (fail closed)');
    return { policy: { action, rules: allow ? [] : [{ from: [], to: [], when: [] }] }, notes };
  }
  const rules: L7Rule[] = [];
  ((rawRules ?? []) as ApRule[]).forEach((r, i) => {
    const said: string[] = [];
    const rule = convertRule(r, allow, (m) => said.push(m));
    if (rule) rules.push(rule);
    if (said.length) notes.push(`rule ${i} ${said.join('; ')}: ${!rule ? 'the rule is dropped (allows less than written)' : allow ? 'only those entries are dropped (allows less than written)' : 'those parts are ignored (denies more than written)'}`);
  });
  return { policy: { action, rules }, notes };
}

export function targetRefsOf(ap: AuthorizationPolicy): TargetRef[] {
  const spec = ap.spec ?? {};
  const refs = [...(spec.targetRef ? [spec.targetRef] : []), ...(isList(spec.targetRefs) ? spec.targetRefs : [])];
  return refs.filter((r): r is TargetRef => typeof r === 'object' && r !== null);
}

/** Istio's ancestor spelling in binding statuses. */
export function ancestor(ref: TargetRef, policyNs: string): string {
  const group = isCoreGroup(ref.group) ? 'core' : ref.group;
  return ref.kind === 'GatewayClass' ? `GatewayClass.${group}:${ref.name ?? ''}` : `${ref.kind ?? ''}.${group}:${ref.namespace || policyNs}/${ref.name ?? ''}`;
}

export interface WaypointRef {
  namespace: string;
  name: string;
  /** The waypoint's GatewayClass, default istio-waypoint. */
  className?: string;
}

/**
 * Which of the policy's targetRefs this waypoint enforces (Istio's ShouldAttachPolicy): a Gateway naming it (same
 * namespace), a core Service bound to it (same namespace), or its GatewayClass from the root namespace.
 */
export function attachPolicy(
  ap: AuthorizationPolicy,
  waypoint: WaypointRef,
  bound: Map<string, WaypointService>,
  rootNamespace: string,
): { appliesTo?: 'all' | string[]; bindings: PolicyBinding[] } {
  const ns = ap.metadata?.namespace ?? '';
  const className = waypoint.className ?? WAYPOINT_CLASS;
  const keys: string[] = [];
  let all = false;
  const bindings: PolicyBinding[] = [];
  for (const ref of targetRefsOf(ap)) {
    if (ref.namespace && ref.namespace !== ns) continue; // a policy reaches only its own namespace
    let message: string | undefined;
    if (ref.group === GATEWAY_GROUP && ref.kind === 'Gateway' && ns === waypoint.namespace && ref.name === waypoint.name) {
      all = true;
      message = `bound to ${waypoint.namespace}/${waypoint.name}`;
    } else if (ref.group === GATEWAY_GROUP && ref.kind === 'GatewayClass' && ns === rootNamespace && ref.name === className) {
      all = true;
      message = `bound to ${className}`;
    } else if (isCoreGroup(ref.group) && ref.kind === 'Service') {
      const svc = bound.get(`${ns}/${ref.name}`);
      if (svc) {
        keys.push(serviceKey(svc));
        message = `bound to ${waypoint.namespace}/${waypoint.name}`;
      }
    }
    if (message) bindings.push({ ancestor: ancestor(ref, ns), bound: true, reason: 'Accepted', message });
  }
  const appliesTo = all ? 'all' : keys.length ? [...new Set(keys)].sort() : undefined;
  return { ...(appliesTo ? { appliesTo } : {}), bindings };
}

/** Why no waypoint claimed a targetRef (Istio's WaypointPolicyReason*). */
function unboundReason(ref: TargetRef, ns: string, world: PolicyWorld): { reason: string; message: string } {
  const root = world.rootNamespace;
  if (ref.namespace && ref.namespace !== ns) return { reason: 'Invalid', message: `targetRef namespace ${ref.namespace} is not the policy's namespace ${ns}` };
  const key = `${ns}/${ref.name ?? ''}`;
  if (ref.group === GATEWAY_GROUP && ref.kind === 'Gateway') return { reason: 'TargetNotFound', message: `waypoint ${key} was not found` };
  if (ref.group === GATEWAY_GROUP && ref.kind === 'GatewayClass') {
    if (ns !== root) return { reason: 'Invalid', message: `AuthorizationPolicy must be in the root namespace \`${root}\` when referencing a GatewayClass` };
    if (ref.name !== (world.className ?? WAYPOINT_CLASS)) return { reason: 'Invalid', message: `GatewayClass must be ${world.className ?? WAYPOINT_CLASS} for waypoints` };
    return { reason: 'TargetNotFound', message: `no waypoint of class ${ref.name}` };
  }
  if (isCoreGroup(ref.group) && ref.kind === 'Service') {
    return world.services.has(key)
      ? { reason: 'AncestorNotBound', message: `Service ${key} is not bound to a waypoint` }
      : { reason: 'TargetNotFound', message: `Service ${key} was not found` };
  }
  return { reason: 'Invalid', message: `targetRef group ${JSON.stringify(ref.group ?? '')} kind ${JSON.stringify(ref.kind ?? '')} is not supported` };
}

export interface PolicyWorld {
  /** Every Service, by `<namespace>/<name>`. */
  services: Map<string, V1Service>;
  rootNamespace: string;
  className?: string;
}

/**
 * The policy's `WaypointAccepted` condition (undefined for policies without targetRefs: ztunnel's), from what every
 * waypoint's model claimed. As Istio: True when any targetRef is bound; reason Accepted, PartiallyInvalid (some
 * targetRefs unbound) or the unbound reason; ours: UnsupportedValue when bound but not enforced as written.
 */
export function authorizationPolicyStatus(ap: AuthorizationPolicy, claimed: PolicyBinding[], world: PolicyWorld): Condition | undefined {
  const refs = targetRefsOf(ap);
  if (!refs.length) return undefined;
  const ns = ap.metadata?.namespace ?? '';
  const bound = new Set<string>();
  const unbound: { ancestor: string; reason: string; message: string }[] = [];
  for (const ref of refs) {
    const a = ancestor(ref, ns);
    const mine = claimed.filter((c) => c.ancestor === a && c.bound);
    if (mine.length) for (const m of mine) bound.add(m.message);
    else unbound.push({ ancestor: a, ...unboundReason(ref, ns, world) });
  }
  const notes = translatePolicy(ap).notes;
  const parts: string[] = [];
  if (bound.size) parts.push([...bound].sort().join(', '));
  if (unbound.length) parts.push(`Invalid targetRefs: ${unbound.map((u) => `${u.ancestor} (${u.message})`).join(', ')}`);
  if (bound.size && notes.length) parts.push(notes.join('; '));
  const reason = !bound.size ? unbound[0]!.reason : unbound.length ? 'PartiallyInvalid' : notes.length ? 'UnsupportedValue' : 'Accepted';
  const g = ap.metadata && (ap.metadata as { generation?: number }).generation;
  return { type: 'WaypointAccepted', status: bound.size ? 'True' : 'False', reason, message: parts.join('; '), ...(g !== undefined ? { observedGeneration: g } : {}) };
}
