// ztunnel's remote CA client (Istio's CreateCertificate) against a fake CA: a grpc-js server in this process on
// 127.0.0.1, serving TLS with a certificate from a test root, signing CSRs through an intermediate.
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { IstioCertificateServiceDefinition, fromStruct, type IstioCertificateRequest, type IstioCertificateResponse, type MessageInit } from '../protos/index.js';
import { Ztunnel } from '../ztunnel/app.js';
import { loadConfig } from '../ztunnel/config/env.js';
import { CaClient, type CaClientOptions } from '../ztunnel/identity/ca-client.js';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { CertificateManager } from '../ztunnel/identity/manager.js';
import type { CertificateProvider } from '../ztunnel/identity/provider.js';
import { createLeafCertificate, EC_P256, exportKeyPem, importEcKeyPem, uriSans, x509, type CryptoKey } from '../ztunnel/identity/x509.js';

const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(join(tmpdir(), 'ambit-ca-client-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const ID = { trustDomain: 'cluster.local', namespace: 'ns1', serviceAccount: 'sa1' };
const ID_URI = 'spiffe://cluster.local/ns/ns1/sa/sa1';
const SERVER_NAME = 'istiod.istio-system.svc';

const serial = () => randomBytes(16).toString('hex').replace(/^[89a-f]/, '1');

interface Authority {
  cert: x509.X509Certificate;
  pem: string;
  key: CryptoKey;
}

/** A root made by LocalCa (files on disk, as ztunnel's CA_ROOT_CA would be). */
async function makeRoot(name: string): Promise<Authority & { certPath: string }> {
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  await LocalCa.open(certPath, keyPath, 'cluster.local');
  const pem = readFileSync(certPath, 'utf8');
  return { cert: new x509.X509Certificate(pem), pem, key: await importEcKeyPem(readFileSync(keyPath, 'utf8')), certPath };
}

async function makeIntermediate(root: Authority): Promise<Authority> {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'O=cluster.local, CN=intermediate',
    issuer: root.cert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    publicKey: keys.publicKey as never,
    signingKey: root.key as never,
    signingAlgorithm: EC_P256,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  return { cert, pem: cert.toString('pem') + '\n', key: keys.privateKey };
}

async function makeLeaf(issuer: Authority, publicKey: unknown, sans: x509.JsonGeneralNames, ttlSeconds: number, server = false): Promise<string> {
  const cert = await createLeafCertificate({
    issuer: issuer.cert,
    signingKey: issuer.key,
    publicKey,
    sans,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + ttlSeconds * 1000),
    subject: server ? 'CN=istiod' : '',
  });
  return cert.toString('pem') + '\n';
}

type Mode = 'ok' | 'otherIdentity' | 'otherRoot' | 'otherKey' | 'error';

interface Seen {
  authorization?: string;
  clusterid?: string;
  impersonated?: unknown;
  validity: number;
  csrSans: string[];
}

/** The fake CA: signs the CSR's key with the CSR's SAN through an intermediate, or misbehaves as `mode` says. */
class FakeCa {
  mode: Mode = 'ok';
  readonly seen: Seen[] = [];
  port = 0;
  private server?: grpc.Server;

  constructor(
    private readonly root: Authority,
    private readonly intermediate: Authority,
    private readonly foreign: Authority,
    private readonly serverCert: { cert: string; key: string },
  ) {}

  async start(port = 0): Promise<void> {
    const server = new grpc.Server();
    server.addService(IstioCertificateServiceDefinition as unknown as grpc.ServiceDefinition, {
      CreateCertificate: (call: grpc.ServerUnaryCall<IstioCertificateRequest, MessageInit<IstioCertificateResponse>>, cb: grpc.sendUnaryData<MessageInit<IstioCertificateResponse>>) => {
        void this.sign(call).then((r) => cb(null, r), (e: Error) => cb({ code: grpc.status.INTERNAL, details: e.message }));
      },
    });
    const creds = grpc.ServerCredentials.createSsl(Buffer.from(this.root.pem), [{ cert_chain: Buffer.from(this.serverCert.cert + this.intermediate.pem), private_key: Buffer.from(this.serverCert.key) }], false);
    this.port = await new Promise<number>((res, rej) => server.bindAsync(`127.0.0.1:${port}`, creds, (e, p) => (e ? rej(e) : res(p))));
    this.server = server;
  }

  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }

  private async sign(call: grpc.ServerUnaryCall<IstioCertificateRequest, unknown>): Promise<MessageInit<IstioCertificateResponse>> {
    const req = call.request;
    const csr = new x509.Pkcs10CertificateRequest(req.csr);
    if (!(await csr.verify())) throw new Error('bad CSR signature');
    const sanExt = csr.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension);
    const csrSans = sanExt?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
    this.seen.push({
      authorization: call.metadata.get('authorization')[0] as string | undefined,
      clusterid: call.metadata.get('clusterid')[0] as string | undefined,
      impersonated: req.metadata ? fromStruct(req.metadata).ImpersonatedIdentity : undefined,
      validity: Number(req.validityDuration),
      csrSans,
    });
    if (this.mode === 'error') throw new Error('CA is sulking');
    const ttl = Number(req.validityDuration);
    let key: unknown = csr.publicKey;
    if (this.mode === 'otherKey') key = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])).publicKey;
    const sans = this.mode === 'otherIdentity' ? [{ type: 'url' as const, value: 'spiffe://cluster.local/ns/other/sa/other' }] : csrSans.map((value) => ({ type: 'url' as const, value }));
    if (this.mode === 'otherRoot') return { certChain: [await makeLeaf(this.foreign, key, sans, ttl), this.foreign.pem] };
    return { certChain: [await makeLeaf(this.intermediate, key, sans, ttl), this.intermediate.pem, this.root.pem] };
  }
}

