// Processes the benchmarks run inside lab namespaces, and what /proc says about a process's CPU and memory.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Netns } from '../test/lab/netns.js';

export const TOOL = (name: string) => fileURLToPath(new URL(`./tools/${name}.js`, import.meta.url));

/** Run a command inside `ns` to completion (bounded); resolves with stdout, rejects with stderr on failure. */
export function runIn(ns: Netns, cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c));
    child.stderr.on('data', (c: Buffer) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} in ${ns.name}: ${signal ?? `exit ${code}`}\n${err.trim() || out.trim()}`));
    });
  });
}

/** The last line of a tool's stdout, parsed as JSON. */
export function lastJson<T>(out: string): T {
  const line = out.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`expected a JSON line, got: ${out.slice(-500)}`);
  }
}

/** One of our node tools inside `ns`. */
export const runTool = (ns: Netns, tool: string, args: string[], timeoutMs: number) => runIn(ns, process.execPath, [TOOL(tool), ...args], timeoutMs);

export interface Started {
  child: ChildProcess;
  /** What the process printed up to and including the ready line. */
  output: string;
}

/** A long-running process inside `ns`; resolves once `readyLine` appears on its stdout or stderr (bounded). */
export function startIn(ns: Netns, cmd: string, args: string[], readyLine: RegExp, timeoutMs = 10_000): Promise<Started> {
  const child = spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let started = false;
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} in ${ns.name}: ${why}\n${out.slice(-2000)}`));
    };
    const timer = setTimeout(() => fail('not ready in time'), timeoutMs);
    const onData = (c: Buffer) => {
      out = (out + c).slice(-4000); // keep draining the pipe after start, remembering only the tail

      if (readyLine?.test(out) && !started) {
        started = true;
        clearTimeout(timer);
        resolve({ child, output: out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(`exited ${code}`);
    });
  });
}

/** User + system CPU seconds of a process so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at state (field 3); utime/stime are 14/15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Linux reports CPU time in clock ticks of 1/100 s on every architecture we run on (USER_HZ). */
const CLOCK_TICKS = 100;

/** Resident set size in bytes. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Machine-wide CPU time so far (all cores, in clock ticks): total and busy (not idle or waiting on I/O). */
export function machineCpu(): { total: number; busy: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { total, busy: total - f[3]! - f[4]! };
}
