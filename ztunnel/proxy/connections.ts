// An open proxied connection, from the moment it is tracked to its access-log line: one object per connection
// (tracker entry, splice state and close handling together), since ztunnel may hold many thousands of idle ones.
import type { ServerHttp2Stream } from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { ignoreStreamErrors } from '../hbone/server.js';
import type { ConnectionInfo } from '../rbac/authorize.js';
import type { ConnectionTelemetry } from '../telemetry/connection.js';
import { abort, ignoreUntilSpliced, Splice } from './splice.js';
import type { ConnectionTracker, TrackedConnection } from './tracker.js';

/** Abort a side that will not be spliced after all; nothing else listens for its errors (an answered CONNECT stream). */
function drop(d: Duplex): void {
  if (d.destroyed) return;
  d.on('error', ignoreUntilSpliced);
  abort(d);
}

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

  close(reason: string): void {
    abort(this.down);
    // Still opening its upstream: no splice watches the socket yet, so the connection ends here.
    if (!this.isSpliced) this.finish(reason);
  }

  /** The upstream is connected: copy bytes both ways until both sides close. */
  start(upstream: Duplex): void {
    // A side that closed while the upstream was being opened (closed by us, or reset just after the response) would
    // never tell the splice: drop the connection instead.
    if (this.down.destroyed || upstream.destroyed) {
      drop(this.down);
      drop(upstream);
      return this.finish('closed while the upstream was being connected');
    }
    this.splice(this.down, upstream);
  }

  /** The connection is over (also when it never got an upstream); only the first call counts. */
  finish(error?: string): void {
    if (this.tracker.remove(this)) this.telemetry.closed(this.down.bytesRead, this.down.bytesWritten, error);
  }

  protected spliced(error: Error | undefined): void {
    this.finish(error?.message);
  }
}

/**
 * An HBONE stream from another ztunnel, tracked from its authorization (so a drain or policy change also reaches it
 * while the app is being connected), then answered 200 and spliced to the app; bytes are counted on the app socket.
 */
export class InboundTunnel extends Splice implements TrackedConnection {
  private upstream?: net.Socket;
  private closedReason?: string;

  constructor(
    private readonly tracker: ConnectionTracker,
    private readonly telemetry: ConnectionTelemetry,
    private readonly stream: ServerHttp2Stream,
    readonly authz: ConnectionInfo,
    readonly dstWorkloadUid: string,
  ) {
    super();
    tracker.add(this);
  }

  close(reason: string): void {
    this.closedReason = reason;
    abort(this.stream);
    if (this.upstream) abort(this.upstream);
    // Still connecting to the app: no splice watches the stream yet, so the connection ends here.
    else this.finish(reason);
  }

  /** The app is connected: answer 200 and copy bytes both ways, unless the stream was closed meanwhile. */
  start(upstream: net.Socket): void {
    const stream = this.stream;
    if (stream.destroyed || stream.closed || upstream.destroyed) {
      drop(stream);
      drop(upstream);
      return this.finish(this.closedReason ?? 'closed while the app was being connected');
    }
    this.upstream = upstream;
    stream.respond({ ':status': 200 });
    stream.off('error', ignoreStreamErrors); // the splice listens from here on
    this.splice(stream, upstream);
  }

  /** The connection is over (also when the app could not be connected); only the first call counts. */
  finish(error?: string): void {
    const up = this.upstream;
    if (this.tracker.remove(this)) this.telemetry.closed(up?.bytesWritten ?? 0, up?.bytesRead ?? 0, error);
  }

  protected spliced(error: Error | undefined): void {
    this.finish(this.closedReason ?? error?.message);
  }
}
