// Reading Kubernetes YAML (multi-document, `kind: List`) from a folder, for seeding.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { KubeObject } from './types.js';
import { isObject } from './types.js';

function expand(doc: unknown, source: string): KubeObject[] {
  if (doc === null || doc === undefined) return [];
  if (!isObject(doc)) throw new Error(`${source}: a document is not a mapping`);
  if (typeof doc.kind === 'string' && doc.kind.endsWith('List') && Array.isArray(doc.items)) {
    return doc.items.flatMap((it) => expand(it, source));
  }
  if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string' || !isObject(doc.metadata)) {
    throw new Error(`${source}: every object needs apiVersion, kind and metadata`);
  }
  return [doc as unknown as KubeObject];
}

/** Parse one YAML text (any number of documents). */
export function parseManifests(text: string, source = '<yaml>'): KubeObject[] {
  const out: KubeObject[] = [];
  for (const d of parseAllDocuments(text)) {
    if (d.errors.length) throw new Error(`${source}: ${d.errors[0]!.message}`);
    out.push(...expand(d.toJSON(), source));
  }
  return out;
}

/** All objects in *.yaml / *.yml / *.json files of a folder (recursively, in name order). */
export function readManifestDir(dir: string): KubeObject[] {
  const out: KubeObject[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...readManifestDir(p));
    else if (/\.(ya?ml|json)$/.test(name)) out.push(...parseManifests(readFileSync(p, 'utf8'), p));
  }
  return out;
}
