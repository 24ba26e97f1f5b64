// A proxy thread's certificates: asked of the main thread's CertificateManager on first use, then kept up to date by
// the main thread's 'issued' announcements (rotations), so the thread's servers present the new certificate too, and
// dropped when the main thread forgets the identity.
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
    const pending = this.pending.get(key);
    if (pending) return pending;
    // Kept only if the identity was not forgotten meanwhile.
    const p: Promise<WorkloadCertificate> = this.fetch(id).then((c) => {
      if (this.pending.get(key) === p) this.current.set(key, c);
      return c;
    });
    const done = () => {
      if (this.pending.get(key) === p) this.pending.delete(key);
    };
    p.then(done, done);
    this.pending.set(key, p);
    return p;
  }

  /** The main thread no longer keeps this identity (formatted): neither does the thread. */
  forgotten(identity: string): void {
    this.current.delete(identity);
    this.pending.delete(identity);
  }

  /** The main thread issued (or rotated) a certificate. */
  issued(cert: WorkloadCertificate): void {
    this.current.set(cert.identity, cert);
    this.emit('issued', cert);
  }
}
