// Workload certificates from a remote CA speaking Istio's CA API (istio.v1.auth.IstioCertificateService/CreateCertificate),
// as Istio's ztunnel does: a fresh ECDSA P-256 key and a PKCS#10 CSR per certificate, the identity as the only URI SAN,
// `ImpersonatedIdentity` metadata (always, also for ztunnel's own pods), a bearer token re-read on every call and the
// `clusterid` header. The answer is checked before use: the leaf carries exactly the requested identity and our public
// key, and the chain verifies (signatures and validity) up to one of the configured roots.
//
// Transport: TLS verified with the configured root file (the same file is the trust anchor for returned chains).
// The server's name is checked as TLS clients do (DNS or IP SAN) against ALT_CA_HOSTNAME when set, else against the
// host of CA_ADDRESS, exactly like Istio's ztunnel: the controller's serving certificate (issued from the same root)
// must carry the name ztunnels dial, e.g. `istiod.istio-system.svc`; when ztunnels dial an IP, either the certificate
// has that IP SAN or ALT_CA_HOSTNAME names the DNS SAN to expect. Plaintext only when explicitly asked for (tests).
import { X509Certificate, createPublicKey, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { IstioCertificateServiceDefinition, toStruct, type IstioCertificateRequest, type IstioCertificateResponse, type MessageInit } from '../../protos/index.js';
import type { CertificateProvider, IssuedCertificate } from './provider.js';
import { formatIdentity, type Identity } from './spiffe.js';
import { EC_P256, exportKeyPem, splitPemChain, uriSans, x509 } from './x509.js';
import { tlsChannel } from '../net/grpc-tls.js';

export interface CaClientOptions {
  /** `host:port` of the CA. */
  address: string;
  /** File with the PEM root certificate(s): verifies the CA's TLS certificate and anchors every returned chain. Re-read on each call. */
  rootCertPath: string;
  /** Name to verify in the CA's serving certificate (and to send as SNI); default the host of `address` (Istio: ALT_CA_HOSTNAME). */
  serverName?: string;
  /** Plaintext gRPC: only for tests and debugging, never the default. */
  plaintext?: boolean;
  /** File with the bearer token (Istio: AUTH_TOKEN), re-read on every call; no authorization header when unset. */
  tokenPath?: string;
  clusterId: string;
  /** Extra request headers (Istio: CA_HEADER_<name>). */
  headers?: Record<string, string>;
  /** Deadline of one CreateCertificate call. */
  timeoutMs?: number;
}

type CaGrpcClient = grpc.Client & {
  createCertificate(
    req: MessageInit<IstioCertificateRequest>,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: IstioCertificateResponse) => void,
  ): grpc.ClientUnaryCall;
};

const CaClientCtor = grpc.makeGenericClientConstructor(IstioCertificateServiceDefinition as unknown as grpc.ServiceDefinition, 'IstioCertificateService');

export class CaClient implements CertificateProvider {
  private client?: CaGrpcClient;
  private rootsPemText?: string;
  private roots: string[] = [];
  private closed = false;

  constructor(
    private readonly opts: CaClientOptions,
    private readonly log: Logger,
  ) {
    if (opts.plaintext) log.warn({ address: opts.address }, 'CA client uses plaintext gRPC: certificates and tokens travel unencrypted');
    this.loadRoots(); // fail at start-up when the root file is missing or empty
  }

  close(): void {
    this.closed = true;
    this.client?.close();
    this.client = undefined;
  }

