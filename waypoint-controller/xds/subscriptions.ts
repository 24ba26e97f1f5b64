// Per-connection, per-type subscription state of a delta xDS stream, and the pure functions that decide
// what a request or a store change means for one client. No I/O here: the connection turns plans into
// DeltaDiscoveryResponses.
//
// Semantics (Envoy's delta xDS protocol as istiod applies it to ztunnel):
// - The first request of a type with no names to subscribe is a wildcard subscription ("legacy wildcard");
//   `*` subscribes to everything explicitly and unsubscribing `*` ends that. ztunnel's on-demand mode sends
//   subscribe ["*"] + unsubscribe ["*"] in its first request: subscribed to nothing.
// - Explicit keys are canonical names or aliases (`<network>/<ip>`). A key is answered with the resources it
//   resolves to, under their canonical names and with their aliases; a key that resolves to nothing is
//   answered in `removed_resources` ("does not exist"), as the protocol prescribes.
// - We remember which version of each resource the client holds (`held`). It is seeded from
//   `initial_resource_versions` on (re)connect, so only resources whose version differs are sent and the
//   ones that no longer exist are removed. Later changes reach a client if it is wildcard, subscribed to the
//   name or one of its aliases, or holds the resource (e.g. received it through an alias).
// - Groups (istiod's Lookup + AdditionalPodSubscriptions, pilot/pkg/xds/workload.go generateDeltasOndemand): a
//   non-wildcard client that gets a resource with members (a service, whose members are its workloads) gets
//   its members too and is subscribed to them by name, so it keeps receiving their updates and removal — also
//   after a member leaves the group, as with istiod, which never drops those subscriptions. A resource that
//   later becomes a member of a group the client watches (a pod joining a subscribed service) is sent and
//   subscribed as well. Wildcard clients get everything anyway; nothing changes for them.

import type { ResourceStore, StoredResource } from './store.js';

export const WILDCARD = '*';

export interface TypeWatch {
  readonly typeUrl: string;
  /** Set once the first request of this type was processed. */
  initialized: boolean;
  wildcard: boolean;
  /** Explicitly subscribed keys (names or aliases), as the client sent them. */
  readonly subscribed: Set<string>;
  /** name -> version the client holds, as far as we know (sent by us or declared on reconnect). */
  readonly held: Map<string, string>;
  nonceSent: string;
  nonceAcked: string;
  nonceNacked: string;
  lastNack?: { nonce: string; code: number; message: string; at: string };
  nacks: number;
  acks: number;
  pushes: number;
}

export function newTypeWatch(typeUrl: string): TypeWatch {
  return {
    typeUrl,
    initialized: false,
    wildcard: false,
    subscribed: new Set(),
    held: new Map(),
    nonceSent: '',
    nonceAcked: '',
    nonceNacked: '',
    nacks: 0,
    acks: 0,
    pushes: 0,
  };
}

/** What to send to one client for one type. */
export interface DeltaPlan {
  readonly resources: StoredResource[];
  readonly removed: string[];
  /** Respond even when both lists are empty (the answer to a client's first request of a type). */
  readonly force: boolean;
}

export interface SubscriptionRequest {
  readonly subscribe: readonly string[];
  readonly unsubscribe: readonly string[];
  readonly initialVersions: Readonly<Record<string, string>>;
}

function wants(w: TypeWatch, name: string, res: StoredResource | undefined): boolean {
  if (w.wildcard || w.subscribed.has(name) || w.held.has(name)) return true;
  return !!res && res.aliases.some((a) => w.subscribed.has(a));
}

/** Whether the client watches any group `res` is a member of (only meaningful for non-wildcard clients). */
function watchesGroupOf(w: TypeWatch, store: ResourceStore, res: StoredResource): boolean {
  return res.groups.some((g) => wants(w, g, store.get(w.typeUrl, g)));
}

/** Whether a resource is still covered by a subscription (used after unsubscribes). */
function covered(w: TypeWatch, res: StoredResource | undefined, name: string): boolean {
  if (w.wildcard || w.subscribed.has(name)) return true;
  return !!res && res.aliases.some((a) => w.subscribed.has(a));
}

