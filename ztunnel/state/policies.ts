import { flat } from './intern.js';
import { policyKey, type Authorization, type Workload } from './types.js';

/** Authorization policies by key, with the global and per-namespace ones indexed for lookup. */
export class PolicyStore {
  private readonly byKey = new Map<string, Authorization>();
  private readonly byNamespace = new Map<string, Set<Authorization>>();
  private readonly global = new Set<Authorization>();

  get size(): number {
    return this.byKey.size;
  }

  upsert(p: Authorization): void {
    const key = flat(policyKey(p));
    this.remove(key);
    this.byKey.set(key, p);
    if (p.scope === 'Global') this.global.add(p);
    else if (p.scope === 'Namespace') {
      let set = this.byNamespace.get(p.namespace);
      if (!set) this.byNamespace.set(p.namespace, (set = new Set()));
      set.add(p);
    }
  }

  remove(key: string): Authorization | undefined {
    const old = this.byKey.get(key);
    if (!old) return undefined;
    this.byKey.delete(key);
    this.global.delete(old);
    const ns = this.byNamespace.get(old.namespace);
    if (ns) {
      ns.delete(old);
      if (ns.size === 0) this.byNamespace.delete(old.namespace);
    }
    return old;
  }

  get(key: string): Authorization | undefined {
    return this.byKey.get(key);
  }

  all(): IterableIterator<Authorization> {
    return this.byKey.values();
  }

  /** Policies that apply to a destination workload: global, its namespace's, and those selecting it. */
  forWorkload(w: Workload): Authorization[] {
    const out = [...this.global];
    const ns = this.byNamespace.get(w.namespace);
    if (ns) out.push(...ns);
    for (const key of w.authorizationPolicies) {
      const p = this.byKey.get(key);
      if (p && p.scope === 'WorkloadSelector') out.push(p);
    }
    return out;
  }
}
