// istio.v1.auth.IstioCertificateService/CreateCertificate: authenticate (clusterid, bearer token via TokenReview),
// authorize (authz.ts), sign (issuer.ts). The caller owns the grpc.Server (port, TLS): addCaService() plugs the
// service into one (the controller serves xDS and the CA together on 15012), startCaServer() is a convenience.
//
// Status codes:
//   UNAUTHENTICATED    no/garbled `authorization: Bearer` header, TokenReview says not authenticated, the token's
//                      audiences do not include ours, or the `clusterid` header names another cluster (as Istio does:
//                      cluster id is part of authentication; a missing `clusterid` means "this cluster", like Istio).
//   PERMISSION_DENIED  authenticated, but not a service account, or not allowed that identity (authz.ts).
//   INVALID_ARGUMENT   CSR malformed / bad signature / not ECDSA P-256 / its URI SAN is not the issued identity.
//   UNAVAILABLE        TokenReview itself failed (transient; clients retry with backoff).
//   INTERNAL           signing failed.
// Each refusal is logged with its reason (never the token).
import type { AuthenticationV1Api } from '@kubernetes/client-node';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import {
  IstioCertificateServiceDefinition,
  fromStruct,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
} from '../../protos/index.js';
import {
  authorize,
  callerFromUser,
  parseServiceAccountRef,
  type Caller,
  type PodRef,
  type ReviewedUser,
  type ServiceAccountRef,
} from './authz.js';
import { CertIssuer, CsrError, parseCsr, type IssuedCertificate } from './issuer.js';

export const CA_AUDIENCE = 'istio-ca';
export const IMPERSONATED_IDENTITY = 'ImpersonatedIdentity';

export interface TokenReviewResult {
  authenticated: boolean;
  user?: ReviewedUser;
  /** Audiences the token is valid for (TokenReview status.audiences), when the reviewer reports them. */
  audiences?: string[];
  error?: string;
}

/** Verify a bearer token for the given audiences (Kubernetes TokenReview). Throwing means "could not check". */
export type ReviewToken = (token: string, audiences: string[]) => Promise<TokenReviewResult>;

export interface CaServiceDeps {
  issuer: CertIssuer;
  trustDomain: string;
  clusterId: string;
  reviewToken: ReviewToken;
  /** Pods on a node (from an informer cache). */
  podsOnNode: (node: string) => readonly PodRef[];
  /** Node of the ztunnel pod a token is bound to; see AuthzInput.nodeOfPod. */
  nodeOfPod?: (namespace: string, name: string, uid: string | undefined) => string | undefined;
  /** Default istio-system/ztunnel. */
  ztunnelServiceAccount?: ServiceAccountRef | string;
  /** Default ['istio-ca']. */
  audiences?: string[];
  /** Whether a call came over TLS (when the server also has a plaintext port); all calls are accepted when absent. */
  isSecure?: (call: object) => boolean;
  log?: Logger;
}

/** A refused request: gRPC status plus the reason (sent to the client and logged). */
export class CaRefusal extends Error {
  override name = 'CaRefusal';
  constructor(
    readonly code: grpc.status,
    reason: string,
  ) {
    super(reason);
  }
}

/** The TokenReview callback backed by a Kubernetes API (real cluster or the embedded server). */
export function kubeTokenReviewer(api: AuthenticationV1Api): ReviewToken {
  return async (token, audiences) => {
    const r = await api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } });
    const s = r.status ?? {};
    return {
      authenticated: s.authenticated === true,
      ...(s.user ? { user: s.user as ReviewedUser } : {}),
      ...(s.audiences ? { audiences: s.audiences } : {}),
      ...(s.error ? { error: s.error } : {}),
    };
  };
}

const first = (md: grpc.Metadata, key: string): string | undefined => {
  const v = md.get(key)[0];
  return v === undefined ? undefined : v.toString();
};

/** Authenticate the call's metadata: cluster id, then the bearer token. Throws CaRefusal. */
export async function authenticate(deps: CaServiceDeps, md: grpc.Metadata): Promise<Caller> {
  const clusterId = first(md, 'clusterid');
  if (clusterId && clusterId !== deps.clusterId) {
    throw new CaRefusal(grpc.status.UNAUTHENTICATED, `client claims cluster ${JSON.stringify(clusterId)}, this CA serves cluster ${JSON.stringify(deps.clusterId)}`);
  }
  const header = first(md, 'authorization');
  if (!header) throw new CaRefusal(grpc.status.UNAUTHENTICATED, 'no authorization header');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new CaRefusal(grpc.status.UNAUTHENTICATED, 'authorization header is not "Bearer <token>"');
  const audiences = deps.audiences ?? [CA_AUDIENCE];
  let review: TokenReviewResult;
  try {
    review = await deps.reviewToken(m[1]!, audiences);
  } catch (e) {
    throw new CaRefusal(grpc.status.UNAVAILABLE, `token review failed: ${(e as Error).message}`);
  }
  if (!review.authenticated) {
    throw new CaRefusal(grpc.status.UNAUTHENTICATED, `token not authenticated${review.error ? `: ${review.error}` : ''}`);
  }
  if (review.audiences && !review.audiences.some((a) => audiences.includes(a))) {
    throw new CaRefusal(grpc.status.UNAUTHENTICATED, `token audiences ${JSON.stringify(review.audiences)} do not include ${JSON.stringify(audiences)}`);
  }
  const caller = callerFromUser(review.user);
  if ('reason' in caller) throw new CaRefusal(grpc.status.PERMISSION_DENIED, caller.reason);
  return caller;
}

