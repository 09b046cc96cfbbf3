import { describe, expect, it } from "vitest";
import { fullJitterDelay, RetryBudget, sleep } from "./retry.ts";

describe("fullJitterDelay", () => {
  it("is 0 when the random draw is 0", () => {
    expect(fullJitterDelay(1, 50, 2000, () => 0)).toBe(0);
    expect(fullJitterDelay(7, 50, 2000, () => 0)).toBe(0);
  });

  it("stays just under the cap min(max, base·2^(n−1)) when the draw is near 1", () => {
    const nearOne = () => 0.999;
    // Retry 1: cap = min(2000, 50 × 2^0) = 50 → ⌊0.999 × 50⌋ = ⌊49.95⌋ = 49.
    expect(fullJitterDelay(1, 50, 2000, nearOne)).toBe(49);
    // Retry 3: cap = min(2000, 50 × 2^2) = 200 → ⌊199.8⌋ = 199.
    expect(fullJitterDelay(3, 50, 2000, nearOne)).toBe(199);
    // Retry 10: 50 × 2^9 = 25,600 is capped at 2000 → ⌊1998⌋ = 1998.
    expect(fullJitterDelay(10, 50, 2000, nearOne)).toBe(1998);
  });

  it("scales the draw linearly within the cap", () => {
    // Retry 2: cap = 100; 0.5 × 100 = 50; 0.25 × 100 = 25.
    expect(fullJitterDelay(2, 50, 2000, () => 0.5)).toBe(50);
    expect(fullJitterDelay(2, 50, 2000, () => 0.25)).toBe(25);
  });

  it("never reaches the cap for any draw in [0, 1)", () => {
    const draws = [0, 0.1, 0.3333, 0.5, 0.75, 0.9, 0.999999];
    for (let retry = 1; retry <= 12; retry++) {
      const cap = Math.min(1000, 10 * 2 ** (retry - 1));
      for (const d of draws) {
        const delay = fullJitterDelay(retry, 10, 1000, () => d);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(cap);
        expect(Number.isInteger(delay)).toBe(true);
      }
    }
  });
});

describe("RetryBudget", () => {
  /** A clock the test moves by hand. */
  function manualClock(start: number) {
    let t = start;
    return {
      now: () => t,
      set: (next: number) => {
        t = next;
      },
    };
  }

  it("always allows minPerSecond retries per one-second window", () => {
    const clock = manualClock(5000);
    const budget = new RetryBudget(0, 2, 100, clock.now);
    expect([budget.tryWithdraw(), budget.tryWithdraw(), budget.tryWithdraw()]).toEqual([true, true, false]);
    // 5999 − 5000 = 999 ms: still the same window.
    clock.set(5999);
    expect(budget.tryWithdraw()).toBe(false);
    // 6000 − 5000 = 1000 ms: a new window with a fresh floor.
    clock.set(6000);
    expect([budget.tryWithdraw(), budget.tryWithdraw(), budget.tryWithdraw()]).toEqual([true, true, false]);
  });

  it("earns one retry per 1/ratio calls", () => {
    const clock = manualClock(5000);
    const budget = new RetryBudget(0.25, 0, 100, clock.now);
    // 3 × 0.25 = 0.75 tokens: not enough for a retry.
    for (let i = 0; i < 3; i++) budget.deposit();
    expect(budget.tryWithdraw()).toBe(false);
    // 4 × 0.25 = 1 token: one retry, then spent.
    budget.deposit();
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
  });

  it("caps the saved tokens at maxTokens", () => {
    const budget = new RetryBudget(1, 0, 3, () => 5000);
    for (let i = 0; i < 10; i++) budget.deposit();
    // Ten deposits of 1 are capped at 3 tokens.
    expect([budget.tryWithdraw(), budget.tryWithdraw(), budget.tryWithdraw(), budget.tryWithdraw()]).toEqual([
      true,
      true,
      true,
      false,
    ]);
  });

  it("spends the floor before the tokens and is exhausted when both are gone", () => {
    const clock = manualClock(5000);
    const budget = new RetryBudget(0.5, 1, 100, clock.now);
    budget.deposit();
    budget.deposit();
    // Floor: 1 retry; tokens: 2 × 0.5 = 1 retry; then nothing.
    expect([budget.tryWithdraw(), budget.tryWithdraw(), budget.tryWithdraw()]).toEqual([true, true, false]);
    // A new window restores the floor but not the tokens.
    clock.set(6500);
    expect([budget.tryWithdraw(), budget.tryWithdraw()]).toEqual([true, false]);
  });
});

describe("sleep", () => {
  it("resolves when no signal aborts it", async () => {
    await expect(sleep(1)).resolves.toBeUndefined();
    await expect(sleep(1, new AbortController().signal)).resolves.toBeUndefined();
  });

  it("rejects with the abort reason when aborted while waiting", async () => {
    const controller = new AbortController();
    const reason = new Error("call cancelled");
    const pending = sleep(3_600_000, controller.signal);
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
  });

  it("rejects at once when the signal is already aborted", async () => {
    const reason = new Error("already gone");
    await expect(sleep(3_600_000, AbortSignal.abort(reason))).rejects.toBe(reason);
  });

  it("ignores an abort after it resolved", async () => {
    const controller = new AbortController();
    await sleep(1, controller.signal);
    expect(() => controller.abort(new Error("late"))).not.toThrow();
  });
});
