// The control plane's resource store: one map per xDS type URL of already-encoded resources.
//
// The controller fills it from Kubernetes (`set` / `delete`); the xDS server reads it and listens for
// changes. Each resource has a canonical name (workload uid, `<ns>/<hostname>`, `<ns>/<policy>`) and
// optional aliases (`<network>/<ip>` for every address), so an on-demand client can ask by IP.
// Versions are content hashes: the same content always has the same version, also across controller
// restarts, which lets a reconnecting client's `initial_resource_versions` be compared meaningfully.

import { createHash } from 'node:crypto';

export interface StoredResource {
  readonly typeUrl: string;
  readonly name: string;
  /** Content hash of the message bytes and the aliases. */
  readonly version: string;
  readonly aliases: readonly string[];
  /** The encoded message (e.g. an istio.workload.Address), sent as Any.value. */
  readonly body: Uint8Array;
}

/** Names set (created/updated with new content) or deleted in one type, in one store operation. */
export interface StoreChange {
  readonly typeUrl: string;
  readonly names: readonly string[];
}

export type StoreListener = (change: StoreChange) => void;

/** Version of a resource: a short hash over the message bytes and the sorted aliases. */
export function contentVersion(body: Uint8Array, aliases: readonly string[]): string {
  const h = createHash('sha256');
  h.update(body);
  for (const a of [...aliases].sort()) {
    h.update('\0');
    h.update(a);
  }
  return h.digest('base64url').slice(0, 16);
}

interface TypeTable {
  readonly byName: Map<string, StoredResource>;
  /** alias -> canonical names carrying it (normally one). */
  readonly byAlias: Map<string, Set<string>>;
}

export class ResourceStore {
  private readonly tables = new Map<string, TypeTable>();
  private readonly listeners = new Set<StoreListener>();
  /** Non-null while inside batch(): changes collected per type, emitted at the end. */
  private batched: Map<string, Set<string>> | null = null;
  private generation = 0;

  /**
   * Stores (or replaces) a resource. Returns true if anything changed; unchanged content
   * (same bytes and aliases) is a no-op and notifies no one.
   */
  set(typeUrl: string, name: string, body: Uint8Array, aliases: readonly string[] = []): boolean {
    if (!typeUrl || !name) throw new Error('ResourceStore.set: typeUrl and name are required');
    const table = this.table(typeUrl);
    const uniqueAliases = [...new Set(aliases.filter((a) => a && a !== name))];
    const version = contentVersion(body, uniqueAliases);
    const prev = table.byName.get(name);
    if (prev && prev.version === version) return false;
    if (prev) this.unindexAliases(table, prev);
    const res: StoredResource = Object.freeze({
      typeUrl,
      name,
      version,
      aliases: Object.freeze(uniqueAliases),
      body: new Uint8Array(body),
    });
    table.byName.set(name, res);
    for (const a of res.aliases) {
      let set = table.byAlias.get(a);
      if (!set) table.byAlias.set(a, (set = new Set()));
      set.add(name);
    }
    this.changed(typeUrl, name);
    return true;
  }

  /** Removes a resource. Returns true if it existed. */
  delete(typeUrl: string, name: string): boolean {
    const table = this.tables.get(typeUrl);
    const prev = table?.byName.get(name);
    if (!table || !prev) return false;
    table.byName.delete(name);
    this.unindexAliases(table, prev);
    this.changed(typeUrl, name);
    return true;
  }

  get(typeUrl: string, name: string): StoredResource | undefined {
    return this.tables.get(typeUrl)?.byName.get(name);
  }

  /** Resources an alias (e.g. `<network>/<ip>`) points to. */
  byAlias(typeUrl: string, alias: string): StoredResource[] {
    const table = this.tables.get(typeUrl);
    const names = table?.byAlias.get(alias);
    if (!table || !names) return [];
    const out: StoredResource[] = [];
    for (const n of names) {
      const r = table.byName.get(n);
      if (r) out.push(r);
    }
    return out;
  }

  /** Resolves a subscription key: a canonical name first, else an alias. */
  resolve(typeUrl: string, key: string): StoredResource[] {
    const r = this.get(typeUrl, key);
    return r ? [r] : this.byAlias(typeUrl, key);
  }

  list(typeUrl: string): StoredResource[] {
    return [...(this.tables.get(typeUrl)?.byName.values() ?? [])];
  }

  size(typeUrl: string): number {
    return this.tables.get(typeUrl)?.byName.size ?? 0;
  }

  typeUrls(): string[] {
    return [...this.tables.keys()];
  }

  /** Increases on every effective change; usable as a system version. */
  get version(): number {
    return this.generation;
  }

  /** Replaces the whole content of a type: sets the given resources, deletes the others. */
  replaceAll(typeUrl: string, resources: Iterable<{ name: string; body: Uint8Array; aliases?: readonly string[] }>): void {
    this.batch(() => {
      const keep = new Set<string>();
      for (const r of resources) {
        keep.add(r.name);
        this.set(typeUrl, r.name, r.body, r.aliases ?? []);
      }
      for (const r of this.list(typeUrl)) if (!keep.has(r.name)) this.delete(typeUrl, r.name);
    });
  }

  /** Runs fn and emits its changes as one notification per type at the end. */
  batch<T>(fn: () => T): T {
    if (this.batched) return fn();
    this.batched = new Map();
    try {
      return fn();
    } finally {
      const pending = this.batched;
      this.batched = null;
      for (const [typeUrl, names] of pending) this.emit({ typeUrl, names: [...names] });
    }
  }

  /** Registers a change listener; returns the function that unregisters it. */
  onChange(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private table(typeUrl: string): TypeTable {
    let t = this.tables.get(typeUrl);
    if (!t) this.tables.set(typeUrl, (t = { byName: new Map(), byAlias: new Map() }));
    return t;
  }

  private unindexAliases(table: TypeTable, res: StoredResource): void {
    for (const a of res.aliases) {
      const set = table.byAlias.get(a);
      if (!set) continue;
      set.delete(res.name);
      if (set.size === 0) table.byAlias.delete(a);
    }
  }

  private changed(typeUrl: string, name: string): void {
    this.generation++;
    if (this.batched) {
      let set = this.batched.get(typeUrl);
      if (!set) this.batched.set(typeUrl, (set = new Set()));
      set.add(name);
      return;
    }
    this.emit({ typeUrl, names: [name] });
  }

  private emit(change: StoreChange): void {
    for (const l of this.listeners) l(change);
  }
}