async function setup() {
  const root = await makeRoot(`root-${serial().slice(0, 8)}`);
  const foreign = await makeRoot(`foreign-${serial().slice(0, 8)}`);
  const intermediate = await makeIntermediate(root);
  const serverKeys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  // The controller's serving certificate: from the same root (through the intermediate), DNS name of the Service.
  const serverCert = { cert: await makeLeaf(intermediate, serverKeys.publicKey, [{ type: 'dns', value: SERVER_NAME }], 3600, true), key: await exportKeyPem(serverKeys.privateKey) };
  const ca = new FakeCa(root, intermediate, foreign, serverCert);
  await ca.start();
  const tokenPath = join(dir, `token-${serial().slice(0, 8)}`);
  writeFileSync(tokenPath, 'token-one\n');
  const opts = (o: Partial<CaClientOptions> = {}): CaClientOptions => ({
    address: `127.0.0.1:${ca.port}`,
    rootCertPath: root.certPath,
    serverName: SERVER_NAME,
    tokenPath,
    clusterId: 'Kubernetes',
    timeoutMs: 3000,
    ...o,
  });
  return { root, intermediate, ca, tokenPath, opts };
}

test('issue: CSR with the identity as only SAN, ImpersonatedIdentity, bearer token and clusterid; the chain is verified and returned without the root', async (t) => {
  const { root, intermediate, ca, opts } = await setup();
  const client = new CaClient(opts(), log);
  try {
    const issued = await client.issue(ID, 600);
    t.is(issued.chainPem.length, 2, 'leaf and intermediate, root left out');
    const leaf = new x509.X509Certificate(issued.chainPem[0]!);
    t.deepEqual(uriSans(leaf), [ID_URI]);
    t.is(issued.chainPem[1]!.trim(), intermediate.pem.trim());
    t.deepEqual(issued.rootsPem.map((p) => p.trim()), [root.pem.trim()]);
    t.true(await leaf.verify({ publicKey: intermediate.cert.publicKey, signatureOnly: true }));
    // The private key is the one in the leaf.
    const { createPrivateKey, X509Certificate } = await import('node:crypto');
    t.true(new X509Certificate(issued.chainPem[0]!).checkPrivateKey(createPrivateKey(issued.privateKeyPem)));
    t.true(Math.abs(leaf.notAfter.getTime() - Date.now() - 600_000) < 5000);
    t.is(ca.seen.length, 1);
    t.deepEqual(ca.seen[0], { authorization: 'Bearer token-one', clusterid: 'Kubernetes', impersonated: ID_URI, validity: 600, csrSans: [ID_URI] });
  } finally {
    client.close();
    ca.stop();
  }
});

