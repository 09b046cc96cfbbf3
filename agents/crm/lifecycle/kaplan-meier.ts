/**
 * The Kaplan–Meier product-limit estimator with Greenwood's variance and log-log (complementary
 * log-log) confidence intervals, as R's `survfit(Surv(time, status) ~ 1, conf.type = "log-log")`
 * computes them.
 *
 * At each distinct time t with n at risk (everyone whose time is ≥ t) and d events,
 * S(t) = Π (1 − d/n) over the times up to t. Events at t come before censorings at t, so a
 * customer censored at t is still at risk at t. Greenwood: Var(ln S(t)) = Σ d / (n (n − d)), and
 * its square root is the standard error σ of ln S(t) (R's `std.err`). The log-log interval is
 * symmetric on the scale of ln(−ln S): S^exp(±z σ / ln S), which stays inside (0, 1).
 *
 * R leaves the interval undefined (NA) where S is 1 (before the first event) or 0 (after the last
 * customer churned); here it collapses to the point, [1, 1] and [0, 0].
 */

/** One customer's tenure: the time observed and whether it ended in an event (else censored). */
export interface SurvivalObservation {
  /** Time from the start, ≥ 0. */
  readonly time: number;
  /** True when the observation ended in the event (churn); false when censored. */
  readonly event: boolean;
}

/** One distinct time of the curve. */
export interface KaplanMeierStep {
  /** The time. */
  time: number;
  /** Observations at risk just before `time`. */
  atRisk: number;
  /** Events at `time`. */
  events: number;
  /** Censorings at `time`. */
  censored: number;
  /** Survival just after `time`. */
  survival: number;
  /** Greenwood standard error of ln S(t) (Infinity once S is 0). */
  stdErr: number;
  /** Lower bound of the confidence interval. */
  lower: number;
  /** Upper bound of the confidence interval. */
  upper: number;
}

/** The fitted curve. */
export interface KaplanMeierCurveFit {
  /** One step per distinct time, ascending. */
  steps: KaplanMeierStep[];
  /** Median survival time (R's rule); undefined when S never falls to 0.5. */
  median: number | undefined;
  /** Observations. */
  count: number;
  /** Events. */
  eventCount: number;
}

/** Standard normal quantile for a two-sided 95% interval. */
const z95 = 1.959963984540054;
/** Survival values within this of 0.5 count as exactly 0.5 for the median (R uses the same idea). */
const medianTolerance = 1e-10;

/**
 * Fits the curve. Times must be finite and ≥ 0 (the caller's job; a NaN would sort arbitrarily).
 * Sorting dominates: O(n log n).
 */
export function kaplanMeier(observations: readonly SurvivalObservation[], z: number = z95): KaplanMeierCurveFit {
  const n = observations.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const times = Float64Array.from(observations, (o) => o.time);
  order.sort((i, j) => (times[i] as number) - (times[j] as number));
  const steps: KaplanMeierStep[] = [];
  let atRisk = n;
  let survival = 1;
  let greenwood = 0;
  let eventCount = 0;
  let k = 0;
  while (k < n) {
    const t = times[order[k] as number] as number;
    let events = 0;
    let censored = 0;
    while (k < n && times[order[k] as number] === t) {
      if ((observations[order[k] as number] as SurvivalObservation).event) events++;
      else censored++;
      k++;
    }
    if (events > 0) {
      survival *= 1 - events / atRisk;
      greenwood += events === atRisk ? Number.POSITIVE_INFINITY : events / (atRisk * (atRisk - events));
    }
    const stdErr = Math.sqrt(greenwood);
    const [lower, upper] = logLogInterval(survival, stdErr, z);
    steps.push({ time: t, atRisk, events, censored, survival, stdErr, lower, upper });
    eventCount += events;
    atRisk -= events + censored;
  }
  return { steps, median: medianOf(steps), count: n, eventCount };
}

/** The log-log interval around `s` with standard error `se` of ln s: s^exp(∓z·se/ln s). */
export function logLogInterval(s: number, se: number, z: number = z95): [number, number] {
  if (s >= 1) return [1, 1];
  if (s <= 0) return [0, 0];
  const logS = Math.log(s);
  // ln(-ln S) ± z·se/|ln S|; exp(-exp(.)) maps back (a larger log-log value is a smaller S).
  const center = Math.log(-logS);
  const half = (z * se) / -logS;
  return [Math.exp(-Math.exp(center + half)), Math.exp(-Math.exp(center - half))];
}

/**
 * The smallest time where S ≤ 0.5; where S is exactly 0.5 over an interval, its midpoint (the
 * interval runs to the next drop, or to the last time observed), as R's `quantile.survfit`.
 */
function medianOf(steps: readonly KaplanMeierStep[]): number | undefined {
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i] as KaplanMeierStep;
    if (s.survival > 0.5 + medianTolerance) continue;
    if (s.survival < 0.5 - medianTolerance) return s.time;
    let j = i + 1;
    while (j < steps.length && (steps[j] as KaplanMeierStep).events === 0) j++;
    const end = j < steps.length ? steps[j] : steps[steps.length - 1];
    return (s.time + (end as KaplanMeierStep).time) / 2;
  }
  return undefined;
}
