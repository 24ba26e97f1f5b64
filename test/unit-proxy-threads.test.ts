// The main thread's handle on its proxy threads (workers/host.ts), without a lab: a clean shutdown, a thread that dies
// (reported once, and shutdown does not wait for an answer that can never come), and certificates a thread keeps.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { loadConfig } from '../ztunnel/config/env.js';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { CertificateManager } from '../ztunnel/identity/manager.js';
import { formatIdentity } from '../ztunnel/identity/spiffe.js';
import { ProxyState } from '../ztunnel/state/index.js';
import type { WorkloadCertificate } from '../ztunnel/identity/manager.js';
import { ProxyThreads } from '../ztunnel/workers/host.js';
import { RemoteCertificates } from '../ztunnel/workers/remote-certificates.js';
import { within } from './lab/waits.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-threads-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

async function threads(count: number, onFailure: (err: Error) => void = () => {}) {
  const log = pino({ level: 'silent' });
  const ca = await LocalCa.open(join(dir, 'ca.pem'), join(dir, 'ca.key'), 'cluster.local');
  const state = new ProxyState();
  const certs = new CertificateManager(ca, 3600, log);
  // A pod served in dedicated mode listens in this process's netns: on loopback, on ports the kernel picks.
  const ports = { outbound: 0, inbound: 0, inboundPlaintext: 0, socks5: 0, metrics: 0, readiness: 0, admin: 0 };
  const cfg = { ...loadConfig({}), logLevel: 'silent', bindAddress: '127.0.0.1', ports };
  const pt = new ProxyThreads(count, { cfg, state, certs, log }, onFailure);
  await within(pt.start(), 20_000, 'proxy threads starting');
  // The workers themselves are private; a test reaches in to end one the way a crash would.
  const workers = (pt as unknown as { threads: { worker: Worker }[] }).threads.map((t) => t.worker);
  return { pt, state, certs, workers };
}

test('a clean shutdown drains every thread and reports no failure', async (t) => {
  const failures: Error[] = [];
  const { pt, state, workers } = await threads(2, (e) => failures.push(e));
  t.is(workers.length, 2);
  t.is(await pt.openConnections(), 0);
  t.true(await within(pt.drain(1000), 10_000, 'drain'));
  t.true(workers.every((w) => w.threadId === -1), 'every worker terminated');
  t.deepEqual(failures, []);
  t.is(state.mirror, undefined, 'the state no longer feeds the stopped threads');
});

test('a thread that dies is reported once; shutdown then ends without waiting for it', async (t) => {
  const failures: Error[] = [];
  const { pt, workers } = await threads(2, (e) => failures.push(e));
  const pendingCount = pt.openConnections(); // asked of both threads just before one of them dies
  await workers[0]!.terminate();
  await within((async () => { while (failures.length === 0) await new Promise((r) => setTimeout(r, 20)); })(), 5000, 'failure report');
  t.is(failures.length, 1);
  t.regex(failures[0]!.message, /proxy thread 1: exited with code 1/);
  await within(pendingCount.then(() => {}, () => {}), 5000, 'the count asked before the death'); // answered or failed, never left hanging
  t.false(await within(pt.drain(1000), 5000, 'drain after a thread died'));
  t.is(failures.length, 1, 'the other thread ending at shutdown is not a second failure');
});

test('a thread keeps the certificates it was given until the main thread forgets the identity', async (t) => {
  const { pt, certs } = await threads(1);
  const asked: string[] = [];
  const get = certs.get.bind(certs);
  certs.get = (id) => (asked.push(formatIdentity(id)), get(id));
  const info = { namespace: 'shop', name: 'api-1', serviceAccount: 'api' };
  const id = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'api' };
  try {
    await within(pt.addPod('p1', info, undefined, false), 10_000, 'pod added');
    t.deepEqual(asked, [formatIdentity(id)], 'the thread asked the main thread for the pod\'s certificate');
    pt.removePod('p1');
    await within(pt.addPod('p1', info, undefined, false), 10_000, 'pod added again');
    t.is(asked.length, 1, 'the thread still had it');
    pt.removePod('p1');
    certs.forget(id);
    await within(pt.addPod('p1', info, undefined, false), 10_000, 'pod added after the identity was forgotten');
    t.is(asked.length, 2, 'the thread had dropped it too');
  } finally {
    await pt.drain(1000);
    certs.close();
  }
});

test('a certificate the main thread sends after the identity was forgotten is handed over but not kept', async (t) => {
  const id = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'api' };
  const key = formatIdentity(id);
  const answers: ((c: WorkloadCertificate) => void)[] = [];
  const certs = new RemoteCertificates(() => new Promise((resolve) => answers.push(resolve)));
  const cert = (serial: string): WorkloadCertificate =>
    ({ identity: key, chainPem: [], privateKeyPem: '', rootsPem: [], serial, notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000) });

  const first = certs.get(id);
  certs.forgotten(key);
  const second = certs.get(id); // asked again after the forget: a fetch of its own
  t.is(answers.length, 2);
  answers[1]!(cert('new'));
  t.is((await second).serial, 'new');
  answers[0]!(cert('old')); // the forgotten fetch answers last
  t.is((await first).serial, 'old', 'its caller still gets the answer');
  t.is((await certs.get(id)).serial, 'new', 'the one fetched after the forget is the one kept');
  t.is(answers.length, 2, 'and it is served without asking again');
});
