// What the proxies share. They read state and certificates; they never write config.
import type { Logger } from 'pino';
import type { Config } from '../config/env.js';
import type { CertificateSource } from '../identity/manager.js';
import type { SocketFactory } from '../net/sockets.js';
import type { ProxyState } from '../state/index.js';
import type { Workload } from '../state/types.js';
import type { HbonePool } from '../hbone/pool.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ConnectionTracker } from './tracker.js';

export interface ProxyContext {
  cfg: Config;
  state: ProxyState;
  certs: CertificateSource;
  pool: HbonePool;
  sockets: SocketFactory;
  metrics: Metrics;
  log: Logger;
  accessLog: Logger;
  tracker: ConnectionTracker;
  /** Connect to the app from the client's own IP (IP_TRANSPARENT), as Istio's ENABLE_ORIG_SRC. */
  spoofSource: boolean;
  /** The workload this proxy serves at an address (for inbound), or undefined if it serves none there. */
  servedWorkload(ip: string): Workload | undefined;
  /** The local workload a connection from this address came from (for outbound). */
  sourceWorkload(ip: string): Workload | undefined;
}
