// Public surface of the embedded Kubernetes API server.
export { start, kubeConfigFor, type ApiServer, type ApiServerOptions } from './server.js';
export { DEFAULT_RESOURCES, ResourceRegistry } from './resources.js';
export { parseManifests, readManifestDir } from './seed.js';
export { ApiError } from './errors.js';
export { desiredSlices, SERVICE_NAME_LABEL } from './endpoints-controller.js';
export type { KubeObject, ResourceType, ObjectMeta } from './types.js';
