// Caches one certificate per identity, refreshes it at half its lifetime and keeps the old one on failure.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { CertificateProvider } from './provider.js';
import { formatIdentity, type Identity } from './spiffe.js';
import { x509 } from './x509.js';

export interface WorkloadCertificate {
  identity: string;
  chainPem: string[];
  privateKeyPem: string;
  rootsPem: string[];
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** What the proxies need of certificates: the main thread's manager, or a proxy thread's view of it (workers/). */
export interface CertificateSource {
  get(id: Identity): Promise<WorkloadCertificate>;
  on(event: 'issued', listener: (cert: WorkloadCertificate) => void): unknown;
  off(event: 'issued', listener: (cert: WorkloadCertificate) => void): unknown;
}

interface Entry {
  id: Identity;
  current?: WorkloadCertificate;
  pending?: Promise<WorkloadCertificate>;
  timer?: NodeJS.Timeout;
  backoffMs: number;
  lastError?: string;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 150_000;

/**
 * Emits 'issued' with each new certificate, so servers can present the rotated one, and 'forgotten' with an identity
 * it no longer keeps.
 */
export class CertificateManager extends EventEmitter<{ issued: [WorkloadCertificate]; forgotten: [string] }> implements CertificateSource {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly provider: CertificateProvider,
    private readonly ttlSeconds: number,
    private readonly log: Logger,
  ) {
    super();
  }

  /** The current certificate for an identity, fetching it on first use. */
  get(id: Identity): Promise<WorkloadCertificate> {
    const key = formatIdentity(id);
    let e = this.entries.get(key);
    if (!e) this.entries.set(key, (e = { id, backoffMs: BACKOFF_MIN_MS }));
    if (e.current && e.current.notAfter.getTime() > Date.now()) return Promise.resolve(e.current);
    return e.pending ?? this.fetch(key, e);
  }

  prefetch(id: Identity): void {
    this.get(id).catch(() => {}); // failures are logged and retried by fetch()
  }

  /** Stop caching and refreshing an identity (its last local workload is gone). */
  forget(id: Identity): void {
    const key = formatIdentity(id);
    const e = this.entries.get(key);
    if (!e) return;
    if (e.timer) clearTimeout(e.timer);
    this.entries.delete(key);
    this.emit('forgotten', key);
  }

  identities(): string[] {
    return [...this.entries.keys()];
  }

  close(): void {
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
    this.entries.clear();
  }

  private fetch(key: string, e: Entry): Promise<WorkloadCertificate> {
    const p = this.provider
      .issue(e.id, this.ttlSeconds)
      .then((issued) => {
        const leaf = new x509.X509Certificate(issued.chainPem[0]!);
        const cert: WorkloadCertificate = {
          identity: key,
          chainPem: issued.chainPem,
          privateKeyPem: issued.privateKeyPem,
          rootsPem: issued.rootsPem,
          serial: leaf.serialNumber,
          notBefore: leaf.notBefore,
          notAfter: leaf.notAfter,
        };
        // Forgotten while the CA was asked: the caller gets it, but it is neither kept nor announced.
        if (this.entries.get(key) !== e) return cert;
        e.current = cert;
        e.backoffMs = BACKOFF_MIN_MS;
        e.lastError = undefined;
        // Renew at half of the lifetime left now (the leaf's notBefore may be backdated for clock skew).
        this.schedule(key, e, Math.max((cert.notAfter.getTime() - Date.now()) / 2, 500));
        this.log.info({ identity: key, serial: cert.serial, expires: cert.notAfter.toISOString() }, 'certificate issued');
        this.emit('issued', cert);
        return cert;
      })
      .catch((err: Error) => {
        e.lastError = err.message;
        this.log.warn({ identity: key, err: err.message, retryMs: e.backoffMs }, 'certificate fetch failed');
        this.schedule(key, e, e.backoffMs);
        e.backoffMs = Math.min(e.backoffMs * 2, BACKOFF_MAX_MS);
        // Keep serving the old certificate while it is still valid.
        if (e.current && e.current.notAfter.getTime() > Date.now()) return e.current;
        throw err;
      })
      .finally(() => {
        if (e.pending === p) e.pending = undefined;
      });
    e.pending = p;
    return p;
  }

  private schedule(key: string, e: Entry, delayMs: number): void {
    if (e.timer) clearTimeout(e.timer);
    e.timer = setTimeout(() => {
      if (this.entries.get(key) === e && !e.pending) this.fetch(key, e).catch(() => {});
    }, delayMs);
    e.timer.unref();
  }

  /** Istio-style certificate section of config_dump (no key material). */
  dump(): unknown[] {
    return [...this.entries.entries()].map(([identity, e]) => ({
      identity,
      state: e.current ? 'Available' : e.lastError ? `Unavailable: ${e.lastError}` : 'Initializing',
      certChain: e.current
        ? [{ serialNumber: e.current.serial, validFrom: e.current.notBefore.toISOString(), expirationTime: e.current.notAfter.toISOString() }]
        : [],
      rootCerts: e.current ? e.current.rootsPem.map((pem) => {
        const c = new x509.X509Certificate(pem);
        return { serialNumber: c.serialNumber, validFrom: c.notBefore.toISOString(), expirationTime: c.notAfter.toISOString() };
      }) : [],
    }));
  }
}
