// The ztunnel end of ZDS: connects to the node agent's unix seqpacket socket, says hello, and answers every
// request with an Ack (error text on failure). Reconnects with backoff when the agent goes away.
import type { Logger } from 'pino';
import { closeFdQuietly, seqpacketConnect, seqpacketRecv, seqpacketSend, watchReadable, type FdWatcher } from '../native/index.js';
import { encodeAck, encodeHello, parseZdsPacket, type ZdsMessage } from './zds-protocol.js';

export interface ZdsHandler {
  /** A new connection: the agent will send a fresh snapshot. */
  connected(): void;
  /** Act on a message; a rejection is sent back as the Ack's error. */
  handle(msg: ZdsMessage): Promise<void>;
}

const BACKOFF_MIN_MS = 10;
const BACKOFF_MAX_MS = 15_000;

export class ZdsClient {
  private fd = -1;
  private watcher?: FdWatcher;
  private backoffMs = BACKOFF_MIN_MS;
  private timer?: NodeJS.Timeout;
  private closed = false;
  /** Messages are handled one at a time, in order, as the agent expects. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly handler: ZdsHandler,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.connect();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.disconnect();
  }

  private connect(): void {
    if (this.closed) return;
    try {
      this.fd = seqpacketConnect(this.path);
      seqpacketSend(this.fd, encodeHello());
    } catch (err) {
      this.disconnect();
      this.log.debug({ path: this.path, err: (err as Error).message, retryMs: this.backoffMs }, 'ZDS connect failed');
      this.timer = setTimeout(() => this.connect(), this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
      return;
    }
    this.log.info({ path: this.path }, 'connected to the node agent (ZDS)');
    this.handler.connected();
    const fd = this.fd;
    this.watcher = watchReadable(fd, () => this.readable(fd), (err) => this.lost(fd, err.message));
  }

  private readable(fd: number): void {
    for (;;) {
      if (fd !== this.fd) return;
      let msg;
      try {
        msg = seqpacketRecv(fd);
      } catch (err) {
        return this.lost(fd, (err as Error).message);
      }
      if (msg === null) return;
      if (msg.eof) return this.lost(fd, 'node agent closed the connection');
      this.backoffMs = BACKOFF_MIN_MS; // a working connection resets the backoff
      const { data, fd: passed } = msg;
      this.queue = this.queue.then(() => this.process(fd, data, passed));
    }
  }

  private async process(fd: number, data: Uint8Array, passed: number | undefined): Promise<void> {
    let error = '';
    let msg: ZdsMessage | undefined;
    try {
      msg = parseZdsPacket(data, passed);
    } catch (err) {
      error = (err as Error).message;
      // The descriptor was not handed over, so it is ours to close.
      if (passed !== undefined) closeFdQuietly(passed);
    }
    if (msg) {
      try {
        await this.handler.handle(msg); // from here the handler owns an Add's descriptor
      } catch (err) {
        error = (err as Error).message;
      }
    }
    if (error) this.log.warn({ err: error }, 'ZDS request failed');
    if (fd !== this.fd) return; // the connection went away meanwhile
    try {
      seqpacketSend(fd, encodeAck(error));
    } catch (err) {
      this.lost(fd, (err as Error).message);
    }
  }

  private lost(fd: number, reason: string): void {
    if (fd !== this.fd) return;
    this.log.warn({ reason, retryMs: this.backoffMs }, 'ZDS connection lost; reconnecting');
    this.disconnect();
    this.timer = setTimeout(() => this.connect(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
  }

  private disconnect(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.fd >= 0) closeFdQuietly(this.fd);
    this.fd = -1;
  }
}
