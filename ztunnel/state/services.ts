import { AddressIndex } from './address-index.js';
import { intern } from './intern.js';
import { serviceKey, type PortMap, type Service, type Workload } from './types.js';

/** A workload serving a service, with its own port mapping for that service. */
export interface Endpoint {
  workloadUid: string;
  ports: PortMap;
}

/** Up to this many endpoints a service keeps them in an array, a fraction of a Map's size; beyond, in a Map by uid. */
const SMALL = 16;

/** Services by `ns/hostname` and VIP, and each service's endpoints. */
export class ServiceStore {
  private readonly byKey = new Map<string, Service>();
  private readonly byVip = new AddressIndex<Service>();
  // A hostname can exist in several namespaces; keep them all so removing one does not hide another (an array only then).
  private readonly byHost = new Map<string, Service | Service[]>();
  // Endpoints are kept apart from services: a workload may name a service before the service arrives.
  // Service key -> the workloads naming it, one per uid; an endpoint's ports are its workload's for that service.
  private readonly endpointsByService = new Map<string, Workload[] | Map<string, Workload>>();

  get size(): number {
    return this.byKey.size;
  }

  upsert(s: Service): void {
    const key = intern(serviceKey(s)); // the same string as the workloads' and endpoints' keys for this service
    this.remove(key);
    this.byKey.set(key, s);
    for (const v of s.vips) this.byVip.set(v.network, v.address, s);
    const same = this.byHost.get(s.hostname);
    this.byHost.set(s.hostname, same === undefined ? s : Array.isArray(same) ? [...same, s] : [same, s]);
  }

  remove(key: string): Service | undefined {
    const old = this.byKey.get(key);
    if (!old) return undefined;
    this.byKey.delete(key);
    const rest = [this.byHost.get(old.hostname) ?? []].flat().filter((x) => x !== old);
    if (rest.length === 0) this.byHost.delete(old.hostname);
    else this.byHost.set(old.hostname, rest.length === 1 ? rest[0]! : rest);
    for (const v of old.vips) this.byVip.delete(v.network, v.address, old);
    return old;
  }

  get(key: string): Service | undefined {
    return this.byKey.get(key);
  }

  byAddress(network: string, ip: string): Service | undefined {
    return this.byVip.get(network, ip);
  }

  /** By hostname alone (as the `forwarded` header names it); the most recently added when namespaces share it. */
  byHostname(hostname: string): Service | undefined {
    const same = this.byHost.get(hostname);
    return Array.isArray(same) ? same.at(-1) : same;
  }

  all(): IterableIterator<Service> {
    return this.byKey.values();
  }

  addEndpoints(w: Workload): void {
    for (const svc of w.services.keys()) {
      const eps = this.endpointsByService.get(svc);
      if (!eps) this.endpointsByService.set(svc, [w]);
      else if (eps instanceof Map) eps.set(w.uid, w);
      else {
        const i = eps.findIndex((x) => x.uid === w.uid);
        if (i >= 0) eps[i] = w;
        else if (eps.length < SMALL) eps.push(w);
        else this.endpointsByService.set(svc, new Map([...eps, w].map((x) => [x.uid, x])));
      }
    }
  }

  removeEndpoints(w: Workload): void {
    for (const svc of w.services.keys()) {
      const eps = this.endpointsByService.get(svc);
      if (!eps) continue;
      if (eps instanceof Map) eps.delete(w.uid);
      else {
        const i = eps.findIndex((x) => x.uid === w.uid);
        if (i >= 0) eps.splice(i, 1);
      }
      if ((eps instanceof Map ? eps.size : eps.length) === 0) this.endpointsByService.delete(svc);
    }
  }

  *endpoints(key: string): Iterable<Endpoint> {
    const eps = this.endpointsByService.get(key);
    if (!eps) return;
    for (const w of eps instanceof Map ? eps.values() : eps) yield { workloadUid: w.uid, ports: w.services.get(key)! };
  }
}
