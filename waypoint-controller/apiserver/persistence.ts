// stateDir persistence: one JSON file per object plus meta.json with the resourceVersion counter.
// Writes are synchronous (write-through) and atomic (temp file + rename).
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ResourceRegistry } from './resources.js';
import type { PersistenceHook } from './store.js';
import type { KubeObject, ResourceType } from './types.js';

const dirOf = (root: string, rt: ResourceType): string => join(root, 'objects', rt.group || 'core', rt.version, rt.plural);
const fileOf = (root: string, rt: ResourceType, obj: KubeObject): string =>
  join(dirOf(root, rt), `${obj.metadata.namespace ? `${obj.metadata.namespace}__` : ''}${obj.metadata.name}.json`);

function writeAtomic(path: string, data: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

export class StateDir implements PersistenceHook {
  constructor(private readonly root: string) {
    mkdirSync(join(root, 'objects'), { recursive: true });
  }

  saved(rt: ResourceType, obj: KubeObject, rv: number): void {
    mkdirSync(dirOf(this.root, rt), { recursive: true });
    writeAtomic(fileOf(this.root, rt, obj), JSON.stringify(obj));
    this.saveCounter(rv);
  }

  removed(rt: ResourceType, obj: KubeObject, rv: number): void {
    rmSync(fileOf(this.root, rt, obj), { force: true });
    this.saveCounter(rv);
  }

  /** The persisted resourceVersion counter and objects of the served types. */
  load(registry: ResourceRegistry): { resourceVersion: number; objects: Array<[ResourceType, KubeObject]> } {
    const metaPath = join(this.root, 'meta.json');
    const resourceVersion = existsSync(metaPath) ? Number((JSON.parse(readFileSync(metaPath, 'utf8')) as { resourceVersion: number }).resourceVersion) || 0 : 0;
    const objects: Array<[ResourceType, KubeObject]> = [];
    for (const rt of registry.all) {
      const dir = dirOf(this.root, rt);
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
        objects.push([rt, JSON.parse(readFileSync(join(dir, f), 'utf8')) as KubeObject]);
      }
    }
    return { resourceVersion, objects };
  }

  private saveCounter(rv: number): void {
    writeAtomic(join(this.root, 'meta.json'), JSON.stringify({ resourceVersion: rv }));
  }
}
