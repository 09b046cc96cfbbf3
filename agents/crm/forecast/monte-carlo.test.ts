/**
 * The simulation against moments computed by hand: fixed probabilities give the binomial variance;
 * a Beta posterior shared by a stage's deals adds the variance of the probability itself.
 */
import { describe, expect, it } from "vitest";
import { type SimDeal, type StagePosterior, simulate } from "./monte-carlo.ts";
import { seededRandom } from "./random.ts";

/** Mean and SD of `n` single-iteration totals, each from its own seed. */
function moments(deals: SimDeal[], posteriors: StagePosterior[], n: number): { mean: number; sd: number } {
  let sum = 0;
  let sq = 0;
  for (let i = 1; i <= n; i++) {
    const t = simulate(deals, 1, 1, seededRandom(BigInt(i)), posteriors).total.mean;
    sum += t;
    sq += t * t;
  }
  const mean = sum / n;
  return { mean, sd: Math.sqrt(sq / n - mean * mean) };
}

describe("Monte Carlo of bookings", () => {
  const ten = (posterior: number | undefined): SimDeal[] =>
    Array.from({ length: 10 }, () => ({ amountMicros: 100, probability: 2 / 3, period: 0, posterior }));
  const n = 20_000;

  it("with fixed probabilities, totals have the binomial moments", () => {
    // Var(total) = 10 · 100² · (2/3)(1/3) = 22,222 → SD 149.07; mean 666.67.
    const m = moments(ten(undefined), [], n);
    // SE of the mean 149/√20000 ≈ 1.05, of the SD ≈ 149/√40000 ≈ 0.75: 5 SE tolerances.
    expect(Math.abs(m.mean - 666.67)).toBeLessThan(5.3);
    expect(Math.abs(m.sd - 149.07)).toBeLessThan(3.8);
  });

  it("with a stage posterior shared by its deals, the mean stays and the spread adds Var(p)", () => {
    // Beta(4, 2): mean 2/3, Var(p) = αβ / ((α+β)²(α+β+1)) = 8 / 252 = 0.031746.
    // Var(total)/100² = 10·E[p(1−p)] + 10²·Var(p), with E[p(1−p)] = E[p] − Var(p) − E[p]²
    // = 0.666667 − 0.031746 − 0.444444 = 0.190476: 1.904762 + 3.174603 = 5.079365 → SD 225.37.
    const m = moments(ten(0), [{ alpha: 4, beta: 2 }], n);
    // SE of the mean 225/√20000 ≈ 1.6; of the SD ≈ 1.6 (the total's kurtosis is mild): 5 SE.
    expect(Math.abs(m.mean - 666.67)).toBeLessThan(8);
    expect(Math.abs(m.sd - 225.37)).toBeLessThan(8);
  });

  it("scales a drawn probability by the deal's own factor (an aged deal keeps its discount)", () => {
    // Probability 1/3 (2/3 halved for age) on the same posterior: E = 10·100·1/3 = 333.33.
    const aged = ten(0).map((d) => ({ ...d, probability: 1 / 3 }));
    const m = moments(aged, [{ alpha: 4, beta: 2 }], n);
    expect(Math.abs(m.mean - 333.33)).toBeLessThan(8);
  });
});
