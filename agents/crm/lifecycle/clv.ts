/**
 * Discounted customer lifetime value over a finite horizon from a BG/NBD purchase model and an
 * expected value per purchase:
 *
 *   CLV = margin · E[Z] · Σₖ (E[Y(tₖ)] − E[Y(tₖ₋₁)]) / (1 + d)^(k/12),   k = 1 … H,
 *
 * with tₖ the end of month k after the end of observation, E[Y(t)] the BG/NBD expected purchases
 * in (T, T+t] given the customer's history, d the annual discount rate and purchases of month k
 * discounted to its end (as lifetimes' customer_lifetime_value does). E[Y(t)] = P(alive) · g(x, T, t)
 * (bg-nbd.ts), so the monthly sums depend on (x, T) only and are cached per pair: customers sharing
 * a history shape cost one evaluation.
 */
import { type BgNbdParams, expectedAliveFactor, probabilityAlive } from "./bg-nbd.ts";

/** Mean length of a Gregorian month in days (365.25 / 12). */
export const daysPerMonth = 30.4375;

/** Settings of a {@link ClvModel}. */
export interface ClvSettings {
  /** Months of the horizon, ≥ 1. */
  readonly horizonMonths: number;
  /** Annual discount rate, 0–1. */
  readonly annualDiscountRate: number;
  /** Days per unit of the BG/NBD times (1 when the model is in days). */
  readonly daysPerTimeUnit?: number;
}

/** One customer's forecast. */
export interface CustomerForecast {
  /** P(alive) at the end of observation. */
  probabilityAlive: number;
  /** Expected purchases over the horizon. */
  expectedPurchases: number;
  /** Expected purchases over the horizon, each discounted to the end of its month. */
  discountedPurchases: number;
}

/** Forecasts of purchase counts for many customers under one BG/NBD fit, cached per (x, T). */
export class ClvModel {
  readonly #params: BgNbdParams;
  /** Horizon month ends in the model's time unit. */
  readonly #monthEnds: Float64Array;
  /** Discount factor of each month. */
  readonly #discounts: Float64Array;
  readonly #cache = new Map<string, { expected: number; discounted: number }>();

  constructor(params: BgNbdParams, settings: ClvSettings) {
    this.#params = params;
    const unit = settings.daysPerTimeUnit ?? 1;
    const h = settings.horizonMonths;
    this.#monthEnds = Float64Array.from({ length: h }, (_, k) => ((k + 1) * daysPerMonth) / unit);
    this.#discounts = Float64Array.from({ length: h }, (_, k) => (1 + settings.annualDiscountRate) ** (-(k + 1) / 12));
  }

  /** Distinct (x, T) pairs evaluated so far. */
  get cachedShapes(): number {
    return this.#cache.size;
  }

  /** The forecast for a customer with x repeat purchases, the last at t_x, observed for T. */
  forecast(x: number, tx: number, T: number): CustomerForecast {
    const alive = probabilityAlive(this.#params, x, tx, T);
    const key = `${x}|${T}`;
    let shape = this.#cache.get(key);
    if (shape === undefined) {
      let previous = 0;
      let discounted = 0;
      for (let k = 0; k < this.#monthEnds.length; k++) {
        const g = expectedAliveFactor(this.#params, x, T, this.#monthEnds[k] as number);
        discounted += (g - previous) * (this.#discounts[k] as number);
        previous = g;
      }
      shape = { expected: previous, discounted };
      this.#cache.set(key, shape);
    }
    return {
      probabilityAlive: alive,
      expectedPurchases: alive * shape.expected,
      discountedPurchases: alive * shape.discounted,
    };
  }
}

/** CLV from a forecast: margin × expected value per purchase × discounted expected purchases. */
export function customerLifetimeValue(forecast: CustomerForecast, expectedOrderValue: number, margin: number): number {
  return margin * expectedOrderValue * forecast.discountedPurchases;
}
