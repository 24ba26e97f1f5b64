// The ztunnel's model of the mesh. These are the shapes every config source
// (local file now, xDS later) converts into; proxies only read them. Objects
// reachable from a workload or service may be shared with others (see intern.ts):
// never mutate them.

export type InboundProtocol = 'HBONE' | 'TCP';
export type HealthStatus = 'Healthy' | 'Unhealthy';

/** An IP address in a network: the key used to find workloads and services by address. */
export interface NetworkAddress {
  network: string;
  address: string; // canonical textual IP
}

/** Service port -> target port on the workload. */
export type PortMap = ReadonlyMap<number, number>;

/**
 * Where a waypoint is, as Istio's GatewayAddress says: a service by namespace and hostname (what istiod prefers), or an
 * address (a service VIP or a workload IP). Connections to it go to its `hboneMtlsPort` (15008). Shared by every
 * service and workload that uses the waypoint (intern.ts): never mutated.
 */
export type GatewayAddress =
  | { readonly kind: 'hostname'; readonly namespace: string; readonly hostname: string; readonly hboneMtlsPort: number }
  | { readonly kind: 'address'; readonly network: string; readonly address: string; readonly hboneMtlsPort: number };

/** A workload as sources deliver it. Read-only: from xDS it is a ProfiledWorkload (profiled-workload.ts), whose fields
 *  other than uid, name, addresses and node are getters reading a profile it shares with the deployment's replicas. */
export interface Workload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  readonly workloadIps: string[];
  readonly network: string;
  readonly protocol: InboundProtocol;
  readonly node: string;
  readonly hostname: string;
  readonly canonicalName: string;
  readonly canonicalRevision: string;
  readonly workloadName: string;
  readonly workloadType: string;
  readonly clusterId: string;
  readonly status: HealthStatus;
  /** Policies (`ns/name`) with scope WORKLOAD_SELECTOR that select this workload. */
  readonly authorizationPolicies: readonly string[];
  /** `ns/hostname` -> service port -> target port. Makes this workload an endpoint of those services. */
  readonly services: ReadonlyMap<string, PortMap>;
  /** Traffic addressed to this workload's own IP (not through a service) goes through this waypoint. */
  readonly waypoint?: GatewayAddress;
}

export interface Service {
  name: string;
  namespace: string;
  hostname: string;
  vips: NetworkAddress[];
  /** Service port -> target port; 0 means "named port, ask the workload's port map". */
  ports: PortMap;
  subjectAltNames: readonly string[];
  /** Traffic to this service goes through this waypoint. */
  waypoint?: GatewayAddress;
}

export type StringMatch =
  | { exact: string }
  | { prefix: string }
  | { suffix: string }
  | { presence: true };

/** An IP network; `prefixLen` covers the whole address when it came without a length. */
export interface Cidr {
  address: string;
  prefixLen: number;
}

export interface ServiceAccountMatch {
  namespace: string;
  serviceAccount: string;
}

/** One match group: every non-empty field must match (any-of positive, none-of negative). */
export interface RbacMatch {
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  serviceAccounts: ServiceAccountMatch[];
  notServiceAccounts: ServiceAccountMatch[];
  sourceIps: Cidr[];
  notSourceIps: Cidr[];
  destinationIps: Cidr[];
  notDestinationIps: Cidr[];
  destinationPorts: number[];
  notDestinationPorts: number[];
}

export type RbacScope = 'Global' | 'Namespace' | 'WorkloadSelector';
export type RbacAction = 'Allow' | 'Deny';

export interface Authorization {
  name: string;
  namespace: string;
  scope: RbacScope;
  action: RbacAction;
  /** Any rule matches -> policy matches. A rule is a list of clauses (all must match); a clause is a list of match groups (any). */
  rules: RbacMatch[][][];
  dryRun: boolean;
}

/** Everything a config source delivers in one go. */
export interface MeshConfig {
  workloads: Workload[];
  services: Service[];
  policies: Authorization[];
}

export const policyKey = (p: { namespace: string; name: string }): string => `${p.namespace}/${p.name}`;
export const serviceKey = (s: { namespace: string; hostname: string }): string => `${s.namespace}/${s.hostname}`;
export const addressKey = (network: string, ip: string): string => `${network}/${ip}`;
/** A waypoint as Istio's ztunnel writes its destination: `<namespace>/<hostname>` or `<network>/<ip>`. */
export const gatewayDestination = (g: GatewayAddress): string => (g.kind === 'hostname' ? serviceKey(g) : addressKey(g.network, g.address));
