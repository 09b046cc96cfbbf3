/**
 * Send-time learning as a Bernoulli bandit solved by Thompson sampling (Thompson 1933; Chapelle &
 * Li 2011, "An Empirical Evaluation of Thompson Sampling"): each arm (an hour of the week) keeps a
 * Beta(1 + successes, 1 + failures) posterior of its open rate; to choose, draw one sample from each
 * allowed arm's posterior and take the largest. Arms that look good are chosen more, arms seldom
 * tried keep a wide posterior and are still explored. Beta draws (lib/random) come from an
 * injected uniform generator, so simulations are reproducible.
 */
import { betaDraw, type Uniform } from "../../../lib/random/index.ts";

export type { Uniform } from "../../../lib/random/index.ts";

/** mulberry32: a small seeded uniform generator for simulations and tests. */
export function seededUniform(seed: number): Uniform {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What is known of an arm: sends, and sends that were opened or clicked. */
export interface ArmCounts {
  readonly trials: number;
  readonly successes: number;
}

/**
 * Thompson's choice among `arms` (indices into `counts`; missing counts are the Beta(1, 1) prior):
 * the index in `arms` of the largest posterior draw.
 */
export function thompsonChoose(arms: readonly number[], counts: ReadonlyMap<number, ArmCounts>, u: Uniform): number {
  let best = 0;
  let bestDraw = -1;
  arms.forEach((arm, i) => {
    const c = counts.get(arm) ?? { trials: 0, successes: 0 };
    const s = Math.max(0, Math.min(c.successes, c.trials));
    const draw = betaDraw(1 + s, 1 + c.trials - s, u);
    if (draw > bestDraw) {
      bestDraw = draw;
      best = i;
    }
  });
  return best;
}
