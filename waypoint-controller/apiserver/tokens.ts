// Service-account tokens as Kubernetes issues and checks them: TokenRequest (the serviceaccounts/token
// subresource: a signed, audience- and time-bound JWT, optionally bound to a Pod, Secret or Node) and
// TokenReview (authentication.k8s.io/v1: signature, issuer, time, audience, and that the service
// account and bound object still exist with the same uid).
import { randomUUID } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ApiError, badRequest, notFound } from './errors.js';
import { signJwt, verifyJwt, type SigningKey } from './jwt.js';
import type { ResourceRegistry } from './resources.js';
import type { Store } from './store.js';
import type { KubeObject, ResourceType } from './types.js';
import { isObject } from './types.js';

export const AUTHN_GROUP = 'authentication.k8s.io';
export const AUTHN_API_VERSION = `${AUTHN_GROUP}/v1`;
export const DEFAULT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const DEFAULT_EXPIRATION_SECONDS = 3600;
/** Kubernetes refuses shorter TokenRequests ("may not specify a duration less than 10 minutes"). */
export const MIN_EXPIRATION_SECONDS = 600;
const MAX_EXPIRATION_SECONDS = 2 ** 32;
/** Clock skew allowed on exp/nbf/iat (go-jose's default leeway, as kube-apiserver uses). */
export const LEEWAY_SECONDS = 60;
/** A token bound to a pod stays valid this long after the pod's deletionTimestamp. */
const DELETED_POD_GRACE_SECONDS = 60;

export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
export const EXTRA_NODE_UID = 'authentication.kubernetes.io/node-uid';
export const EXTRA_CREDENTIAL_ID = 'authentication.kubernetes.io/credential-id';

export type BoundKind = 'Pod' | 'Secret' | 'Node';
export interface BoundObjectRef { kind: BoundKind; apiVersion?: string; name: string; uid?: string }
interface Ref { name: string; uid: string }
interface NodeRef { name: string; uid?: string }

/** The private `kubernetes.io` claim of a bound service-account token. */
export interface KubernetesClaim {
  namespace: string;
  serviceaccount: Ref;
  pod?: Ref;
  secret?: Ref;
  node?: NodeRef;
}

export interface ServiceAccountClaims {
  iss: string;
  aud: string[];
  sub: string;
  exp: number;
  iat: number;
  nbf: number;
  jti: string;
  'kubernetes.io': KubernetesClaim;
}

/** What to mint (from code; the HTTP TokenRequest goes through the same checks). */
export interface MintRequest {
  namespace: string;
  serviceAccount: string;
  /** Default: the API server's audiences ([issuer]). */
  audiences?: string[];
  /** Default 3600; at least the server's minimum (600 unless configured). */
  expirationSeconds?: number;
  /** Bind to this pod (it must exist and run as the service account). */
  pod?: string | { name: string; uid?: string };
  /** Bind to another object kind instead (Secret, Node). */
  boundObjectRef?: BoundObjectRef;
}

export interface MintedToken {
  token: string;
  /** RFC 3339. */
  expirationTimestamp: string;
  claims: ServiceAccountClaims;
}

export interface UserInfo {
  username: string;
  uid: string;
  groups: string[];
  extra: Record<string, string[]>;
}

export interface TokenReviewStatus {
  authenticated: boolean;
  user: UserInfo | Record<string, never>;
  audiences?: string[];
  error?: string;
}

export interface TokenServiceOptions {
  key: SigningKey;
  issuer: string;
  /** Audiences of tokens requested without any, and checked by reviews without any. Default [issuer]. */
  apiAudiences: string[];
  /** Milliseconds since the epoch. */
  now: () => number;
  minExpirationSeconds: number;
  /** Longer requests are cut down to this (kube-apiserver --service-account-max-token-expiration). */
  maxExpirationSeconds?: number;
  /** Called before service accounts are looked up (lets the service-account controller catch up). */
  sync?: () => void;
}

const rfc3339 = (seconds: number): string => new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
/** Go's %q of a []string: ["a" "b"]. */
const goList = (xs: string[]): string => `[${xs.map((x) => JSON.stringify(x)).join(' ')}]`;
const invalidToken = (msg: string): TokenReviewStatus => ({ authenticated: false, user: {}, error: `[invalid bearer token, ${msg}]` });
const stringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

function tokenRequestInvalid(name: string, field: string, message: string): ApiError {
  return new ApiError(422, 'Invalid', `TokenRequest.${AUTHN_GROUP} "${name}" is invalid: ${field}: ${message}`, {
    name, group: AUTHN_GROUP, kind: 'TokenRequest', causes: [{ reason: 'FieldValueInvalid', message, field }],
  });
}

