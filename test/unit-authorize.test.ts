// Unit tests for the L4 authorization evaluator (Istio ztunnel semantics).
import test from 'ava';
import fc from 'fast-check';
import { authorize, policyMatches, type ConnectionInfo } from '../ztunnel/rbac/authorize.js';
import { parseCidr } from '../ztunnel/net/ip.js';
import type { Authorization, RbacAction, RbacMatch } from '../ztunnel/state/types.js';

// ---------------------------------------------------------------- helpers

const EMPTY: RbacMatch = {
  namespaces: [], notNamespaces: [], principals: [], notPrincipals: [], serviceAccounts: [], notServiceAccounts: [],
  sourceIps: [], notSourceIps: [], destinationIps: [], notDestinationIps: [], destinationPorts: [], notDestinationPorts: [],
};
const m = (fields: Partial<RbacMatch> = {}): RbacMatch => ({ ...EMPTY, ...fields });
const cidrs = (...xs: string[]) => xs.map(parseCidr);

let seq = 0;
function policy(action: RbacAction, rules: RbacMatch[][][], opts: Partial<Authorization> = {}): Authorization {
  return { name: `p${seq++}`, namespace: 'ns1', scope: 'Global', action, rules, dryRun: false, ...opts };
}
/** A policy with a single rule, single clause, single group. */
const one = (action: RbacAction, fields: Partial<RbacMatch>, opts: Partial<Authorization> = {}) => policy(action, [[[m(fields)]]], opts);

const ID = { trustDomain: 'cluster.local', namespace: 'a', serviceAccount: 'b' };
const conn = (over: Partial<ConnectionInfo> = {}): ConnectionInfo => ({
  srcIp: '10.0.0.1', dstIp: '10.1.0.1', dstPort: 8080, srcIdentity: ID, ...over,
});
const plaintext = (over: Partial<ConnectionInfo> = {}): ConnectionInfo => {
  const c = conn(over);
  delete c.srcIdentity;
  return c;
};
const matches = (fields: Partial<RbacMatch>, c: ConnectionInfo = conn()) => policyMatches(one('Allow', fields), c);

// ---------------------------------------------------------------- decision

test('no policies: allowed', (t) => {
  const d = authorize([], conn());
  t.true(d.allowed);
  t.is(d.reason, 'no ALLOW policy applies');
  t.deepEqual(d.dryRun, []);
});

test('a matching DENY refuses and names the policy', (t) => {
  const deny = one('Deny', { destinationPorts: [8080] }, { namespace: 'prod', name: 'block' });
  const d = authorize([deny], conn());
  t.false(d.allowed);
  t.is(d.reason, 'denied by prod/block');
});

test('a DENY that does not match is not an ALLOW policy: still allowed', (t) => {
  t.true(authorize([one('Deny', { destinationPorts: [9090] })], conn()).allowed);
});

test('with an ALLOW policy present, a connection must match one', (t) => {
  const allow = one('Allow', { destinationPorts: [8080] }, { namespace: 'prod', name: 'web' });
  const other = one('Allow', { destinationPorts: [9090] });
  const ok = authorize([other, allow], conn());
  t.true(ok.allowed);
  t.is(ok.reason, 'allowed by prod/web');
  const no = authorize([other], conn());
  t.false(no.allowed);
  t.is(no.reason, 'no ALLOW policy matched');
});

test('a matching DENY wins over a matching ALLOW in either order', (t) => {
  const allow = one('Allow', { destinationPorts: [8080] });
  const deny = one('Deny', { namespaces: [{ exact: 'a' }] });
  t.false(authorize([allow, deny], conn()).allowed);
  t.false(authorize([deny, allow], conn()).allowed);
});

test('policies can be any iterable', (t) => {
  const set = new Set([one('Allow', { destinationPorts: [1] })]);
  t.false(authorize(set, conn()).allowed);
  function* gen() {
    yield one('Allow', { destinationPorts: [8080] });
  }
  t.true(authorize(gen(), conn()).allowed);
});

// ---------------------------------------------------------------- dry run

test('a matching dry-run DENY does not deny but is reported as matched', (t) => {
  const p = one('Deny', { destinationPorts: [8080] }, { dryRun: true, namespace: 'x', name: 'trial' });
  const d = authorize([p], conn());
  t.true(d.allowed);
  t.deepEqual(d.dryRun, [{ policy: 'x/trial', action: 'Deny', matched: true }]);
});

