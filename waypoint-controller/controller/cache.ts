// The Kubernetes objects the controller translates, kept by kind and key (as informers deliver them).
import type { V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import type { AuthorizationPolicy } from '../translate/authorization.js';
import type { Gateway, GatewayClass } from '../waypoint/gateway.js';

export interface Cached {
  namespaces: Map<string, V1Namespace>; // by name
  nodes: Map<string, V1Node>; // by name
  pods: Map<string, V1Pod>; // by ns/name
  services: Map<string, V1Service>; // by ns/name
  policies: Map<string, AuthorizationPolicy>; // by ns/name
  gateways: Map<string, Gateway>; // by ns/name
  gatewayclasses: Map<string, GatewayClass>; // by name
  httproutes: Map<string, HttpRouteObject>; // by ns/name
}

/** An HTTPRoute as cached; its fields are read by the waypoint model's translation. */
export interface HttpRouteObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; generation?: number; creationTimestamp?: Date | string; uid?: string };
  spec?: unknown;
  status?: unknown;
}

export type Kind = keyof Cached;

export const newCache = (): Cached => ({
  namespaces: new Map(), nodes: new Map(), pods: new Map(), services: new Map(), policies: new Map(),
  gateways: new Map(), gatewayclasses: new Map(), httproutes: new Map(),
});

export const objectKey = (o: { metadata?: { name?: string; namespace?: string } }): string =>
  o.metadata?.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : (o.metadata?.name ?? '');
