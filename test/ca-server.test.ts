// The controller's CA: root Secret lifecycle, plug-in intermediate, and CreateCertificate over gRPC with a fake
// TokenReview and a fake pod lookup (authn/authz decisions, status codes, issued chains).
import * as grpc from '@grpc/grpc-js';
import { CoreV1Api } from '@kubernetes/client-node';
import test from 'ava';
import { X509Certificate as NodeX509, randomBytes, webcrypto } from 'node:crypto';
import { pino } from 'pino';
import { IstioCertificateServiceDefinition, toStruct, type IstioCertificateResponse } from '../protos/index.js';
import { start, type ApiServer } from '../waypoint-controller/apiserver/index.js';
import {
  authorize,
  CertIssuer,
  effectiveTtlSeconds,
  loadCa,
  startCaServer,
  type CaMaterial,
  type CaServer,
  type PodRef,
  type ReviewToken,
} from '../waypoint-controller/ca/index.js';
import { EC_P256, exportKeyPem, uriSans, x509, type CryptoKey as XCryptoKey } from '../ztunnel/identity/x509.js';

const TD = 'cluster.local';
const NS = 'istio-system';
const id = (ns: string, sa: string) => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

// ---------------------------------------------------------------- fakes

interface FakeToken { username: string; audiences: string[]; pod?: string; podUid?: string; node?: string }
const tokens = new Map<string, FakeToken>([
  ['tok-sleep', { username: 'system:serviceaccount:shop:sleep', audiences: ['istio-ca'], pod: 'sleep-1', podUid: 'u-sleep', node: 'node1' }],
  ['tok-zt1', { username: `system:serviceaccount:${NS}:ztunnel`, audiences: ['istio-ca'], pod: 'ztunnel-a', podUid: 'u-zt-a', node: 'node1' }],
  ['tok-zt1-nonode', { username: `system:serviceaccount:${NS}:ztunnel`, audiences: ['istio-ca'], pod: 'ztunnel-a', podUid: 'u-zt-a' }],
  ['tok-sleep-kubeapi', { username: 'system:serviceaccount:shop:sleep', audiences: ['https://kubernetes.default.svc'] }],
  ['tok-user', { username: 'alice', audiences: ['istio-ca'] }],
]);
const reviewToken: ReviewToken = async (token, audiences) => {
  const t = tokens.get(token);
  if (!t) return { authenticated: false, error: 'invalid bearer token' };
  if (!t.audiences.some((a) => audiences.includes(a))) return { authenticated: false, error: 'token audiences is invalid for the target audiences' };
  const extra: Record<string, string[]> = {};
  if (t.pod) extra['authentication.kubernetes.io/pod-name'] = [t.pod];
  if (t.podUid) extra['authentication.kubernetes.io/pod-uid'] = [t.podUid];
  if (t.node) extra['authentication.kubernetes.io/node-name'] = [t.node];
  return { authenticated: true, user: { username: t.username, extra }, audiences: t.audiences };
};
const pods: Record<string, PodRef[]> = {
  node1: [{ namespace: 'shop', serviceAccount: 'sleep' }, { namespace: 'shop', serviceAccount: 'echo' }],
  node2: [{ namespace: 'shop', serviceAccount: 'db' }],
};
const podsOnNode = (node: string) => pods[node] ?? [];
const nodeOfPod = (ns: string, name: string, uid: string | undefined) =>
  ns === NS && name === 'ztunnel-a' && uid === 'u-zt-a' ? 'node1' : undefined;

// ---------------------------------------------------------------- helpers

async function makeCsr(sans: string[], curve: 'P-256' | 'P-384' = 'P-256') {
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: keys as never,
    signingAlgorithm: { name: 'ECDSA', hash: curve === 'P-256' ? 'SHA-256' : 'SHA-384' } as never,
    extensions: sans.length ? [new x509.SubjectAlternativeNameExtension(sans.map((value) => ({ type: 'url' as const, value })), true)] : [],
  });
  return { pem: csr.toString('pem'), keys };
}

type Client = grpc.Client & {
  createCertificate(req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: IstioCertificateResponse) => void): void;
};
const ClientCtor = grpc.makeGenericClientConstructor(IstioCertificateServiceDefinition as unknown as grpc.ServiceDefinition, 'IstioCertificateService');

