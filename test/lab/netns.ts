// Network namespaces for tests and the demo: run-unique names, everything removed on cleanup and by a start-up sweep.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeFd, openNetns } from '../../ztunnel/native/index.js';

const PREFIX_RE = /^amb([0-9a-z]+)x[0-9a-z]{2}-/;

export function sh(cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Remove namespaces left by lab runs whose process is gone (a crash, a SIGKILL). */
export function sweepStale(): void {
  for (const line of sh('ip', ['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = PREFIX_RE.exec(name);
    if (m && !alive(parseInt(m[1]!, 36))) {
      try {
        sh('ip', ['netns', 'pids', name]).split('\n').filter(Boolean).forEach((p) => process.kill(Number(p), 'SIGKILL'));
      } catch {}
      try {
        sh('ip', ['netns', 'del', name]);
      } catch {}
    }
  }
}

export class Netns {
  readonly fd: number;
  constructor(readonly name: string) {
    sh('ip', ['netns', 'add', name]);
    this.fd = openNetns(`/run/netns/${name}`);
    this.exec('ip', 'link', 'set', 'lo', 'up');
  }

  exec(cmd: string, ...args: string[]): string {
    return sh('ip', ['netns', 'exec', this.name, cmd, ...args]);
  }

  /** Apply iptables-restore input (with --noflush, so tables are added to). */
  iptables(rules: string): void {
    sh('ip', ['netns', 'exec', this.name, 'iptables-restore', '--noflush'], rules);
  }

  destroy(): void {
    try {
      for (const p of sh('ip', ['netns', 'pids', this.name]).split('\n').filter(Boolean)) process.kill(Number(p), 'SIGKILL');
    } catch {}
    try {
      closeFd(this.fd);
    } catch {}
    try {
      sh('ip', ['netns', 'del', this.name]);
    } catch {}
  }
}

/** A set of namespaces sharing one run-unique prefix and a scratch directory. */
export class Lab {
  readonly prefix: string;
  readonly dir: string;
  private readonly namespaces: Netns[] = [];
  private hub?: Netns;
  private links = 0;

  constructor() {
    sweepStale();
    this.prefix = `amb${process.pid.toString(36)}x${Math.random().toString(36).slice(2, 4).padEnd(2, '0')}`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.prefix}-`));
  }

  netns(name: string): Netns {
    const ns = new Netns(`${this.prefix}-${name}`);
    this.namespaces.push(ns);
    return ns;
  }

  /** Attach a namespace to the lab's bridge (in a hub namespace) with the given addresses on eth0. */
  attach(ns: Netns, cidrs: string[]): void {
    if (!this.hub) {
      this.hub = this.netns('hub');
      this.hub.exec('ip', 'link', 'add', 'br0', 'type', 'bridge');
      this.hub.exec('ip', 'link', 'set', 'br0', 'up');
    }
    const port = `p${this.links++}`;
    sh('ip', ['link', 'add', 'eth0', 'netns', ns.name, 'type', 'veth', 'peer', 'name', port, 'netns', this.hub.name]);
    this.hub.exec('ip', 'link', 'set', port, 'master', 'br0');
    this.hub.exec('ip', 'link', 'set', port, 'up');
    for (const c of cidrs) ns.exec('ip', 'addr', 'add', c, 'dev', 'eth0');
    ns.exec('ip', 'link', 'set', 'eth0', 'up');
    // Everything not on the link (service VIPs) leaves through eth0, where redirection catches it first.
    ns.exec('ip', 'route', 'add', 'default', 'dev', 'eth0');
  }

  cleanup(): void {
    for (const ns of this.namespaces.splice(0).reverse()) ns.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
