// Delta ADS server of the control plane: resource store, server, metrics and debug state.
export { ResourceStore, contentVersion } from './store.js';
export type { StoredResource, StoreChange, StoreListener } from './store.js';
export { XdsServer, DEFAULT_TYPE_URLS } from './server.js';
export type { XdsServerOptions, XdsDebugState, FlushStats } from './server.js';
export type { ConnectionDebug, TypeWatchDebug, ConnectionView } from './connection.js';
export { XdsRefusal } from './connection.js';
export { WaypointStores, storeEnvoyResources, envoyResourceName, ENVOY_TYPE_URLS } from './waypoints.js';
export type { WaypointServing, WaypointStoreListener, EnvoyResourceGroups } from './waypoints.js';
export { XdsMetrics, typeLabel } from './metrics.js';
export { parseNode } from './node.js';
export type { ClientNode } from './node.js';
export { WILDCARD, newTypeWatch, planRequest, planChange } from './subscriptions.js';
export type { TypeWatch, DeltaPlan, SubscriptionRequest } from './subscriptions.js';
export { workloadAliases, serviceAliases, workloadResourceName, serviceResourceName, policyResourceName, addressNameAndAliases, addressGroups } from './names.js';
