// The CA's signing material: the self-signed root kept in the Secret `ambit-ca` (created on first start, reused
// afterwards so a restart never changes the trust root), or a plug-in intermediate from a user Secret (`cacerts`),
// laid out like Istio's `istio-ca-secret` / `cacerts`: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem.
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import selfsigned from 'selfsigned';
import { splitPemChain, x509, type CryptoKey } from '../../ztunnel/identity/x509.js';

export const ROOT_SECRET_NAME = 'ambit-ca';
export const PLUGIN_SECRET_NAME = 'cacerts';
export const CA_CERT_KEY = 'ca-cert.pem';
export const CA_KEY_KEY = 'ca-key.pem';
export const ROOT_CERT_KEY = 'root-cert.pem';
export const CERT_CHAIN_KEY = 'cert-chain.pem';

/** Everything the issuer needs: the key that signs leaves, its certificate, and the chain above it. */
export interface CaMaterial {
  /** Certificate of the signing key (the root itself, or the plug-in intermediate). */
  signingCert: x509.X509Certificate;
  signingKey: CryptoKey;
  /** WebCrypto signature algorithm matching signingKey (ECDSA with the curve's hash, or RSASSA-PKCS1-v1_5/SHA-256). */
  signingAlgorithm: webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams;
  /** PEM certificates from signingCert up to and including the root; appended after each leaf. */
  chainPem: string[];
  /** The trust root (last of chainPem). */
  root: x509.X509Certificate;
  rootPem: string;
  /** Where the material came from. */
  source: { kind: 'created' | 'loaded' | 'plugin'; namespace: string; name: string };
}

export interface LoadCaOptions {
  /** The controller's namespace (where `ambit-ca` lives, and the plug-in Secret is looked for). */
  namespace: string;
  /** Written into the generated root's subject (O=<trustDomain>). */
  trustDomain: string;
  /** Default `ambit-ca`. */
  rootSecretName?: string;
  /** User Secret holding a plug-in intermediate (Istio's `cacerts`). Default `cacerts`; `false` never looks for one.
   *  When the Secret exists it is used (and must be valid); when it does not, the self-signed root is used. */
  pluginSecretName?: string | false;
  /** Lifetime of a generated root. Default 10 years. */
  rootValidityDays?: number;
  log?: (msg: string) => void;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

/** Secret data (already base64-decoded) of a fresh self-signed ECDSA P-256 root. */
export async function generateRootSecretData(trustDomain: string, validityDays = 3650): Promise<Record<string, string>> {
  const now = Date.now();
  const generated = await selfsigned.generate(
    [
      { name: 'organizationName', value: trustDomain },
      { name: 'commonName', value: 'ambit root CA' },
    ],
    {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(now - 60_000),
      notAfterDate: new Date(now + validityDays * 86_400_000),
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      ],
    },
  );
  const cert = generated.cert.trim() + '\n';
  // Self-signed: the root is the signing cert, the whole chain and the trust root.
  return { [CA_CERT_KEY]: cert, [CA_KEY_KEY]: generated.private, [ROOT_CERT_KEY]: cert, [CERT_CHAIN_KEY]: cert };
}

function secretStrings(secret: V1Secret): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = unb64(v);
  for (const [k, v] of Object.entries(secret.stringData ?? {})) out[k] ??= v;
  return out;
}

function parseCert(pem: string, what: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch (e) {
    throw new Error(`${what} is not a PEM certificate: ${(e as Error).message}`);
  }
}

const sameCert = (a: x509.X509Certificate, b: x509.X509Certificate): boolean =>
  Buffer.from(a.rawData).equals(Buffer.from(b.rawData));

async function importSigningKey(
  keyPem: string,
  cert: x509.X509Certificate,
  what: string,
): Promise<{ key: CryptoKey; algorithm: CaMaterial['signingAlgorithm'] }> {
  let nodeKey;
  try {
    nodeKey = createPrivateKey(keyPem); // PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 RSA
  } catch (e) {
    throw new Error(`${what}: ${CA_KEY_KEY} is not an unencrypted PEM private key: ${(e as Error).message}`);
  }
  const spki = createPublicKey(nodeKey).export({ type: 'spki', format: 'der' });
  if (!spki.equals(Buffer.from(cert.publicKey.rawData))) throw new Error(`${what}: ${CA_KEY_KEY} does not match ${CA_CERT_KEY}`);
  const pkcs8 = nodeKey.export({ type: 'pkcs8', format: 'der' });
  if (nodeKey.asymmetricKeyType === 'ec') {
    const curve = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }[nodeKey.asymmetricKeyDetails?.namedCurve ?? ''];
    if (!curve) throw new Error(`${what}: unsupported EC curve ${nodeKey.asymmetricKeyDetails?.namedCurve}`);
    const hash = { 'P-256': 'SHA-256', 'P-384': 'SHA-384', 'P-521': 'SHA-512' }[curve]!;
    const key = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: curve }, false, ['sign']);
    return { key, algorithm: { name: 'ECDSA', hash } };
  }
  if (nodeKey.asymmetricKeyType === 'rsa') {
    const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { key: await webcrypto.subtle.importKey('pkcs8', pkcs8, algorithm, false, ['sign']), algorithm };
  }
  throw new Error(`${what}: unsupported key type ${nodeKey.asymmetricKeyType}`);
}

/**
 * Validate Secret data (decoded strings) and turn it into signing material. The chain is ca-cert, then the
 * certificates of cert-chain.pem (ca-cert itself skipped when repeated there), then root-cert.pem unless already
 * last; every link must verify and the chain must end in the self-signed root.
 */
