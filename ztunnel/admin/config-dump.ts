// The state as /config_dump shows it: Istio ztunnel's camelCase shape, plain JSON values (maps become objects).
import type { ProxyState } from '../state/index.js';
import { gatewayDestination, type GatewayAddress, type PortMap } from '../state/types.js';

/** A waypoint as Istio's ztunnel dumps it: the destination as one string, `<ns>/<hostname>` or `<network>/<ip>`. */
export const dumpGateway = (g: GatewayAddress | undefined) => g && { destination: gatewayDestination(g), hboneMtlsPort: g.hboneMtlsPort };

const portMaps = (m: ReadonlyMap<string, PortMap>) => Object.fromEntries([...m].map(([k, v]) => [k, Object.fromEntries(v)]));

/** Workloads, services (with their endpoints) and policies; what is undefined (no waypoint) is left out of the JSON. */
export function dumpState(state: ProxyState) {
  return {
    // Field by field, in the Workload interface's order: a workload from xDS reads most fields from a shared profile.
    workloads: [...state.workloads.all()].map((w) => ({
      uid: w.uid, name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount, trustDomain: w.trustDomain,
      workloadIps: w.workloadIps, network: w.network, protocol: w.protocol, node: w.node, hostname: w.hostname,
      canonicalName: w.canonicalName, canonicalRevision: w.canonicalRevision, workloadName: w.workloadName,
      workloadType: w.workloadType, clusterId: w.clusterId, status: w.status, authorizationPolicies: w.authorizationPolicies,
      services: portMaps(w.services), waypoint: dumpGateway(w.waypoint),
    })),
    services: [...state.services.all()].map((s) => ({
      ...s,
      vips: s.vips.map((v) => `${v.network}/${v.address}`),
      ports: Object.fromEntries(s.ports),
      waypoint: dumpGateway(s.waypoint),
      endpoints: [...state.endpointsOf(s)].map(({ workload, endpoint }) => ({
        workloadUid: workload.uid, status: workload.status, port: Object.fromEntries(endpoint.ports),
      })),
    })),
    policies: [...state.policies.all()],
  };
}
