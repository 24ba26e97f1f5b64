// The waypoint side of the controller, at the Kubernetes edge: ensures the GatewayClass, server-side applies what
// each waypoint Gateway needs (rendered by waypoint/provision.ts), keeps each waypoint's Envoy configuration current
// (waypoint-config.ts), writes Gateway, Service, HTTPRoute and AuthorizationPolicy status, and publishes the mesh
// root as ConfigMap istio-ca-root-cert in every namespace. Writes are serialised per object
// and skipped when the content is what we last wrote, so our own status updates coming back through the
// informers cost nothing.
import {
  CoreV1Api, CustomObjectsApi, KubernetesObjectApi, PatchStrategy, setHeaderOptions, type KubeConfig, type KubernetesObject,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { CertIssuer } from '../ca/issuer.js';
import type { AuthorizationPolicy } from '../translate/authorization.js';
import { boundCondition, WAYPOINT_BOUND, type Binding } from '../waypoint/binding.js';
import { isWaypointGateway, MANAGED_VALUE, MESH_CONTROLLER, WAYPOINT_CLASS, type Gateway } from '../waypoint/gateway.js';
import { renderWaypoint, ROOT_CERT_KEY, ROOT_CONFIGMAP } from '../waypoint/provision.js';
import { gatewayClassStatus, gatewayStatus } from '../waypoint/status.js';
import type { PolicyClaim, RouteClaim } from '../waypoint/translate-model.js';
import { authorizationPolicyStatus } from '../waypoint/translate-policies.js';
import { httpRouteStatus } from '../waypoint/translate-routes.js';
import type { HTTPRoute } from '../waypoint/translate-types.js';
import type { WaypointStores } from '../xds/waypoints.js';
import type { Cached, Kind } from './cache.js';
import type { ControllerContext, Reconciler, WaypointListener } from './reconciler.js';
import { WaypointConfigs } from './waypoint-config.js';

const FIELD_MANAGER = MANAGED_VALUE;
const GW = { group: 'gateway.networking.k8s.io', version: 'v1' };
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export interface WaypointControllerOptions {
  kubeConfig: KubeConfig;
  cache: Cached;
  ctx: ControllerContext;
  /** Where each waypoint's Envoy resources go (served by the xDS server). */
  stores: WaypointStores;
  /** Envoy image for waypoint Deployments. */
  image?: string;
  /** The Envoy bootstrap for the waypoints' ConfigMaps. */
  bootstrap: object;
  log: Logger;
}

export class WaypointController implements WaypointListener {
  private reconciler?: Reconciler;
  private rootPem = '';
  private readonly objects: KubernetesObjectApi;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  /** What we last wrote, per object: skip identical writes. */
  private readonly written = new Map<string, string>();
  /** One write chain per object, so writes to the same object never race. */
  private readonly chains = new Map<string, Promise<void>>();
  private stopped = false;
  readonly configs: WaypointConfigs;

  constructor(private readonly opts: WaypointControllerOptions) {
    this.objects = KubernetesObjectApi.makeApiClient(opts.kubeConfig);
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.custom = opts.kubeConfig.makeApiClient(CustomObjectsApi);
    this.configs = new WaypointConfigs({ cache: opts.cache, stores: opts.stores, ctx: opts.ctx, log: opts.log, onClaims: (r, p) => this.claimsChanged(r, p) });
  }

  /** After the informers' first lists: the class, every waypoint and its configuration, every namespace's root. */
  async start(reconciler: Reconciler, issuer: CertIssuer): Promise<void> {
    this.reconciler = reconciler;
    this.rootPem = issuer.rootPem;
    await this.ensureGatewayClass();
    for (const ns of this.opts.cache.namespaces.keys()) this.publishRoot(ns);
    for (const key of this.opts.cache.gateways.keys()) this.gatewayChanged(key);
    for (const [key, b] of reconciler.serviceBindings) this.serviceBindingChanged(key, b);
    await this.configs.start(reconciler, issuer);
    await this.settled();
  }

  stop(): void {
    this.stopped = true;
    this.configs.stop();
  }

  /** Resolves once every write queued so far has finished. */
  async settled(): Promise<void> {
    while (this.chains.size > 0) await Promise.all([...this.chains.values()]);
  }

  afterChange(kind: Kind, key: string, changedWaypoints: ReadonlySet<string>): void {
    if (!this.reconciler) return; // start() does the first pass
    if (kind === 'namespaces' && this.opts.cache.namespaces.has(key)) this.publishRoot(key);
    if (kind === 'gateways') this.gatewayChanged(key);
    else for (const k of changedWaypoints) this.gatewayChanged(k);
    if (kind === 'gatewayclasses' && key === WAYPOINT_CLASS) void this.ensureGatewayClass();
    // Endpoints (and whether they are in the mesh), routes and policies are part of the waypoints' Envoy configuration.
    if (kind !== 'nodes') this.configs.schedule();
  }

  /** HTTPRoute parents and AuthorizationPolicy conditions, merged over every waypoint's claims. */
  private claimsChanged(routes: RouteClaim[], policies: PolicyClaim[]): void {
    const { cache } = this.opts;
    const services = new Map(cache.services);
    const unbound = (svc: { metadata?: { namespace?: string; name?: string } }) => {
      const b = this.reconciler?.serviceBindings.get(`${svc.metadata?.namespace}/${svc.metadata?.name}`);
      return b?.kind === 'failed' ? { reason: b.reason, message: b.message } : undefined;
    };
    for (const [key, route] of cache.httproutes) {
      const r = route as HTTPRoute;
      const claimed = routes.filter((c) => c.route === key).flatMap((c) => c.parents);
      const ours = httpRouteStatus(r, claimed, { services, referenceGrants: [], domainSuffix: this.opts.ctx.domainSuffix }, unbound);
      if (ours.length === 0) continue;
      const now = new Date().toISOString();
      const previous = r.status?.parents ?? [];
      const others = previous.filter((p) => p.controllerName !== MESH_CONTROLLER);
      const stamped = ours.map((p) => ({
        ...p,
        conditions: p.conditions.map((c) => {
          const before = previous.find((x) => JSON.stringify(x.parentRef) === JSON.stringify(p.parentRef))?.conditions?.find((x) => x.type === c.type) as
            | { status: string; lastTransitionTime?: string }
            | undefined;
          return { ...c, observedGeneration: r.metadata?.generation, lastTransitionTime: before?.status === c.status && before.lastTransitionTime ? before.lastTransitionTime : now };
        }),
      }));
      const [namespace, name] = key.split('/') as [string, string];
      this.write(`route-status/${key}`, withoutTimes(ours), () =>
        this.custom.patchNamespacedCustomObjectStatus({ ...GW, plural: 'httproutes', namespace, name, body: { status: { parents: [...others, ...stamped] } } }, merge),
      );
    }
    for (const [key, p] of cache.policies) {
      const ap = p as AuthorizationPolicy & { status?: { conditions?: { type: string }[] } };
      const claimed = policies.filter((c) => c.policy === key).flatMap((c) => c.bindings);
      const cond = authorizationPolicyStatus(ap, claimed, { services, rootNamespace: this.opts.ctx.rootNamespace });
      if (!cond) continue;
      const others = (ap.status?.conditions ?? []).filter((c) => c.type !== cond.type);
      const [namespace, name] = key.split('/') as [string, string];
      this.write(`policy-status/${key}`, JSON.stringify(cond), () =>
        this.custom.patchNamespacedCustomObjectStatus(
          { group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespace, name, body: { status: { conditions: [...others, { ...cond, lastTransitionTime: new Date().toISOString() }] } } },
          merge,
        ),
      );
    }
  }

  serviceBindingChanged(key: string, binding: Binding | undefined): void {
    const svc = this.opts.cache.services.get(key);
    if (!svc || !binding) return;
    const want = boundCondition(binding);
    const have = svc.status?.conditions?.find((c) => c.type === WAYPOINT_BOUND);
    if (!want && !have) return;
    if (want && have && have.status === want.status && have.reason === want.reason && have.message === want.message) return;
    const others = (svc.status?.conditions ?? []).filter((c) => c.type !== WAYPOINT_BOUND);
    const conditions = want
      ? [...others, { ...want, observedGeneration: svc.metadata?.generation, lastTransitionTime: new Date().toISOString() }]
      : others;
    const [namespace, name] = key.split('/') as [string, string];
    this.write(`svc-status/${key}`, JSON.stringify(conditions), () =>
      this.core.patchNamespacedServiceStatus({ namespace, name, body: { status: { conditions } } }, merge),
    );
  }

  private gatewayChanged(key: string): void {
    const g = this.opts.cache.gateways.get(key);
    if (!g || !isWaypointGateway(g) || g.metadata?.deletionTimestamp) return; // owned objects go with the Gateway
    const [namespace, name] = key.split('/') as [string, string];
    const w = this.reconciler?.waypoints.get(key);
    void this.provision(g).catch((err) => this.opts.log.warn({ gateway: key, err: String(err) }, 'waypoint provisioning failed'));
    if (!w) return;
    const status = gatewayStatus(g, w, new Date().toISOString());
    const comparable = withoutTimes(status);
    this.write(`gw-status/${key}`, comparable, () =>
      this.custom.patchNamespacedCustomObjectStatus({ ...GW, plural: 'gateways', namespace, name, body: { status } }, merge),
    );
  }

  private async provision(g: Gateway): Promise<void> {
    const ref = g.spec?.infrastructure?.parametersRef;
    let parameters: Record<string, string> | undefined;
    if (ref?.name && (ref.kind ?? 'ConfigMap') === 'ConfigMap' && !ref.group) {
      const cm = await this.core.readNamespacedConfigMap({ namespace: g.metadata!.namespace!, name: ref.name });
      parameters = cm.data;
    }
    const objects = renderWaypoint(g, { image: this.opts.image, domainSuffix: this.opts.ctx.domainSuffix, bootstrap: this.opts.bootstrap, parameters });
    for (const o of objects) this.apply(o);
  }

  private apply(o: KubernetesObject): void {
    const key = `${o.kind}/${o.metadata?.namespace}/${o.metadata?.name}`;
    this.write(key, JSON.stringify(o), () => this.objects.patch(o, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply));
  }

  private publishRoot(namespace: string): void {
    this.apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: ROOT_CONFIGMAP, namespace, labels: { 'istio.io/config': 'true' } },
      data: { [ROOT_CERT_KEY]: this.rootPem },
    } as KubernetesObject);
  }

  private async ensureGatewayClass(): Promise<void> {
    this.apply({
      apiVersion: `${GW.group}/${GW.version}`,
      kind: 'GatewayClass',
      metadata: { name: WAYPOINT_CLASS },
      spec: { controllerName: MESH_CONTROLLER, description: 'The default Istio waypoint GatewayClass' },
    } as KubernetesObject);
    await this.settled();
    const cls = await this.custom.getClusterCustomObject({ ...GW, plural: 'gatewayclasses', name: WAYPOINT_CLASS }).catch(() => undefined);
    const generation = (cls as { metadata?: { generation?: number } } | undefined)?.metadata?.generation ?? 1;
    this.write(`gc-status/${WAYPOINT_CLASS}`, String(generation), () =>
      this.custom.patchClusterCustomObjectStatus({ ...GW, plural: 'gatewayclasses', name: WAYPOINT_CLASS, body: { status: gatewayClassStatus(generation, new Date().toISOString()) } }, merge),
    );
  }

  /** Queues a write unless `content` is what was last written under `key`; a failed write is retried on the next change. */
  private write(key: string, content: string, op: () => Promise<unknown>): void {
    if (this.stopped || this.written.get(key) === content) return;
    this.written.set(key, content);
    const prev = this.chains.get(key) ?? Promise.resolve();
    const next = prev
      .then(op)
      .then(
        () => undefined,
        (err: unknown) => {
          if (this.written.get(key) === content) this.written.delete(key);
          this.opts.log.warn({ object: key, err: String((err as Error)?.message ?? err) }, 'waypoint write failed');
        },
      )
      .finally(() => {
        if (this.chains.get(key) === next) this.chains.delete(key);
      });
    this.chains.set(key, next);
  }
}

/** What a status says, without when: rewriting only a transition time is not a change. */
const withoutTimes = (status: unknown): string => JSON.stringify(status, (k, v: unknown) => (k === 'lastTransitionTime' ? undefined : v));
