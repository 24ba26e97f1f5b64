// Writes a run's results, its Markdown report and its plots into one directory.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchResults } from '../results.js';
import { renderMarkdown } from './markdown.js';
import { buildPlots } from './plots.js';

/** Writes results.json, report.md and the plots' SVGs into `dir` (created if needed); returns the paths written. */
export function writeReport(results: BenchResults, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const plots = buildPlots(results);
  const files: [string, string][] = [
    ['results.json', JSON.stringify(results, null, 2) + '\n'],
    ...plots.map((p): [string, string] => [p.file, p.svg]),
    ['report.md', renderMarkdown(results, plots)],
  ];
  const written: string[] = [];
  for (const [name, content] of files) {
    const path = join(dir, name);
    writeFileSync(path, content);
    written.push(path);
  }
  return written;
}
