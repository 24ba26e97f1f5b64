// Where an outbound connection goes: a pure decision over the state, no sockets.
import { formatIdentity, workloadIdentity } from '../identity/spiffe.js';
import type { ProxyState } from '../state/index.js';
import type { Service, Workload } from '../state/types.js';

export const HBONE_PORT = 15008;

export type Route =
  | {
      kind: 'hbone';
      /** Where the tunnel goes (the destination's ztunnel, port 15008). */
      hboneIp: string;
      hbonePort: number;
      /** What the CONNECT asks for: the workload's IP and the target port. */
      targetIp: string;
      targetPort: number;
      expectedIdentities: string[];
      workload: Workload;
      service?: Service;
    }
  | { kind: 'tcp'; ip: string; port: number; workload: Workload; service?: Service }
  | { kind: 'passthrough'; ip: string; port: number }
  | { kind: 'reject'; reason: string; service?: Service };

export type Picker = (n: number) => number;
export const randomPicker: Picker = (n) => Math.floor(Math.random() * n);

/** The workload port a service port maps to: the workload's own mapping first, then the service's; 0 = none. */
export function targetPort(service: Service, workload: Workload, servicePort: number): number {
  const own = workload.services.get(`${service.namespace}/${service.hostname}`)?.get(servicePort);
  if (own) return own;
  return service.ports.get(servicePort) ?? 0;
}

function toWorkload(w: Workload, ip: string, port: number, service?: Service): Route {
  if (w.protocol === 'HBONE') {
    const expectedIdentities = [formatIdentity(workloadIdentity(w))];
    if (service) for (const san of service.subjectAltNames) if (!expectedIdentities.includes(san)) expectedIdentities.push(san);
    return { kind: 'hbone', hboneIp: ip, hbonePort: HBONE_PORT, targetIp: ip, targetPort: port, expectedIdentities, workload: w, service };
  }
  return { kind: 'tcp', ip, port, workload: w, service };
}

/** Pick an endpoint of a service that is healthy, reachable in our network, and serves the port. */
export function routeToService(state: ProxyState, service: Service, port: number, network: string, pick: Picker): Route {
  if (!service.ports.has(port)) return { kind: 'reject', reason: `service ${service.hostname} has no port ${port}`, service };
  const candidates: { w: Workload; ip: string; port: number }[] = [];
  for (const { workload } of state.endpointsOf(service)) {
    if (workload.status !== 'Healthy' || workload.network !== network) continue;
    const ip = workload.workloadIps[0];
    const tp = targetPort(service, workload, port);
    if (ip && tp) candidates.push({ w: workload, ip, port: tp });
  }
  if (candidates.length === 0) return { kind: 'reject', reason: `no healthy endpoint for ${service.hostname}:${port}`, service };
  const c = candidates[pick(candidates.length)]!;
  return toWorkload(c.w, c.ip, c.port, service);
}

export function route(state: ProxyState, network: string, dstIp: string, dstPort: number, pick: Picker = randomPicker): Route {
  const dest = state.findDestination(network, dstIp);
  if (!dest) return { kind: 'passthrough', ip: dstIp, port: dstPort };
  if (dest.kind === 'service') return routeToService(state, dest.service, dstPort, network, pick);
  // The workload's own copy of the address (the same text): an open connection then holds no string of its own.
  return toWorkload(dest.workload, dest.workload.workloadIps.find((ip) => ip === dstIp) ?? dstIp, dstPort);
}

/**
 * route(), after asking the state's resolver (xDS on-demand) about an unknown destination: the caller is held until the
 * answer arrives or the resolver's bounded wait ends; still unknown then means passthrough.
 */
export async function resolveAndRoute(state: ProxyState, network: string, dstIp: string, dstPort: number, pick: Picker = randomPicker): Promise<Route> {
  const resolver = state.resolver;
  if (resolver) {
    if (state.findDestination(network, dstIp)) resolver.touch?.(network, dstIp);
    else await resolver.fetch(network, dstIp);
  }
  return route(state, network, dstIp, dstPort, pick);
}