interface Ask { token?: string | null; clusterId?: string | null; csr?: string; sans?: string[]; impersonate?: string; ttl?: number }
async function ask(client: Client, a: Ask): Promise<{ chain?: string[]; code?: grpc.status; details?: string; keys?: webcrypto.CryptoKeyPair }> {
  const md = new grpc.Metadata();
  if (a.token !== null) md.set('authorization', `Bearer ${a.token ?? 'tok-sleep'}`);
  if (a.clusterId !== null) md.set('clusterid', a.clusterId ?? 'Kubernetes');
  const made = a.csr === undefined ? await makeCsr(a.sans ?? []) : undefined;
  const req = {
    csr: a.csr ?? made!.pem,
    validityDuration: a.ttl ?? 0,
    ...(a.impersonate ? { metadata: toStruct({ ImpersonatedIdentity: a.impersonate }) } : {}),
  };
  return new Promise((resolve) =>
    client.createCertificate(req, md, (err, res) =>
      resolve(err ? { code: err.code, details: err.details } : { chain: res!.certChain, ...(made ? { keys: made.keys } : {}) }),
    ),
  );
}

/** Each certificate is signed by the next and the last is the given self-signed root. */
function verifyChain(chain: string[], rootPem: string): NodeX509[] {
  const certs = chain.map((p) => new NodeX509(p));
  const root = new NodeX509(rootPem);
  for (let i = 0; i + 1 < certs.length; i++) {
    if (!certs[i]!.checkIssued(certs[i + 1]!) || !certs[i]!.verify(certs[i + 1]!.publicKey)) throw new Error(`link ${i} does not verify`);
  }
  const last = certs[certs.length - 1]!;
  if (last.fingerprint256 !== root.fingerprint256 || !last.verify(root.publicKey)) throw new Error('chain does not end in the root');
  return certs;
}

// ---------------------------------------------------------------- fixture

let api: ApiServer;
let core: CoreV1Api;
let ca: CaMaterial;
let caServer: CaServer;
let client: Client;
const logLines: string[] = [];
const MAX_TTL = 3600;

test.before(async () => {
  api = await start({ defaultNamespaces: ['default', NS, 'plug'], endpointsController: false });
  core = api.kubeConfig().makeApiClient(CoreV1Api);
  ca = await loadCa(core, { namespace: NS, trustDomain: TD });
  caServer = await startCaServer({
    issuer: new CertIssuer(ca, { maxTtlSeconds: MAX_TTL }),
    trustDomain: TD,
    clusterId: 'Kubernetes',
    reviewToken,
    podsOnNode,
    nodeOfPod,
    log: pino({ level: 'info' }, { write: (s: string) => void logLines.push(s) }),
  });
  client = new ClientCtor(caServer.address, grpc.credentials.createInsecure()) as unknown as Client;
});

test.after.always(async () => {
  client?.close();
  await caServer?.close();
  await api?.close();
});

// ---------------------------------------------------------------- root Secret

