/**
 * BG/NBD against values computed independently of the closed forms:
 *
 * - the log-likelihood at the published CDNOW estimates (Fader, Hardie & Lee 2005: r = 0.243,
 *   α = 4.414, a = 0.793, b = 2.426, weeks) on small cases, by hand (elementary for x ≤ 2) and by
 *   numerical integration of the individual-level likelihood over λ ~ Gamma(r, α), p ~ Beta(a, b)
 *   with mpmath (30 digits; Debian's python3-mpmath):
 *     L(λ, p) = (1−p)^x λ^x e^(−λT) + [x>0] p (1−p)^(x−1) λ^x e^(−λ t_x)
 *     mp.log(mp.quad(lambda p: mp.quad(lambda lam: L(lam, p) * gammapdf(lam, r, α), [0, 1, 10, inf])
 *                               * betapdf(p, a, b), [0, 0.001, 0.5, 1]))
 *   (for x = 0 that quadrature, without the λ^x factor, is only good to 1e-7 near λ = 0; the
 *   closed form (α/(α+T))^r is the hand case instead)
 * - P(alive) and E[Y(t) | x, t_x, T] by integrating the alive posterior (λ ~ Gamma(r+x, α+T),
 *   p ~ Beta(a, b+x), E[Y | λ, p] = (1 − e^(−λpt)) / p, its λ-part in closed form) with mpmath:
 *     pa * mp.quad(lambda p: (1 − ((α+T)/(α+T+p t))^(r+x)) / p * betapdf(p, a, b+x), [0, 1e-8, 0.01, 1])
 *   with pa = L_alive / (L_alive + L_dead) from the Beta and Gamma functions. scipy's dblquad over
 *   (λ, p) agrees to 1e-11. For the CDNOW customer (x = 2, t_x = 30.43, T = 38.86) this is the
 *   1.226 expected purchases in the next 39 weeks FHL's note reports.
 * - parameter recovery on 20,000 customers simulated from known parameters (seeded).
 */
import { describe, expect, it } from "vitest";
import {
  type BgNbdParams,
  bgNbdLogLikelihood,
  conditionalExpectedPurchases,
  expectedRepeatPurchases,
  fitBgNbd,
  packHistories,
  probabilityAlive,
} from "./bg-nbd.ts";
import { invertMatrix, numericHessian } from "./optimize.ts";
import { seededRandom, simulateBgNbdCustomer } from "./simulate.ts";

const cdnow: BgNbdParams = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };

/** Relative closeness. */
const expectRelClose = (actual: number, expected: number, rel: number) =>
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(rel * Math.abs(expected));

