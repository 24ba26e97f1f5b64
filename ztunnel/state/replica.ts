// The state's changes as messages, so a proxy thread can keep a replica of the main thread's state (workers/). Every
// mutation of ProxyState is one op; replaying the ops in order on an empty ProxyState yields the same state.
// Workloads cross threads as their own fields plus their profile (structured clone keeps no getters or sharing); the
// receiving side shares profiles again through the same pools as xDS conversion.
import { intern, sharedGatewayAddress, sharedPortMap, sharedProfile, sharedServicePorts, sharedStrings } from './intern.js';
import { ProfiledWorkload, type WorkloadProfile } from './profiled-workload.js';
import type { ProxyState } from './index.js';
import type { Authorization, PortMap, Service, Workload } from './types.js';

export type StateOp<W = Workload> =
  | { op: 'replace'; workloads: W[]; services: Service[]; policies: Authorization[] }
  | { op: 'upsertWorkload'; workload: W; notify: boolean }
  | { op: 'removeWorkload'; uid: string; notify: boolean }
  | { op: 'upsertService'; service: Service; notify: boolean }
  | { op: 'removeService'; key: string; notify: boolean }
  | { op: 'upsertPolicy'; policy: Authorization; notify: boolean }
  | { op: 'removePolicy'; key: string; notify: boolean }
  | { op: 'changed' };

/** A workload as it crosses to another thread. */
export interface WireWorkload {
  uid: string;
  name: string;
  workloadIps: string[];
  node: string;
  profile: WorkloadProfile;
}

function toWire(w: Workload): WireWorkload {
  if (w instanceof ProfiledWorkload) return { uid: w.uid, name: w.name, workloadIps: w.workloadIps, node: w.node, profile: w.profile };
  const { uid, name, workloadIps, node, ...profile } = w; // a plain object (local file): every field is its own
  return { uid, name, workloadIps, node, profile };
}

function fromWire(w: WireWorkload): Workload {
  const p = w.profile;
  const services: [string, PortMap][] = [...p.services].map(([svc, ports]) => [svc, sharedPortMap([...ports])]);
  const profile = sharedProfile({
    namespace: intern(p.namespace), serviceAccount: intern(p.serviceAccount), trustDomain: intern(p.trustDomain), network: intern(p.network),
    protocol: p.protocol, hostname: intern(p.hostname), canonicalName: intern(p.canonicalName), canonicalRevision: intern(p.canonicalRevision),
    workloadName: intern(p.workloadName), workloadType: intern(p.workloadType), clusterId: intern(p.clusterId), status: p.status,
    authorizationPolicies: sharedStrings(p.authorizationPolicies), services: sharedServicePorts(services),
    waypoint: p.waypoint && sharedGatewayAddress(p.waypoint),
  });
  return new ProfiledWorkload(w.uid, w.name, w.workloadIps, intern(w.node), profile);
}

/** A service as it arrives: its waypoint shared again (the services of a namespace mostly use one). */
const fromWireService = (s: Service): Service => (s.waypoint ? { ...s, waypoint: sharedGatewayAddress(s.waypoint) } : s);

/** The op as it is posted to another thread. */
export function encodeOp(op: StateOp): StateOp<WireWorkload> {
  switch (op.op) {
    case 'replace':
      return { ...op, workloads: op.workloads.map(toWire) };
    case 'upsertWorkload':
      return { ...op, workload: toWire(op.workload) };
    default:
      return op;
  }
}

/** Replay one op (from encodeOp) on a replica. */
export function applyOp(state: ProxyState, op: StateOp<WireWorkload>): void {
  switch (op.op) {
    case 'replace':
      return state.replace({ workloads: op.workloads.map(fromWire), services: op.services.map(fromWireService), policies: op.policies });
    case 'upsertWorkload':
      return state.upsertWorkload(fromWire(op.workload), op.notify);
    case 'removeWorkload':
      return state.removeWorkload(op.uid, op.notify);
    case 'upsertService':
      return state.upsertService(fromWireService(op.service), op.notify);
    case 'removeService':
      return state.removeService(op.key, op.notify);
    case 'upsertPolicy':
      return state.upsertPolicy(op.policy, op.notify);
    case 'removePolicy':
      return state.removePolicy(op.key, op.notify);
    case 'changed':
      return state.changed();
  }
}
