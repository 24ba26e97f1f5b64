// What the main thread and the proxy threads ask of each other (see rpc.ts). The main thread owns the config sources,
// the state, the certificates, admin and ZDS; a proxy thread owns its own listeners (SO_REUSEPORT, so the kernel
// spreads connections over the threads), connections, pool and counters, and a replica of the state.
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Config, WorkloadInfo } from '../config/env.js';
import type { WorkloadCertificate } from '../identity/manager.js';
import type { Identity } from '../identity/spiffe.js';
import type { StateOp, WireWorkload } from '../state/replica.js';

export interface ThreadData {
  cfg: Config;
  /** 1.. (the main thread is 0). */
  index: number;
  logLevel: string;
}

export interface PodSpec {
  /** The pod's uid (shared mode), or `dedicated`. */
  key: string;
  info: WorkloadInfo;
  /** The thread's own descriptor of the pod's netns, closed by the thread when done; none in dedicated mode. */
  netnsFd?: number;
  spoofSource: boolean;
}

/** Served by a proxy thread. */
export type ThreadApi = {
  hello(_: null): number;
  ops(ops: StateOp<WireWorkload>[]): void;
  issued(cert: WorkloadCertificate): void;
  /** The main thread no longer keeps this identity's certificate (its last local workload is gone). */
  forgotten(identity: string): void;
  logLevel(level: string): void;
  addPod(pod: PodSpec): Promise<void>;
  removePod(key: string): void;
  drain(deadlineMs: number): Promise<boolean>;
  metrics(_: null): Promise<MetricObjectWithValues<MetricValue<string>>[]>;
  openConnections(_: null): number;
};

/** Served by the main thread. */
export type HostApi = {
  certificate(id: Identity): Promise<WorkloadCertificate>;
  resolve(addr: { network: string; ip: string }): Promise<void>;
  touch(addr: { network: string; ip: string }): void;
  resolveService(name: { namespace: string; hostname: string }): Promise<void>;
  touchService(name: { namespace: string; hostname: string }): void;
};
