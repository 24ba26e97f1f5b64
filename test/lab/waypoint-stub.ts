// A stand-in waypoint pod for ztunnel tests: the python3-h2 HBONE server (test/interop/hbone_server.py) in a lab
// namespace, with a certificate for the waypoint's identity from the lab's CA. It tunnels every CONNECT to its
// `:authority`, so an app listening on that address inside the stub's namespace is reached exactly when the CONNECT
// asked for it (see `claimAddresses`).
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalCa } from '../../ztunnel/identity/local-ca.js';
import type { Identity } from '../../ztunnel/identity/spiffe.js';
import type { Netns } from './netns.js';

const PY = '/usr/bin/python3';
const HBONE_SERVER = fileURLToPath(new URL('../../../test/interop/hbone_server.py', import.meta.url));

export interface WaypointStubOptions {
  ns: Netns;
  /** Where it listens: `ip:15008`. */
  ip: string;
  port?: number;
  /** The lab CA (root certificate and key files) that issues the stub's certificate and that client chains lead to. */
  caCert: string;
  caKey: string;
  identity: Identity;
  /** Where the certificate files go (the lab directory). */
  dir: string;
}

export class WaypointStub {
  private stderr = '';

  private constructor(private readonly child: ChildProcess, private readonly exited: Promise<void>) {
    child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
  }

  /** Start it and wait (bounded) until it listens; fails with its output if it exits or never gets ready. */
  static async start(o: WaypointStubOptions): Promise<WaypointStub> {
    const ca = await LocalCa.open(o.caCert, o.caKey, o.identity.trustDomain);
    const issued = await ca.issue(o.identity, 3600);
    const base = join(o.dir, `waypoint-stub-${o.identity.namespace}-${o.identity.serviceAccount}`);
    writeFileSync(`${base}.pem`, issued.chainPem.join('\n'));
    writeFileSync(`${base}.key`, issued.privateKeyPem, { mode: 0o600 });
    writeFileSync(`${base}-ca.pem`, issued.rootsPem.join('\n'));
    const args = [HBONE_SERVER, '--listen', `${o.ip}:${o.port ?? 15008}`, '--cert', `${base}.pem`, '--key', `${base}.key`, '--ca', `${base}-ca.pem`];
    const child = spawn('ip', ['netns', 'exec', o.ns.name, PY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const stub = new WaypointStub(child, exited);
    let stdout = '';
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()).includes('ready') && (clearTimeout(timer), resolve(true)));
      void exited.then(() => (clearTimeout(timer), resolve(false)));
    });
    if (!ready) {
      await stub.stop();
      throw new Error(`the waypoint stub did not start:\n${stdout}${stub.stderr}`);
    }
    return stub;
  }

  /** The SPIFFE identities of the clients whose connections it accepted, in order. */
  peers(): string[] {
    return [...this.stderr.matchAll(/^peer=(.*)$/gm)].map((m) => m[1]!);
  }

  /** Its diagnostics (handshake failures and the like). */
  log(): string {
    return this.stderr;
  }

  /** SIGTERM, then SIGKILL if it has not gone within 5 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Make addresses of other hosts (a service VIP, a pod IP) local to the stub's namespace, so the tunnels the stub opens
 * to them end at apps in that namespace instead of leaving it. The namespace then answers ARP only for the addresses of
 * the interface asked on, so it does not take those addresses over on the lab's link.
 */
export function claimAddresses(ns: Netns, ips: string[]): void {
  ns.exec('sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=1');
  for (const ip of ips) ns.exec('ip', 'addr', 'add', `${ip}/32`, 'dev', 'lo');
}