test('a non-matching dry-run ALLOW does not count as an ALLOW policy', (t) => {
  const p = one('Allow', { destinationPorts: [1] }, { dryRun: true, namespace: 'x', name: 'trial' });
  const d = authorize([p], conn());
  t.true(d.allowed);
  t.is(d.reason, 'no ALLOW policy applies');
  t.deepEqual(d.dryRun, [{ policy: 'x/trial', action: 'Allow', matched: false }]);
});

test('a matching dry-run ALLOW does not rescue a connection no real ALLOW matches', (t) => {
  const real = one('Allow', { destinationPorts: [1] });
  const dry = one('Allow', { destinationPorts: [8080] }, { dryRun: true });
  const d = authorize([dry, real], conn());
  t.false(d.allowed);
  t.is(d.dryRun.length, 1);
  t.true(d.dryRun[0]!.matched);
});

test('dry-run policies are reported even when a real DENY decides, whatever the order', (t) => {
  const deny = one('Deny', { destinationPorts: [8080] });
  const dry = one('Deny', { destinationPorts: [8080] }, { dryRun: true, namespace: 'x', name: 'trial' });
  for (const order of [[dry, deny], [deny, dry]]) {
    const d = authorize(order, conn());
    t.false(d.allowed);
    t.deepEqual(d.dryRun, [{ policy: 'x/trial', action: 'Deny', matched: true }]);
  }
});

// ---------------------------------------------------------------- rule / clause / group structure

test('a policy without rules never matches', (t) => {
  t.false(policyMatches(policy('Allow', []), conn()));
  t.false(authorize([policy('Allow', [])], conn()).allowed);
  t.true(authorize([policy('Deny', [])], conn()).allowed);
});

test('a rule without clauses matches everything', (t) => {
  t.true(policyMatches(policy('Allow', [[]]), plaintext()));
});

test('an empty clause matches; the other clauses of the rule still have to match', (t) => {
  t.true(policyMatches(policy('Allow', [[[]]]), plaintext()));
  t.true(policyMatches(policy('Allow', [[[], [m({ destinationPorts: [8080] })]]]), conn()));
  t.false(policyMatches(policy('Allow', [[[], [m({ destinationPorts: [1] })]]]), conn()));
});

test('a clause whose groups are all empty does not match', (t) => {
  t.false(policyMatches(policy('Allow', [[[m()]]]), conn()));
  t.false(policyMatches(policy('Allow', [[[m(), m()]]]), conn()));
});

test('empty groups in a clause are skipped; a non-empty group decides', (t) => {
  t.true(policyMatches(policy('Allow', [[[m(), m({ destinationPorts: [8080] })]]]), conn()));
  t.false(policyMatches(policy('Allow', [[[m(), m({ destinationPorts: [1] })]]]), conn()));
});

test('a policy matches if any rule matches', (t) => {
  const rule = (port: number) => [[m({ destinationPorts: [port] })]];
  t.true(policyMatches(policy('Allow', [rule(1), rule(8080)]), conn()));
  t.false(policyMatches(policy('Allow', [rule(1), rule(2)]), conn()));
});

test('a rule matches only if all its clauses match', (t) => {
  const port = [m({ destinationPorts: [8080] })];
  t.true(policyMatches(policy('Allow', [[port, [m({ namespaces: [{ exact: 'a' }] })]]]), conn()));
  t.false(policyMatches(policy('Allow', [[port, [m({ namespaces: [{ exact: 'other' }] })]]]), conn()));
});

test('a clause matches if any of its groups matches', (t) => {
  t.true(policyMatches(policy('Allow', [[[m({ destinationPorts: [1] }), m({ destinationPorts: [8080] })]]]), conn()));
  t.false(policyMatches(policy('Allow', [[[m({ destinationPorts: [1] }), m({ destinationPorts: [2] })]]]), conn()));
});

test('within a group every non-empty field must match', (t) => {
  t.true(matches({ destinationPorts: [8080], namespaces: [{ exact: 'a' }], sourceIps: cidrs('10.0.0.0/24') }));
  t.false(matches({ destinationPorts: [8080], namespaces: [{ exact: 'a' }], sourceIps: cidrs('10.9.0.0/24') }));
  t.false(matches({ destinationPorts: [8080], namespaces: [{ exact: 'z' }] }));
});

