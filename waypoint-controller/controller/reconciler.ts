// Keeps the xDS resources in step with the cached Kubernetes objects. A change recomputes only what it can affect:
// a pod -> its workload; a service -> itself and its namespace's pods; a namespace -> its pods and services (their
// waypoint may be inherited); a policy -> itself and its namespace's pods (selector policies are listed on
// workloads); a change of what a waypoint is (its Gateway, class, Service or pods) -> every binding.
import type { V1Pod } from '@kubernetes/client-node';
import { ADDRESS_TYPE_URL, AddressCodec, AUTHORIZATION_TYPE_URL, AuthorizationCodec } from '../../protos/index.js';
import { toAuthorization } from '../translate/authorization.js';
import { serviceKey, toService, type MeshContext } from '../translate/service.js';
import { toWorkload, workloadUid } from '../translate/workload.js';
import { gatewayAddress, serviceBinding, workloadBinding, type Binding } from '../waypoint/binding.js';
import { GATEWAY_NAME_LABEL, isWaypointGateway, toWaypoint, WAYPOINT_CLASS, type Waypoint } from '../waypoint/gateway.js';
import type { Cached, Kind } from './cache.js';

/**
 * Where resources go: the xDS server's store. `groups` are the names of the resources a resource is a member of:
 * for a workload, its services (`<ns>/<hostname>`, the keys of Workload.services), so an on-demand subscription
 * to a service also gets its workloads.
 */
export interface ResourceSink {
  set(typeUrl: string, name: string, bytes: Uint8Array, aliases?: string[], groups?: string[]): void;
  delete(typeUrl: string, name: string): void;
}

export interface ControllerContext extends MeshContext {
  rootNamespace: string;
}

/** Told after the resources were updated for a change: which waypoints it changed, and services whose binding changed. */
export interface WaypointListener {
  afterChange(kind: Kind, key: string, changedWaypoints: ReadonlySet<string>): void;
  serviceBindingChanged(key: string, binding: Binding | undefined): void;
}

const NONE: ReadonlySet<string> = new Set();

type SelectorPolicy = { key: string; namespace: string; selector: Record<string, string> };

const alias = (network: string, ip: string) => `${network}/${ip}`;

export class Reconciler {
  /** What we last published per object key, so deletions and renames remove the right resource. */
  private readonly podResource = new Map<string, string>();
  private readonly serviceResource = new Map<string, string>();
  private readonly policyResource = new Map<string, string>();
  /** Waypoints by `<ns>/<gateway>`, as bindings see them now. */
  waypoints: ReadonlyMap<string, Waypoint> = new Map();
  /** Pods that are instances of a waypoint (gateway-name label): their readiness is the waypoint's. */
  private readonly waypointPods = new Set<string>();
  /** Each service's binding, as last published. */
  readonly serviceBindings = new Map<string, Binding>();

  constructor(
    private readonly cache: Cached,
    private readonly sink: ResourceSink,
    private readonly ctx: ControllerContext,
    private readonly listener?: WaypointListener,
  ) {}

  /** Call after the cache changed for one object. */
  changed(kind: Kind, key: string): void {
    if (kind === 'httproutes') return this.listener?.afterChange(kind, key, NONE);
    if (kind === 'gateways' || kind === 'gatewayclasses' || this.concernsWaypoint(kind, key)) {
      const changed = this.refreshWaypoints();
      if (changed.size > 0) this.syncAll();
      else if (kind === 'services') this.syncService(key);
      else if (kind === 'pods') this.syncPod(key, this.selectorPolicies());
      this.listener?.afterChange(kind, key, changed);
      return;
    }
    const policies = this.selectorPolicies();
    if (kind === 'pods') this.syncPod(key, policies);
    else if (kind === 'nodes') {
      for (const [k, p] of this.cache.pods) if (p.spec?.nodeName === key) this.syncPod(k, policies);
    } else {
      const ns = kind === 'namespaces' ? key : key.split('/')[0]!;
      if (kind === 'services') this.syncService(key);
      if (kind === 'policies') this.syncPolicy(key);
      if (kind === 'namespaces') for (const [k, svc] of this.cache.services) if (svc.metadata?.namespace === ns) this.syncService(k);
      for (const [k, p] of this.cache.pods) if (p.metadata?.namespace === ns) this.syncPod(k, policies);
    }
    this.listener?.afterChange(kind, key, NONE);
  }

  /** A waypoint's own Service, or a pod that is (or was) one of its instances. */
  private concernsWaypoint(kind: Kind, key: string): boolean {
    if (kind === 'services') return this.cache.gateways.has(key) || this.waypoints.has(key);
    if (kind !== 'pods') return false;
    const isInstance = !!this.cache.pods.get(key)?.metadata?.labels?.[GATEWAY_NAME_LABEL];
    const was = this.waypointPods.has(key);
    if (isInstance) this.waypointPods.add(key);
    else this.waypointPods.delete(key);
    return isInstance || was;
  }

