// The control plane's delta ADS server (envoy.service.discovery.v3.AggregatedDiscoveryService/
// DeltaAggregatedResources) for ztunnel's types: istio.workload.Address and istio.security.Authorization.
//
// Store changes are collected per type and pushed after a quiet period (debounce), but never later than
// `maxDelayMs` after the first pending change, so a steady stream of updates cannot starve clients.
// Each connected client receives only the part of a change it is subscribed to (see subscriptions.ts).
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../../protos/index.js';
import { AggregatedDiscoveryServiceDefinition, type DeltaDiscoveryRequest } from '../../protos/xds.js';
import { XdsConnection, XdsRefusal, type ConnectionDebug, type ConnectionView, type DeltaStream } from './connection.js';
import { XdsMetrics } from './metrics.js';
import type { ClientNode } from './node.js';
import type { ResourceStore, StoreChange } from './store.js';
import { CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ROUTE_TYPE_URL, SECRET_TYPE_URL } from '../../protos/envoy.js';
import { ENVOY_TYPE_URLS, type WaypointServing } from './waypoints.js';

export const DEFAULT_TYPE_URLS: readonly string[] = [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL];

export interface XdsServerOptions {
  store: ResourceStore;
  /** Types served; requests for others are ignored. Default: Address and Authorization. */
  typeUrls?: readonly string[];
  /** Quiet period before a burst of changes is pushed. Default 50 ms. */
  debounceMs?: number;
  /** Longest a change waits while changes keep coming. Default 500 ms. */
  maxDelayMs?: number;
  /** Registry for the metrics; a fresh one by default (see `registry`). */
  registry?: Registry;
  log?: Logger;
  /** grpc-js server options (message sizes, keepalive...). */
  grpcOptions?: grpc.ServerOptions;
  /**
   * Decide whether a stream may be served (e.g. a bearer token checked through TokenReview on the TLS port).
   * Resolves to undefined to accept, to `{ principal }` to accept as that authenticated caller (passed to
   * `waypoints.waypointOf`), or to the reason for refusing it with UNAUTHENTICATED.
   */
  authenticate?: (caller: { metadata: grpc.Metadata; localPort: number | undefined }) => Promise<string | { principal: unknown } | undefined>;
  /**
   * Serve waypoint Envoys (node id type `waypoint`) from per-waypoint stores with Envoy's types. Without it a
   * waypoint node is served like any other client (and its Envoy types are ignored).
   */
  waypoints?: WaypointServing;
}

/**
 * The server port a call came in on. grpc-js reports TLS in getAuthContext() only for clients with a verified
 * certificate (ztunnels authenticate with a token instead), so the port tells the TLS listener from the plaintext one.
 * The connection info is not on the public call surface yet; it is on the call underneath.
 */
export function localPortOf(call: object): number | undefined {
  const inner = (call as { call?: { getConnectionInfo?: () => { localPort?: number } } }).call;
  return inner?.getConnectionInfo?.().localPort;
}

/**
 * Envoy applies what it gets in order: secrets and clusters (with their endpoints) before the listeners and routes
 * that name them, as istiod pushes. Other types keep their order.
 */
const PUSH_ORDER = [SECRET_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ROUTE_TYPE_URL];
const pushRank = (typeUrl: string) => {
  const i = PUSH_ORDER.indexOf(typeUrl);
  return i < 0 ? -1 : i;
};

export interface XdsDebugState {
  connections: ConnectionDebug[];
  pendingChanges: Record<string, number>;
  resources: Record<string, number>;
  /** Per waypoint (`<ns>/<gateway>`): resources per type. */
  waypoints: Record<string, Record<string, number>>;
}

export interface FlushStats {
  /** Responses written by this flush. */
  pushes: number;
  names: number;
}

export class XdsServer {
  readonly metrics: XdsMetrics;
  readonly log: Logger;
  private readonly store: ResourceStore;
  private readonly typeUrls: ReadonlySet<string>;
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private readonly server: grpc.Server;
  private readonly authenticate: XdsServerOptions['authenticate'];
  private readonly connections = new Map<string, XdsConnection>();
  /** scope ('' main store, else a waypoint) -> type -> changed names. */
  private readonly pending = new Map<string, Map<string, Set<string>>>();
  private readonly waypoints: WaypointServing | undefined;
  private readonly waypointTypeUrls: ReadonlySet<string>;
  private firstPendingAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribeStore: () => void;
  private readonly unsubscribeWaypoints: () => void;
  private readonly noncePrefix = randomBytes(4).toString('hex');
  private nonceCounter = 0;
  private connCounter = 0;
  private closed = false;

