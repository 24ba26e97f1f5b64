// Server-side apply with a simple field-ownership model.
//
// Supported: each Apply manager owns the set of leaf fields of its last applied configuration
// (stored as FieldsV1 in metadata.managedFields). Applying again merges the configuration into the
// live object (maps merged, lists keyed by well-known merge keys merged per item, other lists
// replaced as a whole), removes fields the manager no longer applies unless another Apply manager
// owns them, and reports a 409 Conflict when a field would change value while another Apply manager
// owns it (force=true takes ownership instead). Non-apply writers (PUT, merge/JSON patch) do not
// take ownership of fields.
import { isDeepStrictEqual } from 'node:util';
import { listKeyFor } from './patch.js';
import type { JsonObject, JsonValue, ManagedFieldsEntry } from './types.js';
import { clone, isObject } from './types.js';

type Path = string[];
const TRACKED_META = ['labels', 'annotations', 'finalizers', 'ownerReferences'];

/** The part of an applied configuration that ownership is tracked for. */
export function trackedPart(applied: JsonObject, scope: 'main' | 'status', hasStatus: boolean): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(applied)) {
    if (k === 'apiVersion' || k === 'kind') continue;
    if (k === 'metadata') {
      if (scope === 'status' || !isObject(v)) continue;
      const meta: JsonObject = {};
      for (const mk of TRACKED_META) if (v[mk] !== undefined && v[mk] !== null) meta[mk] = v[mk]!;
      if (Object.keys(meta).length) out.metadata = meta;
      continue;
    }
    if (scope === 'status' ? k !== 'status' : hasStatus && k === 'status') continue;
    out[k] = v;
  }
  return out;
}

function itemKey(field: string, item: JsonValue, items: JsonValue[]): string | undefined {
  const key = listKeyFor(field, items);
  if (!key || !isObject(item) || item[key] === undefined) return undefined;
  return `k:${JSON.stringify({ [key]: item[key] })}`;
}

/** FieldsV1 tree of an applied configuration. */
export function fieldsOf(obj: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === null) continue;
    if (isObject(v) && Object.keys(v).length > 0) {
      out[`f:${k}`] = fieldsOf(v);
    } else if (Array.isArray(v) && v.length > 0 && v.every((it) => itemKey(k, it, v) !== undefined)) {
      const items: JsonObject = {};
      for (const it of v) items[itemKey(k, it, v)!] = { '.': {}, ...fieldsOf(it as JsonObject) };
      out[`f:${k}`] = items;
    } else {
      out[`f:${k}`] = {};
    }
  }
  return out;
}

export function leafPaths(tree: JsonObject, prefix: Path = []): Path[] {
  const out: Path[] = [];
  for (const [k, v] of Object.entries(tree)) {
    const p = [...prefix, k];
    if (isObject(v) && Object.keys(v).length > 0) out.push(...leafPaths(v, p));
    else out.push(p);
  }
  return out;
}

function treeOf(paths: Path[]): JsonObject {
  const root: JsonObject = {};
  for (const p of paths) {
    let cur = root;
    for (const seg of p) {
      if (!isObject(cur[seg])) cur[seg] = {};
      cur = cur[seg] as JsonObject;
    }
  }
  return root;
}

const keyOf = (p: Path): string => p.join('\u0000');

function findItem(list: JsonValue[], seg: string): number {
  const want = JSON.parse(seg.slice(2)) as JsonObject;
  return list.findIndex((it) => isObject(it) && Object.entries(want).every(([k, v]) => it[k] === v));
}

const MISSING = Symbol('missing');
function valueAt(obj: JsonValue, path: Path): JsonValue | typeof MISSING {
  let cur: JsonValue = obj;
  for (const seg of path) {
    if (seg === '.') continue;
    if (seg.startsWith('f:') && isObject(cur)) {
      if (!(seg.slice(2) in cur)) return MISSING;
      cur = cur[seg.slice(2)]!;
    } else if (seg.startsWith('k:') && Array.isArray(cur)) {
      const i = findItem(cur, seg);
      if (i < 0) return MISSING;
      cur = cur[i]!;
    } else {
      return MISSING;
    }
  }
  return cur;
}

function removeAt(obj: JsonObject, path: Path): void {
  const p = path[path.length - 1] === '.' ? path.slice(0, -1) : path;
  const last = p[p.length - 1];
  if (!last) return;
  const parent = valueAt(obj, p.slice(0, -1));
  if (parent === MISSING) return;
  if (last.startsWith('f:') && isObject(parent)) delete parent[last.slice(2)];
  else if (last.startsWith('k:') && Array.isArray(parent)) {
    const i = findItem(parent, last);
    if (i >= 0) parent.splice(i, 1);
  }
}

