// The controller's certificate authority (Istio CA API): root/plug-in material, issuing, authorization, gRPC service.
export * from './root.js';
export * from './issuer.js';
export * from './authz.js';
export * from './server.js';
export * from './serving.js';
