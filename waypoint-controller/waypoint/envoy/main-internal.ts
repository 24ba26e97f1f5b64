// Internal listener main_internal: receives the payload of each HBONE CONNECT from connect_terminate, restores the
// original destination (the service VIP:port of :authority) and client address with the original_dst listener
// filter, picks the service port's filter chain by destination IP, then port, and applies that port's L7 policy and
// routes (HTTP) or proxies it as TCP. A destination no chain matches is closed (no default chain).
import type { L7Policy, WaypointModel, WaypointPort, WaypointService } from '../model.js';
import { originalDstFilter, routerFilter, stringValue, typed, type JsonObject } from './common.js';
import { MAIN_INTERNAL, vipName } from './names.js';
import { httpRbacFilters, tcpRbacFilters } from './rbac.js';
import { httpRoutes } from './routes.js';

const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const NETWORK_INPUTS = 'envoy.extensions.matching.common_inputs.network.v3';

export const chainName = (svc: WaypointService, port: WaypointPort): string => vipName(port.port, port.protocol, svc.hostname);

function httpChain(svc: WaypointService, port: WaypointPort, policies: readonly L7Policy[]): JsonObject {
  const name = chainName(svc, port);
  const hcm = typed('envoy.filters.network.http_connection_manager', 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
    stat_prefix: name,
    // Whatever the app spoke inside the tunnel: HTTP/1.1 or h2c prior knowledge.
    codec_type: 'AUTO',
    route_config: {
      name,
      validate_clusters: false,
      virtual_hosts: [{ name: `inbound|http|${port.port}`, domains: ['*'], routes: httpRoutes(port.routes, { namespace: svc.namespace, hostname: svc.hostname, port: port.port }) }],
    },
    http_filters: [...httpRbacFilters(policies, svc), routerFilter()],
  });
  return { name, filters: [hcm] };
}

function tcpChain(svc: WaypointService, port: WaypointPort, policies: readonly L7Policy[]): JsonObject {
  const name = chainName(svc, port);
  const proxy = typed('envoy.filters.network.tcp_proxy', 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', { stat_prefix: name, cluster: name });
  return { name, filters: [...tcpRbacFilters(policies, svc, name), proxy] };
}

/** The address as Envoy prints it (DestinationIPInput's string): IPv6 compressed, lower case. */
export function canonicalIp(ip: string): string {
  return ip.includes(':') ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip;
}

function portMatcher(svc: WaypointService): JsonObject {
  const map: Record<string, JsonObject> = {};
  for (const p of svc.ports) map[String(p.port)] = { action: { name: 'chain', typed_config: stringValue(chainName(svc, p)) } };
  return { matcher_tree: { input: typed('port', `${NETWORK_INPUTS}.DestinationPortInput`), exact_match_map: { map } } };
}

/**
 * Destination IP (a service VIP) -> destination port -> chain name. VIPs are single addresses, so an exact map on
 * the address string does (Istio's IPMatcher is marked work-in-progress in Envoy 1.40).
 */
function filterChainMatcher(services: readonly WaypointService[]): JsonObject {
  const map: Record<string, JsonObject> = {};
  for (const s of services) {
    if (s.ports.length === 0) continue;
    for (const vip of s.vips) map[canonicalIp(vip)] = { matcher: portMatcher(s) };
  }
  return { matcher_tree: { input: typed('ip', `${NETWORK_INPUTS}.DestinationIPInput`), exact_match_map: { map } } };
}

export function mainInternalListener(model: WaypointModel): JsonObject {
  const chains = model.services.flatMap((s) => s.ports.map((p) => (p.protocol === 'http' ? httpChain(s, p, model.policies) : tcpChain(s, p, model.policies))));
  if (chains.length === 0) {
    // Envoy wants a chain; with no service every connection is closed at once.
    chains.push({ name: 'none', filters: [typed('envoy.filters.network.direct_response', 'envoy.extensions.filters.network.direct_response.v3.Config')] });
  }
  return {
    '@type': LISTENER,
    name: MAIN_INTERNAL,
    internal_listener: {},
    traffic_direction: 'INBOUND',
    listener_filters: [originalDstFilter()],
    filter_chains: chains,
    ...(model.services.some((s) => s.ports.length > 0) ? { filter_chain_matcher: filterChainMatcher(model.services) } : {}),
  };
}