  constructor(opts: XdsServerOptions) {
    this.store = opts.store;
    this.typeUrls = new Set(opts.typeUrls ?? DEFAULT_TYPE_URLS);
    this.debounceMs = opts.debounceMs ?? 50;
    this.maxDelayMs = Math.max(opts.maxDelayMs ?? 500, this.debounceMs);
    this.metrics = new XdsMetrics(opts.registry);
    this.log = opts.log ?? pino({ name: 'xds-server', level: process.env.LOG_LEVEL ?? 'info' });
    this.server = new grpc.Server(opts.grpcOptions);
    this.authenticate = opts.authenticate;
    this.server.addService(AggregatedDiscoveryServiceDefinition as unknown as grpc.ServiceDefinition, {
      deltaAggregatedResources: (call: DeltaStream) => this.onStream(call),
    });
    this.unsubscribeStore = this.store.onChange((c) => this.onStoreChange('', this.typeUrls, c));
    this.waypoints = opts.waypoints;
    this.waypointTypeUrls = new Set(opts.waypoints?.typeUrls ?? ENVOY_TYPE_URLS);
    const offChange = this.waypoints?.stores.onChange((wp, c) => this.onStoreChange(wp, this.waypointTypeUrls, c));
    const offDelete = this.waypoints?.stores.onDelete((wp) => {
      this.pending.delete(wp);
      for (const c of this.connections.values()) if (c.view.scope === wp) c.cancel();
    });
    this.unsubscribeWaypoints = () => (offChange?.(), offDelete?.());
  }

  get registry(): Registry {
    return this.metrics.registry;
  }

