// Internal listener main_internal: receives the payload of each HBONE CONNECT from connect_terminate, restores the
// original destination (the service VIP:port of :authority) and client address with the original_dst listener
// filter, picks the service port's filter chain by destination IP, then port (then, for a port of unknown protocol,
// what http_inspector sniffed), and applies that port's L7 policy and routes (HTTP) or proxies it as TCP. A
// destination no chain matches is closed (no default chain).
import type { L7Policy, WaypointModel, WaypointPort, WaypointService } from '../model.js';
import { ms, originalDstFilter, routerFilter, stringValue, typed, type JsonObject } from './common.js';
import { chainProtocols, MAIN_INTERNAL, vipName, type ChainProtocol } from './names.js';
import { httpRbacFilters, tcpRbacFilters } from './rbac.js';
import { httpRoutes } from './routes.js';

const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const NETWORK_INPUTS = 'envoy.extensions.matching.common_inputs.network.v3';

export interface MainInternalOptions {
  /**
   * How long http_inspector waits for the first bytes on a port of unknown protocol before the connection goes to
   * the TCP chain (default 5 s). Server-first protocols (MySQL, SMTP) on such a port wait this long; a slow HTTP
   * client past it gets TCP, where L7 policy fails closed. Long, as Istio's sidecars favour HTTP (no timeout).
   */
  protocolDetectionTimeoutMs?: number;
}

const DEFAULT_DETECTION_TIMEOUT_MS = 5000;

export const chainName = (svc: WaypointService, port: WaypointPort, protocol: ChainProtocol): string => vipName(port.port, protocol, svc.hostname);

function httpChain(svc: WaypointService, port: WaypointPort, policies: readonly L7Policy[]): JsonObject {
  const name = chainName(svc, port, 'http');
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
  const name = chainName(svc, port, 'tcp');
  const proxy = typed('envoy.filters.network.tcp_proxy', 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', { stat_prefix: name, cluster: name });
  return { name, filters: [...tcpRbacFilters(policies, svc, name), proxy] };
}

/** The port's chains: an unknown protocol's TCP chain enforces the network (fail-closed) form of the same policies. */
const portChains = (svc: WaypointService, port: WaypointPort, policies: readonly L7Policy[]): JsonObject[] =>
  chainProtocols(port.protocol).map((c) => (c === 'http' ? httpChain(svc, port, policies) : tcpChain(svc, port, policies)));

/** The address as Envoy prints it (DestinationIPInput's string): IPv6 compressed, lower case. */
export function canonicalIp(ip: string): string {
  return ip.includes(':') ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip;
}

const toChain = (name: string): JsonObject => ({ action: { name: 'chain', typed_config: stringValue(name) } });

/**
 * A port of unknown protocol: http_inspector's verdict (ApplicationProtocolInput, a list of quoted names) picks
 * the HTTP chain for HTTP/1.1 and h2c; anything else (not HTTP, or no verdict by the timeout) the TCP chain.
 */
function sniffedChain(svc: WaypointService, port: WaypointPort): JsonObject {
  const http = toChain(chainName(svc, port, 'http'));
  return {
    matcher: {
      matcher_tree: { input: typed('application-protocol', `${NETWORK_INPUTS}.ApplicationProtocolInput`), exact_match_map: { map: { "'http/1.1'": http, "'h2c'": http } } },
      on_no_match: toChain(chainName(svc, port, 'tcp')),
    },
  };
}

function portMatcher(svc: WaypointService): JsonObject {
  const map: Record<string, JsonObject> = {};
  for (const p of svc.ports) map[String(p.port)] = p.protocol === 'unknown' ? sniffedChain(svc, p) : toChain(chainName(svc, p, p.protocol));
  return { matcher_tree: { input: typed('port', `${NETWORK_INPUTS}.DestinationPortInput`), exact_match_map: { map } } };
}

/**
 * Destination IP (a service VIP) -> destination port -> chain name (or, for an unknown protocol, the sniffed
 * application protocol -> chain name). VIPs are single addresses, so an exact map on the address string does
 * (Istio's IPMatcher is marked work-in-progress in Envoy 1.40).
 */
function filterChainMatcher(services: readonly WaypointService[]): JsonObject {
  const map: Record<string, JsonObject> = {};
  for (const s of services) {
    if (s.ports.length === 0) continue;
    for (const vip of s.vips) map[canonicalIp(vip)] = { matcher: portMatcher(s) };
  }
  return { matcher_tree: { input: typed('ip', `${NETWORK_INPUTS}.DestinationIPInput`), exact_match_map: { map } } };
}

/**
 * Port numbers http_inspector can skip: declared on every service that has them (the listener-filter predicate
 * sees the port, not the VIP, so a port unknown for one service is sniffed for all). Undefined: none to sniff.
 */
export function unsniffedPorts(services: readonly WaypointService[]): number[] | undefined {
  const ports = services.flatMap((s) => s.ports);
  const sniffed = new Set(ports.filter((p) => p.protocol === 'unknown').map((p) => p.port));
  if (sniffed.size === 0) return undefined;
  return [...new Set(ports.map((p) => p.port).filter((p) => !sniffed.has(p)))].sort((a, b) => a - b);
}

/** http_inspector, off for declared ports so server-first protocols there never wait for it (as Istio). */
function httpInspector(skip: readonly number[]): JsonObject {
  const filter = typed('envoy.filters.listener.http_inspector', 'envoy.extensions.filters.listener.http_inspector.v3.HttpInspector');
  if (skip.length === 0) return filter;
  const range = (p: number): JsonObject => ({ destination_port_range: { start: p, end: p + 1 } });
  return { ...filter, filter_disabled: skip.length === 1 ? range(skip[0]!) : { or_match: { rules: skip.map(range) } } };
}

/** Sniffing: http_inspector and its timeout, after which the connection continues (to the TCP chain), not closes. */
function sniffing(services: readonly WaypointService[], o: MainInternalOptions): { filters: JsonObject[]; listener: JsonObject } {
  const skip = unsniffedPorts(services);
  if (!skip) return { filters: [], listener: {} };
  return {
    filters: [httpInspector(skip)],
    listener: { listener_filters_timeout: ms(o.protocolDetectionTimeoutMs ?? DEFAULT_DETECTION_TIMEOUT_MS), continue_on_listener_filters_timeout: true },
  };
}

export function mainInternalListener(model: WaypointModel, o: MainInternalOptions = {}): JsonObject {
  const chains = model.services.flatMap((s) => s.ports.flatMap((p) => portChains(s, p, model.policies)));
  if (chains.length === 0) {
    // Envoy wants a chain; with no service every connection is closed at once.
    chains.push({ name: 'none', filters: [typed('envoy.filters.network.direct_response', 'envoy.extensions.filters.network.direct_response.v3.Config')] });
  }
  const sniff = sniffing(model.services, o);
  return {
    '@type': LISTENER,
    name: MAIN_INTERNAL,
    internal_listener: {},
    traffic_direction: 'INBOUND',
    listener_filters: [originalDstFilter(), ...sniff.filters],
    ...sniff.listener,
    filter_chains: chains,
    ...(model.services.some((s) => s.ports.length > 0) ? { filter_chain_matcher: filterChainMatcher(model.services) } : {}),
  };
}
