/**
 * The Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV: using
 * iso-value curves for customer base analysis", JMR 42(4); after Colombo & Jiang 1999).
 *
 * A customer's transaction values are Gamma(p, ν) (shape p, rate ν) and ν varies across
 * customers as Gamma(q, γ); the contract calls γ `v`. The mean m of a customer's x transactions
 * is then Gamma(px, νx), and integrating ν out gives the likelihood of (x, m):
 *
 *   f(m | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q m^(px−1) x^(px) / (γ + m x)^(px+q),
 *
 * maximised over (ln p, ln q, ln γ) with Nelder–Mead. The expected spend per transaction of a
 * customer given (x, m) is the posterior mean (FHL eq. 5), a weighted average of the population
 * mean pγ/(q−1) and the customer's own mean:
 *
 *   E[Z | p, q, γ, x, m] = (γ + m x) p / (p x + q − 1).
 *
 * The population mean is finite only for q > 1, so a fit with q ≤ 1 is not used (see `usable`).
 * The model assumes spend is independent of purchase frequency.
 */
import { type MinimizeOptions, nelderMead } from "./optimize.ts";
import { logGamma } from "./special.ts";

/** Gamma-Gamma parameters. */
export interface GammaGammaParams {
  /** Shape of the per-transaction spend distribution. */
  readonly p: number;
  /** Shape of the distribution of the spend rate ν. */
  readonly q: number;
  /** Rate γ of that distribution (a scale of spend: it has the currency's unit). */
  readonly v: number;
}

/** A repeat customer's spend: x transactions with mean value m > 0. */
export interface SpendHistory {
  /** Transactions the mean is over, ≥ 1. */
  readonly x: number;
  /** Mean transaction value, > 0. */
  readonly m: number;
}

/** A maximum-likelihood fit. */
export interface GammaGammaFitResult {
  /** Estimates. */
  params: GammaGammaParams;
  /** Summed log-likelihood at the estimates. */
  logLikelihood: number;
  /** Whether the optimiser converged to an interior optimum. */
  converged: boolean;
  /** Converged with q > 1, so every expectation is finite. */
  usable: boolean;
}

/** Summed log-likelihood; NaN outside the parameter space. */
export function gammaGammaLogLikelihood(params: GammaGammaParams, data: readonly SpendHistory[]): number {
  const { p, q, v } = params;
  if (!(p > 0 && q > 0 && v > 0)) return Number.NaN;
  const lq = logGamma(q);
  const logV = Math.log(v);
  let sum = 0;
  for (const { x, m } of data) {
    const px = p * x;
    sum +=
      logGamma(px + q) -
      logGamma(px) -
      lq +
      q * logV +
      (px - 1) * Math.log(m) +
      px * Math.log(x) -
      (px + q) * Math.log(v + m * x);
  }
  return sum;
}

/**
 * Maximum-likelihood fit. Values are divided by their mean before the search (γ scales with the
 * currency unit; p and q do not), so the start (1, 1, 1) suits micros and dollars alike.
 */
export function fitGammaGamma(
  data: readonly SpendHistory[],
  opts: Pick<MinimizeOptions, "checkpoint" | "maxEvaluations"> = {},
): GammaGammaFitResult {
  let total = 0;
  for (const d of data) total += d.m;
  const scale = data.length > 0 && total > 0 ? total / data.length : 1;
  // Group by x: Γ(px+q) − Γ(px) is then computed once per distinct x per evaluation.
  const byX = new Map<number, { logM: number[]; m: number[] }>();
  for (const d of data) {
    let g = byX.get(d.x);
    if (g === undefined) {
      g = { logM: [], m: [] };
      byX.set(d.x, g);
    }
    g.m.push(d.m / scale);
    g.logM.push(Math.log(d.m / scale));
  }
  const groups = [...byX].map(([x, g]) => ({
    x,
    logX: Math.log(x),
    m: Float64Array.from(g.m),
    sumLogM: g.logM.reduce((s, v) => s + v, 0),
  }));
  const negLogLikelihood = (theta: readonly number[]): number => {
    if (theta.some((t) => Math.abs(t) > 30)) return Number.POSITIVE_INFINITY;
    const p = Math.exp(theta[0] as number);
    const q = Math.exp(theta[1] as number);
    const v = Math.exp(theta[2] as number);
    const perCustomer = -logGamma(q) + q * Math.log(v);
    let sum = 0;
    for (const g of groups) {
      const px = p * g.x;
      const n = g.m.length;
      sum += n * (logGamma(px + q) - logGamma(px) + perCustomer + px * g.logX) + (px - 1) * g.sumLogM;
      let tail = 0;
      for (let i = 0; i < n; i++) tail += Math.log(v + (g.m[i] as number) * g.x);
      sum -= (px + q) * tail;
    }
    return -sum;
  };
  const result = nelderMead(negLogLikelihood, [0, 0, 0], {
    maxEvaluations: opts.maxEvaluations ?? 20_000,
    ...(opts.checkpoint ? { checkpoint: opts.checkpoint } : {}),
  });
  const [lp, lq, lv] = result.x as [number, number, number];
  const params = { p: Math.exp(lp), q: Math.exp(lq), v: Math.exp(lv) * scale };
  const converged = result.converged && Number.isFinite(result.f) && result.x.every((t) => Math.abs(t) < 25);
  return {
    params,
    logLikelihood: gammaGammaLogLikelihood(params, data),
    converged,
    usable: converged && params.q > 1,
  };
}

/** E[Z | x, m]: expected value of the customer's future transactions (x = 0: the population mean). */
export function conditionalExpectedSpend(params: GammaGammaParams, x: number, m: number): number {
  const { p, q, v } = params;
  return ((v + m * x) * p) / (p * x + q - 1);
}
