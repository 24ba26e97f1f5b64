// The waypoint's upstream side: the main_internal cluster (connect_terminate -> main_internal), one EDS cluster per
// service port (`inbound-vip|...`) whose endpoints are internal addresses of connect_originate listeners, and per
// destination identity a connect_originate internal listener + ORIGINAL_DST cluster that opens the HBONE tunnel to
// the pod's ztunnel (podIP:15008, CONNECT :authority podIP:targetPort) and checks that exact identity. Endpoints
// outside the mesh (no HBONE) are plain podIP:targetPort addresses in the same clusters, reached in plaintext.
import type { Endpoint, Principal, WaypointModel, WaypointService } from '../model.js';
import { ADS, hboneTlsContext, httpProtocolOptions, originalDstFilter, rawBuffer, typed, type JsonObject } from './common.js';
import { chainProtocols, connectOriginateName, HBONE_PORT, hostPort, MAIN_INTERNAL, ORIGINAL_DST_METADATA, spiffe, vipName, type ChainProtocol } from './names.js';

const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const CLUSTER = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const CLA = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';

export interface UpstreamOptions {
  /** Connect timeout of the HBONE connections to ztunnels (Istio's meshConfig.connectTimeout, 10 s). */
  connectTimeoutMs?: number;
  /** Port of the destination ztunnels' HBONE listener, default 15008 (tests on a shared host use another). */
  upstreamHbonePort?: number;
}

const timeout = (o: UpstreamOptions) => `${(o.connectTimeoutMs ?? 10_000) / 1000}s`;

export function mainInternalCluster(): JsonObject {
  return {
    '@type': CLUSTER,
    name: MAIN_INTERNAL,
    type: 'STATIC',
    connect_timeout: '10s',
    load_assignment: {
      cluster_name: MAIN_INTERNAL,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { envoy_internal_address: { server_listener_name: MAIN_INTERNAL } } } }] }],
    },
    // Carries connect_terminate's filter state (shared ONCE) into the internal connection.
    transport_socket: typed('envoy.transport_sockets.internal_upstream', 'envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport', {
      transport_socket: rawBuffer(),
    }),
  };
}

/** Every service port a route or the model can reach: bound services and extra backends, each once. */
export function reachableServices(model: WaypointModel): WaypointService[] {
  const seen = new Set<string>();
  return [...model.services, ...model.backends].filter((s) => {
    const k = `${s.namespace}/${s.hostname}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Cluster names and what they serve, in a stable order (an unknown protocol's port has a TCP and an HTTP cluster). */
function vipPorts(model: WaypointModel): { name: string; svc: WaypointService; port: number; targetPort: number; protocol: ChainProtocol }[] {
  return reachableServices(model).flatMap((svc) =>
    svc.ports.flatMap((p) =>
      chainProtocols(p.protocol).map((protocol) => ({ name: vipName(p.port, protocol, svc.hostname), svc, port: p.port, targetPort: p.targetPort, protocol })),
    ),
  );
}

export function vipClusters(model: WaypointModel, o: UpstreamOptions = {}): JsonObject[] {
  return vipPorts(model).map(({ name, protocol }) => ({
    '@type': CLUSTER,
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS, service_name: name },
    connect_timeout: timeout(o),
    // The endpoint's metadata (podIP:targetPort) goes along to connect_originate's original_dst listener filter.
    transport_socket: typed('envoy.transport_sockets.internal_upstream', 'envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport', {
      passthrough_metadata: [{ kind: { host: {} }, name: ORIGINAL_DST_METADATA }],
      transport_socket: rawBuffer(),
    }),
    ...(protocol === 'http'
      ? { typed_extension_protocol_options: httpProtocolOptions({ use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} } }) }
      : {}),
  }));
}

/**
 * One endpoint of a vip cluster, podIP:targetPort. HBONE: the connect_originate listener of its identity, with the
 * address as endpoint id and as the metadata the original_dst listener filter reads. Else the plain address (the
 * cluster's internal_upstream socket passes a real socket through as raw_buffer).
 */
function lbEndpoint(e: Endpoint, port: number): JsonObject {
  if (!e.hbone) return { endpoint: { address: { socket_address: { address: e.ip, port_value: port } } } };
  const dst = hostPort(e.ip, port);
  return {
    endpoint: { address: { envoy_internal_address: { server_listener_name: connectOriginateName(e.identity), endpoint_id: dst } } },
    metadata: { filter_metadata: { [ORIGINAL_DST_METADATA]: { local: dst } } },
  };
}

/**
 * The endpoints of every vip cluster: healthy endpoints only (an unhealthy one must not get traffic even in Envoy's
 * panic mode; no endpoint -> Envoy answers 503 itself).
 */
export function vipEndpoints(model: WaypointModel): JsonObject[] {
  return vipPorts(model).map(({ name, svc, port, targetPort }) => ({
    '@type': CLA,
    cluster_name: name,
    endpoints: [
      {
        lb_endpoints: svc.endpoints
          .filter((e) => e.healthy)
          .map((e) => lbEndpoint(e, e.ports[port] ?? targetPort)),
      },
    ],
  }));
}

/** Destination identities of all reachable HBONE endpoints, sorted. */
export function destinationIdentities(model: WaypointModel): Principal[] {
  return [...new Set(reachableServices(model).flatMap((s) => s.endpoints.filter((e) => e.hbone).map((e) => e.identity)))].sort();
}

export function connectOriginateListener(identity: Principal): JsonObject {
  const name = connectOriginateName(identity);
  return {
    '@type': LISTENER,
    name,
    internal_listener: {},
    listener_filters: [originalDstFilter()],
    filter_chains: [
      {
        name,
        filters: [
          typed('envoy.filters.network.tcp_proxy', 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', {
            stat_prefix: 'connect_originate',
            cluster: name,
            // CONNECT :authority = the pod's ip:targetPort, which original_dst restored as the local address.
            tunneling_config: { hostname: '%DOWNSTREAM_LOCAL_ADDRESS%' },
          }),
        ],
      },
    ],
  };
}

export function connectOriginateCluster(identity: Principal, o: UpstreamOptions = {}): JsonObject {
  return {
    '@type': CLUSTER,
    name: connectOriginateName(identity),
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    original_dst_lb_config: { upstream_port_override: o.upstreamHbonePort ?? HBONE_PORT },
    cleanup_interval: '60s',
    connect_timeout: timeout(o),
    typed_extension_protocol_options: httpProtocolOptions({
      common_http_protocol_options: { idle_timeout: '3600s' },
      explicit_http_config: {
        http2_protocol_options: { allow_connect: true, max_concurrent_streams: 100, initial_stream_window_size: 4194304, initial_connection_window_size: 16777216 },
      },
    }),
    transport_socket: typed('envoy.transport_sockets.tls', 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
      // The destination ztunnel presents the workload's own identity: check exactly that one.
      common_tls_context: hboneTlsContext({ exact: spiffe(identity) }),
    }),
  };
}
