// Hand-written shapes of the messages in protos/*.proto, as the codecs in
// codec.ts produce them: camelCase names, enums as their names, bytes as
// Uint8Array, 64-bit integers as number.
//
// Decoded messages always carry scalars (default '' / 0 / false / first enum
// name), repeated fields ([]) and maps ({}). Singular sub-messages, oneof
// members and proto3 `optional` scalars are present only when set on the wire.
// A oneof also gets a discriminator property naming the member that is set.
// Enum fields may hold a plain number when the peer sends a value newer than
// these files (proto3 enums are open); switch on the names and treat any
// number as unknown.

// ---------------------------------------------------------------- google.protobuf

/** google.protobuf.Any. protobufjs keeps the proto field name `type_url`. */
export interface Any {
  type_url: string;
  value: Uint8Array;
}

/** google.protobuf.Empty */
export type Empty = Record<string, never>;

/** google.protobuf.UInt32Value */
export interface UInt32Value {
  value: number;
}

/** google.protobuf.Struct */
export interface Struct {
  fields: Record<string, Value>;
}

/** google.protobuf.Value */
export interface Value {
  kind?: 'nullValue' | 'numberValue' | 'stringValue' | 'boolValue' | 'structValue' | 'listValue';
  nullValue?: 'NULL_VALUE' | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: Struct;
  listValue?: ListValue;
}

/** google.protobuf.ListValue */
export interface ListValue {
  values: Value[];
}

// ---------------------------------------------------------------- istio.workload

export type IPFamilies = 'AUTOMATIC' | 'IPV4_ONLY' | 'IPV6_ONLY' | 'DUAL';
export type NetworkMode = 'STANDARD' | 'HOST_NETWORK';
export type WorkloadStatus = 'HEALTHY' | 'UNHEALTHY';
export type WorkloadType = 'DEPLOYMENT' | 'CRONJOB' | 'POD' | 'JOB';
export type AppProtocol = 'UNKNOWN' | 'HTTP11' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS';
export type TunnelProtocol = 'NONE' | 'HBONE' | 'LEGACY_ISTIO_MTLS';
/** istio.workload.Service.Visibility */
export type ServiceVisibility = 'PUBLIC' | 'NAMESPACE';
/** istio.workload.LoadBalancing.Scope */
export type LoadBalancingScope =
  | 'UNSPECIFIED_SCOPE' | 'REGION' | 'ZONE' | 'SUBZONE' | 'NODE' | 'CLUSTER' | 'NETWORK';
/** istio.workload.LoadBalancing.Mode */
export type LoadBalancingMode = 'UNSPECIFIED_MODE' | 'STRICT' | 'FAILOVER' | 'PASSTHROUGH';
/** istio.workload.LoadBalancing.HealthPolicy */
export type LoadBalancingHealthPolicy = 'ONLY_HEALTHY' | 'ALLOW_ALL';
/** istio.workload.ApplicationTunnel.Protocol */
export type ApplicationTunnelProtocol = 'NONE' | 'PROXY';

/** istio.workload.Address: the xDS resource, one of workload or service. */
export interface Address {
  type?: 'workload' | 'service';
  workload?: Workload;
  service?: Service;
}

export interface Service {
  name: string;
  namespace: string;
  hostname: string;
  addresses: NetworkAddress[];
  ports: Port[];
  subjectAltNames: string[];
  waypoint?: GatewayAddress;
  loadBalancing?: LoadBalancing;
  ipFamilies: IPFamilies | number;
  extensions: Extension[];
  canonical: boolean;
  ingressUseWaypoint: boolean;
  weightedWaypoints: WeightedWaypoint[];
  visibility: ServiceVisibility | number;
}

export interface LoadBalancing {
  routingPreference: (LoadBalancingScope | number)[];
  mode: LoadBalancingMode | number;
  healthPolicy: LoadBalancingHealthPolicy | number;
}

export interface Workload {
  uid: string;
  name: string;
  namespace: string;
  /** Raw IPs, 4 or 16 bytes each. */
  addresses: Uint8Array[];
  hostname: string;
  network: string;
  tunnelProtocol: TunnelProtocol | number;
  trustDomain: string;
  serviceAccount: string;
  waypoint?: GatewayAddress;
  networkGateway?: GatewayAddress;
  node: string;
  canonicalName: string;
  canonicalRevision: string;
  workloadType: WorkloadType | number;
  workloadName: string;
  nativeTunnel: boolean;
  applicationTunnel?: ApplicationTunnel;
  /** Keyed by "<namespace>/<hostname>". */
  services: Record<string, PortList>;
  authorizationPolicies: string[];
  status: WorkloadStatus | number;
  clusterId: string;
  locality?: Locality;
  networkMode: NetworkMode | number;
  extensions: Extension[];
  /** Absent means capacity 1. */
  capacity?: UInt32Value;
}

