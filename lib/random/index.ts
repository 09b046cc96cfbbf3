/**
 * Draws from the distributions the skills simulate with, from an injected uniform generator so
 * that a simulation is reproducible from its seed: the standard normal (Box–Muller), Gamma by
 * Marsaglia & Tsang (2000, "A simple method for generating gamma variables"; shape < 1 by the boost
 * Gamma(a + 1)·U^(1/a)), and Beta as X / (X + Y) with X ~ Gamma(α), Y ~ Gamma(β).
 */

/** A uniform generator on [0, 1). */
export type Uniform = () => number;

/** A standard normal draw (Box–Muller). */
export function normalDraw(u: Uniform): number {
  let a = u();
  while (a <= Number.MIN_VALUE) a = u();
  return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
}

/** A Gamma(shape, 1) draw; `shape` > 0. */
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

/** A Beta(α, β) draw; α, β > 0. */
export function betaDraw(alpha: number, beta: number, u: Uniform): number {
  const x = gammaDraw(alpha, u);
  const y = gammaDraw(beta, u);
  return x / (x + y);
}
