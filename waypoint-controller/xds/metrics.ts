// Prometheus metrics of the xDS server. Names follow istiod's where one exists (pilot_xds,
// pilot_xds_pushes, pilot_total_xds_rejects) so Istio's dashboards find them.
import { Counter, Gauge, Registry } from 'prom-client';

/** Short metric label for a type URL: the message name in lower case (`address`, `authorization`). */
export function typeLabel(typeUrl: string): string {
  const i = typeUrl.lastIndexOf('.');
  return i >= 0 ? typeUrl.slice(i + 1).toLowerCase() : typeUrl;
}

export class XdsMetrics {
  readonly connectedClients: Gauge;
  readonly pushes: Counter<'type'>;
  readonly pushedResources: Counter<'type'>;
  readonly pushedRemovals: Counter<'type'>;
  readonly pushedBytes: Counter<'type'>;
  readonly nacks: Counter<'type'>;
  readonly acks: Counter<'type'>;
  readonly expiredNonces: Counter<'type'>;

  constructor(readonly registry: Registry = new Registry()) {
    const registers = [registry];
    this.connectedClients = new Gauge({ name: 'pilot_xds', help: 'Number of connected xDS clients (ztunnels).', registers });
    this.pushes = new Counter({ name: 'pilot_xds_pushes', help: 'Delta xDS responses sent, by type.', labelNames: ['type'], registers });
    this.pushedResources = new Counter({ name: 'ambit_xds_pushed_resources_total', help: 'Resources sent in delta xDS responses, by type.', labelNames: ['type'], registers });
    this.pushedRemovals = new Counter({ name: 'ambit_xds_pushed_removals_total', help: 'Names sent in removed_resources, by type.', labelNames: ['type'], registers });
    this.pushedBytes = new Counter({ name: 'ambit_xds_pushed_bytes_total', help: 'Bytes of resources (names, aliases, payloads) sent, by type.', labelNames: ['type'], registers });
    this.nacks = new Counter({ name: 'pilot_total_xds_rejects', help: 'Delta xDS responses rejected by clients (NACK), by type.', labelNames: ['type'], registers });
    this.acks = new Counter({ name: 'ambit_xds_acks_total', help: 'Delta xDS responses acknowledged by clients, by type.', labelNames: ['type'], registers });
    this.expiredNonces = new Counter({ name: 'pilot_xds_expired_nonce', help: 'Requests carrying a nonce that is not the last one sent, by type.', labelNames: ['type'], registers });
  }
}