/** Merge an applied configuration into a live object (maps deep, keyed lists per item, other lists replaced). */
export function mergeApplied(live: JsonValue | undefined, applied: JsonValue, field = ''): JsonValue {
  if (isObject(applied)) {
    const out: JsonObject = isObject(live) ? { ...live } : {};
    for (const [k, v] of Object.entries(applied)) {
      if (v === null) { delete out[k]; continue; }
      out[k] = mergeApplied(out[k], v, k);
    }
    return out;
  }
  if (Array.isArray(applied) && Array.isArray(live) && applied.every((it) => itemKey(field, it, applied) !== undefined)) {
    const out = [...live];
    for (const it of applied) {
      const i = findItem(out, itemKey(field, it, applied)!);
      if (i >= 0) out[i] = mergeApplied(out[i], it);
      else out.push(clone(it));
    }
    // Keep the applied order for applied items; items only in live stay after them.
    const appliedKeys = applied.map((it) => itemKey(field, it, applied)!);
    const inApplied = out.filter((it) => appliedKeys.some((k) => findItem([it], k) === 0));
    const others = out.filter((it) => !inApplied.includes(it));
    inApplied.sort((a, b) => appliedKeys.findIndex((k) => findItem([a], k) === 0) - appliedKeys.findIndex((k) => findItem([b], k) === 0));
    return [...inApplied, ...others];
  }
  return clone(applied);
}

export interface ApplyConflict { manager: string; field: string }

export interface ApplyResult {
  object: JsonObject;
  managedFields: ManagedFieldsEntry[];
  conflicts: ApplyConflict[];
}

const pathText = (p: Path): string => p.filter((s) => s !== '.').map((s) => (s.startsWith('f:') ? `.${s.slice(2)}` : `[${s.slice(2)}]`)).join('');

/**
 * Apply `applied` (already reduced with trackedPart) to `live` for `manager`. Returns conflicts
 * (and leaves everything unchanged) unless force is set.
 */
export function apply(opts: {
  live: JsonObject; applied: JsonObject; manager: string; force: boolean; apiVersion: string;
  subresource?: 'status'; managedFields: ManagedFieldsEntry[]; now: string;
}): ApplyResult {
  const { manager, force } = opts;
  const sub = opts.subresource;
  const mine = (e: ManagedFieldsEntry) => e.manager === manager && e.operation === 'Apply' && (e.subresource ?? undefined) === sub;
  const entries = opts.managedFields.map((e) => ({ ...e, fieldsV1: clone(e.fieldsV1) }));
  const oldPaths = new Set(leafPaths(entries.find(mine)?.fieldsV1 ?? {}).map(keyOf));
  const newTree = fieldsOf(opts.applied);
  const newPathList = leafPaths(newTree);
  const newPaths = new Set(newPathList.map(keyOf));

  const others = entries.filter((e) => !mine(e) && e.operation === 'Apply');
  const conflicts: ApplyConflict[] = [];
  for (const p of newPathList) {
    const liveV = valueAt(opts.live, p);
    const newV = valueAt(opts.applied, p);
    if (liveV === MISSING || JSON.stringify(liveV) === JSON.stringify(newV)) continue;
    if (p[p.length - 1] === '.') continue;
    for (const o of others) {
      const theirs = leafPaths(o.fieldsV1);
      if (theirs.some((q) => keyOf(q) === keyOf(p))) {
        if (force) o.fieldsV1 = treeOf(theirs.filter((q) => keyOf(q) !== keyOf(p)));
        else conflicts.push({ manager: o.manager, field: pathText(p) });
      }
    }
  }
  if (conflicts.length && !force) return { object: opts.live, managedFields: opts.managedFields, conflicts };

  const ownedByOthers = new Set(others.flatMap((o) => leafPaths(o.fieldsV1).map(keyOf)));
  const object = clone(opts.live);
  const removed = [...oldPaths].filter((k) => !newPaths.has(k) && !ownedByOthers.has(k)).map((k) => k.split('\u0000'));
  removed.sort((a, b) => b.length - a.length);
  for (const p of removed) {
    // Only remove a list item when no applied path still lives under it.
    removeAt(object, p);
  }
  const merged = mergeApplied(object, opts.applied) as JsonObject;

  const next: ManagedFieldsEntry[] = entries.filter((e) => !mine(e) && Object.keys(e.fieldsV1).length > 0);
  // An apply that owns the same fields as before keeps the entry's time, so a no-op apply changes nothing (as Kubernetes).
  const previous = entries.find((e) => mine(e) && e.apiVersion === opts.apiVersion && isDeepStrictEqual(e.fieldsV1, newTree));
  const entry: ManagedFieldsEntry = { manager, operation: 'Apply', apiVersion: opts.apiVersion, time: previous?.time ?? opts.now, fieldsType: 'FieldsV1', fieldsV1: newTree };
  if (sub) entry.subresource = sub;
  next.push(entry);
  return { object: merged, managedFields: next, conflicts: [] };
}
