// ztunnel's loggers: JSON lines on stdout (pino), the same on every thread.
import { writeSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * At most this many bytes per write(2), cut at line ends: a larger write to a pipe (a container's stdout) may be
 * interleaved with another thread's, which would mix two lines.
 */
const PIPE_BUF = 4096;
/** More than this held is written at once. */
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

/** How long an access-log line may be held before it is written. */
export const HOLD_MS = 100;

/**
 * Lines held for up to HOLD_MS (or until MAX_HELD bytes are held), then written in as few writes as PIPE_BUF allows.
 * A write per line cost about 4% of a ztunnel's CPU at a high connection rate (one line per connection, --cpu-prof),
 * and a write per event-loop turn still about 2%: at that rate most turns finish one connection. An asynchronous
 * destination costs more still (a thread-pool write per line). sonic-boom, pino's own destination, can hold lines
 * too, but writes all it holds only together with an fsync.
 */
export class HeldLinesWriter implements DestinationStream {
  private readonly ready: string[] = [];
  private readyBytes = 0;
  private current = '';
  private currentBytes = 0;
  private timer: NodeJS.Timeout | undefined;

  /** `out`: where chunks go (stdout; a test passes its own); `holdMs`: how long a line may wait. */
  constructor(
    private readonly out: (chunk: string) => void = writeStdout,
    private readonly holdMs = HOLD_MS,
  ) {}

  write(line: string): void {
    this.hold(line);
    if (this.readyBytes >= MAX_HELD) this.flush();
    // Unref'd: held lines must not keep the process alive; the exit hook writes them.
    else this.timer ??= setTimeout(this.flush, this.holdMs).unref();
  }

  /** Write this line at once, after what is held. */
  writeNow(line: string): void {
    this.hold(line);
    this.flush();
  }

  /** Write what is held now, synchronously (pino's logger.flush(cb) calls this too). */
  readonly flush = (cb?: () => void): void => {
    clearTimeout(this.timer);
    this.timer = undefined;
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

const destinations = new Set<HeldLinesWriter>();
let exitHook = false;

/**
 * The access log (a line per connection) is held for up to HOLD_MS. Any other line is written at once, after the
 * access-log lines held before it, so the order stays and a line is out before what it reports can be seen.
 */
export function createLoggers(level: string, base: Record<string, unknown>): { log: Logger; accessLog: Logger } {
  const held = new HeldLinesWriter();
  destinations.add(held);
  if (!exitHook) {
    exitHook = true;
    // process.exit() and uncaught errors end the process before held lines are due.
    process.on('exit', () => {
      for (const d of destinations) d.flush();
    });
  }
  const at = LEVELS.includes(level) ? level : 'info';
  const direct = { write: (line: string) => held.writeNow(line), flush: held.flush };
  return { log: pino({ level: at, base }, direct), accessLog: pino({ level: at, base: { ...base, scope: 'access' } }, held) };
}
