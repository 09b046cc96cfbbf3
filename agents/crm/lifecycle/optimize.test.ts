import { describe, expect, it } from "vitest";
import { invertMatrix, nelderMead, numericHessian } from "./optimize.ts";

/** Rosenbrock's function in n dimensions: minimum 0 at (1, …, 1), a curved narrow valley. */
const rosenbrock = (x: readonly number[]): number => {
  let s = 0;
  for (let i = 0; i + 1 < x.length; i++) {
    const a = x[i] as number;
    const b = x[i + 1] as number;
    s += 100 * (b - a * a) ** 2 + (1 - a) ** 2;
  }
  return s;
};

describe("nelderMead", () => {
  it("finds the minimum of the 4-dimensional Rosenbrock function", () => {
    const r = nelderMead(rosenbrock, [-1.2, 1, -1.2, 1], { step: 0.5, maxEvaluations: 50_000 });
    expect(r.converged).toBe(true);
    for (const v of r.x) expect(v).toBeCloseTo(1, 5);
    expect(r.f).toBeLessThan(1e-10);
  });

  it("treats NaN and Infinity as outside the domain", () => {
    // Minimum of (x - 2)² restricted to x > 1 (NaN left of it, as a log-likelihood would be).
    const r = nelderMead((x) => ((x[0] as number) > 1 ? ((x[0] as number) - 2) ** 2 : Number.NaN), [1.5]);
    expect(r.x[0]).toBeCloseTo(2, 6);
  });

  it("reports no convergence when the evaluation budget runs out", () => {
    const r = nelderMead(rosenbrock, [-1.2, 1, -1.2, 1], { maxEvaluations: 50 });
    expect(r.converged).toBe(false);
    expect(r.evaluations).toBeLessThanOrEqual(60);
  });

  it("stops when the checkpoint throws", () => {
    let calls = 0;
    const stop = new Error("deadline");
    expect(() =>
      nelderMead(rosenbrock, [-1.2, 1, -1.2, 1], {
        checkpoint: () => {
          if (++calls > 3) throw stop;
        },
      }),
    ).toThrow(stop);
  });
});

describe("numericHessian and invertMatrix", () => {
  it("recovers a quadratic form's matrix and its inverse", () => {
    // f = ½ xᵀ A x with A = [[4, 1], [1, 3]].
    const f = (x: readonly number[]) => {
      const [a, b] = x as [number, number];
      return 0.5 * (4 * a * a + 2 * a * b + 3 * b * b);
    };
    const h = numericHessian(f, [0.3, -0.7]);
    expect(h[0]?.[0]).toBeCloseTo(4, 5);
    expect(h[0]?.[1]).toBeCloseTo(1, 5);
    expect(h[1]?.[1]).toBeCloseTo(3, 5);
    const inv = invertMatrix([
      [4, 1],
      [1, 3],
    ]);
    expect(inv[0]?.[0]).toBeCloseTo(3 / 11, 12);
    expect(inv[0]?.[1]).toBeCloseTo(-1 / 11, 12);
    expect(inv[1]?.[1]).toBeCloseTo(4 / 11, 12);
  });
});
