// ztunnel configuration from environment variables, with Istio ztunnel's names and defaults where the feature exists.

export type ProxyMode = 'dedicated' | 'shared';

export interface WorkloadInfo {
  namespace: string;
  name: string;
  serviceAccount: string;
}

export interface Config {
  proxyMode: ProxyMode;
  /** Dedicated mode: the workload whose network namespace this ztunnel shares. */
  proxyWorkloadInfo?: WorkloadInfo;
  localXdsPath?: string;
  /** Control plane for workload xDS (`host:port`, plaintext for now). */
  xdsAddress?: string;
  /** xDS over TLS (XDS_ADDRESS with https://), verified with xdsRootCertPath and xdsServerName. */
  xdsTls: boolean;
  xdsRootCertPath: string;
  xdsServerName?: string;
  /** Subscribe to addresses only when a lookup misses. */
  xdsOnDemand: boolean;
  /** File with a bearer token for the control plane. */
  xdsAuthTokenPath?: string;
  /** Identity of this ztunnel for the xDS node id and metadata. */
  instanceIp: string;
  podName: string;
  podNamespace: string;
  /** Shared mode: the node agent's ZDS socket. */
  inpodUds: string;
  nodeName: string;
  trustDomain: string;
  clusterId: string;
  network: string;
  /** Local mode: a CA inside ztunnel (both files set). Takes precedence over the remote CA. */
  localCaCert?: string;
  localCaKey?: string;
  /** Remote CA (Istio's CreateCertificate), `host:port`; CA_ADDRESS, default the host:port of XDS_ADDRESS. */
  caAddress?: string;
  /** Plaintext to the CA: only when CA_ADDRESS is explicitly `http://host:port` (tests, debugging). */
  caPlaintext: boolean;
  /** PEM root(s) for the CA's TLS certificate and the issued chains (CA_ROOT_CA, else XDS_ROOT_CA, else Istio's default path). */
  caRootCertPath: string;
  /** Name expected in the CA's serving certificate instead of the host of caAddress (ALT_CA_HOSTNAME). */
  caServerName?: string;
  /** Bearer token file for the CA (AUTH_TOKEN, else XDS_AUTH_TOKEN; Istio's default path when present). */
  caAuthTokenPath?: string;
  /** Extra CA request headers from CA_HEADER_<name>=<value>. */
  caHeaders: Record<string, string>;
  /** Leaf lifetime requested from the CA; refreshed at half of it. */
  certTtlSeconds: number;
  enableSocks5: boolean;
  /** Shared mode: connect to the app from the client's IP (IP_TRANSPARENT and the in-pod routing rules). */
  enableOrigSrc: boolean;
  /** How long SIGTERM waits for open connections before closing them. */
  terminationDeadlineMs: number;
  /** Bind address for the data-plane listeners (dedicated mode binds in ztunnel's own netns). */
  bindAddress: string;
  ports: { outbound: number; inbound: number; inboundPlaintext: number; socks5: number; metrics: number; readiness: number; admin: number };
  logLevel: string;
  /** Threads that serve traffic (ZTUNNEL_WORKER_THREADS): the main thread and this many minus one proxy threads. */
  workerThreads: number;
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function bool(env: Env, name: string, def: boolean): boolean {
  const v = env[name];
  if (v === undefined || v === '') return def;
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(v)}`);
}

function int(env: Env, name: string, def: number): number {
  const v = env[name];
  if (v === undefined || v === '') return def;
  if (!/^\d+$/.test(v)) throw new ConfigError(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Istio: leave Kubernetes a few seconds before SIGKILL (5 s when the grace period is long, else 1 s), at least 1 s. */
function terminationDeadlineMs(env: Env): number {
  const explicit = env.CONNECTION_TERMINATION_DEADLINE;
  if (explicit) {
    const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(explicit);
    if (!m) throw new ConfigError(`CONNECTION_TERMINATION_DEADLINE must look like 5s or 500ms, got ${JSON.stringify(explicit)}`);
    return Number(m[1]) * (m[2] === 'ms' ? 1 : 1000);
  }
  if (!env.TERMINATION_GRACE_PERIOD_SECONDS) return 5000;
  const secs = int(env, 'TERMINATION_GRACE_PERIOD_SECONDS', 5);
  return Math.max(secs > 10 ? secs - 5 : secs - 1, 1) * 1000;
}

/** `https://host:port` (TLS, as Istio's default) or `host:port` / `http://host:port` (plaintext, for debugging). */
function xdsAddress(env: Env): { address?: string; tls: boolean } {
  const raw = env.XDS_ADDRESS;
  if (!raw) return { tls: false };
  const hostPort = raw.replace(/^https?:\/\//i, '').replace(/\/$/, '');
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):\d{1,5}$/.test(hostPort)) throw new ConfigError(`XDS_ADDRESS must be https://host:port or host:port, got ${JSON.stringify(raw)}`);
  return { address: hostPort, tls: /^https:\/\//i.test(raw) };
}

/** Istio's default root certificate location (CA_ROOT_CA / XDS_ROOT_CA). */
export const DEFAULT_ROOT_CERT_PATH = './var/run/secrets/istio/root-cert.pem';

/**
 * CA_ADDRESS: `host:port` or `https://host:port` (TLS), or `http://host:port` (plaintext, explicit opt-in).
 * Unset: the host:port of XDS_ADDRESS, always over TLS (as Istio, where both default to istiod's 15012).
 */
function caAddress(env: Env): { address?: string; plaintext: boolean } {
  const explicit = env.CA_ADDRESS;
  const raw = explicit || env.XDS_ADDRESS;
  if (!raw) return { plaintext: false };
  const name = explicit ? 'CA_ADDRESS' : 'XDS_ADDRESS (the default CA address)';
  const plaintext = !!explicit && /^http:\/\//i.test(raw);
  const hostPort = raw.replace(/^https?:\/\//i, '').replace(/\/$/, '');
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):\d{1,5}$/.test(hostPort)) throw new ConfigError(`${name} must be host:port (optionally https:// or, for plaintext, http://), got ${JSON.stringify(raw)}`);
  return { address: hostPort, plaintext };
}

