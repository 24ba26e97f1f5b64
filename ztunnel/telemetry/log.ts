// ztunnel's logger: JSON lines on stdout (pino), the same on every thread.
import { pino, type DestinationStream, type Logger } from 'pino';

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * Lines logged in one event-loop turn go out together in one synchronous write at the end of that turn. A write per
 * line cost about 4% of a ztunnel's CPU at a high connection rate (one access-log line per connection, --cpu-prof); an
 * asynchronous destination costs more still (a thread-pool write per line). Nothing waits longer than the turn.
 */
class TurnBatchedStdout implements DestinationStream {
  private scheduled = false;
  // sonic-boom holds lines until flush() unless a turn logs minLength, and writes up to maxWrite at once.
  private readonly out = pino.destination({ dest: 1, sync: true, minLength: 64 * 1024, maxWrite: 1024 * 1024 });

  write(line: string): void {
    this.out.write(line);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flush);
  }

  /** Write what is held now, synchronously (pino's logger.flush(cb) calls this too). */
  readonly flush = (cb?: () => void): void => {
    this.scheduled = false;
    this.out.flush();
    cb?.();
  };
}

const destinations = new Set<TurnBatchedStdout>();
let exitHook = false;

export function createLogger(level: string, base: Record<string, unknown>): Logger {
  const dest = new TurnBatchedStdout();
  destinations.add(dest);
  if (!exitHook) {
    exitHook = true;
    // Also on process.exit() and uncaught errors, which end the process before the turn does.
    process.on('exit', () => {
      for (const d of destinations) d.flush();
    });
  }
  return pino({ level: LEVELS.includes(level) ? level : 'info', base }, dest);
}