test.serial('root Secret is created on first load and reused on the next (same root)', async (t) => {
  t.is(ca.source.kind, 'created');
  const secret = await core.readNamespacedSecret({ name: 'ambit-ca', namespace: NS });
  t.deepEqual(Object.keys(secret.data ?? {}).sort(), ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
  const again = await loadCa(core, { namespace: NS, trustDomain: TD });
  t.is(again.source.kind, 'loaded');
  t.is(again.rootPem, ca.rootPem);
  t.is(again.root.serialNumber, ca.root.serialNumber);
  t.deepEqual(again.chainPem, [ca.rootPem]);
  const alg = ca.root.publicKey.algorithm as { name: string; namedCurve?: string };
  t.deepEqual([alg.name, alg.namedCurve], ['ECDSA', 'P-256']);
  const years = (ca.root.notAfter.getTime() - ca.root.notBefore.getTime()) / (365 * 86_400_000);
  t.true(years > 9.9 && years < 10.1);
  t.is(ca.root.getExtension(x509.BasicConstraintsExtension)?.ca, true);
});

// ---------------------------------------------------------------- issuing

test.serial('a workload gets its own identity: chain to the root, one URI SAN, empty subject, lifetime capped', async (t) => {
  const r = await ask(client, { token: 'tok-sleep', sans: [id('shop', 'sleep')], ttl: 7 * 86_400 });
  t.is(r.code, undefined, r.details);
  t.is(r.chain!.length, 2);
  const [leaf] = verifyChain(r.chain!, ca.rootPem);
  const pleaf = new x509.X509Certificate(r.chain![0]!);
  t.deepEqual(uriSans(pleaf), [id('shop', 'sleep')]);
  t.is(pleaf.subject, '');
  t.is(pleaf.getExtension(x509.SubjectAlternativeNameExtension)?.critical, true);
  t.is(pleaf.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  const alg = pleaf.publicKey.algorithm as { name: string; namedCurve?: string };
  t.deepEqual([alg.name, alg.namedCurve], ['ECDSA', 'P-256']);
  // The leaf carries the CSR's key.
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', r.keys!.publicKey));
  t.true(spki.equals(Buffer.from(pleaf.publicKey.rawData)));
  const lifetime = (Date.parse(leaf!.validTo) - Date.now()) / 1000;
  t.true(lifetime <= MAX_TTL + 5 && lifetime > MAX_TTL - 60, `lifetime ${lifetime}`);
  // Requested shorter than the cap: honoured.
  const short = await ask(client, { token: 'tok-sleep', sans: [id('shop', 'sleep')], ttl: 600 });
  const shortLife = (Date.parse(new NodeX509(short.chain![0]!).validTo) - Date.now()) / 1000;
  t.true(shortLife <= 605 && shortLife > 540, `lifetime ${shortLife}`);
  t.is(effectiveTtlSeconds(0), 86_400);
  t.is(effectiveTtlSeconds(100_000), 86_400);
});

test.serial('the issued leaf and the root work for mutual TLS', async (t) => {
  const r = await ask(client, { token: 'tok-sleep', sans: [id('shop', 'sleep')] });
  const key = await exportKeyPem(r.keys!.privateKey);
  const tls = await import('node:tls');
  const server = tls.createServer({ key, cert: r.chain!.slice(0, -1).join(''), ca: ca.rootPem, requestCert: true, rejectUnauthorized: true }, (s) => s.end('ok'));
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  const got = await new Promise<string>((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port, key, cert: r.chain!.slice(0, -1).join(''), ca: ca.rootPem, checkServerIdentity: () => undefined }, () => {
      c.once('data', (d) => { resolve(d.toString()); c.end(); });
    });
    c.once('error', reject);
  });
  server.close();
  t.is(got, 'ok');
});

test.serial('ztunnel may impersonate an identity with a pod on its node', async (t) => {
  const r = await ask(client, { token: 'tok-zt1', sans: [id('shop', 'echo')], impersonate: id('shop', 'echo') });
  t.is(r.code, undefined, r.details);
  verifyChain(r.chain!, ca.rootPem);
  t.deepEqual(uriSans(new x509.X509Certificate(r.chain![0]!)), [id('shop', 'echo')]);
  // Its own identity without impersonation is fine too.
  const own = await ask(client, { token: 'tok-zt1', sans: [id(NS, 'ztunnel')] });
  t.is(own.code, undefined, own.details);
});

test.serial('ztunnel is refused an identity with no pod on its node', async (t) => {
  const r = await ask(client, { token: 'tok-zt1', sans: [id('shop', 'db')], impersonate: id('shop', 'db') });
  t.is(r.code, grpc.status.PERMISSION_DENIED);
  t.regex(r.details!, /no pod with identity shop\/db runs on node node1/);
  // Without the ImpersonatedIdentity metadata a ztunnel gets nothing but its own identity.
  const noMeta = await ask(client, { token: 'tok-zt1', sans: [id('shop', 'echo')] });
  t.is(noMeta.code, grpc.status.PERMISSION_DENIED);
  // The node comes from the token's bound pod even when the token has no node claim.
  const viaPod = await ask(client, { token: 'tok-zt1-nonode', sans: [id('shop', 'echo')], impersonate: id('shop', 'echo') });
  t.is(viaPod.code, undefined, viaPod.details);
});

test.serial('a workload token asking for another identity is refused', async (t) => {
  const viaMeta = await ask(client, { token: 'tok-sleep', sans: [id('shop', 'echo')], impersonate: id('shop', 'echo') });
  t.is(viaMeta.code, grpc.status.PERMISSION_DENIED);
  t.regex(viaMeta.details!, /may only obtain its own identity/);
  const viaCsr = await ask(client, { token: 'tok-sleep', sans: [id('shop', 'echo')] });
  t.is(viaCsr.code, grpc.status.PERMISSION_DENIED);
  const otherTd = await ask(client, { token: 'tok-sleep', sans: ['spiffe://evil.org/ns/shop/sa/sleep'] });
  t.is(otherTd.code, grpc.status.PERMISSION_DENIED);
  t.regex(otherTd.details!, /trust domain evil\.org is not ours/);
  const human = await ask(client, { token: 'tok-user', sans: [id('shop', 'sleep')] });
  t.is(human.code, grpc.status.PERMISSION_DENIED);
});

