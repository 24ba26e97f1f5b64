// The node's CNI network configuration: which file is in force (as kubelet/libcni pick it) and putting our plugin at
// the end of its chain or taking it out, as Istio's installer does (cni/pkg/install/cniconfig.go).
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { PLUGIN_TYPE } from '../plugin/config.js';

type Json = Record<string, unknown>;

/** Name of the list a lone `.conf` becomes (Istio's choice). */
export const CONVERTED_LIST_NAME = 'k8s-pod-network';
export const CONVERTED_LIST_VERSION = '0.3.1';

function isObject(v: unknown): v is Json {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/**
 * The valid network config files of `dir`, `.conf` and `.conflist`, in the lexical order libcni and kubelet use.
 * Unparsable files, a `.conf` without `type` and lists without plugins are skipped.
 */
export function configFilenames(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.conf') || n.endsWith('.conflist'))
    .sort()
    .filter((n) => {
      try {
        if (!statSync(join(dir, n)).isFile()) return false;
        const o: unknown = JSON.parse(readFileSync(join(dir, n), 'utf8'));
        if (!isObject(o)) return false;
        if (n.endsWith('.conflist')) return Array.isArray(o.plugins) && o.plugins.length > 0;
        return typeof o.type === 'string' && o.type !== '';
      } catch {
        return false;
      }
    });
}

/** The config text with `plugin` as the last of the chain (one copy only); a single network becomes a list. */
export function insertPlugin(existingText: string, plugin: Json, pluginType = PLUGIN_TYPE): string {
  const existing: unknown = JSON.parse(existingText);
  if (!isObject(existing)) throw new Error('existing CNI config is not a JSON object');
  const ours: Json = { ...plugin };
  delete ours.cniVersion;
  let out: Json;
  if ('type' in existing) {
    const single: Json = { ...existing };
    delete single.cniVersion;
    out = { name: CONVERTED_LIST_NAME, cniVersion: CONVERTED_LIST_VERSION, plugins: [single, ours] };
  } else {
    if (!Array.isArray(existing.plugins)) throw new Error('existing CNI config has neither "type" nor a "plugins" list');
    const others = existing.plugins.filter((p: unknown) => {
      if (!isObject(p)) throw new Error('existing CNI config has a plugin that is not an object');
      return p.type !== pluginType;
    });
    out = { ...existing, plugins: [...others, ours] };
  }
  return JSON.stringify(out, null, 2) + '\n';
}

/** The config text without our plugin, or undefined when it was not there. */
export function removePlugin(existingText: string, pluginType = PLUGIN_TYPE): string | undefined {
  const existing: unknown = JSON.parse(existingText);
  if (!isObject(existing) || !Array.isArray(existing.plugins)) return undefined;
  const plugins = existing.plugins.filter((p: unknown) => !(isObject(p) && p.type === pluginType));
  if (plugins.length === existing.plugins.length) return undefined;
  return JSON.stringify({ ...existing, plugins }, null, 2) + '\n';
}

function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

/** True when the list ends with exactly our plugin entry and holds no other copy of it. */
export function hasPluginLast(text: string, plugin: Json, pluginType = PLUGIN_TYPE): boolean {
  try {
    const o: unknown = JSON.parse(text);
    if (!isObject(o) || !Array.isArray(o.plugins) || o.plugins.length === 0) return false;
    const ours = o.plugins.filter((p: unknown) => isObject(p) && p.type === pluginType);
    const want: Json = { ...plugin };
    delete want.cniVersion;
    return ours.length === 1 && o.plugins[o.plugins.length - 1] === ours[0] && stable(ours[0]) === stable(want);
  } catch {
    return false;
  }
}

/** Write through a temporary file in the same directory and rename over the target (readers never see half a file). */
export function atomicWrite(path: string, data: string | Buffer, mode = 0o644): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp.${randomBytes(6).toString('hex')}`);
  try {
    const fd = openSync(tmp, 'wx', mode);
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Puts our plugin at the end of the file's chain unless it already is; a `.conf` is rewritten and renamed to
 * `.conflist` (Istio's order: write the list into the `.conf`, then rename). Returns the path of the list and
 * whether anything was written.
 */
export function ensurePluginInFile(path: string, plugin: Json, pluginType = PLUGIN_TYPE): { path: string; changed: boolean } {
  const text = readFileSync(path, 'utf8');
  if (path.endsWith('.conflist') && hasPluginLast(text, plugin, pluginType)) return { path, changed: false };
  const mode = statSync(path).mode & 0o7777;
  atomicWrite(path, insertPlugin(text, plugin, pluginType), mode);
  if (path.endsWith('.conf')) {
    renameSync(path, `${path}list`);
    return { path: `${path}list`, changed: true };
  }
  return { path, changed: true };
}

/** Removes our plugin from every config list in `dir`; returns the files changed. */
export function removePluginFromDir(dir: string, pluginType = PLUGIN_TYPE): string[] {
  const changed: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.conflist') || n.endsWith('.conf'));
  } catch {
    return changed;
  }
  for (const n of names) {
    const p = join(dir, n);
    try {
      const out = removePlugin(readFileSync(p, 'utf8'), pluginType);
      if (out === undefined) continue;
      atomicWrite(p, out, statSync(p).mode & 0o7777);
      changed.push(p);
    } catch { /* not ours to judge; leave unparsable files alone */ }
  }
  return changed;
}
