/**
 * Discounted expected purchases against sums of independently integrated E[Y(t)] (mpmath, as in
 * bg-nbd.test.ts): CDNOW parameters in weeks, 12 monthly steps of 30.4375/7 weeks, 10% a year:
 *   Σₖ (E[Y(tₖ)] − E[Y(tₖ₋₁)]) · 1.1^(−k/12)
 */
import { describe, expect, it } from "vitest";
import type { BgNbdParams } from "./bg-nbd.ts";
import { ClvModel, customerLifetimeValue } from "./clv.ts";

const cdnowWeeks: BgNbdParams = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };

describe("ClvModel", () => {
  it("sums monthly expected purchases, discounted to each month's end", () => {
    const model = new ClvModel(cdnowWeeks, { horizonMonths: 12, annualDiscountRate: 0.1, daysPerTimeUnit: 7 });
    const f = model.forecast(2, 30.43, 38.86);
    expect(f.expectedPurchases).toBeCloseTo(1.5630996522916256, 9);
    expect(f.discountedPurchases).toBeCloseTo(1.4900089465103756, 9);
    expect(f.probabilityAlive).toBeCloseTo(0.726578570080673, 12);
    const fresh = model.forecast(0, 0, 10);
    expect(fresh.expectedPurchases).toBeCloseTo(0.6280971254945462, 9);
    expect(fresh.discountedPurchases).toBeCloseTo(0.5994525306771046, 9);
    // CLV: margin × value per purchase × discounted purchases.
    expect(customerLifetimeValue(f, 50, 0.35)).toBeCloseTo(0.35 * 50 * 1.4900089465103756, 7);
  });

  it("without discounting equals the expected purchases, and caches per (x, T)", () => {
    const model = new ClvModel(cdnowWeeks, { horizonMonths: 24, annualDiscountRate: 0, daysPerTimeUnit: 7 });
    const a = model.forecast(3, 20, 38.86);
    expect(a.discountedPurchases).toBeCloseTo(a.expectedPurchases, 12);
    // Same (x, T), other t_x: one cached shape, scaled by the other P(alive).
    const b = model.forecast(3, 35, 38.86);
    expect(model.cachedShapes).toBe(1);
    expect(b.expectedPurchases / b.probabilityAlive).toBeCloseTo(a.expectedPurchases / a.probabilityAlive, 12);
    expect(b.expectedPurchases).toBeGreaterThan(a.expectedPurchases); // bought more recently
  });
});
