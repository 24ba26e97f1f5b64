// Running commands in a network namespace: the agent's own (the host's) or a pod's, given by a path
// (/var/run/netns/<name>, /proc/<pid>/ns/net, /proc/<pid>/fd/<n>).
import { execFileSync } from 'node:child_process';

/** What the rule code needs of a network namespace. The lab's Netns class has the same shape. */
export interface NetnsExec {
  /** Run a command inside the namespace; returns stdout, throws with stderr on failure. */
  exec(cmd: string, ...args: string[]): string;
  /** Apply iptables-restore input with --noflush. */
  iptables(rules: string): void;
  /** iptables-save of the namespace (default: exec('iptables-save')). */
  iptablesSave?(): string;
}

/** Which iptables front end to use: the nft one (default, as Istio prefers) or legacy. */
export type IptablesVariant = 'nft' | 'legacy' | 'default';

export function run(cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

const ipt = (variant: IptablesVariant, tool: 'save' | 'restore') =>
  variant === 'default' ? `iptables-${tool}` : `iptables-${variant}-${tool}`;

/** The namespace the agent runs in (the node's, for a DaemonSet pod with hostNetwork). */
export class HostNetns implements NetnsExec {
  constructor(readonly variant: IptablesVariant = 'default') {}
  exec(cmd: string, ...args: string[]): string {
    return run(cmd, args);
  }
  iptables(rules: string): void {
    run(ipt(this.variant, 'restore'), ['--noflush'], rules);
  }
  iptablesSave(): string {
    return run(ipt(this.variant, 'save'), []);
  }
}

/** Another namespace, entered with nsenter for each command. */
export class PathNetns implements NetnsExec {
  constructor(readonly path: string, readonly variant: IptablesVariant = 'default') {}
  exec(cmd: string, ...args: string[]): string {
    return run('nsenter', [`--net=${this.path}`, '--', cmd, ...args]);
  }
  iptables(rules: string): void {
    run('nsenter', [`--net=${this.path}`, '--', ipt(this.variant, 'restore'), '--noflush'], rules);
  }
  iptablesSave(): string {
    return this.exec(ipt(this.variant, 'save'));
  }
}

/**
 * Which iptables the host uses (Istio detects this too): legacy when only the legacy tables hold rules, nft otherwise
 * (also when neither does, or the tools are missing).
 */
export function detectIptablesVariant(): IptablesVariant {
  const rules = (tool: string) => {
    try {
      return run(tool, []).split('\n').filter((l) => l.startsWith('-A ')).length;
    } catch {
      return -1;
    }
  };
  const nft = rules('iptables-nft-save');
  const legacy = rules('iptables-legacy-save');
  if (nft < 0 && legacy < 0) return 'default';
  if (legacy > 0 && nft <= 0) return 'legacy';
  return nft < 0 ? 'default' : 'nft';
}
