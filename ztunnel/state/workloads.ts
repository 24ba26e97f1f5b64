import { AddressIndex } from './address-index.js';
import type { Workload } from './types.js';

/** Workloads by uid and by (network, IP). */
export class WorkloadStore {
  private readonly byUid = new Map<string, Workload>();
  private readonly byAddr = new AddressIndex<Workload>();

  get size(): number {
    return this.byUid.size;
  }

  upsert(w: Workload): void {
    this.remove(w.uid);
    this.byUid.set(w.uid, w);
    for (const ip of w.workloadIps) this.byAddr.set(w.network, ip, w);
  }

  remove(uid: string): Workload | undefined {
    const old = this.byUid.get(uid);
    if (!old) return undefined;
    this.byUid.delete(uid);
    for (const ip of old.workloadIps) this.byAddr.delete(old.network, ip, old);
    return old;
  }

  get(uid: string): Workload | undefined {
    return this.byUid.get(uid);
  }

  byAddress(network: string, ip: string): Workload | undefined {
    return this.byAddr.get(network, ip);
  }

  all(): IterableIterator<Workload> {
    return this.byUid.values();
  }
}
