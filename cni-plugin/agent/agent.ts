// The node agent (Istio's istio-cni node agent in ambient mode): watches the pods of its node and all namespaces,
// and for every pod that belongs in the mesh installs the in-pod redirection inside the pod's netns, keeps the
// node's probe SNAT in sync, hands the pod to ztunnel over ZDS and marks it with ambient.istio.io/redirection.
// Pods that leave the mesh get the reverse: rules removed, ZDS Del, annotation removed.
//
// Work is per pod key (namespace/name), serialized per key; failures are retried with backoff. On start, pods
// already marked enrolled form the ZDS snapshot before the socket accepts ztunnel, so a restarted agent (or
// ztunnel) does not make ztunnel drop pods; the rules are re-applied idempotently.
import {
  CoreV1Api, ListWatch, PatchStrategy, Watch, setHeaderOptions, type KubeConfig, type KubernetesListObject, type V1Namespace, type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { pino } from 'pino';
import { closeFd, openNetns } from '../../ztunnel/native/index.js';
import {
  REDIRECTION_ANNOTATION, REDIRECTION_ENABLED, REDIRECTION_PENDING, notEnrolledBecause, podIps, podTerminal, redirectionState,
  type EnrollmentConfig,
} from './enrollment.js';
import { installInpodRules, removeInpodRules, setHostProbeSnat, type InpodOptions } from './inpod-rules.js';
import { AgentMetrics } from './metrics.js';
import { HostNetns, PathNetns, type IptablesVariant, type NetnsExec } from './netns.js';
import { procfsLookup, type NetnsLookup } from './podnetns.js';
import { ZdsServer, type ZdsEvent } from './zds-server.js';

export const DEFAULT_ZDS_SOCKET = '/var/run/ztunnel/ztunnel.sock';

export interface NodeAgentOptions {
  kubeConfig: KubeConfig;
  /** The node whose pods this agent handles (spec.nodeName). */
  nodeName: string;
  /** ZDS socket ztunnel connects to. Default /var/run/ztunnel/ztunnel.sock. */
  zdsSocket?: string;
  /** Namespaces never enrolled. Default ['kube-system']. */
  excludeNamespaces?: string[];
  /** Where ztunnel runs. Default istio-system. */
  systemNamespace?: string;
  /** The node's netns, for the probe SNAT. Default: the agent's own. */
  hostNetns?: NetnsExec;
  /** How to run commands in a pod netns given a path. Default nsenter (PathNetns). */
  podNetns?: (path: string) => NetnsExec;
  /** iptables front end for the defaults above. Default 'default' (whatever `iptables` is). */
  iptablesVariant?: IptablesVariant;
  /** Finds a running pod's netns when no CNI event gave it. Default: scan /proc for the pod's IP. */
  lookupNetns?: NetnsLookup;
  /** In-pod rule options (DNS capture). */
  inpod?: InpodOptions;
  /** SNAT the node's probes to enrolled pods to 169.254.7.127. Default true. */
  probeSnat?: boolean;
  /** How long a ZDS request waits for ztunnel's Ack. Default 10 s (as Istio). */
  zdsAckTimeoutMs?: number;
  /** Retry backoff for failed pods. Default 100 ms doubling to 5 s. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Patch the annotation through `pods` (default; works everywhere) or `pods/status` (Istio's choice, lower privilege). */
  annotateVia?: 'pods' | 'status';
  logger?: Logger;
  metrics?: AgentMetrics;
}

/** A CNI ADD as the plugin reports it: the sandbox's netns path and the IPs it got. */
export interface CniAdd {
  netns: string;
  ips: string[];
}

/** A pod this agent has put in the mesh (rules installed, handed to the ZDS server). */
interface Enrolled {
  key: string;
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  ips: string[];
  /** The path the netns was found at (CNI event or lookup). */
  source: string;
  /** Our open fd on the netns (keeps it valid), and the path that names it for nsenter and the ZDS Add. */
  fd: number;
  path: string;
  /** ztunnel acked the Add (live or in a snapshot). */
  acked: boolean;
  /** In a snapshot not yet acknowledged (or waiting for a ztunnel to connect). */
  snapshotPending: boolean;
}

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;
const errMsg = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class NodeAgent {
  readonly zds: ZdsServer;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
  private readonly core: CoreV1Api;
  private readonly pods: ListWatch<V1Pod>;
  private readonly namespaces: ListWatch<V1Namespace>;
  private readonly enrollment: EnrollmentConfig;
  private readonly hostNetns: NetnsExec;
  private readonly podNetns: (path: string) => NetnsExec;
  private readonly lookup: NetnsLookup;
  private readonly enrolled = new Map<string, Enrolled>();
  private readonly chains = new Map<string, Promise<void>>();
  private readonly queued = new Set<string>();
  private readonly attempts = new Map<string, number>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private lastSnat?: string;
  private started = false;
  private stopped = false;
  private ready = false;

  constructor(readonly opts: NodeAgentOptions) {
    this.log = opts.logger ?? pino({ name: 'ambit-node-agent' });
    this.metrics = opts.metrics ?? new AgentMetrics();
    const variant = opts.iptablesVariant ?? 'default';
    this.hostNetns = opts.hostNetns ?? new HostNetns(variant);
    this.podNetns = opts.podNetns ?? ((p) => new PathNetns(p, variant));
    this.lookup = opts.lookupNetns ?? procfsLookup;
    this.enrollment = {
      excludeNamespaces: new Set(opts.excludeNamespaces ?? ['kube-system']),
      systemNamespace: opts.systemNamespace ?? 'istio-system',
    };
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const watch = new Watch(opts.kubeConfig);
    const fieldSelector = `spec.nodeName=${opts.nodeName}`;
    this.pods = new ListWatch<V1Pod>(
      '/api/v1/pods', watch,
      () => this.core.listPodForAllNamespaces({ fieldSelector }) as unknown as Promise<KubernetesListObject<V1Pod>>,
      false, undefined, fieldSelector,
    );
    this.namespaces = new ListWatch<V1Namespace>(
      '/api/v1/namespaces', watch, () => this.core.listNamespace() as unknown as Promise<KubernetesListObject<V1Namespace>>, false,
    );
    this.zds = new ZdsServer(opts.zdsSocket ?? DEFAULT_ZDS_SOCKET, {
      listen: false,
      ackTimeoutMs: opts.zdsAckTimeoutMs ?? 10_000,
      maxEvents: 1000,
      onEvent: (e) => this.onZdsEvent(e),
      onConnection: (c) => this.onZdsConnection(c),
    });
    this.metrics.bind({
      enrolled: () => {
        let enabled = 0;
        for (const t of this.enrolled.values()) if (t.acked) enabled++;
        return { enabled, pending: this.enrolled.size - enabled };
      },
      zdsConnections: () => this.zds.liveConnections,
    });
  }

  /** Informers synced, the snapshot built, ZDS accepting. */
  get isReady(): boolean {
    return this.ready && !this.stopped;
  }

  /** Pods currently enrolled: key -> {uid, acked}. */
  enrolledPods(): Map<string, { uid: string; acked: boolean; ips: string[] }> {
    return new Map([...this.enrolled].map(([k, t]) => [k, { uid: t.uid, acked: t.acked, ips: [...t.ips] }]));
  }

  async start(): Promise<void> {
    if (this.started) throw new Error('node agent already started');
    this.started = true;
    this.log.info({ node: this.opts.nodeName, zds: this.zds.path }, 'node agent starting');
    await this.startInformer('namespaces', this.namespaces);
    await this.startInformer('pods', this.pods);
    // Pods that were enrolled before (by a previous agent): they form ztunnel's snapshot.
    for (const pod of this.pods.list()) {
      const state = redirectionState(pod);
      if (state !== REDIRECTION_ENABLED && state !== REDIRECTION_PENDING) continue;
      const key = keyOf(pod.metadata!.namespace!, pod.metadata!.name!);
      if (this.why(pod) !== undefined) continue; // the queue removes it below
      try {
        await this.serial(key, () => this.enroll(pod, undefined, { snapshotOnly: true }));
      } catch (e) {
        this.metrics.failure('snapshot');
        this.log.warn({ pod: key, err: errMsg(e) }, 'could not restore an enrolled pod into the snapshot; will retry');
      }
    }
    this.zds.listen();
    this.syncSnat(true);
    for (const ev of ['add', 'update', 'delete'] as const) {
      this.pods.on(ev, (p) => this.enqueue(keyOf(p.metadata!.namespace!, p.metadata!.name!)));
      this.namespaces.on(ev, (ns) => {
        for (const p of this.pods.list(ns.metadata!.name!)) this.enqueue(keyOf(p.metadata!.namespace!, p.metadata!.name!));
      });
    }
    for (const p of this.pods.list()) this.enqueue(keyOf(p.metadata!.namespace!, p.metadata!.name!));
    this.ready = true;
    this.log.info({ node: this.opts.nodeName, snapshot: this.enrolled.size }, 'node agent ready');
  }

  /** Stop watching and serving ZDS. Rules and annotations stay (a restarted agent picks them up). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.ready = false;
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    await Promise.all([this.pods.stop().catch(() => {}), this.namespaces.stop().catch(() => {})]);
    await Promise.all([...this.chains.values()]).catch(() => {});
    this.zds.close();
    for (const t of this.enrolled.values()) {
      try {
        closeFd(t.fd);
      } catch {}
    }
    this.enrolled.clear();
    this.log.info('node agent stopped');
  }

  /**
   * A CNI ADD for a pod (Istio: the plugin's /cmdadd event): resolves once the pod is set up and ztunnel acked;
   * rejects with the reason otherwise (the plugin then fails the ADD).
   */
  async cniAdd(namespace: string, name: string, add: CniAdd): Promise<void> {
    const key = keyOf(namespace, name);
    let pod: V1Pod | undefined;
    // The event can race the informer: wait a little for the pod to show up.
    for (let i = 0; i < 50 && !(pod = this.pods.get(name, namespace)); i++) await new Promise((r) => setTimeout(r, 20));
    if (!pod) throw new Error(`pod ${key} is not in the node agent's cache of node ${this.opts.nodeName}`);
    if (!this.namespaces.get(namespace)) throw new Error(`namespace ${namespace} is not known to the node agent`);
    const why = this.why(pod);
    if (why) throw new Error(`pod ${key} is not enabled for ambient: ${why}`);
    try {
      await this.serial(key, async () => {
        const p = this.pods.get(name, namespace) ?? pod!;
        await this.enroll(p, add);
      });
      this.attempts.delete(key);
    } catch (e) {
      this.scheduleRetry(key);
      throw e;
    }
  }

  // ---------------------------------------------------------------- reconcile

  private why(pod: V1Pod): string | undefined {
    return notEnrolledBecause(pod, this.namespaces.get(pod.metadata!.namespace!), this.enrollment);
  }

  private enqueue(key: string): void {
    if (this.stopped || this.queued.has(key)) return;
    this.queued.add(key);
    this.serial(key, () => {
      this.queued.delete(key);
      return this.reconcile(key);
    }).then(
      () => this.attempts.delete(key),
      (e) => {
        this.metrics.failure('reconcile');
        this.log.warn({ pod: key, err: errMsg(e), attempt: (this.attempts.get(key) ?? 0) + 1 }, 'pod reconcile failed; will retry');
        this.scheduleRetry(key);
      },
    );
  }

  private scheduleRetry(key: string): void {
    if (this.stopped || this.retryTimers.has(key)) return;
    const n = (this.attempts.get(key) ?? 0) + 1;
    this.attempts.set(key, n);
    const min = this.opts.retryMinMs ?? 100;
    const delay = Math.min(this.opts.retryMaxMs ?? 5000, min * 2 ** (n - 1));
    this.retryTimers.set(key, setTimeout(() => {
      this.retryTimers.delete(key);
      this.enqueue(key);
    }, delay));
  }

  /** Run `fn` after everything queued for `key` before it. */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(key) ?? Promise.resolve();
    const next = prev.then(fn);
    const tail = next.then(() => {}, () => {});
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return next;
  }

  private async reconcile(key: string): Promise<void> {
    if (this.stopped) return;
    const [namespace, name] = key.split('/') as [string, string];
    const pod = this.pods.get(name, namespace);
    const t = this.enrolled.get(key);
    if (t && (!pod || pod.metadata?.uid !== t.uid)) await this.unenroll(t, true, pod ? 'replaced by a new pod' : 'deleted');
    if (!pod) return;
    if (!this.namespaces.get(namespace)) return; // not synced yet; its add event re-queues the pods
    const why = this.why(pod);
    const cur = this.enrolled.get(key);
    if (why) {
      if (cur) await this.unenroll(cur, podTerminal(pod), why);
      else if (redirectionState(pod) !== undefined) await this.cleanupStale(pod, why);
      return;
    }
    await this.enroll(pod, undefined);
  }

  /**
   * Put `pod` in the mesh (or finish doing so). With `add` (CNI event): a new sandbox, set up from scratch.
   * With snapshotOnly (agent start): rules re-applied and the pod recorded for the snapshot, nothing sent.
   */
  private async enroll(pod: V1Pod, add: CniAdd | undefined, o: { snapshotOnly?: boolean } = {}): Promise<void> {
    const namespace = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    const uid = pod.metadata!.uid!;
    const key = keyOf(namespace, name);
    let t = this.enrolled.get(key);
    if (t && t.uid !== uid) {
      await this.unenroll(t, true, 'replaced by a new pod');
      t = undefined;
    }
    const ips = add?.ips.length ? add.ips : podIps(pod);
    if (t && !add) {
      if (ips.length && ips.join() !== t.ips.join()) {
        t.ips = ips;
        this.syncSnat();
      }
      if (t.acked) {
        if (redirectionState(pod) !== REDIRECTION_ENABLED) await this.annotate(pod, REDIRECTION_ENABLED);
        return;
      }
      // In a snapshot that is not answered yet, or no ztunnel to send to: the snapshot ack will re-queue it.
      if (t.snapshotPending || !this.zds.connected) {
        if (!this.zds.connected && redirectionState(pod) !== REDIRECTION_PENDING && redirectionState(pod) !== REDIRECTION_ENABLED) {
          await this.annotate(pod, REDIRECTION_PENDING);
        }
        return;
      }
      // Falls through: the Add failed before; send it again.
    } else if (t && add && t.source === add.netns && t.acked) {
      return; // the plugin retried an ADD that already went through
    } else {
      if (!add && !ips.length) return; // no IP yet: the CNI event or a later update brings it
      const source = add?.netns ?? (await this.lookup({ name, namespace, uid, ips }));
      if (!source) {
        this.metrics.failure('netns');
        throw new Error(`cannot find the network namespace of pod ${key} (ips ${ips.join(', ') || 'none'})`);
      }
      let fd: number;
      try {
        fd = openNetns(source);
      } catch (e) {
        this.metrics.failure('netns');
        throw new Error(`cannot open the network namespace ${source} of pod ${key}: ${errMsg(e)}`);
      }
      const path = `/proc/${process.pid}/fd/${fd}`;
      try {
        installInpodRules(this.podNetns(path), this.opts.inpod);
      } catch (e) {
        closeFd(fd);
        this.metrics.failure('rules');
        throw new Error(`installing the in-pod rules for ${key}: ${errMsg(e)}`);
      }
      if (t) {
        try {
          closeFd(t.fd);
        } catch {}
      }
      t = {
        key, uid, name, namespace, serviceAccount: pod.spec?.serviceAccountName || 'default', ips, source, fd, path,
        acked: false, snapshotPending: !this.zds.connected,
      };
      this.enrolled.set(key, t);
      this.syncSnat();
      this.log.info({ pod: key, uid, netns: source, ips, via: add ? 'cni' : 'informer' }, 'in-pod redirection installed');
      if (o.snapshotOnly) {
        void this.zds.addPod({ uid, name, namespace, serviceAccount: t.serviceAccount, netns: path });
        return;
      }
    }
    const tt = t!;
    let result: string | undefined;
    try {
      result = await this.zds.addPod({ uid, name, namespace, serviceAccount: tt.serviceAccount, netns: tt.path });
    } catch (e) {
      result = errMsg(e);
    }
    if (this.enrolled.get(key) !== tt) return; // removed meanwhile
    if (result === '') {
      tt.acked = true;
      tt.snapshotPending = false;
      this.log.info({ pod: key, uid }, 'ztunnel acked the pod');
      await this.annotate(pod, REDIRECTION_ENABLED);
      return;
    }
    this.metrics.failure('zds_add');
    if (result === undefined) tt.snapshotPending = true; // goes out with the next snapshot
    await this.annotate(pod, REDIRECTION_PENDING).catch((e) => this.log.warn({ pod: key, err: errMsg(e) }, 'annotating pending failed'));
    throw new Error(result === undefined ? `no ztunnel connected to ${this.zds.path}` : `ztunnel did not take pod ${key}: ${result}`);
  }

  /** Take a pod out of the mesh. `gone`: its netns is gone or going (deleted, terminated): no rule removal. */
  private async unenroll(t: Enrolled, gone: boolean, why: string): Promise<void> {
    this.log.info({ pod: t.key, uid: t.uid, why }, 'removing pod from the mesh');
    this.enrolled.delete(t.key);
    this.syncSnat();
    let failed: Error | undefined;
    if (!gone) {
      try {
        removeInpodRules(this.podNetns(t.path));
      } catch (e) {
        this.metrics.failure('rules');
        failed = new Error(`removing the in-pod rules of ${t.key}: ${errMsg(e)}`);
      }
    }
    try {
      const r = await this.zds.delPod(t.uid);
      if (r) this.log.warn({ pod: t.key, err: r }, 'ztunnel answered the Del with an error');
    } catch (e) {
      this.metrics.failure('zds_del');
      this.log.warn({ pod: t.key, err: errMsg(e) }, 'ZDS Del failed');
    }
    try {
      closeFd(t.fd);
    } catch {}
    const pod = this.pods.get(t.name, t.namespace);
    if (pod && pod.metadata?.uid === t.uid && redirectionState(pod) !== undefined) {
      await this.annotate(pod, null).catch((e) => {
        if (!gone) throw e;
      });
    }
    if (failed) throw failed;
  }

  /** A pod marked enrolled that this agent never set up (e.g. the label went while no agent ran): undo what we can. */
  private async cleanupStale(pod: V1Pod, why: string): Promise<void> {
    const key = keyOf(pod.metadata!.namespace!, pod.metadata!.name!);
    const uid = pod.metadata!.uid!;
    this.log.info({ pod: key, why }, 'removing a stale enrollment');
    if (!podTerminal(pod)) {
      const source = await Promise.resolve(this.lookup({ name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, uid, ips: podIps(pod) })).catch(() => undefined);
      if (source) removeInpodRules(this.podNetns(source));
    }
    await this.zds.delPod(uid).catch(() => undefined);
    await this.annotate(pod, null);
  }

  private async annotate(pod: V1Pod, value: string | null): Promise<void> {
    const name = pod.metadata!.name!;
    const namespace = pod.metadata!.namespace!;
    const body = { metadata: { annotations: { [REDIRECTION_ANNOTATION]: value } } };
    const opts = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    try {
      if (this.opts.annotateVia === 'status') await this.core.patchNamespacedPodStatus({ name, namespace, body }, opts);
      else await this.core.patchNamespacedPod({ name, namespace, body }, opts);
    } catch (e) {
      const code = (e as { code?: number }).code;
      if (value === null && code === 404) return;
      this.metrics.failure('annotate');
      throw new Error(`annotating pod ${namespace}/${name} (${REDIRECTION_ANNOTATION}=${value}): ${errMsg(e)}`);
    }
  }

  private syncSnat(force = false): void {
    if (this.opts.probeSnat === false) return;
    const ips = [...new Set([...this.enrolled.values()].flatMap((t) => t.ips.filter((ip) => !ip.includes(':'))))].sort();
    const sig = ips.join(',');
    if (!force && sig === this.lastSnat) return;
    try {
      setHostProbeSnat(this.hostNetns, ips);
      this.lastSnat = sig;
    } catch (e) {
      this.metrics.failure('probe_snat');
      this.lastSnat = undefined;
      this.log.error({ err: errMsg(e) }, 'updating the node probe SNAT failed');
    }
  }

  // ---------------------------------------------------------------- ZDS and informer plumbing

  private onZdsConnection(c: { conn: number; up: boolean; why?: string }): void {
    this.log.info(c, c.up ? 'ztunnel connected' : 'ztunnel connection closed');
    if (c.up) {
      this.metrics.zdsConnected();
      // The connection gets every pod in its snapshot.
      for (const t of this.enrolled.values()) t.snapshotPending = true;
    }
  }

  private onZdsEvent(e: ZdsEvent): void {
    const ok = e.outcome === 'ack' && e.error === '';
    if (!ok) {
      this.metrics.failure(`zds_${e.kind}`);
      this.log.warn({ conn: e.conn, kind: e.kind, uid: e.uid, outcome: e.outcome, error: e.error }, 'ZDS request failed');
    }
    if (!e.snapshot || (e.kind !== 'add' && e.kind !== 'keep') || !e.uid) return;
    for (const t of this.enrolled.values()) {
      if (t.uid !== e.uid) continue;
      t.snapshotPending = false;
      t.acked = ok;
      this.enqueue(t.key); // annotate enabled, or send the Add again
    }
  }

  private async startInformer<T extends V1Pod | V1Namespace>(what: string, inf: ListWatch<T>): Promise<void> {
    inf.on('error', (err) => {
      if (this.stopped) return;
      this.log.warn({ what, err: errMsg(err) }, 'watch failed; restarting');
      setTimeout(() => void inf.start().catch(() => {}), 1000).unref();
    });
    await inf.start();
  }
}
