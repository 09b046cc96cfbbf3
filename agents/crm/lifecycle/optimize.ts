/**
 * Derivative-free minimisation (Nelder–Mead) for the maximum-likelihood fits, plus a
 * finite-difference Hessian for standard errors.
 *
 * The fits minimise a negative log-likelihood over log-parameters, so the search is unconstrained
 * and a simplex step of 0.1 is a 10% change of a parameter whatever its scale. Nelder–Mead can
 * stall on a face of a collapsed simplex; restarting from the best point with a fresh simplex
 * until a restart no longer improves (the usual remedy) makes its answer reliable to well below
 * the statistical error of any fit.
 */

/** Options of {@link nelderMead}. */
export interface MinimizeOptions {
  /** Edge of the initial simplex along each axis (default 0.1). */
  readonly step?: number;
  /** Most objective evaluations over all restarts (default 20,000). */
  readonly maxEvaluations?: number;
  /** Stop when the simplex's values differ by at most this, relative to max(1, |f|) (default 1e-12). */
  readonly fTolerance?: number;
  /** … and its vertices by at most this in every coordinate (default 1e-9). */
  readonly xTolerance?: number;
  /** Restarts from the best point after convergence (default 3; stops early when one gains nothing). */
  readonly restarts?: number;
  /** Called every few iterations; throws to abandon the search (cancellation, deadline). */
  readonly checkpoint?: () => void;
}

/** The minimum found. */
export interface MinimizeResult {
  /** Best point. */
  x: number[];
  /** Objective at `x`. */
  f: number;
  /** True when the last restart met the tolerances without gaining anything. */
  converged: boolean;
  /** Objective evaluations made. */
  evaluations: number;
}

/**
 * Minimises `f` from `x0` with the Nelder–Mead simplex method and the dimension-adaptive
 * coefficients of Gao & Han (2012), which keep it effective beyond two dimensions. `f` may return
 * Infinity or NaN (both count as +Infinity) for points outside its domain.
 */
export function nelderMead(
  f: (x: readonly number[]) => number,
  x0: readonly number[],
  opts: MinimizeOptions = {},
): MinimizeResult {
  const n = x0.length;
  const step = opts.step ?? 0.1;
  const maxEvaluations = opts.maxEvaluations ?? 20_000;
  const fTol = opts.fTolerance ?? 1e-12;
  const xTol = opts.xTolerance ?? 1e-9;
  const restarts = opts.restarts ?? 3;
  let evaluations = 0;
  const evaluate = (x: number[]): number => {
    evaluations++;
    const v = f(x);
    return Number.isNaN(v) ? Number.POSITIVE_INFINITY : v;
  };
  // Gao & Han's adaptive coefficients: reflection, expansion, contraction, shrink.
  const alpha = 1;
  const beta = 1 + 2 / n;
  const gamma = 0.75 - 1 / (2 * n);
  const delta = 1 - 1 / n;

  let best = [...x0];
  let bestF = evaluate(best);
  let converged = false;
  for (let round = 0; round <= restarts && evaluations < maxEvaluations; round++) {
    const simplex: number[][] = [best];
    const values: number[] = [bestF];
    for (let i = 0; i < n; i++) {
      const v = [...best];
      v[i] = (v[i] as number) + step;
      simplex.push(v);
      values.push(evaluate(v));
    }
    const replaceWorst = (x: number[], fx: number): void => {
      simplex[n] = x;
      values[n] = fx;
    };
    let met = false;
    for (let iteration = 0; evaluations < maxEvaluations; iteration++) {
      if (iteration % 16 === 0) opts.checkpoint?.();
      // Order the vertices by value.
      const order = values.map((_, i) => i).sort((i, j) => (values[i] as number) - (values[j] as number));
      const sorted = order.map((i) => simplex[i] as number[]);
      const sortedValues = order.map((i) => values[i] as number);
      for (let i = 0; i <= n; i++) {
        simplex[i] = sorted[i] as number[];
        values[i] = sortedValues[i] as number;
      }
      const f0 = values[0] as number;
      const fn = values[n] as number;
      if (Math.abs(fn - f0) <= fTol * Math.max(1, Math.abs(f0)) && simplexSize(simplex) <= xTol) {
        met = true;
        break;
      }
      const centroid = new Array<number>(n).fill(0);
      for (let i = 0; i < n; i++) {
        const v = simplex[i] as number[];
        for (let j = 0; j < n; j++) centroid[j] = (centroid[j] as number) + (v[j] as number) / n;
      }
      const worst = simplex[n] as number[];
      const toward = (coef: number) => centroid.map((c, j) => c + coef * (c - (worst[j] as number)));
      const xr = toward(alpha);
      const fr = evaluate(xr);
      if (fr < f0) {
        const xe = toward(alpha * beta);
        const fe = evaluate(xe);
        if (fe < fr) replaceWorst(xe, fe);
        else replaceWorst(xr, fr);
      } else if (fr < (values[n - 1] as number)) {
        replaceWorst(xr, fr);
      } else {
        // Outside contraction when the reflection beat the worst point, inside otherwise.
        const outside = fr < fn;
        const xc = toward(outside ? alpha * gamma : -gamma);
        const fc = evaluate(xc);
        if (fc < (outside ? fr : fn)) {
          replaceWorst(xc, fc);
        } else {
          const x0s = simplex[0] as number[];
          for (let i = 1; i <= n; i++) {
            const v = (simplex[i] as number[]).map((c, j) => (x0s[j] as number) + delta * (c - (x0s[j] as number)));
            simplex[i] = v;
            values[i] = evaluate(v);
          }
        }
      }
    }
    let roundBest = 0;
    for (let i = 1; i <= n; i++) if ((values[i] as number) < (values[roundBest] as number)) roundBest = i;
    const gained = bestF - (values[roundBest] as number);
    if ((values[roundBest] as number) < bestF) {
      best = simplex[roundBest] as number[];
      bestF = values[roundBest] as number;
    }
    // Converged: the tolerances were met, and a restart from the best point found nothing better.
    converged = met && (restarts === 0 || (round > 0 && gained <= 10 * fTol * Math.max(1, Math.abs(bestF))));
    if (converged || !met) break;
  }
  return { x: best, f: bestF, converged, evaluations };
}

