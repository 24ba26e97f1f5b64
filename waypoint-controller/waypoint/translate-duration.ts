// Gateway API durations (GEP-2257): 1-4 `<1-5 digits><h|m|s|ms>` components, summed as Go's time.ParseDuration
// does (so `1h30m`, `90m` and `1h1h` are all valid); no signs, fractions or other units.

const GEP_2257 = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 };

/** Milliseconds, or why the value is not a Gateway API duration. */
export function parseGatewayDuration(value: unknown): { ms: number } | { error: string } {
  if (typeof value !== 'string' || !GEP_2257.test(value)) {
    return { error: `${JSON.stringify(value)} is not a Gateway API duration (GEP-2257: e.g. "10s", "500ms", "1h30m")` };
  }
  let ms = 0;
  for (const [, n, unit] of value.matchAll(/(\d+)(ms|h|m|s)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return { ms };
}