// ---------------------------------------------------------------- fields

test('ports: positive list is any-of, negative list is none-of', (t) => {
  t.true(matches({ destinationPorts: [80, 8080] }));
  t.false(matches({ destinationPorts: [80, 443] }));
  t.false(matches({ notDestinationPorts: [80, 8080] }));
  t.true(matches({ notDestinationPorts: [80, 443] }));
  t.false(matches({ destinationPorts: [8080], notDestinationPorts: [8080] }));
});

test('principals are compared without the spiffe:// prefix', (t) => {
  t.true(matches({ principals: [{ exact: 'cluster.local/ns/a/sa/b' }] }));
  t.false(matches({ principals: [{ exact: 'spiffe://cluster.local/ns/a/sa/b' }] }));
  t.false(matches({ principals: [{ exact: 'cluster.local/ns/a/sa/c' }] }));
  t.true(matches({ principals: [{ prefix: 'cluster.local/ns/a/' }] }));
  t.false(matches({ principals: [{ prefix: 'spiffe://' }] }));
  t.true(matches({ principals: [{ suffix: '/sa/b' }] }));
  t.true(matches({ principals: [{ presence: true }] }));
  t.false(matches({ notPrincipals: [{ suffix: '/sa/b' }] }));
  t.true(matches({ notPrincipals: [{ suffix: '/sa/x' }] }));
});

test('principals include the trust domain', (t) => {
  const other = conn({ srcIdentity: { ...ID, trustDomain: 'other.td' } });
  t.false(matches({ principals: [{ exact: 'cluster.local/ns/a/sa/b' }] }, other));
  t.true(matches({ principals: [{ exact: 'other.td/ns/a/sa/b' }] }, other));
});

test('principals never match an unauthenticated peer (not even presence or an empty prefix)', (t) => {
  for (const s of [{ presence: true as const }, { prefix: '' }, { suffix: '' }, { exact: '' }]) {
    t.false(matches({ principals: [s] }, plaintext()), JSON.stringify(s));
    t.true(matches({ notPrincipals: [s] }, plaintext()), `not ${JSON.stringify(s)}`);
  }
});

test('namespaces match the peer identity namespace', (t) => {
  t.true(matches({ namespaces: [{ exact: 'a' }] }));
  t.false(matches({ namespaces: [{ exact: 'ab' }] }));
  t.true(matches({ namespaces: [{ prefix: 'a' }] }));
  t.true(matches({ namespaces: [{ suffix: 'a' }] }));
  t.true(matches({ namespaces: [{ presence: true }] }));
  t.false(matches({ namespaces: [{ exact: 'other' }, { presence: true }] }, plaintext()));
  t.false(matches({ notNamespaces: [{ exact: 'a' }] }));
  t.true(matches({ notNamespaces: [{ exact: 'x' }] }));
  t.true(matches({ notNamespaces: [{ presence: true }] }, plaintext()));
  // The namespace comes from the identity, not from anything else about the connection.
  t.false(matches({ namespaces: [{ exact: 'a' }] }, conn({ srcIdentity: { ...ID, namespace: 'z' } })));
});

test('service accounts need namespace and name of an authenticated peer (trust domain ignored)', (t) => {
  t.true(matches({ serviceAccounts: [{ namespace: 'a', serviceAccount: 'b' }] }));
  t.true(matches({ serviceAccounts: [{ namespace: 'a', serviceAccount: 'b' }] }, conn({ srcIdentity: { ...ID, trustDomain: 'x' } })));
  t.false(matches({ serviceAccounts: [{ namespace: 'a', serviceAccount: 'c' }] }));
  t.false(matches({ serviceAccounts: [{ namespace: 'x', serviceAccount: 'b' }] }));
  t.false(matches({ serviceAccounts: [{ namespace: 'a', serviceAccount: 'b' }] }, plaintext()));
  t.false(matches({ notServiceAccounts: [{ namespace: 'a', serviceAccount: 'b' }] }));
  t.true(matches({ notServiceAccounts: [{ namespace: 'a', serviceAccount: 'b' }] }, plaintext()));
});

