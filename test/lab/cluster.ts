// A simulated ambient cluster on one machine: a netns per node on the lab bridge, a netns per pod behind a veth
// to its node (ptp-style: the pod has a /32 and a default route via the node), routes between the nodes' pod
// CIDRs, and per node a ZDS server (the node agent's part), in-pod redirection for enrolled pods, and a shared-mode
// ztunnel in the node netns that gets the enrolled pods over ZDS.
import { createHash } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { LocalCa } from '../../ztunnel/identity/local-ca.js';
import { installInpodRules, removeInpodRules, setHostProbeSnat, type InpodOptions } from './inpod-rules.js';
import { Lab, sh, type Netns } from './netns.js';
import { ZdsServer, type ZdsPod } from './zds-server.js';
import { ZtunnelProc } from './ztunnel-proc.js';

export interface PodSpec {
  name: string;
  /** Default 'default'. */
  namespace?: string;
  /** Default 'default'. */
  serviceAccount?: string;
  /** In the mesh (ambient): redirection rules, ZDS Add, protocol HBONE. Default false. */
  enrolled?: boolean;
  /** ZDS and workload uid; default `Kubernetes//v1/Pod/<namespace>/<name>` (the local config's default uid). */
  uid?: string;
  /** Extra fields for this pod's workload entry in the local config (e.g. status, canonicalName). */
  workload?: Record<string, unknown>;
}

export interface NodeSpec {
  name: string;
  pods: PodSpec[];
}

export interface ServiceSpec {
  name: string;
  /** Default 'default'. */
  namespace?: string;
  /** Default `<name>.<namespace>.svc.cluster.local`. */
  hostname?: string;
  vip: string;
  /** service port -> target port, e.g. {80: 8080}; also each selected workload's port map. */
  ports: Record<number, number>;
  /** Names of the pods behind the service. */
  selectorPods: string[];
}

export interface ClusterSpec {
  nodes: NodeSpec[];
  services?: ServiceSpec[];
  /** Passed through to the local config's `policies`. */
  policies?: unknown[];
}

export interface ClusterOptions {
  /** Start a shared-mode ztunnel per node and wait for its readiness. Default true. */
  startZtunnels?: boolean;
  /** Extra environment for every ztunnel. */
  env?: Record<string, string>;
  /** Extra environment for one node's ztunnel (e.g. its own token file). */
  envFor?: (node: string) => Record<string, string> | undefined;
  /** SNAT the node's own TCP to its enrolled pods to 169.254.7.127, as Istio does for kubelet probes. Default true. */
  probeSnat?: boolean;
  /** Options for the in-pod rules (DNS capture). */
  inpod?: InpodOptions;
  /** How long each ZDS request waits for ztunnel's Ack. */
  zdsAckTimeoutMs?: number;
  /** How long start() waits for each ztunnel's readiness. Default 20 s. */
  readyTimeoutMs?: number;
}

export interface ClusterNode {
  name: string;
  /** 1-based position in the spec: node IP 10.200.0.<index>, pod CIDR 10.244.<index>.0/24. */
  index: number;
  ns: Netns;
  ip: string;
  podCidr: string;
  /** The node's address on every pod veth: the pods' default gateway. */
  gateway: string;
}

export interface ClusterPod {
  name: string;
  namespace: string;
  serviceAccount: string;
  uid: string;
  node: string;
  ns: Netns;
  ip: string;
  enrolled: boolean;
  /** The node-side end of the pod's veth (in the node netns). */
  hostVeth: string;
  workload: Record<string, unknown>;
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** `<node>-<pod>` for the pod's netns, shortened with a hash when long (the lab prefix goes in front). */
function podNetnsSuffix(node: string, pod: string): string {
  const full = `${node}-${pod}`;
  if (full.length <= 40) return full;
  return `${full.slice(0, 31)}-${createHash('sha256').update(full).digest('hex').slice(0, 8)}`;
}

export class Cluster {
  readonly lab = new Lab();
  readonly configPath = join(this.lab.dir, 'cluster.yaml');
  readonly caCert = join(this.lab.dir, 'root-cert.pem');
  readonly caKey = join(this.lab.dir, 'root-key.pem');
  private readonly nodes = new Map<string, ClusterNode>();
  private readonly pods = new Map<string, ClusterPod>();
  private readonly zdsServers = new Map<string, ZdsServer>();
  private readonly ztunnels = new Map<string, ZtunnelProc>();
  private policies: unknown[];
  private autoConfig = true;
  private cleaned = false;