test('the token file is re-read on each call', async (t) => {
  const { ca, tokenPath, opts } = await setup();
  const client = new CaClient(opts(), log);
  try {
    await client.issue(ID, 600);
    writeFileSync(tokenPath, 'token-two');
    await client.issue(ID, 600);
    t.deepEqual(ca.seen.map((s) => s.authorization), ['Bearer token-one', 'Bearer token-two']);
    rmSync(tokenPath);
    await t.throwsAsync(client.issue(ID, 600), { message: /cannot read the CA auth token/ });
    t.is(ca.seen.length, 2, 'no unauthenticated request is sent');
  } finally {
    client.close();
    ca.stop();
  }
});

test('a leaf for another identity, a chain to another root, a leaf with a key that is not ours are rejected', async (t) => {
  const { ca, opts } = await setup();
  const client = new CaClient(opts(), log);
  try {
    ca.mode = 'otherIdentity';
    await t.throwsAsync(client.issue(ID, 600), { message: /certificate for \["spiffe:\/\/cluster.local\/ns\/other\/sa\/other"\] instead of spiffe:\/\/cluster.local\/ns\/ns1\/sa\/sa1/ });
    ca.mode = 'otherRoot';
    await t.throwsAsync(client.issue(ID, 600), { message: /does not chain to the configured root/ });
    ca.mode = 'otherKey';
    await t.throwsAsync(client.issue(ID, 600), { message: /public key is not the one in our CSR/ });
    ca.mode = 'error';
    await t.throwsAsync(client.issue(ID, 600), { message: /CreateCertificate for spiffe:\/\/cluster.local\/ns\/ns1\/sa\/sa1 failed: INTERNAL: CA is sulking/ });
    ca.mode = 'ok';
    await t.notThrowsAsync(client.issue(ID, 600));
  } finally {
    client.close();
    ca.stop();
  }
});

test('TLS: the server must present the expected name from our root; plaintext does not reach a TLS server', async (t) => {
  const { ca, opts } = await setup();
  const other = await makeRoot(`other-${serial().slice(0, 8)}`);
  const clients = [
    new CaClient(opts({ serverName: undefined }), log), // expects 127.0.0.1, the certificate names istiod.istio-system.svc
    new CaClient(opts({ serverName: 'ambit-controller.ambit-system.svc' }), log),
    new CaClient(opts({ rootCertPath: other.certPath }), log), // server certificate not from our root
    new CaClient(opts({ plaintext: true }), log),
  ];
  try {
    for (const c of clients) await t.throwsAsync(c.issue(ID, 600), { message: /UNAVAILABLE/ });
    t.is(ca.seen.length, 0);
  } finally {
    for (const c of clients) c.close();
    ca.stop();
  }
});

test('a missing root file is a start-up error', (t) => {
  t.throws(() => new CaClient({ address: '127.0.0.1:1', rootCertPath: join(dir, 'nope.pem'), clusterId: 'K' }, log), { message: /cannot read the CA root certificate file/ });
});

test('CA down: the manager keeps the old certificate until it expires and retries with backoff, then recovers', async (t) => {
  const { ca, opts } = await setup();
  const client = new CaClient(opts(), log);
  const attempts: { at: number; ok: boolean }[] = [];
  const provider: CertificateProvider = {
    issue: async (id, ttl) => {
      try {
        const r = await client.issue(id, ttl);
        attempts.push({ at: Date.now(), ok: true });
        return r;
      } catch (e) {
        attempts.push({ at: Date.now(), ok: false });
        throw e;
      }
    },
  };
  // 8 s lifetime (X.509 keeps whole seconds: 7 to 8 s left): renewal after 3.5 to 4 s, when the CA is down.
  const m = new CertificateManager(provider, 8, log);
  const keepAlive = setInterval(() => {}, 100); // the manager's timers are unref'd
  try {
    const first = await m.get(ID);
    const t0 = Date.now();
    const expires = first.notAfter.getTime();
    t.true(expires - t0 > 6500, `lifetime left ${expires - t0}`);
    ca.stop();
    // Renewal fails at R (3.5..4 s), retries 0.5 s and then 1 s later: three failures by 5.5 s, before the expiry (>= 7 s).
    await sleep(t0 + 5800 - Date.now());
    t.true(Date.now() < expires);
    t.is((await m.get(ID)).serial, first.serial, 'the old certificate keeps serving');
    const failures = attempts.filter((a) => !a.ok).map((a) => a.at);
    t.true(failures.length >= 3, `failed attempts: ${failures.length}`);
    t.true(failures[0]! - t0 >= 3000, `first renewal after ${failures[0]! - t0} ms`);
    const gaps = failures.slice(1).map((x, i) => x - failures[i]!);
    t.true(gaps[0]! >= 400 && gaps[0]! < 900, `first gap ${gaps[0]}`);
    t.true(gaps[1]! >= 900 && gaps[1]! < 1500, `second gap ${gaps[1]}`);
    const dump = m.dump() as { identity: string; state: string; certChain: { serialNumber: string; validFrom: string; expirationTime: string }[] }[];
    t.is(dump[0]!.identity, ID_URI);
    t.is(dump[0]!.state, 'Available');
    t.is(dump[0]!.certChain[0]!.serialNumber, first.serial);
    t.truthy(Date.parse(dump[0]!.certChain[0]!.expirationTime));
    // The CA comes back on the same port: a following retry (the next is 2 s after the last) succeeds with a new certificate.
    await ca.start(Number(opts().address.split(':')[1]));
    const renewed = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no renewal after the CA came back')), 10_000);
      m.once('issued', (c) => (clearTimeout(timer), resolve(c.serial)));
    });
    t.not(renewed, first.serial);
    t.is((await m.get(ID)).serial, renewed);
  } finally {
    clearInterval(keepAlive);
    m.close();
    client.close();
    ca.stop();
  }
});

