import { addressKey, serviceKey, type PortMap, type Service, type Workload } from './types.js';

/** A workload serving a service, with its own port mapping for that service. */
export interface Endpoint {
  workloadUid: string;
  ports: PortMap;
}

/** Services by `ns/hostname` and VIP, and each service's endpoints. */
export class ServiceStore {
  private readonly byKey = new Map<string, Service>();
  private readonly byVip = new Map<string, Service>();
  // A hostname can exist in several namespaces; keep them all so removing one does not hide another.
  private readonly byHost = new Map<string, Service[]>();
  // Endpoints are kept apart from services: a workload may name a service before the service arrives.
  private readonly endpointsByService = new Map<string, Map<string, Endpoint>>();

  get size(): number {
    return this.byKey.size;
  }

  upsert(s: Service): void {
    this.remove(serviceKey(s));
    this.byKey.set(serviceKey(s), s);
    for (const v of s.vips) this.byVip.set(addressKey(v.network, v.address), s);
    const same = this.byHost.get(s.hostname);
    if (same) same.push(s);
    else this.byHost.set(s.hostname, [s]);
  }

  remove(key: string): Service | undefined {
    const old = this.byKey.get(key);
    if (!old) return undefined;
    this.byKey.delete(key);
    const same = this.byHost.get(old.hostname)?.filter((x) => x !== old);
    if (same?.length) this.byHost.set(old.hostname, same);
    else this.byHost.delete(old.hostname);
    for (const v of old.vips) {
      const k = addressKey(v.network, v.address);
      if (this.byVip.get(k) === old) this.byVip.delete(k);
    }
    return old;
  }

  get(key: string): Service | undefined {
    return this.byKey.get(key);
  }

  byAddress(network: string, ip: string): Service | undefined {
    return this.byVip.get(addressKey(network, ip));
  }

  /** By hostname alone (as the `forwarded` header names it); the most recently added when namespaces share it. */
  byHostname(hostname: string): Service | undefined {
    return this.byHost.get(hostname)?.at(-1);
  }

  all(): IterableIterator<Service> {
    return this.byKey.values();
  }

  addEndpoints(w: Workload): void {
    for (const [svc, ports] of w.services) {
      let set = this.endpointsByService.get(svc);
      if (!set) this.endpointsByService.set(svc, (set = new Map()));
      set.set(w.uid, { workloadUid: w.uid, ports });
    }
  }

  removeEndpoints(w: Workload): void {
    for (const svc of w.services.keys()) {
      const set = this.endpointsByService.get(svc);
      if (!set) continue;
      set.delete(w.uid);
      if (set.size === 0) this.endpointsByService.delete(svc);
    }
  }

  endpoints(key: string): Iterable<Endpoint> {
    return this.endpointsByService.get(key)?.values() ?? [];
  }
}
