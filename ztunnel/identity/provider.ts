import type { Identity } from './spiffe.js';

/** A certificate as issued: PEM leaf first, then intermediates; roots separately. */
export interface IssuedCertificate {
  chainPem: string[];
  privateKeyPem: string;
  rootsPem: string[];
}

/**
 * Where workload certificates come from: the local CA (LOCAL_CA_*) or the remote
 * CA client (Istio's CreateCertificate, ca-client.ts).
 */
export interface CertificateProvider {
  issue(identity: Identity, ttlSeconds: number): Promise<IssuedCertificate>;
  /** Release connections (the remote CA client's channel). */
  close?(): void;
}