function checkEnvelope(body: unknown, kind: string): Record<string, unknown> {
  if (!isObject(body)) throw badRequest('the body of the request was in an unknown format - accepted media types include: application/json, application/yaml');
  if (body.apiVersion !== undefined && body.apiVersion !== AUTHN_API_VERSION) {
    throw badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${AUTHN_API_VERSION})`);
  }
  if (body.kind !== undefined && body.kind !== kind) throw badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${kind})`);
  if (body.metadata !== undefined && body.metadata !== null && !isObject(body.metadata)) throw badRequest('metadata must be an object');
  if (body.spec !== undefined && body.spec !== null && !isObject(body.spec)) throw badRequest('spec must be an object');
  return body;
}

export class TokenService {
  private readonly saType: ResourceType;
  private readonly types: Partial<Record<BoundKind, ResourceType>>;

  constructor(private readonly store: Store, registry: ResourceRegistry, readonly opts: TokenServiceOptions) {
    const sa = registry.forKind('v1', 'ServiceAccount');
    if (!sa) throw new Error('service-account tokens need v1 ServiceAccount');
    this.saType = sa;
    this.types = { Pod: registry.forKind('v1', 'Pod'), Secret: registry.forKind('v1', 'Secret'), Node: registry.forKind('v1', 'Node') };
  }

  get issuer(): string { return this.opts.issuer; }

  private nowSeconds(): number { return Math.floor(this.opts.now() / 1000); }

  /** Issue a token (throws ApiError as the TokenRequest endpoint would). */
  mint(req: MintRequest): MintedToken {
    const { namespace: ns, serviceAccount: name } = req;
    const audiences = req.audiences?.length ? [...req.audiences] : [...this.opts.apiAudiences];
    let expirationSeconds = req.expirationSeconds ?? DEFAULT_EXPIRATION_SECONDS;
    if (!Number.isInteger(expirationSeconds)) throw tokenRequestInvalid(name, 'spec.expirationSeconds', `Invalid value: ${String(expirationSeconds)}: must be an integer`);
    if (expirationSeconds < this.opts.minExpirationSeconds) {
      const limit = this.opts.minExpirationSeconds === MIN_EXPIRATION_SECONDS ? '10 minutes' : `${this.opts.minExpirationSeconds} seconds`;
      throw tokenRequestInvalid(name, 'spec.expirationSeconds', `Invalid value: ${expirationSeconds}: may not specify a duration less than ${limit}`);
    }
    if (expirationSeconds > MAX_EXPIRATION_SECONDS) {
      throw tokenRequestInvalid(name, 'spec.expirationSeconds', `Invalid value: ${expirationSeconds}: may not specify a duration larger than 2^32 seconds`);
    }
    if (this.opts.maxExpirationSeconds !== undefined) expirationSeconds = Math.min(expirationSeconds, this.opts.maxExpirationSeconds);

    this.opts.sync?.();
    const sa = this.store.get(this.saType, ns, name);
    if (!sa) throw notFound(this.saType, name);

    const claim: KubernetesClaim = { namespace: ns, serviceaccount: { name, uid: sa.metadata.uid! } };
    const ref: BoundObjectRef | undefined = req.boundObjectRef
      ?? (req.pod === undefined ? undefined : typeof req.pod === 'string' ? { kind: 'Pod', name: req.pod } : { kind: 'Pod', ...req.pod });
    if (ref) this.bind(ns, name, ref, claim);

    const iat = this.nowSeconds();
    const claims: ServiceAccountClaims = {
      aud: audiences, exp: iat + expirationSeconds, iat, iss: this.opts.issuer, jti: randomUUID(),
      'kubernetes.io': claim, nbf: iat, sub: `system:serviceaccount:${ns}:${name}`,
    };
    return { token: signJwt(this.opts.key, claims), expirationTimestamp: rfc3339(claims.exp), claims };
  }

