// Copies bytes both ways between two duplex streams, honouring half-close, until both directions are done.
//
// A splice lives as long as its connection, and ztunnel holds thousands of idle ones: the state is one object, and
// the event listeners are shared functions that find it through `spliceOf` (no closures or once() wrappers per
// connection).
import type { Http2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';

/**
 * Abort one side: TCP RST for sockets, an immediate RST_STREAM for tunnels. (Http2Stream.close(code) would
 * first send END_STREAM, which the peer would take for a clean half-close.)
 */
export function abort(d: Duplex): void {
  const sock = d as Duplex & { resetAndDestroy?: () => void };
  // libuv cannot reset a socket that already sent FIN (EINVAL, and the socket would stay open): just close it then.
  if (typeof sock.resetAndDestroy === 'function') return void (d.writableEnded ? d.destroy() : sock.resetAndDestroy());
  d.destroy(new Error('connection aborted'));
}

/** Closed by RST_STREAM (HTTP/2) rather than a clean end. */
const wasReset = (d: Duplex): boolean => {
  const rst = (d as Partial<Http2Stream>).rstCode;
  return rst !== undefined && rst !== 0;
};

/**
 * The 'error' listener for a stream that is not spliced yet (its failure shows as 'close' to whoever waits for it);
 * splice() puts its own in its place.
 */
export function ignoreUntilSpliced(): void {}

const spliceOf = new WeakMap<Duplex, Splice>();

// Per-side flags (side A in the low bits, side B shifted by one).
const ENDED = 1;
const BATCHING = 4;

/**
 * Two streams spliced together. Subclasses start it with `splice(a, b)` and learn in `spliced()` when both sides
 * have closed, with the first error if one side failed (both are then destroyed).
 */
export abstract class Splice {
  private a?: Duplex;
  private b?: Duplex;
  private open = 2;
  private flags = 0;
  private firstError?: Error;

  protected abstract spliced(error: Error | undefined): void;

  /** splice() has run: from then on it reports the end through spliced(); before, the subclass must end it itself. */
  protected get isSpliced(): boolean {
    return this.a !== undefined;
  }

  protected splice(a: Duplex, b: Duplex): void {
    this.a = a;
    this.b = b;
    spliceOf.set(a, this);
    spliceOf.set(b, this);
    for (const d of [a, b]) {
      d.on('end', Splice.onEnd);
      d.on('close', Splice.onClose);
      d.off('error', ignoreUntilSpliced);
      d.on('error', Splice.onError);
    }
    a.on('data', Splice.onData);
    b.on('drain', Splice.onDrain);
    b.on('data', Splice.onData);
    a.on('drain', Splice.onDrain);
    // A 'data' listener alone does not restart a stream paused while the upstream was connecting.
    a.resume();
    b.resume();
  }

  private other(d: Duplex): Duplex {
    return d === this.a ? this.b! : this.a!;
  }

  private bit(d: Duplex, flag: number): number {
    return d === this.a ? flag : flag << 1;
  }

  private static onEnd(this: Duplex): void {
    const s = spliceOf.get(this)!;
    s.flags |= s.bit(this, ENDED);
    // Forward a half-close, but only once we know it was not a reset: Node's HTTP/2 emits 'end' just before
    // 'aborted' when RST_STREAM arrives, and a FIN sent then could not be taken back.
    setImmediate(Splice.forwardEnd, s, this);
  }

  private static forwardEnd(s: Splice, from: Duplex): void {
    const to = s.other(from);
    if (!wasReset(from) && !(from as Partial<Http2Stream>).aborted && !to.destroyed) to.end();
  }

  private static onClose(this: Duplex): void {
    const s = spliceOf.get(this)!;
    const other = s.other(this);
    // Closed by a reset, or without a clean end of its readable side: the other side must not wait forever.
    if ((!(s.flags & s.bit(this, ENDED)) || wasReset(this)) && !other.destroyed) {
      const rst = (this as Partial<Http2Stream>).rstCode;
      s.firstError ??= new Error(rst ? `stream reset by peer (code ${rst})` : 'peer closed abruptly');
      abort(other);
    }
    if (--s.open === 0) s.spliced(s.firstError);
  }

  /** The peer cannot get the rest of the bytes: abort it too (TCP RST / RST_STREAM) rather than pretend a clean end. */
  private static onError(this: Duplex, err: Error): void {
    const s = spliceOf.get(this)!;
    s.firstError ??= err;
    const other = s.other(this);
    if (!other.destroyed) abort(other);
  }

  /**
   * Copy into the other side, coalescing every chunk that arrives in one event-loop turn into one write (writev).
   * HTTP/2 hands over data in pieces cut at TLS record and frame boundaries (16 KiB, then a few bytes, ...); writing
   * each piece would cost a syscall and a TCP segment of its own. Backpressure is applied after the batch is flushed.
   */
  private static onData(this: Duplex, chunk: Buffer): void {
    const s = spliceOf.get(this)!;
    const to = s.other(this);
    if (to.destroyed || to.writableEnded) return;
    const batching = s.bit(this, BATCHING);
    if (!(s.flags & batching)) {
      s.flags |= batching;
      to.cork();
      setImmediate(Splice.flush, s, this);
    }
    to.write(chunk);
  }

  private static flush(s: Splice, from: Duplex): void {
    s.flags &= ~s.bit(from, BATCHING);
    const to = s.other(from);
    to.uncork();
    if (to.writableNeedDrain) from.pause();
  }

  /** `this` drained: the side that writes into it may flow again. */
  private static onDrain(this: Duplex): void {
    spliceOf.get(this)!.other(this).resume();
  }
}