/**
 * The whole CreateCertificate decision, without gRPC plumbing: returns the issued chain or throws CaRefusal.
 * The identity asked for is the `ImpersonatedIdentity` metadata when present, otherwise the CSR's URI SAN.
 */
export async function createCertificate(
  deps: CaServiceDeps,
  req: IstioCertificateRequest,
  md: grpc.Metadata,
  onCaller?: (c: Caller) => void,
): Promise<IssuedCertificate> {
  const caller = await authenticate(deps, md);
  onCaller?.(caller);
  let impersonated: string | undefined;
  if (req.metadata) {
    const v = fromStruct(req.metadata)[IMPERSONATED_IDENTITY];
    if (v !== undefined && v !== null && v !== '') {
      if (typeof v !== 'string') throw new CaRefusal(grpc.status.INVALID_ARGUMENT, `${IMPERSONATED_IDENTITY} metadata must be a string`);
      impersonated = v;
    }
  }
  let parsed;
  try {
    parsed = await parseCsr(req.csr);
  } catch (e) {
    throw new CaRefusal(grpc.status.INVALID_ARGUMENT, (e as Error).message);
  }
  const requested = impersonated ?? (parsed.uriSans.length === 1 ? parsed.uriSans[0] : undefined);
  if (requested === undefined) {
    throw new CaRefusal(grpc.status.INVALID_ARGUMENT, `csr must carry exactly one URI SAN, has ${JSON.stringify(parsed.uriSans)}`);
  }
  const zt = typeof deps.ztunnelServiceAccount === 'string' ? parseServiceAccountRef(deps.ztunnelServiceAccount) : deps.ztunnelServiceAccount;
  const decision = authorize({
    caller,
    requested,
    ...(impersonated !== undefined ? { impersonated } : {}),
    trustDomain: deps.trustDomain,
    ...(zt ? { ztunnelServiceAccount: zt } : {}),
    podsOnNode: deps.podsOnNode,
    ...(deps.nodeOfPod ? { nodeOfPod: deps.nodeOfPod } : {}),
  });
  if (!decision.allowed) throw new CaRefusal(grpc.status.PERMISSION_DENIED, decision.reason);
  try {
    return await deps.issuer.issue(parsed, requested, req.validityDuration);
  } catch (e) {
    if (e instanceof CsrError) throw new CaRefusal(grpc.status.INVALID_ARGUMENT, e.message);
    throw new CaRefusal(grpc.status.INTERNAL, `signing failed: ${(e as Error).message}`);
  }
}

const callerName = (c: Caller | undefined): string | undefined =>
  c ? `${c.namespace}/${c.serviceAccount}${c.podName ? ` (pod ${c.podName}${c.nodeName ? ` on ${c.nodeName}` : ''})` : ''}` : undefined;

/** Register IstioCertificateService on `server`. */
/** Add the CA to a gRPC server (a grpc.Server, or the xDS server that shares 15012 with it). TLS callers only. */
export function addCaService(server: Pick<grpc.Server, 'addService'>, deps: CaServiceDeps): void {
  const log = deps.log ?? pino({ name: 'ca', level: process.env.LOG_LEVEL ?? 'info' });
  server.addService(IstioCertificateServiceDefinition as unknown as grpc.ServiceDefinition, {
    createCertificate: (
      call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
      callback: grpc.sendUnaryData<IstioCertificateResponse>,
    ) => {
      let caller: Caller | undefined;
      if (deps.isSecure && !deps.isSecure(call)) {
        callback({ code: grpc.status.UNAUTHENTICATED, details: 'the CA is served over TLS only' });
        return;
      }
      createCertificate(deps, call.request, call.metadata, (c) => (caller = c)).then(
        (issued) => {
          log.info({ caller: callerName(caller), identity: issued.identity, serial: issued.serial, notAfter: issued.notAfter.toISOString() }, 'certificate issued');
          callback(null, { certChain: issued.certChain });
        },
        (e: unknown) => {
          const r = e instanceof CaRefusal ? e : new CaRefusal(grpc.status.INTERNAL, (e as Error)?.message ?? String(e));
          log.warn({ peer: call.getPeer(), caller: callerName(caller), code: grpc.status[r.code], reason: r.message }, 'certificate request refused');
          callback({ code: r.code, details: r.message });
        },
      );
    },
  });
}

export interface CaServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Default insecure (tests only; the controller serves with TLS). */
  credentials?: grpc.ServerCredentials;
  grpcOptions?: grpc.ServerOptions;
}

export interface CaServer {
  server: grpc.Server;
  port: number;
  /** host:port */
  address: string;
  close(): Promise<void>;
}

/** A grpc.Server with only the CA service, listening. */
export async function startCaServer(deps: CaServiceDeps, opts: CaServerOptions = {}): Promise<CaServer> {
  const server = new grpc.Server(opts.grpcOptions);
  addCaService(server, deps);
  const host = opts.host ?? '127.0.0.1';
  const hostPort = `${host.includes(':') ? `[${host}]` : host}:${opts.port ?? 0}`;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(hostPort, opts.credentials ?? grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    server,
    port,
    address: `${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => server.forceShutdown(), 2_000).unref();
      }),
  };
}
