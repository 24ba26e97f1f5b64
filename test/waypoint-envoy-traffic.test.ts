// Real traffic through a real Envoy waypoint on loopback: an HBONE client (ztunnel's TS client, as the source
// ztunnel) CONNECTs to connect_terminate with :authority VIP:port; Envoy routes it through main_internal (L7 policy,
// routes) and connect_originate to a stand-in destination ztunnel (HBONE server presenting the pod's identity), which
// connects to the app. Checks routing, the policies on the peer identity in filter state, 503 without endpoints,
// a TCP port, that connect_originate insists on the endpoint's exact identity, undeclared ports (sniffed: HTTP gets
// routes and policy, raw TCP and server-first protocols still pass) and an endpoint outside the mesh (plaintext).
import test from 'ava';
import http, { type IncomingHttpHeaders as H1Headers } from 'node:http';
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { HttpRouteRule, WaypointModel } from '../waypoint-controller/waypoint/model.js';
import { waypointBootstrap, waypointEnvoyResources, waypointSecrets } from '../waypoint-controller/waypoint/envoy/index.js';
import { ResourceStore, storeEnvoyResources, WaypointStores, XdsServer } from '../waypoint-controller/xds/index.js';
import { dialHbone } from '../ztunnel/hbone/client.js';
import { HboneServer } from '../ztunnel/hbone/server.js';
import type { WorkloadCertificate } from '../ztunnel/identity/manager.js';
import { LocalCa } from '../ztunnel/identity/local-ca.js';
import { formatIdentity, parseIdentity } from '../ztunnel/identity/spiffe.js';
import type { SocketFactory } from '../ztunnel/net/sockets.js';
import { EnvoyProc, envoyAvailable } from './lab/envoy.js';
import { eventually } from './lab/ztunnel-proc.js';

const TD = 'cluster.local';
const id = (sa: string) => `${TD}/ns/shop/sa/${sa}`;
const WAYPOINT_ID = `spiffe://${id('waypoint')}`;
const silent = pino({ level: 'silent' });
/** Every socket the test opens or accepts, destroyed at the end so nothing keeps the worker alive. */
const opened = new Set<net.Socket>();
const track = (sock: net.Socket) => (opened.add(sock), sock.once('close', () => opened.delete(sock)), sock);

const sockets: SocketFactory = {
  connect: (ip, port) => track(net.connect({ host: ip, port, allowHalfOpen: true })),
  listen: (server, host, port) => new Promise((resolve) => server.listen(port, host, () => resolve())),
};

async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function workloadCert(ca: LocalCa, sa: string): Promise<WorkloadCertificate> {
  const c = await ca.issue(parseIdentity(`spiffe://${id(sa)}`), 3600);
  return { identity: `spiffe://${id(sa)}`, ...c, serial: '1', notBefore: new Date(), notAfter: new Date(Date.now() + 3600_000) };
}

/** An app: answers with who it is, the path and the headers it got. */
async function app(who: string, host: string): Promise<{ port: number; server: http.Server }> {
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ who, method: req.method, path: req.url, headers: req.headers }));
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return { port: (server.address() as net.AddressInfo).port, server };
}

interface Seen {
  peer: string;
  authority: string;
}

/** A destination ztunnel stand-in on ip:port presenting `cert`: CONNECT -> TCP to :authority. */
async function fakeZtunnel(cert: WorkloadCertificate, ip: string, port: number, seen: Seen[]): Promise<HboneServer> {
  const z = new HboneServer(
    cert,
    TD,
    (stream, headers: IncomingHttpHeaders, peer) => {
      const authority = String(headers[':authority']);
      seen.push({ peer: formatIdentity(peer.identity), authority });
      const [host, p] = [authority.slice(0, authority.lastIndexOf(':')), Number(authority.slice(authority.lastIndexOf(':') + 1))];
      const up = track(net.connect({ host, port: p, allowHalfOpen: true }));
      stream.once('close', () => up.destroy());
      up.once('connect', () => {
        stream.respond({ ':status': 200 });
        up.pipe(stream);
        stream.pipe(up);
      });
      up.on('error', () => stream.respond({ ':status': 503 }, { endStream: true }));
    },
    silent,
  );
  await new Promise<void>((r) => z.tls.listen(port, ip, () => r()));
  return z;
}

