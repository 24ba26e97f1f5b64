// The control plane's resource store: one map per xDS type URL of already-encoded resources.
//
// The controller fills it from Kubernetes (`set` / `delete`); the xDS server reads it and listens for
// changes. Each resource has a canonical name (workload uid, `<ns>/<hostname>`, `<ns>/<policy>`) and
// optional aliases (`<network>/<ip>` for every address), so an on-demand client can ask by IP.
// Versions are content hashes: the same content always has the same version, also across controller
// restarts, which lets a reconnecting client's `initial_resource_versions` be compared meaningfully.
// A resource may also name the groups it is a member of: other resources of the same type (a workload's
// services, by their canonical names). The store indexes this relation both ways (`groupsOf` / `membersOf`)
// without knowing what it means; the xDS server uses it to answer an on-demand subscription to a service with
// its workloads too, as istiod does.

import { createHash } from 'node:crypto';

export interface StoredResource {
  readonly typeUrl: string;
  readonly name: string;
  /** Content hash of the message bytes and the aliases. */
  readonly version: string;
  readonly aliases: readonly string[];
  /** Canonical names of the resources (same type) this one is a member of, e.g. a workload's services. */
  readonly groups: readonly string[];
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
  /** group name -> canonical names of its members (the group itself need not exist). */
  readonly byGroup: Map<string, Set<string>>;
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));

function indexAdd(index: Map<string, Set<string>>, key: string, name: string): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(name);
}

function indexRemove(index: Map<string, Set<string>>, key: string, name: string): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(name);
  if (set.size === 0) index.delete(key);
}

export class ResourceStore {
  private readonly tables = new Map<string, TypeTable>();
  private readonly listeners = new Set<StoreListener>();
  /** Non-null while inside batch(): changes collected per type, emitted at the end. */
  private batched: Map<string, Set<string>> | null = null;
  private generation = 0;

  /**
   * Stores (or replaces) a resource. `groups` are the canonical names of the resources (of the same type) it is
   * a member of. Returns true if anything changed; unchanged content (same bytes, aliases and groups) is a no-op
   * and notifies no one. The version covers bytes and aliases only (what a client sees); a change of groups
   * alone is still notified, so it can reach the clients subscribed to a new group.
   */
  set(typeUrl: string, name: string, body: Uint8Array, aliases: readonly string[] = [], groups: readonly string[] = []): boolean {
    if (!typeUrl || !name) throw new Error('ResourceStore.set: typeUrl and name are required');
    const table = this.table(typeUrl);
    const uniqueAliases = [...new Set(aliases.filter((a) => a && a !== name))];
    const uniqueGroups = [...new Set(groups.filter((g) => g && g !== name))];
    const version = contentVersion(body, uniqueAliases);
    const prev = table.byName.get(name);
    if (prev && prev.version === version && sameSet(prev.groups, uniqueGroups)) return false;
    if (prev) this.unindex(table, prev);
    const res: StoredResource = Object.freeze({
      typeUrl,
      name,
      version,
      aliases: Object.freeze(uniqueAliases),
      groups: Object.freeze(uniqueGroups),
      body: prev && prev.version === version ? prev.body : new Uint8Array(body),
    });
    table.byName.set(name, res);
    for (const a of res.aliases) indexAdd(table.byAlias, a, name);
    for (const g of res.groups) indexAdd(table.byGroup, g, name);
    this.changed(typeUrl, name);
    return true;
  }

  /** Removes a resource. Returns true if it existed. */
  delete(typeUrl: string, name: string): boolean {
    const table = this.tables.get(typeUrl);
    const prev = table?.byName.get(name);
    if (!table || !prev) return false;
    table.byName.delete(name);
    this.unindex(table, prev);
    this.changed(typeUrl, name);
    return true;
  }

  get(typeUrl: string, name: string): StoredResource | undefined {
    return this.tables.get(typeUrl)?.byName.get(name);
  }

  /** Resources an alias (e.g. `<network>/<ip>`) points to. */
  byAlias(typeUrl: string, alias: string): StoredResource[] {
    return this.resolveNames(typeUrl, this.tables.get(typeUrl)?.byAlias.get(alias));
  }

  /** Members of a group (the resources that list `group` among their groups), e.g. a service's workloads. */
  membersOf(typeUrl: string, group: string): StoredResource[] {
    return this.resolveNames(typeUrl, this.tables.get(typeUrl)?.byGroup.get(group));
  }

  private resolveNames(typeUrl: string, names: Iterable<string> | undefined): StoredResource[] {
    const table = this.tables.get(typeUrl);
    const out: StoredResource[] = [];
    if (!table || !names) return out;
    for (const n of names) {
      const r = table.byName.get(n);
      if (r) out.push(r);
    }
    return out;
  }

  /** Groups a resource is a member of (empty if it does not exist). */
  groupsOf(typeUrl: string, name: string): readonly string[] {
    return this.get(typeUrl, name)?.groups ?? [];
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
  replaceAll(
    typeUrl: string,
    resources: Iterable<{ name: string; body: Uint8Array; aliases?: readonly string[]; groups?: readonly string[] }>,
  ): void {
    this.batch(() => {
      const keep = new Set<string>();
      for (const r of resources) {
        keep.add(r.name);
        this.set(typeUrl, r.name, r.body, r.aliases ?? [], r.groups ?? []);
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
    if (!t) this.tables.set(typeUrl, (t = { byName: new Map(), byAlias: new Map(), byGroup: new Map() }));
    return t;
  }

  private unindex(table: TypeTable, res: StoredResource): void {
    for (const a of res.aliases) indexRemove(table.byAlias, a, res.name);
    for (const g of res.groups) indexRemove(table.byGroup, g, res.name);
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
