// Signs workload CSRs: ECDSA P-256 leaf, empty subject, one critical SPIFFE URI SAN, chain leaf-first ending in the root.
import { parseIdentity } from '../../ztunnel/identity/spiffe.js';
import { webcrypto } from 'node:crypto';
import { createLeafCertificate, EC_P256, exportKeyPem, x509 } from '../../ztunnel/identity/x509.js';
import type { CaMaterial } from './root.js';

/** The request itself is unacceptable (maps to INVALID_ARGUMENT). */
export class CsrError extends Error {
  override name = 'CsrError';
}

export interface ParsedCsr {
  csr: x509.Pkcs10CertificateRequest;
  /** URI SANs found in the CSR's extension request (in order). */
  uriSans: string[];
}

/** Parse a PEM PKCS#10 request, check its self-signature and that its key is ECDSA P-256. Throws CsrError. */
export async function parseCsr(pem: string): Promise<ParsedCsr> {
  if (!/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(pem ?? '')) throw new CsrError('csr is not a PEM "CERTIFICATE REQUEST"');
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem.replace(/NEW CERTIFICATE REQUEST/g, 'CERTIFICATE REQUEST'));
  } catch (e) {
    throw new CsrError(`csr does not parse: ${(e as Error).message}`);
  }
  const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    throw new CsrError(`csr key must be ECDSA P-256, got ${alg.name ?? '?'}${alg.namedCurve ? ` ${alg.namedCurve}` : ''}`);
  }
  const valid = await csr.verify().catch(() => false);
  if (!valid) throw new CsrError('csr signature does not verify');
  const uriSans: string[] = [];
  for (const ext of csr.extensions) {
    if (ext instanceof x509.SubjectAlternativeNameExtension) {
      for (const n of ext.names.items) if (n.type === 'url') uriSans.push(n.value);
    }
  }
  return { csr, uriSans };
}

export interface IssuerOptions {
  /** Longest lifetime handed out; longer requests are capped. Default 24 h. */
  maxTtlSeconds?: number;
  /** Lifetime when the request says 0 (or nothing). Default maxTtlSeconds. */
  defaultTtlSeconds?: number;
  /** notBefore is set this far in the past to absorb clock skew. Default 60 s. */
  backdateSeconds?: number;
  now?: () => number;
}

export interface IssuedCertificate {
  /** PEM: leaf, intermediate(s), root. */
  certChain: string[];
  identity: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** Effective lifetime in seconds of a request: requested (<= 0 means default) capped at the maximum. */
export function effectiveTtlSeconds(requested: number | bigint | undefined, opts: IssuerOptions = {}): number {
  const max = opts.maxTtlSeconds ?? 86_400;
  const def = Math.min(opts.defaultTtlSeconds ?? max, max);
  const r = Number(requested ?? 0);
  return !Number.isFinite(r) || r <= 0 ? def : Math.min(r, max);
}

export class CertIssuer {
  constructor(
    readonly ca: CaMaterial,
    private readonly opts: IssuerOptions = {},
  ) {}

  get rootPem(): string {
    return this.ca.rootPem;
  }

  get maxTtlSeconds(): number {
    return this.opts.maxTtlSeconds ?? 86_400;
  }

  /**
   * Issue a leaf for `identity` (spiffe://<td>/ns/<ns>/sa/<sa>) over the CSR's key. The CSR's URI SANs must be
   * exactly that identity. The leaf never outlives the signing certificate.
   */
  async issue(csrIn: string | ParsedCsr, identity: string, requestedTtlSeconds?: number | bigint): Promise<IssuedCertificate> {
    try {
      parseIdentity(identity);
    } catch (e) {
      throw new CsrError((e as Error).message);
    }
    const { csr, uriSans } = typeof csrIn === 'string' ? await parseCsr(csrIn) : csrIn;
    if (uriSans.length !== 1 || uriSans[0] !== identity) {
      throw new CsrError(`csr URI SANs ${JSON.stringify(uriSans)} do not equal the identity being issued ${identity}`);
    }
    return this.issued(await this.sign(csr.publicKey, identity, requestedTtlSeconds), identity);
  }

  /**
   * A key pair and its leaf for `identity`, for a proxy the controller configures itself (a waypoint's Envoy gets its
   * certificate over SDS from us, as Istio's gets it from pilot-agent). The private key never leaves this process
   * except to the authenticated proxy.
   */
  async issueKeyPair(identity: string, requestedTtlSeconds?: number): Promise<IssuedCertificate & { privateKeyPem: string }> {
    parseIdentity(identity);
    const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
    const leaf = await this.sign(keys.publicKey, identity, requestedTtlSeconds);
    return { ...this.issued(leaf, identity), privateKeyPem: await exportKeyPem(keys.privateKey) };
  }

  private issued(leaf: x509.X509Certificate, identity: string): IssuedCertificate {
    return {
      certChain: [leaf.toString('pem').trim() + '\n', ...this.ca.chainPem],
      identity,
      serial: leaf.serialNumber,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
    };
  }

  /** `publicKey`: a WebCrypto key or a CSR's public key. */
  private sign(publicKey: unknown, identity: string, requestedTtlSeconds: number | bigint | undefined) {
    const now = (this.opts.now ?? Date.now)();
    const ttl = effectiveTtlSeconds(requestedTtlSeconds, this.opts);
    return createLeafCertificate({
      issuer: this.ca.signingCert,
      signingKey: this.ca.signingKey,
      signingAlgorithm: this.ca.signingAlgorithm,
      publicKey,
      sans: [{ type: 'url', value: identity }],
      notBefore: new Date(now - (this.opts.backdateSeconds ?? 60) * 1000),
      notAfter: new Date(Math.min(now + ttl * 1000, this.ca.signingCert.notAfter.getTime())),
    });
  }
}
