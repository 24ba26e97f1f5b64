// What the CNI plugin tests share: running a plugin executable as a container runtime does (environment, config on
// stdin, one answer on stdout) and a fake node agent on a unix socket that records the events the plugin posts.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';

export interface Run { stdout: string; stderr: string; code: number | null }

/** Run `file args` with exactly `env` (no inherited environment), write `stdin` and collect stdout, stderr and the exit code. */
export function runWithStdin(file: string, args: string[], env: Record<string, string>, stdin: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout, stderr, code }));
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
  });
}

export interface Received { method: string; url: string; contentType: string; body: string }

/** A node agent's `/cmdadd` endpoint: records every request and answers `status` with `reply` (settable per test). */
export interface FakeAgent { socket: string; received: Received[]; status: number; reply: string; close(): Promise<void> }

export async function fakeAgent(socket: string): Promise<FakeAgent> {
  const a: FakeAgent = { socket, received: [], status: 200, reply: '', close: async () => {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      a.received.push({ method: req.method ?? '', url: req.url ?? '', contentType: req.headers['content-type'] ?? '', body: Buffer.concat(chunks).toString() });
      res.writeHead(a.status).end(a.reply);
    });
  });
  await new Promise<void>((r) => server.listen(socket, r));
  a.close = () => new Promise<void>((r) => server.close(() => r()));
  return a;
}
