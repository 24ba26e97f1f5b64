// Where an outbound connection goes: a pure decision over the state, no sockets.
import { formatIdentity, workloadIdentity } from '../identity/spiffe.js';
import type { AddressResolver, ProxyState } from '../state/index.js';
import { gatewayDestination, serviceKey, type GatewayAddress, type Service, type Workload } from '../state/types.js';

export const HBONE_PORT = 15008;

export type Route =
  | {
      kind: 'hbone';
      /** Where the tunnel goes: the destination's ztunnel (port 15008), or a waypoint pod. */
      hboneIp: string;
      hbonePort: number;
      /** What the CONNECT asks for (its `:authority`): the workload's IP and target port; through a waypoint, the address
       *  the app dialled (the service VIP and port, or the pod IP and port). */
      targetIp: string;
      targetPort: number;
      expectedIdentities: string[];
      /** The workload the tunnel reaches: the destination, or the waypoint pod. */
      workload: Workload;
      service?: Service;
      /** Set when the connection goes through a waypoint (the waypoint as the service or workload names it). */
      waypoint?: GatewayAddress;
    }
  | { kind: 'tcp'; ip: string; port: number; workload: Workload; service?: Service }
  | { kind: 'passthrough'; ip: string; port: number }
  | {
      kind: 'reject';
      reason: string;
      service?: Service;
      /** The waypoint the connection had to go through. */
      waypoint?: GatewayAddress;
      /** The waypoint is not in the state at all (an on-demand lookup may find it). */
      waypointUnknown?: true;
    };

export type Picker = (n: number) => number;
export const randomPicker: Picker = (n) => Math.floor(Math.random() * n);

/** The workload port a service port maps to: the workload's own mapping first, then the service's; 0 = none. */
export function targetPort(service: Service, workload: Workload, servicePort: number): number {
  const own = workload.services.get(`${service.namespace}/${service.hostname}`)?.get(servicePort);
  if (own) return own;
  return service.ports.get(servicePort) ?? 0;
}

/** The identities a tunnel to `w` accepts: the workload's own, then the service's subjectAltNames (without repeats). */
function identitiesOf(w: Workload, service?: Service): string[] {
  const ids = [formatIdentity(workloadIdentity(w))];
  if (service) for (const san of service.subjectAltNames) if (!ids.includes(san)) ids.push(san);
  return ids;
}

function toWorkload(w: Workload, ip: string, port: number, service?: Service): Route {
  if (w.protocol === 'HBONE') {
    return { kind: 'hbone', hboneIp: ip, hbonePort: HBONE_PORT, targetIp: ip, targetPort: port, expectedIdentities: identitiesOf(w, service), workload: w, service };
  }
  return { kind: 'tcp', ip, port, workload: w, service };
}

interface Endpoint {
  w: Workload;
  ip: string;
  port: number;
}

/** A healthy endpoint of a service, reachable in our network, serving the port (as its target port); else why not. */
function pickEndpoint(state: ProxyState, service: Service, port: number, network: string, pick: Picker): Endpoint | string {
  if (!service.ports.has(port)) return `service ${service.hostname} has no port ${port}`;
  const candidates: Endpoint[] = [];
  for (const { workload } of state.endpointsOf(service)) {
    if (workload.status !== 'Healthy' || workload.network !== network) continue;
    const ip = workload.workloadIps[0];
    const tp = targetPort(service, workload, port);
    if (ip && tp) candidates.push({ w: workload, ip, port: tp });
  }
  if (candidates.length === 0) return `no healthy endpoint for ${service.hostname}:${port}`;
  return candidates[pick(candidates.length)]!;
}

/** Pick an endpoint of a service that is healthy, reachable in our network, and serves the port. */
export function routeToService(state: ProxyState, service: Service, port: number, network: string, pick: Picker): Route {
  const e = pickEndpoint(state, service, port, network, pick);
  if (typeof e === 'string') return { kind: 'reject', reason: e, service };
  return toWorkload(e.w, e.ip, e.port, service);
}

/** What a waypoint names in the state: its service (by hostname, or a VIP), or a workload at one of its IPs. */
type WaypointTarget = { kind: 'service'; service: Service } | { kind: 'workload'; workload: Workload; ip: string };

function findWaypoint(state: ProxyState, gw: GatewayAddress): WaypointTarget | undefined {
  if (gw.kind === 'address') {
    const dest = state.findDestination(gw.network, gw.address);
    return dest?.kind === 'workload' ? { ...dest, ip: gw.address } : dest;
  }
  const service = state.services.get(serviceKey(gw));
  return service && { kind: 'service', service };
}

