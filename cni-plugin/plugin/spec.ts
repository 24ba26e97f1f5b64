// CNI specification pieces: versions, error codes and results, environment and CNI_ARGS parsing, and the
// conversion of a result between the spec versions we support. Pure; no I/O.

/** Versions of the CNI spec this plugin accepts in its network configuration. */
export const SUPPORTED_VERSIONS = ['0.3.1', '0.4.0', '1.0.0'] as const;
export const CURRENT_VERSION = '1.0.0';

/** Well-known CNI error codes (spec §"Error"). */
export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  Internal: 999,
} as const;

export class CniError extends Error {
  constructor(readonly code: number, msg: string, readonly details = '') {
    super(msg);
    this.name = 'CniError';
  }
}

export function isSupportedVersion(v: unknown): v is (typeof SUPPORTED_VERSIONS)[number] {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** The error result, as the spec defines it, one line of JSON. */
export function errorJson(e: CniError, cniVersion: string = CURRENT_VERSION): string {
  return JSON.stringify({ cniVersion, code: e.code, msg: e.message, details: e.details }) + '\n';
}

export function versionJson(): string {
  return JSON.stringify({ cniVersion: CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] }) + '\n';
}

/** `0.3.1` < `0.4.0` < `1.0.0`; numeric per component. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export type Command = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
const COMMANDS: readonly Command[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'];

export interface CniEnv {
  command: Command;
  containerId: string;
  netns: string;
  ifName: string;
  args: string;
  path: string;
}

// Which variables each command requires (as libcni's skel does).
const REQUIRED: Record<string, readonly Command[]> = {
  CNI_CONTAINERID: ['ADD', 'DEL', 'CHECK'],
  CNI_NETNS: ['ADD', 'CHECK'],
  CNI_IFNAME: ['ADD', 'DEL', 'CHECK'],
  CNI_PATH: ['ADD', 'DEL', 'CHECK', 'GC'],
};

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Reads and validates the CNI_* variables; throws CniError code 4 (3 for a bad container id). */
export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const cmd = env.CNI_COMMAND;
  if (!cmd) throw new CniError(ErrorCode.InvalidEnvironment, 'required env variables [CNI_COMMAND] missing');
  if (!(COMMANDS as readonly string[]).includes(cmd)) throw new CniError(ErrorCode.InvalidEnvironment, `unknown CNI_COMMAND: ${cmd}`);
  const command = cmd as Command;
  const missing = Object.entries(REQUIRED).filter(([k, cmds]) => cmds.includes(command) && !env[k]).map(([k]) => k);
  if (missing.length) throw new CniError(ErrorCode.InvalidEnvironment, `required env variables [${missing.join(',')}] missing`);
  const out: CniEnv = {
    command,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifName: env.CNI_IFNAME ?? '',
    args: env.CNI_ARGS ?? '',
    path: env.CNI_PATH ?? '',
  };
  if (command === 'ADD' || command === 'DEL' || command === 'CHECK') {
    if (!NAME_RE.test(out.containerId)) throw new CniError(ErrorCode.InvalidEnvironment, 'error parsing containerID', out.containerId);
    validateIfName(out.ifName);
  }
  return out;
}

function validateIfName(name: string): void {
  const bad = (why: string) => new CniError(ErrorCode.InvalidEnvironment, `invalid interface name: ${why}`, name);
  if (name.length > 15) throw bad('longer than 15 characters');
  if (name === '.' || name === '..') throw bad('is . or ..');
  if (/[/:\s]/.test(name)) throw bad('contains /, : or whitespace');
}

export function validNetworkName(name: string): boolean {
  return NAME_RE.test(name);
}

/** `K8S_POD_NAME=a;K8S_POD_NAMESPACE=b` → map. Unknown keys are kept (runtimes set IgnoreUnknown). */
export function parseCniArgs(args: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!args) return out;
  for (const pair of args.split(';')) {
    if (pair === '') continue;
    const kv = pair.split('=');
    if (kv.length !== 2) throw new CniError(ErrorCode.InvalidEnvironment, `ARGS: invalid pair "${pair}"`);
    out.set(kv[0]!, kv[1]!);
  }
  return out;
}

// ------------------------------------------------------------------ results

type Json = Record<string, unknown>;

/**
 * A result re-expressed in `to`'s format. 0.3.x and 0.4.0 share one format; 1.0.0 dropped the per-IP `version`.
 * The object is returned as is when no conversion is needed.
 */
export function convertResult(result: Json, to: string): Json {
  const from = typeof result.cniVersion === 'string' ? result.cniVersion : to;
  const fromV1 = compareVersions(from, '1.0.0') >= 0;
  const toV1 = compareVersions(to, '1.0.0') >= 0;
  if (from === to || !Array.isArray(result.ips) || fromV1 === toV1) return { ...result, cniVersion: to };
  const ips = result.ips.map((ip: unknown) => {
    if (!ip || typeof ip !== 'object') return ip;
    const { version, ...rest } = ip as Json;
    if (toV1) return rest;
    const addr = typeof rest.address === 'string' ? rest.address : '';
    return { version: version ?? (addr.includes(':') ? '6' : '4'), ...rest };
  });
  return { ...result, cniVersion: to, ips };
}

export interface ResultIp {
  address: string;
  gateway?: string;
  interface?: number;
}

/** The IP entries of a (validated) result. */
export function resultIps(result: Json): ResultIp[] {
  const ips = result.ips;
  if (ips === undefined || ips === null) return [];
  if (!Array.isArray(ips)) throw new CniError(ErrorCode.DecodingFailure, 'could not parse prevResult: ips is not a list');
  return ips.map((raw: unknown, i) => {
    if (!raw || typeof raw !== 'object') throw new CniError(ErrorCode.DecodingFailure, `could not parse prevResult: ips[${i}] is not an object`);
    const ip = raw as Json;
    if (typeof ip.address !== 'string' || !isCidr(ip.address)) {
      throw new CniError(ErrorCode.DecodingFailure, `could not parse prevResult: ips[${i}].address is not a CIDR`, String(ip.address));
    }
    if (ip.gateway !== undefined && (typeof ip.gateway !== 'string' || !isIp(ip.gateway))) {
      throw new CniError(ErrorCode.DecodingFailure, `could not parse prevResult: ips[${i}].gateway is not an IP`, String(ip.gateway));
    }
    if (ip.interface !== undefined && (typeof ip.interface !== 'number' || !Number.isInteger(ip.interface) || ip.interface < 0)) {
      throw new CniError(ErrorCode.DecodingFailure, `could not parse prevResult: ips[${i}].interface is not an index`);
    }
    const out: ResultIp = { address: ip.address };
    if (ip.gateway !== undefined) out.gateway = ip.gateway as string;
    if (ip.interface !== undefined) out.interface = ip.interface as number;
    return out;
  });
}

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
function isIp(s: string): boolean {
  if (V4.test(s)) return true;
  if (!s.includes(':') || !/^[0-9a-fA-F:.]+$/.test(s)) return false;
  const dbl = s.split('::');
  if (dbl.length > 2) return false;
  const groups = s.split(':').filter((g) => g !== '');
  const last = groups[groups.length - 1] ?? '';
  const n = groups.length + (last.includes('.') ? 1 : 0);
  if (last.includes('.') && !V4.test(last)) return false;
  if (groups.slice(0, last.includes('.') ? -1 : undefined).some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  return dbl.length === 2 ? n < 8 : n === 8;
}

export function isCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const ip = s.slice(0, slash);
  const len = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(len) || !isIp(ip)) return false;
  return Number(len) <= (ip.includes(':') ? 128 : 32);
}
