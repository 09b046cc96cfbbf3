/**
 * Special functions the lifecycle models need, in log space where values overflow: the log-gamma
 * function and the Gauss hypergeometric function 2F1 on [0, 1).
 */

/** Lanczos coefficients for g = 7, n = 9 (relative error of Γ below 1e-15 on the positive axis). */
const lanczos = [
  0.9999999999998099, 676.5203681218851, -1259.1392167224028, 771.3234287776531, -176.6150291621406, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];
const halfLog2Pi = 0.5 * Math.log(2 * Math.PI);

/**
 * ln Γ(x) for x > 0 (Lanczos approximation; below 0.5 through Γ(x) = Γ(x + 1) / x, so no
 * reflection and no loss near 0). NaN for x ≤ 0 or NaN: the models never need the negative axis.
 */
export function logGamma(x: number): number {
  if (!(x > 0)) return Number.NaN;
  if (x === Number.POSITIVE_INFINITY) return x;
  if (x < 0.5) return logGamma(x + 1) - Math.log(x);
  const y = x - 1;
  let sum = lanczos[0] as number;
  for (let i = 1; i < 9; i++) sum += (lanczos[i] as number) / (y + i);
  const t = y + 7.5;
  return halfLog2Pi + (y + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** ln B(a, b) for a, b > 0. */
export function logBeta(a: number, b: number): number {
  return logGamma(a) + logGamma(b) - logGamma(a + b);
}

/** ln(e^u + e^v) without overflow; -Infinity stands for a zero term. */
export function logAddExp(u: number, v: number): number {
  if (u === Number.NEGATIVE_INFINITY) return v;
  if (v === Number.NEGATIVE_INFINITY) return u;
  return u > v ? u + Math.log1p(Math.exp(v - u)) : v + Math.log1p(Math.exp(u - v));
}

/** Most series terms {@link hyp2f1} sums before giving up (z within ~1e-6 of 1 needs millions). */
export const maxHypergeometricTerms = 50_000_000;

/** A 2F1 series that did not converge within {@link maxHypergeometricTerms} terms. */
export class SeriesDivergenceError extends Error {
  override name = "SeriesDivergenceError";
}

/**
 * The Gauss hypergeometric function 2F1(a, b; c; z) for 0 ≤ z < 1 by its power series
 * Σ (a)ₙ(b)ₙ / ((c)ₙ n!) zⁿ, summed until the tail is below double precision. Once n is past −a,
 * −b and −c the ratio of successive terms is z·f·g with f = (a+n)/(c+n) and g = (b+n)/(n+1)
 * positive, monotone and tending to 1, so every later ratio is at most ρ = z·max(1, f)·max(1, g)
 * and the tail after a term t at most |t|·ρ / (1 − ρ). c must not be 0, -1, -2, …; a or b equal
 * to a non-positive integer ends the series (a polynomial).
 *
 * Callers keep the parameters small (BG/NBD uses Euler's transformation, see bg-nbd.ts), so terms
 * neither overflow nor cancel; convergence costs about 40 / (1 − z) terms near z = 1.
 */
export function hyp2f1(a: number, b: number, c: number, z: number): number {
  if (!(z >= 0 && z < 1)) throw new RangeError(`hyp2f1: z = ${z} is outside [0, 1)`);
  if (c <= 0 && Number.isInteger(c)) throw new RangeError(`hyp2f1: c = ${c} is a non-positive integer`);
  if (z === 0) return 1;
  const settled = Math.max(-a, -b, -c, 0);
  let term = 1;
  let sum = 1;
  for (let n = 0; n < maxHypergeometricTerms; n++) {
    const f = (a + n) / (c + n);
    const g = (b + n) / (n + 1);
    term *= f * g * z;
    sum += term;
    if (term === 0) return sum;
    if (n + 1 > settled) {
      const rho = z * Math.max(1, f) * Math.max(1, g);
      if (rho < 1 && (Math.abs(term) * rho) / (1 - rho) <= 1e-17 * Math.abs(sum)) return sum;
    }
  }
  throw new SeriesDivergenceError(`hyp2f1(${a}, ${b}; ${c}; ${z}) did not converge in ${maxHypergeometricTerms} terms`);
}
