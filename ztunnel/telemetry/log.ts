// ztunnel's loggers: JSON lines on stdout (pino), the same on every thread.
import { pino, type DestinationStream, type Logger } from 'pino';

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * Lines held until the end of the event-loop turn, then written together in one synchronous write. A write per
 * access-log line cost about 4% of a ztunnel's CPU at a high connection rate (one line per connection, --cpu-prof); an
 * asynchronous destination costs more still (a thread-pool write per line).
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

  /** Write this line at once, after what is held. */
  writeNow(line: string): void {
    this.out.write(line);
    this.flush();
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

/**
 * The access log (a line per connection) is held until the end of the turn. Any other line is written at once, after
 * the access-log lines held before it, so the order stays and a line is out before what it reports can be seen.
 */
export function createLoggers(level: string, base: Record<string, unknown>): { log: Logger; accessLog: Logger } {
  const held = new TurnBatchedStdout();
  destinations.add(held);
  if (!exitHook) {
    exitHook = true;
    // process.exit() and uncaught errors end the process before the turn does.
    process.on('exit', () => {
      for (const d of destinations) d.flush();
    });
  }
  const at = LEVELS.includes(level) ? level : 'info';
  const direct = { write: (line: string) => held.writeNow(line), flush: held.flush };
  return { log: pino({ level: at, base }, direct), accessLog: pino({ level: at, base: { ...base, scope: 'access' } }, held) };
}