test.serial('bad, missing and wrong-audience tokens are UNAUTHENTICATED', async (t) => {
  for (const token of ['no-such-token', 'tok-sleep-kubeapi', null]) {
    const r = await ask(client, { token, sans: [id('shop', 'sleep')] });
    t.is(r.code, grpc.status.UNAUTHENTICATED, String(token));
  }
  // A reviewer that authenticates but reports other audiences is not trusted either.
  const lax = await startCaServer({
    issuer: new CertIssuer(ca), trustDomain: TD, clusterId: 'Kubernetes', podsOnNode, log: pino({ level: 'silent' }),
    reviewToken: async () => ({ authenticated: true, user: { username: 'system:serviceaccount:shop:sleep' }, audiences: ['api'] }),
  });
  const c2 = new ClientCtor(lax.address, grpc.credentials.createInsecure()) as unknown as Client;
  const r = await ask(c2, { sans: [id('shop', 'sleep')] });
  c2.close();
  await lax.close();
  t.is(r.code, grpc.status.UNAUTHENTICATED);
  t.regex(r.details!, /audiences/);
});

test.serial('a wrong cluster id is UNAUTHENTICATED; no clusterid means this cluster (as Istio)', async (t) => {
  const r = await ask(client, { clusterId: 'other-cluster', sans: [id('shop', 'sleep')] });
  t.is(r.code, grpc.status.UNAUTHENTICATED);
  t.regex(r.details!, /other-cluster/);
  const none = await ask(client, { clusterId: null, sans: [id('shop', 'sleep')] });
  t.is(none.code, undefined, none.details);
});

test.serial('bad CSRs are INVALID_ARGUMENT', async (t) => {
  const mismatch = await ask(client, { token: 'tok-zt1', sans: [id('shop', 'sleep')], impersonate: id('shop', 'echo') });
  t.is(mismatch.code, grpc.status.INVALID_ARGUMENT);
  t.regex(mismatch.details!, /do not equal the identity being issued/);
  const twoSans = await ask(client, { sans: [id('shop', 'sleep'), id('shop', 'echo')] });
  t.is(twoSans.code, grpc.status.INVALID_ARGUMENT);
  const noSan = await ask(client, { sans: [] });
  t.is(noSan.code, grpc.status.INVALID_ARGUMENT);
  const garbage = await ask(client, { csr: 'hello' });
  t.is(garbage.code, grpc.status.INVALID_ARGUMENT);
  const p384 = await makeCsr([id('shop', 'sleep')], 'P-384');
  const wrongCurve = await ask(client, { csr: p384.pem });
  t.is(wrongCurve.code, grpc.status.INVALID_ARGUMENT);
  t.regex(wrongCurve.details!, /P-256/);
  // Tampered: flip a byte of the signature (last bytes of the DER).
  const good = await makeCsr([id('shop', 'sleep')]);
  const der = Buffer.from(good.pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 3] ^= 0xff;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  const bad = await ask(client, { csr: tampered });
  t.is(bad.code, grpc.status.INVALID_ARGUMENT);
});

test.serial('refusals are logged with their reason and never the token', (t) => {
  const refusals = logLines.map((l) => JSON.parse(l) as { msg: string; reason?: string; code?: string }).filter((l) => l.msg === 'certificate request refused');
  t.true(refusals.length >= 10);
  t.true(refusals.every((l) => typeof l.reason === 'string' && l.reason.length > 0 && typeof l.code === 'string'));
  for (const tok of tokens.keys()) t.false(logLines.some((l) => l.includes(tok)), tok);
});

// ---------------------------------------------------------------- plug-in intermediate

async function makeCa(subject: string, issuer?: { cert: x509.X509Certificate; key: XCryptoKey }) {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01' + randomBytes(8).toString('hex'),
    subject,
    issuer: issuer ? issuer.cert.subjectName : subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 365 * 86_400_000),
    publicKey: keys.publicKey as never,
    signingKey: (issuer?.key ?? keys.privateKey) as never,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  });
  return { cert, key: keys.privateKey, pem: cert.toString('pem') + '\n' };
}

