/**
 * Thompson sampling (its Beta draws are lib/random's, tested there): convergence to the best
 * arm on a seeded stream with a known optimum, and the send-time simulation beating uniformly
 * random send times (direction and share; the measured lift is the bench's).
 */
import { describe, expect, it } from "vitest";
import { morningPeakProfile, type SimulationResult, simulateSendTimes } from "./simulate.ts";
import { type ArmCounts, seededUniform, thompsonChoose } from "./thompson.ts";

describe("Thompson sampling", () => {
  it("converges to the best of ten arms on a seeded Bernoulli stream", () => {
    // Known optimum: arm 7 opens at 0.25, the others at 0.05 … 0.14.
    const p = [0.05, 0.06, 0.08, 0.1, 0.12, 0.14, 0.11, 0.25, 0.09, 0.07];
    const arms = p.map((_, i) => i);
    const counts = new Map<number, ArmCounts>();
    const u = seededUniform(42);
    const coin = seededUniform(43);
    let best = 0;
    for (let t = 0; t < 6000; t++) {
      const i = thompsonChoose(arms, counts, u);
      const c = counts.get(i) ?? { trials: 0, successes: 0 };
      counts.set(i, { trials: c.trials + 1, successes: c.successes + (coin() < (p[i] as number) ? 1 : 0) });
      if (t >= 5000 && i === 7) best++;
    }
    expect(best / 1000).toBeGreaterThan(0.9);
  });

  it("explores: with no data every arm is chosen", () => {
    const u = seededUniform(1);
    const seen = new Set<number>();
    const arms = [3, 4, 5, 6];
    for (let t = 0; t < 500; t++) seen.add(arms[thompsonChoose(arms, new Map(), u)] as number);
    expect([...seen].sort()).toEqual([3, 4, 5, 6]);
  });

  it("on the send-time stream it mostly picks the known optimum and beats random send times", () => {
    const base = {
      openRate: morningPeakProfile,
      zone: "America/Chicago",
      window: { days: new Set([1, 2, 3, 4, 5]), startMinute: 8 * 60, endMinute: 18 * 60 },
      days: 120,
      sendsPerDay: 100,
      start: new Date("2025-01-06T00:00:00Z"),
      seed: 2025,
    };
    const ts = simulateSendTimes({ ...base, policy: "thompson" });
    const uniform = simulateSendTimes({ ...base, policy: "uniform" });
    const oracle = simulateSendTimes({ ...base, policy: "oracle" });
    expect(ts.openRate).toBeGreaterThan(uniform.openRate);
    // Most of the gap to the oracle is closed.
    expect((ts.openRate - uniform.openRate) / (oracle.openRate - uniform.openRate)).toBeGreaterThan(0.5);
    // The known optimum is mid-morning: Thompson puts most sends at 09:00–11:59 local, where random
    // slots put about 3 in 10 (3 of the window's 10 hours).
    const morning = (r: SimulationResult) =>
      [...r.chosen.entries()].filter(([arm]) => arm % 24 >= 9 && arm % 24 <= 11).reduce((a, [, n]) => a + n, 0) /
      r.sends;
    expect(morning(ts)).toBeGreaterThan(0.6);
    expect(morning(uniform)).toBeLessThan(0.4);
  });
});
