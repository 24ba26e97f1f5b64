// Unit tests for ztunnel/xds/convert.ts: workload xDS protos -> state model, and validation errors with reasons.
import test from 'ava';
import { AddressCodec, AuthorizationCodec, type MessageInit } from '../protos/index.js';
import type * as pb from '../protos/index.js';
import { convertAddress, convertAuthorization, XdsConvertError } from '../ztunnel/xds/convert.js';

const D = { trustDomain: 'td.local', clusterId: 'Kube' };
const v4 = (s: string) => Uint8Array.from(s.split('.').map(Number));

// Through the codec, so defaults are what a decoded message really carries.
const addr = (a: MessageInit<pb.Address>) => AddressCodec.decode(AddressCodec.encode(a));
const authz = (a: MessageInit<pb.Authorization>) => AuthorizationCodec.decode(AuthorizationCodec.encode(a));

const baseWorkload: MessageInit<pb.Workload> = {
  uid: 'Kube//v1/Pod/shop/api-1', name: 'api-1', namespace: 'shop', addresses: [v4('10.0.0.5')], tunnelProtocol: 'HBONE',
  serviceAccount: 'api', node: 'node-a', status: 'HEALTHY', workloadType: 'DEPLOYMENT', workloadName: 'api',
  canonicalName: 'api', canonicalRevision: 'v1', authorizationPolicies: ['shop/allow-web'],
  services: { 'shop/api.shop.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080 }, { servicePort: 443, targetPort: 0 }] } },
};

test('a workload converts with IPs, ports map, protocol, status and defaults', (t) => {
  const c = convertAddress(addr({ workload: baseWorkload }), D);
  if (c.kind !== 'workload') return t.fail();
  const w = c.workload;
  t.like(w, {
    uid: 'Kube//v1/Pod/shop/api-1', protocol: 'HBONE', status: 'Healthy', trustDomain: 'td.local', clusterId: 'Kube', serviceAccount: 'api',
    workloadType: 'deployment', workloadName: 'api', canonicalName: 'api', canonicalRevision: 'v1',
  });
  t.deepEqual(w.workloadIps, ['10.0.0.5']);
  t.deepEqual(w.authorizationPolicies, ['shop/allow-web']);
  t.deepEqual([...w.services.get('shop/api.shop.svc.cluster.local')!], [[80, 8080], [443, 0]]);
});

test('NONE tunnel is TCP, UNHEALTHY, IPv6 and defaults for empty fields', (t) => {
  const v6 = new Uint8Array(16);
  v6[0] = 0xfd;
  v6[15] = 1;
  const c = convertAddress(addr({ workload: { uid: 'u', name: 'n', namespace: 'ns', addresses: [v6], tunnelProtocol: 'NONE', status: 'UNHEALTHY', trustDomain: 'x.y', clusterId: 'C' } }), D);
  if (c.kind !== 'workload') return t.fail();
  t.like(c.workload, {
    protocol: 'TCP', status: 'Unhealthy', trustDomain: 'x.y', clusterId: 'C', serviceAccount: 'default', canonicalName: 'n', canonicalRevision: 'latest',
  });
  t.deepEqual(c.workload.workloadIps, ['fd00::1']);
});

test('a service converts with VIPs, ports and subject alt names', (t) => {
  const c = convertAddress(
    addr({
      service: {
        name: 'api', namespace: 'shop', hostname: 'api.shop.svc.cluster.local', addresses: [{ network: 'net1', address: v4('10.96.0.10') }],
        ports: [{ servicePort: 80, targetPort: 8080 }], subjectAltNames: ['spiffe://td.local/ns/shop/sa/api'],
      },
    }),
    D,
  );
  if (c.kind !== 'service') return t.fail();
  t.deepEqual(c.service.vips, [{ network: 'net1', address: '10.96.0.10' }]);
  t.deepEqual([...c.service.ports], [[80, 8080]]);
  t.deepEqual(c.service.subjectAltNames, ['spiffe://td.local/ns/shop/sa/api']);
});

test('validation errors name the field and the reason', (t) => {
  const bad = (w: MessageInit<pb.Workload>) => () => convertAddress(addr({ workload: { ...baseWorkload, ...w } }), D);
  t.throws(bad({ addresses: [Uint8Array.from([1, 2, 3, 4, 5])] }), { instanceOf: XdsConvertError, message: /addresses\[0\].*4 or 16 bytes, got 5/ });
  t.throws(bad({ uid: '' }), { message: /uid: required/ });
  t.throws(bad({ services: { 'shop/api': { ports: [{ servicePort: 70000, targetPort: 1 }] } } }), { message: /servicePort: not a port: 70000/ });
  t.throws(bad({ services: { nohost: { ports: [] } } }), { message: /namespace>\/<hostname/ });
  t.throws(bad({ tunnelProtocol: 'LEGACY_ISTIO_MTLS' }), { message: /tunnelProtocol: unsupported/ });
  t.throws(() => convertAddress(addr({}), D), { message: /neither workload nor service/ });
  t.throws(() => convertAddress(addr({ service: { name: 'a', namespace: 'b', hostname: 'c', addresses: [{ address: new Uint8Array(3) }] } }), D), {
    message: /addresses\[0\]\.address: .*got 3/,
  });
});

test('an authorization converts rules, clauses, matches, string matches and CIDRs', (t) => {
  const p = convertAuthorization(
    authz({
      name: 'allow-web', namespace: 'shop', scope: 'WORKLOAD_SELECTOR', action: 'DENY', dryRun: true,
      rules: [
        {
          clauses: [
            {
              matches: [
                {
                  namespaces: [{ exact: 'web' }], notPrincipals: [{ prefix: 'spiffe://td.local/ns/bad' }], principals: [{ suffix: '/sa/web' }, { presence: {} }],
                  sourceIps: [{ address: v4('10.1.0.0'), length: 16 }], notDestinationIps: [{ address: v4('10.0.0.5'), length: 32 }],
                  destinationPorts: [8080], notDestinationPorts: [9090], serviceAccounts: [{ namespace: 'web', serviceAccount: 'front' }],
                },
              ],
            },
            { matches: [{ destinationPorts: [80] }] },
          ],
        },
      ],
    }),
  );
  t.is(p.scope, 'WorkloadSelector');
  t.is(p.action, 'Deny');
  t.true(p.dryRun);
  t.is(p.rules.length, 1);
  t.is(p.rules[0]!.length, 2);
  const m = p.rules[0]![0]![0]!;
  t.deepEqual(m.namespaces, [{ exact: 'web' }]);
  t.deepEqual(m.notPrincipals, [{ prefix: 'spiffe://td.local/ns/bad' }]);
  t.deepEqual(m.principals, [{ suffix: '/sa/web' }, { presence: true }]);
  t.deepEqual(m.sourceIps, [{ address: '10.1.0.0', prefixLen: 16 }]);
  t.deepEqual(m.notDestinationIps, [{ address: '10.0.0.5', prefixLen: 32 }]);
  t.deepEqual(m.destinationPorts, [8080]);
  t.deepEqual(m.notDestinationPorts, [9090]);
  t.deepEqual(m.serviceAccounts, [{ namespace: 'web', serviceAccount: 'front' }]);
  t.deepEqual(p.rules[0]![1]![0]!.destinationPorts, [80]);
  t.is(convertAuthorization(authz({ name: 'g', namespace: 'istio-system', scope: 'GLOBAL', action: 'ALLOW' })).scope, 'Global');
  t.is(convertAuthorization(authz({ name: 'n', namespace: 'shop', scope: 'NAMESPACE' })).scope, 'Namespace');
});

test('authorization validation: bad CIDR length, bad IP, bad port, unknown enum', (t) => {
  const withMatch = (m: MessageInit<pb.Match>) => () => convertAuthorization(authz({ name: 'p', namespace: 'ns', rules: [{ clauses: [{ matches: [m] }] }] }));
  t.throws(withMatch({ sourceIps: [{ address: v4('10.0.0.0'), length: 33 }] }), { message: /sourceIps\[0\]\.length: prefix length 33/ });
  t.throws(withMatch({ destinationIps: [{ address: new Uint8Array(5), length: 8 }] }), { message: /destinationIps\[0\]\.address: .*got 5/ });
  t.throws(withMatch({ destinationPorts: [65536] }), { message: /destinationPorts\[0\]: not a port/ });
  t.throws(() => convertAuthorization(authz({ name: '', namespace: 'ns' })), { message: /name: required/ });
  const raw = authz({ name: 'p', namespace: 'ns' });
  t.throws(() => convertAuthorization({ ...raw, action: 7 }), { message: /action: unsupported value 7/ });
});
