// CertificateManager: caching, renewal at half the lifetime, keeping the old certificate when renewal fails, forgetting.
import test from 'ava';
import { pino } from 'pino';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { CertificateManager } from '../ztunnel/identity/manager.js';
import type { CertificateProvider } from '../ztunnel/identity/provider.js';
import { x509, uriSans } from '../ztunnel/identity/x509.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const id = { trustDomain: 'cluster.local', namespace: 'ns', serviceAccount: 'sa' };
const log = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'ambit-certs-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test.serial('the local CA issues ECDSA P-256 leaves with one URI SAN, an empty subject, chaining to the root', async (t) => {
  const ca = await LocalCa.open(join(dir, 'a.pem'), join(dir, 'a.key'), 'cluster.local');
  const issued = await ca.issue(id, 600);
  const leaf = new x509.X509Certificate(issued.chainPem[0]!);
  t.deepEqual(uriSans(leaf), ['spiffe://cluster.local/ns/ns/sa/sa']);
  t.is(leaf.subject, '');
  t.is((leaf.publicKey.algorithm as { namedCurve?: string }).namedCurve, 'P-256');
  const root = new x509.X509Certificate(issued.rootsPem[0]!);
  t.true(await leaf.verify({ publicKey: root.publicKey, signatureOnly: true }));
  // Reopening uses the same root instead of making a new one.
  const again = await LocalCa.open(join(dir, 'a.pem'), join(dir, 'a.key'), 'cluster.local');
  t.is((await again.issue(id, 600)).rootsPem[0], issued.rootsPem[0]);
});

test.serial('one fetch for concurrent callers, renewal at half the lifetime, old certificate kept on failure', async (t) => {
  const ca = await LocalCa.open(join(dir, 'b.pem'), join(dir, 'b.key'), 'cluster.local');
  let calls = 0;
  let failing = false;
  const provider: CertificateProvider = {
    issue: async (who, ttl) => {
      calls++;
      if (failing) throw new Error('CA down');
      return ca.issue(who, ttl);
    },
  };
  // A 6 s lifetime: renewal after about 3 s (X.509 times have whole seconds, so leave margin).
  const m = new CertificateManager(provider, 6, log);
  const keepAlive = setInterval(() => {}, 100); // the manager's timers are unref'd by design
  try {
    const [a, b] = await Promise.all([m.get(id), m.get(id)]);
    t.is(calls, 1);
    t.is(a.serial, b.serial);
    const renewed = await new Promise<string>((resolve) => m.once('issued', (c) => resolve(c.serial)));
    t.not(renewed, a.serial);
    t.is(calls, 2);
    failing = true;
    await new Promise((r) => setTimeout(r, 3600)); // the next renewal (about 3 s on) fails ...
    t.true(calls >= 3);
    t.is((await m.get(id)).serial, renewed); // ... and the still-valid certificate keeps serving
    t.regex(JSON.stringify(m.dump()), /Available/);
  } finally {
    clearInterval(keepAlive);
    m.close();
  }
});

test.serial('an identity forgotten while its certificate is being issued stays forgotten: not kept, not announced', async (t) => {
  const ca = await LocalCa.open(join(dir, 'c.pem'), join(dir, 'c.key'), 'cluster.local');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const provider: CertificateProvider = { issue: async (who, ttl) => (await gate, ca.issue(who, ttl)) };
  const m = new CertificateManager(provider, 600, log);
  const announced: string[] = [];
  const forgotten: string[] = [];
  m.on('issued', (c) => announced.push(c.identity)).on('forgotten', (k) => forgotten.push(k));
  const asked = m.get(id);
  m.forget(id);
  release();
  t.truthy((await asked).chainPem.length, 'the caller still gets its certificate');
  t.deepEqual(forgotten, ['spiffe://cluster.local/ns/ns/sa/sa']);
  t.deepEqual(announced, [], 'not announced to the proxy threads, which would keep it again');
  t.deepEqual(m.identities(), []);
  m.close();
});