describe("BG/NBD log-likelihood at the published CDNOW estimates", () => {
  it("equals the hand computation for x = 0, 1, 2", () => {
    const { r, alpha: al, a, b } = cdnow;
    // x = 0: L = (α / (α+T))^r
    const l0 = r * Math.log(al / (al + 38.86));
    // x = 1: L = r α^r [b/(a+b) (α+T)^−(r+1) + a/(a+b) (α+t_x)^−(r+1)]
    const l1 = Math.log(
      r * al ** r * ((b / (a + b)) * (al + 38.86) ** -(r + 1) + (a / (a + b)) * (al + 1.71) ** -(r + 1)),
    );
    // x = 2: L = r(r+1) α^r [b(b+1)/((a+b)(a+b+1)) (α+T)^−(r+2) + ab/((a+b)(a+b+1)) (α+t_x)^−(r+2)]
    const ab = (a + b) * (a + b + 1);
    const l2 = Math.log(
      r *
        (r + 1) *
        al ** r *
        (((b * (b + 1)) / ab) * (al + 38.86) ** -(r + 2) + ((a * b) / ab) * (al + 30.43) ** -(r + 2)),
    );
    const one = (x: number, tx: number) => bgNbdLogLikelihood(cdnow, packHistories([{ x, tx, T: 38.86 }]));
    expect(one(0, 0)).toBeCloseTo(l0, 13);
    expect(one(1, 1.71)).toBeCloseTo(l1, 13);
    expect(one(2, 30.43)).toBeCloseTo(l2, 13);
  });

  it("equals numerical integration of the individual-level likelihood (mpmath)", () => {
    const cases: [number, number, number, number][] = [
      [2, 30.43, 38.86, -9.45860630706627],
      [1, 1.71, 38.86, -4.469093275032589],
      [5, 32.0, 34.0, -17.292777851849912],
      [12, 29.5, 31.0, -27.875751393734525],
    ];
    for (const [x, tx, T, ll] of cases) {
      expect(bgNbdLogLikelihood(cdnow, packHistories([{ x, tx, T }]))).toBeCloseTo(ll, 11);
    }
    // Summed over the customers, with a repeated history merged into a weight.
    const none = { x: 0, tx: 0, T: 38.86 };
    const all = packHistories([...cases.map(([x, tx, T]) => ({ x, tx, T })), none, none]);
    expect(all.weight.length).toBe(5);
    const l0 = cdnow.r * Math.log(cdnow.alpha / (cdnow.alpha + 38.86)); // x = 0, by hand
    expect(bgNbdLogLikelihood(cdnow, all)).toBeCloseTo(-59.0962288276833 + 2 * l0, 10);
  });

  it("stays finite for a very frequent buyer (powers that overflow outside log space)", () => {
    const ll = bgNbdLogLikelihood(cdnow, packHistories([{ x: 5000, tx: 364, T: 365 }]));
    expect(Number.isFinite(ll)).toBe(true);
    expect(bgNbdLogLikelihood({ ...cdnow, r: -1 }, packHistories([{ x: 0, tx: 0, T: 1 }]))).toBeNaN();
  });
});

describe("BG/NBD predictions against numerical integration (mpmath)", () => {
  // [params, x, t_x, T, t, P(alive), E[Y(t)]]
  const a03: BgNbdParams = { r: 0.8, alpha: 3, a: 0.3, b: 0.4 }; // a < 1 and a + b − 1 < 0
  const a25: BgNbdParams = { r: 1.5, alpha: 10, a: 2.5, b: 4 };
  const a1: BgNbdParams = { r: 0.5, alpha: 20, a: 1, b: 3 }; // a = 1: the removable singularity
  const cases: [BgNbdParams, number, number, number, number, number, number][] = [
    [cdnow, 0, 0, 0, 39, 1, 1.196723193320817],
    [cdnow, 2, 30.43, 38.86, 39, 0.726578570080673, 1.2260281747671444],
    [cdnow, 4, 20, 30, 60, 0.6145511958828571, 3.2155092884349843],
    [cdnow, 1, 2, 30, 365, 0.2748725860483938, 1.5782699945744518],
    [cdnow, 40, 300, 310, 3652.5, 0.9343251007658744, 128.54612246384826],
    [cdnow, 0, 0, 0, 3652.5, 1, 10.751485178086801],
    [a03, 0, 0, 0, 39, 1, 4.0090696592864425],
    [a03, 2, 30.43, 38.86, 39, 0.7131616701204448, 1.6121702017130173],
    [a03, 4, 20, 30, 60, 0.667052554146294, 4.731578706701643],
    [a03, 1, 2, 30, 365, 0.042735765314515645, 0.445433377465545],
    [a03, 40, 300, 310, 3652.5, 0.9721573027677384, 276.7928221005715],
    [a03, 0, 0, 0, 3652.5, 1, 92.31166488510988],
    [a25, 0, 0, 0, 39, 1, 2.163221980336763],
    [a25, 2, 30.43, 38.86, 39, 0.5075726066603269, 0.9295421725390592],
    [a25, 4, 20, 30, 60, 0.36525398506782264, 1.3799676419250424],
    [a25, 40, 300, 310, 3652.5, 0.8216165571104871, 24.273587407763934],
    [a25, 0, 0, 0, 3652.5, 1, 3.6484820039340287],
    [a1, 0, 0, 0, 39, 1, 0.7484768278729216],
    [a1, 2, 30.43, 38.86, 39, 0.7310301858043826, 1.026841807401776],
    [a1, 1, 2, 30, 365, 0.466834136098745, 2.2780930564402277],
    [a1, 40, 300, 310, 3652.5, 0.9235379562941785, 96.70601431431207],
  ];

  it.each(cases)("%o x=%d t_x=%d T=%d t=%d", (params, x, tx, T, t, alive, expected) => {
    expectRelClose(probabilityAlive(params, x, tx, T), alive, 1e-12);
    // 1e-9: the quadrature's own accuracy near p = 0 where a < 1 makes the density singular.
    expectRelClose(conditionalExpectedPurchases(params, x, tx, T, t), expected, 1e-9);
  });

  it("bounds the work when α is tiny and the customer new (z → 1)", () => {
    const tiny: BgNbdParams = { r: 1e-3, alpha: 1e-9, a: 0.8, b: 2 };
    const e = conditionalExpectedPurchases(tiny, 0, 0, 0, 3652.5);
    expect(Number.isFinite(e)).toBe(true);
    // The floor moves α + T by at most 1e-4·t: the answer is that of α + T = 0.365 days.
    const shifted = conditionalExpectedPurchases({ ...tiny, alpha: (1e-4 * 3652.5) / (1 - 1e-4) }, 0, 0, 0, 3652.5);
    expect(e).toBeCloseTo(shifted, 12);
  });

  it("gives E[X(t)] of a new customer, increasing in t and 0 at t = 0", () => {
    expectRelClose(expectedRepeatPurchases(cdnow, 39), 1.196723193320817, 1e-12);
    expect(expectedRepeatPurchases(cdnow, 0)).toBe(0);
    expect(expectedRepeatPurchases(cdnow, 78)).toBeGreaterThan(expectedRepeatPurchases(cdnow, 39));
  });
});

