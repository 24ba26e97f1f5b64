// Pooled HBONE connections: streams are multiplexed on shared HTTP/2 connections per pool key.
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { MAX_STREAMS_PER_CONNECTION } from './settings.js';

export interface PoolKey {
  srcIdentity: string;
  expectedIdentities: readonly string[];
  dstIp: string;
  dstPort: number;
  srcIp: string;
}

export class HboneStatusError extends Error {
  constructor(readonly status: number) {
    super(`HBONE CONNECT answered ${status}`);
  }
}

interface Conn {
  /** Its pool key (poolKeyString). */
  k: string;
  /** Frees a reserved slot when a stream closes: one listener per pooled connection, shared by its streams. */
  onStreamClose: () => void;
  session?: ClientHttp2Session;
  ready: Promise<ClientHttp2Session>;
  reserved: number;
  dead: boolean;
  idleTimer?: NodeJS.Timeout;
  pingTimer?: NodeJS.Timeout;
}

export interface PoolOptions {
  idleTimeoutMs?: number;
  pingIntervalMs?: number;
  maxStreams?: number;
}

// Node keeps a stream's request headers for its whole life. An object is first copied into a dictionary-mode object
// (~300 B per open tunnel); a flat [name, value, ...] array (Node 22.17 / 24 and later) is kept as it is.
const [NODE_MAJOR = 0, NODE_MINOR = 0] = process.versions.node.split('.').map(Number);
const RAW_HEADERS = NODE_MAJOR >= 24 || (NODE_MAJOR === 22 && NODE_MINOR >= 17);

/** The same header fields as a flat [name, value, ...] list, in the object's order (a list value: one field each). */
export function flatHeaders(headers: OutgoingHttpHeaders): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, String(value));
  }
  return out;
}

export const poolKeyString = (k: PoolKey): string =>
  `${k.srcIdentity}|${[...k.expectedIdentities].sort().join(',')}|${k.dstIp}|${k.dstPort}|${k.srcIp}`;

export class HbonePool {
  private readonly conns = new Map<string, Conn[]>();
  private readonly idleMs: number;
  private readonly pingMs: number;
  private readonly maxStreams: number;

  constructor(
    private readonly dial: (key: PoolKey) => Promise<ClientHttp2Session>,
    opts: PoolOptions = {},
  ) {
    this.idleMs = opts.idleTimeoutMs ?? 5 * 60_000;
    this.pingMs = opts.pingIntervalMs ?? 10_000;
    this.maxStreams = opts.maxStreams ?? MAX_STREAMS_PER_CONNECTION;
  }

  /** Number of live HTTP/2 connections (for tests and metrics). */
  get connectionCount(): number {
    let n = 0;
    for (const list of this.conns.values()) n += list.filter((c) => !c.dead).length;
    return n;
  }

  /** Open a CONNECT stream; resolves after a 200 response, rejects with HboneStatusError otherwise. */
  async connect(key: PoolKey, headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream> {
    const conn = this.reserve(poolKeyString(key), key);
    let stream: ClientHttp2Stream;
    try {
      const session = await conn.ready;
      stream = session.request(RAW_HEADERS ? flatHeaders(headers) : headers, { endStream: false });
    } catch (err) {
      this.release(conn);
      throw err;
    }
    // From here the stream holds its slot until it closes, whether it opens or not.
    stream.on('close', conn.onStreamClose);
    return new Promise<ClientHttp2Stream>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      // A stream the peer cancels (or whose session dies) before answering emits neither 'error' nor 'response'.
      const onClose = () => reject(new Error(`HBONE stream closed before a response (code ${stream.rstCode ?? 0})`));
      stream.once('error', onError);
      stream.once('close', onClose);
      stream.once('response', (h) => {
        // Answered: neither listener is needed any more (the Error at every later close was 3% of a ztunnel's CPU).
        stream.off('error', onError);
        stream.off('close', onClose);
        const status = Number(h[':status']);
        if (status === 200) return resolve(stream);
        stream.resume(); // drain any body so the stream can close
        stream.close();
        reject(new HboneStatusError(status));
      });
    });
  }

  /** Gracefully close every connection (GOAWAY); streams in flight finish. */
  close(): void {
    for (const list of this.conns.values()) for (const c of list) this.retire(c, true);
    this.conns.clear();
  }

  private reserve(k: string, key: PoolKey): Conn {
    let list = this.conns.get(k);
    if (!list) this.conns.set(k, (list = []));
    let conn = list.find((c) => !c.dead && c.reserved < this.maxStreams);
    if (!conn) {
      const c: Conn = { k, onStreamClose: () => this.release(c), reserved: 0, dead: false, ready: this.dial(key) };
      c.ready.then(
        (s) => this.adopt(c, s),
        () => this.drop(c),
      );
      list.push(c);
      conn = c;
    }
    conn.reserved++;
    if (conn.idleTimer) clearTimeout(conn.idleTimer), (conn.idleTimer = undefined);
    return conn;
  }

  private adopt(c: Conn, s: ClientHttp2Session): void {
    c.session = s;
    if (c.dead) return void s.close();
    // GOAWAY from the peer: no new streams here, running ones finish.
    s.once('goaway', () => this.drop(c));
    s.once('close', () => this.drop(c));
    s.on('error', () => this.drop(c));
    c.pingTimer = setInterval(() => {
      if (!s.destroyed) s.ping((err) => err && !s.destroyed && s.destroy(err));
    }, this.pingMs);
    c.pingTimer.unref();
    if (c.reserved === 0) this.startIdle(c);
  }

  private release(c: Conn): void {
    c.reserved--;
    if (c.reserved === 0 && c.session) this.startIdle(c);
  }

  private startIdle(c: Conn): void {
    if (c.idleTimer) clearTimeout(c.idleTimer);
    c.idleTimer = setTimeout(() => {
      if (c.reserved === 0) {
        this.drop(c);
        this.retire(c, true);
      }
    }, this.idleMs);
    c.idleTimer.unref();
  }

  private drop(c: Conn): void {
    c.dead = true;
    if (c.pingTimer) clearInterval(c.pingTimer);
    if (c.idleTimer) clearTimeout(c.idleTimer);
    const list = this.conns.get(c.k);
    if (!list) return;
    const i = list.indexOf(c);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.conns.delete(c.k);
  }

  private retire(c: Conn, graceful: boolean): void {
    c.dead = true;
    if (c.pingTimer) clearInterval(c.pingTimer);
    if (c.idleTimer) clearTimeout(c.idleTimer);
    const s = c.session;
    if (s && !s.destroyed) graceful ? s.close() : s.destroy();
  }
}
