// Unit tests for IP helpers, the local config parser and environment configuration.
import test from 'ava';
import fc from 'fast-check';
import { bytesToIp, canonicalIp, cidrContains, formatHostPort, ipToBytes, parseCidr, parseHostPort } from '../ztunnel/net/ip.js';
import { parseLocalConfig } from '../ztunnel/sources/local-config.js';
import { ConfigError, loadConfig } from '../ztunnel/config/env.js';

// ---------------------------------------------------------------- net/ip

test('canonicalIp: IPv4 unchanged, IPv6 compressed and lower-case', (t) => {
  t.is(canonicalIp('10.0.0.1'), '10.0.0.1');
  t.is(canonicalIp('FD00:0000:0000:0000:0000:0000:0000:0001'), 'fd00::1');
  t.is(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  t.is(canonicalIp('::'), '::');
  t.is(canonicalIp('::1'), '::1');
});

test('canonicalIp: every spelling of an IPv4-mapped IPv6 address becomes IPv4', (t) => {
  for (const s of ['::ffff:10.0.0.1', '::FFFF:10.0.0.1', '0:0:0:0:0:ffff:10.0.0.1', '::ffff:a00:1', '::ffff:0a00:0001']) {
    t.is(canonicalIp(s), '10.0.0.1', s);
  }
  // IPv4-compatible (deprecated, ::a.b.c.d) and NAT64 addresses are not IPv4-mapped.
  t.is(canonicalIp('::10.0.0.1'), '::a00:1');
  t.is(canonicalIp('64:ff9b::10.0.0.1'), '64:ff9b::a00:1');
});

test('canonicalIp is idempotent', (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => canonicalIp(canonicalIp(ip)) === canonicalIp(ip)),
  );
  t.pass();
});

test('ipToBytes: IPv4, IPv6 and embedded IPv4', (t) => {
  t.deepEqual([...ipToBytes('192.168.1.254')], [192, 168, 1, 254]);
  t.deepEqual([...ipToBytes('::1')], [...Array<number>(15).fill(0), 1]);
  t.deepEqual([...ipToBytes('fd00:1::ab:cdef')], [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0xef]);
  t.deepEqual([...ipToBytes('::ffff:1.2.3.4')], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
  t.deepEqual([...ipToBytes('1::')], [0, 1, ...Array<number>(14).fill(0)]);
});

test('ipToBytes rejects what is not an IP, bytesToIp rejects wrong lengths', (t) => {
  for (const s of ['', 'example.com', '10.0.0', '256.0.0.1', '01.2.3.4', '1:2:3:4:5:6:7:8:9', ':::']) {
    t.throws(() => ipToBytes(s), { message: /not an IP address/ }, s);
  }
  for (const n of [0, 3, 5, 15, 17]) t.throws(() => bytesToIp(new Uint8Array(n)), { message: /4 or 16 bytes/ });
});

test('bytesToIp compresses as RFC 5952 asks', (t) => {
  const v6 = (...groups: number[]) => bytesToIp(Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff])));
  t.is(v6(0, 0, 0, 0, 0, 0, 0, 0), '::');
  t.is(v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), '2001:db8::1');
  t.is(v6(0x2001, 0xdb8, 0, 1, 1, 1, 1, 1), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed');
  t.is(v6(0x2001, 0, 0, 1, 0, 0, 0, 1), '2001:0:0:1::1', 'the longest run is compressed');
  t.is(v6(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1), '2001:db8::1:0:0:1', 'the first of equal runs is compressed');
  t.is(v6(1, 0, 0, 0, 0, 0, 0, 0), '1::');
  t.is(v6(0xABCD, 0x00ef, 1, 2, 3, 4, 5, 6), 'abcd:ef:1:2:3:4:5:6', 'lower case, no leading zeros');
});

test('property: bytesToIp / ipToBytes round trip over random 4- and 16-byte arrays', (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (b) => {
      const text = bytesToIp(b);
      return Buffer.from(ipToBytes(text)).equals(Buffer.from(b)) && !/:::|(^|:)0[0-9a-f]|[A-F]/.test(text);
    }),
  );
  t.pass();
});