  /** Recomputes every waypoint; returns the keys whose view changed (added, removed or different). */
  private refreshWaypoints(): Set<string> {
    const next = new Map<string, Waypoint>();
    const cls = this.cache.gatewayclasses.get(WAYPOINT_CLASS);
    const instances = [...this.waypointPods].map((k) => this.cache.pods.get(k)!).filter(Boolean);
    for (const [key, g] of this.cache.gateways) {
      if (isWaypointGateway(g)) next.set(key, toWaypoint(g, cls, this.cache.services.get(key), instances, this.ctx.domainSuffix));
    }
    const changed = new Set<string>();
    for (const [k, w] of next) if (JSON.stringify(w) !== JSON.stringify(this.waypoints.get(k))) changed.add(k);
    for (const k of this.waypoints.keys()) if (!next.has(k)) changed.add(k);
    this.waypoints = next;
    return changed;
  }

  /** Everything, e.g. after the initial lists. */
  syncAll(): void {
    for (const [k, p] of this.cache.pods) if (p.metadata?.labels?.[GATEWAY_NAME_LABEL]) this.waypointPods.add(k);
    this.refreshWaypoints();
    for (const k of this.cache.services.keys()) this.syncService(k);
    for (const k of this.cache.policies.keys()) this.syncPolicy(k);
    const policies = this.selectorPolicies();
    for (const k of this.cache.pods.keys()) this.syncPod(k, policies);
    for (const k of [...this.podResource.keys()]) if (!this.cache.pods.has(k)) this.syncPod(k, policies);
    for (const k of [...this.serviceResource.keys()]) if (!this.cache.services.has(k)) this.syncService(k);
    for (const k of [...this.policyResource.keys()]) if (!this.cache.policies.has(k)) this.syncPolicy(k);
  }

  private selectorPolicies(): SelectorPolicy[] {
    const out: SelectorPolicy[] = [];
    for (const [key, p] of this.cache.policies) {
      const tr = toAuthorization(p, this.ctx.rootNamespace);
      if (tr.kind === 'ztunnel' && tr.selector) out.push({ key, namespace: p.metadata?.namespace ?? '', selector: tr.selector });
    }
    return out;
  }

  private syncPod(key: string, policies: SelectorPolicy[]): void {
    const pod: V1Pod | undefined = this.cache.pods.get(key);
    const ns = this.cache.namespaces.get(pod?.metadata?.namespace ?? '');
    const w =
      pod &&
      toWorkload(pod, ns, this.cache.services.values(), policies, this.ctx, this.cache.nodes.get(pod.spec?.nodeName ?? ''), gatewayAddress(workloadBinding(pod, ns, this.waypoints)));
    const old = this.podResource.get(key);
    if (!w) {
      if (old) this.sink.delete(ADDRESS_TYPE_URL, old);
      this.podResource.delete(key);
      return;
    }
    const name = workloadUid(this.ctx.clusterId, pod!);
    if (old && old !== name) this.sink.delete(ADDRESS_TYPE_URL, old);
    const ips = pod!.status?.podIPs?.map((p) => p.ip) ?? [pod!.status!.podIP!];
    const aliases = ips.map((ip) => alias(this.ctx.network, ip));
    this.sink.set(ADDRESS_TYPE_URL, name, AddressCodec.encode({ workload: w }), aliases, Object.keys(w.services ?? {}));
    this.podResource.set(key, name);
  }

  private syncService(key: string): void {
    const svc = this.cache.services.get(key);
    const old = this.serviceResource.get(key);
    if (!svc) {
      if (old) this.sink.delete(ADDRESS_TYPE_URL, old);
      this.serviceResource.delete(key);
      if (this.serviceBindings.delete(key)) this.listener?.serviceBindingChanged(key, undefined);
      return;
    }
    const binding = serviceBinding(svc, this.cache.namespaces.get(svc.metadata?.namespace ?? ''), this.waypoints);
    const before = this.serviceBindings.get(key);
    this.serviceBindings.set(key, binding);
    if (JSON.stringify(before) !== JSON.stringify(binding)) this.listener?.serviceBindingChanged(key, binding);
    const name = serviceKey(svc, this.ctx);
    const s = toService(svc, this.ctx, gatewayAddress(binding));
    const vips = (svc.spec?.clusterIPs ?? [svc.spec?.clusterIP ?? '']).filter((ip) => ip && ip !== 'None');
    this.sink.set(ADDRESS_TYPE_URL, name, AddressCodec.encode({ service: s }), vips.map((ip) => alias(this.ctx.network, ip)));
    this.serviceResource.set(key, name);
  }

  private syncPolicy(key: string): void {
    const p = this.cache.policies.get(key);
    const tr = p && toAuthorization(p, this.ctx.rootNamespace);
    if (!tr || tr.kind !== 'ztunnel') {
      if (this.policyResource.has(key)) this.sink.delete(AUTHORIZATION_TYPE_URL, key);
      this.policyResource.delete(key);
      return;
    }
    this.sink.set(AUTHORIZATION_TYPE_URL, key, AuthorizationCodec.encode(tr.authorization));
    this.policyResource.set(key, key);
  }
}

