// Copies the plugin executable into the CNI bin dirs atomically (temp file in the target dir, then rename).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWrite } from './cniconfig.js';

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Leftovers of an interrupted copy (`.<name>.tmp.*`). */
function removeStaleTemps(dir: string, name: string): void {
  for (const n of readdirSync(dir)) {
    if (n.startsWith(`.${name}.tmp.`)) rmSync(join(dir, n), { force: true });
  }
}

/**
 * Makes `<dir>/<name>` a copy of `src` (mode 0755) in every dir. With `quick`, a target of the same size counts
 * as current (used on file events); otherwise the contents are compared. Returns the paths written.
 */
export function copyBinary(src: string, dirs: string[], name: string, quick = false): string[] {
  const srcSize = statSync(src).size;
  let srcHash: string | undefined;
  let data: Buffer | undefined;
  const written: string[] = [];
  for (const dir of dirs) {
    const target = join(dir, name);
    removeStaleTemps(dir, name);
    let current = false;
    try {
      const st = statSync(target);
      if (st.isFile() && st.size === srcSize && (st.mode & 0o111) !== 0) {
        current = quick || (srcHash ??= sha256(src)) === sha256(target);
      }
    } catch { /* missing */ }
    if (current) continue;
    data ??= readFileSync(src);
    atomicWrite(target, data, 0o755);
    written.push(target);
  }
  return written;
}

export function removeBinary(dirs: string[], name: string): string[] {
  const removed: string[] = [];
  for (const dir of dirs) {
    const target = join(dir, name);
    try {
      rmSync(target);
      removed.push(target);
    } catch { /* already gone */ }
  }
  return removed;
}
