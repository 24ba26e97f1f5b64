// Runs a real ztunnel process inside a lab namespace (ip netns exec), with its log in the lab directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ZTUNNEL_NODE_FLAGS } from '../../ztunnel/node-flags.js';
import { httpIn } from './apps.js';
import type { Netns } from './netns.js';

export const ZTUNNEL_MAIN = fileURLToPath(new URL('../../ztunnel/main.js', import.meta.url));

export class ZtunnelProc {
  readonly child: ChildProcess;
  readonly logPath: string;
  readonly exited: Promise<number | null>;

  constructor(readonly ns: Netns, dir: string, readonly name: string, env: Record<string, string>) {
    this.logPath = join(dir, `ztunnel-${name}.log`);
    const out = openSync(this.logPath, 'a');
    this.child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, ...ZTUNNEL_NODE_FLAGS, ZTUNNEL_MAIN], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['ignore', out, out],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Poll readiness (bounded); fails with the log if the process exits or never becomes ready. */
  async ready(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    while (Date.now() < deadline && !exited) {
      const r = await httpIn(this.ns, 'GET', 15021, '/healthz/ready').catch(() => undefined);
      if (r?.status === 200) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`ztunnel ${this.name} not ready (${exited ? 'exited' : 'timeout'}):\n${this.log().slice(-3000)}`);
  }

  log(): string {
    return readFileSync(this.logPath, 'utf8');
  }

  /**
   * Parsed JSON log lines, optionally only those with the given msg. Only whole lines: the ztunnel may be in the
   * middle of writing a batch of them, and what follows the last newline is then a line cut short.
   */
  lines(msg?: string): Record<string, unknown>[] {
    const whole = this.log().split('\n');
    whole.pop();
    return whole
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => msg === undefined || l.msg === msg);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Wait (bounded) until `check` holds, polling every 50 ms. */
export async function eventually<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
