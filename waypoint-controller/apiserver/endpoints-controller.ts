// Built-in endpoints controller: keeps discovery.k8s.io/v1 EndpointSlices for every Service with a
// selector, from the Pods it selects (pod IPs, readiness from the Ready condition, node, targetRef,
// ports with named targetPorts resolved per pod). Pods whose resolved ports differ go to different
// slices, as the real controller does. Runs in-process on store events, coalescing bursts.
import { createHash } from 'node:crypto';
import type { Operations } from './operations.js';
import type { ResourceRegistry } from './resources.js';
import { matchMapSelector } from './selectors.js';
import type { Store } from './store.js';
import type { KubeObject, ResourceType, StoreEvent } from './types.js';
import { isObject } from './types.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MANAGED_BY = 'endpointslice-controller.k8s.io';

interface ServicePort { name?: string; port: number; protocol?: string; targetPort?: number | string; appProtocol?: string }
interface ContainerPort { name?: string; containerPort: number; protocol?: string }
interface SlicePort { name: string; port: number; protocol: string; appProtocol?: string }

interface PodView {
  metadata: KubeObject['metadata'];
  spec?: { nodeName?: string; hostname?: string; subdomain?: string; containers?: Array<{ ports?: ContainerPort[] }>; initContainers?: Array<{ ports?: ContainerPort[]; restartPolicy?: string }> };
  status?: { podIP?: string; podIPs?: Array<{ ip: string }>; phase?: string; conditions?: Array<{ type: string; status: string }> };
}

function resolvePort(sp: ServicePort, pod: PodView): number | undefined {
  const tp = sp.targetPort ?? sp.port;
  if (typeof tp === 'number') return tp;
  if (/^\d+$/.test(tp)) return Number(tp);
  const containers = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always')];
  for (const c of containers) {
    for (const p of c.ports ?? []) {
      if (p.name === tp && (p.protocol ?? 'TCP') === (sp.protocol ?? 'TCP')) return p.containerPort;
    }
  }
  return undefined;
}

const podReady = (pod: PodView): boolean => pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

/** The desired slices of one Service (name → object), given all pods of its namespace. */
export function desiredSlices(svc: KubeObject, pods: KubeObject[]): KubeObject[] {
  const spec = (svc.spec ?? {}) as { selector?: Record<string, string>; ports?: ServicePort[]; type?: string; publishNotReadyAddresses?: boolean };
  const ns = svc.metadata.namespace!;
  const svcName = svc.metadata.name!;
  const groups = new Map<string, { addressType: string; ports: SlicePort[]; endpoints: object[] }>();
  for (const p of pods as PodView[]) {
    if (!matchMapSelector(spec.selector ?? {}, p.metadata.labels)) continue;
    const phase = p.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    const ips = p.status?.podIPs?.map((x) => x.ip) ?? (p.status?.podIP ? [p.status.podIP] : []);
    if (ips.length === 0) continue;
    const terminating = p.metadata.deletionTimestamp !== undefined;
    const ready = podReady(p) && !terminating;
    const ports: SlicePort[] = [];
    for (const sp of spec.ports ?? []) {
      const port = resolvePort(sp, p);
      if (port === undefined) continue;
      const out: SlicePort = { name: sp.name ?? '', port, protocol: sp.protocol ?? 'TCP' };
      if (sp.appProtocol) out.appProtocol = sp.appProtocol;
      ports.push(out);
    }
    for (const ip of ips) {
      const addressType = ip.includes(':') ? 'IPv6' : 'IPv4';
      const key = `${addressType}|${JSON.stringify(ports)}`;
      let g = groups.get(key);
      if (!g) { g = { addressType, ports, endpoints: [] }; groups.set(key, g); }
      const ep: Record<string, unknown> = {
        addresses: [ip],
        conditions: { ready: ready || (spec.publishNotReadyAddresses === true), serving: podReady(p), terminating },
        targetRef: { kind: 'Pod', namespace: ns, name: p.metadata.name, uid: p.metadata.uid },
      };
      if (p.spec?.nodeName) ep.nodeName = p.spec.nodeName;
      if (p.spec?.hostname && p.spec.subdomain === svcName) ep.hostname = p.spec.hostname;
      g.endpoints.push(ep);
    }
  }
  if (groups.size === 0) groups.set('IPv4|[]', { addressType: 'IPv4', ports: [], endpoints: [] });
  const labels: Record<string, string> = { ...svc.metadata.labels, [SERVICE_NAME_LABEL]: svcName, [MANAGED_BY_LABEL]: MANAGED_BY };
  return [...groups.entries()].map(([key, g]) => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: {
      name: `${svcName.slice(0, 50)}-${createHash('sha256').update(key).digest('hex').slice(0, 5)}`,
      namespace: ns,
      labels,
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svcName, uid: svc.metadata.uid!, controller: true, blockOwnerDeletion: true }],
    },
    addressType: g.addressType,
    endpoints: g.endpoints,
    ports: g.ports,
  }));
}

