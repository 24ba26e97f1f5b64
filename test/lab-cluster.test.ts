// The simulated cluster without ztunnel: node/pod networking, the in-pod redirection rules, and the ZDS server
// driven by a fake ztunnel client in this process.
import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import type net from 'node:net';
import { parse } from 'yaml';
import { WorkloadRequestCodec, WorkloadResponseCodec, ZdsHelloCodec, type WorkloadRequest } from '../protos/index.js';
import {
  closeFd, originalDst, seqpacketConnect, seqpacketRecv, seqpacketSend, socketFd, watchReadable,
  type ConnectTcpOptions, type FdWatcher,
} from '../ztunnel/native/index.js';
import { parseLocalConfig } from '../ztunnel/sources/local-config.js';
import { echoServer, exchange, exchangeWith as exchangeAny, listenIn, type Exchange } from './lab/apps.js';
import { Cluster } from './lab/cluster.js';
import { installInpodRules, iptablesSave, PROBE_SNAT_IP, removeInpodRules } from './lab/inpod-rules.js';
import { sh } from './lab/netns.js';

const VIP = '10.96.0.10';
const cluster = new Cluster(
  {
    nodes: [
      {
        name: 'node1',
        pods: [
          { name: 'client', serviceAccount: 'sleep' },
          { name: 'server-a', serviceAccount: 'echo' },
          { name: 'mesh-a', serviceAccount: 'sleep', enrolled: true },
        ],
      },
      {
        name: 'node2',
        pods: [
          { name: 'server-b', serviceAccount: 'echo' },
          { name: 'mesh-b', namespace: 'other', serviceAccount: 'echo', enrolled: true },
          { name: 'mesh-c', serviceAccount: 'echo', enrolled: true },
        ],
      },
    ],
    services: [{ name: 'echo', vip: VIP, ports: { 80: 8080 }, selectorPods: ['server-a', 'server-b', 'mesh-b'] }],
    policies: [{ name: 'deny-nothing', namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [] }],
  },
  { startZtunnels: false, zdsAckTimeoutMs: 1500 },
);
const servers: net.Server[] = [];
const fakes: FakeZtunnel[] = [];

test.before(async () => {
  await cluster.start();
  for (const p of ['server-a', 'server-b', 'mesh-a', 'mesh-b', 'client']) servers.push(await echoServer(cluster.pod(p).ns, '0.0.0.0', 8080));
});

test.after.always(async () => {
  for (const f of fakes) f.close();
  for (const s of servers) s.close();
  await cluster.cleanup();
});

const ip = (pod: string) => cluster.pod(pod).ip;
const text = (r: Exchange) => r.received.toString();

/** exchange() with socket options (mark, transparent source), with a short bound. */
const exchangeWith = (opts: ConnectTcpOptions, payload: string, timeoutMs = 5000) => exchangeAny(opts, payload, timeoutMs);

// ---------------------------------------------------------------- a fake ztunnel on the ZDS socket

interface Received {
  req?: WorkloadRequest;
  data: Buffer;
  fd?: number;
  eof?: boolean;
}

class FakeZtunnel {
  readonly fd: number;
  private readonly watcher: FdWatcher;
  private readonly inbox: Received[] = [];
  private waiter?: () => void;
  private closed = false;

  constructor(path: string, hello: Uint8Array | null = ZdsHelloCodec.encode({ version: 'V1' })) {
    this.fd = seqpacketConnect(path);
    fakes.push(this);
    this.watcher = watchReadable(this.fd, () => {
      for (;;) {
        const m = seqpacketRecv(this.fd);
        if (!m) break;
        let req: WorkloadRequest | undefined;
        try {
          if (!m.eof) req = WorkloadRequestCodec.decode(m.data);
        } catch {}
        this.inbox.push({ req, data: m.data, fd: m.fd, eof: m.eof });
        if (m.eof) {
          this.watcher.close();
          break;
        }
      }
      this.waiter?.();
    });
    if (hello) seqpacketSend(this.fd, hello);
  }

