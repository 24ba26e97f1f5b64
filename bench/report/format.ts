// Number formatting and small lookups shared by the report's tables, targets and plots.

/** Shown wherever a value is missing (a mode not run, a division by zero). */
export const DASH = '–';

const isNum = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x);

/** About three significant figures, thousands separated: 0.123, 1.23, 12.3, 1,234. */
export function num(x: number | undefined): string {
  if (!isNum(x)) return DASH;
  const a = Math.abs(x);
  const decimals = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return x.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** Fixed decimals, thousands separated. */
export function fixed(x: number | undefined, decimals: number): string {
  if (!isNum(x)) return DASH;
  return x.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** a/b as "0.40×", or the dash when either is missing or b is zero. */
export function ratio(a: number | undefined, b: number | undefined): string {
  if (!isNum(a) || !isNum(b) || b === 0) return DASH;
  return `${fixed(a / b, 2)}×`;
}

export const gbps = (bitsPerSecond: number | undefined): number | undefined =>
  bitsPerSecond === undefined ? undefined : bitsPerSecond / 1e9;

/** Decimal megabytes, as in "15 MB of state". */
export const mb = (bytes: number): string => `${fixed(bytes / 1e6, 1)} MB`;

export const bytes = (b: number | undefined): string => (isNum(b) ? `${fixed(b, 0)} B` : DASH);

/** "1 flow", "4 flows". */
export const flowsLabel = (n: number): string => `${n} flow${n === 1 ? '' : 's'}`;

export function uniqueSorted(xs: Iterable<number>): number[] {
  return [...new Set(xs)].sort((a, b) => a - b);
}
