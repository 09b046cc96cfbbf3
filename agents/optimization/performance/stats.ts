/**
 * The statistics of content performance: ordinary least squares with the slope's standard error
 * and two-sided p-value, the Student t distribution it needs, and z-scores of days against a
 * trailing window.
 */
import { gammaln, linearRegression } from "simple-statistics";

/** An OLS line through (x, y) points and the inference on its slope. */
export interface OlsFit {
  slope: number;
  intercept: number;
  rSquared: number;
  /** sqrt(SSE / (n − 2) / Sxx). */
  slopeStandardError: number;
  /** slope / standard error; ±Infinity for a perfect sloped fit. */
  tStatistic: number;
  /** Two-sided p-value of the slope against zero, n − 2 degrees of freedom. */
  pValue: number;
  n: number;
}

/**
 * Fits y = intercept + slope·x by ordinary least squares (simple-statistics) and adds what the
 * package leaves out: R² guarded for a flat series (no variance to explain reads as 0, not NaN),
 * the slope's standard error and its t test. Needs three points (one degree of freedom for the
 * error); answers undefined with fewer or when every x is the same.
 */
export function olsFit(points: ReadonlyArray<readonly [number, number]>): OlsFit | undefined {
  const n = points.length;
  if (n < 3) return undefined;
  let sumX = 0;
  let sumY = 0;
  for (const [x, y] of points) {
    sumX += x;
    sumY += y;
  }
  const meanX = sumX / n;
  const meanY = sumY / n;
  let sxx = 0;
  let sst = 0;
  for (const [x, y] of points) {
    sxx += (x - meanX) ** 2;
    sst += (y - meanY) ** 2;
  }
  if (sxx === 0) return undefined;
  const { m, b } = linearRegression(points.map(([x, y]) => [x, y]));
  let sse = 0;
  for (const [x, y] of points) sse += (y - (b + m * x)) ** 2;
  // Rounding leaves a residual sum of squares of ~1e-30 on an exact line; below this share of the
  // total it is zero.
  if (sse <= sst * 1e-24) sse = 0;
  const se = Math.sqrt(sse / (n - 2) / sxx);
  const t = se > 0 ? m / se : m === 0 ? 0 : m > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  return {
    slope: m,
    intercept: b,
    rSquared: sst > 0 ? Math.max(0, 1 - sse / sst) : 0,
    slopeStandardError: se,
    tStatistic: t,
    pValue: studentTTwoSidedP(t, n - 2),
    n,
  };
}

/**
 * Two-sided p-value of Student's t with `df` degrees of freedom: P(|T| ≥ |t|) = I_{df/(df+t²)}(df/2, 1/2),
 * the regularised incomplete beta function (Abramowitz & Stegun 26.7.1).
 */
export function studentTTwoSidedP(t: number, df: number): number {
  if (Number.isNaN(t) || !(df > 0)) return Number.NaN;
  if (!Number.isFinite(t)) return 0;
  return regularizedIncompleteBeta(df / (df + t * t), df / 2, 0.5);
}

/**
 * I_x(a, b) by its continued fraction, evaluated with the modified Lentz method (Numerical Recipes
 * §6.4, betai/betacf): the fraction converges fast for x < (a + 1) / (a + b + 2), and the symmetry
 * I_x(a, b) = 1 − I_{1−x}(b, a) covers the rest.
 */
export function regularizedIncompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(gammaln(a + b) - gammaln(a) - gammaln(b) + a * Math.log(x) + b * Math.log1p(-x));
  return x < (a + 1) / (a + b + 2)
    ? (front * betaContinuedFraction(x, a, b)) / a
    : 1 - (front * betaContinuedFraction(1 - x, b, a)) / b;
}

function betaContinuedFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** One day of one metric scored against its trailing window. */
export interface DayScore {
  /** Index of the day in the series given. */
  index: number;
  value: number;
  mean: number;
  stddev: number;
  z: number;
}

/**
 * Scores each day of `days` (ascending day numbers, one value each) against the days in the
 * `windowDays` before it: z = (value − mean) / sd, with sd the window's sample standard deviation
 * but at least sqrt(max(mean, 1)), the Poisson noise of a count — a flat window (sd 0) would
 * otherwise make any change infinitely surprising, and one day off by a single click from a quiet
 * window would be flagged. Days whose window holds fewer than max(2, min(7, windowDays)) days of
 * data are not scored. Running sums over a two-pointer window keep it linear in the series length
 * whatever the window (a year-long window over three years of days stays cheap).
 */
export function trailingZScores(days: readonly number[], values: readonly number[], windowDays: number): DayScore[] {
  const minDays = Math.max(2, Math.min(7, windowDays));
  const out: DayScore[] = [];
  // Sums of values shifted by the first one: the same variance, but sums of squares that stay
  // small (and exact in a double) for a page whose traffic is large but steady.
  const shift = values[0] ?? 0;
  let lo = 0;
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < days.length; i++) {
    const day = days[i] as number;
    // The window is [day − windowDays, day): add day i − 1, drop days that fell out.
    if (i > 0) {
      const v = (values[i - 1] as number) - shift;
      sum += v;
      sumSq += v * v;
    }
    while (lo < i && (days[lo] as number) < day - windowDays) {
      const v = (values[lo] as number) - shift;
      sum -= v;
      sumSq -= v * v;
      lo++;
    }
    const n = i - lo;
    if (n < minDays) continue;
    const shiftedMean = sum / n;
    const mean = shift + shiftedMean;
    const variance = Math.max(0, (sumSq - n * shiftedMean * shiftedMean) / (n - 1));
    const stddev = Math.max(Math.sqrt(variance), Math.sqrt(Math.max(mean, 1)));
    const value = values[i] as number;
    out.push({ index: i, value, mean, stddev, z: (value - mean) / stddev });
  }
  return out;
}
