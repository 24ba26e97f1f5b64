// A small mesh of dedicated-mode ztunnels: one namespace per workload, each with its own ztunnel and redirection rules.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { LocalCa } from '../../ztunnel/identity/local-ca.js';
import { Lab, type Netns } from './netns.js';
import { ZtunnelProc } from './ztunnel-proc.js';

/** Dedicated-mode capture: outbound TCP to 15001 unless ztunnel's mark or loopback; inbound to 15006 unless HBONE. */
export const DEDICATED_RULES = `*nat
:AMBIT_OUT - [0:0]
:AMBIT_IN - [0:0]
-A OUTPUT -p tcp -j AMBIT_OUT
-A AMBIT_OUT -m mark --mark 0x539/0xfff -j RETURN
-A AMBIT_OUT -o lo -j RETURN
-A AMBIT_OUT -p tcp -j REDIRECT --to-ports 15001
-A PREROUTING -p tcp -j AMBIT_IN
-A AMBIT_IN -p tcp --dport 15008 -j RETURN
-A AMBIT_IN -p tcp -j REDIRECT --to-ports 15006
COMMIT
`;

export interface HostSpec {
  name: string;
  ips: string[];
  /** Run a ztunnel for this workload (namespace/name/serviceAccount). */
  mesh?: { namespace: string; serviceAccount: string };
}

export class DedicatedMesh {
  readonly lab = new Lab();
  readonly hosts = new Map<string, Netns>();
  readonly ztunnels = new Map<string, ZtunnelProc>();
  readonly configPath = join(this.lab.dir, 'mesh.yaml');
  readonly caCert = join(this.lab.dir, 'root-cert.pem');
  readonly caKey = join(this.lab.dir, 'root-key.pem');

  host(name: string): Netns {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no lab host ${name}`);
    return h;
  }

  zt(name: string): ZtunnelProc {
    const z = this.ztunnels.get(name);
    if (!z) throw new Error(`no ztunnel on ${name}`);
    return z;
  }

  writeConfig(cfg: unknown): void {
    // Write-then-rename so a ztunnel never reads half a file.
    const tmp = `${this.configPath}.tmp`;
    writeFileSync(tmp, typeof cfg === 'string' ? cfg : stringify(cfg));
    renameSync(tmp, this.configPath);
  }

  async start(hosts: HostSpec[], config: unknown, env: Record<string, string> = {}): Promise<void> {
    this.writeConfig(config);
    await LocalCa.open(this.caCert, this.caKey, 'cluster.local');
    for (const h of hosts) {
      const ns = this.lab.netns(h.name);
      this.hosts.set(h.name, ns);
      this.lab.attach(ns, h.ips.map((ip) => `${ip}/24`));
      if (h.mesh) {
        ns.iptables(DEDICATED_RULES);
        this.ztunnels.set(
          h.name,
          new ZtunnelProc(ns, this.lab.dir, h.name, {
            PROXY_MODE: 'dedicated',
            PROXY_WORKLOAD_INFO: `${h.mesh.namespace}/${h.name}/${h.mesh.serviceAccount}`,
            LOCAL_XDS_PATH: this.configPath,
            LOCAL_CA_CERT: this.caCert,
            LOCAL_CA_KEY: this.caKey,
            NODE_NAME: h.name,
            ...env,
          }),
        );
      }
    }
    await Promise.all([...this.ztunnels.values()].map((z) => z.ready()));
  }

  async cleanup(): Promise<void> {
    await Promise.all([...this.ztunnels.values()].map((z) => z.stop()));
    this.lab.cleanup();
  }
}
