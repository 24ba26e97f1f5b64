import { addressKey, type Workload } from './types.js';

/** Workloads by uid and by (network, IP). */
export class WorkloadStore {
  private readonly byUid = new Map<string, Workload>();
  private readonly byAddr = new Map<string, Workload>();

  get size(): number {
    return this.byUid.size;
  }

  upsert(w: Workload): void {
    this.remove(w.uid);
    this.byUid.set(w.uid, w);
    for (const ip of w.workloadIps) this.byAddr.set(addressKey(w.network, ip), w);
  }

  remove(uid: string): Workload | undefined {
    const old = this.byUid.get(uid);
    if (!old) return undefined;
    this.byUid.delete(uid);
    for (const ip of old.workloadIps) {
      const key = addressKey(old.network, ip);
      if (this.byAddr.get(key) === old) this.byAddr.delete(key);
    }
    return old;
  }

  get(uid: string): Workload | undefined {
    return this.byUid.get(uid);
  }

  byAddress(network: string, ip: string): Workload | undefined {
    return this.byAddr.get(addressKey(network, ip));
  }

  all(): IterableIterator<Workload> {
    return this.byUid.values();
  }
}
