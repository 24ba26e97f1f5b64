// The node agent's ZDS server: its side of the ztunnel <-> node agent protocol (Istio's
// cni/pkg/nodeagent/ztunnelserver.go plays this role); the lab uses it too. It listens on a unix SOCK_SEQPACKET socket; ztunnel
// connects and says ZdsHello, gets the snapshot (an Add with the netns fd per pod, then SnapshotSent), and then
// live Adds and Dels. Every request waits for its Ack before the next one goes out on that connection.
import { existsSync, unlinkSync } from 'node:fs';
import {
  closeFd, openNetns, seqpacketAccept, seqpacketListen, seqpacketRecv, seqpacketSend, watchReadable, type FdWatcher,
} from '../../ztunnel/native/index.js';
import { WorkloadRequestCodec, WorkloadResponseCodec, ZdsHelloCodec, type MessageInit, type WorkloadRequest } from '../../protos/index.js';

export interface ZdsPod {
  /** The uid the Add/Del carry (Istio sends the Kubernetes pod UID). */
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  /** The pod's network namespace: a path (/run/netns/<name>, /proc/<pid>/ns/net) or a named one (a lab Netns,
   *  found at /run/netns/<name>). Opened fresh for each Add. */
  netns: { name: string } | string;
}

/** One request as it went out and how it ended: for assertions on what ztunnel was told and what it answered. */
export interface ZdsEvent {
  /** 1-based number of the connection (in order of their ZdsHello). */
  conn: number;
  kind: 'add' | 'keep' | 'del' | 'snapshotSent' | 'raw';
  uid?: string;
  snapshot: boolean;
  outcome: 'ack' | 'timeout' | 'closed' | 'send-failed';
  /** The Ack's error ('' = ok) when outcome is 'ack'. */
  error?: string;
}

export interface ZdsServerOptions {
  /** How long one request waits for its Ack; after that the request fails and the connection is dropped. Default 10 s. */
  ackTimeoutMs?: number;
  /** Start listening in the constructor. Default true; with false, call listen() once the snapshot is known. */
  listen?: boolean;
  /** Called for every request as it ends (ack, timeout, closed, send failure). */
  onEvent?: (e: ZdsEvent) => void;
  /** Called when a connection says hello or goes away. */
  onConnection?: (change: { conn: number; up: boolean; why?: string }) => void;
  /** Keep at most this many entries in `events` and `closes` (oldest dropped). Default: all. */
  maxEvents?: number;
}

interface Pending {
  bytes: Uint8Array;
  /** fd to attach; `owned` ones are closed once sent or abandoned. */
  fd?: number;
  owned: boolean;
  kind: ZdsEvent['kind'];
  uid?: string;
  snapshot: boolean;
  resolve: (error: string) => void;
  reject: (e: Error) => void;
}

interface Conn {
  fd: number;
  watcher?: FdWatcher;
  /** Set on ZdsHello. */
  id?: number;
  queue: Pending[];
  inflight?: Pending;
  timer?: NodeJS.Timeout;
  closed: boolean;
}

const netnsPath = (n: { name: string } | string) => (typeof n === 'string' ? n : `/run/netns/${n.name}`);

export class ZdsServer {
  readonly events: ZdsEvent[] = [];
  /** Why each connection ended, in order (for failure messages). */
  readonly closes: string[] = [];
  /** Connections that completed the ZdsHello (also counts ones that are gone). */
  connections = 0;
  /** Snapshots fully acknowledged (SnapshotSent acked), over all connections. */
  snapshots = 0;
  private readonly pods = new Map<string, ZdsPod>();
  private readonly conns = new Set<Conn>();
  private active?: Conn;
  private listenFd?: number;
  private listenWatcher?: FdWatcher;
  private readonly ackTimeoutMs: number;
  private closed = false;

  constructor(readonly path: string, private readonly opts: ZdsServerOptions = {}) {
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 10_000;
    if (opts.listen ?? true) this.listen();
  }

  /** Start accepting ztunnel connections (replacing a stale socket file). Idempotent. */
  listen(): void {
    if (this.listenFd !== undefined || this.closed) return;
    if (existsSync(this.path)) unlinkSync(this.path);
    this.listenFd = seqpacketListen(this.path);
    this.listenWatcher = watchReadable(this.listenFd, () => this.acceptAll(), () => {}).unref();
  }

  /** Connections that said hello and are still open. */
  get liveConnections(): number {
    let n = 0;
    for (const c of this.conns) if (c.id !== undefined && !c.closed) n++;
    return n;
  }

  /** Whether a pod is in the set handed to ztunnel. */
  hasPod(uid: string): boolean {
    return this.pods.has(uid);
  }

  /** A ztunnel is connected and has said hello (the latest connection gets Adds). */
  get connected(): boolean {
    return this.active !== undefined && !this.active.closed;
  }

  /** uids of the pods this server currently hands to ztunnel. */
  podUids(): string[] {
    return [...this.pods.keys()];
  }