describe("fitBgNbd", () => {
  it("recovers the parameters of 20,000 simulated customers within 4 standard errors", () => {
    // CDNOW-like: first purchases spread over 12 weeks, observed to week 39.
    const rand = seededRandom(20050101);
    const customers = Array.from({ length: 20_000 }, () => simulateBgNbdCustomer(rand, cdnow, 27 + 12 * rand()));
    const data = packHistories(customers);
    const fit = fitBgNbd(data);
    expect(fit.converged).toBe(true);
    // Standard errors from the observed information (inverse Hessian of −LL in (r, α, a, b)).
    const negLL = (v: readonly number[]) =>
      -bgNbdLogLikelihood({ r: v[0] as number, alpha: v[1] as number, a: v[2] as number, b: v[3] as number }, data);
    const est = [fit.params.r, fit.params.alpha, fit.params.a, fit.params.b];
    const cov = invertMatrix(numericHessian(negLL, est, 1e-5));
    const truth = [cdnow.r, cdnow.alpha, cdnow.a, cdnow.b];
    truth.forEach((t, i) => {
      const se = Math.sqrt(cov[i]?.[i] as number);
      expect(se / t).toBeLessThan(0.25); // the test can tell a wrong fit from the right one
      expect(Math.abs((est[i] as number) - t)).toBeLessThan(4 * se);
    });
    // The optimum really is one: the truth scores no better than the estimate.
    expect(fit.logLikelihood).toBeGreaterThanOrEqual(bgNbdLogLikelihood(cdnow, data));
  });

  it("is invariant to the time unit: α scales, the others stay", () => {
    const rand = seededRandom(7);
    const weeks = Array.from({ length: 3000 }, () => simulateBgNbdCustomer(rand, cdnow, 39));
    const days = weeks.map((c) => ({ x: c.x, tx: c.tx * 7, T: c.T * 7 }));
    const w = fitBgNbd(weeks);
    const d = fitBgNbd(days);
    expectRelClose(d.params.alpha, w.params.alpha * 7, 1e-4);
    expectRelClose(d.params.r, w.params.r, 1e-4);
    expectRelClose(d.params.a, w.params.a, 1e-4);
    expectRelClose(d.params.b, w.params.b, 1e-4);
  });
});
