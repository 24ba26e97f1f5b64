// Entry of the CNI plugin executable: reads stdin and the environment, runs the plugin, writes stdout, exits.
// Only the CNI result or error ever reaches stdout; logs go to stderr.
import { enableCompileCache } from 'node:module';
import { jsonLogger } from './log.js';
import { defaultDeps, runPlugin } from './plugin.js';
import { CURRENT_VERSION, errorJson, CniError, ErrorCode } from './spec.js';

const STDIN_LIMIT = 16 * 1024 * 1024;
const STDIN_TIMEOUT_MS = 10_000;

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    if (process.stdin.isTTY) return resolve('');
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => reject(new CniError(ErrorCode.IoFailure, `no end of stdin within ${STDIN_TIMEOUT_MS} ms`)), STDIN_TIMEOUT_MS);
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > STDIN_LIMIT) {
        clearTimeout(timer);
        reject(new CniError(ErrorCode.DecodingFailure, `network config larger than ${STDIN_LIMIT} bytes`));
        process.stdin.destroy();
      } else chunks.push(c);
    });
    process.stdin.on('end', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('utf8')); });
    process.stdin.on('error', (e) => { clearTimeout(timer); reject(new CniError(ErrorCode.IoFailure, `reading stdin: ${e.message}`)); });
  });
}

function finish(stdout: string, exitCode: number): void {
  // Exit only once stdout is flushed (it may be a pipe); then exit even if some request is still pending.
  if (!stdout) process.exit(exitCode);
  process.stdout.write(stdout, () => process.exit(exitCode));
}

async function main(): Promise<void> {
  // The Kubernetes client is large; a compile cache (Node's default location, or NODE_COMPILE_CACHE) cuts its load time.
  try { enableCompileCache(); } catch { /* optional */ }
  const log = jsonLogger((line) => process.stderr.write(line));
  let out;
  try {
    const stdin = process.env.CNI_COMMAND === 'VERSION' && process.stdin.isTTY ? '' : await readStdin();
    out = await runPlugin(process.env, stdin, defaultDeps(log));
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(ErrorCode.Internal, `ambit-cni: ${(e as Error)?.message ?? String(e)}`);
    out = { stdout: errorJson(err, CURRENT_VERSION), exitCode: 1 };
  }
  finish(out.stdout, out.exitCode);
}

// Anything thrown outside runPlugin still answers as a CNI error, never as a stack trace on stdout.
process.on('uncaughtException', (e) => finish(errorJson(new CniError(ErrorCode.Internal, `ambit-cni: ${e.message}`)), 1));
void main();
