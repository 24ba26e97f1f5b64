// Re-renders a report from a saved results.json: node dist/bench/report/main.js <results.json> [outdir]
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchResults } from '../results.js';
import { validateResults } from './validate.js';
import { writeReport } from './write.js';

export async function loadResults(path: string): Promise<BenchResults> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  return validateResults(doc, path);
}

/** Returns the exit code. */
export async function main(args: string[]): Promise<number> {
  if (args.length < 1 || args.length > 2 || args[0] === '-h' || args[0] === '--help') {
    process.stderr.write('usage: node dist/bench/report/main.js <results.json> [outdir]\n');
    return 2;
  }
  const input = resolve(args[0]!);
  try {
    const results = await loadResults(input);
    for (const path of writeReport(results, resolve(args[1] ?? dirname(input)))) process.stdout.write(`${path}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`report: ${(err as Error).message}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
