// Workload xDS client: delta ADS (envoy.service.discovery.v3) over grpc-js, as Istio's ztunnel speaks it to istiod.
// Each response is converted whole before anything is applied: one bad resource NACKs the response and keeps the last
// good state. On-demand mode subscribes to addresses (`<network>/<ip>`) only when a lookup misses.
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, AddressCodec, AuthorizationCodec, toStruct } from '../../protos/index.js';
import {
  AggregatedDiscoveryServiceDefinition,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type XdsResource,
} from '../../protos/xds.js';
import { canonicalIp } from '../net/ip.js';
import type { AddressResolver, ProxyState } from '../state/index.js';
import { policyKey, serviceKey, type Authorization } from '../state/types.js';
import { convertAddress, convertAuthorization, type ConvertDefaults, type ConvertedAddress } from './convert.js';

export { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL };

/** Who we are, for the node id and metadata (Istio: INSTANCE_IP, POD_NAME, POD_NAMESPACE, NODE_NAME, CLUSTER_ID). */
export interface XdsNodeInfo {
  ip: string;
  podName: string;
  podNamespace: string;
  nodeName: string;
  clusterId: string;
}

export interface XdsClientOptions {
  /** `host:port`. */
  address: string;
  /** TLS: defaults to plaintext. */
  credentials?: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
  node: XdsNodeInfo;
  /** File holding a bearer token, re-read on every connection. */
  tokenPath?: string;
  onDemand: boolean;
  defaults: ConvertDefaults;
  /** How long a connection waits for an on-demand answer. */
  onDemandTimeoutMs?: number;
  /** Drop on-demand subscriptions not looked up for this long. */
  idleUnsubscribeMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

/** INVALID_ARGUMENT, as error_detail.code of a NACK. */
const NACK_CODE = 3;

export function nodeId(n: XdsNodeInfo): string {
  return `ztunnel~${n.ip}~${n.podName}.${n.podNamespace}~${n.podNamespace}.svc.cluster.local`;
}

type Entry = { key: string; version: string };
type Waiter = { network: string; ip: string; done: () => void };

export interface XdsClientEvents {
  ack: [{ typeUrl: string; nonce: string }];
  nack: [{ typeUrl: string; nonce: string; reason: string }];
  connected: [];
  ready: [];
}

export class XdsClient extends EventEmitter<XdsClientEvents> implements AddressResolver {
  private readonly client: grpc.Client & { deltaAggregatedResources(md: grpc.Metadata): grpc.ClientDuplexStream<Partial<DeltaDiscoveryRequest>, DeltaDiscoveryResponse> };
  private call?: grpc.ClientDuplexStream<Partial<DeltaDiscoveryRequest>, DeltaDiscoveryResponse>;
  private closed = false;
  private retryTimer?: NodeJS.Timeout;
  private sweepTimer?: NodeJS.Timeout;
  private backoffMs: number;
  /** Address resource name -> state key (`w:<uid>` | `s:<ns>/<hostname>`) and version; several names may share a key. */
  private readonly addresses = new Map<string, Entry>();
  private readonly namesByKey = new Map<string, Set<string>>();
  /** Authorization resource name -> policy key and version. */
  private readonly policies = new Map<string, Entry>();
  /** On-demand: explicitly subscribed address names and when they were last used. */
  private readonly demanded = new Map<string, number>();
  private readonly pinned = new Set<string>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly expected: Set<string>;
  private isReady = false;
  readonly stats = { connects: 0, acks: 0, nacks: 0 };

  constructor(
    private readonly opts: XdsClientOptions,
    private readonly state: ProxyState,
    private readonly log: Logger,
  ) {
    super();
    const Ctor = grpc.makeGenericClientConstructor(AggregatedDiscoveryServiceDefinition as unknown as grpc.ServiceDefinition, 'AggregatedDiscoveryService');
    this.client = new Ctor(opts.address, opts.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 200 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
      // Our own backoff decides; keep the channel's reconnects quick.
      'grpc.initial_reconnect_backoff_ms': opts.backoffInitialMs ?? 10,
      'grpc.max_reconnect_backoff_ms': opts.backoffMaxMs ?? 15_000,
      ...opts.channelOptions,
    }) as never;
    this.backoffMs = opts.backoffInitialMs ?? 10;
    this.expected = new Set(opts.onDemand ? [AUTHORIZATION_TYPE_URL] : [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]);
  }

