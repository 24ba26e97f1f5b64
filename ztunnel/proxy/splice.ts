// Copies bytes both ways between two duplex streams, honouring half-close, until both directions are done.
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

/** Resolves when both sides have closed; with the first error if one side failed (both are then destroyed). */
export function splice(a: Duplex, b: Duplex): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let firstError: Error | undefined;
    let open = 2;
    const ended = new Set<Duplex>();
    a.once('end', () => ended.add(a));
    b.once('end', () => ended.add(b));
    const onClose = (self: Duplex, other: Duplex) => () => {
      // Closed by a reset, or without a clean end of its readable side: the other side must not wait forever.
      const rst = (self as Partial<Http2Stream>).rstCode;
      if ((!ended.has(self) || (rst !== undefined && rst !== 0)) && !other.destroyed) {
        firstError ??= new Error(rst ? `stream reset by peer (code ${rst})` : 'peer closed abruptly');
        abort(other);
      }
      if (--open === 0) resolve(firstError);
    };
    // The peer cannot get the rest of the bytes: abort it too (TCP RST / RST_STREAM) rather than pretend a clean end.
    const onError = (other: Duplex) => (err: Error) => {
      firstError ??= err;
      if (!other.destroyed) abort(other);
    };
    a.once('close', onClose(a, b));
    b.once('close', onClose(b, a));
    a.on('error', onError(b));
    b.on('error', onError(a));
    // Forward a half-close, but only once we know it was not a reset: Node's HTTP/2 emits 'end' just before
    // 'aborted' when RST_STREAM arrives, and a FIN sent then could not be taken back.
    const forwardEnd = (from: Duplex, to: Duplex) =>
      from.once('end', () =>
        setImmediate(() => {
          const rst = (from as Partial<Http2Stream>).rstCode;
          if (!(rst !== undefined && rst !== 0) && !(from as Partial<Http2Stream>).aborted && !to.destroyed) to.end();
        }),
      );
    pump(a, b);
    pump(b, a);
    forwardEnd(a, b);
    forwardEnd(b, a);
  });
}

/**
 * Copy `from`'s data into `to`, coalescing every chunk that arrives in one event-loop turn into one write (writev).
 * HTTP/2 hands over data in pieces cut at TLS record and frame boundaries (16 KiB, then a few bytes, ...); writing
 * each piece would cost a syscall and a TCP segment of its own. Backpressure is applied after the batch is flushed.
 */
function pump(from: Duplex, to: Duplex): void {
  let batching = false;
  const flush = () => {
    batching = false;
    to.uncork();
    if (to.writableNeedDrain) from.pause();
  };
  from.on('data', (chunk: Buffer) => {
    if (to.destroyed || to.writableEnded) return;
    if (!batching) {
      batching = true;
      to.cork();
      setImmediate(flush);
    }
    to.write(chunk);
  });
  to.on('drain', () => from.resume());
  from.resume(); // a 'data' listener alone does not restart a stream paused while the upstream was connecting
}
