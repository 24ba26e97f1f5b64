// A proxy thread's certificates: asked of the main thread's CertificateManager on first use, then kept up to date by
// the main thread's 'issued' announcements (rotations), so the thread's servers present the new certificate too.
import { EventEmitter } from 'node:events';
import type { CertificateSource, WorkloadCertificate } from '../identity/manager.js';
import { formatIdentity, type Identity } from '../identity/spiffe.js';

export class RemoteCertificates extends EventEmitter<{ issued: [WorkloadCertificate] }> implements CertificateSource {
  private readonly current = new Map<string, WorkloadCertificate>();
  private readonly pending = new Map<string, Promise<WorkloadCertificate>>();

  constructor(private readonly fetch: (id: Identity) => Promise<WorkloadCertificate>) {
    super();
  }

  get(id: Identity): Promise<WorkloadCertificate> {
    const key = formatIdentity(id);
    const cert = this.current.get(key);
    if (cert && cert.notAfter.getTime() > Date.now()) return Promise.resolve(cert);
    let p = this.pending.get(key);
    if (!p) {
      p = this.fetch(id)
        .then((c) => (this.current.set(key, c), c))
        .finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  /** The main thread issued (or rotated) a certificate. */
  issued(cert: WorkloadCertificate): void {
    this.current.set(cert.identity, cert);
    this.emit('issued', cert);
  }
}
