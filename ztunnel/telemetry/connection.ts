// One proxied connection's telemetry: the access log lines (open at debug level, close at info), and its metrics.
// Held for the whole life of a connection, so it keeps only references to strings that exist anyway (addresses as
// ip + port, names and identities from state) and shares its metric series with every connection of the same labels.
import type { Logger } from 'pino';
import { formatHostPort } from '../net/ip.js';
import type { Metrics, TrafficLabels, TrafficSeries } from './metrics.js';

export interface ConnectionFields {
  direction: 'inbound' | 'outbound';
  srcIp: string;
  srcPort: number;
  srcWorkload?: string;
  srcNamespace?: string;
  srcIdentity?: string;
  dstIp: string;
  dstPort: number;
  /** Outbound over HBONE: where the tunnel goes. */
  dstHboneIp?: string;
  dstHbonePort?: number;
  dstService?: string;
  /** Outbound through a waypoint: which one (the tunnel then goes to a waypoint pod). */
  dstWaypoint?: string;
  dstWorkload?: string;
  dstNamespace?: string;
  dstIdentity?: string;
}

export class ConnectionTelemetry {
  private readonly start = Date.now();
  private done = false;
  private readonly series: TrafficSeries;

  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly fields: ConnectionFields,
    labels: TrafficLabels,
  ) {
    this.series = metrics.seriesOf(labels);
    metrics.connectionOpened(this.series);
    // Debug level, as in Istio's ztunnel: the access log proper is the line at close.
    if (log.isLevelEnabled('debug')) log.debug(this.logFields(), 'connection opened');
  }

  /** Record the close once; bytes are counted client->server (request) and server->client (response). */
  closed(requestBytes: number, responseBytes: number, error?: string): void {
    if (this.done) return;
    this.done = true;
    this.metrics.connectionClosed(this.series, requestBytes, responseBytes);
    // As Istio's logs: bytes_sent is what this side sent onward (request bytes outbound, response bytes inbound).
    const outbound = this.fields.direction === 'outbound';
    const line = this.logFields();
    line.bytes_sent = outbound ? requestBytes : responseBytes;
    line.bytes_recv = outbound ? responseBytes : requestBytes;
    line.duration = `${Date.now() - this.start}ms`;
    if (error) {
      line.error = error;
      this.log.error(line, 'connection complete');
    } else this.log.info(line, 'connection complete');
  }

  /** The connection's fields in Istio's names, with the close's fields still unset; pino leaves out what is undefined. */
  private logFields(): Record<string, string | number | undefined> {
    const f = this.fields;
    return {
      'src.addr': formatHostPort(f.srcIp, f.srcPort),
      'src.workload': f.srcWorkload,
      'src.namespace': f.srcNamespace,
      'src.identity': f.srcIdentity,
      'dst.addr': formatHostPort(f.dstIp, f.dstPort),
      'dst.hbone_addr': f.dstHboneIp === undefined ? undefined : formatHostPort(f.dstHboneIp, f.dstHbonePort!),
      'dst.service': f.dstService,
      'dst.waypoint': f.dstWaypoint,
      'dst.workload': f.dstWorkload,
      'dst.namespace': f.dstNamespace,
      'dst.identity': f.dstIdentity,
      direction: f.direction,
      bytes_sent: undefined,
      bytes_recv: undefined,
      duration: undefined,
      error: undefined,
    };
  }
}
