// One place that loads @peculiar/x509 (it needs the reflect-metadata polyfill first) and the X.509 helpers we share.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';

export type CryptoKey = webcrypto.CryptoKey;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

export const EC_P256: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export function splitPemChain(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

export async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
}

export async function importEcKeyPem(pem: string): Promise<CryptoKey> {
  const b64 = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----|\s/g, '');
  if (!b64) throw new Error('no PKCS#8 "PRIVATE KEY" block found in the key PEM');
  return webcrypto.subtle.importKey('pkcs8', Buffer.from(b64, 'base64'), EC_P256, false, ['sign']);
}

/** The single URI SAN of a certificate, or undefined. */
export function uriSans(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return ext ? ext.names.items.filter((n) => n.type === 'url').map((n) => n.value) : [];
}

export interface LeafCertificateParams {
  /** Certificate of the signing key: the leaf's issuer name is its subject (as encoded there), its public key gives the authority key identifier. */
  issuer: x509.X509Certificate;
  signingKey: CryptoKey;
  /** Default ECDSA P-256 with SHA-256. */
  signingAlgorithm?: webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams;
  /** The key the leaf certifies. */
  publicKey: unknown;
  sans: x509.JsonGeneralNames;
  notBefore: Date;
  notAfter: Date;
  /** Default empty, as Istio's leaves: the SAN extension is then critical (RFC 5280 4.2.1.6). */
  subject?: string;
  /** Default server and client authentication. */
  extendedKeyUsages?: x509.ExtendedKeyUsageType[];
}

/** An end-entity certificate as the mesh CA issues them: random positive serial, not a CA, digital signature and key
 *  encipherment, the given SANs, and an authority key identifier. */
export async function createLeafCertificate(p: LeafCertificateParams): Promise<x509.X509Certificate> {
  const subject = p.subject ?? '';
  return x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'),
    subject,
    issuer: p.issuer.subjectName,
    notBefore: p.notBefore,
    notAfter: p.notAfter,
    publicKey: p.publicKey as never,
    signingKey: p.signingKey as never,
    signingAlgorithm: p.signingAlgorithm ?? EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension(p.extendedKeyUsages ?? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(p.sans, subject === ''),
      await x509.AuthorityKeyIdentifierExtension.create(p.issuer, false),
    ],
  });
}