  async next(timeoutMs = 5000): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    while (this.inbox.length === 0) {
      if (Date.now() > deadline) throw new Error('fake ztunnel: nothing received');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.inbox.shift()!;
  }

  ack(error = ''): void {
    seqpacketSend(this.fd, WorkloadResponseCodec.encode({ payload: 'ack', ack: { error } }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    for (const m of this.inbox.splice(0)) if (m.fd !== undefined) closeFd(m.fd);
    closeFd(this.fd);
  }
}

/** Same namespace? (nsfs device and inode of the received fd vs the named netns' bind mount) */
function sameNetns(fd: number, netnsName: string): boolean {
  const a = statSync(`/proc/self/fd/${fd}`);
  const b = statSync(`/run/netns/${netnsName}`);
  return a.dev === b.dev && a.ino === b.ino;
}

const fdCount = () => readdirSync('/proc/self/fd').length;

// ---------------------------------------------------------------- network

test.serial('namespaces carry the lab prefix; pods, nodes and the hub exist', (t) => {
  const names = sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter((n) => n?.startsWith(`${cluster.lab.prefix}-`));
  t.is(names.length, 2 + 6 + 1);
  t.true(names.includes(`${cluster.lab.prefix}-node1-server-a`));
  t.is(cluster.pod('server-b').node, 'node2');
  t.is(ip('client'), '10.244.1.2');
  t.is(ip('server-b'), '10.244.2.2');
  t.is(cluster.node('node2').ip, '10.200.0.2');
  t.is(cluster.node('node1').ns.exec('sysctl', '-n', 'net.ipv4.ip_forward').trim(), '1');
  for (const ns of [cluster.node('node1').ns, cluster.pod('client').ns])
    t.is(ns.exec('sysctl', '-n', 'net.ipv4.conf.all.rp_filter').trim(), '0');
});

test.serial('pod -> pod on the same node (not enrolled)', async (t) => {
  const r = await exchange(cluster.pod('client').ns, ip('server-a'), 8080, Buffer.from('same-node'), 5000);
  t.is(r.error, undefined);
  t.is(text(r), 'same-node');
});

test.serial('pod -> pod across nodes, both directions (not enrolled)', async (t) => {
  const r = await exchange(cluster.pod('client').ns, ip('server-b'), 8080, Buffer.from('cross-node'), 5000);
  t.is(r.error, undefined);
  t.is(text(r), 'cross-node');
  const back = await exchange(cluster.pod('server-b').ns, ip('client'), 8080, Buffer.from('and-back'), 5000);
  t.is(text(back), 'and-back');
});

test.serial('node -> pod, local and remote node; the pod sees the real source across nodes', async (t) => {
  const local = await exchange(cluster.node('node1').ns, ip('server-a'), 8080, Buffer.from('node1'), 5000);
  t.is(text(local), 'node1');
  const remote = await exchange(cluster.node('node2').ns, ip('server-a'), 8080, Buffer.from('node2'), 5000);
  t.is(text(remote), 'node2');
  const seen = new Promise<string | undefined>((resolve) => {
    void listenIn(cluster.pod('server-b').ns, '0.0.0.0', 7000, (s) => {
      resolve(s.remoteAddress);
      s.resume();
      s.end();
    }).then((srv) => servers.push(srv));
  });
  await new Promise((r) => setTimeout(r, 50));
  await exchange(cluster.pod('client').ns, ip('server-b'), 7000, Buffer.alloc(0), 5000);
  t.is(await seen, ip('client')); // no NAT on the way between nodes
});

test.serial('the local config lists every pod with protocol, node, services and the policies, and parses', (t) => {
  const cfg = parse(readFileSync(cluster.configPath, 'utf8')) as { workloads: Record<string, unknown>[]; services: Record<string, unknown>[]; policies: unknown[] };
  t.is(cfg.workloads.length, 6);
  const w = (n: string) => cfg.workloads.find((x) => x.name === n)!;
  t.like(w('mesh-b'), { namespace: 'other', serviceAccount: 'echo', protocol: 'HBONE', node: 'node2', workloadIps: ['10.244.2.3'], uid: 'Kubernetes//v1/Pod/other/mesh-b' });
  t.like(w('client'), { protocol: 'TCP', node: 'node1' });
  t.deepEqual(w('server-a').services, { 'default/echo.default.svc.cluster.local': { 80: 8080 } });
  t.deepEqual(w('client').services, {});
  t.deepEqual(cfg.services, [{ name: 'echo', namespace: 'default', hostname: 'echo.default.svc.cluster.local', vips: [`/${VIP}`], ports: { 80: 8080 } }]);
  t.is(cfg.policies.length, 1);
  const parsed = parseLocalConfig(readFileSync(cluster.configPath, 'utf8'), { trustDomain: 'cluster.local', clusterId: 'Kubernetes' });
  t.is(parsed.workloads.length, 6);
  t.true(readFileSync(cluster.caCert, 'utf8').includes('BEGIN CERTIFICATE'));
});

// ---------------------------------------------------------------- in-pod rules

const countRules = (s: string) => s.split('\n').filter((l) => l.startsWith('-A ')).sort();

test.serial('enrolled pods have the in-pod rules and policy route; others have none', (t) => {
  const save = iptablesSave(cluster.pod('mesh-a').ns);
  t.regex(save, /-A AMBIT_OUTPUT ! -d 127\.0\.0\.1\/32 -p tcp -m mark ! --mark 0x539\/0xfff -j REDIRECT --to-ports 15001/);
  t.regex(save, /-A AMBIT_PRERT ! -d 127\.0\.0\.1\/32 -p tcp -m tcp ! --dport 15008 -m mark ! --mark 0x539\/0xfff -j REDIRECT --to-ports 15006/);
  t.regex(save, /-A AMBIT_PRERT -m mark --mark 0x539\/0xfff -j CONNMARK --set-xmark 0x111\/0xfff/);
  t.regex(save, /-A AMBIT_PRERT -s 169\.254\.7\.127\/32 -p tcp -m tcp -j ACCEPT/);
  const ns = cluster.pod('mesh-a').ns;
  t.regex(ns.exec('ip', 'rule', 'show'), /32764:\s+from all fwmark 0x111\/0xfff lookup 100/);
  t.regex(ns.exec('ip', 'route', 'show', 'table', '100'), /local default dev lo/);
  t.notRegex(iptablesSave(cluster.pod('client').ns), /AMBIT/);
  t.regex(iptablesSave(cluster.node('node1').ns), new RegExp(`-A AMBIT_POSTRT -d ${ip('mesh-a')}/32 -p tcp -m owner --socket-exists -j SNAT --to-source ${PROBE_SNAT_IP}`));
});

test.serial('installing twice does not duplicate rules; removing twice is fine; reinstall restores them', (t) => {
  const ns = cluster.pod('mesh-c').ns;
  const before = countRules(iptablesSave(ns));
  const rulesBefore = ns.exec('ip', 'rule', 'show');
  installInpodRules(ns);
  installInpodRules(ns);
  t.deepEqual(countRules(iptablesSave(ns)), before);
  t.is(ns.exec('ip', 'rule', 'show'), rulesBefore);
  removeInpodRules(ns);
  removeInpodRules(ns);
  t.notRegex(iptablesSave(ns), /AMBIT/);
  t.notRegex(ns.exec('ip', 'rule', 'show'), /fwmark/);
  t.is(ns.exec('ip', 'route', 'show', 'table', '100').trim(), '');
  installInpodRules(ns, { dns: true });
  t.regex(iptablesSave(ns), /--dport 53 .*REDIRECT --to-ports 15053/);
  installInpodRules(ns);
  t.deepEqual(countRules(iptablesSave(ns)), before);
});

test.serial('captured: inbound TCP to an enrolled pod lands on 15006 with the original destination', async (t) => {
  const seen: { dst: string; src?: string }[] = [];
  const fake = await listenIn(cluster.pod('mesh-a').ns, '0.0.0.0', 15006, (s) => {
    const d = originalDst(socketFd(s));
    seen.push({ dst: `${d.address}:${d.port}`, src: s.remoteAddress });
    s.end('inbound-plaintext');
  });
  try {
    const r = await exchange(cluster.pod('client').ns, ip('mesh-a'), 8080, Buffer.from('x'), 5000);
    t.is(text(r), 'inbound-plaintext');
    const cross = await exchange(cluster.pod('server-b').ns, ip('mesh-a'), 9999, Buffer.from('x'), 5000);
    t.is(text(cross), 'inbound-plaintext');
    t.deepEqual(seen, [
      { dst: `${ip('mesh-a')}:8080`, src: ip('client') },
      { dst: `${ip('mesh-a')}:9999`, src: ip('server-b') },
    ]);
  } finally {
    fake.close();
  }
  // Nothing on 15006 (no ztunnel): the connection is refused rather than reaching the app on 8080.
  const refused = await exchange(cluster.pod('client').ns, ip('mesh-a'), 8080, Buffer.from('x'), 5000);
  t.is(refused.error, 'ECONNREFUSED');
});

test.serial('not captured: HBONE port 15008, and the node\'s own connections (SNATed to 169.254.7.127)', async (t) => {
  const hbone = await listenIn(cluster.pod('mesh-a').ns, '0.0.0.0', 15008, (s) => s.end('hbone-listener'));
  try {
    const r = await exchange(cluster.pod('client').ns, ip('mesh-a'), 15008, Buffer.alloc(0), 5000);
    t.is(text(r), 'hbone-listener');
  } finally {
    hbone.close();
  }
  const src = new Promise<string | undefined>((resolve) => {
    void listenIn(cluster.pod('mesh-a').ns, '0.0.0.0', 7001, (s) => {
      resolve(s.remoteAddress);
      s.resume();
      s.end('probe-ok');
    }).then((srv) => servers.push(srv));
  });
  await new Promise((r) => setTimeout(r, 50));
  const probe = await exchange(cluster.node('node1').ns, ip('mesh-a'), 7001, Buffer.alloc(0), 5000);
  t.is(text(probe), 'probe-ok');
  t.is(await src, PROBE_SNAT_IP);
});

test.serial('captured: outbound TCP from an enrolled pod lands on 15001 (pod IPs and VIPs); marked sockets and self-calls pass', async (t) => {
  const ns = cluster.pod('mesh-a').ns;
  const dsts: string[] = [];
  const fake = await listenIn(ns, '0.0.0.0', 15001, (s) => {
    const d = originalDst(socketFd(s));
    dsts.push(`${d.address}:${d.port}`);
    s.end('outbound');
  });
  try {
    t.is(text(await exchange(ns, ip('server-b'), 8080, Buffer.from('x'), 5000)), 'outbound');
    t.is(text(await exchange(ns, VIP, 80, Buffer.from('x'), 5000)), 'outbound');
    t.deepEqual(dsts, [`${ip('server-b')}:8080`, `${VIP}:80`]);
    // ztunnel's own sockets carry mark 0x539 and go straight out.
    const marked = await exchangeWith({ netnsFd: ns.fd, host: ip('server-b'), port: 8080, mark: 0x539 }, 'marked');
    t.is(text(marked), 'marked');
    // The app calling its own pod IP goes over lo and is not captured.
    t.is(text(await exchange(ns, ip('mesh-a'), 8080, Buffer.from('self'), 5000)), 'self');
    t.is(text(await exchange(ns, '127.0.0.1', 8080, Buffer.from('loopback'), 5000)), 'loopback');
    t.is(dsts.length, 2);
  } finally {
    fake.close();
  }
});

test.serial('spoofed source: replies to a marked transparent connection come back over lo (connmark 0x111, table 100)', async (t) => {
  const ns = cluster.pod('mesh-a').ns;
  const src = new Promise<string | undefined>((resolve) => {
    void listenIn(ns, '0.0.0.0', 7002, (s) => {
      resolve(s.remoteAddress);
      s.pipe(s);
    }).then((srv) => servers.push(srv));
  });
  await new Promise((r) => setTimeout(r, 50));
  // What ztunnel's inbound does: connect to the app from inside the pod with the client's address as source.
  const r = await exchangeWith(
    { netnsFd: ns.fd, host: ip('mesh-a'), port: 7002, mark: 0x539, transparent: true, bindAddress: ip('server-b') },
    'spoofed',
  );
  t.is(r.error, undefined);
  t.is(text(r), 'spoofed');
  t.is(await src, ip('server-b'));
});

// ---------------------------------------------------------------- ZDS

test.serial('ZDS: hello, then one Add per enrolled pod of the node with its netns fd, then SnapshotSent', async (t) => {
  const fdsBefore = fdCount();
  const zds = cluster.zds('node2');
  const z = new FakeZtunnel(zds.path);
  const adds = new Map<string, { name: string; namespace: string; serviceAccount: string; sameNs: boolean }>();
  for (;;) {
    const m = await z.next();
    t.truthy(m.req, 'decodable request');
    if (m.req!.payload === 'snapshotSent') {
      t.is(m.fd, undefined);
      z.ack();
      break;
    }
    t.is(m.req!.payload, 'add');
    t.not(m.fd, undefined, 'Add carries the netns fd');
    const pod = cluster.allPods().find((p) => p.uid === m.req!.add!.uid)!;
    adds.set(m.req!.add!.uid, { ...m.req!.add!.workloadInfo!, sameNs: sameNetns(m.fd!, pod.ns.name) });
    closeFd(m.fd!);
    z.ack();
  }
  t.deepEqual(Object.fromEntries(adds), {
    'Kubernetes//v1/Pod/other/mesh-b': { name: 'mesh-b', namespace: 'other', serviceAccount: 'echo', sameNs: true },
    'Kubernetes//v1/Pod/default/mesh-c': { name: 'mesh-c', namespace: 'default', serviceAccount: 'echo', sameNs: true },
  });
  await zds.waitSynced(1);
  t.is(zds.connections, 1);
  t.true(zds.connected);
  t.true(zds.events.filter((e) => e.snapshot).every((e) => e.outcome === 'ack' && e.error === ''));
  z.close();
  await new Promise((r) => setTimeout(r, 100));
  t.false(zds.connected);
  t.is(fdCount(), fdsBefore, 'no fd leaked (server side fds closed after sending)');
});

test.serial('ZDS: live Add/Del after the snapshot; the Ack error (NACK) is what enroll() resolves with', async (t) => {
  const zds = cluster.zds('node1');
  const z = new FakeZtunnel(zds.path);
  const snap = await z.next();
  t.is(snap.req!.payload, 'add');
  t.is(snap.req!.add!.uid, cluster.pod('mesh-a').uid);
  closeFd(snap.fd!);
  z.ack();
  t.is((await z.next()).req!.payload, 'snapshotSent');
  z.ack();
  await zds.waitSynced(1);

  const enrolled = cluster.enroll('server-a');
  const add = await z.next();
  t.is(add.req!.add!.uid, cluster.pod('server-a').uid);
  t.true(sameNetns(add.fd!, cluster.pod('server-a').ns.name));
  closeFd(add.fd!);
  z.ack('cannot proxy server-a: boom');
  t.is(await enrolled, 'cannot proxy server-a: boom');
  t.regex(iptablesSave(cluster.pod('server-a').ns), /REDIRECT --to-ports 15001/);
  t.regex(readFileSync(cluster.configPath, 'utf8'), /name: server-a[\s\S]*?protocol: HBONE/);

  const unenrolled = cluster.unenroll('server-a');
  const del = await z.next();
  t.deepEqual(del.req, { payload: 'del', del: { uid: cluster.pod('server-a').uid } });
  t.is(del.fd, undefined);
  z.ack();
  t.is(await unenrolled, '');
  t.notRegex(iptablesSave(cluster.pod('server-a').ns), /AMBIT/);
  t.is(text(await exchange(cluster.pod('client').ns, ip('server-a'), 8080, Buffer.from('direct'), 5000)), 'direct');

  // sendRaw: the bytes arrive as one packet, with an fd if given; the ack resolves the promise.
  const raw = zds.sendRaw(Buffer.from([0xff, 0x01, 0x02]), cluster.pod('client').ns.fd);
  const got = await z.next();
  t.deepEqual([...got.data], [0xff, 0x01, 0x02]);
  t.true(sameNetns(got.fd!, cluster.pod('client').ns.name));
  closeFd(got.fd!);
  z.ack('malformed');
  t.is(await raw, 'malformed');
  z.close();
});

test.serial('ZDS: a reconnecting ztunnel gets the full snapshot again; an unacked request times out and drops the connection', async (t) => {
  const zds = cluster.zds('node1');
  const conns = zds.connections;
  const z = new FakeZtunnel(zds.path);
  await zds.waitConnected(conns + 1);
  const first = await z.next();
  t.is(first.req!.add!.uid, cluster.pod('mesh-a').uid);
  closeFd(first.fd!);
  // Do not ack: after the ack timeout the server gives up on this connection.
  const eof = await z.next(5000);
  t.true(eof.eof);
  t.false(zds.connected);
  t.true(zds.events.some((e) => e.conn === conns + 1 && e.outcome === 'timeout'));
  t.regex(zds.closes.at(-1)!, /ack timeout/);
  z.close();

  const again = new FakeZtunnel(zds.path);
  await zds.waitConnected(conns + 2);
  const m = await again.next();
  t.is(m.req!.add!.uid, cluster.pod('mesh-a').uid);
  closeFd(m.fd!);
  again.ack();
  t.is((await again.next()).req!.payload, 'snapshotSent');
  again.ack();
  await zds.waitSynced(2);
  again.close();
});

test.serial('ZDS: a bad hello is refused; requests without a connection fail or wait for the snapshot', async (t) => {
  const zds = cluster.zds('node2');
  const conns = zds.connections;
  const bad = new FakeZtunnel(zds.path, ZdsHelloCodec.encode({ version: 'NOT_USED' }));
  t.true((await bad.next()).eof);
  bad.close();
  t.is(zds.connections, conns);
  await new Promise((r) => setTimeout(r, 50));
  t.false(zds.connected);
  await t.throwsAsync(zds.sendRaw(Buffer.from([1])), { message: /no ztunnel connected/ });
  t.is(await cluster.unenroll('mesh-c'), undefined); // recorded: not in the next snapshot
  t.deepEqual(zds.podUids(), [cluster.pod('mesh-b').uid]);
  t.is(await cluster.enroll('mesh-c'), undefined);
  t.deepEqual(zds.podUids().sort(), [cluster.pod('mesh-b').uid, cluster.pod('mesh-c').uid].sort());
});

test.serial('ZDS server close() closes its fds and removes the socket', async (t) => {
  const { ZdsServer } = await import('./lab/zds-server.js');
  const before = fdCount();
  const path = `${cluster.lab.dir}/extra.sock`;
  const srv = new ZdsServer(path, { ackTimeoutMs: 1000 });
  await srv.addPod({ uid: 'u1', name: 'p', namespace: 'default', serviceAccount: 'sa', netns: cluster.pod('client').ns });
  const z = new FakeZtunnel(path);
  const m = await z.next();
  t.true(sameNetns(m.fd!, cluster.pod('client').ns.name));
  closeFd(m.fd!);
  srv.close();
  t.true((await z.next()).eof);
  z.close();
  t.throws(() => statSync(path));
  t.is(fdCount(), before);
});
