// ztunnel's logger: JSON lines on stdout (pino), the same on every thread.
import { pino, type Logger } from 'pino';

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export function createLogger(level: string, base: Record<string, unknown>): Logger {
  // Asynchronous stdout: writes made while one is in flight go out together, so access logs under a connection storm do
  // not block the event loop on one write(2) each. pino flushes what is left when the process exits.
  return pino({ level: LEVELS.includes(level) ? level : 'info', base }, pino.destination({ dest: 1, sync: false }));
}

/** Write out what the logger still holds, now: a proxy thread is terminated right after its drain, and pino's own
 *  flush(cb) does not wait for an asynchronous destination's queue. */
export function flushLogSync(log: Logger): void {
  const dest = (log as unknown as Record<symbol, { flushSync?(): void }>)[pino.symbols.streamSym];
  dest?.flushSync?.();
}
