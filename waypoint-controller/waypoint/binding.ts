// Which waypoint a Service or a Pod uses, with istiod's precedence (pilot/pkg/serviceregistry/ambient/waypoints.go):
// the object's own `istio.io/use-waypoint` (+ `-namespace`) beats its Namespace's; `none` opts out and stops the
// inheritance; a Pod's waypoint never comes from its Service; the waypoint's `istio.io/waypoint-for` decides what
// it accepts; cross-namespace use needs the HBONE listener's allowedRoutes. A binding that cannot take leaves the
// traffic as it was (no waypoint in xDS) and says why.
import type { V1Namespace, V1ObjectMeta, V1Pod, V1Service } from '@kubernetes/client-node';
import type { GatewayAddress, MessageInit } from '../../protos/index.js';
import { allowsNamespace, GATEWAY_NAME_LABEL, HBONE_PORT, hasAddresses, MANAGED_LABEL, type Waypoint } from './gateway.js';

export const USE_WAYPOINT = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE = 'istio.io/use-waypoint-namespace';

/** Istio's condition on a bound Service. */
export const WAYPOINT_BOUND = 'istio.io/WaypointBound';

export type Binding =
  /** Nothing asks for a waypoint (or `none`). */
  | { kind: 'unbound' }
  | { kind: 'bound'; waypoint: Waypoint; inherited: boolean }
  /** Asked for, but not taken: `reason` as Istio's condition reasons. */
  | { kind: 'failed'; ref: string; reason: 'NotFound' | 'NotReady' | 'UnsupportedTrafficType' | 'AttachmentDenied'; message: string; inherited: boolean };

type Request = { namespace: string; name: string; inherited: boolean } | 'none' | undefined;

/** The waypoint an object's labels ask for: undefined = no label here, 'none' = opted out. */
function requestOf(meta: V1ObjectMeta | undefined, inherited: boolean): Request {
  const name = meta?.labels?.[USE_WAYPOINT];
  if (!name) return undefined;
  if (name === 'none') return 'none';
  const namespace = meta?.labels?.[USE_WAYPOINT_NAMESPACE] || (inherited ? meta?.name : meta?.namespace) || '';
  return { namespace, name, inherited };
}

const requested = (own: V1ObjectMeta | undefined, ns: V1Namespace | undefined): Request => requestOf(own, false) ?? requestOf(ns?.metadata, true);

function resolve(
  req: Request,
  kind: 'service' | 'workload',
  fromNamespace: string,
  ns: V1Namespace | undefined,
  waypoints: ReadonlyMap<string, Waypoint>,
): Binding {
  if (req === undefined || req === 'none') return { kind: 'unbound' };
  const ref = `${req.namespace}/${req.name}`;
  const fail = (reason: Extract<Binding, { kind: 'failed' }>['reason'], message: string): Binding => ({ kind: 'failed', ref, reason, message, inherited: req.inherited });
  const w = waypoints.get(ref);
  if (!w) return fail('NotFound', `waypoint ${ref} not found`);
  if (w.trafficType !== kind && w.trafficType !== 'all') {
    // istiod: a workload that only inherits a namespace binding to a service waypoint silently gets none.
    if (kind === 'workload' && req.inherited) return { kind: 'unbound' };
    return fail('UnsupportedTrafficType', `waypoint ${ref} accepts ${w.trafficType} traffic, not ${kind} traffic`);
  }
  if (!allowsNamespace(w, fromNamespace, ns)) return fail('AttachmentDenied', `waypoint ${ref} does not allow bindings from namespace ${fromNamespace}`);
  if (!hasAddresses(w)) return fail('NotReady', `waypoint ${ref} is not ready (no address or no ready pod yet)`);
  return { kind: 'bound', waypoint: w, inherited: req.inherited };
}

/** The waypoint's own Service never gets a waypoint. */
export function serviceBinding(svc: V1Service, ns: V1Namespace | undefined, waypoints: ReadonlyMap<string, Waypoint>): Binding {
  if (svc.metadata?.labels?.[MANAGED_LABEL]) return { kind: 'unbound' };
  return resolve(requested(svc.metadata, ns), 'service', svc.metadata?.namespace ?? '', ns, waypoints);
}

/** A waypoint's own pods never get a waypoint. */
export function workloadBinding(pod: V1Pod, ns: V1Namespace | undefined, waypoints: ReadonlyMap<string, Waypoint>): Binding {
  const gw = pod.metadata?.labels?.[GATEWAY_NAME_LABEL];
  if (gw && waypoints.has(`${pod.metadata?.namespace}/${gw}`)) return { kind: 'unbound' };
  return resolve(requested(pod.metadata, ns), 'workload', pod.metadata?.namespace ?? '', ns, waypoints);
}

/** The Service condition Istio writes for a binding; undefined when nothing asked for a waypoint. */
export function boundCondition(b: Binding): { type: string; status: 'True' | 'False'; reason: string; message: string } | undefined {
  if (b.kind === 'unbound') return undefined;
  if (b.kind === 'bound') {
    return { type: WAYPOINT_BOUND, status: 'True', reason: 'Accepted', message: `bound to ${b.waypoint.hostname}` };
  }
  return { type: WAYPOINT_BOUND, status: 'False', reason: b.reason, message: b.message };
}

/** What workload xDS carries for a bound object: the waypoint by hostname (istiod's preferred form), HBONE on 15008. */
export function gatewayAddress(b: Binding): MessageInit<GatewayAddress> | undefined {
  if (b.kind !== 'bound') return undefined;
  return { hostname: { namespace: b.waypoint.namespace, hostname: b.waypoint.hostname }, hboneMtlsPort: HBONE_PORT };
}