  /** True after the first accepted response of each type we subscribe to by wildcard. */
  ready(): boolean {
    return this.isReady;
  }

  start(): void {
    this.connect();
    if (this.opts.onDemand) {
      const idle = this.opts.idleUnsubscribeMs ?? 5 * 60_000;
      this.sweepTimer = setInterval(() => this.sweep(idle), Math.max(10, Math.min(idle / 4, 30_000)));
      this.sweepTimer.unref();
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.sweepTimer);
    this.call?.cancel();
    this.call = undefined;
    this.client.close();
    for (const set of this.waiters.values()) for (const w of set) w.done();
    this.waiters.clear();
  }

  /** Names and versions we hold, per type (what `initial_resource_versions` carries on reconnect). */
  known(typeUrl: string): Record<string, string> {
    const map = typeUrl === ADDRESS_TYPE_URL ? this.addresses : this.policies;
    return Object.fromEntries([...map].map(([name, e]) => [name, e.version]));
  }

  subscriptions(): string[] {
    return [...this.demanded.keys(), ...this.pinned];
  }

  // ------------------------------------------------------------ stream

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('clusterid', this.opts.node.clusterId);
    const path = this.opts.tokenPath;
    if (path) {
      try {
        const token = readFileSync(path, 'utf8').trim();
        if (token) md.set('authorization', `Bearer ${token}`);
      } catch (e) {
        this.log.warn({ path, err: (e as Error).message }, 'xds: cannot read the auth token');
      }
    }
    return md;
  }

  private initialRequest(typeUrl: string): Partial<DeltaDiscoveryRequest> {
    const n = this.opts.node;
    const req: Partial<DeltaDiscoveryRequest> = {
      typeUrl,
      node: {
        id: nodeId(n),
        cluster: '',
        metadata: toStruct({ NAME: n.podName, NAMESPACE: n.podNamespace, INSTANCE_IPS: n.ip, NODE_NAME: n.nodeName, CLUSTER_ID: n.clusterId }),
      },
      initialResourceVersions: this.known(typeUrl),
      resourceNamesSubscribe: [],
      resourceNamesUnsubscribe: [],
    };
    if (typeUrl === ADDRESS_TYPE_URL && this.opts.onDemand) {
      const names = this.subscriptions();
      // A first request with no names would mean wildcard; subscribing and unsubscribing `*` means "nothing" (as Istio does).
      if (names.length) req.resourceNamesSubscribe = names;
      else [req.resourceNamesSubscribe, req.resourceNamesUnsubscribe] = [['*'], ['*']];
    }
    return req;
  }

  private connect(): void {
    if (this.closed) return;
    this.stats.connects++;
    const call = this.client.deltaAggregatedResources(this.metadata());
    this.call = call;
    let gotResponse = false;
    call.on('data', (res: DeltaDiscoveryResponse) => {
      if (this.call !== call) return;
      if (!gotResponse) {
        gotResponse = true;
        this.backoffMs = this.opts.backoffInitialMs ?? 10;
      }
      this.handle(res);
    });
    const ended = (why: string) => {
      if (this.call !== call) return;
      this.call = undefined;
      call.cancel();
      if (this.closed) return;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.opts.backoffMaxMs ?? 15_000);
      this.log.warn({ address: this.opts.address, reason: why, retryMs: delay }, 'xds stream ended; reconnecting');
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
    call.on('error', (e: grpc.ServiceError) => ended(`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`));
    call.on('end', () => ended('stream closed by server'));
    for (const t of [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]) call.write(this.initialRequest(t));
    this.log.info({ address: this.opts.address, onDemand: this.opts.onDemand, known: this.addresses.size + this.policies.size }, 'xds stream started');
    this.emit('connected');
  }

  private send(req: Partial<DeltaDiscoveryRequest>): void {
    this.call?.write({ resourceNamesSubscribe: [], resourceNamesUnsubscribe: [], initialResourceVersions: {}, ...req });
  }

  // ------------------------------------------------------------ responses

  private handle(res: DeltaDiscoveryResponse): void {
    const { typeUrl, nonce } = res;
    let reason: string | undefined;
    try {
      if (typeUrl === ADDRESS_TYPE_URL) this.applyAddresses(res);
      else if (typeUrl === AUTHORIZATION_TYPE_URL) this.applyPolicies(res);
      else reason = `unknown type ${typeUrl}`;
    } catch (e) {
      reason = (e as Error).message;
    }
    if (reason !== undefined) {
      this.stats.nacks++;
      this.log.error({ typeUrl, nonce, reason }, 'xds: rejecting response (NACK); keeping the previous state');
      this.send({ typeUrl, responseNonce: nonce, errorDetail: { code: NACK_CODE, message: reason } });
      this.emit('nack', { typeUrl, nonce, reason });
      return;
    }
    this.stats.acks++;
    this.log.debug({ typeUrl, nonce, resources: res.resources.length, removed: res.removedResources.length }, 'xds: ACK');
    this.send({ typeUrl, responseNonce: nonce });
    this.emit('ack', { typeUrl, nonce });
    if (!this.isReady && this.expected.delete(typeUrl) && this.expected.size === 0) {
      this.isReady = true;
      this.log.info('xds: initial configuration received');
      this.emit('ready');
    }
  }

  /** Decode and convert every resource first; throws (naming the resources) if any fails, before touching the state. */
  private convertAll<T>(resources: XdsResource[], typeUrl: string, conv: (bytes: Uint8Array) => T): { r: XdsResource; v: T }[] {
    const out: { r: XdsResource; v: T }[] = [];
    const errors: string[] = [];
    for (const r of resources) {
      try {
        if (!r.name) throw new Error('resource without a name');
        if (!r.resource) throw new Error('resource without a body');
        if (r.resource.type_url !== typeUrl) throw new Error(`body has type ${r.resource.type_url}, expected ${typeUrl}`);
        out.push({ r, v: conv(r.resource.value) });
      } catch (e) {
        errors.push(`${r.name || '(unnamed)'}: ${(e as Error).message}`);
      }
    }
    if (errors.length) throw new Error(errors.join('; '));
    return out;
  }

  private applyAddresses(res: DeltaDiscoveryResponse): void {
    const converted = this.convertAll<ConvertedAddress>(res.resources, ADDRESS_TYPE_URL, (b) => convertAddress(AddressCodec.decode(b), this.opts.defaults));
    for (const name of res.removedResources) this.detach(name);
    for (const { r, v } of converted) {
      const key = v.kind === 'workload' ? `w:${v.workload.uid}` : `s:${serviceKey(v.service)}`;
      const old = this.addresses.get(r.name);
      if (old && old.key !== key) this.detach(r.name);
      this.addresses.set(r.name, { key, version: r.version });
      let names = this.namesByKey.get(key);
      if (!names) this.namesByKey.set(key, (names = new Set()));
      names.add(r.name);
      if (v.kind === 'workload') this.state.upsertWorkload(v.workload, false);
      else this.state.upsertService(v.service, false);
    }
    this.state.emit('change');
    if (this.waiters.size) {
      const answered = new Set<string>(res.removedResources);
      for (const { r } of converted) for (const n of [r.name, ...r.aliases]) answered.add(n);
      this.notifyWaiters(answered);
    }
  }

  /** Forget an address name; the state entry goes when no other name refers to it. */
  private detach(name: string): void {
    const e = this.addresses.get(name);
    if (!e) return;
    this.addresses.delete(name);
    const names = this.namesByKey.get(e.key);
    names?.delete(name);
    if (names?.size) return;
    this.namesByKey.delete(e.key);
    if (e.key.startsWith('w:')) this.state.removeWorkload(e.key.slice(2), false);
    else this.state.removeService(e.key.slice(2), false);
  }

  private applyPolicies(res: DeltaDiscoveryResponse): void {
    const converted = this.convertAll<Authorization>(res.resources, AUTHORIZATION_TYPE_URL, (b) => convertAuthorization(AuthorizationCodec.decode(b)));
    for (const name of res.removedResources) {
      const e = this.policies.get(name);
      this.policies.delete(name);
      this.state.removePolicy(e?.key ?? name, false);
    }
    for (const { r, v } of converted) {
      const key = policyKey(v);
      const old = this.policies.get(r.name);
      if (old && old.key !== key) this.state.removePolicy(old.key, false);
      this.policies.set(r.name, { key, version: r.version });
      this.state.upsertPolicy(v, false);
    }
    this.state.emit('change');
  }

  // ------------------------------------------------------------ on demand

  private notifyWaiters(answered: Set<string>): void {
    for (const [name, set] of this.waiters) {
      for (const w of set) if (answered.has(name) || this.state.findDestination(w.network, w.ip)) w.done();
    }
  }

  /** Look an address up at the control plane; resolves when the answer arrived or after the bounded wait. */
  fetch(network: string, ipRaw: string): Promise<void> {
    const ip = canonicalIp(ipRaw);
    if (!this.opts.onDemand || this.closed || this.state.findDestination(network, ip)) return Promise.resolve();
    const name = `${network}/${ip}`;
    const isNew = !this.demanded.has(name);
    this.demanded.set(name, Date.now());
    if (isNew) {
      this.log.debug({ name }, 'xds: on-demand subscribe');
      this.send({ typeUrl: ADDRESS_TYPE_URL, resourceNamesSubscribe: [name] });
    }
    return new Promise<void>((resolve) => {
      let set = this.waiters.get(name);
      if (!set) this.waiters.set(name, (set = new Set()));
      const w: Waiter = {
        network, ip,
        done: () => {
          clearTimeout(timer);
          set.delete(w);
          if (set.size === 0 && this.waiters.get(name) === set) this.waiters.delete(name);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.log.info({ name, waitedMs: this.opts.onDemandTimeoutMs ?? 5000 }, 'xds: no on-demand answer in time');
        w.done();
      }, this.opts.onDemandTimeoutMs ?? 5000);
      set.add(w);
    });
  }

  touch(network: string, ip: string): void {
    const name = `${network}/${canonicalIp(ip)}`;
    if (this.demanded.has(name)) this.demanded.set(name, Date.now());
  }

  pin(name: string): void {
    if (this.pinned.has(name)) return;
    this.pinned.add(name);
    if (this.opts.onDemand) this.send({ typeUrl: ADDRESS_TYPE_URL, resourceNamesSubscribe: [name] });
  }

  unpin(name: string): void {
    if (!this.pinned.delete(name) || !this.opts.onDemand) return;
    this.send({ typeUrl: ADDRESS_TYPE_URL, resourceNamesUnsubscribe: [name] });
  }

  /** Drop on-demand subscriptions unused for `idleMs`, and what they brought into the state. */
  sweep(idleMs: number): void {
    const cutoff = Date.now() - idleMs;
    const drop: string[] = [];
    for (const [name, last] of this.demanded) {
      if (last > cutoff || this.waiters.has(name) || this.pinned.has(name)) continue;
      this.demanded.delete(name);
      drop.push(name);
      // The answer may have come under another name (e.g. the workload uid): drop that too unless something else wants it.
      const slash = name.lastIndexOf('/');
      const dest = this.state.findDestination(name.slice(0, slash), name.slice(slash + 1));
      const key = dest ? (dest.kind === 'workload' ? `w:${dest.workload.uid}` : `s:${serviceKey(dest.service)}`) : undefined;
      for (const n of key ? [...(this.namesByKey.get(key) ?? [])] : [name]) {
        if (this.pinned.has(n) || (n !== name && this.demanded.has(n))) continue;
        if (n !== name) drop.push(n);
        this.detach(n);
      }
    }
    if (!drop.length) return;
    this.log.debug({ names: drop }, 'xds: on-demand unsubscribe (unused)');
    this.send({ typeUrl: ADDRESS_TYPE_URL, resourceNamesUnsubscribe: drop });
    this.state.emit('change');
  }
}

/** Istio's default token location, used when XDS_AUTH_TOKEN is not set and the file exists. */
export const DEFAULT_TOKEN_PATH = './var/run/secrets/tokens/istio-token';
export const defaultTokenPath = (): string | undefined => (existsSync(DEFAULT_TOKEN_PATH) ? DEFAULT_TOKEN_PATH : undefined);