/** One HTTP/1.1 request through a CONNECT tunnel; resolves with the status and body (the tunnel's status if not 200). */
async function viaTunnel(session: ClientHttp2Session, authority: string, raw: string): Promise<{ tunnel: number; status: number; body: string; reset?: string }> {
  const s = session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
  let reset: string | undefined;
  s.on('error', (e: Error) => (reset = e.message));
  let data = '';
  s.setEncoding('utf8');
  s.on('data', (c: string) => (data += c));
  const closed = new Promise((r) => s.once('close', r));
  const headers = await Promise.race([new Promise<IncomingHttpHeaders>((r) => s.once('response', r)), closed.then(() => undefined)]);
  const tunnel = Number(headers?.[':status'] ?? 0);
  if (tunnel !== 200) return { tunnel, status: 0, body: '', ...(reset ? { reset } : {}) };
  // No half-close: Envoy's HTTP connection manager treats a client FIN as the end of the connection.
  s.write(raw);
  await Promise.race([closed, new Promise((r) => s.once('end', r))]);
  const m = /^HTTP\/1\.1 (\d+)/.exec(data);
  return { tunnel, status: m ? Number(m[1]) : 0, body: data.slice(data.indexOf('\r\n\r\n') + 4), ...(reset ? { reset } : {}) };
}

/** http_inspector's wait on undeclared ports (long enough that a loaded host still sniffs HTTP in time). */
const DETECTION_MS = 1000;

const get = (path: string, extra = '', method = 'GET') => `${method} ${path} HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n${extra}\r\n`;