/** Whether the source is one of the waypoint's own pods (Istio's check_from_waypoint): its traffic must not loop back. */
function fromWaypoint(state: ProxyState, gw: GatewayAddress, src: Workload | undefined): boolean {
  if (!src) return false;
  const target = findWaypoint(state, gw);
  if (!target) return false;
  if (target.kind === 'workload') return target.workload.uid === src.uid;
  for (const { workload } of state.endpointsOf(target.service)) if (workload.uid === src.uid) return true;
  return false;
}

/**
 * Through a waypoint, as Istio's ztunnel does: HBONE to a healthy waypoint pod on the waypoint's hboneMtlsPort (mapped
 * to its target port), asking for the original destination. Fails closed: never around the waypoint.
 */
function viaWaypoint(state: ProxyState, gw: GatewayAddress, network: string, ip: string, port: number, pick: Picker, service?: Service): Route {
  const target = findWaypoint(state, gw);
  if (!target) return { kind: 'reject', reason: `waypoint ${gatewayDestination(gw)} not found`, service, waypoint: gw, waypointUnknown: true };
  let e: Endpoint | string;
  if (target.kind === 'service') e = pickEndpoint(state, target.service, gw.hboneMtlsPort, network, pick);
  else {
    const w = target.workload;
    e = w.status === 'Healthy' && w.network === network ? { w, ip: target.ip, port: gw.hboneMtlsPort } : `workload ${w.name} is not healthy in network ${JSON.stringify(network)}`;
  }
  if (typeof e === 'string') return { kind: 'reject', reason: `waypoint ${gatewayDestination(gw)}: ${e}`, service, waypoint: gw };
  const waypointService = target.kind === 'service' ? target.service : undefined;
  return {
    kind: 'hbone', hboneIp: e.ip, hbonePort: e.port, targetIp: ip, targetPort: port,
    expectedIdentities: identitiesOf(e.w, waypointService), workload: e.w, service, waypoint: gw,
  };
}

/**
 * `src` is the local workload the connection comes from: a waypoint's own pods go direct. A service with a waypoint
 * sends everything through it; a workload's waypoint applies only to traffic addressed to the workload's own IP.
 */
export function route(state: ProxyState, network: string, dstIp: string, dstPort: number, pick: Picker = randomPicker, src?: Workload): Route {
  const dest = state.findDestination(network, dstIp);
  if (!dest) return { kind: 'passthrough', ip: dstIp, port: dstPort };
  if (dest.kind === 'service') {
    const gw = dest.service.waypoint;
    if (gw && !fromWaypoint(state, gw, src)) return viaWaypoint(state, gw, network, dstIp, dstPort, pick, dest.service);
    return routeToService(state, dest.service, dstPort, network, pick);
  }
  // The workload's own copy of the address (the same text): an open connection then holds no string of its own.
  const ip = dest.workload.workloadIps.find((x) => x === dstIp) ?? dstIp;
  const gw = dest.workload.waypoint;
  if (gw && !fromWaypoint(state, gw, src)) return viaWaypoint(state, gw, network, ip, dstPort, pick);
  return toWorkload(dest.workload, ip, dstPort);
}

/** Ask the resolver for a waypoint the state does not have; or note that a known one is in use. */
function demandWaypoint(resolver: AddressResolver, gw: GatewayAddress, known: boolean): Promise<void> | undefined {
  if (gw.kind === 'address') {
    if (!known) return resolver.fetch(gw.network, gw.address);
    resolver.touch?.(gw.network, gw.address);
  } else {
    if (!known) return resolver.fetchService?.(gw.namespace, gw.hostname);
    resolver.touchService?.(gw.namespace, gw.hostname);
  }
  return undefined;
}

/**
 * route(), after asking the state's resolver (xDS on-demand) about an unknown destination, and then about an unknown
 * waypoint: the caller is held until the answers arrive or the resolver's bounded waits end; a destination still
 * unknown then means passthrough, a waypoint still unknown a reject.
 */
export async function resolveAndRoute(
  state: ProxyState, network: string, dstIp: string, dstPort: number, pick: Picker = randomPicker, src?: Workload,
): Promise<Route> {
  const resolver = state.resolver;
  if (resolver) {
    if (state.findDestination(network, dstIp)) resolver.touch?.(network, dstIp);
    else await resolver.fetch(network, dstIp);
  }
  const r = route(state, network, dstIp, dstPort, pick, src);
  if (!resolver || r.kind === 'tcp' || r.kind === 'passthrough' || !r.waypoint) return r;
  const unknown = r.kind === 'reject' && r.waypointUnknown === true;
  const fetching = demandWaypoint(resolver, r.waypoint, !unknown);
  if (!fetching) return r;
  await fetching;
  return route(state, network, dstIp, dstPort, pick, src);
}
