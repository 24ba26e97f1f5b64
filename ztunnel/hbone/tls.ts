// TLS settings for HBONE: TLS 1.3 only, AES-GCM suites, ALPN h2, mutual authentication with SPIFFE identities.
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { WorkloadCertificate } from '../identity/manager.js';
import { tryParseIdentity, type Identity } from '../identity/spiffe.js';

const CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';

function common(cert: WorkloadCertificate) {
  return {
    minVersion: 'TLSv1.3' as const,
    maxVersion: 'TLSv1.3' as const,
    ciphers: CIPHERS,
    ALPNProtocols: ['h2'],
    cert: cert.chainPem.join('\n'),
    key: cert.privateKeyPem,
    ca: cert.rootsPem,
  };
}

export function serverTlsOptions(cert: WorkloadCertificate) {
  return { ...common(cert), requestCert: true, rejectUnauthorized: true };
}

/** The URI SANs of a peer certificate as Node reports them (`URI:spiffe://...` entries). */
export function peerUris(cert: PeerCertificate | undefined): string[] {
  const san = cert?.subjectaltname;
  if (!san) return [];
  return san
    .split(', ')
    .filter((e) => e.startsWith('URI:'))
    .map((e) => e.slice(4));
}

/** The peer's single SPIFFE identity, or undefined if it has none or several. */
export function peerIdentity(socket: TLSSocket): Identity | undefined {
  const uris = peerUris(socket.getPeerCertificate());
  return uris.length === 1 ? tryParseIdentity(uris[0]!) : undefined;
}

/** Client options that accept the server only if it presents one of the expected identities. */
export function clientTlsOptions(cert: WorkloadCertificate, expectedIdentities: readonly string[]) {
  return {
    ...common(cert),
    rejectUnauthorized: true,
    servername: undefined,
    checkServerIdentity: (_host: string, peer: PeerCertificate): Error | undefined => {
      const uris = peerUris(peer);
      if (uris.some((u) => expectedIdentities.includes(u))) return undefined;
      const err = new Error(`server identity ${uris.join(',') || '(none)'} is not one of ${expectedIdentities.join(',')}`);
      (err as NodeJS.ErrnoException).code = 'ERR_HBONE_IDENTITY';
      return err;
    },
  };
}
