// Percentiles over raw samples (nearest-rank: the smallest sample with at least p% of samples at or below it).

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  // (p * n) / 100, not (p / 100) * n: the latter gives 999.0000000000001 for p99.9 of 1000 samples.
  const rank = Math.max(1, Math.ceil((p * sorted.length) / 100));
  return sorted[rank - 1]!;
}

export interface Summary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Sorts `samples` in place and summarises them. */
export function summarize(samples: Float64Array): Summary {
  samples.sort();
  return {
    count: samples.length,
    p50: percentile(samples, 50),
    p90: percentile(samples, 90),
    p99: percentile(samples, 99),
    p999: percentile(samples, 99.9),
    max: samples.length ? samples[samples.length - 1]! : NaN,
  };
}
