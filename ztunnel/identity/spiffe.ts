// SPIFFE identities as Istio uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.

export interface Identity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

const SPIFFE_RE = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

export function parseIdentity(uri: string): Identity {
  const m = SPIFFE_RE.exec(uri);
  if (!m) throw new Error(`not a SPIFFE identity of the form spiffe://<td>/ns/<ns>/sa/<sa>: ${JSON.stringify(uri)}`);
  return { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! };
}

export function tryParseIdentity(uri: string): Identity | undefined {
  try {
    return parseIdentity(uri);
  } catch {
    return undefined;
  }
}

export const formatIdentity = (id: Identity): string =>
  `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;

export const workloadIdentity = (w: { trustDomain: string; namespace: string; serviceAccount: string }): Identity => ({
  trustDomain: w.trustDomain,
  namespace: w.namespace,
  serviceAccount: w.serviceAccount,
});
