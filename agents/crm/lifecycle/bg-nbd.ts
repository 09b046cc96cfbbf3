/**
 * The BG/NBD model of repeat buying (Fader, Hardie & Lee 2005, "Counting your customers the easy
 * way: an alternative to the Pareto/NBD model", Marketing Science 24(2)).
 *
 * While alive, a customer buys at Poisson rate λ; after each repeat purchase they drop out with
 * probability p. Across customers λ ~ Gamma(r, α) (shape r, rate α) and p ~ Beta(a, b). A
 * customer's history is summarised by x (repeat purchases), t_x (time of the last purchase) and T
 * (time observed), all from the first purchase. The likelihood of one customer (FHL eq. 6):
 *
 *   L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
 *     + [x > 0] · B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)),
 *
 * evaluated in log space (the powers overflow for frequent buyers), with B(a+1, b+x−1)/B(a, b+x)
 * = a/(b+x−1) so the second term is the first's Beta factor times that ratio. The parameters are
 * found by maximising the summed log-likelihood with Nelder–Mead over (ln r, ln α, ln a, ln b);
 * customers with equal (x, t_x, T) are counted once, with a weight.
 *
 * Predictions (FHL eqs. 10 and 11 and appendix):
 *
 *   P(alive | x, t_x, T) = 1 / (1 + [x > 0] · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))
 *   E[Y(t) | x, t_x, T] = P(alive) · (a+b+x−1)/(a−1)
 *                         · [1 − ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x−1; t/(α+T+t))]
 *
 * The 2F1 in the second is evaluated after Euler's transformation 2F1(A, B; C; z) =
 * (1−z)^(C−A−B) 2F1(C−A, C−B; C; z): the power of (α+T)/(α+T+t) then collapses to (1−z)^(a−1) and
 * the series becomes 2F1(a+b−1−r, a−1; a+b+x−1; z), whose first two parameters do not grow with
 * x — no overflow, no cancellation, however frequent the buyer. The expression is analytic in a
 * and b; where a = 1 or a+b+x−1 = 0 make a factor 0/0, it is extrapolated from its values just
 * either side (error O(h⁴)). With x = 0 and T = 0 it is E[X(t)] for a new customer (FHL eq. 7).
 */
import { type MinimizeOptions, nelderMead } from "./optimize.ts";
import { hyp2f1, logGamma } from "./special.ts";

/** BG/NBD parameters. */
export interface BgNbdParams {
  /** Shape of the gamma mixing distribution of purchase rates. */
  readonly r: number;
  /** Rate (the contract calls it scale) of that distribution, in the time unit of the data. */
  readonly alpha: number;
  /** First shape of the beta mixing distribution of dropout probabilities. */
  readonly a: number;
  /** Second shape of that distribution. */
  readonly b: number;
}

/** One customer's repeat-purchase history, or several identical ones. */
export interface RepeatHistory {
  /** Repeat purchases (purchases after the first), an integer ≥ 0. */
  readonly x: number;
  /** Time from the first to the last purchase (0 when x = 0). */
  readonly tx: number;
  /** Time from the first purchase to the end of observation, ≥ tx. */
  readonly T: number;
  /** Customers with this history (default 1). */
  readonly weight?: number;
}

/** A maximum-likelihood fit. */
export interface BgNbdFitResult {
  /** Estimates. */
  params: BgNbdParams;
  /** Summed log-likelihood at the estimates. */
  logLikelihood: number;
  /** Whether the optimiser converged. */
  converged: boolean;
}

/**
 * Histories packed into typed arrays, identical ones merged, for fast repeated evaluation: each
 * record points into tables of the distinct x, t_x and T values, so the per-x Gamma terms and the
 * logarithms ln(α + t) are computed once per distinct value and evaluation, not per customer.
 */
export interface PackedHistories {
  /** Distinct x values. */
  readonly xs: Float64Array;
  /** Distinct t_x values. */
  readonly txs: Float64Array;
  /** Distinct T values. */
  readonly Ts: Float64Array;
  /** Per record: index into `xs`. */
  readonly xIndex: Uint32Array;
  /** Per record: index into `txs`. */
  readonly txIndex: Uint32Array;
  /** Per record: index into `Ts`. */
  readonly TIndex: Uint32Array;
  /** Per record: customers with this history. */
  readonly weight: Float64Array;
  /** Sum of weights. */
  readonly customers: number;
}