  constructor(readonly spec: ClusterSpec, readonly opts: ClusterOptions = {}) {
    this.policies = spec.policies ?? [];
    const seen = new Set<string>();
    for (const n of spec.nodes) {
      if (!NAME_RE.test(n.name) || n.name === 'hub') throw new Error(`bad node name ${JSON.stringify(n.name)}`);
      for (const p of n.pods) {
        if (!NAME_RE.test(p.name)) throw new Error(`bad pod name ${JSON.stringify(p.name)}`);
        if (seen.has(p.name)) throw new Error(`pod names must be unique in the cluster: ${p.name}`);
        seen.add(p.name);
      }
      if (n.pods.length > 250) throw new Error(`node ${n.name}: at most 250 pods`);
    }
    if (spec.nodes.length > 250) throw new Error('at most 250 nodes');
    if (new Set(spec.nodes.map((n) => n.name)).size !== spec.nodes.length) throw new Error('node names must be unique');
    const netnsNames = spec.nodes.flatMap((n) => [n.name, ...n.pods.map((p) => podNetnsSuffix(n.name, p.name))]);
    if (new Set(netnsNames).size !== netnsNames.length) throw new Error(`node and pod names give clashing netns names: ${netnsNames.join(', ')}`);
    for (const s of spec.services ?? []) for (const p of s.selectorPods) if (!seen.has(p)) throw new Error(`service ${s.name} selects unknown pod ${p}`);
  }

  // ---------------------------------------------------------------- accessors

  node(name: string): ClusterNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  pod(name: string): ClusterPod {
    const p = this.pods.get(name);
    if (!p) throw new Error(`no pod ${name}`);
    return p;
  }

  allNodes(): ClusterNode[] {
    return [...this.nodes.values()];
  }

  allPods(): ClusterPod[] {
    return [...this.pods.values()];
  }

  zt(node: string): ZtunnelProc {
    const z = this.ztunnels.get(node);
    if (!z) throw new Error(`no ztunnel running on ${node}`);
    return z;
  }

  zds(node: string): ZdsServer {
    const z = this.zdsServers.get(node);
    if (!z) throw new Error(`no ZDS server for ${node}`);
    return z;
  }

  // ---------------------------------------------------------------- config

  /** The local config (LOCAL_XDS_PATH) for the cluster as it stands: every pod a workload, services, policies. */
  config(): { workloads: unknown[]; services: unknown[]; policies: unknown[] } {
    const services = (this.spec.services ?? []).map((s) => {
      const namespace = s.namespace ?? 'default';
      return { s, namespace, hostname: s.hostname ?? `${s.name}.${namespace}.svc.cluster.local` };
    });
    return {
      workloads: this.allPods().map((p) => {
        const svc: Record<string, Record<number, number>> = {};
        for (const { s, namespace, hostname } of services) if (s.selectorPods.includes(p.name)) svc[`${namespace}/${hostname}`] = { ...s.ports };
        return {
          uid: p.uid, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount, workloadIps: [p.ip],
          protocol: p.enrolled ? 'HBONE' : 'TCP', node: p.node, services: svc, ...p.workload,
        };
      }),
      services: services.map(({ s, namespace, hostname }) => ({ name: s.name, namespace, hostname, vips: [`/${s.vip}`], ports: { ...s.ports } })),
      policies: this.policies,
    };
  }

  /**
   * Write the local config atomically (write, then rename). Without an argument: the generated config. With one,
   * that config verbatim, and from then on enroll/unenroll/setPolicies no longer rewrite it.
   */
  writeConfig(cfg?: unknown): void {
    if (cfg !== undefined) this.autoConfig = false;
    const body = cfg ?? this.config();
    const tmp = `${this.configPath}.tmp`;
    writeFileSync(tmp, typeof body === 'string' ? body : stringify(body));
    renameSync(tmp, this.configPath);
  }

  /** Replace the policies and rewrite the generated config. */
  setPolicies(policies: unknown[]): void {
    this.policies = policies;
    this.autoConfig = true;
    this.writeConfig();
  }

  // ---------------------------------------------------------------- lifecycle

  /** Build the network, ZDS servers and rules, then (unless startZtunnels: false) start every ztunnel and wait until ready. */
  async start(): Promise<void> {
    try {
      await LocalCa.open(this.caCert, this.caKey, 'cluster.local');
      this.buildNetwork();
      this.writeConfig();
      for (const n of this.nodes.values()) {
        const zds = new ZdsServer(join(this.lab.dir, `${n.name}.sock`), { ackTimeoutMs: this.opts.zdsAckTimeoutMs });
        this.zdsServers.set(n.name, zds);
        for (const p of this.podsOn(n.name)) {
          if (!p.enrolled) continue;
          installInpodRules(p.ns, this.opts.inpod);
          void zds.addPod(this.zdsPod(p)); // no ztunnel yet: recorded for the snapshot
        }
        this.updateProbeSnat(n.name);
      }
      if (this.opts.startZtunnels ?? true) await Promise.all(this.allNodes().map((n) => this.startZtunnel(n.name)));
    } catch (e) {
      await this.cleanup();
      throw e;
    }
  }

  /** Start (or restart after stopZtunnel) the node's ztunnel; resolves when it is ready (bounded). */
  async startZtunnel(node: string): Promise<ZtunnelProc> {
    const n = this.node(node);
    if (this.ztunnels.has(node)) throw new Error(`ztunnel on ${node} is already running`);
    const z = new ZtunnelProc(n.ns, this.lab.dir, n.name, {
      PROXY_MODE: 'shared',
      INPOD_UDS: this.zds(node).path,
      LOCAL_XDS_PATH: this.configPath,
      LOCAL_CA_CERT: this.caCert,
      LOCAL_CA_KEY: this.caKey,
      NODE_NAME: n.name,
      ...this.opts.env,
      ...this.opts.envFor?.(n.name),
    });
    this.ztunnels.set(node, z);
    await z.ready(this.opts.readyTimeoutMs ?? 20_000);
    return z;
  }

