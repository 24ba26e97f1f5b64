// Unit tests for the SOCKS5 (RFC 1928) wire format.
import test from 'ava';
import fc from 'fast-check';
import {
  encodeReply, GREETING_NO_ACCEPTABLE, GREETING_NO_AUTH, parseGreeting, parseRequest, REPLY, type Parse, type Socks5Target,
} from '../ztunnel/proxy/socks5-protocol.js';

const bytes = (...xs: number[]) => Uint8Array.from(xs);

/** Independent encoder for CONNECT requests (the module only parses them). */
function encode(target: { atyp: 1 | 4; addr: Uint8Array; port: number } | { atyp: 3; host: Uint8Array; port: number }, cmd = 1): Uint8Array {
  const addr = target.atyp === 3 ? [target.host.length, ...target.host] : [...target.addr];
  return bytes(5, cmd, 0, target.atyp, ...addr, target.port >> 8, target.port & 0xff);
}

function assertIncompleteAtEveryPrefix<T>(parse: (b: Uint8Array) => Parse<T>, msg: Uint8Array): boolean {
  for (let n = 0; n < msg.length; n++) if (parse(msg.subarray(0, n)).kind !== 'incomplete') return false;
  return true;
}

// ---------------------------------------------------------------- greeting

test('greeting: no-auth offered', (t) => {
  t.deepEqual(parseGreeting(bytes(5, 1, 0)), { kind: 'ok', value: { noAuth: true }, used: 3 });
  t.deepEqual(parseGreeting(bytes(5, 3, 2, 1, 0)), { kind: 'ok', value: { noAuth: true }, used: 5 });
});

test('greeting: no-auth not offered, or no methods at all', (t) => {
  t.deepEqual(parseGreeting(bytes(5, 2, 1, 2)), { kind: 'ok', value: { noAuth: false }, used: 4 });
  t.deepEqual(parseGreeting(bytes(5, 0)), { kind: 'ok', value: { noAuth: false }, used: 2 });
});

test('greeting: trailing bytes are not consumed (and a 0 after the methods is not a method)', (t) => {
  t.deepEqual(parseGreeting(bytes(5, 1, 2, 0, 5, 1)), { kind: 'ok', value: { noAuth: false }, used: 3 });
});

test('greeting: every strict prefix is incomplete', (t) => {
  t.true(assertIncompleteAtEveryPrefix(parseGreeting, bytes(5, 3, 2, 1, 0)));
  t.true(assertIncompleteAtEveryPrefix(parseGreeting, bytes(5, 0)));
});

test('greeting: wrong version is an error', (t) => {
  const r = parseGreeting(bytes(4, 1, 0));
  t.like(r, { kind: 'error', reply: REPLY.generalFailure });
  t.regex((r as { reason: string }).reason, /version 4/);
});

// ---------------------------------------------------------------- request

test('request: IPv4 CONNECT', (t) => {
  t.deepEqual(parseRequest(bytes(5, 1, 0, 1, 10, 0, 0, 1, 0x1f, 0x90)), { kind: 'ok', value: { kind: 'ip', ip: '10.0.0.1', port: 8080 }, used: 10 });
});

test('request: IPv6 CONNECT yields canonical text', (t) => {
  const addr = bytes(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2a);
  t.deepEqual(parseRequest(encode({ atyp: 4, addr, port: 443 })), { kind: 'ok', value: { kind: 'ip', ip: 'fd00::2a', port: 443 }, used: 22 });
});

test('request: domain CONNECT', (t) => {
  const host = Buffer.from('api.shop.svc.cluster.local');
  t.deepEqual(parseRequest(encode({ atyp: 3, host, port: 65535 })), {
    kind: 'ok', value: { kind: 'domain', host: 'api.shop.svc.cluster.local', port: 65535 }, used: 7 + host.length,
  });
});

test('request: port bytes are big-endian, port 0 parses', (t) => {
  t.like(parseRequest(bytes(5, 1, 0, 1, 1, 2, 3, 4, 0x01, 0x02)), { value: { port: 258 } });
  t.like(parseRequest(bytes(5, 1, 0, 1, 1, 2, 3, 4, 0, 0)), { value: { port: 0 } });
});

test('request: trailing bytes are left unused', (t) => {
  const msg = bytes(5, 1, 0, 1, 10, 0, 0, 1, 0, 80, 0xde, 0xad, 0xbe, 0xef);
  t.like(parseRequest(msg), { kind: 'ok', used: 10 });
  const dom = bytes(5, 1, 0, 3, 1, 0x61, 0, 80, 5, 1, 0, 1);
  t.like(parseRequest(dom), { kind: 'ok', value: { host: 'a' }, used: 8 });
});