test('parseCidr: networks, bare hosts, canonical addresses', (t) => {
  t.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefixLen: 8 });
  t.deepEqual(parseCidr('10.1.2.3'), { address: '10.1.2.3', prefixLen: 32 });
  t.deepEqual(parseCidr('FD00:0::/64'), { address: 'fd00::', prefixLen: 64 });
  t.deepEqual(parseCidr('fd00::1'), { address: 'fd00::1', prefixLen: 128 });
  t.deepEqual(parseCidr('0.0.0.0/0'), { address: '0.0.0.0', prefixLen: 0 });
});

test('parseCidr: errors', (t) => {
  for (const s of ['', 'x/8', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/-1', '10.0.0.0/8.5', '10.0.0.0/', '10.0.0.0/0x8', '10.0.0.0/ 8', '10.0.0.0/8/9']) {
    t.throws(() => parseCidr(s), undefined, JSON.stringify(s));
  }
});

test('parseCidr: an IPv4-mapped network becomes the IPv4 network it covers', (t) => {
  t.deepEqual(parseCidr('::ffff:10.0.0.0/104'), { address: '10.0.0.0', prefixLen: 8 });
  t.deepEqual(parseCidr('::ffff:10.0.0.1'), { address: '10.0.0.1', prefixLen: 32 });
  t.true(cidrContains(parseCidr('::ffff:10.0.0.0/104'), '10.200.0.1'));
  t.true(cidrContains(parseCidr('::ffff:0.0.0.0/96'), '192.168.1.1'));
  t.false(cidrContains(parseCidr('::ffff:10.0.0.0/104'), '11.0.0.1'));
});

test('cidrContains: prefix edges', (t) => {
  t.true(cidrContains(parseCidr('0.0.0.0/0'), '255.255.255.255'));
  t.true(cidrContains(parseCidr('10.0.0.1/32'), '10.0.0.1'));
  t.false(cidrContains(parseCidr('10.0.0.1/32'), '10.0.0.0'));
  t.true(cidrContains(parseCidr('10.0.0.0/31'), '10.0.0.1'));
  t.false(cidrContains(parseCidr('10.0.0.0/31'), '10.0.0.2'));
  t.true(cidrContains(parseCidr('10.0.0.0/9'), '10.127.255.255'));
  t.false(cidrContains(parseCidr('10.0.0.0/9'), '10.128.0.0'));
  t.true(cidrContains(parseCidr('::/0'), 'ffff::1'));
  t.true(cidrContains(parseCidr('fd00::1/128'), 'FD00:0::1'));
  t.false(cidrContains(parseCidr('fd00::1/128'), 'fd00::2'));
  t.true(cidrContains(parseCidr('fd00::/127'), 'fd00::1'));
  t.false(cidrContains(parseCidr('0.0.0.0/0'), 'fd00::1'));
  t.false(cidrContains(parseCidr('::/0'), '10.0.0.1'));
  t.true(cidrContains(parseCidr('10.0.0.0/8'), '::ffff:10.9.9.9'));
});

test('property: an address is in a network exactly when its first prefixLen bits equal the network\'s', (t) => {
  const bit = (b: Uint8Array, i: number) => (b[i >> 3]! >> (7 - (i & 7))) & 1;
  fc.assert(
    fc.property(
      fc.constantFrom(4, 16).chain((n) =>
        fc.tuple(fc.uint8Array({ minLength: n, maxLength: n }), fc.uint8Array({ minLength: n, maxLength: n }), fc.integer({ min: 0, max: n * 8 })),
      ),
      ([net, addr, len]) => {
        // Skip IPv4-mapped addresses: their canonical form is IPv4, a different family.
        if (net.length === 16 && [net, addr].some((b) => canonicalIp(bytesToIp(b)).includes('.'))) return true;
        let same = true;
        for (let i = 0; i < len; i++) if (bit(net, i) !== bit(addr, i)) same = false;
        return cidrContains({ address: bytesToIp(net), prefixLen: len }, bytesToIp(addr)) === same;
      },
    ),
  );
  t.pass();
});

test('parseHostPort / formatHostPort', (t) => {
  t.deepEqual(parseHostPort('10.0.0.1:80'), { ip: '10.0.0.1', port: 80 });
  t.deepEqual(parseHostPort('[FD00:0::1]:65535'), { ip: 'fd00::1', port: 65535 });
  t.deepEqual(parseHostPort('[::ffff:10.0.0.1]:1'), { ip: '10.0.0.1', port: 1 });
  for (const s of ['', '10.0.0.1', '10.0.0.1:', '10.0.0.1:0', '10.0.0.1:65536', '10.0.0.1:123456', 'example.com:80', '[10.0.0.1]:80', 'fd00::1:80', '[fd00::1]', '256.1.1.1:80', '10.0.0.1:80 ', '[fd00::g]:80']) {
    t.is(parseHostPort(s), undefined, JSON.stringify(s));
  }
  t.is(formatHostPort('10.0.0.1', 80), '10.0.0.1:80');
  t.is(formatHostPort('fd00::1', 80), '[fd00::1]:80');
});

// ---------------------------------------------------------------- sources/local-config

const D = { trustDomain: 'cluster.local', clusterId: 'Kubernetes' };

const FULL = `
workloads:
- uid: c1//v1/Pod/default/web-0
  name: web-0
  namespace: default
  serviceAccount: web
  trustDomain: td.example
  workloadIps: ["10.0.0.5", "FD00::5"]
  network: net1
  protocol: hbone
  node: node-a
  hostname: web-0.example
  canonicalName: web
  canonicalRevision: v2
  workloadName: web
  workloadType: deployment
  clusterId: c1
  status: Unhealthy
  authorizationPolicies: [default/only-web]
  services:
    "default/web.default.svc.cluster.local":
      80: 8080
      "443": 8443
services:
- name: web
  namespace: default
  hostname: web.default.svc.cluster.local
  vips: [net1/10.96.0.10, /10.96.0.11, "fd00:96::a"]
  ports:
    80: 8080
    443: 0
  subjectAltNames: [spiffe://td.example/ns/default/sa/web]
policies:
- name: only-web
  namespace: default
  scope: WorkloadSelector
  action: Deny
  dryRun: true
  rules:
  - - - namespaces: [{Exact: default}]
        notNamespaces: [{Prefix: kube-}]
        principals: [{Suffix: /sa/web}, {Presence: []}]
        notPrincipals: [{exact: x}]
        serviceAccounts: [{namespace: default, serviceAccount: web}]
        sourceIps: [10.0.0.0/8, "::ffff:192.168.0.0/112"]
        notSourceIps: [10.0.0.9]
        destinationIps: ["fd00::/8"]
        destinationPorts: [8080, "9090"]
        notDestinationPorts: [22]
      - {}
    - []
`;

test('parseLocalConfig: a full document', (t) => {
  const cfg = parseLocalConfig(FULL, D);
  t.is(cfg.workloads.length, 1);
  const w = cfg.workloads[0]!;
  t.like(w, {
    uid: 'c1//v1/Pod/default/web-0', name: 'web-0', namespace: 'default', serviceAccount: 'web', trustDomain: 'td.example',
    workloadIps: ['10.0.0.5', 'fd00::5'], network: 'net1', protocol: 'HBONE', node: 'node-a', hostname: 'web-0.example',
    canonicalName: 'web', canonicalRevision: 'v2', workloadName: 'web', workloadType: 'deployment', clusterId: 'c1',
    status: 'Unhealthy', authorizationPolicies: ['default/only-web'],
  });
  t.deepEqual([...w.services.entries()].map(([k, v]) => [k, [...v]]), [['default/web.default.svc.cluster.local', [[80, 8080], [443, 8443]]]]);

  const s = cfg.services[0]!;
  t.like(s, { name: 'web', namespace: 'default', hostname: 'web.default.svc.cluster.local', subjectAltNames: ['spiffe://td.example/ns/default/sa/web'] });
  t.deepEqual(s.vips, [{ network: 'net1', address: '10.96.0.10' }, { network: '', address: '10.96.0.11' }, { network: '', address: 'fd00:96::a' }]);
  t.deepEqual([...s.ports], [[80, 8080], [443, 0]]);

  const p = cfg.policies[0]!;
  t.like(p, { name: 'only-web', namespace: 'default', scope: 'WorkloadSelector', action: 'Deny', dryRun: true });
  t.is(p.rules.length, 1);
  t.is(p.rules[0]!.length, 2);
  t.deepEqual(p.rules[0]![1], []);
  const [g, empty] = p.rules[0]![0]!;
  t.deepEqual(g, {
    namespaces: [{ exact: 'default' }], notNamespaces: [{ prefix: 'kube-' }],
    principals: [{ suffix: '/sa/web' }, { presence: true }], notPrincipals: [{ exact: 'x' }],
    serviceAccounts: [{ namespace: 'default', serviceAccount: 'web' }], notServiceAccounts: [],
    sourceIps: [{ address: '10.0.0.0', prefixLen: 8 }, { address: '192.168.0.0', prefixLen: 16 }],
    notSourceIps: [{ address: '10.0.0.9', prefixLen: 32 }],
    destinationIps: [{ address: 'fd00::', prefixLen: 8 }], notDestinationIps: [],
    destinationPorts: [8080, 9090], notDestinationPorts: [22],
  });
  t.true(Object.values(empty!).every((v) => (v as unknown[]).length === 0));
});

test('parseLocalConfig: defaults', (t) => {
  const cfg = parseLocalConfig(
    `
workloads:
- {name: api-1, namespace: shop}
services:
- {name: api, namespace: shop, hostname: api.shop}
policies:
- {name: p, namespace: shop}
`,
    D,
  );
  t.deepEqual(cfg.workloads[0], {
    uid: 'Kubernetes//v1/Pod/shop/api-1', name: 'api-1', namespace: 'shop', serviceAccount: 'default', trustDomain: 'cluster.local',
    workloadIps: [], network: '', protocol: 'TCP', node: '', hostname: '', canonicalName: 'api-1', canonicalRevision: 'latest',
    workloadName: 'api-1', workloadType: 'pod', clusterId: 'Kubernetes', status: 'Healthy', authorizationPolicies: [], services: new Map(),
  });
  t.deepEqual(cfg.services[0], { name: 'api', namespace: 'shop', hostname: 'api.shop', vips: [], ports: new Map(), subjectAltNames: [] });
  t.deepEqual(cfg.policies[0], { name: 'p', namespace: 'shop', scope: 'WorkloadSelector', action: 'Allow', rules: [], dryRun: false });
  // The cluster id of the uid follows the workload's own clusterId.
  t.is(parseLocalConfig('workloads: [{name: a, namespace: b, clusterId: east}]', D).workloads[0]!.uid, 'east//v1/Pod/b/a');
});

test('parseLocalConfig: empty documents are an empty config', (t) => {
  for (const text of ['', '# nothing\n', 'workloads: []\nservices:\npolicies: []']) {
    t.deepEqual(parseLocalConfig(text, D), { workloads: [], services: [], policies: [] });
  }
});

const W = (extra: string) => `workloads:\n- name: a\n  namespace: b\n${extra}`;

const ERRORS: [string, string, RegExp][] = [
  ['unknown top-level field', 'workload: []', /^config\.workload: unknown field/],
  ['unknown workload field', W('  colour: red\n'), /^workloads\[0\]\.colour: unknown field/],
  ['unknown service field', 'services: [{name: a, namespace: b, hostname: c, port: 1}]', /^services\[0\]\.port: unknown field/],
  ['unknown match field', 'policies: [{name: a, namespace: b, rules: [[[{sourceIp: [10.0.0.1]}]]]}]', /^policies\[0\]\.rules\[0\]\[0\]\[0\]\.sourceIp: unknown field/],
  ['missing name', 'workloads: [{namespace: b}]', /^workloads\[0\]\.name: required/],
  ['bad IP', W('  workloadIps: [10.0.0.1, 10.0.0.300]\n'), /^workloads\[0\]\.workloadIps\[1\]: not an IP address/],
  ['bad VIP', 'services: [{name: a, namespace: b, hostname: c, vips: [net/nope]}]', /^services\[0\]\.vips\[0\]: not an IP address/],
  ['bad CIDR', 'policies: [{name: a, namespace: b, rules: [[[{sourceIps: [10.0.0.0/40]}]]]}]', /^policies\[0\]\.rules\[0\]\[0\]\[0\]\.sourceIps\[0\]: bad prefix length/],
  ['bad service port', 'services: [{name: a, namespace: b, hostname: c, ports: {80: 70000}}]', /^services\[0\]\.ports\.80: not a port/],
  ['bad port key', W('  services: {"b/c": {http: 80}}\n'), /^workloads\[0\]\.services\.b\/c\.http: not a port/],
  ['bad rbac port', 'policies: [{name: a, namespace: b, rules: [[[{destinationPorts: [-1]}]]]}]', /^policies\[0\]\.rules\[0\]\[0\]\[0\]\.destinationPorts\[0\]: not a port/],
  ['bad protocol', W('  protocol: UDP\n'), /^workloads\[0\]\.protocol: expected one of HBONE, TCP, got "UDP"/],
  ['bad status', W('  status: Sick\n'), /^workloads\[0\]\.status: expected one of/],
  ['bad action', 'policies: [{name: a, namespace: b, action: Audit}]', /^policies\[0\]\.action: expected one of Allow, Deny/],
  ['bad dryRun', 'policies: [{name: a, namespace: b, dryRun: "yes"}]', /^policies\[0\]\.dryRun: expected true or false/],
  ['two string match kinds', 'policies: [{name: a, namespace: b, rules: [[[{namespaces: [{Exact: a, Prefix: b}]}]]]}]', /^policies\[0\]\.rules\[0\]\[0\]\[0\]\.namespaces\[0\]: expected exactly one/],
  ['bad service key', W('  services: {"no-slash": {80: 80}}\n'), /^workloads\[0\]\.services\.no-slash: expected "<namespace>\/<hostname>"/],
  ['list expected', W('  workloadIps: 10.0.0.1\n'), /^workloads\[0\]\.workloadIps: expected a list/],
  ['string expected', 'workloads: [{name: [a], namespace: b}]', /^workloads\[0\]\.name: expected a string/],
  ['mapping expected', 'workloads: [hello]', /^workloads\[0\]: expected a mapping/],
  ['document not a mapping', '- a\n- b', /^config: expected a mapping/],
  ['duplicate uid', 'workloads: [{name: a, namespace: b}, {name: x, namespace: y, uid: Kubernetes//v1/Pod/b/a}]', /^workloads.*duplicate uid Kubernetes\/\/v1\/Pod\/b\/a/],
  ['invalid YAML', 'workloads: [', /^not valid YAML/],
  ['invalid YAML (duplicate key)', 'workloads: []\nworkloads: []', /^not valid YAML/],
];
for (const [name, text, re] of ERRORS) {
  test(`parseLocalConfig error: ${name}`, (t) => {
    t.throws(() => parseLocalConfig(text, D), { message: re });
  });
}

// ---------------------------------------------------------------- config/env

test('loadConfig: defaults for shared mode', (t) => {
  const c = loadConfig({});
  t.like(c, {
    proxyMode: 'shared', proxyWorkloadInfo: undefined, localXdsPath: undefined, nodeName: '', trustDomain: 'cluster.local',
    clusterId: 'Kubernetes', terminationDeadlineMs: 5000, enableSocks5: false, enableOrigSrc: true, certTtlSeconds: 86400,
  });
  t.like(c.ports, { outbound: 15001, inbound: 15008, inboundPlaintext: 15006, socks5: 15080, metrics: 15020, readiness: 15021, admin: 15000 });
});

test('loadConfig: PROXY_MODE must be dedicated or shared', (t) => {
  t.is(loadConfig({ PROXY_MODE: 'shared' }).proxyMode, 'shared');
  for (const v of ['Shared', 'node', 'DEDICATED']) {
    t.throws(() => loadConfig({ PROXY_MODE: v }), { instanceOf: ConfigError, message: /PROXY_MODE/ }, v);
  }
});

test('loadConfig: dedicated mode requires and parses PROXY_WORKLOAD_INFO', (t) => {
  const c = loadConfig({ PROXY_MODE: 'dedicated', PROXY_WORKLOAD_INFO: 'shop/api-1/api' });
  t.is(c.proxyMode, 'dedicated');
  t.deepEqual(c.proxyWorkloadInfo, { namespace: 'shop', name: 'api-1', serviceAccount: 'api' });
  for (const v of [undefined, '', 'shop/api-1', 'shop/api-1/api/x', 'shop//api', '/a/b', 'a/b/']) {
    t.throws(() => loadConfig({ PROXY_MODE: 'dedicated', PROXY_WORKLOAD_INFO: v }), { instanceOf: ConfigError, message: /PROXY_WORKLOAD_INFO/ }, String(v));
  }
  // Shared mode ignores it.
  t.is(loadConfig({ PROXY_WORKLOAD_INFO: 'junk' }).proxyWorkloadInfo, undefined);
});

test('loadConfig: termination deadline from TERMINATION_GRACE_PERIOD_SECONDS', (t) => {
  const deadline = (secs: string) => loadConfig({ TERMINATION_GRACE_PERIOD_SECONDS: secs }).terminationDeadlineMs;
  t.is(deadline('30'), 25_000);
  t.is(deadline('11'), 6_000);
  t.is(deadline('10'), 9_000);
  t.is(deadline('5'), 4_000);
  t.is(deadline('2'), 1_000);
  t.is(deadline('1'), 1_000);
  t.is(deadline('0'), 1_000);
  t.throws(() => deadline('30s'), { instanceOf: ConfigError, message: /TERMINATION_GRACE_PERIOD_SECONDS/ });
  t.throws(() => deadline('-3'), { instanceOf: ConfigError });
});

test('loadConfig: CONNECTION_TERMINATION_DEADLINE wins and takes s or ms', (t) => {
  const deadline = (v: string) => loadConfig({ CONNECTION_TERMINATION_DEADLINE: v, TERMINATION_GRACE_PERIOD_SECONDS: '30' }).terminationDeadlineMs;
  t.is(deadline('7s'), 7000);
  t.is(deadline('1.5s'), 1500);
  t.is(deadline('250ms'), 250);
  t.is(deadline('3'), 3000);
  for (const v of ['5m', 'soon', '-1s', 's', '5 s']) t.throws(() => deadline(v), { instanceOf: ConfigError, message: /CONNECTION_TERMINATION_DEADLINE/ }, v);
});

test('loadConfig: other variables', (t) => {
  const c = loadConfig({
    LOCAL_XDS_PATH: '/etc/ambit/local.yaml', NODE_NAME: 'node-a', TRUST_DOMAIN: 'td.example', CLUSTER_ID: 'c1', NETWORK: 'net1',
    UNSTABLE_ENABLE_SOCKS5: 'true', ENABLE_ORIG_SRC: 'false', WORKLOAD_CERT_TTL_SECONDS: '3600', LOG_LEVEL: 'debug',
  });
  t.like(c, {
    localXdsPath: '/etc/ambit/local.yaml', nodeName: 'node-a', trustDomain: 'td.example', clusterId: 'c1', network: 'net1',
    enableSocks5: true, enableOrigSrc: false, certTtlSeconds: 3600, logLevel: 'debug',
  });
  t.is(loadConfig({ CLUSTER_ID: 'c1', ISTIO_META_CLUSTER_ID: 'c2' }).clusterId, 'c2');
  t.throws(() => loadConfig({ UNSTABLE_ENABLE_SOCKS5: 'maybe' }), { instanceOf: ConfigError, message: /UNSTABLE_ENABLE_SOCKS5/ });
  t.throws(() => loadConfig({ WORKLOAD_CERT_TTL_SECONDS: '1h' }), { instanceOf: ConfigError, message: /WORKLOAD_CERT_TTL_SECONDS/ });
});
