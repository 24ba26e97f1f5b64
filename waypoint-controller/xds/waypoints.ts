// Per-waypoint resource stores: each waypoint Gateway's Envoy is served its own Listeners, Clusters,
// ClusterLoadAssignments, RouteConfigurations and Secrets, so a change reaches only the waypoint it concerns.
// The controller fills a waypoint's store (storeEnvoyResources); the xDS server serves a client whose node is of
// type `waypoint` from the store `waypointOf(node)` names (see XdsServerOptions.waypoints).
import { ENDPOINT_TYPE_URL, ENVOY_TYPE_URLS, encodeEnvoyResource, type JsonObject } from '../../protos/envoy.js';
import type { ClientNode } from './node.js';
import { ResourceStore, type StoreChange } from './store.js';

export { ENVOY_TYPE_URLS };

export type WaypointStoreListener = (waypoint: string, change: StoreChange) => void;

export class WaypointStores {
  private readonly stores = new Map<string, { store: ResourceStore; unsubscribe: () => void }>();
  private readonly listeners = new Set<WaypointStoreListener>();
  private readonly deleteListeners = new Set<(waypoint: string) => void>();

  /** The store of a waypoint (`<ns>/<gateway>`), created empty on first use (its Envoy may connect first). */
  get(waypoint: string): ResourceStore {
    let e = this.stores.get(waypoint);
    if (!e) {
      const store = new ResourceStore();
      const unsubscribe = store.onChange((c) => {
        for (const l of this.listeners) l(waypoint, c);
      });
      this.stores.set(waypoint, (e = { store, unsubscribe }));
    }
    return e.store;
  }

  has(waypoint: string): boolean {
    return this.stores.has(waypoint);
  }

  keys(): string[] {
    return [...this.stores.keys()].sort();
  }

  /**
   * Empties a waypoint's store and forgets it. The xDS server ends the streams of that waypoint's Envoys (they would
   * otherwise keep watching the forgotten store); on reconnect they are placed again, or refused.
   */
  delete(waypoint: string): void {
    const e = this.stores.get(waypoint);
    if (!e) return;
    e.store.batch(() => {
      for (const t of e.store.typeUrls()) for (const r of e.store.list(t)) e.store.delete(t, r.name);
    });
    e.unsubscribe();
    this.stores.delete(waypoint);
    for (const l of this.deleteListeners) l(waypoint);
  }

  onDelete(listener: (waypoint: string) => void): () => void {
    this.deleteListeners.add(listener);
    return () => this.deleteListeners.delete(listener);
  }

  onChange(listener: WaypointStoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** How the xDS server serves waypoint Envoys. */
export interface WaypointServing {
  stores: WaypointStores;
  /**
   * `<ns>/<gateway>` of the waypoint a client (node type `waypoint`) belongs to, given what its stream authenticated
   * as (`principal` from XdsServerOptions.authenticate; undefined when unauthenticated); undefined refuses the
   * stream (the Envoy retries with backoff, e.g. until the controller has seen its pod).
   */
  waypointOf(node: ClientNode, principal: unknown): string | undefined;
  /** Default: Listener, Cluster, ClusterLoadAssignment, RouteConfiguration, Secret. */
  typeUrls?: readonly string[];
}

/** The name a resource is served under: `name`, or `cluster_name` for a ClusterLoadAssignment. */
export function envoyResourceName(r: JsonObject): string {
  const n = r['@type'] === ENDPOINT_TYPE_URL ? r.cluster_name : r.name;
  if (typeof n !== 'string' || !n) throw new Error(`Envoy resource without a name: ${JSON.stringify(r).slice(0, 200)}`);
  return n;
}

/**
 * Replaces, in one batch, the content of each Envoy type that has resources in `groups` (each array is one whole
 * type: listeners, clusters...; pass an empty array to clear a type, leave a key out to keep it). Resources are
 * proto3 JSON with "@type" (waypoint/envoy); all are encoded before anything changes, so a bad one changes nothing.
 */
export interface EnvoyResourceGroups {
  listeners?: readonly JsonObject[];
  clusters?: readonly JsonObject[];
  endpoints?: readonly JsonObject[];
  routes?: readonly JsonObject[];
  secrets?: readonly JsonObject[];
}

export function storeEnvoyResources(store: ResourceStore, groups: EnvoyResourceGroups): void {
  const byType = new Map<string, { name: string; body: Uint8Array }[]>();
  const declared = new Set<string>();
  for (const [kind, list] of Object.entries(groups) as [string, readonly JsonObject[] | undefined][]) {
    if (!list) continue;
    const typeUrl = KIND_TYPE[kind];
    if (!typeUrl) throw new Error(`storeEnvoyResources: unknown kind ${kind}`);
    declared.add(typeUrl);
    for (const r of list) {
      const enc = encodeEnvoyResource(r);
      if (enc.typeUrl !== typeUrl) throw new Error(`storeEnvoyResources: ${enc.typeUrl} among ${kind}`);
      let l = byType.get(typeUrl);
      if (!l) byType.set(typeUrl, (l = []));
      l.push({ name: envoyResourceName(r), body: enc.body });
    }
  }
  store.batch(() => {
    for (const t of declared) store.replaceAll(t, byType.get(t) ?? []);
  });
}

const KIND_TYPE: Record<string, string> = {
  listeners: ENVOY_TYPE_URLS[0]!,
  clusters: ENVOY_TYPE_URLS[1]!,
  endpoints: ENVOY_TYPE_URLS[2]!,
  routes: ENVOY_TYPE_URLS[3]!,
  secrets: ENVOY_TYPE_URLS[4]!,
};
