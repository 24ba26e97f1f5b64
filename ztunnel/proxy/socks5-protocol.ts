// SOCKS5 (RFC 1928) wire format: just what a local CONNECT proxy needs, as pure functions over bytes.
import { bytesToIp } from '../net/ip.js';

export const REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

export type Parse<T> = { kind: 'incomplete' } | { kind: 'error'; reply: number; reason: string } | { kind: 'ok'; value: T; used: number };

/** Greeting: VER=5, NMETHODS, METHODS. We accept only "no authentication" (0x00). */
export function parseGreeting(b: Uint8Array): Parse<{ noAuth: boolean }> {
  if (b.length < 2) return { kind: 'incomplete' };
  if (b[0] !== 5) return { kind: 'error', reply: REPLY.generalFailure, reason: `not SOCKS5 (version ${b[0]})` };
  const n = b[1]!;
  if (b.length < 2 + n) return { kind: 'incomplete' };
  const methods = b.subarray(2, 2 + n);
  return { kind: 'ok', value: { noAuth: methods.includes(0) }, used: 2 + n };
}

export type Socks5Target = { kind: 'ip'; ip: string; port: number } | { kind: 'domain'; host: string; port: number };

/** Request: VER=5, CMD, RSV, ATYP, DST.ADDR, DST.PORT. Only CONNECT (1) is supported. */
export function parseRequest(b: Uint8Array): Parse<Socks5Target> {
  if (b.length < 5) return { kind: 'incomplete' };
  if (b[0] !== 5) return { kind: 'error', reply: REPLY.generalFailure, reason: `not SOCKS5 (version ${b[0]})` };
  if (b[1] !== 1) return { kind: 'error', reply: REPLY.commandNotSupported, reason: `command ${b[1]} not supported (only CONNECT)` };
  const atyp = b[3];
  let addrLen: number;
  let start = 4;
  if (atyp === 1) addrLen = 4;
  else if (atyp === 4) addrLen = 16;
  else if (atyp === 3) {
    addrLen = b[4]!;
    start = 5;
    if (addrLen === 0) return { kind: 'error', reply: REPLY.generalFailure, reason: 'empty domain name' };
  } else return { kind: 'error', reply: REPLY.addressTypeNotSupported, reason: `address type ${atyp} not supported` };
  const end = start + addrLen;
  if (b.length < end + 2) return { kind: 'incomplete' };
  const port = (b[end]! << 8) | b[end + 1]!;
  const addr = b.subarray(start, end);
  const value: Socks5Target = atyp === 3 ? { kind: 'domain', host: Buffer.from(addr).toString('latin1'), port } : { kind: 'ip', ip: bytesToIp(addr), port };
  return { kind: 'ok', value, used: end + 2 };
}

/** A reply with BND.ADDR 0.0.0.0:0, which clients ignore for CONNECT. */
export const encodeReply = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
export const GREETING_NO_AUTH = Buffer.from([5, 0]);
export const GREETING_NO_ACCEPTABLE = Buffer.from([5, 0xff]);
