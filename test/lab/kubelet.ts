// The lab's kubelet (with a ReplicaSet's part): runs the pods of the Deployments the controller created, as a
// cluster would. Each replica gets a Pod object in the API and one of the lab's spare pod network namespaces; its
// container runs as the template says — the command found on this machine (Envoy from the project's .venv), the
// args with $(VAR) expanded from the env (downward API), the volumes mounted at their paths in a private mount
// namespace (ConfigMaps written out, the projected service-account token minted by the API server and bound to
// the pod), as the template's user — and the readiness probe drives the Pod's Ready condition. A deleted Pod is
// killed and replaced; a deleted Deployment takes its pods along.
import {
  AppsV1Api, CoreV1Api, type V1Container, type V1Deployment, type V1EnvVar, type V1Pod, type V1Volume,
} from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ApiServer } from '../../waypoint-controller/apiserver/index.js';
import { httpIn } from './apps.js';
import type { ClusterPod } from './cluster.js';
import { findEnvoy } from './envoy.js';

/** Commands a template may name, and the binary that plays each here. */
const COMMANDS: Record<string, () => string> = { envoy: findEnvoy };
const RECONCILE_MS = 200;

interface Running {
  name: string;
  deployment: string;
  slot: ClusterPod;
  dir: string;
  pod: V1Pod;
  child?: ChildProcess;
  ready: boolean;
  restarts: number;
  stopped: boolean;
}

export class LabKubelet {
  private readonly core: CoreV1Api;
  private readonly apps: AppsV1Api;
  private readonly pods = new Map<string, Running>(); // by ns/name
  private timer?: NodeJS.Timeout;
  private busy = false;
  private counter = 0;
  private stopped = false;

