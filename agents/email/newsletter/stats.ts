/**
 * The statistics of a subject-line test: the pooled two-proportion z-test that decides a winner,
 * and the sample size per variant that gives the test its power (Fleiss' formula, the one R's
 * `power.prop.test` solves). Normal quantiles and probabilities come from jStat.
 */
import jStat from "jstat";

/** Φ, the standard normal distribution function. */
export function normalCdf(z: number): number {
  return jStat.normal.cdf(z, 0, 1);
}

/** Φ⁻¹, the standard normal quantile. */
export function normalQuantile(p: number): number {
  return jStat.normal.inv(p, 0, 1);
}

/** Successes and trials of one arm. */
export interface Arm {
  readonly successes: number;
  readonly trials: number;
}

/** Result of a two-proportion test of arm b against arm a. */
export interface ZTest {
  /** (p_b − p_a) / SE under the pooled null; 0 when undefined (no trials or no variance). */
  readonly z: number;
  /** Two-sided p-value, 2(1 − Φ(|z|)); 1 when undefined. */
  readonly pValue: number;
}

/**
 * The pooled two-proportion z-test (without continuity correction; z² is the Pearson χ² of the
 * 2×2 table, as R's `prop.test(correct = FALSE)` reports it).
 */
export function twoProportionZTest(a: Arm, b: Arm): ZTest {
  if (a.trials <= 0 || b.trials <= 0) return { z: 0, pValue: 1 };
  const pa = a.successes / a.trials;
  const pb = b.successes / b.trials;
  const pooled = (a.successes + b.successes) / (a.trials + b.trials);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / a.trials + 1 / b.trials));
  if (!(se > 0)) return { z: 0, pValue: 1 };
  const z = (pb - pa) / se;
  return { z, pValue: Math.min(1, 2 * normalCdf(-Math.abs(z))) };
}

/**
 * Recipients per variant to detect p2 against p1 with a two-sided test at `alpha` and `power`:
 * n = (z(1−α/2)·√(2·p̄·q̄) + z(1−β)·√(p1q1 + p2q2))² / (p2 − p1)², rounded up.
 */
export function sampleSizePerVariant(p1: number, p2: number, alpha: number, power: number): number {
  const pbar = (p1 + p2) / 2;
  const za = normalQuantile(1 - alpha / 2);
  const zb = normalQuantile(power);
  const n =
    (za * Math.sqrt(2 * pbar * (1 - pbar)) + zb * Math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2;
  return Math.ceil(n - 1e-9);
}

/** Power of the two-sided test with `n` recipients per variant (the inverse of {@link sampleSizePerVariant}). */
export function achievedPower(p1: number, p2: number, alpha: number, n: number): number {
  if (n <= 0) return 0;
  const pbar = (p1 + p2) / 2;
  const za = normalQuantile(1 - alpha / 2);
  return normalCdf(
    (Math.abs(p2 - p1) * Math.sqrt(n) - za * Math.sqrt(2 * pbar * (1 - pbar))) /
      Math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)),
  );
}

/** The decision between variants from their arms (control first). */
export interface WinnerDecision {
  /** Index of the variant with the highest rate (ties go to the earlier, i.e. the control). */
  readonly winner: number;
  /** True when the winner beats every other variant at `alphaPerComparison`. */
  readonly significant: boolean;
  /** Smallest z of the winner against another variant. */
  readonly z: number;
  /** Largest p-value of those comparisons. */
  readonly pValue: number;
}

/** Picks the best arm and tests it against each other arm (Bonferroni: each at `alphaPerComparison`). */
export function decideWinner(arms: readonly Arm[], alphaPerComparison: number): WinnerDecision {
  const rate = (a: Arm) => (a.trials > 0 ? a.successes / a.trials : 0);
  let winner = 0;
  for (let i = 1; i < arms.length; i++) {
    if (rate(arms[i] as Arm) > rate(arms[winner] as Arm)) winner = i;
  }
  let z = Number.POSITIVE_INFINITY;
  let pValue = 0;
  for (let i = 0; i < arms.length; i++) {
    if (i === winner) continue;
    const t = twoProportionZTest(arms[i] as Arm, arms[winner] as Arm);
    z = Math.min(z, t.z);
    pValue = Math.max(pValue, t.pValue);
  }
  if (arms.length < 2) return { winner, significant: false, z: 0, pValue: 1 };
  return { winner, significant: pValue < alphaPerComparison, z, pValue };
}
