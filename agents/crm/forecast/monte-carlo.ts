/**
 * Monte Carlo simulation of bookings: in each iteration every open deal closes in its expected
 * period with its probability (a Bernoulli draw) or not at all. A probability calibrated from
 * history is uncertain: it is the mean of a Beta posterior (calibration.ts), so each iteration first
 * draws every stage's probability from its posterior, shared by the deals of that stage — a stage
 * that wins less than its history suggests does so for all its deals at once, and the interval
 * widens with the uncertainty (little history, wide; much history, close to fixed). Given the
 * drawn probabilities deals are independent, so each period is simulated on its own and its
 * per-iteration sums are added into the horizon totals: memory is an array of `iterations` numbers
 * per posterior and two more, whatever the horizon. Quantiles are the linear interpolation of the
 * order statistics (Hyndman & Fan type 7, as R and NumPy default to).
 */
import { betaDraw } from "../../../lib/random/index.ts";
import type { Random } from "./random.ts";

/** A deal as the simulation sees it. */
export interface SimDeal {
  /** Amount in micros of the forecast currency. */
  amountMicros: number;
  /** Probability of closing, 0–1. */
  probability: number;
  /** Forecast period (0-based month of the horizon) the deal is expected to close in. */
  period: number;
  /**
   * The stage's posterior (index into the `posteriors` of {@link simulate}) when the probability is
   * calibrated: each iteration uses its draw times `probability / mean` (the ageing factor).
   */
  posterior?: number | undefined;
}

/** A Beta(α, β) posterior of a stage's probability of winning; both > 0. */
export interface StagePosterior {
  alpha: number;
  beta: number;
}

/** Summary of a simulated distribution, in micros. */
export interface Distribution {
  mean: number;
  p10: number;
  p50: number;
  p90: number;
}

/** The simulated distribution of each period and of the horizon's total. */
export interface Simulation {
  periods: Distribution[];
  total: Distribution;
}

/** Quantile `q` of sorted values: type 7 linear interpolation. */
export function quantile(sorted: Float64Array, q: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return (sorted[lo] as number) + (h - lo) * ((sorted[hi] as number) - (sorted[lo] as number));
}

function summarise(values: Float64Array): Distribution {
  let sum = 0;
  for (const v of values) sum += v;
  const sorted = Float64Array.from(values).sort();
  return {
    mean: values.length === 0 ? 0 : sum / values.length,
    p10: quantile(sorted, 0.1),
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
  };
}

/** Simulates `iterations` outcomes of `deals` over `horizon` periods, drawing from `random`. */
export function simulate(
  deals: readonly SimDeal[],
  horizon: number,
  iterations: number,
  random: Random,
  posteriors: readonly StagePosterior[] = [],
): Simulation {
  // Each iteration's probability ratio to the posterior mean, per stage (1 for a fixed probability).
  const ratios = posteriors.map(({ alpha, beta }) => {
    const mean = alpha / (alpha + beta);
    const r = new Float64Array(iterations);
    for (let i = 0; i < iterations; i++) r[i] = betaDraw(alpha, beta, random) / mean;
    return r;
  });
  const total = new Float64Array(iterations);
  const sample = new Float64Array(iterations);
  const periods: Distribution[] = [];
  for (let p = 0; p < horizon; p++) {
    const mine = deals.filter((d) => d.period === p);
    sample.fill(0);
    for (let i = 0; i < iterations; i++) {
      let s = 0;
      for (const d of mine) {
        const ratio = d.posterior === undefined ? 1 : ((ratios[d.posterior] as Float64Array)[i] as number);
        if (random() < d.probability * ratio) s += d.amountMicros;
      }
      sample[i] = s;
      total[i] = (total[i] as number) + s;
    }
    periods.push(summarise(sample));
  }
  return { periods, total: summarise(total) };
}
