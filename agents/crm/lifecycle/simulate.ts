/**
 * Seeded simulation of the lifecycle models, for parameter-recovery tests and the benchmark: a
 * small deterministic generator (sfc32) feeding lib/random's gamma and beta variates, as the BG/NBD
 * and Gamma-Gamma generative stories need.
 */
import { betaDraw, gammaDraw } from "../../../lib/random/index.ts";
import type { BgNbdParams, RepeatHistory } from "./bg-nbd.ts";
import type { GammaGammaParams, SpendHistory } from "./gamma-gamma.ts";

/** A uniform generator on (0, 1). */
export type Random = () => number;

/** sfc32 (Chris Doty-Humphrey's small fast counting generator), seeded by one 32-bit integer. */
export function seededRandom(seed: number): Random {
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 15; i++) next();
  // (k + 0.5) / 2³²: never exactly 0 or 1.
  return () => (next() + 0.5) / 4294967296;
}

/** A Gamma(shape, rate) variate (lib/random's Marsaglia–Tsang draw, scaled). */
function gamma(rand: Random, shape: number, rate: number): number {
  return gammaDraw(shape, rand) / rate;
}

/** One simulated customer: purchase times after the first (at 0) within T, and whether alive at T. */
export interface SimulatedCustomer extends RepeatHistory {
  /** Repeat purchase times, ascending. */
  readonly times: number[];
  /** Whether the customer had not dropped out by T. */
  readonly alive: boolean;
}

/**
 * A customer from the BG/NBD story observed for T: rate λ ~ Gamma(r, α), dropout p ~ Beta(a, b);
 * repeat purchases at Poisson rate λ; after each, dropout with probability p.
 */
export function simulateBgNbdCustomer(rand: Random, params: BgNbdParams, T: number): SimulatedCustomer {
  const lambda = gamma(rand, params.r, params.alpha);
  const p = betaDraw(params.a, params.b, rand);
  const times: number[] = [];
  let t = 0;
  for (;;) {
    t += -Math.log(rand()) / lambda;
    if (t > T) return { x: times.length, tx: times.at(-1) ?? 0, T, times, alive: true };
    times.push(t);
    if (rand() < p) return { x: times.length, tx: t, T, times, alive: false };
  }
}

/**
 * Spend of a customer with x repeat purchases from the Gamma-Gamma story: ν ~ Gamma(q, γ), each
 * purchase z ~ Gamma(p, ν); returns the mean of the x purchases.
 */
export function simulateSpend(rand: Random, params: GammaGammaParams, x: number): SpendHistory {
  const nu = gamma(rand, params.q, params.v);
  let sum = 0;
  for (let i = 0; i < x; i++) sum += gamma(rand, params.p, nu);
  return { x, m: sum / x };
}
