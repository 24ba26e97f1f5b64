// Workload xDS client: delta ADS (envoy.service.discovery.v3) over grpc-js, as Istio's ztunnel speaks it to istiod.
// Each response is converted whole before anything is applied: one bad resource NACKs the response and keeps the last
// good state. On-demand mode subscribes to addresses (`<network>/<ip>`, or a waypoint's service `<ns>/<hostname>`) only
// when a lookup misses.
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
import { flat, intern } from '../state/intern.js';
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

/** An address resource held under a name other than its own key: the state key (`w:<uid>` | `s:<ns>/<hostname>`) and
 *  the version. */
type Entry = { key: string; version: string };
/** A connection held for an on-demand answer; `known` tells whether the state has what it waits for. */
type Waiter = { known: () => boolean; done: () => void };

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
  // What we hold of each address resource: its version (sent back in initial_resource_versions on reconnect) and which
  // state entry it carries. This is per known workload, so it is kept small: a resource named by its own key (as istiod
  // names workloads by uid and services by `ns/hostname`) is one map entry whose key is the state's own string and whose
  // value is the flat version; only names that differ from their key (several names may share a key) keep more.
  /** Workload resources named by the workload's uid: uid (the state's string) -> version. */
  private readonly workloadNames = new Map<string, string>();
  /** Service resources named by the service key: key (the state's interned string) -> version. */
  private readonly serviceNames = new Map<string, string>();
  /** Address resources under any other name: name -> state key and version. */
  private readonly otherNames = new Map<string, Entry>();
  /** State key -> the names in `otherNames` that refer to it: one name, or an array of several. */
  private readonly otherNamesByKey = new Map<string, string | string[]>();
  /** Authorization resource name -> version. */
  private readonly policies = new Map<string, string>();
  /** Authorization resource names that differ from their policy's `ns/name` -> that key. */
  private readonly policyKeys = new Map<string, string>();
  /** The last version string kept: a server that versions many resources alike (e.g. by push) shares one copy. */
  private lastVersion = '';
  /** On-demand: explicitly subscribed address names and when they were last used (ms since `epoch`: small integers,
   *  stored unboxed). */
  private readonly demanded = new Map<string, number>();
  private readonly epoch = Date.now();
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
    const out: Record<string, string> = {};
    if (typeUrl === ADDRESS_TYPE_URL) {
      for (const [name, version] of this.workloadNames) out[name] = version;
      for (const [name, version] of this.serviceNames) out[name] = version;
      for (const [name, e] of this.otherNames) out[name] = e.version;
    } else if (typeUrl === AUTHORIZATION_TYPE_URL) {
      for (const [name, version] of this.policies) out[name] = version;
    }
    return out;
  }

  /** How many resources we hold (all types). */
  private knownCount(): number {
    return this.workloadNames.size + this.serviceNames.size + this.otherNames.size + this.policies.size;
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
    this.log.info({ address: this.opts.address, onDemand: this.opts.onDemand, known: this.knownCount() }, 'xds stream started');
    this.emit('connected');
  }

  private send(req: Partial<DeltaDiscoveryRequest>): void {
    this.call?.write({ resourceNamesSubscribe: [], resourceNamesUnsubscribe: [], initialResourceVersions: {}, ...req });
  }

  // ------------------------------------------------------------ responses

  /** Applies one response as the stream delivered it and ACKs or NACKs it (on the stream, if one is open). */
  handle(res: DeltaDiscoveryResponse): void {
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

  /** A version as we keep it: flat (decoded strings are chains of pieces), and one copy for a run of equal versions. */
  private keepVersion(v: string): string {
    if (v !== this.lastVersion) this.lastVersion = flat(v);
    return this.lastVersion;
  }

  private applyAddresses(res: DeltaDiscoveryResponse): void {
    const converted = this.convertAll<ConvertedAddress>(res.resources, ADDRESS_TYPE_URL, (b) => convertAddress(AddressCodec.decode(b), this.opts.defaults));
    for (const name of res.removedResources) this.detach(name);
    for (const { r, v } of converted) {
      const isWorkload = v.kind === 'workload';
      // The uid is the state's flat string; the service key the same interned string the service store keys by.
      const id = isWorkload ? v.workload.uid : intern(serviceKey(v.service));
      const version = this.keepVersion(r.version);
      const own = isWorkload ? this.workloadNames : this.serviceNames;
      if (r.name === id) {
        // Named by its own key (the usual case). If the name carried something else until now, that may go.
        if (!own.delete(id)) {
          const old = this.unlink(r.name);
          if (old !== undefined) this.release(old);
        }
        own.set(id, version);
      } else {
        const key = (isWorkload ? 'w:' : 's:') + id;
        const old = this.unlink(r.name);
        if (old !== undefined && old !== key) this.release(old);
        this.linkOther(flat(r.name), key, version);
      }
      if (isWorkload) this.state.upsertWorkload(v.workload, false);
      else this.state.upsertService(v.service, false);
    }
    this.state.changed();
    if (this.waiters.size) {
      const answered = new Set<string>(res.removedResources);
      for (const { r } of converted) for (const n of [r.name, ...r.aliases]) answered.add(n);
      this.notifyWaiters(answered);
    }
  }

  /** The names that refer to a state key. */
  private namesOf(key: string): string[] {
    const id = key.slice(2);
    const own = (key.startsWith('w:') ? this.workloadNames : this.serviceNames).has(id) ? [id] : [];
    const others = this.otherNamesByKey.get(key);
    return others === undefined ? own : own.concat(others);
  }

  private linkOther(name: string, key: string, version: string): void {
    this.otherNames.set(name, { key, version });
    const others = this.otherNamesByKey.get(key);
    this.otherNamesByKey.set(key, others === undefined ? name : typeof others === 'string' ? [others, name] : [...others, name]);
  }

  /** Forgets an address name, leaving the state alone; returns the key it referred to. */
  private unlink(name: string): string | undefined {
    // Deleted rather than overwritten: a map keeps its first key string, and the new one is the state's current string.
    if (this.workloadNames.delete(name)) return `w:${name}`;
    if (this.serviceNames.delete(name)) return `s:${name}`;
    const e = this.otherNames.get(name);
    if (!e) return undefined;
    this.otherNames.delete(name);
    const others = this.otherNamesByKey.get(e.key);
    const rest = (typeof others === 'string' ? [others] : (others ?? [])).filter((n) => n !== name);
    if (rest.length === 0) this.otherNamesByKey.delete(e.key);
    else this.otherNamesByKey.set(e.key, rest.length === 1 ? rest[0]! : rest);
    return e.key;
  }

  /** Removes a state entry that no name refers to any more. */
  private release(key: string): void {
    if (this.namesOf(key).length) return;
    if (key.startsWith('w:')) this.state.removeWorkload(key.slice(2), false);
    else this.state.removeService(key.slice(2), false);
  }

  /** Forget an address name; the state entry goes when no other name refers to it. */
  private detach(name: string): void {
    const key = this.unlink(name);
    if (key !== undefined) this.release(key);
  }

  private applyPolicies(res: DeltaDiscoveryResponse): void {
    const converted = this.convertAll<Authorization>(res.resources, AUTHORIZATION_TYPE_URL, (b) => convertAuthorization(AuthorizationCodec.decode(b)));
    for (const name of res.removedResources) {
      const key = this.policyKeys.get(name) ?? name;
      this.policies.delete(name);
      this.policyKeys.delete(name);
      this.state.removePolicy(key, false);
    }
    for (const { r, v } of converted) {
      const key = policyKey(v);
      const oldKey = this.policies.has(r.name) ? (this.policyKeys.get(r.name) ?? r.name) : undefined;
      if (oldKey !== undefined && oldKey !== key) this.state.removePolicy(oldKey, false);
      const name = flat(r.name);
      this.policies.delete(name);
      this.policies.set(name, this.keepVersion(r.version));
      if (key === name) this.policyKeys.delete(name);
      else this.policyKeys.set(name, flat(key));
      this.state.upsertPolicy(v, false);
    }
    this.state.changed();
  }

  // ------------------------------------------------------------ on demand

  private notifyWaiters(answered: Set<string>): void {
    for (const [name, set] of this.waiters) {
      for (const w of set) if (answered.has(name) || w.known()) w.done();
    }
  }

  /** Look an address up at the control plane; resolves when the answer arrived or after the bounded wait. */
  fetch(network: string, ipRaw: string): Promise<void> {
    const ip = canonicalIp(ipRaw);
    return this.demand(`${network}/${ip}`, () => this.state.findDestination(network, ip) !== undefined);
  }

  /** The same for a service by its name `<namespace>/<hostname>` (a waypoint named by hostname). */
  fetchService(namespace: string, hostname: string): Promise<void> {
    const key = serviceKey({ namespace, hostname });
    return this.demand(key, () => this.state.services.get(key) !== undefined);
  }

  touch(network: string, ip: string): void {
    this.used(`${network}/${canonicalIp(ip)}`);
  }

  touchService(namespace: string, hostname: string): void {
    this.used(serviceKey({ namespace, hostname }));
  }

  private used(name: string): void {
    if (this.demanded.has(name)) this.demanded.set(name, Date.now() - this.epoch);
  }

  /** Subscribe to `name` (once) and wait, bounded, until it is answered or `known` holds. */
  private demand(name: string, known: () => boolean): Promise<void> {
    if (!this.opts.onDemand || this.closed || known()) return Promise.resolve();
    const isNew = !this.demanded.has(name);
    this.demanded.set(isNew ? flat(name) : name, Date.now() - this.epoch);
    if (isNew) {
      this.log.debug({ name }, 'xds: on-demand subscribe');
      this.send({ typeUrl: ADDRESS_TYPE_URL, resourceNamesSubscribe: [name] });
    }
    return new Promise<void>((resolve) => {
      let set = this.waiters.get(name);
      if (!set) this.waiters.set(name, (set = new Set()));
      const w: Waiter = {
        known,
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
    const cutoff = Date.now() - this.epoch - idleMs;
    const drop: string[] = [];
    for (const [name, last] of this.demanded) {
      if (last > cutoff || this.waiters.has(name) || this.pinned.has(name)) continue;
      this.demanded.delete(name);
      drop.push(name);
      // The answer may have come under another name (e.g. the workload uid): drop that too unless something else wants it.
      const slash = name.lastIndexOf('/');
      const dest = this.state.findDestination(name.slice(0, slash), name.slice(slash + 1));
      const key = dest ? (dest.kind === 'workload' ? `w:${dest.workload.uid}` : `s:${serviceKey(dest.service)}`) : undefined;
      for (const n of key ? this.namesOf(key) : [name]) {
        if (this.pinned.has(n) || (n !== name && this.demanded.has(n))) continue;
        if (n !== name) drop.push(n);
        this.detach(n);
      }
    }
    if (!drop.length) return;
    this.log.debug({ names: drop }, 'xds: on-demand unsubscribe (unused)');
    this.send({ typeUrl: ADDRESS_TYPE_URL, resourceNamesUnsubscribe: drop });
    this.state.changed();
  }
}

/** Istio's default token location, used when XDS_AUTH_TOKEN is not set and the file exists. */
export const DEFAULT_TOKEN_PATH = './var/run/secrets/tokens/istio-token';
export const defaultTokenPath = (): string | undefined => (existsSync(DEFAULT_TOKEN_PATH) ? DEFAULT_TOKEN_PATH : undefined);
