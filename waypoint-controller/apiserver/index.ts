// Public surface of the embedded Kubernetes API server.
export { start, kubeConfigFor, type ApiServer, type ApiServerOptions } from './server.js';
export { DEFAULT_RESOURCES, ResourceRegistry } from './resources.js';
export { parseManifests, readManifestDir } from './seed.js';
export { ApiError } from './errors.js';
export { desiredSlices, SERVICE_NAME_LABEL } from './endpoints-controller.js';
export type { KubeObject, ResourceType, ObjectMeta } from './types.js';
export {
  TokenService, writeTokenFile, DEFAULT_ISSUER, MIN_EXPIRATION_SECONDS,
  type MintRequest, type MintedToken, type ServiceAccountClaims, type KubernetesClaim, type TokenReviewStatus, type UserInfo, type BoundObjectRef,
} from './tokens.js';
export { decodeJwt, jwks, type SigningKey } from './jwt.js';
export { DEFAULT_SERVICE_ACCOUNT } from './serviceaccounts-controller.js';