/** Largest coordinate distance of a vertex from the first (best) one. */
function simplexSize(simplex: readonly (readonly number[])[]): number {
  const first = simplex[0] as readonly number[];
  let size = 0;
  for (let i = 1; i < simplex.length; i++) {
    const v = simplex[i] as readonly number[];
    for (let j = 0; j < first.length; j++) size = Math.max(size, Math.abs((v[j] as number) - (first[j] as number)));
  }
  return size;
}

/**
 * The Hessian of `f` at `x` by central differences with steps `h` (relative to max(1, |xᵢ|)):
 * for standard errors of maximum-likelihood estimates (inverse of the Hessian of the negative
 * log-likelihood).
 */
export function numericHessian(f: (x: readonly number[]) => number, x: readonly number[], h = 1e-4): number[][] {
  const n = x.length;
  const steps = x.map((v) => h * Math.max(1, Math.abs(v)));
  const at = (di: number, si: number, dj: number, sj: number): number => {
    const y = [...x];
    y[di] = (y[di] as number) + si * (steps[di] as number);
    y[dj] = (y[dj] as number) + sj * (steps[dj] as number);
    return f(y);
  };
  const f0 = f(x);
  const hess: number[][] = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    const hi = steps[i] as number;
    (hess[i] as number[])[i] = (at(i, 1, i, 0) - 2 * f0 + at(i, -1, i, 0)) / (hi * hi);
    for (let j = i + 1; j < n; j++) {
      const v =
        (at(i, 1, j, 1) - at(i, 1, j, -1) - at(i, -1, j, 1) + at(i, -1, j, -1)) / (4 * hi * (steps[j] as number));
      (hess[i] as number[])[j] = v;
      (hess[j] as number[])[i] = v;
    }
  }
  return hess;
}

/** The inverse of a small symmetric positive-definite matrix (Gauss–Jordan with partial pivoting). */
export function invertMatrix(m: readonly (readonly number[])[]): number[][] {
  const n = m.length;
  const a = m.map((row, i) => [...row, ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs((a[r] as number[])[col] as number) > Math.abs((a[pivot] as number[])[col] as number)) pivot = r;
    }
    [a[col], a[pivot]] = [a[pivot] as number[], a[col] as number[]];
    const row = a[col] as number[];
    const p = row[col] as number;
    if (p === 0) throw new RangeError("matrix is singular");
    for (let j = 0; j < 2 * n; j++) row[j] = (row[j] as number) / p;
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const other = a[r] as number[];
      const factor = other[col] as number;
      for (let j = 0; j < 2 * n; j++) other[j] = (other[j] as number) - factor * (row[j] as number);
    }
  }
  return a.map((row) => row.slice(n));
}
