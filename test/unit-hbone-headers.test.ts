// Unit tests for HBONE request headers: baggage, forwarded, traceparent and CONNECT validation.
import { isDeepStrictEqual } from 'node:util';
import test from 'ava';
import fc from 'fast-check';
import {
  buildBaggage, buildConnectHeaders, buildForwarded, checkConnectRequest, newTraceparent, parseBaggage, parseForwardedFor,
  type BaggageSource,
} from '../ztunnel/hbone/headers.js';
import { canonicalIp } from '../ztunnel/net/ip.js';

const SOURCE: BaggageSource = {
  clusterId: 'Kubernetes', namespace: 'shop', workloadType: 'deployment', workloadName: 'api', canonicalName: 'api', canonicalRevision: 'v1',
};
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/;

// ---------------------------------------------------------------- baggage

test('buildBaggage: Istio keys in order', (t) => {
  t.is(
    buildBaggage(SOURCE),
    'k8s.cluster.name=Kubernetes,k8s.namespace.name=shop,k8s.deployment.name=api,service.name=api,service.version=v1',
  );
});

test('buildBaggage: empty values are left out, an empty workload type means pod', (t) => {
  t.is(buildBaggage({ ...SOURCE, clusterId: '', canonicalRevision: '', workloadType: '' }), 'k8s.namespace.name=shop,k8s.pod.name=api,service.name=api');
  t.is(buildBaggage({ clusterId: '', namespace: '', workloadType: '', workloadName: '', canonicalName: '', canonicalRevision: '' }), '');
});

test('buildBaggage: values are percent-encoded', (t) => {
  const b = buildBaggage({ ...SOURCE, canonicalName: 'a,b=c;d e%', canonicalRevision: 'é' });
  t.true(b.includes('service.name=a%2Cb%3Dc%3Bd%20e%25'));
  t.true(b.includes('service.version=%C3%A9'));
});

test('parseBaggage: full round trip', (t) => {
  t.deepEqual(parseBaggage(buildBaggage(SOURCE)), SOURCE);
});

test('parseBaggage: missing, empty and foreign members', (t) => {
  t.deepEqual(parseBaggage(undefined), {});
  t.deepEqual(parseBaggage(''), {});
  t.deepEqual(parseBaggage('userId=alice,k8s.namespace.name=shop,garbage,=x'), { namespace: 'shop' });
});

test('parseBaggage: whitespace around members, properties after ";" are ignored', (t) => {
  t.deepEqual(parseBaggage(' k8s.namespace.name = shop ;prop=1 , service.version=v2;x'), { namespace: 'shop', canonicalRevision: 'v2' });
});

test('parseBaggage: a badly encoded member is skipped, the others kept', (t) => {
  t.deepEqual(parseBaggage('service.name=%E0%A4%A,k8s.namespace.name=shop'), { namespace: 'shop' });
});

test('parseBaggage: the workload type comes from the key', (t) => {
  t.deepEqual(parseBaggage('k8s.cronjob.name=nightly'), { workloadType: 'cronjob', workloadName: 'nightly' });
  t.deepEqual(parseBaggage('k8s.Deploy-1.name=x'), {}, 'not a workload type');
});

test('property: baggage round trip for any values', (t) => {
  const value = fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: fc.constantFrom(',', ';', '=', '%', ' ', '"', 'a', '\t') }));
  fc.assert(
    fc.property(
      fc.record({
        clusterId: value, namespace: value, workloadName: value, canonicalName: value, canonicalRevision: value,
        workloadType: fc.constantFrom('pod', 'deployment', 'job', 'cronjob'),
      }),
      (src) => {
        const got = parseBaggage(buildBaggage(src));
        const want: Record<string, string> = {};
        for (const k of ['clusterId', 'namespace', 'workloadName', 'canonicalName', 'canonicalRevision'] as const) if (src[k] !== '') want[k] = src[k];
        if (src.workloadName !== '') want.workloadType = src.workloadType;
        return isDeepStrictEqual(got, want);
      },
    ),
  );
  t.pass();
});

// ---------------------------------------------------------------- forwarded

test('buildForwarded: IPv4, IPv6 in brackets, host only when a service was addressed', (t) => {
  t.is(buildForwarded('10.0.0.1', 40000), 'for="10.0.0.1:40000"');
  t.is(buildForwarded('fd00::1', 40000), 'for="[fd00::1]:40000"');
  t.is(buildForwarded('10.0.0.1', 1, 'api.shop.svc.cluster.local'), 'for="10.0.0.1:1";host=api.shop.svc.cluster.local');
  t.is(buildForwarded('10.0.0.1', 1, ''), 'for="10.0.0.1:1"');
});