export class EndpointsController {
  private readonly pending = new Set<string>();
  private scheduled = false;
  private unsubscribe: (() => void) | undefined;
  private readonly svcType: ResourceType;
  private readonly podType: ResourceType;
  private readonly sliceType: ResourceType;

  constructor(private readonly store: Store, private readonly ops: Operations, registry: ResourceRegistry, private readonly log?: (msg: string) => void) {
    const need = (v: string, k: string): ResourceType => {
      const rt = registry.forKind(v, k);
      if (!rt) throw new Error(`endpoints controller needs ${v} ${k}`);
      return rt;
    };
    this.svcType = need('v1', 'Service');
    this.podType = need('v1', 'Pod');
    this.sliceType = need('discovery.k8s.io/v1', 'EndpointSlice');
  }

  /** Subscribe to changes and reconcile every existing Service once (synchronously). */
  start(): void {
    this.unsubscribe = this.store.subscribe((e) => this.onEvent(e));
    for (const s of this.store.list(this.svcType)) this.pending.add(`${s.metadata.namespace}/${s.metadata.name}`);
    this.flush();
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private onEvent(e: StoreEvent): void {
    const ns = e.object.metadata.namespace;
    if (e.resource === this.svcType) this.pending.add(`${ns}/${e.object.metadata.name}`);
    else if (e.resource === this.podType) {
      for (const s of this.store.list(this.svcType, ns)) this.pending.add(`${ns}/${s.metadata.name}`);
    } else if (e.resource === this.sliceType && e.type !== 'ADDED') {
      // Someone else changed or deleted a managed slice: put it back.
      const svc = e.object.metadata.labels?.[SERVICE_NAME_LABEL];
      if (svc && e.object.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY) this.pending.add(`${ns}/${svc}`);
    } else return;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => { this.scheduled = false; this.flush(); });
    }
  }

  /** Reconcile all pending Services now. */
  flush(): void {
    const keys = [...this.pending];
    this.pending.clear();
    for (const key of keys) {
      const [ns, name] = key.split('/') as [string, string];
      try { this.reconcile(ns, name); } catch (e) { this.log?.(`endpoints controller: ${key}: ${(e as Error).message}`); }
    }
  }

  private reconcile(ns: string, name: string): void {
    const svc = this.store.get(this.svcType, ns, name);
    const existing = this.store.list(this.sliceType, ns).filter((s) =>
      s.metadata.labels?.[SERVICE_NAME_LABEL] === name && s.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY);
    const spec = svc?.spec as { selector?: Record<string, string>; type?: string } | undefined;
    const wanted = svc && isObject(spec?.selector) && Object.keys(spec.selector).length > 0 && spec.type !== 'ExternalName'
      ? desiredSlices(svc, this.store.list(this.podType, ns)) : [];
    for (const want of wanted) {
      const have = existing.find((s) => s.metadata.name === want.metadata.name);
      if (!have) { this.ops.create(this.sliceType, ns, want); continue; }
      const cur = { labels: have.metadata.labels, owners: have.metadata.ownerReferences, a: have.addressType, e: have.endpoints, p: have.ports };
      const nxt = { labels: want.metadata.labels, owners: want.metadata.ownerReferences, a: want.addressType, e: want.endpoints, p: want.ports };
      if (JSON.stringify(cur) !== JSON.stringify(nxt)) {
        this.ops.update(this.sliceType, ns, have.metadata.name!, { ...want, metadata: { ...have.metadata, labels: want.metadata.labels, ownerReferences: want.metadata.ownerReferences } }, undefined);
      }
    }
    for (const s of existing) {
      if (!wanted.some((w) => w.metadata.name === s.metadata.name)) this.ops.delete(this.sliceType, ns, s.metadata.name!, undefined);
    }
  }
}
