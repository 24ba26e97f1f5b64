// An open proxied connection, from the moment it is tracked to its access-log line: one object per connection
// (tracker entry, splice state and close handling together), since ztunnel may hold many thousands of idle ones.
import type { ServerHttp2Stream } from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionInfo } from '../rbac/authorize.js';
import type { ConnectionTelemetry } from '../telemetry/connection.js';
import { abort, Splice } from './splice.js';
import type { ConnectionTracker, TrackedConnection } from './tracker.js';

/**
 * A connection whose client is a local socket (outbound, inbound plaintext): bytes are counted there, and closing
 * it (drain, policy) resets that socket; the splice then takes the other side down.
 */
export class DownstreamConnection extends Splice implements TrackedConnection {
  constructor(
    private readonly tracker: ConnectionTracker,
    private readonly telemetry: ConnectionTelemetry,
    private readonly down: net.Socket,
    /** Inbound plaintext: what policy was checked against, to re-check it when policies change. */
    readonly authz?: ConnectionInfo,
    readonly dstWorkloadUid?: string,
  ) {
    super();
    tracker.add(this);
  }

  close(): void {
    abort(this.down);
  }

  /** The upstream is connected: copy bytes both ways until both sides close. */
  start(upstream: Duplex): void {
    this.splice(this.down, upstream);
  }

  /** The connection is over (also when it never got an upstream). */
  finish(error?: string): void {
    this.tracker.remove(this);
    this.telemetry.closed(this.down.bytesRead, this.down.bytesWritten, error);
  }

  protected spliced(error: Error | undefined): void {
    this.finish(error?.message);
  }
}

/** An HBONE stream from another ztunnel spliced to the local app; bytes are counted on the app socket. */
export class InboundTunnel extends Splice implements TrackedConnection {
  private closedReason?: string;

  constructor(
    private readonly tracker: ConnectionTracker,
    private readonly telemetry: ConnectionTelemetry,
    private readonly stream: ServerHttp2Stream,
    private readonly upstream: net.Socket,
    readonly authz: ConnectionInfo,
    readonly dstWorkloadUid: string,
  ) {
    super();
    tracker.add(this);
  }

  close(reason: string): void {
    this.closedReason = reason;
    abort(this.upstream);
    abort(this.stream);
  }

  start(): void {
    this.splice(this.stream, this.upstream);
  }

  protected spliced(error: Error | undefined): void {
    this.tracker.remove(this);
    this.telemetry.closed(this.upstream.bytesWritten, this.upstream.bytesRead, this.closedReason ?? error?.message);
  }
}
