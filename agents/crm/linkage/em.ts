/**
 * Expectation–maximisation of the Fellegi–Sunter model (Winkler 1988; Jaro 1989).
 *
 * Each candidate pair is a vector of agreement levels, one per compared field. The model is a
 * mixture of two latent classes, matches (M) and non-matches (U), with fields independent given
 * the class: P(γ | M) = Π_f m_f(γ_f), P(γ | U) = Π_f u_f(γ_f), and P(M) = p. A missing level
 * (one value empty) carries no information and is left out of both products.
 *
 * EM runs on the distinct agreement patterns and their counts, not on the pairs, so an iteration
 * costs O(patterns × fields) however many pairs blocking produced:
 *
 * - E step: g(γ) = p P(γ|M) / (p P(γ|M) + (1 − p) P(γ|U)), the posterior that a pattern is a match;
 * - M step: p = Σ n_γ g(γ) / Σ n_γ; m_f(l) = Σ_{γ_f = l} n_γ g(γ) / Σ_{γ_f ≠ missing} n_γ g(γ), and
 *   u_f(l) the same with 1 − g(γ).
 *
 * It stops when no parameter moves by more than the tolerance. Start: m puts 0.9 on full agreement
 * (the rest spread over the lower levels); u starts from the level frequencies over all pairs,
 * which are mostly non-matches (Jaro 1989). Probabilities are kept within [1e-6, 1 − 1e-6] so
 * that no weight is infinite. If EM ends with the classes swapped (full agreement likelier among
 * "non-matches" on most fields), the classes are swapped back.
 */

/** Agreement level codes, in the order of their parameters: full, partial, none; missing last. */
export const Level = { full: 0, partial: 1, none: 2, missing: 3 } as const;
/** One of {@link Level}. */
export type LevelCode = (typeof Level)[keyof typeof Level];

/** Agreement patterns with how many candidate pairs show each. */
export interface PatternCounts {
  /** Number of fields of every pattern. */
  fields: number;
  /** Levels of pattern k at `levels[k * fields + f]`. */
  levels: Uint8Array;
  /** Pairs showing pattern k. */
  counts: Float64Array;
  /** Whether field f has a partial level (three levels rather than two). */
  hasPartial: readonly boolean[];
}

/** EM settings, defaults resolved. */
export interface EmOptions {
  maxIterations: number;
  tolerance: number;
  initialMatchProportion: number;
}

/** Estimated parameters: m and u per field and level (index by {@link Level}; missing unused). */
export interface EmEstimate {
  m: number[][];
  u: number[][];
  /** Share of pairs that are matches. */
  p: number;
  iterations: number;
  converged: boolean;
}

const floor = 1e-6;
const clamp = (x: number): number => (x < floor ? floor : Math.min(x, 1 - floor));

/** The levels field f can take, apart from missing. */
function levelsOf(hasPartial: boolean): LevelCode[] {
  return hasPartial ? [Level.full, Level.partial, Level.none] : [Level.full, Level.none];
}

/** Fits the two-class model to `data` by EM from the usual starting point. */
export function estimateEm(data: PatternCounts, opts: EmOptions): EmEstimate {
  const F = data.fields;
  const K = data.counts.length;
  const m: number[][] = [];
  const u: number[][] = [];
  // u from the level frequencies over all pairs; m favouring full agreement.
  for (let f = 0; f < F; f++) {
    const levels = levelsOf(data.hasPartial[f] === true);
    const freq = [0, 0, 0, 0];
    let present = 0;
    for (let k = 0; k < K; k++) {
      const l = data.levels[k * F + f] as number;
      if (l === Level.missing) continue;
      freq[l] = (freq[l] as number) + (data.counts[k] as number);
      present += data.counts[k] as number;
    }
    const mf = [0, 0, 0, 0];
    const uf = [0, 0, 0, 0];
    for (const l of levels) {
      mf[l] = l === Level.full ? 0.9 : 0.1 / (levels.length - 1);
      uf[l] = clamp(present > 0 ? (freq[l] as number) / present : 1 / levels.length);
    }
    m.push(mf);
    u.push(uf);
  }
  const initialP = opts.initialMatchProportion;
  return runEm(data, { m, u, p: initialP }, opts);
}

