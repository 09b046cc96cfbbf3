import { describe, expect, it } from "vitest";
import { eventually } from "../../test/support/backbone.ts";
import { startPollLoop } from "./poll.ts";

const quiet = { warn: () => undefined };

describe("the poll loop of table-backed workers", () => {
  it("runs again at once while busy, sleeps when idle, and a wake ends the sleep", async () => {
    let rounds = 0;
    const loop = startPollLoop({
      name: "test",
      round: async () => ({ busy: ++rounds < 3 }),
      pollMs: 3_600_000,
      log: quiet,
    });
    try {
      await eventually(() => (rounds === 3 ? true : undefined));
      // Idle for an hour now: only a wake brings the next round.
      loop.wake();
      await eventually(() => (rounds === 4 ? true : undefined));
    } finally {
      await loop.stop();
    }
    expect(rounds).toBe(4);
  });

  it("a wake during a round skips the next sleep (the work may have come after the round's query)", async () => {
    let rounds = 0;
    let loop: ReturnType<typeof startPollLoop> | undefined;
    loop = startPollLoop({
      name: "test",
      round: async () => {
        rounds++;
        await new Promise((r) => setImmediate(r));
        if (rounds === 1) loop?.wake();
        return { busy: false };
      },
      pollMs: 3_600_000,
      log: quiet,
    });
    await eventually(() => (rounds === 2 ? true : undefined));
    await loop.stop();
    expect(rounds).toBe(2);
  });

  it("logs a failed round and tries again after a backoff", async () => {
    let rounds = 0;
    const warnings: unknown[] = [];
    const loop = startPollLoop({
      name: "flaky worker",
      round: async () => {
        if (++rounds <= 2) throw new Error("database away");
        return { busy: false };
      },
      pollMs: 5,
      log: { warn: (msg: string, attrs?: unknown) => warnings.push([msg, attrs]) },
    });
    await eventually(() => (rounds >= 3 ? true : undefined));
    await loop.stop();
    expect(warnings).toEqual([
      ["flaky worker round failed", { error: "database away", failures: 1 }],
      ["flaky worker round failed", { error: "database away", failures: 2 }],
    ]);
  });

  it("an idle round may ask to look again sooner than pollMs", async () => {
    let rounds = 0;
    const loop = startPollLoop({
      name: "test",
      round: async () => ({ busy: false, waitMs: ++rounds < 3 ? 1 : undefined }),
      pollMs: 3_600_000,
      log: quiet,
    });
    await eventually(() => (rounds === 3 ? true : undefined));
    await loop.stop();
    expect(rounds).toBe(3);
  });
});