  async issue(identity: Identity, ttlSeconds: number): Promise<IssuedCertificate> {
    if (this.closed) throw new Error('CA client is closed');
    const id = formatIdentity(identity);
    const roots = this.loadRoots();
    const client = this.client!;

    const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: EC_P256,
      // Empty subject (as Istio), so the SAN is critical.
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], true)],
    });
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));

    const md = this.metadata();
    const req: MessageInit<IstioCertificateRequest> = {
      csr: csr.toString('pem'),
      validityDuration: ttlSeconds,
      metadata: toStruct({ ImpersonatedIdentity: id }),
    };
    const res = await new Promise<IstioCertificateResponse>((resolve, reject) => {
      client.createCertificate(req, md, { deadline: Date.now() + (this.opts.timeoutMs ?? 10_000) }, (err, r) => {
        if (err) reject(new Error(`CA ${this.opts.address}: CreateCertificate for ${id} failed: ${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
        else resolve(r!);
      });
    });
    let chainPem: string[];
    try {
      chainPem = verifyIssuedChain(res.certChain ?? [], roots, id, spki);
    } catch (e) {
      this.log.error({ identity: id, err: (e as Error).message }, 'CA answer rejected');
      throw e;
    }
    this.log.debug({ identity: id, chainLength: chainPem.length }, 'CA issued a certificate');
    return { chainPem, privateKeyPem: await exportKeyPem(keys.privateKey), rootsPem: roots };
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(this.opts.headers ?? {})) md.set(k.toLowerCase(), v);
    md.set('clusterid', this.opts.clusterId);
    const path = this.opts.tokenPath;
    if (path) {
      let token: string;
      try {
        token = readFileSync(path, 'utf8').trim();
      } catch (e) {
        throw new Error(`cannot read the CA auth token ${path}: ${(e as Error).message}`);
      }
      if (!token) throw new Error(`the CA auth token file ${path} is empty`);
      md.set('authorization', `Bearer ${token}`);
    }
    return md;
  }

  /** Read the root file; when it changed, rebuild the channel so TLS trusts the new root(s). */
  private loadRoots(): string[] {
    const path = this.opts.rootCertPath;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new Error(`cannot read the CA root certificate file ${path}: ${(e as Error).message}`);
    }
    if (text === this.rootsPemText && this.client) return this.roots;
    const roots = splitPemChain(text).map((p) => p.trim() + '\n');
    if (!roots.length) throw new Error(`the CA root certificate file ${path} holds no PEM certificate`);
    for (const r of roots) {
      try {
        new X509Certificate(r);
      } catch (e) {
        throw new Error(`the CA root certificate file ${path} holds an unparsable certificate: ${(e as Error).message}`);
      }
    }
    this.client?.close();
    this.client = this.makeClient(roots);
    this.rootsPemText = text;
    this.roots = roots;
    return roots;
  }

  private makeClient(roots: string[]): CaGrpcClient {
    const { address, serverName, plaintext } = this.opts;
    const options: grpc.ChannelOptions = {
      'grpc.keepalive_time_ms': 30_000,
      // The certificate manager's backoff (0.5 s to 150 s) paces requests; keep the channel's reconnect delay short so a
      // retry after the CA came back does not fail fast in the channel's own, longer backoff.
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 2000,
    };
    if (plaintext) return new CaClientCtor(address, grpc.credentials.createInsecure(), options) as unknown as CaGrpcClient;
    const tls = tlsChannel(roots, address, serverName);
    return new CaClientCtor(address, tls.credentials, { ...options, ...tls.options }) as unknown as CaGrpcClient;
  }
}

/**
 * Check a CreateCertificate answer (PEM, leaf first, root last) and return the chain to present: the leaf and the
 * intermediates below the configured root. Throws a clear error when the leaf's identity or key is not what we asked
 * for, or the chain does not verify (signatures and validity) up to one of `rootsPem`.
 */
export function verifyIssuedChain(certChain: string[], rootsPem: string[], identity: string, ourSpki: Buffer, now = new Date()): string[] {
  const pems = certChain.flatMap((c) => splitPemChain(c)).map((p) => p.trim() + '\n');
  if (!pems.length) throw new Error(`CA returned no certificate for ${identity}`);
  const certs = pems.map((p, i) => {
    try {
      return new X509Certificate(p);
    } catch (e) {
      throw new Error(`CA returned an unparsable certificate at position ${i} for ${identity}: ${(e as Error).message}`);
    }
  });
  const roots = rootsPem.map((p) => new X509Certificate(p));
  const leaf = certs[0]!;

  const sans = uriSans(new x509.X509Certificate(pems[0]!));
  if (sans.length !== 1 || sans[0] !== identity)
    throw new Error(`CA returned a certificate for ${JSON.stringify(sans)} instead of ${identity} (serial ${leaf.serialNumber})`);
  if (leaf.ca) throw new Error(`CA returned a CA certificate as the leaf for ${identity}`);
  const leafSpki = leaf.publicKey.export({ type: 'spki', format: 'der' });
  if (!leafSpki.equals(createPublicKey({ key: ourSpki, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' })))
    throw new Error(`CA returned a certificate for ${identity} whose public key is not the one in our CSR (serial ${leaf.serialNumber})`);

  const checkValidity = (c: X509Certificate, what: string) => {
    if (new Date(c.validFrom) > now || new Date(c.validTo) < now)
      throw new Error(`CA chain for ${identity}: ${what} (serial ${c.serialNumber}) is not valid now (${c.validFrom} .. ${c.validTo})`);
  };
  // Walk up from the leaf: stop at the first certificate a configured root signed; each step must be signed by the next one.
  for (let i = 0; i < certs.length; i++) {
    const cur = certs[i]!;
    checkValidity(cur, i === 0 ? 'the leaf' : `intermediate ${i}`);
    const root = roots.find((r) => cur.checkIssued(r) && cur.verify(r.publicKey));
    if (root) {
      checkValidity(root, 'the root');
      return pems.slice(0, i + 1);
    }
    const next = certs[i + 1];
    if (!next) break;
    if (!next.ca) throw new Error(`CA chain for ${identity}: certificate ${i + 1} (serial ${next.serialNumber}) is not a CA certificate`);
    if (!cur.checkIssued(next) || !cur.verify(next.publicKey))
      throw new Error(`CA chain for ${identity}: certificate ${i} (serial ${cur.serialNumber}) is not signed by certificate ${i + 1} (${next.subject || 'empty subject'})`);
  }
  throw new Error(`CA chain for ${identity} (leaf serial ${leaf.serialNumber}) does not chain to the configured root certificate(s)`);
}