function workerThreads(env: Env): number {
  const n = int(env, 'ZTUNNEL_WORKER_THREADS', 1);
  if (n < 1 || n > 64) throw new ConfigError(`ZTUNNEL_WORKER_THREADS must be between 1 and 64, got ${n}`);
  return n;
}

function prefixed(env: Env, prefix: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith(prefix) && k.length > prefix.length && v !== undefined) out[k.slice(prefix.length)] = v;
  return out;
}

export function loadConfig(env: Env = process.env): Config {
  const mode = env.PROXY_MODE ?? 'shared';
  if (mode !== 'dedicated' && mode !== 'shared') throw new ConfigError(`PROXY_MODE must be one of dedicated, shared (got ${JSON.stringify(mode)})`);
  let proxyWorkloadInfo: WorkloadInfo | undefined;
  if (mode === 'dedicated') {
    const raw = env.PROXY_WORKLOAD_INFO;
    const parts = raw?.split('/');
    if (!raw || parts?.length !== 3 || parts.some((p) => p === ''))
      throw new ConfigError(`PROXY_MODE=dedicated requires PROXY_WORKLOAD_INFO=<namespace>/<name>/<service-account> (got ${JSON.stringify(raw ?? '')})`);
    proxyWorkloadInfo = { namespace: parts[0]!, name: parts[1]!, serviceAccount: parts[2]! };
  }
  const ca = caAddress(env);
  const xds = xdsAddress(env);
  return {
    proxyMode: mode,
    proxyWorkloadInfo,
    localXdsPath: env.LOCAL_XDS_PATH || undefined,
    xdsAddress: xds.address,
    xdsTls: xds.tls,
    xdsRootCertPath: env.XDS_ROOT_CA || env.CA_ROOT_CA || DEFAULT_ROOT_CERT_PATH,
    xdsServerName: env.ALT_XDS_HOSTNAME || undefined,
    xdsOnDemand: bool(env, 'XDS_ON_DEMAND', false),
    xdsAuthTokenPath: env.XDS_AUTH_TOKEN || env.AUTH_TOKEN || undefined,
    instanceIp: env.INSTANCE_IP || '1.1.1.1',
    podName: env.POD_NAME ?? '',
    podNamespace: env.POD_NAMESPACE ?? '',
    inpodUds: env.INPOD_UDS || '/var/run/ztunnel/ztunnel.sock',
    nodeName: env.NODE_NAME ?? '',
    trustDomain: env.TRUST_DOMAIN || 'cluster.local',
    clusterId: env.ISTIO_META_CLUSTER_ID || env.CLUSTER_ID || 'Kubernetes',
    network: env.NETWORK ?? '',
    localCaCert: env.LOCAL_CA_CERT || undefined,
    localCaKey: env.LOCAL_CA_KEY || undefined,
    caAddress: ca.address,
    caPlaintext: ca.plaintext,
    caRootCertPath: env.CA_ROOT_CA || env.XDS_ROOT_CA || DEFAULT_ROOT_CERT_PATH,
    caServerName: env.ALT_CA_HOSTNAME || undefined,
    caAuthTokenPath: env.AUTH_TOKEN || env.XDS_AUTH_TOKEN || undefined,
    caHeaders: prefixed(env, 'CA_HEADER_'),
    certTtlSeconds: int(env, 'WORKLOAD_CERT_TTL_SECONDS', 24 * 3600),
    enableSocks5: bool(env, 'UNSTABLE_ENABLE_SOCKS5', false),
    enableOrigSrc: bool(env, 'ENABLE_ORIG_SRC', true),
    terminationDeadlineMs: terminationDeadlineMs(env),
    bindAddress: env.BIND_ADDRESS || '0.0.0.0',
    ports: { outbound: 15001, inbound: 15008, inboundPlaintext: 15006, socks5: 15080, metrics: 15020, readiness: 15021, admin: 15000 },
    logLevel: env.LOG_LEVEL || 'info',
    workerThreads: workerThreads(env),
  };
}
