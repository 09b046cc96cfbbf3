/**
 * Holt-Winters triple exponential smoothing (Winters 1960; Hyndman & Athanasopoulos, "Forecasting:
 * principles and practice", §8.3) of a monthly series with additive or multiplicative seasonality.
 *
 * Initialisation uses the first two seasons: trend = (mean of season 2 − mean of season 1) / m, the
 * line through season 1's mean at its middle with that slope gives the level at the end of season 1,
 * and the seasonal indices are season 1's deviations from (additive) or ratios to (multiplicative)
 * that line — so a series that is exactly trend plus season is reproduced without error. The recursions then run from the second season on, and the
 * one-step-ahead errors of those steps measure the fit (SSE, RMSE, MAPE). Smoothing parameters not
 * given are fitted by minimising the SSE with Nelder–Mead over their logits, so they stay in (0, 1).
 */
import { nelderMead } from "../lifecycle/optimize.ts";

/** How the seasonal component combines with level and trend. */
export type SeasonalMode = "additive" | "multiplicative";

/** Smoothing parameters; undefined ones are fitted. */
export interface HoltWintersSettings {
  alpha?: number | undefined;
  beta?: number | undefined;
  gamma?: number | undefined;
  mode: SeasonalMode;
  /** Season length (periods). */
  seasonLength: number;
}

/** A fitted model. */
export interface HoltWintersModel {
  alpha: number;
  beta: number;
  gamma: number;
  mode: SeasonalMode;
  seasonLength: number;
  /** Root mean squared one-step-ahead error. */
  rmse: number;
  /** Mean absolute percentage error of one-step-ahead forecasts over non-zero actuals, 0–1. */
  mape: number;
  /** Forecast `h` ≥ 1 periods after the last observation. */
  forecast(h: number): number;
}

interface RunResult {
  sse: number;
  absPct: number;
  pctCount: number;
  steps: number;
  level: number;
  trend: number;
  seasonal: number[];
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Runs the recursions with fixed parameters. */
function run(y: readonly number[], m: number, mode: SeasonalMode, a: number, b: number, g: number): RunResult {
  const first = y.slice(0, m);
  const firstMean = mean(first);
  let trend = (mean(y.slice(m, 2 * m)) - firstMean) / m;
  // The first season's mean is the level at its middle, (m − 1) / 2; detrend each of its points.
  const lineAt = (i: number) => firstMean + trend * (i - (m - 1) / 2);
  let level = lineAt(m - 1);
  const seasonal = first.map((v, i) => (mode === "additive" ? v - lineAt(i) : v / lineAt(i)));
  let sse = 0;
  let absPct = 0;
  let pctCount = 0;
  for (let t = m; t < y.length; t++) {
    const yt = y[t] as number;
    const s = seasonal[t - m] as number;
    const predicted = mode === "additive" ? level + trend + s : (level + trend) * s;
    const e = yt - predicted;
    sse += e * e;
    if (yt !== 0) {
      absPct += Math.abs(e / yt);
      pctCount++;
    }
    const previous = level;
    level = mode === "additive" ? a * (yt - s) + (1 - a) * (level + trend) : a * (yt / s) + (1 - a) * (level + trend);
    trend = b * (level - previous) + (1 - b) * trend;
    seasonal.push(mode === "additive" ? g * (yt - level) + (1 - g) * s : g * (yt / level) + (1 - g) * s);
  }
  return { sse, absPct, pctCount, steps: y.length - m, level, trend, seasonal: seasonal.slice(-m) };
}

const logistic = (x: number): number => 1 / (1 + Math.exp(-x));
const logit = (p: number): number => Math.log(p / (1 - p));

/**
 * Fits Holt-Winters to `y` (at least two seasons; positive values for multiplicative seasonality,
 * which the caller checks).
 */
export function fitHoltWinters(y: readonly number[], settings: HoltWintersSettings): HoltWintersModel {
  const m = settings.seasonLength;
  if (y.length < 2 * m) throw new Error(`Holt-Winters needs at least ${2 * m} observations, got ${y.length}`);
  const fixed = [settings.alpha, settings.beta, settings.gamma];
  const free = fixed.map((v, i) => (v === undefined ? i : -1)).filter((i) => i >= 0);
  const params = (x: readonly number[]): number[] => {
    const p = fixed.map((v) => v ?? 0);
    free.forEach((i, j) => {
      p[i] = logistic(x[j] as number);
    });
    return p;
  };
  let chosen = fixed.map((v) => v ?? 0);
  if (free.length > 0) {
    const starts = [0.3, 0.1, 0.1];
    const objective = (x: readonly number[]) => {
      const [a, b, g] = params(x) as [number, number, number];
      return run(y, m, settings.mode, a, b, g).sse;
    };
    const best = nelderMead(
      objective,
      free.map((i) => logit(starts[i] as number)),
      { step: 0.5, maxEvaluations: 5000 },
    );
    chosen = params(best.x);
  }
  const [alpha, beta, gamma] = chosen as [number, number, number];
  const r = run(y, m, settings.mode, alpha, beta, gamma);
  return {
    alpha,
    beta,
    gamma,
    mode: settings.mode,
    seasonLength: m,
    rmse: Math.sqrt(r.sse / r.steps),
    mape: r.pctCount === 0 ? 0 : r.absPct / r.pctCount,
    forecast(h: number): number {
      const s = r.seasonal[(h - 1) % m] as number;
      return settings.mode === "additive" ? r.level + h * r.trend + s : (r.level + h * r.trend) * s;
    },
  };
}
