// One DeltaAggregatedResources stream: request handling (subscriptions, ACK/NACK) and sending deltas.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, XdsResource } from '../../protos/xds.js';
import { typeLabel, type XdsMetrics } from './metrics.js';
import { parseNode, type ClientNode } from './node.js';
import type { ResourceStore, StoredResource } from './store.js';
import { newTypeWatch, planChange, planRequest, type DeltaPlan, type TypeWatch } from './subscriptions.js';

export type DeltaStream = grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

/** What a connection is served from: ztunnels the main store, each waypoint Envoy its own. */
export interface ConnectionView {
  /** '' for the main store, else the waypoint (`<ns>/<gateway>`). */
  readonly scope: string;
  readonly store: ResourceStore;
  readonly typeUrls: ReadonlySet<string>;
}

/** Thrown from onRequest when the client may not be served (e.g. a waypoint node we cannot place). */
export class XdsRefusal extends Error {}

export interface ConnectionDeps {
  /** The main view (ztunnel's types); used unless `route` picks another one. */
  readonly store: ResourceStore;
  readonly metrics: XdsMetrics;
  readonly log: Logger;
  readonly typeUrls: ReadonlySet<string>;
  readonly nonce: () => string;
  /**
   * Picks the view once the client's node is known (first request): undefined keeps the main view, a string refuses
   * the stream with that reason.
   */
  readonly route?: (node: ClientNode) => ConnectionView | string | undefined;
}

export interface TypeWatchDebug {
  wildcard: boolean;
  subscribed: string[];
  held: number;
  nonceSent: string;
  nonceAcked: string;
  nonceNacked: string;
  pushes: number;
  acks: number;
  nacks: number;
  lastNack?: { nonce: string; code: number; message: string; at: string };
}

export interface ConnectionDebug {
  id: string;
  peer: string;
  clusterId: string;
  connectedAt: string;
  node?: ClientNode;
  /** The waypoint served (`<ns>/<gateway>`), for a waypoint Envoy. */
  waypoint?: string;
  types: Record<string, TypeWatchDebug>;
}

export class XdsConnection {
  readonly watches = new Map<string, TypeWatch>();
  readonly connectedAt = new Date();
  node?: ClientNode;
  closed = false;
  private viewOf: ConnectionView;

  constructor(
    readonly id: string,
    readonly peer: string,
    readonly clusterId: string,
    private readonly stream: DeltaStream,
    private readonly deps: ConnectionDeps,
  ) {
    this.viewOf = { scope: '', store: deps.store, typeUrls: deps.typeUrls };
  }

  get view(): ConnectionView {
    return this.viewOf;
  }

  /** Handles one request from the client. */
  onRequest(req: DeltaDiscoveryRequest): void {
    if (this.closed) return; // e.g. refused: nothing more is served on this stream
    const { log, metrics } = this.deps;
    if (!this.node && req.node && req.node.id) {
      this.node = parseNode(req.node);
      const routed = this.deps.route?.(this.node);
      if (typeof routed === 'string') {
        this.closed = true;
        throw new XdsRefusal(routed);
      }
      if (routed) this.viewOf = routed;
      log.info({ conn: this.id, node: this.node.id, peer: this.peer, ...(this.viewOf.scope ? { waypoint: this.viewOf.scope } : {}) }, 'xDS client connected');
    }
    const typeUrl = req.typeUrl;
    if (!this.viewOf.typeUrls.has(typeUrl)) {
      log.warn({ conn: this.id, typeUrl }, 'xDS request for an unsupported type; ignored');
      return;
    }
    let w = this.watches.get(typeUrl);
    if (!w) this.watches.set(typeUrl, (w = newTypeWatch(typeUrl)));
    const type = typeLabel(typeUrl);

    if (req.responseNonce) {
      if (req.errorDetail) {
        // NACK: the client keeps its last good state. Record it; do not resend the same version.
        w.nacks++;
        w.nonceNacked = req.responseNonce;
        w.lastNack = {
          nonce: req.responseNonce,
          code: req.errorDetail.code,
          message: req.errorDetail.message,
          at: new Date().toISOString(),
        };
        metrics.nacks.inc({ type });
        log.warn(
          { conn: this.id, node: this.node?.id, typeUrl, nonce: req.responseNonce, code: req.errorDetail.code, reason: req.errorDetail.message },
          'xDS NACK: client rejected a response',
        );
      } else {
        w.acks++;
        w.nonceAcked = req.responseNonce;
        metrics.acks.inc({ type });
        log.debug({ conn: this.id, typeUrl, nonce: req.responseNonce }, 'xDS ACK');
      }
      if (req.responseNonce !== w.nonceSent) metrics.expiredNonces.inc({ type });
    }

    const plan = planRequest(w, this.viewOf.store, {
      subscribe: req.resourceNamesSubscribe ?? [],
      unsubscribe: req.resourceNamesUnsubscribe ?? [],
      initialVersions: req.initialResourceVersions ?? {},
    });
    if (plan) this.send(w, plan);
  }

