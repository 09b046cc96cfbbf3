/**
 * Gamma-Gamma against independent computations:
 *
 * - the likelihood with integer shapes, where the Gamma functions are factorials (by hand);
 * - at the published CDNOW estimates (Fader, Hardie & Lee 2005: p = 6.25, q = 3.74, γ = 15.44),
 *   the density of a customer's mean and the posterior mean spend by integrating ν out
 *   numerically with mpmath (30 digits):
 *     f = mp.quad(lambda nu: gammapdf(m, p*x, nu*x) * gammapdf(nu, q, γ), [0, 1, 10, inf])
 *     E = mp.quad(lambda nu: (p/nu) * gammapdf(m, p*x, nu*x) * gammapdf(nu, q, γ), [0, 1, 10, inf]) / f
 * - parameter recovery on 20,000 simulated repeat customers (seeded), within 4 standard errors.
 */
import { describe, expect, it } from "vitest";
import {
  conditionalExpectedSpend,
  fitGammaGamma,
  type GammaGammaParams,
  gammaGammaLogLikelihood,
  type SpendHistory,
} from "./gamma-gamma.ts";
import { invertMatrix, numericHessian } from "./optimize.ts";
import { seededRandom, simulateSpend } from "./simulate.ts";

const cdnow: GammaGammaParams = { p: 6.25, q: 3.74, v: 15.44 };

describe("Gamma-Gamma likelihood", () => {
  it("equals the hand computation with integer shapes", () => {
    const params = { p: 2, q: 3, v: 10 };
    // x = 1: Γ(5)/(Γ(2)Γ(3)) = 12; f = 12 · 10³ · m / (10 + m)⁵
    const f1 = (12 * 1000 * 4) / 14 ** 5;
    // x = 2: Γ(7)/(Γ(4)Γ(3)) = 60; f = 60 · 10³ · m³ · 2⁴ / (10 + 2m)⁷
    const f2 = (60 * 1000 * 3 ** 3 * 16) / 16 ** 7;
    expect(gammaGammaLogLikelihood(params, [{ x: 1, m: 4 }])).toBeCloseTo(Math.log(f1), 13);
    expect(gammaGammaLogLikelihood(params, [{ x: 2, m: 3 }])).toBeCloseTo(Math.log(f2), 13);
  });

  it("equals numerical integration at the published CDNOW estimates (mpmath)", () => {
    const cases: [number, number, number, number][] = [
      [1, 20.5, -3.604517735478888, 24.986095661846495],
      [3, 35.2, -4.074582539020933, 35.20241973010703],
      [7, 12.0, -4.062398512690967, 13.368466336846634],
      [2, 47.75, -4.765045016222645, 45.49704724409449],
    ];
    for (const [x, m, logF, expected] of cases) {
      expect(gammaGammaLogLikelihood(cdnow, [{ x, m }])).toBeCloseTo(logF, 12);
      expect(conditionalExpectedSpend(cdnow, x, m)).toBeCloseTo(expected, 11);
    }
    const all = cases.map(([x, m]) => ({ x, m }));
    expect(gammaGammaLogLikelihood(cdnow, all)).toBeCloseTo(-16.506543803413432, 11);
    // x = 0: the population mean pγ/(q − 1).
    expect(conditionalExpectedSpend(cdnow, 0, 0)).toBeCloseTo(35.21897810218978, 12);
  });
});

describe("fitGammaGamma", () => {
  /** 20,000 repeat customers with 1–10 transactions, spend in micros (γ scales with the unit). */
  function simulate(seed: number, params: GammaGammaParams, n: number): SpendHistory[] {
    const rand = seededRandom(seed);
    return Array.from({ length: n }, () => simulateSpend(rand, params, 1 + Math.floor(10 * rand())));
  }

  it("recovers the parameters within 4 standard errors, whatever the currency unit", () => {
    const truth = { p: 6.25, q: 3.74, v: 15.44e6 }; // γ in micros
    const data = simulate(1999, truth, 20_000);
    const fit = fitGammaGamma(data);
    expect(fit.converged).toBe(true);
    expect(fit.usable).toBe(true);
    const negLL = (t: readonly number[]) =>
      -gammaGammaLogLikelihood({ p: t[0] as number, q: t[1] as number, v: (t[2] as number) * 1e6 }, data);
    const est = [fit.params.p, fit.params.q, fit.params.v / 1e6];
    const cov = invertMatrix(numericHessian(negLL, est, 1e-5));
    [truth.p, truth.q, truth.v / 1e6].forEach((t, i) => {
      const se = Math.sqrt(cov[i]?.[i] as number);
      expect(se / t).toBeLessThan(0.25);
      expect(Math.abs((est[i] as number) - t)).toBeLessThan(4 * se);
    });
    expect(fit.logLikelihood).toBeGreaterThanOrEqual(gammaGammaLogLikelihood(truth, data));
  });

  it("is not usable when every customer spends the same (no heterogeneity to fit)", () => {
    const data = Array.from({ length: 50 }, (_, i) => ({ x: 1 + (i % 3), m: 25 }));
    expect(fitGammaGamma(data).usable).toBe(false);
  });

  it("is not usable when q ≤ 1 (infinite mean spend)", () => {
    // Spend rates ν ~ Gamma(0.6, ·): the population mean pγ/(q − 1) does not exist.
    const data = simulate(3, { p: 3, q: 0.6, v: 5 }, 5000);
    const fit = fitGammaGamma(data);
    expect(fit.params.q).toBeLessThan(1);
    expect(fit.usable).toBe(false);
  });
});
