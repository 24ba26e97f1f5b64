// The typed waypoint model: what one waypoint (one Gateway of class istio-waypoint) must do, in mesh terms and
// without Kubernetes or Envoy types. Kubernetes objects -> this model (translate-*.ts) -> Envoy resources
// (envoy/*.ts): each step a pure function, so routing and policy semantics are testable without Envoy and the
// Envoy shape is testable without Kubernetes (as Envoy Gateway's IR).

/** A SPIFFE id without the scheme, e.g. `cluster.local/ns/default/sa/web` (as Istio's policies spell principals). */
export type Principal = string;

export interface WaypointModel {
  /** The Gateway this waypoint is. */
  namespace: string;
  name: string;
  trustDomain: string;
  /** Services bound to this waypoint (Service.waypoint points at it), in a stable order (namespace, hostname). */
  services: WaypointService[];
  /**
   * Services reachable as route backends (backendRefs, mirrors) that are not themselves bound, keyed like
   * `serviceKey` below. Bound services are backends of their own default route and need not be repeated here.
   */
  backends: WaypointService[];
  /** L7 AuthorizationPolicies that apply at this waypoint (targetRefs), in evaluation order is irrelevant. */
  policies: L7Policy[];
}

export const serviceKey = (s: { namespace: string; hostname: string }): string => `${s.namespace}/${s.hostname}`;

export interface WaypointService {
  namespace: string;
  name: string;
  /** `<name>.<namespace>.svc.<domain>`. */
  hostname: string;
  /** Cluster IPs the client addressed (the `:authority` of the HBONE request carries one of them). */
  vips: string[];
  ports: WaypointPort[];
  endpoints: Endpoint[];
}

/**
 * As Istio reads appProtocol, else the port name's prefix: `http` (http, http2, grpc, ...), `tcp` (tcp, tls, https,
 * mongo, mysql, redis, or a server-first well-known port), or `unknown` (undeclared: the waypoint serves it with
 * both an HTTP and a TCP chain and sniffs the first bytes to pick one).
 */
export type PortProtocol = 'http' | 'tcp' | 'unknown';

export interface WaypointPort {
  port: number;
  /** Target port when numeric for every endpoint (else per endpoint, see Endpoint.ports). */
  targetPort: number;
  protocol: PortProtocol;
  /** HTTP and unknown ports: the routes attached (HTTPRoutes with this service as parentRef). Empty -> the default route. */
  routes: HttpRouteRule[];
}

export interface Endpoint {
  ip: string;
  /** service port -> this endpoint's target port. */
  ports: Record<number, number>;
  /** The identity the endpoint's ztunnel must present for it (its pod's service account). */
  identity: Principal;
  healthy: boolean;
  /**
   * Whether its ztunnel takes HBONE (the pod is ambient-enrolled, or says it can tunnel). Not: the waypoint connects
   * to ip:targetPort in plaintext, as Istio does for endpoints outside the mesh.
   */
  hbone: boolean;
}

/** One HTTPRoute rule, flattened: any match selects it; the first rule (in Gateway API order) that matches wins. */
export interface HttpRouteRule {
  /** `<route ns>/<route name>/<rule index>`, for stats and status. */
  name: string;
  matches: HttpMatch[];
  filters: HttpFilter[];
  /** Weighted backends; an empty list or all-zero weights -> 500 (Gateway API). */
  backends: WeightedBackend[];
  /**
   * Summed weight of backendRefs that could not be resolved (not found, not permitted, wrong kind): that share of
   * requests gets a 500 (Gateway API), next to `backends`. Absent when all resolved.
   */
  unresolvedBackendWeight?: number;
  /** timeouts.request: the whole request including retries; 0 = no timeout; absent = not set. */
  requestTimeoutMs?: number;
  /** timeouts.backendRequest: one attempt; 0 = no timeout; absent = not set. */
  backendRequestTimeoutMs?: number;
}

export interface HttpMatch {
  path?: { type: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
  headers: { type: 'Exact' | 'RegularExpression'; name: string; value: string }[];
  queryParams: { type: 'Exact' | 'RegularExpression'; name: string; value: string }[];
  method?: string;
}

export interface HeaderChanges {
  set: { name: string; value: string }[];
  add: { name: string; value: string }[];
  remove: string[];
}

export type HttpFilter =
  | { type: 'RequestHeaderModifier'; changes: HeaderChanges }
  | { type: 'ResponseHeaderModifier'; changes: HeaderChanges }
  | {
      type: 'RequestRedirect';
      scheme?: string;
      hostname?: string;
      path?: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string };
      port?: number;
      statusCode: number;
    }
  | { type: 'URLRewrite'; hostname?: string; path?: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string } }
  | { type: 'RequestMirror'; backend: BackendRef; percent?: number };

/** A service port as a route target: resolves to the service in `services` or `backends`. */
export interface BackendRef {
  namespace: string;
  hostname: string;
  port: number;
}

export interface WeightedBackend extends BackendRef {
  weight: number;
}

/** An AuthorizationPolicy as the waypoint enforces it. Istio's semantics: DENY first; no ALLOW -> allow. */
export interface L7Policy {
  /** `<namespace>/<name>`. */
  name: string;
  action: 'ALLOW' | 'DENY';
  /** Which bound services it applies to: all of them (Gateway/GatewayClass target) or these service keys. */
  appliesTo: 'all' | string[];
  /** Any rule matches -> the action applies. An ALLOW with no rules matches nothing; `rules: [{}]` matches all. */
  rules: L7Rule[];
}

/** Within a rule every present field must match; within a field (a list) any entry; `not*` must all miss. */
export interface L7Rule {
  from: L7Source[];
  to: L7Operation[];
  when: L7Condition[];
}

export interface L7Source {
  principals?: Principal[];
  notPrincipals?: Principal[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
}

export interface L7Operation {
  hosts?: string[];
  notHosts?: string[];
  ports?: number[];
  notPorts?: number[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

/** `when`: `request.headers[<name>]`, `source.ip`, `source.namespace`, `source.principal`, `destination.port`, ... */
export interface L7Condition {
  key: string;
  values?: string[];
  notValues?: string[];
}
