// A CA inside ztunnel for local mode: LOCAL_CA_CERT/LOCAL_CA_KEY, created when absent.
import { webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import selfsigned from 'selfsigned';
import type { CertificateProvider, IssuedCertificate } from './provider.js';
import { formatIdentity, type Identity } from './spiffe.js';
import { createLeafCertificate, EC_P256, exportKeyPem, importEcKeyPem, x509, type CryptoKey } from './x509.js';

export class LocalCa implements CertificateProvider {
  private constructor(
    private readonly root: x509.X509Certificate,
    private readonly rootPem: string,
    private readonly key: CryptoKey,
  ) {}

  /** Load the root from the two files, or create both (key 0600) when neither exists. */
  static async open(certPath: string, keyPath: string, trustDomain: string): Promise<LocalCa> {
    const haveCert = existsSync(certPath);
    const haveKey = existsSync(keyPath);
    if (haveCert !== haveKey) throw new Error(`LOCAL_CA_CERT and LOCAL_CA_KEY must both exist or both be absent (${certPath}: ${haveCert}, ${keyPath}: ${haveKey})`);
    if (!haveCert) {
      const now = Date.now();
      const generated = await selfsigned.generate([{ name: 'organizationName', value: trustDomain }], {
        keyType: 'ec',
        curve: 'P-256',
        algorithm: 'sha256',
        notBeforeDate: new Date(now - 60_000),
        notAfterDate: new Date(now + 10 * 365 * 86_400_000),
        extensions: [
          { name: 'basicConstraints', cA: true, critical: true },
          { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
        ],
      });
      mkdirSync(dirname(certPath), { recursive: true });
      mkdirSync(dirname(keyPath), { recursive: true });
      writeFileSync(keyPath, generated.private, { mode: 0o600 });
      writeFileSync(certPath, generated.cert);
    }
    const rootPem = readFileSync(certPath, 'utf8');
    let root: x509.X509Certificate;
    try {
      root = new x509.X509Certificate(rootPem);
    } catch (e) {
      throw new Error(`LOCAL_CA_CERT ${certPath} is not a PEM certificate: ${(e as Error).message}`);
    }
    const key = await importEcKeyPem(readFileSync(keyPath, 'utf8')).catch((e: Error) => {
      throw new Error(`LOCAL_CA_KEY ${keyPath} is not an unencrypted PKCS#8 ECDSA P-256 key: ${e.message}`);
    });
    return new LocalCa(root, rootPem.trim() + '\n', key);
  }

  async issue(identity: Identity, ttlSeconds: number): Promise<IssuedCertificate> {
    const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
    const now = Date.now();
    const leaf = await createLeafCertificate({
      issuer: this.root,
      signingKey: this.key,
      publicKey: keys.publicKey,
      sans: [{ type: 'url', value: formatIdentity(identity) }],
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + ttlSeconds * 1000),
    });
    return { chainPem: [leaf.toString('pem')], privateKeyPem: await exportKeyPem(keys.privateKey), rootsPem: [this.rootPem] };
  }
}
