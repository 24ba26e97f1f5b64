import type { Identity } from './spiffe.js';

/** A certificate as issued: PEM leaf first, then intermediates; roots separately. */
export interface IssuedCertificate {
  chainPem: string[];
  privateKeyPem: string;
  rootsPem: string[];
}

/**
 * Where workload certificates come from. The local CA implements it now; the
 * remote CA client (Istio's CreateCertificate) will implement the same.
 */
export interface CertificateProvider {
  issue(identity: Identity, ttlSeconds: number): Promise<IssuedCertificate>;
}
