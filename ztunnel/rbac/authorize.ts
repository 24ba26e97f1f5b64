// L4 authorization with Istio's semantics, as a pure function of the connection and the policies.
import type { Identity } from '../identity/spiffe.js';
import { formatIdentity } from '../identity/spiffe.js';
import { cidrContains } from '../net/ip.js';
import { policyKey, type Authorization, type RbacMatch, type StringMatch } from '../state/types.js';

export interface ConnectionInfo {
  srcIp: string;
  dstIp: string;
  dstPort: number;
  /** Verified peer identity; absent for plaintext connections. */
  srcIdentity?: Identity;
}

export interface Decision {
  allowed: boolean;
  /** The policy that decided (a matching DENY, or nothing matched among ALLOWs). */
  reason: string;
  /** Dry-run policies that would have changed the outcome or matched; for logging only. */
  dryRun: { policy: string; action: Authorization['action']; matched: boolean }[];
}

function stringMatches(m: StringMatch, value: string): boolean {
  if ('exact' in m) return value === m.exact;
  if ('prefix' in m) return value.startsWith(m.prefix);
  if ('suffix' in m) return value.endsWith(m.suffix);
  return value !== '';
}

/** Positive list: any must match (or empty); negative list: none may match. */
function both<T>(pos: T[], neg: T[], pred: (t: T) => boolean): boolean {
  return (pos.length === 0 || pos.some(pred)) && !neg.some(pred);
}

function isEmpty(m: RbacMatch): boolean {
  return Object.values(m).every((v) => (v as unknown[]).length === 0);
}

function groupMatches(m: RbacMatch, c: ConnectionInfo, principal: string, ns: string): boolean {
  const id = c.srcIdentity;
  return (
    both(m.destinationIps, m.notDestinationIps, (cidr) => cidrContains(cidr, c.dstIp)) &&
    both(m.sourceIps, m.notSourceIps, (cidr) => cidrContains(cidr, c.srcIp)) &&
    both(m.destinationPorts, m.notDestinationPorts, (p) => p === c.dstPort) &&
    both(m.serviceAccounts, m.notServiceAccounts, (sa) => !!id && id.namespace === sa.namespace && id.serviceAccount === sa.serviceAccount) &&
    // Principals are written without the spiffe:// scheme, so an unauthenticated peer never matches one.
    both(m.principals, m.notPrincipals, (s) => principal !== '' && stringMatches(s, principal)) &&
    both(m.namespaces, m.notNamespaces, (s) => stringMatches(s, ns))
  );
}

/** Does the connection match the policy? Any rule; within a rule every clause; within a clause any non-empty group. */
export function policyMatches(p: Authorization, c: ConnectionInfo): boolean {
  const principal = c.srcIdentity ? formatIdentity(c.srcIdentity).slice('spiffe://'.length) : '';
  const ns = c.srcIdentity?.namespace ?? '';
  return p.rules.some((rule) =>
    rule.every((clause) => clause.length === 0 || clause.some((g) => !isEmpty(g) && groupMatches(g, c, principal, ns))),
  );
}

/** Matching DENY refuses; with no ALLOW policy everything else is allowed; otherwise an ALLOW must match. Dry-run policies only report. */
export function authorize(policies: Iterable<Authorization>, c: ConnectionInfo): Decision {
  const dryRun: Decision['dryRun'] = [];
  const allows: Authorization[] = [];
  let denied: string | undefined;
  for (const p of policies) {
    const key = policyKey(p);
    if (p.dryRun) {
      dryRun.push({ policy: key, action: p.action, matched: policyMatches(p, c) });
      continue;
    }
    // Keep going after a matching DENY so every dry-run policy is reported, whatever the order.
    if (p.action === 'Deny') {
      if (denied === undefined && policyMatches(p, c)) denied = key;
    } else allows.push(p);
  }
  if (denied !== undefined) return { allowed: false, reason: `denied by ${denied}`, dryRun };
  if (allows.length === 0) return { allowed: true, reason: 'no ALLOW policy applies', dryRun };
  const hit = allows.find((p) => policyMatches(p, c));
  return hit
    ? { allowed: true, reason: `allowed by ${policyKey(hit)}`, dryRun }
    : { allowed: false, reason: 'no ALLOW policy matched', dryRun };
}
