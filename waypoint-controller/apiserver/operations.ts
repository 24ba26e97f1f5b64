// Kubernetes write semantics over the Store: create/update/patch/apply/delete with validation,
// system metadata (uid, creationTimestamp, generation), optimistic concurrency, status subresource
// rules, finalizers, owner-reference cascade and namespace cascade.
import { randomUUID } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { apply, trackedPart } from './apply.js';
import { applyDefaults, initialStatus, parseCidr, type ServiceCidr } from './defaults.js';
import { alreadyExists, ApiError, badRequest, conflict, invalid, notFound } from './errors.js';
import { jsonPatch, mergePatch, strategicMergePatch } from './patch.js';
import type { ResourceRegistry } from './resources.js';
import type { Store } from './store.js';
import type { JsonObject, JsonValue, KubeObject, ManagedFieldsEntry, ResourceType } from './types.js';
import { apiVersionOf, clone, isObject } from './types.js';
import { validateMeta } from './validation.js';

export interface WriteOptions {
  dryRun?: boolean;
  fieldManager?: string;
}
export type Subresource = 'status' | undefined;

export const PATCH_TYPES = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

const GENERATE_CHARS = 'bcdfghjklmnpqrstvwxz2456789';
const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Everything but metadata and status: a change here bumps metadata.generation. */
const specPart = (o: KubeObject): Record<string, unknown> => {
  const { metadata: _m, status: _s, ...rest } = o;
  return rest;
};

export class Operations {
  private readonly cidr: ServiceCidr;

  constructor(private readonly store: Store, readonly registry: ResourceRegistry, opts: { serviceCidr?: string } = {}) {
    this.cidr = parseCidr(opts.serviceCidr ?? '10.96.0.0/16');
  }

  get(rt: ResourceType, ns: string | undefined, name: string): KubeObject {
    const o = this.store.get(rt, ns, name);
    if (!o) throw notFound(rt, name);
    return o;
  }