export interface Locality {
  region: string;
  zone: string;
  subzone: string;
}

export interface PortList {
  ports: Port[];
}

export interface Port {
  servicePort: number;
  targetPort: number;
  appProtocol: AppProtocol | number;
}

export interface ApplicationTunnel {
  protocol: ApplicationTunnelProtocol | number;
  port: number;
}

export interface GatewayAddress {
  destination?: 'hostname' | 'address';
  hostname?: NamespacedHostname;
  address?: NetworkAddress;
  hboneMtlsPort: number;
}

export interface WeightedWaypoint {
  destination?: GatewayAddress;
  weight: number;
}

export interface NetworkAddress {
  network: string;
  /** 4 or 16 bytes. */
  address: Uint8Array;
  /** CIDR prefix length; absent for a single host. */
  length?: number;
}

export interface NamespacedHostname {
  namespace: string;
  hostname: string;
}

export interface Extension {
  name: string;
  config?: Any;
}

// ---------------------------------------------------------------- istio.security

/** istio.security.Scope */
export type AuthorizationScope = 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR';
/** istio.security.Action */
export type AuthorizationAction = 'ALLOW' | 'DENY';

export interface Authorization {
  name: string;
  namespace: string;
  scope: AuthorizationScope | number;
  action: AuthorizationAction | number;
  rules: Rule[];
  dryRun: boolean;
  extensions: Extension[];
}

export interface Rule {
  clauses: Clause[];
}

export interface Clause {
  matches: Match[];
}

export interface Match {
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  sourceIps: AuthzAddress[];
  notSourceIps: AuthzAddress[];
  destinationIps: AuthzAddress[];
  notDestinationIps: AuthzAddress[];
  destinationPorts: number[];
  notDestinationPorts: number[];
  serviceAccounts: ServiceAccountMatch[];
  notServiceAccounts: ServiceAccountMatch[];
  extensions: Extension[];
}

/** istio.security.Address: an IP prefix. */
export interface AuthzAddress {
  address: Uint8Array;
  length: number;
}

export interface ServiceAccountMatch {
  namespace: string;
  /** Istio spells this field in camelCase in the .proto as well. */
  serviceAccount: string;
}

export interface StringMatch {
  matchType?: 'exact' | 'prefix' | 'suffix' | 'presence';
  exact?: string;
  prefix?: string;
  suffix?: string;
  presence?: Empty;
}

// ---------------------------------------------------------------- istio.v1.auth

export interface IstioCertificateRequest {
  csr: string;
  /** Seconds. */
  validityDuration: number;
  metadata?: Struct;
}

export interface IstioCertificateResponse {
  /** PEM, leaf first, root last. */
  certChain: string[];
}

// ---------------------------------------------------------------- istio.workload.zds

/** istio.workload.zds.Version */
export type ZdsVersion = 'NOT_USED' | 'V1';

export interface ZdsHello {
  version: ZdsVersion | number;
}

export interface WorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
}

export interface AddWorkload {
  uid: string;
  workloadInfo?: WorkloadInfo;
}

export interface KeepWorkload {
  uid: string;
}

export interface DelWorkload {
  uid: string;
}

export type SnapshotSent = Record<string, never>;

export interface Ack {
  /** Empty means success. */
  error: string;
}

export interface WorkloadRequest {
  payload?: 'add' | 'keep' | 'del' | 'snapshotSent';
  add?: AddWorkload;
  keep?: KeepWorkload;
  del?: DelWorkload;
  snapshotSent?: SnapshotSent;
}

export interface WorkloadResponse {
  payload?: 'ack';
  ack?: Ack;
}

// ---------------------------------------------------------------- helpers

/**
 * What `encode` accepts: any subset of the message, recursively. Missing
 * fields encode as their defaults; oneof discriminators are ignored (set the
 * member itself).
 */
export type MessageInit<T> = T extends Uint8Array
  ? Uint8Array
  : T extends readonly (infer U)[]
    ? MessageInit<U>[]
    : T extends object
      ? { [K in keyof T]?: MessageInit<T[K]> }
      : T;