  /** `slots`: pods of the lab cluster (not enrolled) whose network namespaces the Deployments' pods may take. */
  constructor(
    private readonly api: ApiServer,
    private readonly slots: ClusterPod[],
    private readonly dir: string,
    private readonly selector = 'gateway.istio.io/managed',
  ) {
    const kc = api.kubeConfig();
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      if (!this.busy) {
        this.busy = true;
        void this.reconcile()
          .catch(() => {})
          .finally(() => (this.busy = false));
      }
      this.timer = setTimeout(tick, RECONCILE_MS);
    };
    tick();
  }

  /** The running pods of a Deployment, in start order: the lab pod (netns) each has, and its container's process. */
  podsOf(namespace: string, deployment: string): { name: string; slot: ClusterPod; ready: boolean; logPath: string; pid?: number }[] {
    return [...this.pods.values()]
      .filter((p) => p.deployment === `${namespace}/${deployment}` && !p.stopped)
      .map((p) => ({ name: p.name, slot: p.slot, ready: p.ready, logPath: join(p.dir, 'container.log'), pid: p.child?.pid }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.all([...this.pods.values()].map((p) => this.kill(p)));
    this.pods.clear();
  }

  private async reconcile(): Promise<void> {
    const deployments = (await this.apps.listDeploymentForAllNamespaces({ labelSelector: this.selector })).items;
    const apiPods = new Set((await this.core.listPodForAllNamespaces({ labelSelector: this.selector })).items.map((p) => `${p.metadata!.namespace}/${p.metadata!.name}`));
    const wanted = new Map(deployments.map((d) => [`${d.metadata!.namespace}/${d.metadata!.name}`, d]));
    for (const [key, p] of this.pods) {
      if (!apiPods.has(key) || !wanted.has(p.deployment)) {
        this.pods.delete(key);
        await this.kill(p);
        if (apiPods.has(key)) await this.core.deleteNamespacedPod({ namespace: key.split('/')[0]!, name: p.name }).catch(() => {});
      }
    }
    for (const [key, d] of wanted) {
      const mine = [...this.pods.values()].filter((p) => p.deployment === key);
      for (let i = mine.length; i < (d.spec?.replicas ?? 1); i++) await this.createPod(d);
      for (const extra of mine.slice(d.spec?.replicas ?? 1)) await this.core.deleteNamespacedPod({ namespace: d.metadata!.namespace!, name: extra.name }).catch(() => {});
    }
    await Promise.all([...this.pods.values()].map((p) => this.probe(p)));
  }

  private freeSlot(): ClusterPod | undefined {
    const taken = new Set([...this.pods.values()].map((p) => p.slot.name));
    return this.slots.find((s) => !taken.has(s.name));
  }

  private async createPod(d: V1Deployment): Promise<void> {
    const slot = this.freeSlot();
    if (!slot) return; // Pending, as a pod nothing can schedule
    const namespace = d.metadata!.namespace!;
    const template = d.spec!.template;
    const hash = 'lab' + (d.metadata!.generation ?? 1);
    const name = `${d.metadata!.name}-${hash}-${(++this.counter).toString(36).padStart(5, '0')}`;
    const pod: V1Pod = {
      metadata: {
        name,
        namespace,
        labels: { ...template.metadata?.labels, 'pod-template-hash': hash },
        annotations: template.metadata?.annotations,
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${d.metadata!.name}-${hash}`, uid: `${d.metadata!.uid}-rs`, controller: true }],
      },
      spec: { ...template.spec!, nodeName: slot.node },
    };
    const created = await this.core.createNamespacedPod({ namespace, body: pod });
    const running: Running = {
      name, deployment: `${namespace}/${d.metadata!.name}`, slot, dir: join(this.dir, `pod-${name}`), pod: created, ready: false, restarts: 0, stopped: false,
    };
    this.pods.set(`${namespace}/${name}`, running);
    mkdirSync(running.dir, { recursive: true });
    await this.setStatus(running, false);
    const c = created.spec!.containers[0]!;
    const uid = c.securityContext?.runAsUser ?? created.spec!.securityContext?.runAsUser ?? 0;
    const gid = c.securityContext?.runAsGroup ?? created.spec!.securityContext?.runAsGroup ?? uid;
    const volumeDirs = new Map<string, string>();
    for (const v of created.spec!.volumes ?? []) volumeDirs.set(v.name, await this.writeVolume(running, v, uid, gid));
    this.run(running, volumeDirs, uid, gid);
  }

  /** Starts the (first) container, again after it exits (restartPolicy Always, without the back-off). */
  private run(p: Running, volumeDirs: Map<string, string>, uid: number, gid: number): void {
    if (p.stopped || this.stopped) return;
    const { pod } = p;
    const c = pod.spec!.containers[0]!;
    const env = downwardEnv(c.env ?? [], pod, p.slot.ip);
    const mounts = (c.volumeMounts ?? []).map((m) => {
      if (!/^\/(var\/)?run\//.test(m.mountPath)) throw new Error(`lab kubelet mounts under /var/run only, not ${m.mountPath}`);
      return `mkdir -p '${m.mountPath}' && mount --bind ${m.readOnly ? '-o ro ' : ''}'${volumeDirs.get(m.name)}' '${m.mountPath}'`;
    });
    const command = [...(c.command ?? [])];
    const bin = COMMANDS[command[0] ?? ''];
    if (!bin) throw new Error(`lab kubelet cannot run ${JSON.stringify(command[0])}`);
    command[0] = bin();
    const args = (c.args ?? []).map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, k: string) => env[k] ?? all));
    // ip netns exec gives the process a mount namespace of its own (slave to the host's): a tmpfs on /run there
    // hides the host's, and the volumes are bound into it. Each step execs the next, so the pid is the container's.
    const script = ['mount -t tmpfs -o mode=755 none /run', ...mounts, `exec setpriv --reuid ${uid} --regid ${gid} --clear-groups -- "$@"`].join(' && ');
    const out = openSync(join(p.dir, 'container.log'), 'a');
    p.child = spawn('ip', ['netns', 'exec', p.slot.ns.name, 'sh', '-c', script, 'sh', ...command, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['ignore', out, out],
    });
    p.child.once('exit', () => {
      p.ready = false;
      if (p.stopped || this.stopped) return;
      p.restarts++;
      setTimeout(() => this.run(p, volumeDirs, uid, gid), 500).unref();
    });
  }

  private async writeVolume(p: Running, v: V1Volume, uid: number, gid: number): Promise<string> {
    const { pod } = p;
    const dir = join(p.dir, 'volumes', v.name);
    mkdirSync(dir, { recursive: true });
    const namespace = pod.metadata!.namespace!;
    if (v.configMap) {
      const cm = await this.core.readNamespacedConfigMap({ namespace, name: v.configMap.name! });
      for (const [k, val] of Object.entries(cm.data ?? {})) writeFileSync(join(dir, k), val, { mode: 0o644 });
    } else if (v.projected) {
      for (const s of v.projected.sources ?? []) {
        const t = s.serviceAccountToken;
        if (!t) continue;
        const file = join(dir, t.path);
        this.api.writeToken(file, {
          namespace, serviceAccount: pod.spec!.serviceAccountName || 'default', audiences: t.audience ? [t.audience] : undefined,
          expirationSeconds: t.expirationSeconds, pod: { name: pod.metadata!.name!, uid: pod.metadata!.uid },
        });
        chownSync(file, uid, gid);
      }
    } else if (!v.emptyDir) {
      throw new Error(`lab kubelet: unsupported volume ${v.name}`);
    }
    return dir;
  }

  private async probe(p: Running): Promise<void> {
    if (p.stopped) return;
    const c = this.containerOf(p);
    const probe = c?.readinessProbe?.httpGet;
    let ready = !!p.child && p.child.exitCode === null;
    if (ready && probe) {
      const r = await httpIn(p.slot.ns, 'GET', Number(probe.port), probe.path ?? '/', p.slot.ip).catch(() => undefined);
      ready = r?.status === 200;
    }
    if (ready !== p.ready) {
      p.ready = ready;
      await this.setStatus(p, ready);
    }
  }

  private containerOf(p: Running): V1Container | undefined {
    return p.pod.spec?.containers[0];
  }

  private async setStatus(p: Running, ready: boolean): Promise<void> {
    const namespace = p.deployment.split('/')[0]!;
    const current = await this.core.readNamespacedPod({ namespace, name: p.name }).catch(() => undefined);
    if (!current) return;
    current.status = {
      phase: 'Running',
      podIP: p.slot.ip,
      podIPs: [{ ip: p.slot.ip }],
      hostIP: undefined,
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
      containerStatuses: [{ name: this.containerOf(p)?.name ?? 'c', ready, restartCount: p.restarts, image: '', imageID: '' }],
    };
    await this.core.replaceNamespacedPodStatus({ namespace, name: p.name, body: current }).catch(() => {});
  }

  private async kill(p: Running): Promise<void> {
    p.stopped = true;
    const child = p.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
}

/** The env with the downward API's fields filled in (the ones waypoint templates use). */
function downwardEnv(vars: V1EnvVar[], pod: V1Pod, podIp: string): Record<string, string> {
  const fields: Record<string, string> = {
    'metadata.name': pod.metadata!.name!,
    'metadata.namespace': pod.metadata!.namespace!,
    'status.podIP': podIp,
    'spec.serviceAccountName': pod.spec!.serviceAccountName || 'default',
    'spec.nodeName': pod.spec!.nodeName ?? '',
  };
  const env: Record<string, string> = {};
  for (const v of vars) {
    if (v.value !== undefined) env[v.name] = v.value;
    else if (v.valueFrom?.fieldRef) {
      const f = fields[v.valueFrom.fieldRef.fieldPath];
      if (f === undefined) throw new Error(`lab kubelet: unsupported fieldRef ${v.valueFrom.fieldRef.fieldPath}`);
      env[v.name] = f;
    }
  }
  return env;
}

export const readLog = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};
