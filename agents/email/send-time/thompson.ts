/**
 * Send-time learning as a Bernoulli bandit solved by Thompson sampling (Thompson 1933; Chapelle &
 * Li 2011, "An Empirical Evaluation of Thompson Sampling"): each arm (an hour of the week) keeps a
 * Beta(1 + successes, 1 + failures) posterior of its open rate; to choose, draw one sample from each
 * allowed arm's posterior and take the largest. Arms that look good are chosen more, arms seldom
 * tried keep a wide posterior and are still explored. Beta draws are X/(X+Y) with X ~ Gamma(α),
 * Y ~ Gamma(β) by Marsaglia & Tsang (2000), from an injected uniform generator so that
 * simulations are reproducible.
 */

/** A uniform generator on [0, 1). */
export type Uniform = () => number;

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

/** A standard normal draw (Box–Muller). */
export function normalDraw(u: Uniform): number {
  let a = u();
  while (a <= Number.MIN_VALUE) a = u();
  return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
}

/** A Gamma(shape, 1) draw (Marsaglia–Tsang; shape < 1 by the boost Gamma(a+1)·U^(1/a)). */
export function gammaDraw(shape: number, u: Uniform): number {
  if (shape < 1) {
    let v = u();
    while (v <= Number.MIN_VALUE) v = u();
    return gammaDraw(shape + 1, u) * v ** (1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normalDraw(u);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const w = u();
    if (w < 1 - 0.0331 * x ** 4) return d * v;
    if (Math.log(w) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A Beta(α, β) draw. */
export function betaDraw(alpha: number, beta: number, u: Uniform): number {
  const x = gammaDraw(alpha, u);
  const y = gammaDraw(beta, u);
  return x / (x + y);
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
