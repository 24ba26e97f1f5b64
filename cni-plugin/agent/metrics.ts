// The node agent's Prometheus metrics (own registry, so several agents can live in one process in tests).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export class AgentMetrics {
  readonly registry = new Registry();
  private sources?: { enrolled: () => { enabled: number; pending: number }; zdsConnections: () => number };
  private readonly failures: Counter<'operation'>;
  private readonly zdsConnectionsTotal: Counter;
  private readonly cniEvents: Counter<'code'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const self = this;
    new Gauge({
      name: 'ambit_nodeagent_enrolled_pods',
      help: 'Pods of this node in the mesh, by redirection state (enabled: ztunnel acked; pending: not yet).',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const e = self.sources?.enrolled() ?? { enabled: 0, pending: 0 };
        this.set({ state: 'enabled' }, e.enabled);
        this.set({ state: 'pending' }, e.pending);
      },
    });
    new Gauge({
      name: 'ambit_nodeagent_zds_connections',
      help: 'ztunnel connections currently open on the ZDS socket.',
      registers: [this.registry],
      collect() {
        this.set(self.sources?.zdsConnections() ?? 0);
      },
    });
    this.zdsConnectionsTotal = new Counter({ name: 'ambit_nodeagent_zds_connections_total', help: 'ztunnel connections accepted (after ZdsHello).', registers: [this.registry] });
    this.failures = new Counter({
      name: 'ambit_nodeagent_failures_total',
      help: 'Failed operations, by operation (reconcile, rules, netns, zds_add, zds_del, annotate, probe_snat, cni_event, ...).',
      labelNames: ['operation'],
      registers: [this.registry],
    });
    this.cniEvents = new Counter({ name: 'ambit_nodeagent_cni_events_total', help: 'CNI plugin events served, by HTTP status.', labelNames: ['code'], registers: [this.registry] });
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  bind(sources: { enrolled: () => { enabled: number; pending: number }; zdsConnections: () => number }): void {
    this.sources = sources;
  }

  failure(operation: string): void {
    this.failures.inc({ operation });
  }

  zdsConnected(): void {
    this.zdsConnectionsTotal.inc();
  }

  cniEvent(code: number): void {
    this.cniEvents.inc({ code: String(code) });
  }
}
