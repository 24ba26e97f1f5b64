// Kubernetes objects -> one waypoint's WaypointModel, plus the status parts this waypoint can vouch for (the route
// parents and policy targetRefs bound to it). A route or policy can span waypoints, so whole statuses are merged from
// every waypoint's claims by httpRouteStatus and authorizationPolicyStatus. Pure; never throws on bad objects.
import type { V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import { DATAPLANE_MODE } from '../translate/labels.js';
import type { AuthorizationPolicy } from '../translate/authorization.js';
import type { L7Policy, WaypointModel, WaypointService } from './model.js';
import { attachPolicy, translatePolicy, type WaypointRef } from './translate-policies.js';
import { boundParent, compileRoute, isServiceParent, orderRules, parentRefKey, parentService, type RouteContext, type RouteEntry } from './translate-routes.js';
import { toWaypointService } from './translate-services.js';
import { MESH_CONTROLLER, isList, nsName, type HTTPRoute, type ParentRef, type PolicyBinding, type ReferenceGrant, type RouteParentStatus } from './translate-types.js';

export interface WaypointModelInput {
  /** The waypoint's Gateway. */
  waypoint: WaypointRef;
  trustDomain: string;
  domainSuffix: string;
  /** Istio's root namespace, where GatewayClass-wide policies live (default istio-system). */
  rootNamespace?: string;
  /** Services bound to this waypoint (binding is decided by the caller). */
  bound: V1Service[];
  /** Every Service (backends, parents) and Pod (endpoints). */
  services: V1Service[];
  pods: V1Pod[];
  /**
   * Every Namespace, for the pods' ambient enrollment (an endpoint outside the mesh is reached without HBONE).
   * Absent: every namespace is taken as ambient (only pods that opt out are reached in plaintext).
   */
  namespaces?: V1Namespace[];
  httpRoutes?: HTTPRoute[];
  referenceGrants?: ReferenceGrant[];
  authorizationPolicies?: AuthorizationPolicy[];
}

export interface RouteClaim {
  /** `<namespace>/<name>` of the HTTPRoute. */
  route: string;
  /** Its parents bound to this waypoint. */
  parents: RouteParentStatus[];
}

export interface PolicyClaim {
  /** `<namespace>/<name>` of the AuthorizationPolicy. */
  policy: string;
  /** Its targetRefs this waypoint enforces. */
  bindings: PolicyBinding[];
}

export interface WaypointModelResult {
  model: WaypointModel;
  routes: RouteClaim[];
  policies: PolicyClaim[];
}

const byKey = <T>(items: T[], key: (t: T) => string): T[] => [...items].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
const svcOrder = (s: WaypointService) => `${s.namespace}\0${s.hostname}`;

function podsByNamespace(pods: V1Pod[]): Map<string, V1Pod[]> {
  const out = new Map<string, V1Pod[]>();
  for (const p of pods) {
    const ns = p.metadata?.namespace ?? '';
    out.set(ns, [...(out.get(ns) ?? []), p]);
  }
  return out;
}

/** Stands in for every namespace when the caller gave none. */
const AMBIENT_NAMESPACE: V1Namespace = { metadata: { labels: { [DATAPLANE_MODE]: 'ambient' } } };

export function buildWaypointModel(input: WaypointModelInput): WaypointModelResult {
  const mesh = { trustDomain: input.trustDomain, domainSuffix: input.domainSuffix };
  const pods = podsByNamespace(input.pods);
  const namespaces = input.namespaces && new Map(input.namespaces.map((n) => [n.metadata?.name ?? '', n]));
  const services = new Map([...input.services, ...input.bound].map((s) => [nsName(s), s]));
  const toModel = (s: V1Service) => {
    const ns = s.metadata?.namespace ?? '';
    return toWaypointService(s, pods.get(ns) ?? [], mesh, namespaces ? namespaces.get(ns) : AMBIENT_NAMESPACE);
  };
  const bound = new Map(input.bound.map((s) => [nsName(s), toModel(s)]));
  const ctx: RouteContext = { services, referenceGrants: input.referenceGrants ?? [], domainSuffix: input.domainSuffix };

  // Routes: each route's rules once, attached to every (bound service, HTTP or unknown port) its accepted parents select.
  const perPort = new Map<string, Set<RouteEntry>>();
  const backendServices = new Set<string>();
  const routes: RouteClaim[] = [];
  for (const route of byKey(input.httpRoutes ?? [], nsName)) {
    const refs = (isList(route.spec?.parentRefs) ? route.spec!.parentRefs : []).filter((r: ParentRef) => isServiceParent(r) && bound.has(parentService(route, r)));
    if (!refs.length) continue;
    try {
      const compiled = compileRoute(route, ctx);
      const parents: RouteParentStatus[] = [];
      const seen = new Set<string>();
      for (const ref of refs) {
        const dedupe = parentRefKey(route, ref);
        if (seen.has(dedupe)) continue;
        seen.add(dedupe);
        const key = parentService(route, ref);
        const { status, ports } = boundParent(route, compiled, ref, services.get(key)!, bound.get(key)!, input.waypoint.namespace);
        parents.push(status);
        for (const port of ports) {
          const set = perPort.get(`${key}:${port}`) ?? new Set();
          for (const e of compiled.entries) set.add(e);
          perPort.set(`${key}:${port}`, set);
        }
        if (ports.length) for (const b of compiled.backendServices) backendServices.add(b);
      }
      routes.push({ route: nsName(route), parents });
    } catch (e) {
      // A safety net for objects too malformed for the checks above: say so on each parent instead of failing the waypoint.
      const message = `the route could not be translated: ${(e as Error).message}`;
      const conditions = [{ type: 'Accepted', status: 'False' as const, reason: 'UnsupportedValue', message }];
      routes.push({ route: nsName(route), parents: refs.map((parentRef) => ({ parentRef, controllerName: MESH_CONTROLLER, conditions })) });
    }
  }
  for (const [key, svc] of bound) {
    for (const p of svc.ports) if (p.protocol !== 'tcp') p.routes = orderRules([...(perPort.get(`${key}:${p.port}`) ?? [])]);
  }

  // Policies with targetRefs that reach this waypoint.
  const policies: L7Policy[] = [];
  const claims: PolicyClaim[] = [];
  for (const ap of byKey(input.authorizationPolicies ?? [], nsName)) {
    let attached: ReturnType<typeof attachPolicy>;
    try {
      attached = attachPolicy(ap, input.waypoint, bound, input.rootNamespace ?? 'istio-system');
    } catch {
      continue; // too malformed to tell its targets (unreachable with attachPolicy's checks): claim nothing
    }
    const { appliesTo, bindings } = attached;
    if (!appliesTo) continue;
    claims.push({ policy: nsName(ap), bindings });
    let policy: ReturnType<typeof translatePolicy>['policy'];
    try {
      policy = translatePolicy(ap).policy;
    } catch {
      policy = { action: 'DENY', rules: [{ from: [], to: [], when: [] }] }; // a safety net that fails closed
    }
    if (policy) policies.push({ name: nsName(ap), appliesTo, ...policy });
  }
  policies.sort((a, b) => (a.action === b.action ? (a.name < b.name ? -1 : 1) : a.action === 'DENY' ? -1 : 1));

  const backends = [...backendServices].filter((k) => !bound.has(k) && services.has(k)).map((k) => toModel(services.get(k)!));
  return {
    model: {
      namespace: input.waypoint.namespace,
      name: input.waypoint.name,
      trustDomain: input.trustDomain,
      services: byKey([...bound.values()], svcOrder),
      backends: byKey(backends, svcOrder),
      policies,
    },
    routes,
    policies: claims,
  };
}
