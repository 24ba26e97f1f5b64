// Gateway API objects of class istio-waypoint, as far as the waypoint controller reads them, and the waypoint a
// Gateway describes once its Service and pods exist (istiod's gatewayToWaypointTransform, on our own data).
import type { V1Condition, V1Namespace, V1ObjectMeta, V1Pod, V1Service } from '@kubernetes/client-node';
import { isReady } from '../translate/workload.js';

export const WAYPOINT_CLASS = 'istio-waypoint';
export const MESH_CONTROLLER = 'istio.io/mesh-controller';
export const MANAGED_LABEL = 'gateway.istio.io/managed';
export const MANAGED_VALUE = 'istio.io-mesh-controller';
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const GATEWAY_CLASS_LABEL = 'gateway.networking.k8s.io/gateway-class-name';
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for';
export const HBONE_PORT = 15008;
export const STATUS_PORT = 15021;

export interface GatewayListener {
  name: string;
  port: number;
  protocol: string;
  allowedRoutes?: { namespaces?: { from?: 'Same' | 'All' | 'Selector' | string; selector?: { matchLabels?: Record<string, string> } } };
}

export interface Gateway {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
  spec?: {
    gatewayClassName?: string;
    listeners?: GatewayListener[];
    infrastructure?: {
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
      parametersRef?: { group?: string; kind?: string; name?: string };
    };
  };
  status?: { addresses?: { type?: string; value: string }[]; conditions?: V1Condition[]; listeners?: unknown[] };
}

export interface GatewayClass {
  metadata?: V1ObjectMeta;
  spec?: { controllerName?: string };
  status?: { conditions?: V1Condition[] };
}

export type TrafficType = 'service' | 'workload' | 'all' | 'none';

/** A waypoint as bindings see it. */
export interface Waypoint {
  namespace: string;
  name: string;
  /** `<name>.<namespace>.svc.<domain>`: the hostname of its Service, and the name ztunnels resolve it by. */
  hostname: string;
  trafficType: TrafficType;
  /** The HBONE listener's allowedRoutes: which namespaces may bind to it. */
  allowed: NonNullable<GatewayListener['allowedRoutes']>['namespaces'];
  /** The Service's cluster IPs (empty until it has one). */
  clusterIps: string[];
  /** IPs of the ready pods behind the Service: Programmed needs at least one (ready on 15008). */
  readyEndpoints: string[];
  /** The Gateway's status already reports addresses: once ready, they stay (as istiod's), so bindings stay too. */
  addressesReported: boolean;
  /** Listeners other than the one HBONE listener on 15008: reported as unsupported. */
  unexpectedListeners: string[];
}

export const isWaypointGateway = (g: Gateway): boolean => g.spec?.gatewayClassName === WAYPOINT_CLASS;

/** Programmed: the Service has a cluster IP and a ready endpoint. */
export const isProgrammed = (w: Waypoint): boolean => w.clusterIps.length > 0 && w.readyEndpoints.length > 0;

/**
 * Bindings take once the waypoint has addresses: first when it is programmed, and from then on even while no pod is
 * ready, so that a waypoint that goes down is not bypassed (ztunnel then refuses the traffic: fail closed).
 */
export const hasAddresses = (w: Waypoint): boolean => w.clusterIps.length > 0 && (w.readyEndpoints.length > 0 || w.addressesReported);

function trafficTypeOf(value: string | undefined): TrafficType | undefined {
  return value === 'service' || value === 'workload' || value === 'all' || value === 'none' ? value : undefined;
}

/** The Gateway's label overrides its GatewayClass's; the default is `service`. */
export function waypointTrafficType(g: Gateway, cls: GatewayClass | undefined): TrafficType {
  return trafficTypeOf(g.metadata?.labels?.[WAYPOINT_FOR_LABEL]) ?? trafficTypeOf(cls?.metadata?.labels?.[WAYPOINT_FOR_LABEL]) ?? 'service';
}

const isMeshListener = (l: GatewayListener) => l.port === HBONE_PORT && l.protocol === 'HBONE';

export function toWaypoint(
  g: Gateway,
  cls: GatewayClass | undefined,
  service: V1Service | undefined,
  pods: Iterable<V1Pod>,
  domainSuffix: string,
): Waypoint {
  const namespace = g.metadata?.namespace ?? '';
  const name = g.metadata?.name ?? '';
  const listeners = g.spec?.listeners ?? [];
  const mesh = listeners.find(isMeshListener);
  const clusterIps = (service?.spec?.clusterIPs ?? (service?.spec?.clusterIP ? [service.spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
  const readyEndpoints: string[] = [];
  for (const p of pods) {
    if (p.metadata?.namespace === namespace && p.metadata?.labels?.[GATEWAY_NAME_LABEL] === name && isReady(p) && p.status?.podIP) readyEndpoints.push(p.status.podIP);
  }
  return {
    namespace,
    name,
    hostname: `${name}.${namespace}.svc.${domainSuffix}`,
    trafficType: waypointTrafficType(g, cls),
    allowed: mesh?.allowedRoutes?.namespaces,
    clusterIps,
    readyEndpoints: readyEndpoints.sort(),
    addressesReported: (g.status?.addresses?.length ?? 0) > 0,
    unexpectedListeners: listeners.filter((l) => !isMeshListener(l)).map((l) => l.name),
  };
}

/** Whether a binding from `fromNamespace` may use the waypoint (its HBONE listener's allowedRoutes; default Same). */
export function allowsNamespace(w: Waypoint, fromNamespace: string, ns: V1Namespace | undefined): boolean {
  const from = w.allowed?.from ?? 'Same';
  if (from === 'All') return true;
  if (from === 'Same') return fromNamespace === w.namespace;
  if (from === 'Selector') {
    const sel = w.allowed?.selector?.matchLabels ?? {};
    return Object.entries(sel).every(([k, v]) => ns?.metadata?.labels?.[k] === v);
  }
  return false;
}