test('source IPs: CIDR any-of / none-of, IPv4 and IPv6', (t) => {
  t.true(matches({ sourceIps: cidrs('10.0.0.0/24') }));
  t.true(matches({ sourceIps: cidrs('192.168.0.0/16', '10.0.0.1') }));
  t.false(matches({ sourceIps: cidrs('10.0.1.0/24') }));
  t.false(matches({ notSourceIps: cidrs('10.0.0.0/8') }));
  t.true(matches({ notSourceIps: cidrs('10.0.1.0/24') }));
  const v6 = conn({ srcIp: 'fd00:1::5' });
  t.true(matches({ sourceIps: cidrs('fd00:1::/64') }, v6));
  t.false(matches({ sourceIps: cidrs('fd00:2::/64') }, v6));
  t.false(matches({ sourceIps: cidrs('0.0.0.0/0') }, v6), 'an IPv4 network never holds an IPv6 address');
  t.false(matches({ sourceIps: cidrs('::/0') }), 'an IPv6 network never holds an IPv4 address');
});

test('IPv4-mapped IPv6 peers match IPv4 networks', (t) => {
  t.true(matches({ sourceIps: cidrs('10.0.0.0/24') }, conn({ srcIp: '::ffff:10.0.0.1' })));
  t.false(matches({ notSourceIps: cidrs('10.0.0.0/24') }, conn({ srcIp: '::ffff:10.0.0.1' })));
  t.true(matches({ destinationIps: cidrs('10.1.0.1') }, conn({ dstIp: '::ffff:10.1.0.1' })));
});

test('destination IPs: host, prefix and catch-all networks', (t) => {
  t.true(matches({ destinationIps: cidrs('10.1.0.1') }));
  t.false(matches({ destinationIps: cidrs('10.1.0.2') }));
  t.true(matches({ destinationIps: cidrs('10.1.0.0/31') }));
  t.true(matches({ destinationIps: cidrs('0.0.0.0/0') }));
  t.false(matches({ notDestinationIps: cidrs('10.1.0.0/16') }));
  t.true(matches({ destinationIps: cidrs('fd00::/8') }, conn({ dstIp: 'fd12::1' })));
});

// ---------------------------------------------------------------- properties

const arbConn: fc.Arbitrary<ConnectionInfo> = fc.record(
  {
    srcIp: fc.constantFrom('10.0.0.1', '10.0.1.7', 'fd00::1', '::ffff:10.0.0.1'),
    dstIp: fc.constantFrom('10.1.0.1', 'fd00::2'),
    dstPort: fc.constantFrom(80, 8080, 9090),
    srcIdentity: fc.record({
      trustDomain: fc.constantFrom('cluster.local', 'other'),
      namespace: fc.constantFrom('a', 'b'),
      serviceAccount: fc.constantFrom('b', 'default'),
    }),
  },
  { requiredKeys: ['srcIp', 'dstIp', 'dstPort'] },
);

const arbStringMatch = fc.oneof(
  fc.constantFrom('a', 'b', 'cluster.local/ns/a/sa/b').map((exact) => ({ exact })),
  fc.constantFrom('cluster.local/', 'a').map((prefix) => ({ prefix })),
  fc.constantFrom('/sa/b', 'b').map((suffix) => ({ suffix })),
  fc.constant({ presence: true as const }),
);
const small = <T>(a: fc.Arbitrary<T>) => fc.array(a, { maxLength: 2 });
const arbCidr = fc.constantFrom('10.0.0.0/24', '10.1.0.1', 'fd00::/16', '0.0.0.0/0').map(parseCidr);
const arbSa = fc.record({ namespace: fc.constantFrom('a', 'b'), serviceAccount: fc.constantFrom('b', 'default') });
const arbPort = fc.constantFrom(80, 8080, 9090);

const arbMatch: fc.Arbitrary<RbacMatch> = fc.record({
  namespaces: small(arbStringMatch), notNamespaces: small(arbStringMatch),
  principals: small(arbStringMatch), notPrincipals: small(arbStringMatch),
  serviceAccounts: small(arbSa), notServiceAccounts: small(arbSa),
  sourceIps: small(arbCidr), notSourceIps: small(arbCidr),
  destinationIps: small(arbCidr), notDestinationIps: small(arbCidr),
  destinationPorts: small(arbPort), notDestinationPorts: small(arbPort),
});
const arbRules = fc.array(fc.array(fc.array(arbMatch, { maxLength: 3 }), { maxLength: 3 }), { maxLength: 3 });
const arbPolicy = (action?: RbacAction, dryRun = false) =>
  fc.record({
    name: fc.constantFrom('p1', 'p2', 'p3'),
    namespace: fc.constantFrom('ns1', 'ns2'),
    scope: fc.constant('Global' as const),
    action: action ? fc.constant(action) : fc.constantFrom<RbacAction>('Allow', 'Deny'),
    rules: arbRules,
    dryRun: fc.constant(dryRun),
  });
