// Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and an approximation of
// strategic merge patch (merge patch + list merging by well-known keys, `$patch: delete|replace`).
import { badRequest, ApiError } from './errors.js';
import type { JsonObject, JsonValue } from './types.js';
import { clone, isObject } from './types.js';

export function mergePatch(target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** List fields merged element-wise by key in strategic merge patch and server-side apply. */
export const LIST_MERGE_KEYS: Readonly<Record<string, string>> = {
  containers: 'name', initContainers: 'name', ephemeralContainers: 'name', volumes: 'name', env: 'name',
  volumeMounts: 'mountPath', imagePullSecrets: 'name', conditions: 'type', containerStatuses: 'name',
  initContainerStatuses: 'name', hostAliases: 'ip', ownerReferences: 'uid', listeners: 'name',
};
/** `ports` lists key by containerPort (pods) or port (services). */
export function listKeyFor(field: string, items: JsonValue[]): string | undefined {
  if (field === 'ports') {
    const first = items.find(isObject);
    if (first && 'containerPort' in first) return 'containerPort';
    if (first && 'port' in first) return 'port';
    return undefined;
  }
  return LIST_MERGE_KEYS[field];
}

export function strategicMergePatch(target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isObject(patch)) return clone(patch);
  if (patch.$patch === 'replace') { const p = { ...patch }; delete p.$patch; return clone(p); }
  if (patch.$patch === 'delete') return {};
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$')) continue;
    if (v === null) { delete out[k]; continue; }
    const cur = out[k];
    if (Array.isArray(v) && Array.isArray(cur)) {
      const key = listKeyFor(k, [...v, ...cur]);
      if (key) { out[k] = mergeList(cur, v, key); continue; }
    }
    out[k] = Array.isArray(v) ? clone(v) : strategicMergePatch(cur, v);
  }
  return out;
}

function mergeList(cur: JsonValue[], patch: JsonValue[], key: string): JsonValue[] {
  const out = [...cur];
  for (const item of patch) {
    if (!isObject(item) || !(key in item)) { out.push(clone(item)); continue; }
    const idx = out.findIndex((e) => isObject(e) && e[key] === item[key]);
    if (item.$patch === 'delete') { if (idx >= 0) out.splice(idx, 1); continue; }
    if (idx >= 0) out[idx] = strategicMergePatch(out[idx], item);
    else out.push(strategicMergePatch({}, item));
  }
  return out;
}

// ------------------------------------------------------------------ JSON patch

interface JsonPatchOp { op: string; path: string; from?: string; value?: JsonValue }

function parsePointer(p: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw badRequest(`invalid JSON pointer: ${p}`);
  return p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function container(doc: JsonValue, segs: string[]): JsonValue {
  let cur = doc;
  for (const s of segs) {
    if (Array.isArray(cur)) cur = cur[Number(s)] as JsonValue;
    else if (isObject(cur)) cur = cur[s] as JsonValue;
    else cur = undefined as unknown as JsonValue;
    if (cur === undefined) throw new ApiError(422, 'Invalid', `the server rejected our request due to an error in our request: path /${segs.join('/')} not found`);
  }
  return cur;
}

function getAt(doc: JsonValue, path: string): JsonValue {
  return container(doc, parsePointer(path));
}

function removeAt(doc: JsonValue, path: string): JsonValue {
  const segs = parsePointer(path);
  const last = segs.pop();
  if (last === undefined) throw badRequest('cannot remove the document root');
  const parent = container(doc, segs);
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!Number.isInteger(i) || i < 0 || i >= parent.length) throw new ApiError(422, 'Invalid', `unable to remove nonexistent index: ${path}`);
    return parent.splice(i, 1)[0]!;
  }
  if (isObject(parent) && last in parent) { const v = parent[last]!; delete parent[last]; return v; }
  throw new ApiError(422, 'Invalid', `unable to remove nonexistent key: ${path}`);
}

function addAt(doc: JsonValue, path: string, value: JsonValue, replace: boolean): JsonValue {
  const segs = parsePointer(path);
  const last = segs.pop();
  if (last === undefined) return clone(value);
  const parent = container(doc, segs);
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length || (replace && i >= parent.length)) throw new ApiError(422, 'Invalid', `index out of range: ${path}`);
    parent.splice(i, replace ? 1 : 0, clone(value));
  } else if (isObject(parent)) {
    if (replace && !(last in parent)) throw new ApiError(422, 'Invalid', `replace operation does not apply: doc is missing key: ${path}`);
    parent[last] = clone(value);
  } else {
    throw new ApiError(422, 'Invalid', `path not found: ${path}`);
  }
  return doc;
}

export function jsonPatch(target: JsonValue, ops: JsonValue): JsonValue {
  if (!Array.isArray(ops)) throw badRequest('json patch must be an array of operations');
  let doc = clone(target);
  for (const raw of ops) {
    if (!isObject(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') throw badRequest('invalid json patch operation');
    const op = raw as unknown as JsonPatchOp;
    switch (op.op) {
      case 'add': doc = addAt(doc, op.path, op.value ?? null, false); break;
      case 'replace': doc = addAt(doc, op.path, op.value ?? null, true); break;
      case 'remove': removeAt(doc, op.path); break;
      case 'move': { const v = removeAt(doc, op.from ?? ''); doc = addAt(doc, op.path, v, false); break; }
      case 'copy': doc = addAt(doc, op.path, getAt(doc, op.from ?? ''), false); break;
      case 'test':
        if (JSON.stringify(getAt(doc, op.path)) !== JSON.stringify(op.value)) throw new ApiError(422, 'Invalid', `test operation failed at ${op.path}`);
        break;
      default: throw badRequest(`unknown json patch op ${op.op}`);
    }
  }
  return doc;
}