  /**
   * Start proxying for a pod. Sent as Add to the latest connection; resolves with the Ack's error ('' = ok),
   * or undefined when no ztunnel is connected (the pod is then in the next snapshot).
   */
  addPod(pod: ZdsPod): Promise<string | undefined> {
    this.pods.set(pod.uid, pod);
    const c = this.current();
    if (!c) return Promise.resolve(undefined);
    return this.enqueueAdd(c, pod, false);
  }

  /**
   * Stop proxying for a pod. Like Istio, the Del goes to every connected ztunnel (an old one may still hold the
   * pod during a restart); resolves with the latest connection's Ack error, or undefined when none is connected.
   */
  delPod(uid: string): Promise<string | undefined> {
    this.pods.delete(uid);
    const bytes = WorkloadRequestCodec.encode({ payload: 'del', del: { uid } });
    let latest: Promise<string> | undefined;
    for (const c of this.conns) {
      if (c.id === undefined || c.closed) continue;
      const p = this.enqueue(c, { bytes, owned: false, kind: 'del', uid, snapshot: false });
      if (c === this.active) latest = p;
      else p.catch(() => {});
    }
    return latest ?? Promise.resolve(undefined);
  }

  /** Send any WorkloadRequest (with an fd attached if given) to the latest connection. */
  request(req: MessageInit<WorkloadRequest>, fd?: number): Promise<string> {
    return this.send(WorkloadRequestCodec.encode(req), fd, req.payload ?? 'raw');
  }

  /** Send arbitrary bytes as one packet (malformed-input tests); resolves with the Ack's error. The fd stays the caller's. */
  sendRaw(bytes: Uint8Array, fd?: number): Promise<string> {
    return this.send(bytes, fd, 'raw');
  }

  /** Wait (bounded) until `n` connections in total have said hello. */
  waitConnected(n = 1, timeoutMs = 10_000): Promise<void> {
    return this.waitFor(`ZDS connection #${n} on ${this.path}`, () => this.connections >= n && this.connected, timeoutMs);
  }

  /** Wait (bounded) until `n` snapshots in total have been acknowledged. */
  waitSynced(n = 1, timeoutMs = 10_000): Promise<void> {
    return this.waitFor(`ZDS snapshot #${n} on ${this.path}`, () => this.snapshots >= n, timeoutMs);
  }

  /** Drop the current connection (and any older ones), e.g. to make ztunnel reconnect. */
  disconnect(): void {
    for (const c of [...this.conns]) this.closeConn(c, 'disconnected by the lab');
  }

