// Listener connect_terminate (0.0.0.0:15008): terminates the HBONE mTLS + HTTP/2 CONNECT of ztunnels and hands each
// CONNECT stream's payload to the internal listener main_internal, with the original destination (:authority), the
// client's address and its SPIFFE id in filter state, each shared with that one upstream connection (ONCE).
import { hboneTlsContext, routerFilter, typed, type JsonObject } from './common.js';
import {
  CONNECT_TERMINATE,
  FS_CONNECT_AUTHORITY,
  FS_LOCAL_IP,
  FS_PEER_PRINCIPAL,
  FS_REMOTE_IP,
  HASHABLE_STRING,
  HBONE_PORT,
  MAIN_INTERNAL,
} from './names.js';

const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';

function setFilterState(): JsonObject {
  const entry = (object_key: string, format: string, factory_key?: string): JsonObject => ({
    object_key,
    ...(factory_key ? { factory_key } : {}),
    format_string: { text_format_source: { inline_string: format } },
    shared_with_upstream: 'ONCE',
  });
  return typed('connect_authority', 'envoy.extensions.filters.http.set_filter_state.v3.Config', {
    on_request_headers: [
      entry(FS_LOCAL_IP, '%REQ(:AUTHORITY)%'),
      entry(FS_REMOTE_IP, '%DOWNSTREAM_REMOTE_ADDRESS%'),
      entry(FS_CONNECT_AUTHORITY, '%REQ(:AUTHORITY)%', HASHABLE_STRING),
      entry(FS_PEER_PRINCIPAL, '%DOWNSTREAM_PEER_URI_SAN%', HASHABLE_STRING),
    ],
  });
}

/** `port`: 15008 in a pod; tests on a shared host pick another. */
export function connectTerminateListener(trustDomain: string, port = HBONE_PORT): JsonObject {
  const hcm = typed('envoy.filters.network.http_connection_manager', 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
    stat_prefix: CONNECT_TERMINATE,
    codec_type: 'HTTP2',
    http2_protocol_options: {
      allow_connect: true,
      max_concurrent_streams: 100,
      // Istio's windows: a 4 MiB stream window, 16 MiB per connection (see design §2).
      initial_stream_window_size: 4194304,
      initial_connection_window_size: 16777216,
      connection_keepalive: { interval: '10s', timeout: '20s' },
    },
    upgrade_configs: [{ upgrade_type: 'CONNECT' }],
    // Tunnels live as long as their TCP connection.
    stream_idle_timeout: '0s',
    route_config: {
      name: CONNECT_TERMINATE,
      // main_internal may arrive over CDS after this listener: do not reject the listener for it.
      validate_clusters: false,
      virtual_hosts: [
        {
          name: CONNECT_TERMINATE,
          domains: ['*'],
          routes: [
            {
              match: { connect_matcher: {} },
              route: { cluster: MAIN_INTERNAL, upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] },
            },
          ],
        },
      ],
    },
    http_filters: [setFilterState(), routerFilter()],
  });
  return {
    '@type': LISTENER,
    name: CONNECT_TERMINATE,
    address: { socket_address: { address: '0.0.0.0', port_value: port } },
    filter_chains: [
      {
        name: CONNECT_TERMINATE,
        transport_socket: typed('envoy.transport_sockets.tls', 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext', {
          require_client_certificate: true,
          // The client's chain must lead to the mesh root and name a SPIFFE id of our trust domain.
          common_tls_context: hboneTlsContext({ prefix: `spiffe://${trustDomain}/` }),
        }),
        filters: [hcm],
      },
    ],
  };
}
