// The shape of a benchmark run's results (bench/out/results.json). The runner fills it; the report reads it.

/** The three ways the same client pod reaches the same server pod across two lab nodes. */
export type Mode = 'direct' | 'ambit' | 'stunnel';
export const MODES: readonly Mode[] = ['direct', 'ambit', 'stunnel'];

export interface MachineInfo {
  hostname: string;
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  kernel: string;
  node: string;
  /** ISO time the run started. */
  date: string;
  /** Quick mode (CI): short durations and small counts; the figures are indicative only. */
  quick: boolean;
  /** Versions of the external tools used (iperf3, stunnel). */
  tools: Record<string, string>;
  /** Threads each ztunnel served traffic with (ZTUNNEL_WORKER_THREADS); absent in runs from before it existed. */
  ztunnelThreads?: number;
  /** How many times throughput, latency and connection rate were each measured (interleaved); absent means once. */
  rounds?: number;
}

/** Which round (1..machine.rounds) of a repeated benchmark a result is from; absent in runs from before rounds. */
interface InRound {
  round?: number;
}

/** Bulk transfer, client pod -> server pod (iperf3). */
export interface ThroughputResult extends InRound {
  mode: Mode;
  flows: number;
  seconds: number;
  /** Bytes the receiver got. */
  bytes: number;
  bitsPerSecond: number;
  retransmits: number;
  /** Share of the whole machine's CPU (all cores) that was busy during the run, 0..1: near 1 means the run was
   *  CPU-bound on this machine, so a proxy could not have gone faster by using more cores. */
  machineCpuBusy?: number;
}

/** Request/response at a fixed offered rate over persistent connections, latency measured from each request's
 *  scheduled send time (so a stalled connection counts against every request queued behind it). */
export interface LatencyResult extends InRound {
  mode: Mode;
  /** Offered requests per second. */
  rate: number;
  connections: number;
  payloadBytes: number;
  seconds: number;
  completed: number;
  errors: number;
  /** Completed requests per second actually achieved. */
  achievedRate: number;
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  /** How much later than it could have the load generator itself sent requests (ms, p50/p99): its timers tick in
   *  whole milliseconds. Measured per request and already subtracted from the percentiles above. */
  sendLagP50?: number;
  sendLagP99?: number;
}

/** New connections per second: connect, one request/response, close; `concurrency` loops in parallel. */
export interface ConnRateResult extends InRound {
  mode: Mode;
  concurrency: number;
  seconds: number;
  completed: number;
  errors: number;
  connectionsPerSecond: number;
}

/** CPU the proxies used (user + system, both ends summed) for a measured amount of work. */
export interface CpuResult extends InRound {
  mode: Exclude<Mode, 'direct'>;
  /** During the single-flow throughput run. */
  secondsPerGB: number;
  /** During the concurrency-32 connection-rate run. */
  secondsPer1kConnections: number;
}

/** Resident memory the proxies (both ends summed) grew by while holding idle tunnelled connections. */
export interface IdleMemoryResult {
  mode: Exclude<Mode, 'direct'>;
  connections: number;
  rssBytesBefore: number;
  rssBytesAfter: number;
  bytesPerConnection: number;
}

/** ztunnel's retained JavaScript heap with N workloads in its state (fed synthetically, measured after GC). */
export interface StateHeapResult {
  workloads: number;
  services: number;
  heapBytes: number;
  bytesPerWorkload: number;
}

export interface BenchResults {
  version: 1;
  machine: MachineInfo;
  throughput: ThroughputResult[];
  latency: LatencyResult[];
  connRate: ConnRateResult[];
  cpu: CpuResult[];
  idleMemory: IdleMemoryResult[];
  stateHeap: StateHeapResult[];
}
