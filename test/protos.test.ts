import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import fc from 'fast-check';
import {
  AddressCodec,
  ADDRESS_TYPE_URL,
  AuthorizationCodec,
  AUTHORIZATION_TYPE_URL,
  fromStruct,
  GatewayAddressCodec,
  IstioCertificateRequestCodec,
  IstioCertificateResponseCodec,
  IstioCertificateServiceDefinition,
  NetworkAddressCodec,
  PROTO_FILES,
  protoRoot,
  ProtoError,
  PROTOS_DIR,
  ServiceCodec,
  toStruct,
  WorkloadCodec,
  WorkloadRequestCodec,
  WorkloadResponseCodec,
  ZdsHelloCodec,
  type Address,
  type Authorization,
  type Codec,
  type GatewayAddress,
  type IstioCertificateRequest,
  type Match,
  type Service,
  type Workload,
  type WorkloadRequest,
} from '../protos/index.js';

// ---------------------------------------------------------------- helpers

const ip4 = (s: string): Uint8Array => new Uint8Array(s.split('.').map(Number));
function ip6(s: string): Uint8Array {
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

const W0: Workload = {
  uid: '',
  name: '',
  namespace: '',
  addresses: [],
  hostname: '',
  network: '',
  tunnelProtocol: 'NONE',
  trustDomain: '',
  serviceAccount: '',
  node: '',
  canonicalName: '',
  canonicalRevision: '',
  workloadType: 'DEPLOYMENT',
  workloadName: '',
  nativeTunnel: false,
  services: {},
  authorizationPolicies: [],
  status: 'HEALTHY',
  clusterId: '',
  networkMode: 'STANDARD',
  extensions: [],
};
const wl = (p: Partial<Workload>): Workload => ({ ...W0, ...p });

const S0: Service = {
  name: '',
  namespace: '',
  hostname: '',
  addresses: [],
  ports: [],
  subjectAltNames: [],
  ipFamilies: 'AUTOMATIC',
  extensions: [],
  canonical: false,
  ingressUseWaypoint: false,
  weightedWaypoints: [],
  visibility: 'PUBLIC',
};
const svc = (p: Partial<Service>): Service => ({ ...S0, ...p });

const M0: Match = {
  namespaces: [],
  notNamespaces: [],
  principals: [],
  notPrincipals: [],
  sourceIps: [],
  notSourceIps: [],
  destinationIps: [],
  notDestinationIps: [],
  destinationPorts: [],
  notDestinationPorts: [],
  serviceAccounts: [],
  notServiceAccounts: [],
  extensions: [],
};
const match = (p: Partial<Match>): Match => ({ ...M0, ...p });

function roundTrip<T>(codec: Codec<T>, msg: T): T {
  // encode accepts the full message shape too (discriminators are ignored)
  return codec.decode(codec.encode(msg as Parameters<Codec<T>['encode']>[0]));
}

const waypointByIp: GatewayAddress = {
  destination: 'address',
  address: { network: '', address: ip4('10.96.5.5') },
  hboneMtlsPort: 15008,
};
const waypointByName: GatewayAddress = {
  destination: 'hostname',
  hostname: { namespace: 'bookinfo', hostname: 'waypoint.bookinfo.svc.cluster.local' },
  hboneMtlsPort: 15008,
};

const reviewsPod: Workload = wl({
  uid: 'Kubernetes//Pod/bookinfo/reviews-v1-5f9d7c8b4-x2k8q',
  name: 'reviews-v1-5f9d7c8b4-x2k8q',
  namespace: 'bookinfo',
  addresses: [ip4('10.244.1.7'), ip6('fd00:10:244:1::7')],
  tunnelProtocol: 'HBONE',
  trustDomain: 'cluster.local',
  serviceAccount: 'bookinfo-reviews',
  waypoint: waypointByIp,
  networkGateway: {
    destination: 'hostname',
    hostname: { namespace: 'istio-system', hostname: 'eastwest.istio-system.svc.cluster.local' },
    hboneMtlsPort: 15008,
  },
  node: 'node-a',
  canonicalName: 'reviews',
  canonicalRevision: 'v1',
  workloadType: 'POD',
  workloadName: 'reviews-v1',
  applicationTunnel: { protocol: 'PROXY', port: 15088 },
  services: {
    'bookinfo/reviews.bookinfo.svc.cluster.local': {
      ports: [{ servicePort: 9080, targetPort: 9080, appProtocol: 'HTTP11' }],
    },
    'bookinfo/reviews-grpc.bookinfo.svc.cluster.local': {
      ports: [{ servicePort: 7070, targetPort: 17070, appProtocol: 'GRPC' }],
    },
  },
  authorizationPolicies: ['bookinfo/allow-productpage'],
  status: 'HEALTHY',
  clusterId: 'Kubernetes',
  locality: { region: 'us-east1', zone: 'us-east1-b', subzone: 'rack7' },
  networkMode: 'STANDARD',
  extensions: [
    { name: 'ambit.dev/noop', config: { type_url: 'type.googleapis.com/google.protobuf.Empty', value: new Uint8Array() } },
  ],
  capacity: { value: 3 },
});

const reviewsSvc: Service = svc({
  name: 'reviews',
  namespace: 'bookinfo',
  hostname: 'reviews.bookinfo.svc.cluster.local',
  addresses: [
    { network: '', address: ip4('10.96.0.10') },
    { network: 'net-2', address: ip6('fd00:10:96::a') },
  ],
  ports: [
    { servicePort: 9080, targetPort: 9080, appProtocol: 'HTTP11' },
    { servicePort: 443, targetPort: 0, appProtocol: 'TLS' },
  ],
  subjectAltNames: ['spiffe://cluster.local/ns/bookinfo/sa/reviews'],
  waypoint: waypointByName,
  loadBalancing: { routingPreference: ['NETWORK', 'REGION', 'ZONE'], mode: 'FAILOVER', healthPolicy: 'ONLY_HEALTHY' },
  ipFamilies: 'DUAL',
  canonical: true,
  ingressUseWaypoint: true,
  weightedWaypoints: [
    { destination: waypointByName, weight: 90 },
    { destination: waypointByIp, weight: 10 },
  ],
  visibility: 'NAMESPACE',
});

const denyPolicy: Authorization = {
  name: 'deny-external',
  namespace: 'bookinfo',
  scope: 'WORKLOAD_SELECTOR',
  action: 'DENY',
  dryRun: true,
  extensions: [],
  rules: [
    {
      clauses: [
        {
          matches: [
            match({
              namespaces: [{ matchType: 'exact', exact: 'bookinfo' }, { matchType: 'prefix', prefix: 'team-' }],
              notPrincipals: [
                { matchType: 'suffix', suffix: '/sa/legacy' },
                { matchType: 'presence', presence: {} },
              ],
              sourceIps: [{ address: ip4('10.244.0.0'), length: 16 }],
              notDestinationIps: [{ address: ip6('fd00::'), length: 8 }],
              destinationPorts: [9080, 8443],
              notDestinationPorts: [15021],
              serviceAccounts: [{ namespace: 'bookinfo', serviceAccount: 'productpage' }],
              notServiceAccounts: [{ namespace: 'default', serviceAccount: 'sleep' }],
            }),
          ],
        },
        { matches: [match({ principals: [{ matchType: 'exact', exact: 'cluster.local/ns/a/sa/b' }] })] },
      ],
    },
  ],
};

// ---------------------------------------------------------------- loading

test('protos are found and loaded', (t) => {
  for (const f of PROTO_FILES) t.true(existsSync(join(PROTOS_DIR, f)), f);
  t.truthy(protoRoot.lookupType('istio.workload.Address'));
  t.truthy(protoRoot.lookupType('istio.security.Authorization'));
  t.truthy(protoRoot.lookupService('istio.v1.auth.IstioCertificateService'));
  t.truthy(protoRoot.lookupType('istio.workload.zds.WorkloadRequest'));
  t.is(ADDRESS_TYPE_URL, 'type.googleapis.com/istio.workload.Address');
  t.is(AUTHORIZATION_TYPE_URL, 'type.googleapis.com/istio.security.Authorization');
});

test('create() fills every scalar, repeated and map default', (t) => {
  t.deepEqual(WorkloadCodec.create(), W0);
  t.deepEqual(ServiceCodec.create(), S0);
  t.deepEqual(AddressCodec.create(), {});
  t.deepEqual(GatewayAddressCodec.create({ hboneMtlsPort: 15008 }), { hboneMtlsPort: 15008 });
  t.deepEqual(IstioCertificateRequestCodec.create({ csr: 'x' }), { csr: 'x', validityDuration: 0 });
  t.deepEqual(ZdsHelloCodec.create(), { version: 'NOT_USED' });
  t.deepEqual(WorkloadRequestCodec.create(), {});
});

// ---------------------------------------------------------------- round trips

test('Address round-trips a workload (IPv4 + IPv6, both gateway forms)', (t) => {
  const a: Address = { type: 'workload', workload: reviewsPod };
  const back = roundTrip(AddressCodec, a);
  t.deepEqual(back, a);
  t.is(back.workload?.addresses[0]?.length, 4);
  t.is(back.workload?.addresses[1]?.length, 16);
  t.true(back.workload?.addresses[0] instanceof Uint8Array);
  t.false(Buffer.isBuffer(back.workload?.addresses[0]), 'bytes are plain Uint8Array copies');
});

test('Address round-trips a service', (t) => {
  const a: Address = { type: 'service', service: reviewsSvc };
  t.deepEqual(roundTrip(AddressCodec, a), a);
  t.deepEqual(roundTrip(ServiceCodec, reviewsSvc), reviewsSvc);
});

test('Workload round-trips a hostname-only workload without optional parts', (t) => {
  const w = wl({
    uid: 'Kubernetes/networking.istio.io/ServiceEntry/default/external/api.example.com',
    hostname: 'api.example.com',
    networkMode: 'HOST_NETWORK',
    status: 'UNHEALTHY',
    workloadType: 'JOB',
    nativeTunnel: true,
    capacity: { value: 0 },
  });
  const back = roundTrip(WorkloadCodec, w);
  t.deepEqual(back, w);
  t.false('waypoint' in back, 'unset sub-messages are absent, not null');
  t.deepEqual(back.capacity, { value: 0 }, 'a present wrapper keeps its presence');
});

test('GatewayAddress oneof: hostname vs address', (t) => {
  t.deepEqual(roundTrip(GatewayAddressCodec, waypointByIp), waypointByIp);
  t.deepEqual(roundTrip(GatewayAddressCodec, waypointByName), waypointByName);
  t.is(GatewayAddressCodec.decode(GatewayAddressCodec.encode(waypointByName)).destination, 'hostname');
});

test('NetworkAddress optional length keeps presence (0 differs from unset)', (t) => {
  const host = { network: 'n1', address: ip4('192.168.1.1') };
  const cidr0 = { network: 'n1', address: ip4('0.0.0.0'), length: 0 };
  const cidr = { network: 'n1', address: ip6('2001:db8::'), length: 32 };
  t.deepEqual(roundTrip(NetworkAddressCodec, host), host);
  t.false('length' in NetworkAddressCodec.decode(NetworkAddressCodec.encode(host)));
  t.deepEqual(roundTrip(NetworkAddressCodec, cidr0), cidr0);
  t.deepEqual(roundTrip(NetworkAddressCodec, cidr), cidr);
});

test('Authorization round-trips with every StringMatch variant', (t) => {
  t.deepEqual(roundTrip(AuthorizationCodec, denyPolicy), denyPolicy);
});

test('IstioCertificateRequest/Response round-trip, Struct helpers', (t) => {
  const req: IstioCertificateRequest = {
    csr: '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n',
    validityDuration: 86400,
    metadata: toStruct({
      ImpersonatedIdentity: 'spiffe://cluster.local/ns/bookinfo/sa/reviews',
      attempt: 2,
      nested: { ok: true, list: ['a', null] },
    }),
  };
  const back = roundTrip(IstioCertificateRequestCodec, req);
  t.is(back.csr, req.csr);
  t.is(back.validityDuration, 86400);
  t.deepEqual(fromStruct(back.metadata!), {
    ImpersonatedIdentity: 'spiffe://cluster.local/ns/bookinfo/sa/reviews',
    attempt: 2,
    nested: { ok: true, list: ['a', null] },
  });
  t.is(back.metadata?.fields['attempt']?.kind, 'numberValue');
  // a duration beyond 32 bits survives as a number
  t.is(roundTrip(IstioCertificateRequestCodec, { ...req, validityDuration: 2 ** 40 }).validityDuration, 2 ** 40);

  const res = { certChain: ['-----BEGIN CERTIFICATE-----\nleaf\n', '-----BEGIN CERTIFICATE-----\nroot\n'] };
  t.deepEqual(roundTrip(IstioCertificateResponseCodec, res), res);
});

test('ZDS messages: hello, every WorkloadRequest payload, ack', (t) => {
  t.deepEqual(ZdsHelloCodec.decode(ZdsHelloCodec.encode({ version: 'V1' })), { version: 'V1' });
  t.deepEqual(Array.from(ZdsHelloCodec.encode({ version: 'V1' })), [0x08, 0x01]);

  const reqs: WorkloadRequest[] = [
    {
      payload: 'add',
      add: {
        uid: '2d1a6b5e-8b1f-4c35-9d7c-5a0e3f2b1c9a',
        workloadInfo: { name: 'reviews-v1-5f9d7c8b4-x2k8q', namespace: 'bookinfo', serviceAccount: 'bookinfo-reviews' },
      },
    },
    { payload: 'add', add: { uid: 'no-info' } },
    { payload: 'del', del: { uid: '2d1a6b5e-8b1f-4c35-9d7c-5a0e3f2b1c9a' } },
    { payload: 'keep', keep: { uid: 'c0ffee' } },
    { payload: 'snapshotSent', snapshotSent: {} },
  ];
  for (const r of reqs) t.deepEqual(roundTrip(WorkloadRequestCodec, r), r, r.payload);
  t.deepEqual(Array.from(WorkloadRequestCodec.encode({ snapshotSent: {} })), [0x1a, 0x00]);
  t.deepEqual(Array.from(WorkloadRequestCodec.encode({ keep: { uid: 'a' } })), [0x2a, 0x03, 0x0a, 0x01, 0x61]);
  t.deepEqual(Array.from(WorkloadRequestCodec.encode({ del: { uid: 'a' } })), [0x12, 0x03, 0x12, 0x01, 0x61]);

  t.deepEqual(WorkloadResponseCodec.decode(WorkloadResponseCodec.encode({ ack: {} })), {
    payload: 'ack',
    ack: { error: '' },
  });
  const nack = { payload: 'ack' as const, ack: { error: 'netns gone' } };
  t.deepEqual(roundTrip(WorkloadResponseCodec, nack), nack);
});

test('unknown enum values from a newer peer decode as numbers and re-encode', (t) => {
  const bytes = WorkloadCodec.encode({ uid: 'u', status: 7, tunnelProtocol: 'HBONE' });
  const w = WorkloadCodec.decode(bytes);
  t.is(w.status, 7);
  t.is(w.tunnelProtocol, 'HBONE');
  t.deepEqual(WorkloadCodec.encode(w), bytes);
});

test('decoded bytes do not pin the input buffer', (t) => {
  const bytes = AddressCodec.encode({ workload: { uid: 'u', addresses: [ip4('10.0.0.1')], name: 'x'.repeat(4096) } });
  const w = AddressCodec.decode(bytes).workload!;
  t.is(w.addresses[0]!.buffer.byteLength, 4);
});

test('unknown fields are skipped', (t) => {
  // Address{workload{uid:"u"}} followed by field 99 (varint) and field 100 (bytes)
  const known = AddressCodec.encode({ workload: { uid: 'u' } });
  const extra = new Uint8Array([...known, 0x98, 0x06, 0x01, 0xa2, 0x06, 0x02, 0x68, 0x69]);
  t.deepEqual(AddressCodec.decode(extra), { type: 'workload', workload: wl({ uid: 'u' }) });
});

// ---------------------------------------------------------------- malformed input

test('malformed bytes throw ProtoError', (t) => {
  const cases: [string, Codec<unknown>, number[]][] = [
    ['truncated varint', WorkloadCodec as Codec<unknown>, [0x08]],
    ['length beyond end', AddressCodec as Codec<unknown>, [0x0a, 0x05, 0x01]],
    ['nested length beyond parent', AddressCodec as Codec<unknown>, [0x0a, 0x02, 0x12, 0x01]],
    ['invalid wire type 7', ServiceCodec as Codec<unknown>, [0x0f]],
    ['stray end-group', AuthorizationCodec as Codec<unknown>, [0x0c]],
    ['10-byte varint overflow', ZdsHelloCodec as Codec<unknown>, [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ['truncated ZDS packet', WorkloadRequestCodec as Codec<unknown>, [0x0a, 0x10, 0x0a, 0x04, 0x61]],
    ['invalid UTF-8 in a string', WorkloadCodec as Codec<unknown>, [0x0a, 0x02, 0xc3, 0x28]],
  ];
  for (const [what, codec, bytes] of cases) {
    const err = t.throws(() => codec.decode(new Uint8Array(bytes)), { instanceOf: ProtoError }, what);
    t.regex(err?.message ?? '', /^istio\.[\w.]+: malformed message/, what);
  }
});

test('truncating a valid encoding inside a field throws', (t) => {
  const bytes = AddressCodec.encode({ type: 'service', service: reviewsSvc });
  // Address.service is one length-delimited field: every strict prefix but the empty one cuts it.
  for (let n = 1; n < bytes.length; n++) {
    t.throws(() => AddressCodec.decode(bytes.subarray(0, n)), { instanceOf: ProtoError }, `prefix ${n}`);
  }
});

test('property: arbitrary bytes either decode or throw ProtoError', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      for (const codec of [AddressCodec, AuthorizationCodec, WorkloadRequestCodec] as Codec<unknown>[]) {
        try {
          codec.decode(bytes);
        } catch (err) {
          if (!(err instanceof ProtoError)) return false;
        }
      }
      return true;
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

// ---------------------------------------------------------------- property: Workload round trip

const arbText = fc.string({ unit: 'grapheme', maxLength: 24 });
const arbName = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/);
const arbU32 = fc.integer({ min: 0, max: 0xffffffff });
const arbIp = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 }));
const arbNetAddr = fc.record(
  { network: arbText, address: arbIp, length: fc.integer({ min: 0, max: 128 }) },
  { requiredKeys: ['network', 'address'] },
);
const arbGateway: fc.Arbitrary<GatewayAddress> = fc.oneof(
  fc.record({
    destination: fc.constant('hostname' as const),
    hostname: fc.record({ namespace: arbName, hostname: arbText }),
    hboneMtlsPort: arbU32,
  }),
  fc.record({ destination: fc.constant('address' as const), address: arbNetAddr, hboneMtlsPort: arbU32 }),
  fc.record({ hboneMtlsPort: arbU32 }),
);
const arbPort = fc.record({
  servicePort: arbU32,
  targetPort: arbU32,
  appProtocol: fc.constantFrom('UNKNOWN', 'HTTP11', 'HTTP2', 'GRPC', 'TCP', 'TLS' as const),
});
const arbServices = fc
  .uniqueArray(fc.tuple(fc.tuple(arbName, arbName).map(([n, h]) => `${n}/${h}.svc`), fc.array(arbPort, { maxLength: 3 })), {
    maxLength: 3,
    selector: ([k]) => k,
  })
  .map((entries) => Object.fromEntries(entries.map(([k, ports]) => [k, { ports }])));

