/**
 * Expected organic click-through rate by search position: the built-in published curve, a caller's
 * custom curve, or a curve fitted to the request's own data.
 */
import { weightedLinearRegression } from "simple-statistics";

/** An expected-CTR curve: CTR (0–1) at a position (1 at the top; 0 means not ranking). */
export type CtrCurve = (position: number) => number;

/**
 * Positions 1–10: SISTRIX, "Why (almost) everything you knew about Google CTR is no longer valid"
 * (July 2020; 80 million keywords, billions of results, desktop and mobile): 28.5%, 15.7%, 11.0%,
 * 8.0%, 7.2%, 5.1%, 4.0%, 3.2%, 2.8%, 2.5%. The study measured "significantly less than one
 * percent" at every position on page two without publishing figures, so positions 11–20 are our
 * assumption inside that bound: 0.9% falling linearly to 0.4%; past 21, 0.1%.
 */
const builtinPoints: ReadonlyArray<readonly [number, number]> = [
  [1, 0.285],
  [2, 0.157],
  [3, 0.11],
  [4, 0.08],
  [5, 0.072],
  [6, 0.051],
  [7, 0.04],
  [8, 0.032],
  [9, 0.028],
  [10, 0.025],
  ...Array.from({ length: 10 }, (_, i) => [11 + i, 0.009 - (i * 0.005) / 9] as const),
  [21, 0.001],
];

/**
 * Linear interpolation through `points` (ascending positions), flat outside them. Average positions
 * are fractional (6.4 is most days at 6, some at 7), so the curve between two whole positions is
 * the straight line between them rather than the nearer one's value.
 */
function interpolate(points: ReadonlyArray<readonly [number, number]>): CtrCurve {
  return (position) => {
    if (!(position >= 1)) return 0;
    const first = points[0] as readonly [number, number];
    if (position <= first[0]) return first[1];
    for (let i = 1; i < points.length; i++) {
      const [x1, y1] = points[i] as readonly [number, number];
      if (position <= x1) {
        const [x0, y0] = points[i - 1] as readonly [number, number];
        return y0 + ((position - x0) * (y1 - y0)) / (x1 - x0);
      }
    }
    return (points[points.length - 1] as readonly [number, number])[1];
  };
}

/** The built-in curve (SISTRIX 2020, see {@link builtinPoints}). */
export const builtinCtrCurve: CtrCurve = interpolate(builtinPoints);

/** A custom curve from the request's points (positions unique), interpolated linearly, flat outside them. */
export function customCtrCurve(points: ReadonlyArray<{ position: number; ctr: number }>): CtrCurve {
  return interpolate([...points].sort((a, b) => a.position - b.position).map((p) => [p.position, p.ctr] as const));
}

/** Impressions and clicks at one whole position, pooled over pages and days. */
export interface PositionBucket {
  position: number;
  impressions: number;
  clicks: number;
}

/** A site fit of ctr = a + b·ln(position). */
export interface CtrFit {
  intercept: number;
  slope: number;
  rSquared: number;
  positionCount: number;
  impressions: number;
  curve: CtrCurve;
}

/** Positions the site fit uses: page one and two, where nearly all clicks and impressions are. */
export const maxFittedPosition = 20;
/** Fewest positions a fit needs: two points always fit a line exactly and say nothing about the shape. */
export const minFittedPositions = 3;
/** Floor of a fitted curve: a shown result earns some clicks, and a zero expected CTR has no error to score against. */
const fittedFloor = 0.001;

/**
 * Fits ctr = a + b·ln(position) by least squares weighted by impressions (each bucket's CTR is a
 * mean over its impressions, so its variance falls with them) to the whole positions 1–20 holding
 * at least `minImpressions` impressions. Returns undefined when fewer than {@link minFittedPositions}
 * positions qualify or the slope is not negative — a curve that rises down the page is noise, and
 * the caller falls back to the published one.
 */
export function fitCtrCurve(buckets: readonly PositionBucket[], minImpressions: number): CtrFit | undefined {
  const used = buckets.filter(
    (b) => b.position >= 1 && b.position <= maxFittedPosition && b.impressions > 0 && b.impressions >= minImpressions,
  );
  if (used.length < minFittedPositions) return undefined;
  const data = used.map((b) => [Math.log(b.position), b.clicks / b.impressions]);
  const weights = used.map((b) => b.impressions);
  const { m, b } = weightedLinearRegression(data, weights);
  if (!(m < 0) || !Number.isFinite(b)) return undefined;
  const total = weights.reduce((s, w) => s + w, 0);
  const meanY = data.reduce((s, d, i) => s + (weights[i] as number) * (d[1] as number), 0) / total;
  let sse = 0;
  let sst = 0;
  data.forEach((d, i) => {
    const w = weights[i] as number;
    const y = d[1] as number;
    sse += w * (y - (b + m * (d[0] as number))) ** 2;
    sst += w * (y - meanY) ** 2;
  });
  return {
    intercept: b,
    slope: m,
    rSquared: sst > 0 ? 1 - sse / sst : 0,
    positionCount: used.length,
    impressions: total,
    curve: (position) => (position >= 1 ? Math.min(1, Math.max(fittedFloor, b + m * Math.log(position))) : 0),
  };
}