/** Merges identical histories and packs them. */
export function packHistories(histories: Iterable<RepeatHistory>): PackedHistories {
  const merged = new Map<string, { x: number; tx: number; T: number; w: number }>();
  for (const h of histories) {
    const key = `${h.x}|${h.tx}|${h.T}`;
    const m = merged.get(key);
    if (m === undefined) merged.set(key, { x: h.x, tx: h.tx, T: h.T, w: h.weight ?? 1 });
    else m.w += h.weight ?? 1;
  }
  const records = [...merged.values()];
  const table = (pick: (m: (typeof records)[number]) => number) => {
    const values = [...new Set(records.map(pick))].sort((u, v) => u - v);
    const pos = new Map(values.map((v, i) => [v, i]));
    return { values: Float64Array.from(values), index: Uint32Array.from(records, (m) => pos.get(pick(m)) as number) };
  };
  const x = table((m) => m.x);
  const tx = table((m) => m.tx);
  const T = table((m) => m.T);
  const weight = Float64Array.from(records, (m) => m.w);
  return {
    xs: x.values,
    txs: tx.values,
    Ts: T.values,
    xIndex: x.index,
    txIndex: tx.index,
    TIndex: T.index,
    weight,
    customers: weight.reduce((s, w) => s + w, 0),
  };
}

/** ln(α + v) for each v. */
function logShifted(alpha: number, values: Float64Array): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.log(alpha + (values[i] as number));
  return out;
}

/** Summed log-likelihood of the packed histories; NaN outside the parameter space. */
export function bgNbdLogLikelihood(params: BgNbdParams, data: PackedHistories): number {
  const { r, alpha, a, b } = params;
  if (!(r > 0 && alpha > 0 && a > 0 && b > 0)) return Number.NaN;
  // Per distinct x: everything but the two time terms.
  const nx = data.xs.length;
  const base = new Float64Array(nx);
  const logRatio = new Float64Array(nx); // ln(a / (b+x−1)) for x > 0
  const common = -logGamma(r) + r * Math.log(alpha) + logGamma(a + b) - logGamma(b);
  for (let k = 0; k < nx; k++) {
    const x = data.xs[k] as number;
    base[k] = common + logGamma(r + x) + logGamma(b + x) - logGamma(a + b + x);
    logRatio[k] = x > 0 ? Math.log(a) - Math.log(b + x - 1) : Number.NEGATIVE_INFINITY;
  }
  const logT = logShifted(alpha, data.Ts);
  const logTx = logShifted(alpha, data.txs);
  let sum = 0;
  const n = data.weight.length;
  for (let i = 0; i < n; i++) {
    const k = data.xIndex[i] as number;
    const x = data.xs[k] as number;
    const rx = r + x;
    const alive = -rx * (logT[data.TIndex[i] as number] as number);
    let ll = alive;
    if (x > 0) {
      // ln(e^alive + e^dead), inline for speed.
      const dead = (logRatio[k] as number) - rx * (logTx[data.txIndex[i] as number] as number);
      ll = alive > dead ? alive + Math.log1p(Math.exp(dead - alive)) : dead + Math.log1p(Math.exp(alive - dead));
    }
    sum += (data.weight[i] as number) * ((base[k] as number) + ll);
  }
  return sum;
}

/**
 * Maximum-likelihood fit. Times are rescaled so the longest T is 10 before the search (α scales
 * with the time unit; the others do not), which puts the start (1, 1, 1, 1) in the right region
 * whatever the unit; α is scaled back on return.
 */
export function fitBgNbd(
  histories: Iterable<RepeatHistory> | PackedHistories,
  opts: Pick<MinimizeOptions, "checkpoint" | "maxEvaluations"> = {},
): BgNbdFitResult {
  const data = isPacked(histories) ? histories : packHistories(histories);
  const maxT = data.Ts.length > 0 ? (data.Ts[data.Ts.length - 1] as number) : 0;
  const scale = maxT > 0 ? maxT / 10 : 1;
  const scaled: PackedHistories = { ...data, txs: data.txs.map((v) => v / scale), Ts: data.Ts.map((v) => v / scale) };
  const objective = (theta: readonly number[]): number => {
    // Far outside any plausible region exp() would overflow or underflow: out of the domain.
    if (theta.some((v) => Math.abs(v) > 30)) return Number.POSITIVE_INFINITY;
    const [lr, la, lA, lB] = theta as [number, number, number, number];
    return -bgNbdLogLikelihood({ r: Math.exp(lr), alpha: Math.exp(la), a: Math.exp(lA), b: Math.exp(lB) }, scaled);
  };
  const result = nelderMead(objective, [0, 0, 0, 0], {
    maxEvaluations: opts.maxEvaluations ?? 20_000,
    ...(opts.checkpoint ? { checkpoint: opts.checkpoint } : {}),
  });
  const [lr, la, lA, lB] = result.x as [number, number, number, number];
  const params = { r: Math.exp(lr), alpha: Math.exp(la) * scale, a: Math.exp(lA), b: Math.exp(lB) };
  // Parameters pinned at the search box are a boundary solution, not a converged interior optimum.
  const interior = result.x.every((v) => Math.abs(v) < 25);
  return {
    params,
    logLikelihood: bgNbdLogLikelihood(params, data),
    converged: result.converged && interior && Number.isFinite(result.f),
  };
}

