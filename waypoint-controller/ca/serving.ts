// The controller's own TLS certificate for 15012 (xDS and CA), from the mesh root, with the names ztunnels dial.
import { webcrypto } from 'node:crypto';
import { createLeafCertificate, EC_P256, exportKeyPem, x509 } from '../../ztunnel/identity/x509.js';
import type { CaMaterial } from './root.js';

export interface ServingNames {
  /** e.g. istiod.istio-system.svc, which Istio's ztunnel expects by default. */
  dnsNames: string[];
  ipAddresses?: string[];
  /** The controller's SPIFFE identity. */
  identity?: string;
}

export interface ServingCertificate {
  certChainPem: string;
  privateKeyPem: string;
  rootPem: string;
}

export async function issueServingCertificate(ca: CaMaterial, names: ServingNames, ttlSeconds = 365 * 86_400): Promise<ServingCertificate> {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const now = Date.now();
  const sans = [
    ...names.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...(names.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(names.identity ? [{ type: 'url' as const, value: names.identity }] : []),
  ];
  const cert = await createLeafCertificate({
    issuer: ca.signingCert,
    signingKey: ca.signingKey,
    signingAlgorithm: ca.signingAlgorithm,
    publicKey: keys.publicKey,
    sans,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(Math.min(now + ttlSeconds * 1000, ca.signingCert.notAfter.getTime())),
    extendedKeyUsages: [x509.ExtendedKeyUsage.serverAuth],
  });
  return {
    certChainPem: [cert.toString('pem').trim() + '\n', ...ca.chainPem.slice(0, -1)].join(''),
    privateKeyPem: await exportKeyPem(keys.privateKey),
    rootPem: ca.rootPem,
  };
}