const arbWorkload: fc.Arbitrary<Workload> = fc.record(
  {
    uid: arbText,
    name: arbText,
    namespace: arbName,
    addresses: fc.array(arbIp, { maxLength: 3 }),
    hostname: arbText,
    network: arbText,
    tunnelProtocol: fc.constantFrom('NONE', 'HBONE', 'LEGACY_ISTIO_MTLS' as const),
    trustDomain: arbText,
    serviceAccount: arbName,
    waypoint: arbGateway,
    networkGateway: arbGateway,
    node: arbText,
    canonicalName: arbText,
    canonicalRevision: arbText,
    workloadType: fc.constantFrom('DEPLOYMENT', 'CRONJOB', 'POD', 'JOB' as const),
    workloadName: arbText,
    nativeTunnel: fc.boolean(),
    applicationTunnel: fc.record({ protocol: fc.constantFrom('NONE', 'PROXY' as const), port: arbU32 }),
    services: arbServices,
    authorizationPolicies: fc.array(arbText, { maxLength: 3 }),
    status: fc.constantFrom('HEALTHY', 'UNHEALTHY' as const),
    clusterId: arbText,
    locality: fc.record({ region: arbText, zone: arbText, subzone: arbText }),
    networkMode: fc.constantFrom('STANDARD', 'HOST_NETWORK' as const),
    extensions: fc.array(
      fc.record(
        { name: arbText, config: fc.record({ type_url: arbText, value: fc.uint8Array({ maxLength: 8 }) }) },
        { requiredKeys: ['name'] },
      ),
      { maxLength: 2 },
    ),
    capacity: fc.record({ value: arbU32 }),
  },
  {
    requiredKeys: [
      'uid', 'name', 'namespace', 'addresses', 'hostname', 'network', 'tunnelProtocol', 'trustDomain',
      'serviceAccount', 'node', 'canonicalName', 'canonicalRevision', 'workloadType', 'workloadName',
      'nativeTunnel', 'services', 'authorizationPolicies', 'status', 'clusterId', 'networkMode', 'extensions',
    ],
  },
);

