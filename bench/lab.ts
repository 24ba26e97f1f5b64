// The benchmark cluster: two lab nodes, a client pod on node1 and a server pod on node2 in the mesh, and the same
// pair outside the mesh. The three modes share the path pod -> node1 -> bridge -> node2 -> pod:
//   direct:  client-plain -> server-plain
//   ambit:   client -> (node1 ztunnel, HBONE) -> (node2 ztunnel) -> server
//   stunnel: client-plain -> stunnel client in that pod -> mTLS -> stunnel server in server-plain -> app
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { Cluster } from '../test/lab/cluster.js';
import type { Netns } from '../test/lab/netns.js';
import { within } from '../test/lab/waits.js';
import type { Mode } from './results.js';
import { startIn, TOOL } from './proc.js';

/** Server app ports in both server pods. */
export const PORT = { iperf: 5201, echo: 8080 } as const;
/** stunnel: client-side local ports per app, and the server's TLS ports. */
const STUNNEL = { iperf: { local: 15201, tls: 15443 }, echo: { local: 18080, tls: 18443 } } as const;

export type App = keyof typeof PORT;

export interface Target {
  /** Where the client runs. */
  ns: Netns;
  host: string;
  port: number;
}

export class BenchLab {
  readonly cluster: Cluster;
  private readonly children: ChildProcess[] = [];
  private stunnels: ChildProcess[] = [];

  /**
   * `threads`: ZTUNNEL_WORKER_THREADS of both ztunnels. `cpuProfileDir`: run them with --cpu-prof into that directory
   * and stop them with SIGTERM (a profile is written when the process exits, not when it is killed).
   */
  constructor(threads = 1, private readonly cpuProfileDir?: string) {
    const nodes = [
      { name: 'node1', pods: [{ name: 'client', serviceAccount: 'client', enrolled: true }, { name: 'client-plain' }] },
      { name: 'node2', pods: [{ name: 'server', serviceAccount: 'server', enrolled: true }, { name: 'server-plain' }] },
    ];
    const env: Record<string, string> = { ZTUNNEL_WORKER_THREADS: String(threads) };
    // NODE_OPTIONS is split at spaces except inside double quotes (with backslash escapes), as JSON writes a string.
    if (cpuProfileDir) env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${JSON.stringify(cpuProfileDir)}`;
    this.cluster = new Cluster({ nodes }, { env });
  }

  async start(): Promise<void> {
    await this.cluster.start();
    // A connection-rate run opens tens of thousands of connections; without reuse, the closed ones would sit in
    // TIME_WAIT and exhaust the client's ephemeral ports within seconds (the rate then collapses for every mode).
    for (const { ns } of [...this.cluster.allNodes(), ...this.cluster.allPods()]) {
      ns.exec('sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=10000 65000');
    }
    for (const pod of ['server', 'server-plain']) {
      const ns = this.cluster.pod(pod).ns;
      this.children.push((await startIn(ns, 'iperf3', ['-s', '--forceflush', '-p', String(PORT.iperf)], /Server listening/)).child);
      this.children.push((await startIn(ns, process.execPath, [TOOL('echo'), String(PORT.echo)], /^ready$/m)).child);
    }
    await this.startStunnel();
  }

  target(mode: Mode, app: App): Target {
    const c = this.cluster;
    switch (mode) {
      case 'direct':
        return { ns: c.pod('client-plain').ns, host: c.pod('server-plain').ip, port: PORT[app] };
      case 'ambit':
        return { ns: c.pod('client').ns, host: c.pod('server').ip, port: PORT[app] };
      case 'stunnel':
        return { ns: c.pod('client-plain').ns, host: '127.0.0.1', port: STUNNEL[app].local };
    }
  }

  /** The proxy processes of a mode (both ends), for CPU and memory readings. */
  proxyPids(mode: Exclude<Mode, 'direct'>): number[] {
    const procs = mode === 'ambit' ? ['node1', 'node2'].map((n) => this.cluster.zt(n).child) : this.stunnels;
    return procs.map((p) => {
      if (p.pid === undefined) throw new Error(`${mode} proxy has no pid`);
      return p.pid;
    });
  }

  /** Fresh proxy processes, so a memory reading starts from a clean heap. */
  async restartProxies(mode: Exclude<Mode, 'direct'>): Promise<void> {
    if (mode === 'ambit') {
      for (const n of ['node1', 'node2']) {
        await this.stopZtunnel(n);
        await this.cluster.startZtunnel(n);
      }
      return;
    }
    for (const s of this.stunnels.splice(0)) {
      s.kill('SIGKILL');
      await new Promise((r) => (s.exitCode === null && s.signalCode === null ? s.once('exit', r) : r(undefined)));
    }
    await this.startStunnel();
  }

  async cleanup(): Promise<void> {
    if (this.cpuProfileDir) for (const n of ['node1', 'node2']) await this.stopZtunnel(n).catch(() => {});
    for (const c of [...this.children, ...this.stunnels]) c.kill('SIGKILL');
    await this.cluster.cleanup();
  }

  /** Profiling: SIGTERM, so the profile is written (bounded; then killed). */
  private async stopZtunnel(node: string): Promise<void> {
    if (this.cpuProfileDir) {
      const z = this.cluster.zt(node);
      z.child.kill('SIGTERM');
      await within(z.exited, 20_000, `ztunnel ${node} exiting`).catch(() => {});
    }
    await this.cluster.stopZtunnel(node);
  }

  /** An stunnel pair with certificates from the lab's CA, both sides verifying the peer's chain. */
  private async startStunnel(): Promise<void> {
    const dir = this.cluster.lab.dir;
    const ca = await LocalCa.open(this.cluster.caCert, this.cluster.caKey, 'cluster.local');
    const files = async (side: 'client' | 'server') => {
      const cert = await ca.issue({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: `stunnel-${side}` }, 86_400);
      const certPath = join(dir, `stunnel-${side}.pem`);
      const keyPath = join(dir, `stunnel-${side}-key.pem`);
      writeFileSync(certPath, cert.chainPem.join(''));
      writeFileSync(keyPath, cert.privateKeyPem, { mode: 0o600 });
      return [`cert = ${certPath}`, `key = ${keyPath}`, `CAfile = ${this.cluster.caCert}`, 'verifyChain = yes', 'requireCert = yes'];
    };
    const common = ['foreground = yes', 'pid =', 'syslog = no', 'debug = 5', 'socket = l:TCP_NODELAY=1', 'socket = r:TCP_NODELAY=1'];
    const server = this.cluster.pod('server-plain');
    const serverTls = await files('server');
    const clientTls = await files('client');
    const serverConf = [...common];
    const clientConf = [...common];
    for (const app of Object.keys(STUNNEL) as App[]) {
      serverConf.push(`[${app}]`, `accept = 0.0.0.0:${STUNNEL[app].tls}`, `connect = 127.0.0.1:${PORT[app]}`, ...serverTls);
      clientConf.push(`[${app}]`, 'client = yes', `accept = 127.0.0.1:${STUNNEL[app].local}`, `connect = ${server.ip}:${STUNNEL[app].tls}`, ...clientTls);
    }
    const start = async (pod: string, lines: string[]) => {
      const conf = join(dir, `stunnel-${pod}.conf`);
      writeFileSync(conf, lines.join('\n') + '\n');
      // stunnel logs "Configuration successful" once every service is bound.
      this.stunnels.push((await startIn(this.cluster.pod(pod).ns, 'stunnel4', [conf], /Configuration successful/)).child);
    };
    await start('server-plain', serverConf);
    await start('client-plain', clientConf);
  }
}