function isPacked(h: Iterable<RepeatHistory> | PackedHistories): h is PackedHistories {
  return (h as PackedHistories).xIndex instanceof Uint32Array;
}

/** P(alive | x, t_x, T): the probability the customer has not dropped out by T. */
export function probabilityAlive(params: BgNbdParams, x: number, tx: number, T: number): number {
  if (x === 0) return 1;
  const { r, alpha, a, b } = params;
  // ln of the odds of having dropped out after the last purchase.
  const logOdds = Math.log(a) - Math.log(b + x - 1) + (r + x) * (Math.log(alpha + T) - Math.log(alpha + tx));
  return logOdds > 0 ? Math.exp(-logOdds) / (1 + Math.exp(-logOdds)) : 1 / (1 + Math.exp(logOdds));
}

/**
 * Floor of 1 − z = (α+T)/(α+T+t) in {@link expectedAliveFactor}: the series needs ~40/(1 − z)
 * terms, which a tiny α with T = 0 would push past any budget. Flooring it means adding at most
 * 1e-4·t to α + T — under a third of a day on a ten-year horizon, below the data's one-day
 * resolution — and bounds the series at ~4·10⁵ terms.
 */
const minOneMinusZ = 1e-4;
/** Distance from a removable singularity below which {@link expectedAliveFactor} averages around it. */
const singularityGuard = 1e-6;
/** Half-width of that average. */
const singularityStep = 1e-4;

/**
 * g(0) for a g analytic at 0 but not computable there: the means of g(±h) and g(±2h) combined by
 * Richardson extrapolation, (4·m(h) − m(2h)) / 3, which cancels the h² error term (error O(h⁴)).
 */
function aroundSingularity(g: (h: number) => number): number {
  const h = singularityStep;
  const near = (g(h) + g(-h)) / 2;
  const far = (g(2 * h) + g(-2 * h)) / 2;
  return (4 * near - far) / 3;
}

/**
 * E[Y(t)] / P(alive) for a customer with x repeat purchases observed for T: the expected purchases
 * in (T, T+t] of a customer known to be alive with that history. Depends on x and T only (t_x
 * enters through P(alive)), so callers may cache it per (x, T).
 */
export function expectedAliveFactor(params: BgNbdParams, x: number, T: number, t: number): number {
  if (t <= 0) return 0;
  const { a, b } = params;
  if (Math.abs(a - 1) < singularityGuard) {
    return aroundSingularity((h) => expectedAliveFactor({ ...params, a: 1 + h }, x, T, t));
  }
  if (Math.abs(a + b + x - 1) < singularityGuard) {
    return aroundSingularity((h) => expectedAliveFactor({ ...params, b: 1 - a - x + h }, x, T, t));
  }
  const { r, alpha } = params;
  // 1 − z = (α+T)/(α+T+t), floored (see minOneMinusZ).
  const start = Math.max(alpha + T, (minOneMinusZ * t) / (1 - minOneMinusZ));
  const z = t / (start + t);
  const oneMinusZ = start / (start + t);
  const f = hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z);
  return ((a + b + x - 1) / (a - 1)) * (1 - oneMinusZ ** (a - 1) * f);
}

/** E[Y(t) | x, t_x, T]: expected purchases in the next t (FHL eq. 10). */
export function conditionalExpectedPurchases(params: BgNbdParams, x: number, tx: number, T: number, t: number): number {
  return probabilityAlive(params, x, tx, T) * expectedAliveFactor(params, x, T, t);
}

/** E[X(t)]: expected repeat purchases of a new customer in their first t (FHL eq. 7). */
export function expectedRepeatPurchases(params: BgNbdParams, t: number): number {
  return expectedAliveFactor(params, 0, 0, t);
}
