import { EventEmitter } from 'node:events';
import { PolicyStore } from './policies.js';
import { ServiceStore, type Endpoint } from './services.js';
import type { StateOp } from './replica.js';
import { policyKey, serviceKey, type Authorization, type MeshConfig, type Service, type Workload } from './types.js';
import { WorkloadStore } from './workloads.js';

/**
 * Fetches addresses the state does not know yet (xDS on-demand). `fetch` resolves once the answer arrived or a bounded
 * wait is over; callers then look the state up again. `pin`/`unpin` keep a resource subscribed (local workloads).
 */
export interface AddressResolver {
  fetch(network: string, ip: string): Promise<void>;
  /** A lookup hit: keeps an on-demand subscription from being dropped as unused. */
  touch?(network: string, ip: string): void;
  /** fetch and touch for a service by namespace and hostname (`<ns>/<hostname>`: a waypoint named by its hostname). */
  fetchService?(namespace: string, hostname: string): Promise<void>;
  touchService?(namespace: string, hostname: string): void;
  pin?(name: string): void;
  unpin?(name: string): void;
}

export type Destination = { kind: 'workload'; workload: Workload } | { kind: 'service'; service: Service };

/**
 * Everything ztunnel knows about the mesh. Config sources write it; proxies,
 * admin and telemetry read it and listen for 'change'.
 */
export class ProxyState extends EventEmitter<{ change: [] }> {
  readonly workloads = new WorkloadStore();
  readonly services = new ServiceStore();
  readonly policies = new PolicyStore();
  /** Set when addresses can be fetched on demand (XDS_ON_DEMAND). */
  resolver?: AddressResolver;

  /** Set by the proxy threads (workers/host.ts): every change, in order, to be replayed on their replicas. */
  mirror?: (op: StateOp) => void;

  /** Replace the whole state (a full snapshot from a source such as the local file). */
  replace(cfg: MeshConfig): void {
    this.mirror?.({ op: 'replace', ...cfg });
    for (const w of [...this.workloads.all()]) this.dropWorkload(w.uid);
    for (const s of [...this.services.all()]) this.services.remove(serviceKey(s));
    for (const p of [...this.policies.all()]) this.policies.remove(policyKey(p));
    for (const w of cfg.workloads) this.putWorkload(w);
    for (const s of cfg.services) this.services.upsert(s);
    for (const p of cfg.policies) this.policies.upsert(p);
    this.emit('change');
  }

  upsertWorkload(w: Workload, notify = true): void {
    this.mirror?.({ op: 'upsertWorkload', workload: w, notify });
    this.putWorkload(w);
    if (notify) this.emit('change');
  }

  removeWorkload(uid: string, notify = true): void {
    this.mirror?.({ op: 'removeWorkload', uid, notify });
    if (this.dropWorkload(uid) && notify) this.emit('change');
  }

  upsertService(s: Service, notify = true): void {
    this.mirror?.({ op: 'upsertService', service: s, notify });
    this.services.upsert(s);
    if (notify) this.emit('change');
  }

  removeService(key: string, notify = true): void {
    this.mirror?.({ op: 'removeService', key, notify });
    if (this.services.remove(key) && notify) this.emit('change');
  }

  upsertPolicy(p: Authorization, notify = true): void {
    this.mirror?.({ op: 'upsertPolicy', policy: p, notify });
    this.policies.upsert(p);
    if (notify) this.emit('change');
  }

  removePolicy(key: string, notify = true): void {
    this.mirror?.({ op: 'removePolicy', key, notify });
    if (this.policies.remove(key) && notify) this.emit('change');
  }

  /** Tell readers that a batch of changes made with `notify = false` is complete. */
  changed(): void {
    this.mirror?.({ op: 'changed' });
    this.emit('change');
  }

  private putWorkload(w: Workload): void {
    this.dropWorkload(w.uid);
    this.workloads.upsert(w);
    this.services.addEndpoints(w);
  }

  private dropWorkload(uid: string): boolean {
    const old = this.workloads.remove(uid);
    if (old) this.services.removeEndpoints(old);
    return old !== undefined;
  }

  /** What an address means: a workload IP wins over a service VIP (they should not overlap). */
  findDestination(network: string, ip: string): Destination | undefined {
    const workload = this.workloads.byAddress(network, ip);
    if (workload) return { kind: 'workload', workload };
    const service = this.services.byAddress(network, ip);
    if (service) return { kind: 'service', service };
    return undefined;
  }

  /** Endpoints of a service with their workloads resolved (those whose workload is unknown are skipped). */
  *endpointsOf(service: Service): Iterable<{ endpoint: Endpoint; workload: Workload }> {
    for (const endpoint of this.services.endpoints(serviceKey(service))) {
      const workload = this.workloads.get(endpoint.workloadUid);
      if (workload) yield { endpoint, workload };
    }
  }
}