/** EM from the given starting parameters. */
export function runEm(
  data: PatternCounts,
  start: { m: number[][]; u: number[][]; p: number },
  opts: EmOptions,
): EmEstimate {
  const F = data.fields;
  const K = data.counts.length;
  let m = start.m.map((r) => [...r]);
  let u = start.u.map((r) => [...r]);
  let p = clamp(start.p);
  const g = new Float64Array(K);
  let total = 0;
  for (let k = 0; k < K; k++) total += data.counts[k] as number;
  let iterations = 0;
  let converged = false;
  if (total === 0) return { m, u, p, iterations, converged: true };
  while (iterations < opts.maxIterations) {
    iterations++;
    // E step, in logs so that 30 fields of small probabilities do not underflow.
    for (let k = 0; k < K; k++) {
      let logM = Math.log(p);
      let logU = Math.log(1 - p);
      for (let f = 0; f < F; f++) {
        const l = data.levels[k * F + f] as number;
        if (l === Level.missing) continue;
        logM += Math.log((m[f] as number[])[l] as number);
        logU += Math.log((u[f] as number[])[l] as number);
      }
      g[k] = 1 / (1 + Math.exp(logU - logM));
    }
    // M step.
    const mNum = Array.from({ length: F }, () => [0, 0, 0, 0]);
    const uNum = Array.from({ length: F }, () => [0, 0, 0, 0]);
    let matches = 0;
    for (let k = 0; k < K; k++) {
      const c = data.counts[k] as number;
      const gm = c * (g[k] as number);
      const gu = c - gm;
      matches += gm;
      for (let f = 0; f < F; f++) {
        const l = data.levels[k * F + f] as number;
        if (l === Level.missing) continue;
        (mNum[f] as number[])[l] = ((mNum[f] as number[])[l] as number) + gm;
        (uNum[f] as number[])[l] = ((uNum[f] as number[])[l] as number) + gu;
      }
    }
    const nextP = clamp(matches / total);
    const nextM: number[][] = [];
    const nextU: number[][] = [];
    let delta = Math.abs(nextP - p);
    for (let f = 0; f < F; f++) {
      const levels = levelsOf(data.hasPartial[f] === true);
      const mf = [0, 0, 0, 0];
      const uf = [0, 0, 0, 0];
      const mSum = levels.reduce<number>((s, l) => s + ((mNum[f] as number[])[l] as number), 0);
      const uSum = levels.reduce<number>((s, l) => s + ((uNum[f] as number[])[l] as number), 0);
      for (const l of levels) {
        // A field never present keeps its parameters.
        mf[l] = mSum > 0 ? clamp(((mNum[f] as number[])[l] as number) / mSum) : ((m[f] as number[])[l] as number);
        uf[l] = uSum > 0 ? clamp(((uNum[f] as number[])[l] as number) / uSum) : ((u[f] as number[])[l] as number);
        delta = Math.max(
          delta,
          Math.abs((mf[l] as number) - ((m[f] as number[])[l] as number)),
          Math.abs((uf[l] as number) - ((u[f] as number[])[l] as number)),
        );
      }
      nextM.push(mf);
      nextU.push(uf);
    }
    m = nextM;
    u = nextU;
    p = nextP;
    if (delta <= opts.tolerance) {
      converged = true;
      break;
    }
  }
  // Label switching: the match class is the one in which fields agree fully more often.
  let agreeing = 0;
  for (let f = 0; f < F; f++) {
    if (((m[f] as number[])[Level.full] as number) > ((u[f] as number[])[Level.full] as number)) agreeing++;
  }
  if (F > 0 && agreeing * 2 < F) {
    [m, u] = [u, m];
    p = clamp(1 - p);
  }
  return { m, u, p, iterations, converged };
}

/** log2(m / u) of each field and level: the weight a level adds to a pair's match weight. */
export function levelWeights(est: EmEstimate): number[][] {
  return est.m.map((mf, f) =>
    mf.map((mv, l) => (l === Level.missing || mv === 0 ? 0 : Math.log2(mv / ((est.u[f] as number[])[l] as number)))),
  );
}
