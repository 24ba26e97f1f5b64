// A minimal container runtime for the lab: for a pod it creates a netns (run-unique, through the Lab) and runs a
// conflist against it with the real CNI protocol, as libcni does: each plugin binary is exec'd (found on CNI_PATH)
// with CNI_COMMAND/CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME/CNI_PATH/CNI_ARGS in its environment and its network config
// on stdin (the plugin's own fields plus `name`, `cniVersion` and the previous plugin's result as `prevResult`).
// DEL runs the plugins in reverse order with the cached ADD result. The plugins run inside the node's netns
// (`ip netns exec <node>`), as they would on a node, so host-side interfaces (the bridge) land in the node netns.
// Our plugin is a JS file: an `ambit-cni` wrapper script in a temporary bin dir execs it with this process's node.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab, Netns } from './netns.js';

export const CNI_PLUGIN_MAIN = fileURLToPath(new URL('../../cni-plugin/plugin/main.js', import.meta.url));
export const SYSTEM_CNI_BIN = '/usr/lib/cni';

export interface PluginConf {
  type: string;
  [field: string]: unknown;
}

export interface ConfList {
  name: string;
  cniVersion: string;
  plugins: PluginConf[];
}

/** One plugin invocation: what it was given and what it answered. */
export interface PluginRun {
  type: string;
  command: 'ADD' | 'DEL';
  stdin: string;
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CniErrorJson {
  cniVersion?: string;
  code: number;
  msg: string;
  details?: string;
}

export interface RuntimePod {
  name: string;
  namespace: string;
}

export interface Sandbox {
  pod: RuntimePod;
  containerId: string;
  netns: Netns;
  netnsPath: string;
  /** The conflist's final result (the last plugin's stdout). */
  result: Record<string, unknown>;
  /** The pod's first IPv4 address from the result. */
  ip: string;
}

export type AddOutcome =
  | { ok: true; sandbox: Sandbox; runs: PluginRun[] }
  | { ok: false; failed: PluginRun; error?: CniErrorJson; runs: PluginRun[]; cleanup: PluginRun[] };

export interface RuntimeOptions {
  /** Per plugin invocation. Default 30 s. */
  timeoutMs?: number;
}

export class CniRuntime {
  readonly binDir: string;
  readonly cniPath: string;
  private readonly sandboxes = new Map<string, Sandbox>();

  constructor(private readonly lab: Lab, private readonly node: Netns, readonly conflist: ConfList, private readonly opts: RuntimeOptions = {}) {
    this.binDir = join(lab.dir, 'cni-bin');
    mkdirSync(this.binDir, { recursive: true });
    const wrapper = join(this.binDir, 'ambit-cni');
    writeFileSync(wrapper, `#!/bin/sh\nexec ${shq(process.execPath)} ${shq(CNI_PLUGIN_MAIN)} "$@"\n`);
    chmodSync(wrapper, 0o755);
    this.cniPath = [SYSTEM_CNI_BIN, this.binDir].join(':');
  }

  sandbox(pod: string, namespace: string): Sandbox | undefined {
    return this.sandboxes.get(`${namespace}/${pod}`);
  }

  /** Create the pod's netns and run ADD through the conflist. On failure, DEL what was added and remove the netns (as kubelet/containerd do). */
  async add(pod: RuntimePod): Promise<AddOutcome> {
    const key = `${pod.namespace}/${pod.name}`;
    if (this.sandboxes.has(key)) throw new Error(`pod ${key} is already running`);
    const containerId = randomBytes(32).toString('hex');
    const netns = this.lab.netns(`p-${pod.name}`.slice(0, 40));
    const netnsPath = `/run/netns/${netns.name}`;
    const runs: PluginRun[] = [];
    let prev: Record<string, unknown> | undefined;
    for (const plugin of this.conflist.plugins) {
      const run = await this.invoke('ADD', plugin, prev, pod, containerId, netnsPath);
      runs.push(run);
      if (run.code !== 0) {
        const cleanup = await this.delAll(pod, containerId, netnsPath, prev);
        netns.destroy();
        return { ok: false, failed: run, error: parseJson(run.stdout) as CniErrorJson | undefined, runs, cleanup };
      }
      const out = parseJson(run.stdout);
      if (!out) {
        const cleanup = await this.delAll(pod, containerId, netnsPath, prev);
        netns.destroy();
        return { ok: false, failed: run, runs, cleanup };
      }
      prev = out;
    }
    const ips = (prev?.ips as { address?: string }[] | undefined) ?? [];
    const ip = ips.map((i) => i.address?.split('/')[0] ?? '').find((a) => a.includes('.')) ?? '';
    const sandbox: Sandbox = { pod, containerId, netns, netnsPath, result: prev ?? {}, ip };
    this.sandboxes.set(key, sandbox);
    return { ok: true, sandbox, runs };
  }

  /** DEL through the conflist (reverse order, with the cached result), then remove the netns. Returns the runs. */
  async del(pod: RuntimePod): Promise<PluginRun[]> {
    const key = `${pod.namespace}/${pod.name}`;
    const s = this.sandboxes.get(key);
    if (!s) return [];
    this.sandboxes.delete(key);
    const runs = await this.delAll(pod, s.containerId, s.netnsPath, s.result);
    s.netns.destroy();
    return runs;
  }

  /** DEL every running pod (best effort). */
  async delAllPods(): Promise<void> {
    for (const s of [...this.sandboxes.values()]) await this.del(s.pod).catch(() => {});
  }

  private async delAll(pod: RuntimePod, containerId: string, netnsPath: string, cached: Record<string, unknown> | undefined): Promise<PluginRun[]> {
    const runs: PluginRun[] = [];
    for (const plugin of [...this.conflist.plugins].reverse()) runs.push(await this.invoke('DEL', plugin, cached, pod, containerId, netnsPath));
    return runs;
  }

  private invoke(command: 'ADD' | 'DEL', plugin: PluginConf, prevResult: Record<string, unknown> | undefined, pod: RuntimePod, containerId: string, netnsPath: string): Promise<PluginRun> {
    const bin = this.cniPath.split(':').map((d) => join(d, plugin.type)).find((p) => existsSync(p));
    const conf = { ...plugin, name: this.conflist.name, cniVersion: this.conflist.cniVersion, ...(prevResult ? { prevResult } : {}) };
    const stdin = JSON.stringify(conf);
    if (!bin) return Promise.resolve({ type: plugin.type, command, stdin, code: -1, stdout: '', stderr: `plugin ${plugin.type} not found on CNI_PATH ${this.cniPath}` });
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: containerId,
      CNI_NETNS: netnsPath,
      CNI_IFNAME: 'eth0',
      CNI_PATH: this.cniPath,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${containerId}`,
    };
    const timeoutMs = this.opts.timeoutMs ?? 30_000;
    return new Promise((resolve) => {
      // Asynchronous on purpose: our plugin talks to servers running in this very process.
      const child = spawn('ip', ['netns', 'exec', this.node.name, bin], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      const timer = setTimeout(() => {
        stderr += `\n[lab runtime] ${plugin.type} ${command} timed out after ${timeoutMs} ms`;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (e) => (stderr += `\n[lab runtime] ${e.message}`));
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ type: plugin.type, command, stdin, code: code ?? -1, stdout, stderr });
      });
      child.stdin.on('error', () => {});
      child.stdin.end(stdin);
    });
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
