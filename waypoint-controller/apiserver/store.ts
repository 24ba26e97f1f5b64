// Object store: objects per resource type, the global resourceVersion counter, a bounded history of
// change events (for watch resume), and synchronous fan-out to subscribers. No Kubernetes semantics
// beyond that (see operations.ts); no I/O (persistence is a hook).
import type { KubeObject, ResourceType, StoreEvent, WatchEventType } from './types.js';
import { clone } from './types.js';

/** Write-through hook (stateDir); called after every committed change. */
export interface PersistenceHook {
  saved(rt: ResourceType, obj: KubeObject, rv: number): void;
  removed(rt: ResourceType, obj: KubeObject, rv: number): void;
}

export type Listener = (e: StoreEvent) => void;

const objectKey = (ns: string | undefined, name: string): string => `${ns ?? ''}/${name}`;

export class Store {
  private rv: number;
  /** Events with rv <= floor may be missing from history: watches from older versions get 410. */
  private floor: number;
  private readonly history: StoreEvent[] = [];
  private readonly objects = new Map<ResourceType, Map<string, KubeObject>>();
  private readonly listeners = new Set<Listener>();

  constructor(private readonly opts: { historySize: number; initialResourceVersion?: number; persistence?: PersistenceHook }) {
    this.rv = opts.initialResourceVersion ?? 0;
    this.floor = this.rv;
  }

  /** The latest resourceVersion handed out. */
  get resourceVersion(): number { return this.rv; }

  /** The oldest resourceVersion a watch can resume from. */
  get oldestResumable(): number { return this.floor; }

  /** Put an object without an event (startup from persisted state). */
  load(rt: ResourceType, obj: KubeObject): void {
    this.bucket(rt).set(objectKey(obj.metadata.namespace, obj.metadata.name!), clone(obj));
    const rv = Number(obj.metadata.resourceVersion);
    if (Number.isFinite(rv) && rv > this.rv) { this.rv = rv; this.floor = rv; }
  }

  get(rt: ResourceType, ns: string | undefined, name: string): KubeObject | undefined {
    const o = this.bucket(rt).get(objectKey(rt.namespaced ? ns : undefined, name));
    return o && clone(o);
  }

  /** Objects of a type (in one namespace, or all), sorted by namespace/name. Returned objects are copies. */
  list(rt: ResourceType, ns?: string): KubeObject[] {
    const out: KubeObject[] = [];
    for (const [k, o] of [...this.bucket(rt).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (ns === undefined || !rt.namespaced || k.startsWith(`${ns}/`)) out.push(clone(o));
    }
    return out;
  }

  /** Store a new or changed object: assigns the next resourceVersion, records and fans out the event. */
  write(rt: ResourceType, obj: KubeObject): KubeObject {
    const key = objectKey(obj.metadata.namespace, obj.metadata.name!);
    const previous = this.bucket(rt).get(key);
    const stored = clone(obj);
    stored.metadata.resourceVersion = String(++this.rv);
    this.bucket(rt).set(key, stored);
    this.opts.persistence?.saved(rt, stored, this.rv);
    this.emit(previous ? 'MODIFIED' : 'ADDED', rt, stored, previous);
    return clone(stored);
  }

  /** Remove an object; the DELETED event carries a new resourceVersion. */
  remove(rt: ResourceType, ns: string | undefined, name: string): KubeObject | undefined {
    const key = objectKey(rt.namespaced ? ns : undefined, name);
    const existing = this.bucket(rt).get(key);
    if (!existing) return undefined;
    this.bucket(rt).delete(key);
    const gone = clone(existing);
    gone.metadata.resourceVersion = String(++this.rv);
    this.opts.persistence?.removed(rt, gone, this.rv);
    this.emit('DELETED', rt, gone, undefined);
    return clone(gone);
  }

  /** Events after `rv` (oldest first), or undefined when some of them are no longer retained. */
  eventsSince(rv: number): StoreEvent[] | undefined {
    if (rv < this.floor) return undefined;
    let lo = 0;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.history[mid]!.rv <= rv) lo = mid + 1; else hi = mid;
    }
    return this.history.slice(lo);
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => { this.listeners.delete(fn); };
  }

  private emit(type: WatchEventType, resource: ResourceType, object: KubeObject, previous: KubeObject | undefined): void {
    const e: StoreEvent = { rv: this.rv, type, resource, object };
    if (previous) e.previous = previous;
    this.history.push(e);
    if (this.history.length > this.opts.historySize) {
      const dropped = this.history.splice(0, this.history.length - this.opts.historySize);
      this.floor = dropped[dropped.length - 1]!.rv;
    }
    for (const l of [...this.listeners]) {
      try { l(e); } catch { /* a failing listener must not break the write path */ }
    }
  }

  private bucket(rt: ResourceType): Map<string, KubeObject> {
    let b = this.objects.get(rt);
    if (!b) { b = new Map(); this.objects.set(rt, b); }
    return b;
  }
}