test('parseForwardedFor: reads the first element\'s for', (t) => {
  t.deepEqual(parseForwardedFor('for="10.0.0.1:40000"'), { ip: '10.0.0.1', port: 40000 });
  t.deepEqual(parseForwardedFor('for="[FD00::1]:40000";host=api'), { ip: 'fd00::1', port: 40000 });
  t.deepEqual(parseForwardedFor('host=api; For=10.0.0.1:5'), { ip: '10.0.0.1', port: 5 });
  t.deepEqual(parseForwardedFor('for="10.0.0.1:1", for="10.0.0.2:2"'), { ip: '10.0.0.1', port: 1 });
  t.deepEqual(parseForwardedFor('for="[::ffff:10.0.0.1]:7"'), { ip: '10.0.0.1', port: 7 });
});

test('parseForwardedFor: absent or malformed', (t) => {
  for (const h of [undefined, '', 'host=api', 'for=', 'for="unknown"', 'for="_hidden"', 'for="10.0.0.1"', 'for="fd00::1:80"', 'by="10.0.0.1:1"', 'host=a, for="10.0.0.1:1"']) {
    t.is(parseForwardedFor(h), undefined, String(h));
  }
});

test('property: parseForwardedFor(buildForwarded(ip, port, host)) gives the canonical address back', (t) => {
  fc.assert(
    fc.property(
      fc.oneof(fc.ipV4(), fc.ipV6()),
      fc.integer({ min: 1, max: 65535 }),
      fc.option(fc.domain(), { nil: undefined }),
      (ip, port, host) => {
        const got = parseForwardedFor(buildForwarded(ip, port, host));
        return isDeepStrictEqual(got, { ip: canonicalIp(ip), port });
      },
    ),
  );
  t.pass();
});

// ---------------------------------------------------------------- traceparent and CONNECT headers

test('newTraceparent: W3C format, not sampled, fresh each time (also across refills of its random pool)', (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 400; i++) {
    const tp = newTraceparent();
    t.regex(tp, TRACEPARENT);
    seen.add(tp);
  }
  t.is(seen.size, 400);
});

test('buildConnectHeaders: authority, baggage, forwarded, traceparent', (t) => {
  const h = buildConnectHeaders({ dstIp: 'fd00::5', dstPort: 8080, srcIp: '10.0.0.1', srcPort: 40000, baggage: buildBaggage(SOURCE), serviceHost: 'api.shop' });
  t.is(h[':method'], 'CONNECT');
  t.is(h[':authority'], '[fd00::5]:8080');
  t.is(h.baggage, buildBaggage(SOURCE));
  t.is(h.forwarded, 'for="10.0.0.1:40000";host=api.shop');
  t.regex(h.traceparent, TRACEPARENT);
  const bare = buildConnectHeaders({ dstIp: '10.0.0.5', dstPort: 80, srcIp: '10.0.0.1', srcPort: 1 });
  t.is(bare[':authority'], '10.0.0.5:80');
  t.is(bare.baggage, '');
  t.is(bare.forwarded, 'for="10.0.0.1:1"');
  t.deepEqual(checkConnectRequest(bare), { ok: true, ip: '10.0.0.5', port: 80 });
});

// ---------------------------------------------------------------- checkConnectRequest

test('checkConnectRequest: valid IPv4 and IPv6 authorities, canonical IP', (t) => {
  t.deepEqual(checkConnectRequest({ ':method': 'CONNECT', ':authority': '10.0.0.5:8080' }), { ok: true, ip: '10.0.0.5', port: 8080 });
  t.deepEqual(checkConnectRequest({ ':method': 'CONNECT', ':authority': '[FD00:0:0::5]:1' }), { ok: true, ip: 'fd00::5', port: 1 });
  t.deepEqual(checkConnectRequest({ ':method': 'CONNECT', ':authority': '[::ffff:10.0.0.5]:65535' }), { ok: true, ip: '10.0.0.5', port: 65535 });
});

test('checkConnectRequest: a method other than CONNECT is a 400', (t) => {
  for (const method of ['GET', 'POST', 'connect', undefined]) {
    const r = checkConnectRequest({ ':method': method, ':authority': '10.0.0.5:8080' });
    t.like(r, { ok: false, status: 400 }, String(method));
    t.regex((r as { reason: string }).reason, /not CONNECT/);
  }
});

test('checkConnectRequest: a missing or malformed authority is a 400', (t) => {
  t.like(checkConnectRequest({ ':method': 'CONNECT' }), { ok: false, status: 400, reason: 'missing :authority' });
  t.like(checkConnectRequest({ ':method': 'CONNECT', ':authority': ['10.0.0.5:80'] }), { ok: false, status: 400 });
  for (const a of [
    '', 'api.shop:80', 'localhost:8080', '10.0.0.5', '10.0.0.5:', '10.0.0.5:0', '10.0.0.5:65536', '10.0.0.5:http',
    '[10.0.0.5]:80', 'fd00::5:80', '[fd00::5]', '[fd00::5]:0', '[fd00::5]:65536', '10.0.0.256:80', '10.0.0.5:80/x', ' 10.0.0.5:80',
  ]) {
    const r = checkConnectRequest({ ':method': 'CONNECT', ':authority': a });
    t.like(r, { ok: false, status: 400 }, JSON.stringify(a));
    t.regex((r as { reason: string }).reason, /malformed :authority/);
  }
});
