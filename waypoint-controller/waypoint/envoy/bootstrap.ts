// The waypoint Envoy's bootstrap (what the controller puts in the Gateway's ConfigMap) and its command line.
//
// xDS: delta ADS to the controller's 15012 over TLS checked against the mesh root, with the name the controller's
// certificate carries (istiod.istio-system.svc) since it may be dialled by IP. Authentication: the pod's projected
// service-account token (audience istio-ca), which the kubelet rotates. Upstream Envoy re-reads it with the Google
// gRPC client's `envoy.grpc_credentials.file_based_metadata` call credentials: the file is read each time a call
// (the ADS stream) starts, so every reconnect presents the current token; a stream outlives its token, as with
// Istio (the token is only checked when a stream opens). Envoy's own gRPC client (envoy_grpc) only has static
// metadata, and STS (sts_service) would need a token-exchange endpoint per pod (Istio's pilot-agent).
//
// The node id comes from the command line (`--service-node`), since a bootstrap cannot expand the downward API's
// environment variables but Kubernetes expands $(VAR) in container args.
//
// Static listeners: readiness on 15021 (/healthz/ready -> admin /ready: 200 once Envoy has its initial xDS config)
// and Prometheus stats on 15090 (/stats/prometheus -> admin); only those two paths reach the admin, which itself binds
// 127.0.0.1.
import { routerFilter, typed, type JsonObject } from './common.js';

export interface BootstrapOptions {
  xdsHost: string;
  xdsPort: number;
  /** Name expected in the controller's certificate (SNI and SAN check), e.g. istiod.istio-system.svc. */
  xdsServerName: string;
  /** The mesh root (ConfigMap istio-ca-root-cert), e.g. /var/run/secrets/istio/root-cert.pem. */
  rootCertPath: string;
  /** The projected token, e.g. /var/run/secrets/tokens/istio-token. */
  tokenPath: string;
  /** Sent as the `clusterid` header, as Istio's proxies do. */
  clusterId: string;
  /** Default 15000 (127.0.0.1 only). */
  adminPort?: number;
  /** Default 15021. */
  readinessPort?: number;
  /** Default 15090. */
  statsPort?: number;
  /** Plaintext xDS without a token (the controller's debugging port 15010; tests). */
  insecure?: boolean;
}

export const XDS_CLUSTER = 'xds-grpc';
const ADMIN_CLUSTER = 'admin';

function adminRouteListener(name: string, port: number, routes: JsonObject[]): JsonObject {
  return {
    name,
    address: { socket_address: { address: '0.0.0.0', port_value: port } },
    filter_chains: [
      {
        filters: [
          typed('envoy.filters.network.http_connection_manager', 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
            stat_prefix: name,
            route_config: { name, virtual_hosts: [{ name, domains: ['*'], routes }] },
            http_filters: [routerFilter()],
          }),
        ],
      },
    ],
  };
}

function grpcService(o: BootstrapOptions): JsonObject {
  const metadata = [{ key: 'clusterid', value: o.clusterId }];
  if (o.insecure) return { envoy_grpc: { cluster_name: XDS_CLUSTER }, initial_metadata: metadata };
  return {
    google_grpc: {
      target_uri: `${o.xdsHost.includes(':') ? `[${o.xdsHost}]` : o.xdsHost}:${o.xdsPort}`,
      stat_prefix: XDS_CLUSTER,
      channel_credentials: { ssl_credentials: { root_certs: { filename: o.rootCertPath } } },
      credentials_factory_name: 'envoy.grpc_credentials.file_based_metadata',
      call_credentials: [
        {
          from_plugin: {
            name: 'envoy.grpc_credentials.file_based_metadata',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig',
              secret_data: { filename: o.tokenPath },
              header_key: 'authorization',
              header_prefix: 'Bearer ',
            },
          },
        },
      ],
      channel_args: { args: { 'grpc.ssl_target_name_override': { string_value: o.xdsServerName }, 'grpc.default_authority': { string_value: o.xdsServerName } } },
    },
    initial_metadata: metadata,
  };
}

function staticCluster(name: string, host: string, port: number, extra: JsonObject = {}): JsonObject {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }] },
    ...extra,
  };
}

/** The bootstrap, as proto3 JSON (write it as JSON; Envoy reads `-c bootstrap.json`). */
export function waypointBootstrap(o: BootstrapOptions): JsonObject {
  const adminPort = o.adminPort ?? 15000;
  const clusters: JsonObject[] = [staticCluster(ADMIN_CLUSTER, '127.0.0.1', adminPort)];
  if (o.insecure) {
    clusters.push(
      staticCluster(XDS_CLUSTER, o.xdsHost, o.xdsPort, {
        typed_extension_protocol_options: {
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
            '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
            explicit_http_config: { http2_protocol_options: {} },
          },
        },
      }),
    );
  }
  return {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    // Internal listeners (main_internal, connect_originate|*) need this extension.
    bootstrap_extensions: [typed('envoy.bootstrap.internal_listener', 'envoy.extensions.bootstrap.internal_listener.v3.InternalListener', { buffer_size_kb: 64 })],
    dynamic_resources: {
      ads_config: { api_type: 'DELTA_GRPC', transport_api_version: 'V3', set_node_on_first_message_only: true, grpc_services: [grpcService(o)] },
      lds_config: { ads: {}, resource_api_version: 'V3' },
      cds_config: { ads: {}, resource_api_version: 'V3' },
    },
    static_resources: {
      listeners: [
        adminRouteListener('readiness', o.readinessPort ?? 15021, [
          { match: { path: '/healthz/ready' }, route: { cluster: ADMIN_CLUSTER, prefix_rewrite: '/ready' } },
        ]),
        adminRouteListener('prometheus', o.statsPort ?? 15090, [{ match: { path: '/stats/prometheus' }, route: { cluster: ADMIN_CLUSTER } }]),
      ],
      clusters,
    },
  };
}

export interface EnvoyArgsOptions {
  /** Where the ConfigMap's bootstrap is mounted, e.g. /etc/ambit/envoy/bootstrap.json. */
  configPath: string;
  gateway: string;
  /** Cluster DNS domain, default cluster.local. */
  clusterDomain?: string;
  logLevel?: string;
}

/**
 * Envoy's arguments for the waypoint Deployment. `$(INSTANCE_IP)`, `$(POD_NAME)`, `$(POD_NAMESPACE)` must be env vars
 * of the container (downward API: status.podIP, metadata.name, metadata.namespace); Kubernetes expands them.
 */
export function waypointEnvoyArgs(o: EnvoyArgsOptions): string[] {
  const domain = o.clusterDomain ?? 'cluster.local';
  return [
    '-c', o.configPath,
    '--service-node', `waypoint~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.${domain}`,
    '--service-cluster', `${o.gateway}.$(POD_NAMESPACE)`,
    '--config-yaml', '{"node":{"metadata":{"NAME":"$(POD_NAME)","NAMESPACE":"$(POD_NAMESPACE)","INSTANCE_IPS":"$(INSTANCE_IP)"}}}',
    // One Envoy per pod; hot restart's shared memory is not wanted (read-only root, non-root user).
    '--disable-hot-restart',
    '--log-level', o.logLevel ?? 'warning',
  ];
}