export async function caMaterialFromData(
  data: Record<string, string>,
  source: CaMaterial['source'],
): Promise<CaMaterial> {
  const what = `Secret ${source.namespace}/${source.name}`;
  for (const k of [CA_CERT_KEY, CA_KEY_KEY]) if (!data[k]?.trim()) throw new Error(`${what}: missing ${k}`);
  const signingCert = parseCert(splitPemChain(data[CA_CERT_KEY]!)[0] ?? '', `${what}: ${CA_CERT_KEY}`);
  const bc = signingCert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new Error(`${what}: ${CA_CERT_KEY} is not a CA certificate (basicConstraints cA is not set)`);
  const now = new Date();
  if (signingCert.notAfter <= now || signingCert.notBefore > now) {
    throw new Error(`${what}: ${CA_CERT_KEY} is not valid now (${signingCert.notBefore.toISOString()} .. ${signingCert.notAfter.toISOString()})`);
  }
  const { key, algorithm } = await importSigningKey(data[CA_KEY_KEY]!, signingCert, what);

  const chain = [signingCert];
  for (const [i, pem] of splitPemChain(data[CERT_CHAIN_KEY] ?? '').entries()) {
    const c = parseCert(pem, `${what}: ${CERT_CHAIN_KEY} #${i}`);
    if (!chain.some((x) => sameCert(x, c))) chain.push(c);
  }
  const rootPems = splitPemChain(data[ROOT_CERT_KEY] ?? '');
  let root: x509.X509Certificate;
  if (rootPems.length > 0) {
    root = parseCert(rootPems[0]!, `${what}: ${ROOT_CERT_KEY}`);
    if (!sameCert(chain[chain.length - 1]!, root)) chain.push(root);
  } else {
    root = chain[chain.length - 1]!; // Istio's istio-ca-secret leaves root-cert.pem empty when self-signed
  }
  if (!(await root.isSelfSigned())) throw new Error(`${what}: the root certificate (${root.subject}) is not self-signed`);
  for (let i = 0; i + 1 < chain.length; i++) {
    const ok = await chain[i]!.verify({ publicKey: chain[i + 1]!, signatureOnly: true }).catch(() => false);
    if (!ok) throw new Error(`${what}: ${chain[i]!.subject || '(empty subject)'} is not signed by ${chain[i + 1]!.subject}`);
  }
  const chainPem = chain.map((c) => c.toString('pem').trim() + '\n');
  return { signingCert, signingKey: key, signingAlgorithm: algorithm, chainPem, root, rootPem: chainPem[chainPem.length - 1]!, source };
}

const statusOf = (e: unknown): number | undefined => {
  const x = e as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } };
  const c = x?.code ?? x?.statusCode ?? x?.response?.statusCode;
  return typeof c === 'number' ? c : undefined;
};

async function readSecret(core: CoreV1Api, namespace: string, name: string): Promise<V1Secret | undefined> {
  try {
    return await core.readNamespacedSecret({ name, namespace });
  } catch (e) {
    if (statusOf(e) === 404) return undefined;
    throw new Error(`reading Secret ${namespace}/${name}: ${(e as Error).message}`);
  }
}

/**
 * Load the CA: the plug-in Secret when it exists, otherwise `ambit-ca`, creating it with a new self-signed root the
 * first time. Two controllers racing to create it both end up with the one that won (409 -> read again).
 */
export async function loadCa(core: CoreV1Api, opts: LoadCaOptions): Promise<CaMaterial> {
  const { namespace } = opts;
  const log = opts.log ?? (() => {});
  const pluginName = opts.pluginSecretName === undefined ? PLUGIN_SECRET_NAME : opts.pluginSecretName;
  if (pluginName) {
    const plugin = await readSecret(core, namespace, pluginName);
    if (plugin) {
      const m = await caMaterialFromData(secretStrings(plugin), { kind: 'plugin', namespace, name: pluginName });
      log(`CA: using plug-in intermediate ${m.signingCert.subject} from Secret ${namespace}/${pluginName} (chain of ${m.chainPem.length})`);
      return m;
    }
  }
  const name = opts.rootSecretName ?? ROOT_SECRET_NAME;
  const existing = await readSecret(core, namespace, name);
  if (existing) {
    const m = await caMaterialFromData(secretStrings(existing), { kind: 'loaded', namespace, name });
    log(`CA: loaded root ${m.root.subject} (serial ${m.root.serialNumber}) from Secret ${namespace}/${name}`);
    return m;
  }
  const data = await generateRootSecretData(opts.trustDomain, opts.rootValidityDays);
  const body: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'istio.io/ca-root',
    metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'ambit-controller' } },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
  };
  try {
    await core.createNamespacedSecret({ namespace, body });
  } catch (e) {
    if (statusOf(e) !== 409) throw new Error(`creating Secret ${namespace}/${name}: ${(e as Error).message}`);
    const won = await readSecret(core, namespace, name);
    if (!won) throw new Error(`Secret ${namespace}/${name} already exists but cannot be read`);
    log(`CA: Secret ${namespace}/${name} was created concurrently; using it`);
    return caMaterialFromData(secretStrings(won), { kind: 'loaded', namespace, name });
  }
  const m = await caMaterialFromData(data, { kind: 'created', namespace, name });
  log(`CA: created self-signed root ${m.root.subject} (serial ${m.root.serialNumber}) in Secret ${namespace}/${name}`);
  return m;
}
