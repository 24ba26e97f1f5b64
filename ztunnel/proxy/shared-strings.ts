// Strings every connection of a workload (or of an HBONE peer) needs, formatted once per object and shared: an idle
// connection then holds a reference, not a copy. State replaces a workload's object when the workload changes, and a
// peer's identity is fixed for its TLS session, so a cached string never goes stale; entries go with their object.
import { buildBaggage } from '../hbone/headers.js';
import { formatIdentity, workloadIdentity, type Identity } from '../identity/spiffe.js';
import type { Workload } from '../state/types.js';

const workloadUris = new WeakMap<Workload, string>();
const peerUris = new WeakMap<Identity, string>();
const baggages = new WeakMap<Workload, string>();

/** The workload's SPIFFE URI. */
export function workloadUri(w: Workload): string {
  let s = workloadUris.get(w);
  if (s === undefined) workloadUris.set(w, (s = formatIdentity(workloadIdentity(w))));
  return s;
}

/** An HBONE peer's SPIFFE URI (the identity object comes from its certificate, one per session). */
export function identityUri(id: Identity): string {
  let s = peerUris.get(id);
  if (s === undefined) peerUris.set(id, (s = formatIdentity(id)));
  return s;
}

/** The `baggage` header a source workload's requests carry. */
export function baggageOf(w: Workload): string {
  let s = baggages.get(w);
  if (s === undefined) baggages.set(w, (s = buildBaggage(w)));
  return s;
}
