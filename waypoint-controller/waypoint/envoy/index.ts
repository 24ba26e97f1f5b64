// WaypointModel -> the Envoy resources of that waypoint (proto3 JSON with "@type"), a pure function. Encode them with
// protos/envoy.ts (encodeEnvoyResource) or put them in a ResourceStore with xds/waypoints.ts (storeEnvoyResources).
import type { WaypointModel } from '../model.js';
import type { JsonObject } from './common.js';
import { connectTerminateListener } from './connect-terminate.js';
import { mainInternalListener, type MainInternalOptions } from './main-internal.js';
import { connectOriginateCluster, connectOriginateListener, destinationIdentities, mainInternalCluster, vipClusters, vipEndpoints, type UpstreamOptions } from './upstream.js';

export interface EnvoyResources {
  listeners: JsonObject[];
  clusters: JsonObject[];
  /** ClusterLoadAssignments, one per EDS cluster (named like it). */
  endpoints: JsonObject[];
  /** RouteConfigurations: none, routes are inline in each HCM (as Istio does on waypoints). */
  routes: JsonObject[];
}

export interface WaypointEnvoyOptions extends UpstreamOptions, MainInternalOptions {
  /** Port of connect_terminate, default 15008 (tests on a shared host use another). */
  hbonePort?: number;
}

export function waypointEnvoyResources(model: WaypointModel, opts: WaypointEnvoyOptions = {}): EnvoyResources {
  const identities = destinationIdentities(model);
  return {
    listeners: [connectTerminateListener(model.trustDomain, opts.hbonePort), mainInternalListener(model, opts), ...identities.map(connectOriginateListener)],
    clusters: [mainInternalCluster(), ...vipClusters(model, opts), ...identities.map((id) => connectOriginateCluster(id, opts))],
    endpoints: vipEndpoints(model),
    routes: [],
  };
}

export { waypointSecrets, type WaypointCertificate } from './secrets.js';
export { waypointBootstrap, waypointEnvoyArgs, type BootstrapOptions } from './bootstrap.js';
export * from './names.js';
