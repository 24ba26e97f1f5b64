import { isIP } from 'node:net';
import type { Cidr } from '../state/types.js';

/** Canonical text for an IP: IPv4-mapped IPv6 becomes plain IPv4, IPv6 is compressed and lower-case. */
export function canonicalIp(ip: string): string {
  if (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4) return ip.slice(7);
  if (isIP(ip) !== 6) return ip;
  const b = ipToBytes(ip);
  return bytesToIp(isV4Mapped(b) ? b.subarray(12) : b); // also `::FFFF:a.b.c.d`, `::ffff:a00:1`, ...
}

/** `::ffff:0:0/96`: ten zero bytes, then two 0xff bytes. */
const isV4Mapped = (b: Uint8Array): boolean => b.length === 16 && b[10] === 0xff && b[11] === 0xff && b.subarray(0, 10).every((x) => x === 0);

export function ipToBytes(ip: string): Uint8Array {
  const family = isIP(ip);
  if (family === 4) return Uint8Array.from(ip.split('.').map(Number));
  if (family !== 6) throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipToBytes(v4[1]!);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}

export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return b.join('.');
  if (b.length !== 16) throw new Error(`an IP address has 4 or 16 bytes, got ${b.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // Compress the longest run of zero groups (length >= 2), as RFC 5952 asks.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Parse `10.0.0.0/8`, `fd00::/64` or a bare address (a single host). */
export function parseCidr(text: string): Cidr {
  const parts = text.split('/');
  const [addr, len] = parts as [string, string | undefined];
  const bytes = ipToBytes(addr); // throws on a bad address
  const max = bytes.length * 8;
  const prefixLen = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (parts.length > 2 || !Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > max) throw new Error(`bad prefix length in ${JSON.stringify(text)}`);
  // An IPv4-mapped network is the IPv4 network it covers (IPs are compared in canonical form, i.e. as IPv4).
  if (isV4Mapped(bytes) && prefixLen >= 96) return { address: bytesToIp(bytes.subarray(12)), prefixLen: prefixLen - 96 };
  return { address: isV4Mapped(bytes) ? bytesToIp(bytes) : canonicalIp(addr), prefixLen };
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  const a = ipToBytes(cidr.address);
  const b = ipToBytes(canonicalIp(ip));
  if (a.length !== b.length) return false;
  let bits = cidr.prefixLen;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i]! & mask) !== (b[i]! & mask)) return false;
  }
  return true;
}

/** `ip:port`, with brackets for IPv6, as HBONE authorities and socket addresses are written. */
export const formatHostPort = (ip: string, port: number): string => (isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`);

/** Parse `ip:port` / `[v6]:port` strictly; undefined when malformed. */
export function parseHostPort(text: string): { ip: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d+\.\d+\.\d+\.\d+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const ip = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (isIP(ip) !== (m[1] ? 6 : 4) || port < 1 || port > 65535) return undefined;
  return { ip: canonicalIp(ip), port };
}