class PlanBuilder {
  private readonly resources = new Map<string, StoredResource>();
  private readonly removed = new Set<string>();
  constructor(private readonly w: TypeWatch) {}

  /** Sends res unless the client holds this version already (or `always`). */
  send(res: StoredResource, always = false): void {
    if (!always && this.w.held.get(res.name) === res.version) return;
    this.removed.delete(res.name);
    this.resources.set(res.name, res);
  }

  /** Sends res and, to a non-wildcard client, its group members, subscribing the client to them. */
  sendWithMembers(store: ResourceStore, res: StoredResource, always = false): void {
    this.send(res, always);
    if (this.w.wildcard) return;
    for (const m of store.membersOf(this.w.typeUrl, res.name)) {
      this.w.subscribed.add(m.name);
      this.send(m);
    }
  }

  remove(name: string): void {
    if (this.resources.has(name)) return;
    this.removed.add(name);
  }

  /** Builds the plan and records its effect on what the client holds. */
  finish(force: boolean): DeltaPlan | undefined {
    if (!force && this.resources.size === 0 && this.removed.size === 0) return undefined;
    for (const r of this.resources.values()) this.w.held.set(r.name, r.version);
    for (const n of this.removed) this.w.held.delete(n);
    return { resources: [...this.resources.values()], removed: [...this.removed], force };
  }
}

/**
 * Applies a client request's subscription changes to `w` and returns what to answer (undefined: no
 * response, e.g. a pure ACK or an unsubscribe).
 */
export function planRequest(w: TypeWatch, store: ResourceStore, req: SubscriptionRequest): DeltaPlan | undefined {
  const plan = new PlanBuilder(w);
  const first = !w.initialized;
  const wasWildcard = w.wildcard;
  if (first) {
    w.initialized = true;
    if (req.subscribe.length === 0) w.wildcard = true; // legacy wildcard
    for (const [name, version] of Object.entries(req.initialVersions)) w.held.set(name, version);
  }
  const newKeys: string[] = [];
  for (const key of req.subscribe) {
    if (key === WILDCARD) w.wildcard = true;
    else {
      w.subscribed.add(key);
      newKeys.push(key);
    }
  }
  for (const key of req.unsubscribe) {
    if (key === WILDCARD) w.wildcard = false;
    else w.subscribed.delete(key);
  }

  // Forget resources no longer covered after unsubscribes (the client drops them itself; no removal
  // is sent for an unsubscribe).
  if (req.unsubscribe.length > 0 && !w.wildcard) {
    for (const name of [...w.held.keys()]) {
      if (!covered(w, store.get(w.typeUrl, name), name)) w.held.delete(name);
    }
  }

  if (first) {
    // Reconnect: resources the client declares it holds that changed or disappeared.
    for (const [name] of Object.entries(req.initialVersions)) {
      const res = store.get(w.typeUrl, name);
      if (!res) plan.remove(name);
      else plan.send(res);
    }
  }
  if (w.wildcard && (first || !wasWildcard)) {
    for (const res of store.list(w.typeUrl)) plan.send(res);
  }
  for (const key of newKeys) {
    const found = store.resolve(w.typeUrl, key);
    if (found.length === 0) plan.remove(key);
    // An explicit (re)subscription is always answered, so an on-demand client waiting for it wakes up; except in
    // the first request, where the client declared what it holds (initial_resource_versions): only what changed.
    // A service also brings its workloads (see "Groups" above); those are sent only if the client lacks them.
    else for (const res of found) plan.sendWithMembers(store, res, !first);
  }
  return plan.finish(first);
}

/** What a store change to `names` means for this client (undefined: nothing to send). */
export function planChange(w: TypeWatch, store: ResourceStore, names: Iterable<string>): DeltaPlan | undefined {
  if (!w.initialized) return undefined;
  const plan = new PlanBuilder(w);
  for (const name of names) {
    const res = store.get(w.typeUrl, name);
    if (wants(w, name, res)) {
      if (res) plan.sendWithMembers(store, res);
      else if (w.held.has(name)) plan.remove(name);
    } else if (res && watchesGroupOf(w, store, res)) {
      // Joined a group the client watches (a new pod of a subscribed service): send it and subscribe to it.
      w.subscribed.add(name);
      plan.send(res);
    }
  }
  return plan.finish(false);
}