test('request: every strict prefix is incomplete (IPv4, IPv6, domain)', (t) => {
  t.true(assertIncompleteAtEveryPrefix(parseRequest, encode({ atyp: 1, addr: bytes(1, 2, 3, 4), port: 80 })));
  t.true(assertIncompleteAtEveryPrefix(parseRequest, encode({ atyp: 4, addr: new Uint8Array(16), port: 80 })));
  t.true(assertIncompleteAtEveryPrefix(parseRequest, encode({ atyp: 3, host: Buffer.from('example.com'), port: 80 })));
});

test('request: wrong version is a general failure', (t) => {
  t.like(parseRequest(bytes(4, 1, 0, 1, 1, 2, 3, 4, 0, 80)), { kind: 'error', reply: REPLY.generalFailure });
});

test('request: BIND and UDP ASSOCIATE are not supported', (t) => {
  for (const cmd of [2, 3, 0, 9]) {
    const r = parseRequest(encode({ atyp: 1, addr: bytes(1, 2, 3, 4), port: 80 }, cmd));
    t.like(r, { kind: 'error', reply: REPLY.commandNotSupported }, `cmd ${cmd}`);
  }
});

test('request: unknown address types are not supported', (t) => {
  for (const atyp of [0, 2, 5, 0xff]) {
    t.like(parseRequest(bytes(5, 1, 0, atyp, 0, 0, 0, 0, 0, 0)), { kind: 'error', reply: REPLY.addressTypeNotSupported }, `atyp ${atyp}`);
  }
});

test('request: an empty domain name is an error', (t) => {
  t.like(parseRequest(bytes(5, 1, 0, 3, 0, 0, 80)), { kind: 'error', reply: REPLY.generalFailure });
});

// ---------------------------------------------------------------- replies

test('replies and greeting answers have the RFC 1928 shape', (t) => {
  t.deepEqual([...encodeReply(REPLY.succeeded)], [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  t.deepEqual([...encodeReply(REPLY.connectionRefused)], [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
  t.deepEqual([...GREETING_NO_AUTH], [5, 0]);
  t.deepEqual([...GREETING_NO_ACCEPTABLE], [5, 0xff]);
  t.deepEqual(REPLY, {
    succeeded: 0, generalFailure: 1, notAllowed: 2, hostUnreachable: 4, connectionRefused: 5, commandNotSupported: 7, addressTypeNotSupported: 8,
  });
});

// ---------------------------------------------------------------- property

const arbRequest = fc.oneof(
  fc.record({ atyp: fc.constant(1 as const), addr: fc.uint8Array({ minLength: 4, maxLength: 4 }), port: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ atyp: fc.constant(4 as const), addr: fc.uint8Array({ minLength: 16, maxLength: 16 }), port: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ atyp: fc.constant(3 as const), host: fc.uint8Array({ minLength: 1, maxLength: 255 }), port: fc.integer({ min: 0, max: 65535 }) }),
);

/** What a request should parse to, decided without the module's own address formatting. */
function matchesRequest(req: Parameters<typeof encode>[0], got: Socks5Target): boolean {
  if (got.port !== req.port) return false;
  if (req.atyp === 3) return got.kind === 'domain' && got.host === Buffer.from(req.host).toString('latin1');
  if (got.kind !== 'ip') return false;
  if (req.atyp === 1) return got.ip === [...req.addr].join('.');
  return Buffer.from(ipv6Bytes(got.ip)).equals(Buffer.from(req.addr));
}

test('property: parse(encode(x)) split at any point is incomplete before the end and exact after it', (t) => {
  fc.assert(
    fc.property(arbRequest, fc.uint8Array({ maxLength: 8 }), (req, trailing) => {
      const msg = encode(req);
      const whole = Uint8Array.from([...msg, ...trailing]);
      for (let split = 0; split < msg.length; split++) {
        if (parseRequest(whole.subarray(0, split)).kind !== 'incomplete') return false;
      }
      const r = parseRequest(whole);
      return r.kind === 'ok' && r.used === msg.length && matchesRequest(req, r.value);
    }),
  );
  t.pass();
});

/** Expand an IPv6 text (no embedded IPv4) to bytes, independently of the module under test. */
function ipv6Bytes(text: string): number[] {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - tl.length).fill('0'), ...tl];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}
