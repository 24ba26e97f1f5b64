// security.istio.io AuthorizationPolicy -> istio.security.Authorization (the L4 part ztunnel enforces).
// As Istio: a rule that needs L7 attributes can never match in an ALLOW policy (it is dropped: allow less) and
// matches on its L4 part alone in a DENY policy (deny more): ztunnel fails closed either way.
import type { Authorization, AuthzAddress, Clause, Match, MessageInit, Rule, StringMatch } from '../../protos/index.js';
import { ipToBytes } from '../../ztunnel/net/ip.js';

export interface AuthorizationPolicy {
  metadata?: { name?: string; namespace?: string };
  spec?: {
    selector?: { matchLabels?: Record<string, string> };
    targetRef?: unknown;
    targetRefs?: unknown[];
    action?: string;
    rules?: ApRule[] | null;
  };
}

interface ApRule {
  from?: { source?: Record<string, string[] | undefined> }[];
  to?: { operation?: Record<string, string[] | undefined> }[];
  when?: { key: string; values?: string[]; notValues?: string[] }[];
}

/** Source/operation fields ztunnel cannot see at L4. */
const L7_SOURCE = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const L7_OPERATION = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];

export type Translation = { kind: 'ztunnel'; authorization: MessageInit<Authorization>; selector?: Record<string, string> } | { kind: 'skip'; reason: string };

function stringMatch(v: string, principal = false): MessageInit<StringMatch> {
  const s = principal ? v.replace(/^spiffe:\/\//, '') : v;
  if (s === '*') return { presence: {} };
  if (s.startsWith('*')) return { suffix: s.slice(1) };
  if (s.endsWith('*')) return { prefix: s.slice(0, -1) };
  return { exact: s };
}

function cidr(v: string): MessageInit<AuthzAddress> {
  const [ip, len] = v.split('/') as [string, string | undefined];
  const bytes = ipToBytes(ip);
  return { address: bytes, length: len === undefined ? bytes.length * 8 : Number(len) };
}

const ports = (vs: string[] | undefined) => (vs ?? []).map((p) => {
  const n = Number(p);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`bad port ${JSON.stringify(p)}`);
  return n;
});

type MatchInit = MessageInit<Match>;

function sourceMatch(src: Record<string, string[] | undefined>): MatchInit {
  return {
    principals: (src.principals ?? []).map((p) => stringMatch(p, true)),
    notPrincipals: (src.notPrincipals ?? []).map((p) => stringMatch(p, true)),
    namespaces: (src.namespaces ?? []).map((n) => stringMatch(n)),
    notNamespaces: (src.notNamespaces ?? []).map((n) => stringMatch(n)),
    sourceIps: (src.ipBlocks ?? []).map(cidr),
    notSourceIps: (src.notIpBlocks ?? []).map(cidr),
  };
}

function conditionMatch(c: { key: string; values?: string[]; notValues?: string[] }): MatchInit | undefined {
  const v = c.values ?? [];
  const nv = c.notValues ?? [];
  switch (c.key) {
    case 'source.ip':
      return { sourceIps: v.map(cidr), notSourceIps: nv.map(cidr) };
    case 'source.namespace':
      return { namespaces: v.map((x) => stringMatch(x)), notNamespaces: nv.map((x) => stringMatch(x)) };
    case 'source.principal':
      return { principals: v.map((x) => stringMatch(x, true)), notPrincipals: nv.map((x) => stringMatch(x, true)) };
    case 'destination.ip':
      return { destinationIps: v.map(cidr), notDestinationIps: nv.map(cidr) };
    case 'destination.port':
      return { destinationPorts: ports(v), notDestinationPorts: ports(nv) };
    default:
      return undefined; // request.*, connection.sni, ...: L7
  }
}

const isEmpty = (m: MatchInit) => Object.values(m).every((v) => !(v as unknown[] | undefined)?.length);
const hasAny = (o: Record<string, unknown> | undefined, keys: string[]) => !!o && keys.some((k) => (o[k] as unknown[] | undefined)?.length);

/** One AP rule -> a ztunnel rule, or undefined when (in an ALLOW policy) it needs L7 and so can never match. */
function toRule(r: ApRule, allow: boolean): MessageInit<Rule> | undefined {
  const clauses: MessageInit<Clause>[] = [];
  const group = (items: { l7: boolean; match: MatchInit }[]): boolean => {
    if (allow) {
      const usable = items.filter((i) => !i.l7).map((i) => i.match);
      if (usable.length === 0) return false; // nothing in this clause can match
      clauses.push({ matches: usable });
    } else if (!items.some((i) => i.l7 && isEmpty(i.match))) {
      // In a DENY, an item that was all L7 matches anything, and so does its clause: leave the clause out.
      clauses.push({ matches: items.map((i) => i.match) });
    }
    return true;
  };
  if (r.from?.length && !group(r.from.map((f) => ({ l7: hasAny(f.source, L7_SOURCE), match: sourceMatch(f.source ?? {}) })))) return undefined;
  if (
    r.to?.length &&
    !group(r.to.map((t) => ({ l7: hasAny(t.operation, L7_OPERATION), match: { destinationPorts: ports(t.operation?.ports), notDestinationPorts: ports(t.operation?.notPorts) } })))
  )
    return undefined;
  for (const c of r.when ?? []) {
    const m = conditionMatch(c);
    if (m) clauses.push({ matches: [m] });
    else if (allow) return undefined; // an L7 condition can never be satisfied at L4
  }
  return { clauses };
}

export function toAuthorization(ap: AuthorizationPolicy, rootNamespace: string): Translation {
  const name = ap.metadata?.name ?? '';
  const namespace = ap.metadata?.namespace ?? '';
  const spec = ap.spec ?? {};
  if (spec.targetRef || spec.targetRefs?.length) return { kind: 'skip', reason: 'targets a waypoint (targetRefs)' };
  const action = (spec.action ?? 'ALLOW').toUpperCase();
  if (action !== 'ALLOW' && action !== 'DENY') return { kind: 'skip', reason: `action ${action} is not enforced by ztunnel` };
  const selector = spec.selector?.matchLabels && Object.keys(spec.selector.matchLabels).length ? spec.selector.matchLabels : undefined;
  const scope = selector ? 'WORKLOAD_SELECTOR' : namespace === rootNamespace ? 'GLOBAL' : 'NAMESPACE';
  const rules = (spec.rules ?? []).map((r) => toRule(r, action === 'ALLOW')).filter((r): r is MessageInit<Rule> => r !== undefined);
  return { kind: 'ztunnel', selector, authorization: { name, namespace, scope, action, rules } };
}