  /**
   * Binds an address (`127.0.0.1:15010`, `0.0.0.0:15012`, port 0 for any). Plaintext by default; pass
   * `grpc.ServerCredentials.createSsl(...)` for the TLS port. May be called several times. Returns the port.
   */
  listen(address: string, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, credentials, (err, port) => {
        if (err) reject(err);
        else {
          this.log.info({ address, port }, 'xDS server listening');
          resolve(port);
        }
      });
    });
  }

  /** Stops accepting, ends all streams and shuts down (forcefully after `graceMs`). */
  async close(graceMs = 1000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribeStore();
    this.unsubscribeWaypoints();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const c of this.connections.values()) c.closed = true;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      t.unref();
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
      // Streams never end on their own; cancel them so tryShutdown can complete.
      for (const c of this.connections.values()) c.cancel();
    });
    this.connections.clear();
    this.metrics.connectedClients.set(0);
  }

  /** Pushes pending changes now (also used by the debounce timer). */
  flush(): FlushStats {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const stats: FlushStats = { pushes: 0, names: 0 };
    if (this.pending.size === 0) return stats;
    const batch = [...this.pending];
    this.pending.clear();
    for (const [scope, types] of batch) {
      for (const [typeUrl, names] of [...types].sort((a, b) => pushRank(a[0]) - pushRank(b[0]))) {
        stats.names += names.size;
        for (const c of this.connections.values()) if (c.view.scope === scope && c.onChange(typeUrl, names)) stats.pushes++;
      }
    }
    return stats;
  }

  debugState(): XdsDebugState {
    const pendingChanges: Record<string, number> = {};
    for (const [scope, types] of this.pending) for (const [t, n] of types) pendingChanges[scope ? `${scope} ${t}` : t] = n.size;
    const resources: Record<string, number> = {};
    for (const t of this.typeUrls) resources[t] = this.store.size(t);
    const waypoints: Record<string, Record<string, number>> = {};
    for (const wp of this.waypoints?.stores.keys() ?? []) {
      const store = this.waypoints!.stores.get(wp);
      waypoints[wp] = Object.fromEntries([...this.waypointTypeUrls].map((t) => [t, store.size(t)]));
    }
    return { connections: [...this.connections.values()].map((c) => c.debug()), pendingChanges, resources, waypoints };
  }

  /** The view of a client whose node is known: its waypoint's store for a waypoint node, else the main one. */
  private route(node: ClientNode, principal: unknown): ConnectionView | string | undefined {
    if (!this.waypoints || node.proxyType !== 'waypoint') return undefined;
    const wp = this.waypoints.waypointOf(node, principal);
    if (!wp) return `no waypoint known for node ${node.id}`;
    return { scope: wp, store: this.waypoints.stores.get(wp), typeUrls: this.waypointTypeUrls };
  }

  private onStoreChange(scope: string, typeUrls: ReadonlySet<string>, change: StoreChange): void {
    if (this.closed || !typeUrls.has(change.typeUrl)) return;
    let types = this.pending.get(scope);
    if (!types) this.pending.set(scope, (types = new Map()));
    let set = types.get(change.typeUrl);
    if (!set) types.set(change.typeUrl, (set = new Set()));
    for (const n of change.names) set.add(n);
    const now = Date.now();
    if (!this.timer) this.firstPendingAt = now;
    else clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.debounceMs, this.firstPendingAt + this.maxDelayMs - now));
    this.timer = setTimeout(() => this.flush(), delay);
  }

  /** Serve another gRPC service on the same ports (the CA shares 15012 with xDS, as in Istio). */
  addService(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    this.server.addService(definition, implementation);
  }

  private onStream(call: DeltaStream): void {
    const authenticate = this.authenticate;
    if (!authenticate) return this.serve(call);
    call.pause(); // requests wait (buffered) until the caller is known
    authenticate({ metadata: call.metadata, localPort: localPortOf(call) }).then(
      (refusal) => {
        if (typeof refusal !== 'string') {
          this.serve(call, refusal?.principal);
          call.resume();
          return;
        }
        this.log.warn({ peer: call.getPeer(), reason: refusal }, 'xDS client refused');
        // grpc-js ends a server stream with the status of an emitted error.
        call.emit('error', Object.assign(new Error(refusal), { code: grpc.status.UNAUTHENTICATED, details: refusal }));
      },
      (err: Error) => call.emit('error', Object.assign(err, { code: grpc.status.UNAVAILABLE, details: err.message })),
    );
  }

  private serve(call: DeltaStream, principal?: unknown): void {
    if (this.closed) {
      call.destroy(new Error('server closing'));
      return;
    }
    const id = `${this.noncePrefix}-c${++this.connCounter}`;
    const clusterId = String(call.metadata.get('clusterid')[0] ?? '');
    const conn = new XdsConnection(id, call.getPeer(), clusterId, call, {
      store: this.store,
      metrics: this.metrics,
      log: this.log,
      typeUrls: this.typeUrls,
      route: (node) => this.route(node, principal),
      nonce: () => `${this.noncePrefix}-${(++this.nonceCounter).toString(36)}`,
    });
    this.connections.set(id, conn);
    this.metrics.connectedClients.inc();
    let done = false;
    const finish = (why: string, err?: unknown) => {
      if (done) return;
      done = true;
      conn.closed = true;
      this.connections.delete(id);
      this.metrics.connectedClients.dec();
      this.log.info({ conn: id, node: conn.node?.id, why, err: err instanceof Error ? err.message : undefined }, 'xDS client disconnected');
    };
    call.on('data', (req: DeltaDiscoveryRequest) => {
      try {
        conn.onRequest(req);
      } catch (err) {
        if (err instanceof XdsRefusal) {
          this.log.warn({ conn: id, peer: call.getPeer(), reason: err.message }, 'xDS client refused');
          finish('refused', err);
          call.emit('error', Object.assign(new Error(err.message), { code: grpc.status.FAILED_PRECONDITION, details: err.message }));
          return;
        }
        this.log.error({ conn: id, err }, 'xDS request handling failed');
        call.destroy(err instanceof Error ? err : new Error(String(err)));
        finish('error', err);
      }
    });
    call.on('end', () => {
      finish('end');
      call.end();
    });
    call.on('cancelled', () => finish('cancelled'));
    call.on('error', (err) => finish('error', err));
    call.on('close', () => finish('close'));
  }
}