  /** Close every connection and fd, stop listening and remove the socket path. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.disconnect();
    this.listenWatcher?.close();
    if (this.listenFd !== undefined) {
      try {
        closeFd(this.listenFd);
      } catch {}
      try {
        unlinkSync(this.path);
      } catch {}
    }
  }

  // ---------------------------------------------------------------- internals

  private current(): Conn | undefined {
    return this.connected ? this.active : undefined;
  }

  private send(bytes: Uint8Array, fd: number | undefined, kind: ZdsEvent['kind']): Promise<string> {
    const c = this.current();
    if (!c) return Promise.reject(new Error(`no ztunnel connected to ${this.path}`));
    return this.enqueue(c, { bytes, fd, owned: false, kind, snapshot: false });
  }

  private enqueueAdd(c: Conn, pod: ZdsPod, snapshot: boolean): Promise<string> {
    let fd: number;
    try {
      fd = openNetns(netnsPath(pod.netns));
    } catch (e) {
      if (snapshot) {
        // Istio: a pod whose netns cannot be opened is kept (Keep, no fd) rather than dropped by the snapshot.
        const bytes = WorkloadRequestCodec.encode({ payload: 'keep', keep: { uid: pod.uid } });
        return this.enqueue(c, { bytes, owned: false, kind: 'keep', uid: pod.uid, snapshot });
      }
      return Promise.reject(e as Error);
    }
    const bytes = WorkloadRequestCodec.encode({
      payload: 'add',
      add: { uid: pod.uid, workloadInfo: { name: pod.name, namespace: pod.namespace, serviceAccount: pod.serviceAccount } },
    });
    return this.enqueue(c, { bytes, fd, owned: true, kind: 'add', uid: pod.uid, snapshot });
  }

  private enqueue(c: Conn, p: Omit<Pending, 'resolve' | 'reject'>): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const item: Pending = { ...p, resolve, reject };
      if (c.closed) {
        this.finish(c, item, 'closed');
        return;
      }
      c.queue.push(item);
      this.pump(c);
    });
  }

  private pump(c: Conn): void {
    if (c.closed || c.inflight) return;
    const p = c.queue.shift();
    if (!p) return;
    try {
      seqpacketSend(c.fd, p.bytes, p.fd);
    } catch (e) {
      this.finish(c, p, 'send-failed', undefined, e as Error);
      this.closeConn(c, `send failed: ${(e as Error).message}`);
      return;
    }
    if (p.owned && p.fd !== undefined) {
      closeFd(p.fd); // the peer has its own copy now
      p.fd = undefined;
    }
    c.inflight = p;
    c.timer = setTimeout(() => {
      c.inflight = undefined;
      this.finish(c, p, 'timeout', undefined, new Error(`no ZDS ack for ${p.kind}${p.uid ? ` ${p.uid}` : ''} within ${this.ackTimeoutMs} ms`));
      this.closeConn(c, 'ack timeout');
    }, this.ackTimeoutMs);
  }

  private finish(c: Conn, p: Pending, outcome: ZdsEvent['outcome'], error?: string, err?: Error): void {
    if (p.owned && p.fd !== undefined) {
      try {
        closeFd(p.fd);
      } catch {}
      p.fd = undefined;
    }
    const ev: ZdsEvent = { conn: c.id ?? 0, kind: p.kind, uid: p.uid, snapshot: p.snapshot, outcome, error };
    this.record(this.events, ev);
    try {
      this.opts.onEvent?.(ev);
    } catch {}
    if (outcome === 'ack') {
      if (p.kind === 'snapshotSent' && p.snapshot) this.snapshots++;
      p.resolve(error ?? '');
    } else {
      p.reject(err ?? new Error(`ZDS connection closed before the ack for ${p.kind}${p.uid ? ` ${p.uid}` : ''}`));
    }
  }

  private record<T>(list: T[], item: T): void {
    list.push(item);
    const max = this.opts.maxEvents;
    if (max !== undefined && list.length > max) list.splice(0, list.length - max);
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number;
      try {
        fd = seqpacketAccept(this.listenFd!);
      } catch {
        return;
      }
      if (fd < 0) return;
      const c: Conn = { fd, queue: [], closed: false };
      this.conns.add(c);
      c.watcher = watchReadable(fd, () => this.readAll(c), (e) => this.closeConn(c, e.message)).unref();
    }
  }

  private readAll(c: Conn): void {
    while (!c.closed) {
      let msg;
      try {
        msg = seqpacketRecv(c.fd);
      } catch (e) {
        this.closeConn(c, `recv failed: ${(e as Error).message}`);
        return;
      }
      if (!msg) return;
      if (msg.fd !== undefined) closeFd(msg.fd); // ztunnel never sends fds
      if (msg.eof) {
        this.closeConn(c, 'peer closed');
        return;
      }
      if (c.id === undefined) this.onHello(c, msg.data);
      else this.onResponse(c, msg.data);
    }
  }

  private onHello(c: Conn, data: Uint8Array): void {
    let version: string | number | undefined;
    try {
      version = ZdsHelloCodec.decode(data).version;
    } catch {}
    if (version !== 'V1' && version !== 1) {
      this.closeConn(c, `bad ZdsHello (version ${String(version)})`);
      return;
    }
    c.id = ++this.connections;
    this.active = c; // Istio: the latest connection gets the Adds
    try {
      this.opts.onConnection?.({ conn: c.id, up: true });
    } catch {}
    for (const pod of this.pods.values()) this.enqueueAdd(c, pod, true).catch(() => {});
    const bytes = WorkloadRequestCodec.encode({ payload: 'snapshotSent', snapshotSent: {} });
    this.enqueue(c, { bytes, owned: false, kind: 'snapshotSent', snapshot: true }).catch(() => {});
  }

  private onResponse(c: Conn, data: Uint8Array): void {
    const p = c.inflight;
    let error: string;
    try {
      const r = WorkloadResponseCodec.decode(data);
      if (!r.ack) throw new Error('WorkloadResponse without ack');
      error = r.ack.error;
    } catch (e) {
      this.closeConn(c, `bad WorkloadResponse: ${(e as Error).message}`);
      return;
    }
    if (!p) {
      this.closeConn(c, 'unsolicited WorkloadResponse');
      return;
    }
    clearTimeout(c.timer);
    c.inflight = undefined;
    this.finish(c, p, 'ack', error);
    this.pump(c);
  }

  private closeConn(c: Conn, why: string): void {
    if (c.closed) return;
    c.closed = true;
    this.record(this.closes, `connection ${c.id ?? '(before hello)'}: ${why}`);
    clearTimeout(c.timer);
    c.watcher?.close();
    try {
      closeFd(c.fd);
    } catch {}
    this.conns.delete(c);
    if (this.active === c) {
      // Istio: the latest remaining connection takes over the Adds.
      this.active = undefined;
      for (const o of this.conns) if (o.id !== undefined && !o.closed && (this.active?.id ?? 0) < o.id) this.active = o;
    }
    const pending = [...(c.inflight ? [c.inflight] : []), ...c.queue.splice(0)];
    c.inflight = undefined;
    for (const p of pending) this.finish(c, p, 'closed');
    if (c.id !== undefined) {
      try {
        this.opts.onConnection?.({ conn: c.id, up: false, why });
      } catch {}
    }
  }

  private async waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (this.closed) throw new Error(`ZDS server closed while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
