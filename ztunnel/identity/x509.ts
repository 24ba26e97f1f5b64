// One place that loads @peculiar/x509 (it needs the reflect-metadata polyfill first) and the X.509 helpers we share.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

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
