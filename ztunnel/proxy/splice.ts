// Copies bytes both ways between two duplex streams, honouring half-close, until both directions are done.
import type { Duplex } from 'node:stream';

/** Resolves when both sides have closed; with the first error if one side failed (both are then destroyed). */
export function splice(a: Duplex, b: Duplex): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let firstError: Error | undefined;
    let open = 2;
    const ended = new Set<Duplex>();
    a.once('end', () => ended.add(a));
    b.once('end', () => ended.add(b));
    const onClose = (self: Duplex, other: Duplex) => () => {
      // Closed without a clean end of its readable side (reset, abort): the other side must not wait forever.
      if (!ended.has(self) && !other.destroyed) abort(other);
      if (--open === 0) resolve(firstError);
    };
    const abort = (other: Duplex) => {
      const sock = other as Duplex & { resetAndDestroy?: () => void };
      if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
      else other.destroy();
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
    // pipe() ends the destination when the source ends: that is the half-close we forward.
    a.pipe(b);
    b.pipe(a);
  });
}