test('config: CA_ADDRESS defaults to the xDS address over TLS; http:// is explicit plaintext; Istio names and defaults', (t) => {
  const a = loadConfig({ XDS_ADDRESS: 'istiod.istio-system.svc:15012' });
  t.is(a.caAddress, 'istiod.istio-system.svc:15012');
  t.false(a.caPlaintext);
  t.is(a.caRootCertPath, './var/run/secrets/istio/root-cert.pem');
  t.is(a.caAuthTokenPath, undefined);
  const b = loadConfig({ XDS_ADDRESS: 'http://10.0.0.1:15010', CA_ADDRESS: 'http://127.0.0.1:15012', XDS_ROOT_CA: '/x.pem', AUTH_TOKEN: '/tok', CA_HEADER_X_FOO: 'bar', ALT_CA_HOSTNAME: SERVER_NAME });
  t.is(b.caAddress, '127.0.0.1:15012');
  t.true(b.caPlaintext);
  t.is(b.caRootCertPath, '/x.pem');
  t.is(b.caAuthTokenPath, '/tok');
  t.is(b.xdsAuthTokenPath, '/tok');
  t.deepEqual(b.caHeaders, { X_FOO: 'bar' });
  t.is(b.caServerName, SERVER_NAME);
  const c = loadConfig({ XDS_ADDRESS: 'http://10.0.0.1:15010', CA_ROOT_CA: '/ca.pem', XDS_ROOT_CA: '/x.pem' });
  t.is(c.caAddress, '10.0.0.1:15010');
  t.false(c.caPlaintext, 'plaintext xDS does not make the CA plaintext');
  t.is(c.caRootCertPath, '/ca.pem');
  t.throws(() => loadConfig({ CA_ADDRESS: 'nonsense' }), { message: /CA_ADDRESS must be host:port/ });
});

test('start-up: no CA configured, or only one LOCAL_CA_* file, is a clear error', async (t) => {
  const base = { LOCAL_XDS_PATH: join(dir, 'none.yaml'), PROXY_MODE: 'dedicated', PROXY_WORKLOAD_INFO: 'ns/name/sa' };
  await t.throwsAsync(new Ztunnel(loadConfig(base), log).start(), { message: /no certificate authority: set CA_ADDRESS \(or XDS_ADDRESS\).*LOCAL_CA_CERT and LOCAL_CA_KEY/ });
  await t.throwsAsync(new Ztunnel(loadConfig({ ...base, LOCAL_CA_CERT: join(dir, 'c.pem') }), log).start(), { message: /LOCAL_CA_CERT and LOCAL_CA_KEY must be set together/ });
  await t.throwsAsync(new Ztunnel(loadConfig({ ...base, CA_ADDRESS: '127.0.0.1:1', CA_ROOT_CA: join(dir, 'missing.pem') }), log).start(), { message: /cannot read the CA root certificate file/ });
});
