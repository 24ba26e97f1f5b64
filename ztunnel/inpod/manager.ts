// Pods handed over by the node agent: one set of in-pod listeners per pod, reconciled against each snapshot.
import { fstatSync } from 'node:fs';
import type { WorkloadInfo } from '../config/env.js';
import type { CertificateManager } from '../identity/manager.js';
import { formatIdentity } from '../identity/spiffe.js';
import { closeFd, closeFdQuietly } from '../native/index.js';
import { NetnsSocketFactory } from '../net/sockets.js';
import { WorkloadProxies, type Shared } from '../proxy/workload-proxies.js';
import type { ProxyThreads } from '../workers/host.js';
import type { ZdsHandler } from './zds-client.js';
import type { ZdsMessage } from './zds-protocol.js';

interface Pod {
  info: WorkloadInfo;
  netnsFd: number;
  /** Inode of the netns: a re-created sandbox gets a new one. */
  netnsIno: number;
  proxies?: WorkloadProxies;
}

const RETRY_PENDING_MS = 2000;

export class InpodManager implements ZdsHandler {
  private readonly pods = new Map<string, Pod>();
  /** Pods whose proxies failed to start; retried, and they keep readiness false. */
  private readonly pending = new Set<string>();
  private snapshotReceived = false;
  private snapshotNames = new Set<string>();
  private readonly retryTimer: NodeJS.Timeout;

  constructor(
    private readonly shared: Shared,
    private readonly certs: CertificateManager,
    /** The other proxy threads, which serve every pod too (ZTUNNEL_WORKER_THREADS). */
    private readonly threads?: ProxyThreads,
  ) {
    this.retryTimer = setInterval(() => void this.retryPending(), RETRY_PENDING_MS);
    this.retryTimer.unref();
  }

  /** Ready once the first snapshot is in and every pod's proxies are up, as Istio's ztunnel. */
  ready(): boolean {
    return this.snapshotReceived && this.pending.size === 0;
  }

  connected(): void {
    this.snapshotReceived = false;
    this.snapshotNames = new Set();
  }

  async handle(msg: ZdsMessage): Promise<void> {
    const log = this.shared.log;
    switch (msg.kind) {
      case 'add': {
        log.info({ uid: msg.uid, pod: `${msg.info.namespace}/${msg.info.name}` }, 'pod received, starting proxy');
        if (!this.snapshotReceived) this.snapshotNames.add(msg.uid);
        return this.add(msg.uid, msg.info, msg.netnsFd);
      }
      case 'keep':
        if (this.snapshotReceived) throw new Error(`Keep ${msg.uid} after the snapshot`);
        this.snapshotNames.add(msg.uid);
        return;
      case 'del':
        log.info({ uid: msg.uid }, 'pod deleted, draining its proxy');
        if (!this.snapshotReceived) this.snapshotNames.delete(msg.uid);
        this.remove(msg.uid);
        return;
      case 'snapshot': {
        if (this.snapshotReceived) throw new Error('snapshot already received on this connection');
        this.snapshotReceived = true;
        for (const uid of [...this.pods.keys()]) if (!this.snapshotNames.has(uid)) this.remove(uid);
        this.snapshotNames.clear();
        log.info({ pods: this.pods.size }, 'pod snapshot reconciled');
        return;
      }
    }
  }

  private async add(uid: string, info: WorkloadInfo, netnsFd: number): Promise<void> {
    let ino: number;
    try {
      ino = fstatSync(netnsFd).ino;
    } catch (err) {
      closeFdQuietly(netnsFd);
      throw new Error(`Add ${uid}: bad network namespace fd: ${(err as Error).message}`);
    }
    const existing = this.pods.get(uid);
    if (existing && existing.netnsIno === ino && existing.proxies) {
      closeFd(netnsFd); // the same pod again: nothing to do
      return;
    }
    if (existing) this.remove(uid); // a new sandbox for the same pod
    const pod: Pod = { info, netnsFd, netnsIno: ino };
    this.pods.set(uid, pod);
    await this.startProxies(uid, pod);
  }

  private async startProxies(uid: string, pod: Pod): Promise<void> {
    const spoof = this.shared.cfg.enableOrigSrc;
    const proxies = new WorkloadProxies(this.shared, pod.info, new NetnsSocketFactory(pod.netnsFd, true), spoof);
    try {
      await proxies.start();
      await this.threads?.addPod(uid, pod.info, pod.netnsFd, spoof).catch((err: Error) => {
        proxies.close();
        this.threads!.removePod(uid);
        throw err;
      });
    } catch (err) {
      this.pending.add(uid);
      throw new Error(`starting proxies for ${pod.info.namespace}/${pod.info.name}: ${(err as Error).message}`);
    }
    if (this.pods.get(uid) !== pod) {
      // deleted while starting
      proxies.close();
      return this.threads?.removePod(uid);
    }
    pod.proxies = proxies;
    this.pending.delete(uid);
  }

  private async retryPending(): Promise<void> {
    for (const uid of [...this.pending]) {
      const pod = this.pods.get(uid);
      if (!pod || pod.proxies) {
        this.pending.delete(uid);
        continue;
      }
      await this.startProxies(uid, pod).catch((err: Error) => this.shared.log.warn({ uid, err: err.message }, 'retrying pod proxy failed'));
    }
  }

  /** Close a pod's listeners and connections at once, and forget its identity if no other local pod has it. */
  private remove(uid: string): void {
    const pod = this.pods.get(uid);
    if (!pod) return;
    this.pods.delete(uid);
    this.pending.delete(uid);
    pod.proxies?.close();
    this.threads?.removePod(uid);
    closeFdQuietly(pod.netnsFd);
    const id = pod.proxies?.identity;
    if (id && ![...this.pods.values()].some((p) => p.proxies && formatIdentity(p.proxies.identity) === formatIdentity(id))) this.certs.forget(id);
  }

  /** For config_dump: which pods are served and which are pending. */
  dump(): unknown[] {
    return [...this.pods.entries()].map(([uid, p]) => ({
      uid, name: p.info.name, namespace: p.info.namespace, serviceAccount: p.info.serviceAccount, state: p.proxies ? 'Up' : 'Pending',
    }));
  }

  /** Shutdown: stop accepting in every pod, let connections finish until the deadline, then close. */
  async drainAll(deadlineMs: number): Promise<boolean> {
    clearInterval(this.retryTimer);
    const results = await Promise.all([...this.pods.values()].map((p) => p.proxies?.drain(deadlineMs) ?? true));
    for (const p of this.pods.values()) closeFdQuietly(p.netnsFd);
    this.pods.clear();
    return results.every(Boolean);
  }

  get openConnections(): number {
    let n = 0;
    for (const p of this.pods.values()) n += p.proxies?.tracker.size ?? 0;
    return n;
  }
}