test('HBONE through a real Envoy waypoint: routes, L7 policy on the peer identity, TCP, 503, exact destination identity', async (t) => {
  if (!envoyAvailable()) return t.pass('no Envoy binary; skipped');
  const dir = mkdtempSync(join(tmpdir(), 'ambit-wp-traffic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await LocalCa.open(join(dir, 'ca.pem'), join(dir, 'ca-key.pem'), TD);
  const [wpCert, webCert, otherCert, reviewsCert, v2Cert] = await Promise.all(['waypoint', 'web', 'other', 'reviews', 'reviews-v2'].map((sa) => workloadCert(ca, sa)));

  // Each app listens on its pod IP, where its ztunnel connects.
  const reviews = await app('reviews', '127.0.0.1');
  const v2 = await app('reviews-v2', '127.0.0.3');
  const echo = net.createServer({ allowHalfOpen: true }, (s) => track(s).pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const echoPort = (echo.address() as net.AddressInfo).port;
  // A server-first app (speaks before the client, as SMTP or MySQL), and an app outside the mesh on 127.0.0.5 (no
  // ztunnel there: only plaintext reaches it).
  const banner = net.createServer((s) => track(s).end('220 banner\r\n'));
  await new Promise<void>((r) => banner.listen(0, '127.0.0.1', () => r()));
  const bannerPort = (banner.address() as net.AddressInfo).port;
  const legacy = await app('legacy', '127.0.0.5');
  t.teardown(() => {
    banner.close();
    legacy.server.closeAllConnections();
    legacy.server.close();
  });
  t.teardown(() => {
    for (const sock of opened) sock.destroy();
    reviews.server.closeAllConnections();
    v2.server.closeAllConnections();
    reviews.server.close();
    v2.server.close();
    echo.close();
  });

  // Destination ztunnels: reviews on 127.0.0.1, reviews-v2 on 127.0.0.3, and on 127.0.0.4 one presenting the
  // wrong identity for the endpoint there.
  const zport = await freePort();
  const seen: Seen[] = [];
  const zs = [
    await fakeZtunnel(reviewsCert!, '127.0.0.1', zport, seen),
    await fakeZtunnel(v2Cert!, '127.0.0.3', zport, seen),
    await fakeZtunnel(reviewsCert!, '127.0.0.4', zport, seen),
  ];
  t.teardown(() => zs.forEach((z) => (z.shutdown(), z.destroyAll())));

  // /api with x-canary: yes -> reviews-v2 (with a header set), else the service itself.
  const canary: HttpRouteRule = {
    name: 'shop/canary/0',
    matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ type: 'Exact', name: 'x-canary', value: 'yes' }], queryParams: [] }],
    filters: [{ type: 'RequestHeaderModifier', changes: { set: [{ name: 'x-via', value: 'waypoint' }], add: [], remove: [] } }],
    backends: [{ namespace: 'shop', hostname: 'reviews-v2.shop.svc.cluster.local', port: 9080, weight: 100 }],
  };
  const toOwn = (name: string, port: number): HttpRouteRule => ({ name: `shop/${name}/1`, matches: [], filters: [], backends: [{ namespace: 'shop', hostname: `${name}.shop.svc.cluster.local`, port, weight: 1 }] });
  const model: WaypointModel = {
    namespace: 'shop',
    name: 'waypoint',
    trustDomain: TD,
    services: [
      {
        namespace: 'shop',
        name: 'reviews',
        hostname: 'reviews.shop.svc.cluster.local',
        vips: ['10.96.0.20'],
        ports: [
          {
            port: 9080,
            targetPort: 8080,
            protocol: 'http',
            routes: [canary, toOwn('reviews', 9080)],
          },
          { port: 9090, targetPort: 9090, protocol: 'tcp', routes: [] },
        ],
        endpoints: [{ ip: '127.0.0.1', ports: { 9080: reviews.port, 9090: echoPort }, identity: id('reviews'), healthy: true, hbone: true }],
      },
      {
        namespace: 'shop',
        name: 'echo',
        hostname: 'echo.shop.svc.cluster.local',
        vips: ['10.96.0.50'],
        ports: [{ port: 7, targetPort: 7, protocol: 'tcp', routes: [] }],
        endpoints: [{ ip: '127.0.0.1', ports: { 7: echoPort }, identity: id('reviews'), healthy: true, hbone: true }],
      },
      {
        namespace: 'shop',
        name: 'empty',
        hostname: 'empty.shop.svc.cluster.local',
        vips: ['10.96.0.30'],
        ports: [{ port: 80, targetPort: 80, protocol: 'http', routes: [] }],
        endpoints: [{ ip: '127.0.0.1', ports: { 80: reviews.port }, identity: id('reviews'), healthy: false, hbone: true }],
      },
      {
        namespace: 'shop',
        name: 'imposter',
        hostname: 'imposter.shop.svc.cluster.local',
        vips: ['10.96.0.40'],
        ports: [{ port: 80, targetPort: 80, protocol: 'http', routes: [] }],
        endpoints: [{ ip: '127.0.0.4', ports: { 80: reviews.port }, identity: id('reviews-v2'), healthy: true, hbone: true }],
      },
      // Undeclared port 80 (sniffed) on three services: HTTP with a route, a raw TCP echo, a server-first app.
      {
        namespace: 'shop',
        name: 'ratings',
        hostname: 'ratings.shop.svc.cluster.local',
        vips: ['10.96.0.60'],
        ports: [{ port: 80, targetPort: 80, protocol: 'unknown', routes: [canary, toOwn('ratings', 80)] }],
        endpoints: [{ ip: '127.0.0.1', ports: { 80: reviews.port }, identity: id('reviews'), healthy: true, hbone: true }],
      },
      {
        namespace: 'shop',
        name: 'echo80',
        hostname: 'echo80.shop.svc.cluster.local',
        vips: ['10.96.0.70'],
        ports: [{ port: 80, targetPort: 80, protocol: 'unknown', routes: [] }],
        endpoints: [{ ip: '127.0.0.1', ports: { 80: echoPort }, identity: id('reviews'), healthy: true, hbone: true }],
      },
      {
        namespace: 'shop',
        name: 'banner',
        hostname: 'banner.shop.svc.cluster.local',
        vips: ['10.96.0.80'],
        ports: [
          { port: 80, targetPort: 80, protocol: 'unknown', routes: [] },
          { port: 2525, targetPort: 2525, protocol: 'tcp', routes: [] },
        ],
        endpoints: [{ ip: '127.0.0.1', ports: { 80: bannerPort, 2525: bannerPort }, identity: id('reviews'), healthy: true, hbone: true }],
      },
      // An endpoint outside the mesh: the waypoint connects in plaintext, not over HBONE.
      {
        namespace: 'shop',
        name: 'legacy',
        hostname: 'legacy.shop.svc.cluster.local',
        vips: ['10.96.0.90'],
        ports: [{ port: 8000, targetPort: legacy.port, protocol: 'http', routes: [] }],
        endpoints: [{ ip: '127.0.0.5', ports: { 8000: legacy.port }, identity: id('legacy'), healthy: true, hbone: false }],
      },
    ],
    backends: [
      {
        namespace: 'shop',
        name: 'reviews-v2',
        hostname: 'reviews-v2.shop.svc.cluster.local',
        vips: ['10.96.0.21'],
        ports: [{ port: 9080, targetPort: 9080, protocol: 'http', routes: [] }],
        endpoints: [{ ip: '127.0.0.3', ports: { 9080: v2.port }, identity: id('reviews-v2'), healthy: true, hbone: true }],
      },
    ],
    policies: [
      { name: 'shop/no-delete', action: 'DENY', appliesTo: ['shop/reviews.shop.svc.cluster.local'], rules: [{ from: [{ principals: [id('web')] }], to: [{ methods: ['DELETE'] }], when: [] }] },
      { name: 'shop/web-only', action: 'ALLOW', appliesTo: 'all', rules: [{ from: [{ principals: [id('web')] }], to: [], when: [] }] },
    ],
  };

  // Control plane (plaintext here; the TLS + token path is waypoint-envoy-xds.test.ts).
  const stores = new WaypointStores();
  const server = new XdsServer({ store: new ResourceStore(), debounceMs: 5, log: silent, waypoints: { stores, waypointOf: () => 'shop/waypoint' } });
  t.teardown(() => server.close(100));
  const xdsPort = await server.listen('127.0.0.1:0');
  const hbonePort = await freePort();
  storeEnvoyResources(stores.get('shop/waypoint'), {
    ...waypointEnvoyResources(model, { hbonePort, upstreamHbonePort: zport, connectTimeoutMs: 2000, protocolDetectionTimeoutMs: DETECTION_MS }),
    secrets: waypointSecrets({ certChainPem: wpCert!.chainPem.join(''), privateKeyPem: wpCert!.privateKeyPem, rootCertPem: wpCert!.rootsPem[0]! }),
  });
  const bootstrap = waypointBootstrap({
    xdsHost: '127.0.0.1',
    xdsPort,
    xdsServerName: 'istiod.istio-system.svc',
    rootCertPath: '',
    tokenPath: '',
    clusterId: 'Kubernetes',
    insecure: true,
    readinessPort: await freePort(),
    statsPort: await freePort(),
    adminPort: await freePort(),
  });
  const envoy = new EnvoyProc({ bootstrap, node: 'waypoint~127.0.0.1~waypoint-1.shop~shop.svc.cluster.local', cluster: 'waypoint.shop', logLevel: process.env.ENVOY_LOG });
  t.teardown(() => envoy.stop(2000, !!process.env.KEEP_ENVOY));
  await envoy.started();
  await eventually('Envoy ready', async () => (await envoy.admin('GET', '/ready')).status === 200, 20_000);
  await eventually('connect_terminate listening', async () => (await envoy.admin('GET', '/listeners')).body.includes(`0.0.0.0:${hbonePort}`), 10_000);

  const dial = (cert: WorkloadCertificate) => dialHbone({ ip: '127.0.0.1', port: hbonePort, expectedIdentities: [WAYPOINT_ID] }, cert, sockets);
  const web = await dial(webCert!);
  const other = await dial(otherCert!);
  t.teardown(() => (web.destroy(), other.destroy()));
  const debug = () => envoy.log().slice(-3000);

  // Default route -> reviews, through the destination ztunnel as the waypoint, to podIP:targetPort.
  const r1 = await viaTunnel(web, '10.96.0.20:9080', get('/hello'));
  t.is(r1.status, 200, JSON.stringify(r1) + debug());
  if (r1.status !== 200) return;
  t.is(JSON.parse(r1.body).who, 'reviews');
  t.deepEqual(seen.at(-1), { peer: WAYPOINT_ID, authority: `127.0.0.1:${reviews.port}` });

  // The header match -> reviews-v2 with the header set.
  const r2 = await viaTunnel(web, '10.96.0.20:9080', get('/api/x', 'x-canary: yes\r\n'));
  t.is(r2.status, 200);
  const b2 = JSON.parse(r2.body) as { who: string; headers: H1Headers };
  t.is(b2.who, 'reviews-v2');
  t.is(b2.headers['x-via'], 'waypoint');
  t.deepEqual(seen.at(-1), { peer: WAYPOINT_ID, authority: `127.0.0.3:${v2.port}` });

  // Policies match the HBONE client's identity, which only filter state carries into main_internal.
  t.like(await viaTunnel(web, '10.96.0.20:9080', get('/', '', 'DELETE')), { tunnel: 200, status: 403 }, 'DENY DELETE from web');
  t.like(await viaTunnel(other, '10.96.0.20:9080', get('/')), { tunnel: 200, status: 403 }, 'ALLOW only web');
  // Multiplexed on one HBONE connection, each stream keeps its own identity (hashable filter state).
  const [a, b] = await Promise.all([viaTunnel(web, '10.96.0.20:9080', get('/a')), viaTunnel(web, '10.96.0.20:9080', get('/b'))]);
  t.deepEqual([a.status, b.status], [200, 200]);

  // Keep-alive: two requests over one tunnel (one HTTP/1.1 connection inside it), both answered, no reset.
  {
    const st = web.request({ ':method': 'CONNECT', ':authority': '10.96.0.20:9080' }, { endStream: false });
    let reset = '';
    st.on('error', (e: Error) => (reset = e.message));
    let data = '';
    st.setEncoding('utf8');
    st.on('data', (c: string) => (data += c));
    const responses = () => data.split('HTTP/1.1 200').length - 1;
    const ka = (path: string) => `GET ${path} HTTP/1.1\r\nHost: reviews\r\n\r\n`;
    st.write(ka('/one'));
    await eventually('first response', () => responses() === 1 && data.endsWith('}'), 5000);
    st.write(ka('/two'));
    await eventually('second response', () => responses() === 2 && data.endsWith('}'), 5000);
    t.regex(data, /"path":"\/one"[\s\S]*"path":"\/two"/);
    st.close();
    await new Promise((r) => st.once('close', r));
    t.is(reset, '', 'closed by us, not reset');
  }

  // No healthy endpoint -> 503 from Envoy; the wrong identity at the endpoint -> the TLS check fails -> 503.
  t.like(await viaTunnel(web, '10.96.0.30:80', get('/')), { tunnel: 200, status: 503 }, 'no healthy endpoint');
  const before = seen.length;
  t.like(await viaTunnel(web, '10.96.0.40:80', get('/')), { tunnel: 200, status: 503 }, 'a destination presenting another identity is refused');
  t.is(seen.length, before, 'nothing reached the imposter');
  const san = await envoy.stats('ssl.fail_verify_san');
  t.true((san.get(`cluster.connect_originate|${id('reviews-v2')}.ssl.fail_verify_san`) ?? 0) >= 1, JSON.stringify([...san]));

  // TCP: bytes both ways for web; `other` is not allowed. On reviews' TCP port the DENY (from web, DELETE) keeps
  // only what TCP can check (from web), so web's connection is closed there: fail closed.
  const tcp = async (session: ClientHttp2Session, authority: string, payload = 'ping'): Promise<{ tunnel: number; got: string }> => {
    const s = session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
    s.on('error', () => {});
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => (got += c));
    const h = await new Promise<IncomingHttpHeaders>((r) => (s.once('response', r), s.once('close', () => r({}))));
    s.write(payload);
    await Promise.race([new Promise((r) => s.once('close', r)), eventually('echo', () => got === payload, DETECTION_MS + 2000).catch(() => undefined)]);
    s.close();
    return { tunnel: Number(h[':status']), got };
  };
  t.deepEqual(await tcp(web, '10.96.0.50:7'), { tunnel: 200, got: 'ping' });
  t.deepEqual(await tcp(other, '10.96.0.50:7'), { tunnel: 200, got: '' }, 'network RBAC closes it');
  t.deepEqual(await tcp(web, '10.96.0.20:9090'), { tunnel: 200, got: '' }, 'fail closed');

  const stats = await envoy.stats('rbac');
  t.true([...stats].some(([k, v]) => k.endsWith('rbac.denied') && v >= 2), JSON.stringify([...stats]));

  // Undeclared port, HTTP: sniffed to the HTTP chain, so the route (canary -> reviews-v2, header set) and the HTTP
  // RBAC (ALLOW web only: a 403 response, not a closed connection) apply.
  const u1 = await viaTunnel(web, '10.96.0.60:80', get('/api/x', 'x-canary: yes\r\n'));
  t.is(u1.status, 200, JSON.stringify(u1) + debug());
  t.like(JSON.parse(u1.body || '{}'), { who: 'reviews-v2', headers: { 'x-via': 'waypoint' } });
  t.is(JSON.parse((await viaTunnel(web, '10.96.0.60:80', get('/plain'))).body || '{}').who, 'reviews');
  t.like(await viaTunnel(other, '10.96.0.60:80', get('/')), { tunnel: 200, status: 403 }, 'HTTP RBAC on the sniffed HTTP chain');
  // Undeclared port, raw TCP: not HTTP, so the TCP chain with the network RBAC (web allowed, other closed). Bytes
  // that cannot start a request line are told apart at once; 'ping' could (a token), so it waits for the timeout.
  t.deepEqual(await tcp(web, '10.96.0.70:80', '{"ping":1}\n'), { tunnel: 200, got: '{"ping":1}\n' });
  t.deepEqual(await tcp(web, '10.96.0.70:80'), { tunnel: 200, got: 'ping' });
  t.deepEqual(await tcp(other, '10.96.0.70:80'), { tunnel: 200, got: '' }, 'network RBAC on the sniffed TCP chain');
  // Server-first: the client sends nothing. On the undeclared port the inspector gives up after its timeout and the
  // connection continues to the TCP chain, so the banner arrives late by the timeout (not never); on a declared TCP
  // port the inspector is off and it arrives at once.
  const bannerVia = async (authority: string): Promise<{ got: string; waited: number }> => {
    const started = Date.now();
    const st = web.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
    st.on('error', () => {});
    let got = '';
    st.setEncoding('utf8');
    st.on('data', (c: string) => (got += c));
    await eventually('banner', () => got.includes('220 banner'), DETECTION_MS + 5000).catch(() => undefined);
    st.close();
    return { got, waited: Date.now() - started };
  };
  const late = await bannerVia('10.96.0.80:80');
  t.is(late.got, '220 banner\r\n', debug());
  t.true(late.waited >= DETECTION_MS - 100, `waited ${late.waited} ms for the inspector's timeout`);
  const direct = await bannerVia('10.96.0.80:2525');
  t.is(direct.got, '220 banner\r\n');
  t.true(direct.waited < DETECTION_MS, `waited ${direct.waited} ms on a declared port`);
  const sniffed = await envoy.stats('http_inspector');
  t.true((sniffed.get('http_inspector.http11_found') ?? 0) >= 3, JSON.stringify([...sniffed]));
  t.true((sniffed.get('http_inspector.http_not_found') ?? 0) >= 1, JSON.stringify([...sniffed]));

  // An endpoint outside the mesh: reached in plaintext at podIP:targetPort, no ztunnel involved.
  const before2 = seen.length;
  const p1 = await viaTunnel(web, '10.96.0.90:8000', get('/old'));
  t.is(p1.status, 200, JSON.stringify(p1) + debug());
  t.like(JSON.parse(p1.body || '{}'), { who: 'legacy', path: '/old' });
  t.is(seen.length, before2, 'no HBONE for it');
});