  /** Check and normalise a request body into an object of this type in this namespace. */
  private normalise(rt: ResourceType, ns: string | undefined, body: unknown): KubeObject {
    if (!isObject(body)) throw badRequest('the body of the request was in an unknown format - accepted media types include: application/json, application/yaml');
    const obj = clone(body) as unknown as KubeObject;
    const want = apiVersionOf(rt);
    if (obj.apiVersion !== undefined && obj.apiVersion !== want) {
      throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${want})`);
    }
    if (obj.kind !== undefined && obj.kind !== rt.kind) throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${rt.kind})`);
    if (obj.metadata === undefined || obj.metadata === null) obj.metadata = {};
    if (!isObject(obj.metadata)) throw badRequest('metadata must be an object');
    const { apiVersion: _a, kind: _k, metadata, ...rest } = obj;
    const ordered: KubeObject = { apiVersion: want, kind: rt.kind, metadata, ...rest };
    if (rt.namespaced) {
      if (metadata.namespace && ns && metadata.namespace !== ns) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      if (ns) metadata.namespace = ns;
    } else {
      delete metadata.namespace;
    }
    return ordered;
  }

  private usedIps = (): Set<string> => {
    const svc = this.registry.forKind('v1', 'Service');
    const used = new Set<string>();
    if (svc) for (const s of this.store.list(svc)) {
      const ip = (s.spec as { clusterIP?: string } | undefined)?.clusterIP;
      if (ip) used.add(ip);
    }
    return used;
  };

  private check(rt: ResourceType, obj: KubeObject, previous: KubeObject | undefined): void {
    const causes = [...validateMeta(obj, rt.nameRule, rt.namespaced), ...applyDefaults(obj, previous, this.cidr, this.usedIps)];
    if (causes.length) throw invalid(rt, obj.metadata.name ?? obj.metadata.generateName ?? '', causes);
  }

  /**
   * POST. `seed` keeps the given status and creates a missing namespace (for seeding from YAML);
   * otherwise status is reset for kinds with a status subresource and the namespace must exist.
   */
  create(rt: ResourceType, ns: string | undefined, body: unknown, opts: WriteOptions & { seed?: boolean; managedFields?: ManagedFieldsEntry[] } = {}): KubeObject {
    const obj = this.normalise(rt, ns ?? (body as KubeObject | undefined)?.metadata?.namespace, body);
    const m = obj.metadata;
    if (!m.name && typeof m.generateName === 'string' && m.generateName) {
      let suffix = '';
      for (let i = 0; i < 5; i++) suffix += GENERATE_CHARS[Math.floor(Math.random() * GENERATE_CHARS.length)];
      m.name = `${m.generateName.slice(0, 58)}${suffix}`;
    }
    this.check(rt, obj, undefined);
    if (rt.namespaced) this.requireNamespace(m.namespace!, opts.seed === true);
    if (this.store.get(rt, m.namespace, m.name!)) throw alreadyExists(rt, m.name!);
    m.uid = randomUUID();
    m.creationTimestamp = now();
    m.generation = 1;
    delete m.resourceVersion;
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    delete m.managedFields;
    if (opts.managedFields) m.managedFields = opts.managedFields;
    if (rt.hasStatus && !opts.seed) {
      const s = initialStatus(rt.kind);
      if (s) obj.status = s; else delete obj.status;
      if (rt.kind === 'Namespace') applyDefaults(obj, undefined, this.cidr, this.usedIps);
    }
    if (opts.dryRun) return obj;
    return this.store.write(rt, obj);
  }

  private requireNamespace(ns: string, autoCreate: boolean): void {
    const nsType = this.registry.forKind('v1', 'Namespace');
    if (!nsType || this.store.get(nsType, undefined, ns)) return;
    if (autoCreate) { this.create(nsType, undefined, { metadata: { name: ns } }); return; }
    throw notFound(nsType, ns);
  }

  /** PUT (main or /status). A body resourceVersion is a precondition (409 when stale). */
  update(rt: ResourceType, ns: string | undefined, name: string, body: unknown, sub: Subresource, opts: WriteOptions & { managedFields?: ManagedFieldsEntry[] } = {}): KubeObject {
    const existing = this.get(rt, ns, name);
    const obj = this.normalise(rt, ns, body);
    if (obj.metadata.name && obj.metadata.name !== name) {
      throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
    }
    const rv = obj.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== existing.metadata.resourceVersion) throw conflict(rt, name);

    let next: KubeObject;
    if (sub === 'status') {
      next = clone(existing);
      if (obj.status === undefined) delete next.status; else next.status = obj.status;
    } else {
      next = obj;
      next.metadata.name = name;
      if (rt.hasStatus) { if (existing.status === undefined) delete next.status; else next.status = clone(existing.status); }
      const keep = existing.metadata;
      next.metadata.uid = keep.uid!;
      next.metadata.creationTimestamp = keep.creationTimestamp!;
      next.metadata.generation = keep.generation ?? 1;
      if (keep.deletionTimestamp) next.metadata.deletionTimestamp = keep.deletionTimestamp; else delete next.metadata.deletionTimestamp;
      if (opts.managedFields) next.metadata.managedFields = opts.managedFields;
      else if (keep.managedFields) next.metadata.managedFields = keep.managedFields;
      else delete next.metadata.managedFields;
      if (!same(specPart(next), specPart(existing))) next.metadata.generation = (keep.generation ?? 1) + 1;
    }
    if (sub === 'status' && opts.managedFields) next.metadata.managedFields = opts.managedFields;
    next.metadata.resourceVersion = existing.metadata.resourceVersion!;
    this.check(rt, next, existing);
    if (same(next, existing)) return existing;
    if (opts.dryRun) return next;
    if (next.metadata.deletionTimestamp && !(next.metadata.finalizers?.length)) {
      this.store.write(rt, next);
      return this.remove(rt, next);
    }
    return this.store.write(rt, next);
  }

  /** PATCH with one of PATCH_TYPES (apply creates a missing object on the main endpoint). */
  patch(rt: ResourceType, ns: string | undefined, name: string, contentType: string, raw: string, sub: Subresource, opts: WriteOptions & { force?: boolean } = {}): KubeObject {
    const type = contentType.split(';')[0]!.trim().toLowerCase();
    if (type === PATCH_TYPES.apply || type === 'application/apply-patch+json') return this.apply(rt, ns, name, raw, sub, opts);
    let body: JsonValue;
    try { body = JSON.parse(raw) as JsonValue; } catch (e) { throw badRequest(`error decoding patch: ${(e as Error).message}`); }
    const existing = this.get(rt, ns, name) as unknown as JsonObject;
    let patched: JsonValue;
    switch (type) {
      case PATCH_TYPES.merge:
        if (!isObject(body)) throw badRequest('merge patch must be a JSON object');
        patched = mergePatch(existing, body); break;
      case PATCH_TYPES.strategic:
        if (!isObject(body)) throw badRequest('strategic merge patch must be a JSON object');
        patched = strategicMergePatch(existing, body); break;
      case PATCH_TYPES.json:
        patched = jsonPatch(existing, body); break;
      default:
        throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${Object.values(PATCH_TYPES).join(', ')}`);
    }
    return this.update(rt, ns, name, patched, sub, opts);
  }

  private apply(rt: ResourceType, ns: string | undefined, name: string, raw: string, sub: Subresource, opts: WriteOptions & { force?: boolean }): KubeObject {
    if (!opts.fieldManager) throw badRequest('PATCH, application/apply-patch+yaml requests require fieldManager to be specified');
    let doc: unknown;
    try { doc = parseYaml(raw); } catch (e) { throw badRequest(`error decoding YAML: ${(e as Error).message}`); }
    const cfg = this.normalise(rt, ns, doc) as unknown as JsonObject;
    const meta = cfg.metadata as JsonObject;
    if (meta.name === undefined) meta.name = name;
    if (meta.name !== name) throw badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`);
    const existing = this.store.get(rt, ns, name);
    if (!existing && sub === 'status') throw notFound(rt, name);
    const tracked = trackedPart(cfg, sub === 'status' ? 'status' : 'main', rt.hasStatus);
    const live: JsonObject = existing ? (clone(existing) as unknown as JsonObject)
      : { apiVersion: apiVersionOf(rt), kind: rt.kind, metadata: { name, ...(rt.namespaced && ns ? { namespace: ns } : {}) } };
    const result = apply({
      live, applied: tracked, manager: opts.fieldManager, force: opts.force === true, apiVersion: apiVersionOf(rt),
      subresource: sub, managedFields: existing?.metadata.managedFields ?? [], now: now(),
    });
    if (result.conflicts.length) {
      const msg = `Apply failed with ${result.conflicts.length} conflict${result.conflicts.length > 1 ? 's' : ''}: ${result.conflicts.map((c) => `conflict with "${c.manager}": ${c.field}`).join(', ')}`;
      throw new ApiError(409, 'Conflict', msg, {
        name, group: rt.group, kind: rt.plural,
        causes: result.conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with "${c.manager}"`, field: c.field })),
      });
    }
    const obj = result.object as unknown as KubeObject;
    if (!existing) return this.create(rt, ns, obj, { ...opts, managedFields: result.managedFields });
    if (typeof meta.resourceVersion === 'string') obj.metadata.resourceVersion = meta.resourceVersion;
    return this.update(rt, ns, name, obj, sub, { ...opts, managedFields: result.managedFields });
  }

  /** DELETE: honours preconditions and finalizers; cascades to dependents and namespace contents. */
  delete(rt: ResourceType, ns: string | undefined, name: string, options: unknown, opts: WriteOptions = {}): KubeObject {
    const existing = this.get(rt, ns, name);
    const pre = isObject(options) && isObject(options.preconditions) ? options.preconditions : undefined;
    if (pre?.uid !== undefined && pre.uid !== null && pre.uid !== existing.metadata.uid) {
      throw conflict(rt, name, `Precondition failed: UID in precondition: ${String(pre.uid)}, UID in object meta: ${existing.metadata.uid}`);
    }
    if (pre?.resourceVersion !== undefined && pre.resourceVersion !== null && pre.resourceVersion !== existing.metadata.resourceVersion) {
      throw conflict(rt, name, `Precondition failed: ResourceVersion in precondition: ${String(pre.resourceVersion)}, ResourceVersion in object meta: ${existing.metadata.resourceVersion}`);
    }
    if (opts.dryRun) return existing;
    if (existing.metadata.finalizers?.length) {
      if (existing.metadata.deletionTimestamp) return existing;
      existing.metadata.deletionTimestamp = now();
      existing.metadata.deletionGracePeriodSeconds = 0;
      return this.store.write(rt, existing);
    }
    return this.remove(rt, existing);
  }

  private remove(rt: ResourceType, obj: KubeObject): KubeObject {
    const gone = this.store.remove(rt, obj.metadata.namespace, obj.metadata.name!);
    if (!gone) return obj;
    if (rt.kind === 'Namespace' && rt.group === '') {
      for (const t of this.registry.all.filter((r) => r.namespaced)) {
        for (const o of this.store.list(t, obj.metadata.name)) this.remove(t, o);
      }
    }
    // Background cascade: dependents owned by this object go too.
    for (const t of this.registry.all) {
      for (const o of this.store.list(t, rt.namespaced ? obj.metadata.namespace : undefined)) {
        if (o.metadata.ownerReferences?.some((r) => r.uid === obj.metadata.uid)) this.remove(t, o);
      }
    }
    return gone;
  }
}
