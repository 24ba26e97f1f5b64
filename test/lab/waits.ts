// Bounded waits the end-to-end tests share.
import type net from 'node:net';

/** `p`, or a rejection naming `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Write `msg` and wait (bounded) until the same bytes came back. */
export function echoes(sock: net.Socket, msg: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const done = () => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('close', onClose);
      sock.off('end', onClose);
    };
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.length >= msg.length) done(), resolve(got);
    };
    const onClose = () => (done(), reject(new Error(`closed before ${JSON.stringify(msg)} came back (got ${JSON.stringify(got)})`)));
    const timer = setTimeout(() => (done(), reject(new Error(`no echo of ${JSON.stringify(msg)} within ${timeoutMs} ms (got ${JSON.stringify(got)})`))), timeoutMs);
    sock.on('data', onData);
    sock.once('close', onClose);
    sock.once('end', onClose);
    if (sock.destroyed) return onClose();
    if (sock.writable) sock.write(msg);
  });
}