  /** Check the bound object and add it (and, for a pod, its node) to the claim. */
  private bind(ns: string, saName: string, ref: BoundObjectRef, claim: KubernetesClaim): void {
    if (!isObject(ref) || typeof ref.name !== 'string' || !ref.name) throw badRequest('boundObjectRef.name is required');
    const apiVersion = ref.apiVersion ?? 'v1';
    const rt = apiVersion === 'v1' ? this.types[ref.kind] : undefined;
    if (!rt) {
      const [group, version] = apiVersion.includes('/') ? apiVersion.split('/', 2) : ['', apiVersion];
      throw badRequest(`cannot bind token to object of type ${group}/${version}, Kind=${String(ref.kind)}`);
    }
    const obj = this.store.get(rt, rt.namespaced ? ns : undefined, ref.name);
    if (!obj) throw notFound(rt, ref.name);
    const uid = obj.metadata.uid!;
    if (ref.uid && ref.uid !== uid) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${ref.kind} "${ref.name}": the UID in the bound object reference (${ref.uid}) does not match the UID in record. The object might have been deleted and then recreated`, {
        name: ref.name, group: '', kind: ref.kind,
      });
    }
    switch (ref.kind) {
      case 'Pod': {
        const spec = (obj.spec ?? {}) as { serviceAccountName?: string; nodeName?: string };
        if ((spec.serviceAccountName ?? 'default') !== saName) {
          throw badRequest(`cannot bind token for serviceaccount "${saName}" to pod running with different serviceaccount name.`);
        }
        claim.pod = { name: ref.name, uid };
        if (spec.nodeName) {
          const node = this.types.Node && this.store.get(this.types.Node, undefined, spec.nodeName);
          claim.node = node ? { name: spec.nodeName, uid: node.metadata.uid! } : { name: spec.nodeName };
        }
        return;
      }
      case 'Secret':
        claim.secret = { name: ref.name, uid };
        return;
      case 'Node':
        claim.node = { name: ref.name, uid };
    }
  }

  /** POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token */
  tokenRequest(ns: string, name: string, body: unknown): KubeObject {
    const req = checkEnvelope(body, 'TokenRequest');
    const meta = (req.metadata ?? {}) as { namespace?: unknown; name?: unknown };
    if (typeof meta.namespace === 'string' && meta.namespace && meta.namespace !== ns) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    const spec = (req.spec ?? {}) as { audiences?: unknown; expirationSeconds?: unknown; boundObjectRef?: unknown };
    if (spec.audiences !== undefined && spec.audiences !== null && !stringList(spec.audiences)) throw tokenRequestInvalid(name, 'spec.audiences', 'must be a list of strings');
    if (spec.expirationSeconds !== undefined && spec.expirationSeconds !== null && typeof spec.expirationSeconds !== 'number') {
      throw tokenRequestInvalid(name, 'spec.expirationSeconds', `Invalid value: ${JSON.stringify(spec.expirationSeconds)}: must be a number`);
    }
    const bound = spec.boundObjectRef ?? undefined;
    if (bound !== undefined && bound !== null && !isObject(bound)) throw badRequest('spec.boundObjectRef must be an object');
    const mintReq: MintRequest = { namespace: ns, serviceAccount: name };
    if (stringList(spec.audiences)) mintReq.audiences = spec.audiences;
    if (typeof spec.expirationSeconds === 'number') mintReq.expirationSeconds = spec.expirationSeconds;
    if (isObject(bound)) mintReq.boundObjectRef = bound as unknown as BoundObjectRef;
    const minted = this.mint(mintReq);
    const outSpec: Record<string, unknown> = {
      audiences: minted.claims.aud, expirationSeconds: minted.claims.exp - minted.claims.iat, boundObjectRef: isObject(bound) ? bound : null,
    };
    return {
      apiVersion: AUTHN_API_VERSION, kind: 'TokenRequest',
      metadata: { name, namespace: ns, creationTimestamp: rfc3339(minted.claims.iat) },
      spec: outSpec,
      status: { token: minted.token, expirationTimestamp: minted.expirationTimestamp },
    };
  }

  /** POST /apis/authentication.k8s.io/v1/tokenreviews */
  tokenReview(body: unknown): KubeObject {
    const req = checkEnvelope(body, 'TokenReview');
    const meta = (req.metadata ?? {}) as { namespace?: unknown };
    if (typeof meta.namespace === 'string' && meta.namespace) throw badRequest('namespace is not allowed on this type');
    const spec = (req.spec ?? {}) as { token?: unknown; audiences?: unknown };
    if (typeof spec.token !== 'string' || !spec.token) throw badRequest('token is required for TokenReview in authentication');
    if (spec.audiences !== undefined && spec.audiences !== null && !stringList(spec.audiences)) throw badRequest('spec.audiences must be a list of strings');
    const audiences = stringList(spec.audiences) ? spec.audiences : undefined;
    const outSpec: Record<string, unknown> = { token: spec.token };
    if (audiences) outSpec.audiences = audiences;
    return {
      apiVersion: AUTHN_API_VERSION, kind: 'TokenReview',
      metadata: { creationTimestamp: rfc3339(this.nowSeconds()) },
      spec: outSpec,
      status: this.review(spec.token, audiences),
    };
  }

  /** Authenticate a token for `audiences` (default: the API server's audiences). */
  review(token: string, audiences?: string[]): TokenReviewStatus {
    const wanted = audiences?.length ? audiences : this.opts.apiAudiences;
    const verified = verifyJwt(this.opts.key, token);
    if ('error' in verified) return invalidToken(verified.error);
    const c = verified.claims;
    if (c.iss !== this.opts.issuer) return invalidToken(`token issuer ${JSON.stringify(c.iss)} is not recognized`);
    const now = this.nowSeconds();
    if (typeof c.exp !== 'number' || now > c.exp + LEEWAY_SECONDS) return invalidToken('service account token has expired');
    if (typeof c.nbf === 'number' && now < c.nbf - LEEWAY_SECONDS) return invalidToken('service account token is not valid yet (nbf)');
    if (typeof c.iat === 'number' && now < c.iat - LEEWAY_SECONDS) return invalidToken('service account token used before issued (iat)');
    const tokenAud = typeof c.aud === 'string' ? [c.aud] : stringList(c.aud) ? c.aud : [];
    const matched = wanted.filter((a) => tokenAud.includes(a));
    if (matched.length === 0) return invalidToken(`token audiences ${goList(tokenAud)} is invalid for the target audiences ${goList(wanted)}`);

    const k = c['kubernetes.io'];
    if (!isObject(k) || typeof k.namespace !== 'string' || !isObject(k.serviceaccount)) return invalidToken('service account token claims could not be validated');
    const ns = k.namespace;
    const saRef = k.serviceaccount as Partial<Ref>;
    if (typeof saRef.name !== 'string' || c.sub !== `system:serviceaccount:${ns}:${saRef.name}`) return invalidToken('service account token claims could not be validated');
    this.opts.sync?.();
    const sa = this.store.get(this.saType, ns, saRef.name);
    if (!sa || sa.metadata.deletionTimestamp) return invalidToken('service account token has been invalidated');
    if (saRef.uid !== sa.metadata.uid) return invalidToken(`service account UID (${sa.metadata.uid}) does not match claim (${String(saRef.uid)})`);

    const extra: Record<string, string[]> = {};
    const podRef = k.pod as Partial<Ref> | undefined;
    if (podRef) {
      const pod = this.types.Pod && typeof podRef.name === 'string' ? this.store.get(this.types.Pod, ns, podRef.name) : undefined;
      if (!pod) return invalidToken('service account token has been invalidated');
      if (pod.metadata.uid !== podRef.uid) return invalidToken(`pod UID (${pod.metadata.uid}) does not match claim (${String(podRef.uid)})`);
      const dt = pod.metadata.deletionTimestamp;
      if (dt && Date.parse(dt) / 1000 < now - DELETED_POD_GRACE_SECONDS) return invalidToken('service account token has been invalidated');
      extra[EXTRA_POD_NAME] = [podRef.name!];
      extra[EXTRA_POD_UID] = [podRef.uid!];
    }
    const secretRef = k.secret as Partial<Ref> | undefined;
    if (secretRef) {
      const secret = this.types.Secret && typeof secretRef.name === 'string' ? this.store.get(this.types.Secret, ns, secretRef.name) : undefined;
      if (!secret) return invalidToken('service account token has been invalidated');
      if (secret.metadata.uid !== secretRef.uid) return invalidToken(`secret UID (${secret.metadata.uid}) does not match claim (${String(secretRef.uid)})`);
    }
    const nodeRef = k.node as Partial<NodeRef> | undefined;
    if (nodeRef && typeof nodeRef.name === 'string') {
      if (!podRef) {
        // Bound to the node itself: the node must still be there.
        const node = this.types.Node && this.store.get(this.types.Node, undefined, nodeRef.name);
        if (!node) return invalidToken('service account token has been invalidated');
        if (node.metadata.uid !== nodeRef.uid) return invalidToken(`node UID (${node.metadata.uid}) does not match claim (${String(nodeRef.uid)})`);
      }
      extra[EXTRA_NODE_NAME] = [nodeRef.name];
      if (typeof nodeRef.uid === 'string') extra[EXTRA_NODE_UID] = [nodeRef.uid];
    }
    if (typeof c.jti === 'string') extra[EXTRA_CREDENTIAL_ID] = [`JTI=${c.jti}`];
    return {
      authenticated: true,
      user: {
        username: `system:serviceaccount:${ns}:${saRef.name}`, uid: sa.metadata.uid!,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'], extra,
      },
      audiences: matched,
    };
  }
}

/** Write a token the way the kubelet projects one: atomically (temp file + rename), mode 0600. */
export function writeTokenFile(path: string, token: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, token, { mode: 0o600 });
  renameSync(tmp, path);
}
