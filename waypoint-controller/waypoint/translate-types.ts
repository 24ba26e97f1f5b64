// Kubernetes shapes the waypoint translation reads (Gateway API HTTPRoute/ReferenceGrant, as served as JSON) and the
// statuses it writes. Every field is optional or loosely typed: objects come from an API server without our CRDs'
// validation (the embedded one), so the translation must check what it uses and never trust the types.

export { MESH_CONTROLLER, WAYPOINT_CLASS } from './gateway.js';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  generation?: number;
  /** A Date from @kubernetes/client-node, an RFC 3339 string from raw JSON. */
  creationTimestamp?: Date | string;
}

export interface ParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface BackendObjectRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  port?: number;
}

export interface HTTPBackendRef extends BackendObjectRef {
  weight?: number;
  filters?: HTTPRouteFilter[];
}

export interface StringMatchSpec {
  type?: string;
  name: string;
  value: string;
}

export interface HTTPRouteMatchSpec {
  path?: { type?: string; value?: string };
  headers?: StringMatchSpec[];
  queryParams?: StringMatchSpec[];
  method?: string;
}

export interface HeaderModifierSpec {
  set?: { name: string; value: string }[];
  add?: { name: string; value: string }[];
  remove?: string[];
}

export interface PathModifierSpec {
  type?: string;
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface HTTPRouteFilter {
  type: string;
  requestHeaderModifier?: HeaderModifierSpec;
  responseHeaderModifier?: HeaderModifierSpec;
  requestRedirect?: { scheme?: string; hostname?: string; path?: PathModifierSpec; port?: number; statusCode?: number };
  urlRewrite?: { hostname?: string; path?: PathModifierSpec };
  requestMirror?: { backendRef: BackendObjectRef; percent?: number; fraction?: { numerator: number; denominator?: number } };
}

export interface HTTPRouteRuleSpec {
  name?: string;
  matches?: HTTPRouteMatchSpec[];
  filters?: HTTPRouteFilter[];
  backendRefs?: HTTPBackendRef[];
  timeouts?: { request?: string; backendRequest?: string };
}

export interface HTTPRoute {
  metadata?: ObjectMeta;
  spec?: { parentRefs?: ParentRef[]; hostnames?: string[]; rules?: HTTPRouteRuleSpec[] };
  /** Read only to keep other controllers' parents and transition times. */
  status?: { parents?: (Partial<RouteParentStatus> & { conditions?: (Condition & { lastTransitionTime?: string })[] })[] };
}

export interface ReferenceGrant {
  metadata?: ObjectMeta;
  spec?: { from?: { group?: string; kind?: string; namespace?: string }[]; to?: { group?: string; kind?: string; name?: string }[] };
}

/** A metav1.Condition without lastTransitionTime: the status writer keeps or sets it (this code has no clock). */
export interface Condition {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
  observedGeneration?: number;
}

/** One entry of an HTTPRoute's `status.parents`, in Gateway API shape. */
export interface RouteParentStatus {
  /** As written in the route's spec (Gateway API matches status entries to parentRefs by value). */
  parentRef: ParentRef;
  controllerName: string;
  conditions: Condition[];
}

/** One targetRef of an AuthorizationPolicy and whether a waypoint enforces it (Istio's PolicyBindingStatus). */
export interface PolicyBinding {
  /** Istio's spelling: `<Kind>.<group>:<namespace>/<name>` (group `core` for Services). */
  ancestor: string;
  bound: boolean;
  reason: string;
  message: string;
}

export const nsName = (o: { metadata?: { namespace?: string; name?: string } } | undefined): string => `${o?.metadata?.namespace ?? ''}/${o?.metadata?.name ?? ''}`;

/** The core group is spelled `""` or `core` (Istio's CanonicalGroup). */
export const isCoreGroup = (g: string | undefined): boolean => g === undefined || g === '' || g === 'core';

export const isList = (v: unknown): v is unknown[] => Array.isArray(v);