test('property: Workload and Address{workload} round-trip', (t) => {
  fc.assert(
    fc.property(arbWorkload, (w) => {
      t.deepEqual(roundTrip(WorkloadCodec, w), w);
      const a: Address = { type: 'workload', workload: w };
      t.deepEqual(roundTrip(AddressCodec, a), a);
    }),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------- cross-check with protoc

const PROTOC = ['/usr/bin/protoc', 'protoc'].find((p) => spawnSync(p, ['--version']).status === 0);
const WKT_INCLUDE = ['/usr/include', '/usr/local/include'].find((d) =>
  existsSync(join(d, 'google/protobuf/struct.proto')),
);
const withProtoc = PROTOC && WKT_INCLUDE ? test : test.skip;

function protoc(mode: '--encode' | '--decode', typeName: string, file: string, input: string | Uint8Array): Buffer {
  const r = spawnSync(PROTOC!, [`${mode}=${typeName}`, '-I', PROTOS_DIR, '-I', WKT_INCLUDE!, join(PROTOS_DIR, file)], {
    input,
  });
  if (r.status !== 0) throw new Error(`protoc ${mode}=${typeName} failed: ${r.stderr.toString()}`);
  return r.stdout;
}

withProtoc('protoc compiles every .proto file', (t) => {
  const r = spawnSync(
    PROTOC!,
    ['-I', PROTOS_DIR, '-I', WKT_INCLUDE!, '--descriptor_set_out=/dev/null', ...PROTO_FILES.map((f) => join(PROTOS_DIR, f))],
  );
  t.is(r.status, 0, r.stderr.toString());
});

// Fixtures: text-format messages, and the bytes protoc produced for them from
// Istio's own .proto files (see test/fixtures/protos/README.md).

function findFixtures(): string {
  for (const u of [new URL('../../test/fixtures/protos/', import.meta.url), new URL('./fixtures/protos/', import.meta.url)]) {
    const dir = fileURLToPath(u);
    if (existsSync(join(dir, 'golden.json'))) return dir;
  }
  throw new Error('test/fixtures/protos not found');
}
const FIXTURES = findFixtures();
const GOLDEN = JSON.parse(readFileSync(join(FIXTURES, 'golden.json'), 'utf8')) as Record<
  string,
  { type: string; file: string; hex: string }
>;

interface Expectation {
  codec: Codec<unknown>;
  expected: unknown;
  /** false when the encoding has no single canonical byte order (several map entries) */
  exactBytes?: boolean;
}
const expect = <T>(codec: Codec<T>, expected: T): Expectation => ({ codec: codec as Codec<unknown>, expected });

const EXPECTED: Record<string, Expectation> = {
  'address-workload': expect(AddressCodec, {
    type: 'workload',
    workload: wl({
      uid: 'Kubernetes//Pod/bookinfo/ratings-v1-7d8c9f-abcde',
      name: 'ratings-v1-7d8c9f-abcde',
      namespace: 'bookinfo',
      addresses: [ip4('10.244.2.9'), ip6('fd00:10:244:2::9')],
      network: 'net-1',
      tunnelProtocol: 'HBONE',
      trustDomain: 'cluster.local',
      serviceAccount: 'bookinfo-ratings',
      waypoint: { destination: 'address', address: { network: 'net-1', address: ip4('10.96.5.5') }, hboneMtlsPort: 15008 },
      networkGateway: {
        destination: 'hostname',
        hostname: { namespace: 'istio-system', hostname: 'eastwest.example' },
        hboneMtlsPort: 15009,
      },
      node: 'node-b',
      canonicalName: 'ratings',
      canonicalRevision: 'v1',
      workloadType: 'POD',
      workloadName: 'ratings-v1',
      nativeTunnel: true,
      applicationTunnel: { protocol: 'PROXY', port: 15088 },
      services: {
        'bookinfo/ratings.bookinfo.svc.cluster.local': {
          ports: [{ servicePort: 9080, targetPort: 9081, appProtocol: 'HTTP2' }],
        },
      },
      authorizationPolicies: ['bookinfo/ratings-allow'],
      status: 'UNHEALTHY',
      clusterId: 'c1',
      locality: { region: 'eu-west1', zone: 'eu-west1-a', subzone: '' },
      networkMode: 'HOST_NETWORK',
      extensions: [{ name: 'e', config: { type_url: 'type.googleapis.com/google.protobuf.Empty', value: new Uint8Array() } }],
      capacity: { value: 5 },
    }),
  }),
  'address-service': expect(AddressCodec, {
    type: 'service',
    service: svc({
      name: 'reviews',
      namespace: 'bookinfo',
      hostname: 'reviews.bookinfo.svc.cluster.local',
      addresses: [
        { network: '', address: ip4('10.96.0.10') },
        { network: 'net-2', address: ip6('fd00:10:96::a'), length: 64 },
      ],
      ports: [{ servicePort: 9080, targetPort: 9080, appProtocol: 'HTTP11' }],
      subjectAltNames: ['spiffe://cluster.local/ns/bookinfo/sa/reviews'],
      waypoint: waypointByName,
      loadBalancing: { routingPreference: ['NETWORK', 'ZONE'], mode: 'STRICT', healthPolicy: 'ALLOW_ALL' },
      ipFamilies: 'IPV6_ONLY',
      canonical: true,
      ingressUseWaypoint: true,
      weightedWaypoints: [
        {
          destination: { destination: 'address', address: { network: '', address: ip4('10.96.5.6') }, hboneMtlsPort: 15008 },
          weight: 25,
        },
      ],
      visibility: 'NAMESPACE',
    }),
  }),
  authorization: expect(AuthorizationCodec, {
    name: 'allow-pp',
    namespace: 'bookinfo',
    scope: 'NAMESPACE',
    action: 'ALLOW',
    dryRun: true,
    extensions: [{ name: 'x' }],
    rules: [
      {
        clauses: [
          {
            matches: [
              match({
                namespaces: [{ matchType: 'exact', exact: 'bookinfo' }],
                notNamespaces: [{ matchType: 'prefix', prefix: 'kube-' }],
                principals: [{ matchType: 'suffix', suffix: '/sa/productpage' }],
                notPrincipals: [{ matchType: 'presence', presence: {} }],
                sourceIps: [{ address: ip4('10.244.0.0'), length: 16 }],
                notSourceIps: [{ address: ip6('fd00::'), length: 8 }],
                destinationIps: [{ address: ip4('10.96.0.10'), length: 32 }],
                destinationPorts: [9080, 9443],
                notDestinationPorts: [15021],
                serviceAccounts: [{ namespace: 'bookinfo', serviceAccount: 'productpage' }],
                notServiceAccounts: [{ namespace: 'default', serviceAccount: 'sleep' }],
              }),
            ],
          },
        ],
      },
    ],
  }),
  'zds-hello': expect(ZdsHelloCodec, { version: 'V1' }),
  'zds-add': expect(WorkloadRequestCodec, {
    payload: 'add',
    add: { uid: 'pod-uid-1', workloadInfo: { name: 'p', namespace: 'ns', serviceAccount: 'sa' } },
  }),
  'zds-del': expect(WorkloadRequestCodec, { payload: 'del', del: { uid: 'gone' } }),
  'zds-keep': expect(WorkloadRequestCodec, { payload: 'keep', keep: { uid: 'stay' } }),
  'zds-snapshot-sent': expect(WorkloadRequestCodec, { payload: 'snapshotSent', snapshotSent: {} }),
  'zds-ack': expect(WorkloadResponseCodec, { payload: 'ack', ack: { error: 'boom' } }),
  'ca-request': expect(IstioCertificateRequestCodec, {
    csr: 'PEM\n',
    validityDuration: 43200,
    metadata: {
      fields: { ImpersonatedIdentity: { kind: 'stringValue', stringValue: 'spiffe://cluster.local/ns/a/sa/b' } },
    },
  }),
  'ca-response': expect(IstioCertificateResponseCodec, { certChain: ['leaf', 'root'] }),
};

test('every fixture has an expectation and a golden encoding', (t) => {
  const txtpb = readdirSync(FIXTURES).filter((f) => f.endsWith('.txtpb')).map((f) => f.slice(0, -'.txtpb'.length));
  t.deepEqual(Object.keys(GOLDEN).sort(), txtpb.sort());
  t.deepEqual(Object.keys(EXPECTED).sort(), txtpb.sort());
  for (const [name, g] of Object.entries(GOLDEN)) t.is(EXPECTED[name]!.codec.typeName, g.type, name);
});

test('bytes encoded with Istio schemas decode to the expected objects, and we re-encode them exactly', (t) => {
  for (const [name, { hex }] of Object.entries(GOLDEN)) {
    const { codec, expected, exactBytes = true } = EXPECTED[name]!;
    const golden = Buffer.from(hex, 'hex');
    t.deepEqual(codec.decode(golden), expected, name);
    if (exactBytes) t.is(Buffer.from(codec.encode(expected as never)).toString('hex'), hex, name);
  }
});

withProtoc('protoc with our .proto files encodes every fixture to the golden bytes', (t) => {
  for (const [name, { type, file, hex }] of Object.entries(GOLDEN)) {
    const text = readFileSync(join(FIXTURES, `${name}.txtpb`));
    t.is(protoc('--encode', type, file, text).toString('hex'), hex, name);
  }
});

withProtoc('protoc --decode reads what we encode', (t) => {
  const addr = protoc('--decode', 'istio.workload.Address', 'workload.proto', AddressCodec.encode({ workload: reviewsPod })).toString();
  for (const line of [
    'uid: "Kubernetes//Pod/bookinfo/reviews-v1-5f9d7c8b4-x2k8q"',
    `addresses: "\\n\\364\\001\\007"`, // 10.244.1.7
    'tunnel_protocol: HBONE',
    'service_account: "bookinfo-reviews"',
    'hbone_mtls_port: 15008',
    'hostname: "eastwest.istio-system.svc.cluster.local"',
    'workload_type: POD',
    'key: "bookinfo/reviews.bookinfo.svc.cluster.local"',
    'app_protocol: HTTP11',
    'protocol: PROXY',
    'region: "us-east1"',
    'capacity {',
    'value: 3',
  ]) {
    t.true(addr.includes(line), `missing ${line} in:\n${addr}`);
  }

  const svcText = protoc('--decode', 'istio.workload.Service', 'workload.proto', ServiceCodec.encode(reviewsSvc)).toString();
  for (const line of [
    'hostname: "reviews.bookinfo.svc.cluster.local"',
    'routing_preference: NETWORK',
    'mode: FAILOVER',
    'ip_families: DUAL',
    'canonical: true',
    'ingress_use_waypoint: true',
    'weight: 90',
    'visibility: NAMESPACE',
  ]) {
    t.true(svcText.includes(line), `missing ${line} in:\n${svcText}`);
  }

  const authz = protoc('--decode', 'istio.security.Authorization', 'authorization.proto', AuthorizationCodec.encode(denyPolicy)).toString();
  for (const line of [
    'scope: WORKLOAD_SELECTOR',
    'action: DENY',
    'dry_run: true',
    'exact: "bookinfo"',
    'prefix: "team-"',
    'suffix: "/sa/legacy"',
    'presence {',
    'length: 16',
    'destination_ports: 9080',
    'serviceAccount: "productpage"',
    'not_service_accounts {',
  ]) {
    t.true(authz.includes(line), `missing ${line} in:\n${authz}`);
  }

  const ca = protoc(
    '--decode',
    'istio.v1.auth.IstioCertificateRequest',
    'ca.proto',
    IstioCertificateRequestCodec.encode({
      csr: 'CSR',
      validityDuration: 86400,
      metadata: toStruct({ ImpersonatedIdentity: 'spiffe://cluster.local/ns/a/sa/b' }),
    }),
  ).toString();
  for (const line of ['csr: "CSR"', 'validity_duration: 86400', 'key: "ImpersonatedIdentity"', 'string_value: "spiffe://cluster.local/ns/a/sa/b"']) {
    t.true(ca.includes(line), `missing ${line} in:\n${ca}`);
  }

  const zds = protoc('--decode', 'istio.workload.zds.WorkloadRequest', 'zds.proto', WorkloadRequestCodec.encode({
    add: { uid: 'u1', workloadInfo: { name: 'p', namespace: 'ns', serviceAccount: 'sa' } },
  })).toString();
  for (const line of ['add {', 'uid: "u1"', 'workload_info {', 'service_account: "sa"']) {
    t.true(zds.includes(line), `missing ${line} in:\n${zds}`);
  }
  t.is(protoc('--decode', 'istio.workload.zds.ZdsHello', 'zds.proto', ZdsHelloCodec.encode({ version: 'V1' })).toString().trim(), 'version: V1');
});

// ---------------------------------------------------------------- grpc service definition

test('IstioCertificateService definition serializes with the codecs', (t) => {
  const def = IstioCertificateServiceDefinition.CreateCertificate;
  t.is(def.path, '/istio.v1.auth.IstioCertificateService/CreateCertificate');
  t.false(def.requestStream);
  t.false(def.responseStream);
  const req = { csr: 'CSR', validityDuration: 3600, metadata: toStruct({ a: 'b' }) };
  const buf = def.requestSerialize(req);
  t.true(Buffer.isBuffer(buf));
  t.deepEqual(fromStruct(def.requestDeserialize(buf).metadata!), { a: 'b' });
  const res = { certChain: ['leaf', 'root'] };
  t.deepEqual(def.responseDeserialize(def.responseSerialize(res)), res);
});

test('IstioCertificateService works end to end over grpc-js', async (t) => {
  const server = new grpc.Server();
  server.addService(IstioCertificateServiceDefinition, {
    CreateCertificate: (
      call: grpc.ServerUnaryCall<IstioCertificateRequest, unknown>,
      cb: grpc.sendUnaryData<{ certChain: string[] }>,
    ) => {
      const id = fromStruct(call.request.metadata ?? { fields: {} })['ImpersonatedIdentity'];
      cb(null, { certChain: [`leaf for ${String(id)} (${call.request.validityDuration}s)`, 'root'] });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const Client = grpc.makeGenericClientConstructor(IstioCertificateServiceDefinition, 'IstioCertificateService');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const res = await new Promise<unknown>((resolve, reject) =>
      client.makeUnaryRequest(
        IstioCertificateServiceDefinition.CreateCertificate.path,
        IstioCertificateServiceDefinition.CreateCertificate.requestSerialize,
        IstioCertificateServiceDefinition.CreateCertificate.responseDeserialize,
        { csr: 'CSR', validityDuration: 600, metadata: toStruct({ ImpersonatedIdentity: 'spiffe://td/ns/a/sa/b' }) },
        (err, value) => (err ? reject(err) : resolve(value)),
      ),
    );
    t.deepEqual(res, { certChain: ['leaf for spiffe://td/ns/a/sa/b (600s)', 'root'] });
  } finally {
    client.close();
    server.forceShutdown();
  }
});
