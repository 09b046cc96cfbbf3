import { describe, expect, it } from "vitest";
import { estimateEm, Level, levelWeights, type PatternCounts, runEm } from "./em.ts";
import { seededRandom } from "./synthetic.ts";

/** A field of the generating model: level probabilities among matches (m) and non-matches (u). */
interface TrueField {
  m: number[];
  u: number[];
  /** Chance that either value is missing, in both classes. */
  missing: number;
}

/**
 * Samples `n` pairs from a Fellegi–Sunter model with known parameters (fields independent given
 * the class, as the model assumes) and counts their agreement patterns.
 */
function samplePatterns(seed: number, n: number, p: number, fields: TrueField[]): PatternCounts {
  const rnd = seededRandom(seed);
  const F = fields.length;
  const index = new Map<string, number>();
  const levels: number[] = [];
  const counts: number[] = [];
  const draw = (probs: number[]) => {
    let r = rnd();
    for (let l = 0; l < probs.length; l++) {
      r -= probs[l] as number;
      if (r < 0) return l;
    }
    return probs.length - 1;
  };
  for (let i = 0; i < n; i++) {
    const match = rnd() < p;
    const pattern = fields.map((f) => {
      if (rnd() < f.missing) return Level.missing;
      const l = draw(match ? f.m : f.u);
      // Two-level fields are full or none.
      return f.m.length === 2 && l === 1 ? Level.none : l;
    });
    const key = pattern.join("");
    let k = index.get(key);
    if (k === undefined) {
      k = counts.length;
      index.set(key, k);
      levels.push(...pattern);
      counts.push(0);
    }
    counts[k] = (counts[k] as number) + 1;
  }
  return {
    fields: F,
    levels: Uint8Array.from(levels),
    counts: Float64Array.from(counts),
    hasPartial: fields.map((f) => f.m.length === 3),
  };
}

describe("EM estimation of the Fellegi–Sunter parameters", () => {
  // Three-level fields give [full, partial, none]; two-level fields [full, none].
  const truth: TrueField[] = [
    { m: [0.85, 0.1, 0.05], u: [0.02, 0.08, 0.9], missing: 0 }, // given name, Jaro–Winkler bands
    { m: [0.9, 0.1], u: [0.05, 0.95], missing: 0.1 }, // family name
    { m: [0.7, 0.3], u: [0.001, 0.999], missing: 0.3 }, // email
    { m: [0.8, 0.2], u: [0.002, 0.998], missing: 0.2 }, // phone
    { m: [0.75, 0.25], u: [0.01, 0.99], missing: 0.2 }, // postal code
  ];
  const p = 0.08;
  const data = samplePatterns(20261203, 50_000, p, truth);
  const est = estimateEm(data, { maxIterations: 1000, tolerance: 1e-8, initialMatchProportion: 0.1 });

  it("converges", () => {
    expect(est.converged).toBe(true);
    expect(est.iterations).toBeGreaterThan(1);
  });

  it("recovers the match proportion", () => {
    // 4,000 matches in 50,000: the sampling error of p is about 0.0012.
    expect(Math.abs(est.p - p)).toBeLessThan(0.006);
  });

  it("recovers m and u of every field and level", () => {
    truth.forEach((f, fi) => {
      const levels = f.m.length === 3 ? [Level.full, Level.partial, Level.none] : [Level.full, Level.none];
      levels.forEach((l, li) => {
        const mHat = (est.m[fi] as number[])[l] as number;
        const uHat = (est.u[fi] as number[])[l] as number;
        // m rests on ~4,000 matches (standard error ≤ 0.008 before missing values); u on ~46,000
        // non-matches (≤ 0.0015). The bounds are about four standard errors.
        expect(Math.abs(mHat - (f.m[li] as number)), `m field ${fi} level ${l}`).toBeLessThan(0.035);
        expect(Math.abs(uHat - (f.u[li] as number)), `u field ${fi} level ${l}`).toBeLessThan(0.006);
      });
    });
  });

  it("derives weights as log2(m/u): positive for agreement, negative for disagreement", () => {
    const w = levelWeights(est);
    for (let f = 0; f < truth.length; f++) {
      expect((w[f] as number[])[Level.full]).toBeGreaterThan(0);
      expect((w[f] as number[])[Level.none]).toBeLessThan(0);
      expect((w[f] as number[])[Level.missing]).toBe(0);
    }
    expect((w[0] as number[])[Level.full]).toBeCloseTo(
      Math.log2(((est.m[0] as number[])[0] as number) / ((est.u[0] as number[])[0] as number)),
      12,
    );
  });

  it("names the class that agrees the match class, even when EM starts with the classes swapped", () => {
    // Start from the truth with the classes exchanged: EM converges to the mirrored solution,
    // which is the same mixture; the match class must come out as the one that agrees.
    const asLevels = (probs: number[]) =>
      probs.length === 3 ? [...probs, 0] : [probs[0] as number, 0, probs[1] as number, 0];
    const swapped = runEm(
      data,
      { m: truth.map((f) => asLevels(f.u)), u: truth.map((f) => asLevels(f.m)), p: 1 - p },
      { maxIterations: 1000, tolerance: 1e-8, initialMatchProportion: 0.1 },
    );
    expect(Math.abs(swapped.p - p)).toBeLessThan(0.006);
    expect((swapped.m[2] as number[])[Level.full]).toBeGreaterThan(0.5);
    expect((swapped.u[2] as number[])[Level.full]).toBeLessThan(0.01);
  });

  it("leaves no probability at 0 or 1, so that no weight is infinite", () => {
    const w = levelWeights(est);
    for (const row of w) for (const x of row) expect(Number.isFinite(x)).toBe(true);
  });
});