test.serial('a plug-in intermediate (cacerts) signs leaves: chain is leaf, intermediate, root', async (t) => {
  const root = await makeCa('O=example corp, CN=offline root');
  const inter = await makeCa('O=example corp, CN=cluster intermediate', root);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  await core.createNamespacedSecret({
    namespace: 'plug',
    body: {
      metadata: { name: 'cacerts', namespace: 'plug' },
      data: {
        'ca-cert.pem': b64(inter.pem),
        'ca-key.pem': b64(await exportKeyPem(inter.key)),
        'root-cert.pem': b64(root.pem),
        'cert-chain.pem': b64(inter.pem + root.pem),
      },
    },
  });
  const m = await loadCa(core, { namespace: 'plug', trustDomain: TD });
  t.is(m.source.kind, 'plugin');
  t.is(m.chainPem.length, 2);
  await t.throwsAsync(core.readNamespacedSecret({ name: 'ambit-ca', namespace: 'plug' })); // not created when plugged in
  const issued = await new CertIssuer(m).issue((await makeCsr([id('shop', 'sleep')])).pem, id('shop', 'sleep'), 600);
  t.is(issued.certChain.length, 3);
  verifyChain(issued.certChain, root.pem);
  t.is(new NodeX509(issued.certChain[1]!).fingerprint256, new NodeX509(inter.pem).fingerprint256);
  // A leaf never outlives its issuer.
  const long = await new CertIssuer(m, { maxTtlSeconds: 10 * 365 * 86_400 }).issue((await makeCsr([id('shop', 'sleep')])).pem, id('shop', 'sleep'), 5 * 365 * 86_400);
  t.true(long.notAfter.getTime() <= inter.cert.notAfter.getTime());

  // Inconsistent plug-in material is rejected, not silently replaced.
  const stranger = await makeCa('CN=stranger');
  await core.createNamespacedSecret({
    namespace: 'plug',
    body: { metadata: { name: 'bad-cacerts', namespace: 'plug' }, data: { 'ca-cert.pem': b64(inter.pem), 'ca-key.pem': b64(await exportKeyPem(stranger.key)), 'root-cert.pem': b64(root.pem) } },
  });
  await t.throwsAsync(loadCa(core, { namespace: 'plug', trustDomain: TD, pluginSecretName: 'bad-cacerts' }), { message: /does not match/ });
  await core.replaceNamespacedSecret({
    name: 'bad-cacerts', namespace: 'plug',
    body: { metadata: { name: 'bad-cacerts', namespace: 'plug' }, data: { 'ca-cert.pem': b64(inter.pem), 'ca-key.pem': b64(await exportKeyPem(inter.key)), 'root-cert.pem': b64(stranger.pem) } },
  });
  await t.throwsAsync(loadCa(core, { namespace: 'plug', trustDomain: TD, pluginSecretName: 'bad-cacerts' }), { message: /not signed by/ });
});

// ---------------------------------------------------------------- authz unit

test('authorize: node from the bound pod must agree with the token claim; unbound ztunnel tokens are refused', (t) => {
  const base = { trustDomain: TD, podsOnNode, requested: id('shop', 'echo'), impersonated: id('shop', 'echo') };
  const zt = { namespace: NS, serviceAccount: 'ztunnel' };
  t.true(authorize({ ...base, caller: { ...zt, podName: 'ztunnel-a', nodeName: 'node1' } }).allowed);
  t.false(authorize({ ...base, caller: { ...zt, podName: 'ztunnel-a', nodeName: 'node2' } }).allowed);
  t.false(authorize({ ...base, caller: { ...zt } }).allowed);
  const liar = authorize({ ...base, caller: { ...zt, podName: 'ztunnel-a', podUid: 'u-zt-a', nodeName: 'node2' }, nodeOfPod });
  t.false(liar.allowed);
  t.false(authorize({ ...base, caller: { ...zt, podName: 'ztunnel-a', podUid: 'stale', nodeName: 'node1' }, nodeOfPod }).allowed);
  // A custom ztunnel service account.
  const custom = { ...base, ztunnelServiceAccount: { namespace: 'ambit', name: 'zt' } };
  t.false(authorize({ ...custom, caller: { ...zt, podName: 'ztunnel-a', nodeName: 'node1' } }).allowed);
  t.true(authorize({ ...custom, caller: { namespace: 'ambit', serviceAccount: 'zt', podName: 'z', nodeName: 'node1' } }).allowed);
});