  /** Pushes the effect of changed names of one type; returns whether a response was sent. */
  onChange(typeUrl: string, names: Iterable<string>): boolean {
    const w = this.watches.get(typeUrl);
    if (!w || this.closed) return false;
    const plan = planChange(w, this.viewOf.store, names);
    if (!plan) return false;
    this.send(w, plan);
    return true;
  }

  /** Ends the stream (status OK: the client reconnects at once, e.g. to another replica). */
  cancel(): void {
    this.closed = true;
    try {
      this.stream.end();
    } catch {
      // already gone
    }
  }

  debug(): ConnectionDebug {
    const types: Record<string, TypeWatchDebug> = {};
    for (const [t, w] of this.watches) {
      types[t] = {
        wildcard: w.wildcard,
        subscribed: [...w.subscribed].sort(),
        held: w.held.size,
        nonceSent: w.nonceSent,
        nonceAcked: w.nonceAcked,
        nonceNacked: w.nonceNacked,
        pushes: w.pushes,
        acks: w.acks,
        nacks: w.nacks,
        ...(w.lastNack ? { lastNack: { ...w.lastNack } } : {}),
      };
    }
    return {
      id: this.id,
      peer: this.peer,
      clusterId: this.clusterId,
      connectedAt: this.connectedAt.toISOString(),
      ...(this.node ? { node: this.node } : {}),
      ...(this.viewOf.scope ? { waypoint: this.viewOf.scope } : {}),
      types,
    };
  }

  private send(w: TypeWatch, plan: DeltaPlan): void {
    if (this.closed) return;
    const { metrics, log } = this.deps;
    const store = this.viewOf.store;
    const withAliases = !w.wildcard; // istiod sets aliases for on-demand answers only
    let bytes = 0;
    const resources: XdsResource[] = plan.resources.map((r: StoredResource) => {
      bytes += r.body.length + r.name.length;
      if (withAliases) for (const a of r.aliases) bytes += a.length;
      return {
        name: r.name,
        version: r.version,
        aliases: withAliases ? [...r.aliases] : [],
        resource: { type_url: w.typeUrl, value: r.body },
      };
    });
    for (const n of plan.removed) bytes += n.length;
    const nonce = this.deps.nonce();
    const resp: DeltaDiscoveryResponse = {
      systemVersionInfo: String(store.version),
      typeUrl: w.typeUrl,
      resources,
      removedResources: plan.removed,
      nonce,
    };
    w.nonceSent = nonce;
    w.pushes++;
    const type = typeLabel(w.typeUrl);
    metrics.pushes.inc({ type });
    metrics.pushedResources.inc({ type }, resources.length);
    metrics.pushedRemovals.inc({ type }, plan.removed.length);
    metrics.pushedBytes.inc({ type }, bytes);
    log.debug(
      { conn: this.id, node: this.node?.id, typeUrl: w.typeUrl, nonce, resources: resources.length, removed: plan.removed.length, bytes },
      'xDS push',
    );
    try {
      this.stream.write(resp);
    } catch (err) {
      log.warn({ conn: this.id, err }, 'xDS write failed');
    }
  }
}