/** A DENY policy with an extra rule that surely matches `c` (besides random ones). */
const matchingDeny = (c: ConnectionInfo) =>
  arbPolicy('Deny').map((p) => ({ ...p, rules: [...p.rules, [[m({ destinationPorts: [c.dstPort] })]]] }));

test('property: a DENY with a matching rule wins over any set of ALLOWs, wherever it sits', (t) => {
  fc.assert(
    fc.property(
      arbConn.chain((c) => fc.tuple(fc.constant(c), fc.array(arbPolicy('Allow')), matchingDeny(c), fc.nat())),
      ([c, allows, deny, at]) => {
        const list = [...allows];
        list.splice(at % (list.length + 1), 0, deny);
        return !authorize(list, c).allowed;
      },
    ),
  );
  t.pass();
});

test('property: adding a non-matching ALLOW to an empty set flips allow to deny', (t) => {
  fc.assert(
    fc.property(arbConn, fc.array(arbPolicy(undefined, true)), (c, dryRuns) => {
      const nonMatching = one('Allow', { notDestinationPorts: [c.dstPort] });
      return authorize(dryRuns, c).allowed && !authorize([...dryRuns, nonMatching], c).allowed;
    }),
  );
  t.pass();
});

test('property: dry-run policies never change the decision, and each one is reported', (t) => {
  fc.assert(
    fc.property(arbConn, fc.array(arbPolicy()), fc.array(arbPolicy(undefined, true)), fc.array(fc.nat()), (c, real, dry, spots) => {
      const mixed = [...real];
      dry.forEach((p, i) => mixed.splice((spots[i] ?? 0) % (mixed.length + 1), 0, p));
      const base = authorize(real, c);
      const withDry = authorize(mixed, c);
      return (
        withDry.allowed === base.allowed &&
        withDry.reason === base.reason &&
        withDry.dryRun.length === dry.length &&
        withDry.dryRun.every((r, i) => r.matched === policyMatches(mixed.filter((p) => p.dryRun)[i]!, c))
      );
    }),
  );
  t.pass();
});

test('property: the decision does not depend on policy order', (t) => {
  fc.assert(
    fc.property(arbConn, fc.array(arbPolicy(), { maxLength: 6 }), fc.func(fc.integer()), (c, ps, key) => {
      const shuffled = [...ps].sort((x, y) => key(x) - key(y));
      return authorize(ps, c).allowed === authorize(shuffled, c).allowed;
    }),
  );
  t.pass();
});

test('property: a single-entry positive list matches exactly when the matching negative list does not', (t) => {
  type Pair = [Partial<RbacMatch>, Partial<RbacMatch>];
  const arbPair: fc.Arbitrary<Pair> = fc.oneof(
    arbStringMatch.map((s): Pair => [{ namespaces: [s] }, { notNamespaces: [s] }]),
    arbStringMatch.map((s): Pair => [{ principals: [s] }, { notPrincipals: [s] }]),
    arbSa.map((s): Pair => [{ serviceAccounts: [s] }, { notServiceAccounts: [s] }]),
    arbCidr.map((x): Pair => [{ sourceIps: [x] }, { notSourceIps: [x] }]),
    arbCidr.map((x): Pair => [{ destinationIps: [x] }, { notDestinationIps: [x] }]),
    arbPort.map((x): Pair => [{ destinationPorts: [x] }, { notDestinationPorts: [x] }]),
  );
  fc.assert(fc.property(arbConn, arbPair, (c, [pos, neg]) => matches(pos, c) !== matches(neg, c)));
  t.pass();
});

test('property: with no matching DENY, adding a matching ALLOW always allows', (t) => {
  fc.assert(
    fc.property(arbConn, fc.array(arbPolicy()), (c, ps) => {
      const safe = ps.filter((p) => p.action === 'Allow' || !policyMatches(p, c));
      return authorize([...safe, policy('Allow', [[]])], c).allowed;
    }),
  );
  t.pass();
});