  /** Kill the node's ztunnel (SIGKILL) and forget it. */
  async stopZtunnel(node: string): Promise<void> {
    const z = this.ztunnels.get(node);
    this.ztunnels.delete(node);
    await z?.stop();
  }

  /** Put a pod in the mesh: config HBONE, in-pod rules, probe SNAT, then ZDS Add. Resolves with the Ack error (undefined: no ztunnel connected). */
  enroll(podName: string): Promise<string | undefined> {
    const p = this.pod(podName);
    p.enrolled = true;
    if (this.autoConfig) this.writeConfig();
    installInpodRules(p.ns, this.opts.inpod);
    this.updateProbeSnat(p.node);
    return this.zds(p.node).addPod(this.zdsPod(p));
  }

  /** Take a pod out of the mesh: rules removed (Istio does this first), probe SNAT, config TCP, then ZDS Del. */
  unenroll(podName: string): Promise<string | undefined> {
    const p = this.pod(podName);
    p.enrolled = false;
    removeInpodRules(p.ns);
    this.updateProbeSnat(p.node);
    if (this.autoConfig) this.writeConfig();
    return this.zds(p.node).delPod(p.uid);
  }

  /** Kill ztunnels, close ZDS servers, delete every namespace and the lab directory. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    try {
      await Promise.all([...this.ztunnels.values()].map((z) => z.stop().catch(() => {})));
      this.ztunnels.clear();
      for (const z of this.zdsServers.values()) z.close();
    } finally {
      this.lab.cleanup();
    }
  }

  // ---------------------------------------------------------------- internals

  private podsOn(node: string): ClusterPod[] {
    return this.allPods().filter((p) => p.node === node);
  }

  private zdsPod(p: ClusterPod): ZdsPod {
    return { uid: p.uid, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount, netns: p.ns };
  }

  private updateProbeSnat(node: string): void {
    if (this.opts.probeSnat === false) return;
    setHostProbeSnat(this.node(node).ns, this.podsOn(node).filter((p) => p.enrolled).map((p) => p.ip));
  }

  private buildNetwork(): void {
    const sysctl = (ns: Netns, ...kv: string[]) => ns.exec('sysctl', '-q', '-w', ...kv);
    // rp_filter off everywhere (the effective value is the max of all and the interface's), set before links exist.
    const noRpFilter = ['net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'];
    this.spec.nodes.forEach((spec, i) => {
      const index = i + 1;
      const ns = this.lab.netns(spec.name);
      sysctl(ns, 'net.ipv4.ip_forward=1', ...noRpFilter);
      const node: ClusterNode = { name: spec.name, index, ns, ip: `10.200.0.${index}`, podCidr: `10.244.${index}.0/24`, gateway: `10.244.${index}.1` };
      this.nodes.set(spec.name, node);
      this.lab.attach(ns, [`${node.ip}/24`]);
      const nodeBatch: string[] = [];
      spec.pods.forEach((ps, k) => {
        const podNs = this.lab.netns(podNetnsSuffix(spec.name, ps.name));
        sysctl(podNs, ...noRpFilter);
        const namespace = ps.namespace ?? 'default';
        const pod: ClusterPod = {
          name: ps.name, namespace, serviceAccount: ps.serviceAccount ?? 'default', uid: ps.uid ?? `Kubernetes//v1/Pod/${namespace}/${ps.name}`,
          node: spec.name, ns: podNs, ip: `10.244.${index}.${k + 2}`, enrolled: ps.enrolled ?? false, hostVeth: `vp${k}`, workload: ps.workload ?? {},
        };
        this.pods.set(ps.name, pod);
        sh('ip', ['link', 'add', 'eth0', 'netns', podNs.name, 'type', 'veth', 'peer', 'name', pod.hostVeth, 'netns', ns.name]);
        sh('ip', ['-n', podNs.name, '-batch', '-'], [
          `addr add ${pod.ip}/32 dev eth0`,
          'link set eth0 up',
          `route add ${node.gateway} dev eth0 scope link`,
          `route add default via ${node.gateway} dev eth0 src ${pod.ip}`,
        ].join('\n') + '\n');
        nodeBatch.push(
          `addr add ${node.gateway}/32 dev ${pod.hostVeth}`,
          `link set ${pod.hostVeth} up`,
          `route add ${pod.ip}/32 dev ${pod.hostVeth} src ${node.gateway}`,
        );
      });
      if (nodeBatch.length) sh('ip', ['-n', ns.name, '-batch', '-'], nodeBatch.join('\n') + '\n');
    });
    for (const n of this.nodes.values()) {
      const routes = this.allNodes().filter((m) => m !== n).map((m) => `route add ${m.podCidr} via ${m.ip} dev eth0`);
      if (routes.length) sh('ip', ['-n', n.ns.name, '-batch', '-'], routes.join('\n') + '\n');
    }
  }
}
