/** The draws against their distributions' known moments, on seeded uniform streams. */
import { describe, expect, it } from "vitest";
import { betaDraw, gammaDraw, normalDraw, type Uniform } from "./index.ts";

/** mulberry32, a small seeded uniform generator. */
function seeded(seed: number): Uniform {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("Beta and Gamma draws", () => {
  it("match the moments of Beta(2, 5): mean 2/7, variance 10/392", () => {
    const u = seeded(7);
    const n = 40_000;
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const x = betaDraw(2, 5, u);
      sum += x;
      sq += x * x;
    }
    const mean = sum / n;
    const variance = sq / n - mean * mean;
    // Standard error of the mean: √(0.02551 / 40000) ≈ 0.0008; 5 SE tolerance.
    expect(Math.abs(mean - 2 / 7)).toBeLessThan(0.004);
    expect(Math.abs(variance - 10 / 392)).toBeLessThan(0.002);
  });

  it("Gamma(0.5) has mean 0.5 (the shape < 1 boost)", () => {
    const u = seeded(11);
    let sum = 0;
    for (let i = 0; i < 40_000; i++) sum += gammaDraw(0.5, u);
    // SD of Gamma(0.5) is √0.5; SE ≈ 0.0035.
    expect(Math.abs(sum / 40_000 - 0.5)).toBeLessThan(0.02);
  });
});

describe("normal draws", () => {
  it("have mean 0 and variance 1", () => {
    const u = seeded(3);
    const n = 40_000;
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const x = normalDraw(u);
      sum += x;
      sq += x * x;
    }
    // SE of the mean 1/√40000 = 0.005; of the variance √(2/40000) ≈ 0.007; 5 SE tolerance.
    expect(Math.abs(sum / n)).toBeLessThan(0.025);
    expect(Math.abs(sq / n - (sum / n) ** 2 - 1)).toBeLessThan(0.035);
  });
});
