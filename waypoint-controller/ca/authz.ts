// Who may obtain which certificate. Pure: the caller, the request and lookups in; allow or a reason out.
import { formatIdentity, tryParseIdentity, type Identity } from '../../ztunnel/identity/spiffe.js';

/** TokenReview `status.user.extra` keys Kubernetes sets for pod-bound service-account tokens. */
export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
export const EXTRA_NODE_UID = 'authentication.kubernetes.io/node-uid';

/** TokenReview `status.user`. */
export interface ReviewedUser {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: { [key: string]: string[] | undefined };
}

/** A caller authenticated as a service account, with what its token is bound to. */
export interface Caller {
  namespace: string;
  serviceAccount: string;
  podName?: string;
  podUid?: string;
  nodeName?: string;
}

export interface PodRef {
  namespace: string;
  serviceAccount: string;
}

export interface ServiceAccountRef {
  namespace: string;
  name: string;
}

export const DEFAULT_ZTUNNEL_SA: ServiceAccountRef = { namespace: 'istio-system', name: 'ztunnel' };

/** `istio-system/ztunnel` -> {namespace, name}. */
export function parseServiceAccountRef(s: string): ServiceAccountRef {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(s.trim());
  if (!m) throw new Error(`service account must be <namespace>/<name>, got ${JSON.stringify(s)}`);
  return { namespace: m[1]!, name: m[2]! };
}

const SA_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

/** Caller from a TokenReview user, or a reason why it is not a service account. */
export function callerFromUser(user: ReviewedUser | undefined): Caller | { reason: string } {
  const m = SA_USER.exec(user?.username ?? '');
  if (!m) return { reason: `caller ${JSON.stringify(user?.username ?? '')} is not a service account` };
  const one = (k: string): string | undefined => user?.extra?.[k]?.[0] || undefined;
  return {
    namespace: m[1]!,
    serviceAccount: m[2]!,
    ...(one(EXTRA_POD_NAME) ? { podName: one(EXTRA_POD_NAME) } : {}),
    ...(one(EXTRA_POD_UID) ? { podUid: one(EXTRA_POD_UID) } : {}),
    ...(one(EXTRA_NODE_NAME) ? { nodeName: one(EXTRA_NODE_NAME) } : {}),
  };
}

export interface AuthzInput {
  caller: Caller;
  /** The identity the certificate would carry (spiffe://...). */
  requested: string;
  /** The request's `ImpersonatedIdentity` metadata, when present. */
  impersonated?: string;
  trustDomain: string;
  ztunnelServiceAccount?: ServiceAccountRef;
  /** Pods scheduled on a node (namespace and service account of each). */
  podsOnNode: (node: string) => readonly PodRef[];
  /** Node of a pod (undefined when the pod is unknown or its uid differs). When given, a ztunnel's node is taken
   *  from its token's bound pod through this lookup; otherwise from the token's node-name claim. */
  nodeOfPod?: (namespace: string, name: string, uid: string | undefined) => string | undefined;
}

export type AuthzDecision = { allowed: true; identity: Identity; impersonation: boolean; node?: string } | { allowed: false; reason: string };

const deny = (reason: string): AuthzDecision => ({ allowed: false, reason });

export function authorize(input: AuthzInput): AuthzDecision {
  const { caller, requested, impersonated, trustDomain } = input;
  const who = `${caller.namespace}/${caller.serviceAccount}`;
  if (impersonated !== undefined && impersonated !== requested) {
    return deny(`ImpersonatedIdentity ${impersonated} differs from the requested identity ${requested}`);
  }
  const id = tryParseIdentity(requested);
  if (!id) return deny(`requested identity ${JSON.stringify(requested)} is not spiffe://<td>/ns/<ns>/sa/<sa>`);
  if (id.trustDomain !== trustDomain) return deny(`requested trust domain ${id.trustDomain} is not ours (${trustDomain})`);

  const own = formatIdentity({ trustDomain, namespace: caller.namespace, serviceAccount: caller.serviceAccount });
  if (requested === own) return { allowed: true, identity: id, impersonation: false };

  const zt = input.ztunnelServiceAccount ?? DEFAULT_ZTUNNEL_SA;
  if (caller.namespace !== zt.namespace || caller.serviceAccount !== zt.name) {
    return deny(`service account ${who} may only obtain its own identity ${own}, not ${requested}`);
  }
  if (impersonated === undefined) return deny(`ztunnel ${who} asked for ${requested} without ImpersonatedIdentity`);
  if (!caller.podName) return deny(`ztunnel ${who} token is not bound to a pod, so its node is unknown`);

  let node = caller.nodeName;
  if (input.nodeOfPod) {
    const podNode = input.nodeOfPod(caller.namespace, caller.podName, caller.podUid);
    if (!podNode) return deny(`ztunnel pod ${caller.namespace}/${caller.podName} (uid ${caller.podUid ?? '?'}) bound to the token is not known or not scheduled`);
    if (node && node !== podNode) return deny(`ztunnel token claims node ${node} but its pod ${caller.namespace}/${caller.podName} runs on ${podNode}`);
    node = podNode;
  }
  if (!node) return deny(`ztunnel ${who} pod ${caller.podName}: node unknown (no node-name claim and no pod lookup)`);

  const here = input.podsOnNode(node).some((p) => p.namespace === id.namespace && p.serviceAccount === id.serviceAccount);
  if (!here) return deny(`no pod with identity ${id.namespace}/${id.serviceAccount} runs on node ${node} of ztunnel ${caller.namespace}/${caller.podName}`);
  return { allowed: true, identity: id, impersonation: true, node };
}
