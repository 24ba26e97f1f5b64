// The main thread's side of the proxy threads (ZTUNNEL_WORKER_THREADS > 1). The main thread keeps serving too; each
// extra thread gets the same pods, opens its own SO_REUSEPORT listeners next to the main thread's, and keeps a replica
// of the state fed by every change the main thread makes, in order. Metrics are summed over all threads on request.
import { openSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Config, WorkloadInfo } from '../config/env.js';
import type { CertificateManager, WorkloadCertificate } from '../identity/manager.js';
import type { ProxyState } from '../state/index.js';
import { encodeOp, type StateOp, type WireWorkload } from '../state/replica.js';
import type { HostApi, ThreadApi, ThreadData } from './protocol.js';
import { Rpc } from './rpc.js';

interface Thread {
  worker: Worker;
  rpc: Rpc<HostApi, ThreadApi>;
}

export class ProxyThreads {
  private readonly threads: Thread[] = [];
  private queued: StateOp<WireWorkload>[] = [];
  private stopping = false;
  /** A thread died: the others are stopped without a drain (a dead thread would never answer). */
  private dead = false;
  private readonly onIssued = (cert: WorkloadCertificate) => this.notifyAll('issued', cert);
  private readonly onForgotten = (identity: string) => this.notifyAll('forgotten', identity);

  /** `count` extra threads; `onFailure` is told if one dies (the process is then no longer whole). */
  constructor(
    private readonly count: number,
    private readonly deps: { cfg: Config; state: ProxyState; certs: CertificateManager; log: Logger },
    private readonly onFailure: (err: Error) => void,
  ) {}

  /** Start the threads with the state as it is now; from here on every change reaches them. */
  async start(): Promise<void> {
    const { cfg, state, certs, log } = this.deps;
    const api: HostApi = {
      certificate: (id) => certs.get(id),
      resolve: ({ network, ip }) => state.resolver?.fetch(network, ip) ?? Promise.resolve(),
      touch: ({ network, ip }) => state.resolver?.touch?.(network, ip),
      resolveService: ({ namespace, hostname }) => state.resolver?.fetchService?.(namespace, hostname) ?? Promise.resolve(),
      touchService: ({ namespace, hostname }) => state.resolver?.touchService?.(namespace, hostname),
    };
    for (let index = 1; index <= this.count; index++) {
      const workerData: ThreadData = { cfg, index, logLevel: log.level };
      const worker = new Worker(new URL('./thread.js', import.meta.url), { workerData });
      worker.on('error', (err) => this.failed(index, err));
      worker.on('exit', (code) => this.failed(index, new Error(`exited with code ${code}`)));
      const rpc = new Rpc<HostApi, ThreadApi>(worker, api, {
        beforeSend: () => this.flush(),
        onNotifyError: (method, err) => log.warn({ thread: index, method, err: err.message }, 'proxy thread request failed'),
      });
      this.threads.push({ worker, rpc });
    }
    this.queued.push(encodeOp({ op: 'replace', workloads: [...state.workloads.all()], services: [...state.services.all()], policies: [...state.policies.all()] }));
    state.mirror = (op) => {
      if (this.queued.length === 0) queueMicrotask(() => this.flush());
      this.queued.push(encodeOp(op));
    };
    certs.on('issued', this.onIssued).on('forgotten', this.onForgotten);
    await Promise.all(this.threads.map((t) => t.rpc.call('hello', null)));
  }

  /** Serve a pod on every thread. Each gets its own descriptor of the netns, so the caller may close `netnsFd` at will. */
  async addPod(key: string, info: WorkloadInfo, netnsFd: number | undefined, spoofSource: boolean): Promise<void> {
    await Promise.all(
      this.threads.map((t) => {
        const fd = netnsFd === undefined ? undefined : openSync(`/proc/self/fd/${netnsFd}`, 'r');
        return t.rpc.call('addPod', { key, info, netnsFd: fd, spoofSource });
      }),
    );
  }

  /** Close a pod's listeners and connections on every thread. */
  removePod(key: string): void {
    this.notifyAll('removePod', key);
  }

  /** Shutdown: every thread drains its pods (up to the deadline) and stops. */
  async drain(deadlineMs: number): Promise<boolean> {
    this.stopping = true;
    this.deps.certs.off('issued', this.onIssued).off('forgotten', this.onForgotten);
    this.deps.state.mirror = undefined;
    const results = this.dead ? [false] : await Promise.all(this.threads.map((t) => t.rpc.call('drain', deadlineMs).catch(() => false)));
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
    return results.every(Boolean);
  }

  setLogLevel(level: string): void {
    this.notifyAll('logLevel', level);
  }

  async openConnections(): Promise<number> {
    const counts = await Promise.all(this.threads.map((t) => t.rpc.call('openConnections', null)));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** The main thread's metrics plus every thread's, summed by series. */
  async metrics(main: Registry): Promise<Registry> {
    const threads = await Promise.all(this.threads.map((t) => t.rpc.call('metrics', null)));
    return AggregatorRegistry.aggregate([await main.getMetricsAsJSON(), ...threads]);
  }

  private notifyAll<K extends keyof ThreadApi & string>(method: K, arg: Parameters<ThreadApi[K]>[0]): void {
    for (const t of this.threads) t.rpc.notify(method, arg);
  }

  /** Post the queued state changes (before anything else is posted, so threads see changes in order). */
  private flush(): void {
    if (this.queued.length === 0) return;
    const ops = this.queued;
    this.queued = [];
    for (const t of this.threads) t.rpc.notify('ops', ops);
  }

  private failed(index: number, err: Error): void {
    if (this.stopping) return;
    this.stopping = this.dead = true;
    for (const t of this.threads) t.rpc.failAll(new Error(`proxy thread ${index} failed`));
    this.onFailure(new Error(`proxy thread ${index}: ${err.message}`));
  }
}
