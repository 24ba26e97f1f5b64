// Strings every connection of a workload (or of an HBONE peer) needs, formatted once per object and shared: an idle
// connection then holds a reference, not a copy. State replaces a workload's object when the workload changes, and a
// peer's identity is fixed for its TLS session, so a cached string never goes stale; entries go with their object.
import { buildBaggage } from '../hbone/headers.js';
import { formatIdentity, workloadIdentity, type Identity } from '../identity/spiffe.js';
import { gatewayDestination, type GatewayAddress, type Workload } from '../state/types.js';

/** `make(key)`, computed once per key object and kept as long as the object lives. */
function cachedPer<K extends object>(make: (key: K) => string): (key: K) => string {
  const cache = new WeakMap<K, string>();
  return (key) => {
    let s = cache.get(key);
    if (s === undefined) cache.set(key, (s = make(key)));
    return s;
  };
}

/** The workload's SPIFFE URI. */
export const workloadUri = cachedPer((w: Workload) => formatIdentity(workloadIdentity(w)));

/** An HBONE peer's SPIFFE URI (the identity object comes from its certificate, one per session). */
export const identityUri = cachedPer((id: Identity) => formatIdentity(id));

/** The `baggage` header a source workload's requests carry. */
export const baggageOf = cachedPer((w: Workload) => buildBaggage(w));

/** A waypoint as the access log names it (`<ns>/<hostname>` or `<network>/<ip>`); waypoint objects are shared ones. */
export const waypointName = cachedPer((g: GatewayAddress) => gatewayDestination(g));
