// ztunnel's loggers: JSON lines on stdout (pino), the same on every thread.
import { writeSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * At most this many bytes per write(2), cut at line ends: a larger write to a pipe (a container's stdout) may be
 * interleaved with another thread's, which would mix two lines.
 */
const PIPE_BUF = 4096;
/** A turn that logs more than this writes as it goes. */
const MAX_HELD = 64 * 1024;

const pause = new Int32Array(new SharedArrayBuffer(4));
let stdoutGone = false;

/**
 * The whole chunk to stdout, synchronously; a full non-blocking pipe (EAGAIN) is waited out as a blocking one would be.
 * If stdout is gone (EPIPE, or any other error), logging stops, as with pino's own destination: a log must not take
 * the proxy down.
 */
function writeStdout(chunk: string): void {
  if (stdoutGone) return;
  const b = Buffer.from(chunk);
  for (let off = 0; off < b.length; ) {
    try {
      off += writeSync(1, b, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return void (stdoutGone = true);
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

/**
 * Lines held until the end of the event-loop turn, then written in as few writes as PIPE_BUF allows. A write per
 * access-log line cost about 4% of a ztunnel's CPU at a high connection rate (one line per connection, --cpu-prof); an
 * asynchronous destination costs more still (a thread-pool write per line). sonic-boom, pino's own destination, can
 * hold lines too, but writes all it holds only together with an fsync.
 */
export class TurnBatchedWriter implements DestinationStream {
  private readonly ready: string[] = [];
  private readyBytes = 0;
  private current = '';
  private currentBytes = 0;
  private scheduled = false;

  /** `out`: where chunks go (stdout; a test passes its own). */
  constructor(private readonly out: (chunk: string) => void = writeStdout) {}

  write(line: string): void {
    this.hold(line);
    if (this.readyBytes >= MAX_HELD) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Write this line at once, after what is held. */
  writeNow(line: string): void {
    this.hold(line);
    this.flush();
  }

  /** Write what is held now, synchronously (pino's logger.flush(cb) calls this too). */
  readonly flush = (cb?: () => void): void => {
    this.scheduled = false;
    this.cut();
    for (const chunk of this.ready.splice(0)) this.out(chunk);
    this.readyBytes = 0;
    cb?.();
  };

  private hold(line: string): void {
    const n = Buffer.byteLength(line);
    if (this.currentBytes + n > PIPE_BUF) this.cut();
    this.current += line;
    this.currentBytes += n;
  }

  private cut(): void {
    if (this.currentBytes === 0) return;
    this.ready.push(this.current);
    this.readyBytes += this.currentBytes;
    this.current = '';
    this.currentBytes = 0;
  }
}

const destinations = new Set<TurnBatchedWriter>();
let exitHook = false;

/**
 * The access log (a line per connection) is held until the end of the turn. Any other line is written at once, after
 * the access-log lines held before it, so the order stays and a line is out before what it reports can be seen.
 */
export function createLoggers(level: string, base: Record<string, unknown>): { log: Logger; accessLog: Logger } {
  const held = new TurnBatchedWriter();
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
