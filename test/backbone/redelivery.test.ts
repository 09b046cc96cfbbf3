/**
 * Retry policies on the bus (real NATS JetStream): where a registered policy governs a subject, a
 * failing handler is redelivered with the policy's backoff and the message goes to the dead letters
 * after the policy's attempts; elsewhere the consumer's own backoff and max_deliver apply as before.
 * Policies are read on every failure, so changing one changes the next redelivery without a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Bus, DeadLetter, Redelivery, RedeliveryPolicy, Running } from "../../lib/bus/index.ts";
import {
  listDeadLetters,
  publishTask,
  startDeadLetterMover,
  startPriorityWorker,
  subjectMatches,
  taskSubject,
} from "../../lib/bus/index.ts";
import { eventually, isolatedBus } from "../support/backbone.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

/** A policy of the System agent's shape: capped exponential backoff without jitter, bounded attempts. */
const policy =
  (filter: string, maxAttempts: number, baseMs: number): RedeliveryPolicy =>
  (subject, deliveryCount): Redelivery | undefined =>
    subjectMatches(filter, subject)
      ? { giveUp: deliveryCount >= maxAttempts, delayMs: baseMs * 2 ** (deliveryCount - 1) }
      : undefined;

describe("redelivery under retry policies", () => {
  let handle: Awaited<ReturnType<typeof isolatedBus>>;
  let bus: Bus;
  let mover: Running;

  beforeAll(async () => {
    handle = await isolatedBus();
    bus = handle.bus;
    mover = await startDeadLetterMover(bus);
  });
  afterAll(async () => {
    await mover?.stop();
    await handle?.dispose();
  });

  /** Waits for the `n`th dead letter of `consumer`. */
  const letters = (consumer: string, n = 1): Promise<DeadLetter[]> =>
    eventually(async () => {
      const l = await listDeadLetters(bus, { consumer });
      return l.length >= n ? l : undefined;
    }, 30_000);

  /** A consumer whose handler always fails, recording when each delivery of each message arrived. */
  const failing = async (agent: string, durable: string, maxDeliver: number) => {
    const seen = new Map<string, number[]>();
    const running = await bus.consume(
      {
        stream: "tasks",
        durable,
        filter: taskSubject(bus.prefix, agent, "normal"),
        maxDeliver,
        // Also each delivery's ack wait (JetStream): long enough to write a dead letter in.
        backoffMs: Array.from({ length: maxDeliver - 1 }, () => 200),
      },
      async (d) => {
        const at = seen.get(d.msgId ?? "") ?? [];
        at.push(performance.now());
        seen.set(d.msgId ?? "", at);
        throw new Error("downstream refused");
      },
    );
    return { seen, running };
  };

  it("redelivers with the policy's backoff and dead-letters after its attempts, below max_deliver", async () => {
    const off = bus.useRedeliveryPolicy(policy(`${bus.prefix}.tasks.pol.>`, 3, 200));
    const { seen, running } = await failing("pol", "pol_test", 10);
    try {
      const { seq } = await publishTask(bus, "pol", "normal", bytes("poison"), "pol-1");
      const [letter] = await letters("pol_test");
      const at = seen.get("pol-1") ?? [];
      expect(at).toHaveLength(3);
      // Each wait is at least the policy's delay (200 ms, then 400 ms); 1 ms allows for clock rounding.
      expect((at[1] ?? 0) - (at[0] ?? 0)).toBeGreaterThanOrEqual(199);
      expect((at[2] ?? 0) - (at[1] ?? 0)).toBeGreaterThanOrEqual(399);
      expect(letter?.deliveries).toBe(3);
      expect(letter?.reason).toMatch(/^max attempts \(3\) of the retry policy reached: downstream refused/);
      expect(letter?.msgId).toBe("pol-1");
      expect(letter?.originalSeq).toBe(seq);
      // Gone from the work queue, as after max_deliver.
      await eventually(async () =>
        (await bus.jsm.streams.getMessage(bus.streams.tasks, { seq }).catch(() => null)) === null ? true : undefined,
      );
    } finally {
      off();
      await running.stop();
    }
  });

  it("keeps the consumer's backoff and max_deliver for a subject no policy governs", async () => {
    const off = bus.useRedeliveryPolicy(policy(`${bus.prefix}.tasks.other.>`, 1, 200));
    const { seen, running } = await failing("plain", "plain_test", 3);
    try {
      await publishTask(bus, "plain", "normal", bytes("poison"), "plain-1");
      const [letter] = await letters("plain_test");
      expect(seen.get("plain-1")).toHaveLength(3);
      expect(letter?.deliveries).toBe(3);
      expect(letter?.reason).toMatch(/^max deliveries \(3\) reached/);
    } finally {
      off();
      await running.stop();
    }
  });

  it("applies a changed policy to the next failure without restarting the consumer", async () => {
    let current: RedeliveryPolicy | undefined = policy(`${bus.prefix}.tasks.live.>`, 2, 20);
    const off = bus.useRedeliveryPolicy((s, n) => current?.(s, n));
    const { seen, running } = await failing("live", "live_test", 6);
    try {
      await publishTask(bus, "live", "normal", bytes("a"), "live-1");
      expect((await letters("live_test", 1))[0]?.reason).toMatch(/max attempts \(2\)/);
      expect(seen.get("live-1")).toHaveLength(2);

      current = policy(`${bus.prefix}.tasks.live.>`, 4, 20);
      await publishTask(bus, "live", "normal", bytes("b"), "live-2");
      expect((await letters("live_test", 2))[1]?.reason).toMatch(/max attempts \(4\)/);
      expect(seen.get("live-2")).toHaveLength(4);

      // No policy any more: the consumer's max_deliver (6) and the mover, as before.
      current = undefined;
      await publishTask(bus, "live", "normal", bytes("c"), "live-3");
      expect((await letters("live_test", 3))[2]?.reason).toMatch(/^max deliveries \(6\) reached/);
      expect(seen.get("live-3")).toHaveLength(6);
    } finally {
      off();
      await running.stop();
    }
  });

  it("is capped by max_deliver when the policy allows more attempts", async () => {
    const off = bus.useRedeliveryPolicy(policy(`${bus.prefix}.tasks.cap.>`, 10, 20));
    const { seen, running } = await failing("cap", "cap_test", 2);
    try {
      await publishTask(bus, "cap", "normal", bytes("poison"), "cap-1");
      const [letter] = await letters("cap_test");
      expect(seen.get("cap-1")).toHaveLength(2);
      expect(letter?.reason).toMatch(/^max deliveries \(2\) reached/);
    } finally {
      off();
      await running.stop();
    }
  });

  it("governs the prioritised task workers too", async () => {
    const off = bus.useRedeliveryPolicy(policy(`${bus.prefix}.tasks.prio.urgent`, 2, 20));
    let calls = 0;
    const worker = await startPriorityWorker(
      bus,
      { agent: "prio", maxDeliver: 5, backoffMs: [200, 200, 200, 200] },
      () => {
        calls++;
        return Promise.reject(new Error("downstream refused"));
      },
    );
    try {
      await publishTask(bus, "prio", "urgent", bytes("poison"), "prio-1");
      const [letter] = await letters("tasks_prio_urgent");
      expect(calls).toBe(2);
      expect(letter?.reason).toMatch(/max attempts \(2\) of the retry policy/);
    } finally {
      off();
      await worker.stop();
    }
  });
});
