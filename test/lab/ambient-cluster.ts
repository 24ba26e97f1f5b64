// A lab cluster run by the real control plane, as the waypoint tests and the demo need it: the embedded API server
// and the controller (TLS xDS and the CA), a shared-mode ztunnel per node with a bound token and the controller's
// root (like its DaemonSet pod), the app pods created through the API, and the lab kubelet running whatever the
// controller deploys (waypoint Envoys) in the spare pod namespaces (`slots`).
import { CustomObjectsApi, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Cluster, type ClusterOptions, type ClusterPod, type ClusterSpec } from './cluster.js';
import { LabControlPlane } from './control-plane.js';
import { LabKubelet } from './kubelet.js';
import { eventually } from './ztunnel-proc.js';

export interface AmbientClusterSpec extends ClusterSpec {
  /** Pods of the spec (not enrolled) that the kubelet may run Deployment replicas in. */
  slots: string[];
  /** Labels of each app pod's Pod object (by pod name); default {app: <name>}. */
  labels?: Record<string, Record<string, string>>;
}

export class AmbientCluster {
  readonly cp: LabControlPlane;
  readonly cluster: Cluster;
  kubelet?: LabKubelet;
  private readonly envs = new Map<string, Record<string, string>>();

  /** `log`: the control plane's logger (silent by default). */
  constructor(private readonly spec: AmbientClusterSpec, opts: ClusterOptions = {}, log?: Logger) {
    this.cp = new LabControlPlane(log);
    this.cluster = new Cluster(spec, { ...opts, startZtunnels: false, envFor: (n) => ({ ...this.envs.get(n), ...opts.envFor?.(n) }) });
  }

  /** Seeds the API server with `objects` (namespaces, services, ...) and brings everything up. */
  async start(objects: KubernetesObject[], opts: { maxCertTtlSeconds?: number } = {}): Promise<void> {
    try {
      await this.cp.start(objects, opts);
      const core = this.cp.core!;
      const pods = this.spec.nodes.flatMap((n) => n.pods);
      const accounts = new Set(pods.filter((p) => !this.spec.slots.includes(p.name)).map((p) => `${p.namespace ?? 'default'}/${p.serviceAccount ?? 'default'}`));
      for (const a of accounts) {
        const [namespace, name] = a.split('/') as [string, string];
        if (name !== 'default') await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } }).catch(() => {});
      }
      await this.cluster.start();
      const slots: ClusterPod[] = [];
      for (const p of this.cluster.allPods()) {
        if (this.spec.slots.includes(p.name)) slots.push(p);
        else await this.cp.runPod(p, this.spec.labels?.[p.name] ?? { app: p.name });
      }
      for (const n of this.cluster.allNodes()) {
        await this.cp.relay(n.ns);
        this.envs.set(n.name, await this.cp.ztunnelEnv(n.name, this.cluster.lab.dir));
      }
      await Promise.all(this.cluster.allNodes().map((n) => this.cluster.startZtunnel(n.name)));
      for (const s of slots) await this.cp.relay(s.ns);
      this.kubelet = new LabKubelet(this.cp.api!, slots, this.cluster.lab.dir);
      this.kubelet.start();
    } catch (e) {
      await this.cleanup();
      throw e;
    }
  }

  pod(name: string): ClusterPod {
    return this.cluster.pod(name);
  }

  /** Waits (bounded) until the Gateway is Programmed; returns its status addresses. */
  async waypointProgrammed(namespace: string, name: string, timeoutMs = 30_000): Promise<{ type: string; value: string }[]> {
    const custom = this.cp.api!.kubeConfig().makeApiClient(CustomObjectsApi);
    return eventually(
      `waypoint ${namespace}/${name} programmed`,
      async () => {
        const g = (await custom.getNamespacedCustomObject({ group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', namespace, name })) as {
          status?: { addresses?: { type: string; value: string }[]; conditions?: { type: string; status: string }[] };
        };
        return g.status?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True') ? g.status.addresses : undefined;
      },
      timeoutMs,
    );
  }

  async cleanup(): Promise<void> {
    await this.kubelet?.stop();
    await this.cluster.cleanup();
    await this.cp.stop();
  }
}
