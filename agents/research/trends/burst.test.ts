import { describe, expect, it } from "vitest";
import { burstScore, rankBursts } from "./burst.ts";

describe("burstScore", () => {
  it("uses the population variance when it is above both floors", () => {
    // mean 10/7, variance 96/49 (see the skill's test): z = 32 / sqrt(96)
    const s = burstScore(6, [2, 0, 4, 0, 2, 0, 2]);
    expect(s.mean).toBeCloseTo(10 / 7, 12);
    expect(s.stddev).toBeCloseTo(Math.sqrt(96) / 7, 12);
    expect(s.z).toBeCloseTo(32 / Math.sqrt(96), 12);
  });

  it("floors the variance at the mean for steady counts and at 1 for new phrases", () => {
    // Steady 4 a bucket: variance 0, floored at the mean 4, so (10 − 4) / 2 = 3.
    expect(burstScore(10, [4, 4, 4]).z).toBe(3);
    // Never seen: variance 0 and mean 0, floored at 1, so z is the count.
    expect(burstScore(5, [0, 0, 0, 0])).toEqual({ mean: 0, stddev: 0, z: 5 });
  });
});

describe("rankBursts", () => {
  it("ranks by z, keeps only positive bursts above the minimum, and drops words of a longer burst", () => {
    const ranked = rankBursts(
      [
        { key: "memory care", counts: [5, 0, 0, 0] },
        { key: "memory", counts: [5, 0, 0, 0] },
        { key: "care", counts: [9, 1, 1, 1] }, // holds more than "memory care" explains: kept
        { key: "steady", counts: [3, 3, 3, 3] }, // z = 0
        { key: "once", counts: [1, 0, 0, 0] }, // under the minimum
      ],
      2,
    );
    expect(ranked.map((b) => [b.key, b.z])).toEqual([
      ["care", 8],
      ["memory care", 5],
    ]);
  });
});
