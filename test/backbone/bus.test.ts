import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Bus, Delivery } from "../../lib/bus/index.ts";
import {
  type Level,
  listDeadLetters,
  PermanentError,
  publishTask,
  replayDeadLetter,
  startDeadLetterMover,
  startPriorityWorker,
  taskSubject,
} from "../../lib/bus/index.ts";
import { type Database, openDatabase } from "../../lib/db/index.ts";
import { createLogger } from "../../lib/log/index.ts";
import { setupTelemetry } from "../../lib/telemetry/index.ts";
import { domains } from "../../servers/domains.ts";
import { eventually, isolatedBus, isolatedDatabase } from "../support/backbone.ts";

const log = createLogger("error");
const telemetry = setupTelemetry({ serviceName: "bus-test", memorySpans: true });
const bytes = (s: string) => new TextEncoder().encode(s);
const text = (d: Uint8Array) => new TextDecoder().decode(d);

describe("JetStream work and events", () => {
  let handle: Awaited<ReturnType<typeof isolatedBus>>;
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let bus: Bus;
  let db: Database;

  beforeAll(async () => {
    handle = await isolatedBus();
    bus = handle.bus;
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.content, log });
  });
  afterAll(async () => {
    await db?.close();
    await handle?.dispose();
    await dbHandle?.drop();
  });

  it("takes an urgent task next while 1,000 bulk tasks wait, and bulk work still progresses", async () => {
    const agent = "prio";
    await Promise.all(
      Array.from({ length: 1000 }, (_, i) => publishTask(bus, agent, "bulk", bytes(`b${i}`), `bulk-${i}`)),
    );
    const taken: Array<{ level: Level; body: string; urgentWaiting: number }> = [];
    const worker = await startPriorityWorker(
      bus,
      {
        agent,
        concurrency: 2,
        onTake: (level, d, waiting) => taken.push({ level, body: text(d.data), urgentWaiting: waiting.urgent }),
      },
      async () => {
        await new Promise((r) => setTimeout(r, 2));
      },
    );
    try {
      await eventually(() => (taken.length >= 20 ? true : undefined));
      await publishTask(bus, agent, "urgent", bytes("u0"), "urgent-0");
      await eventually(() => (taken.some((t) => t.body === "u0") ? true : undefined));
      // The first decision made while the urgent task waited took it.
      const first = taken.find((t) => t.urgentWaiting > 0);
      expect(first?.body).toBe("u0");
      expect(taken.filter((t) => t.level === "bulk").length).toBeGreaterThanOrEqual(20);

      // A steady flood of urgent work: bulk keeps moving (about 1 in 21 with weights 16:4:1).
      const start = taken.length;
      await Promise.all(
        Array.from({ length: 300 }, (_, i) => publishTask(bus, agent, "urgent", bytes(`u${i + 1}`), `urgent-${i + 1}`)),
      );
      await eventually(() => (taken.filter((t) => t.body.startsWith("u")).length >= 301 ? true : undefined), 30_000);
      const during = taken.slice(start);
      const lastUrgent = during.map((t) => t.level).lastIndexOf("urgent");
      const bulkDuring = during.slice(0, lastUrgent).filter((t) => t.level === "bulk").length;
      expect(bulkDuring).toBeGreaterThanOrEqual(8);
      expect(bulkDuring).toBeLessThan(60);
    } finally {
      await worker.stop();
    }
  }, 60_000);

  it("stores a message published twice with one Nats-Msg-Id once, and applies a redelivered one once", async () => {
    const subject = `${bus.prefix}.events.test.deduped`;
    const first = await bus.publish(subject, bytes("x"), { msgId: "same-id" });
    const second = await bus.publish(subject, bytes("x"), { msgId: "same-id" });
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    expect(second.seq).toBe(first.seq);

    // The inbox: the handler's effect commits with the inbox row; the first delivery then fails
    // after commit (as if the process died before acking), so JetStream redelivers it.
    await db.fork().getConnection().execute(`create table "content"."applied" (msg_id text, n int)`);
    let deliveries = 0;
    const running = await bus.consume(
      { stream: "events", durable: "dedup_test", filter: subject, backoffMs: [100] },
      async (d, em) => {
        deliveries++;
        await em
          ?.getConnection()
          .execute(`insert into "content"."applied" values (?, 1)`, [d.msgId], "run", em.getTransactionContext());
      },
      { db },
    );
    try {
      await eventually(() => (deliveries === 1 ? true : undefined));
      // Publish the same logical message again under a new NATS id (a replay from a producer that
      // crashed after its first publish): the inbox recognises it.
      await bus.publish(subject, bytes("x"), { msgId: "same-id-again", headers: { "Mesh-Msg-Id": "same-id" } });
      await new Promise((r) => setTimeout(r, 500));
      const rows = await db.fork().getConnection().execute(`select count(*)::int as n from "content"."applied"`);
      expect(rows[0]?.n).toBe(1);
      expect(deliveries).toBe(1);
    } finally {
      await running.stop();
    }
  });

  it("dead-letters a message that exhausts its deliveries, lists it, and replays it", async () => {
    const mover = await startDeadLetterMover(bus);
    const subject = taskSubject(bus.prefix, "dlqtest", "normal");
    let fail = true;
    const seen: Delivery[] = [];
    const running = await bus.consume(
      { stream: "tasks", durable: "dlq_test", filter: subject, maxDeliver: 3, backoffMs: [50, 50], ackWaitMs: 2000 },
      async (d) => {
        seen.push(d);
        if (fail) throw new Error("downstream refused");
      },
    );
    try {
      await publishTask(bus, "dlqtest", "normal", bytes("poison"), "poison-1");
      const letters = await eventually(async () => {
        const l = await listDeadLetters(bus, { consumer: "dlq_test" });
        return l.length === 1 ? l : undefined;
      }, 40_000);
      expect(seen.map((d) => d.deliveryCount)).toEqual([1, 2, 3]);
      const [letter] = letters;
      expect(letter?.subject).toBe(subject);
      expect(letter?.deliveries).toBe(3);
      expect(letter?.reason).toMatch(/max deliveries/);
      expect(letter?.msgId).toBe("poison-1");
      expect(text(letter?.data ?? new Uint8Array())).toBe("poison");
      // Removed from the work queue once dead-lettered.
      const original = () => bus.jsm.streams.getMessage(bus.streams.tasks, { seq: letter?.originalSeq ?? 0 });
      await eventually(async () => ((await original().catch(() => null)) === null ? true : undefined));

      fail = false;
      await replayDeadLetter(bus, letter?.seq ?? 0);
      await eventually(() => (seen.length === 4 ? true : undefined));
      expect(seen[3]?.msgId).toBe("poison-1");
      expect(seen[3]?.deliveryCount).toBe(1);
      expect(await listDeadLetters(bus, { consumer: "dlq_test" })).toEqual([]);
    } finally {
      await running.stop();
      await mover.stop();
    }
  }, 60_000);

  it("dead-letters at once on a permanent error", async () => {
    const subject = taskSubject(bus.prefix, "permtest", "bulk");
    let calls = 0;
    const running = await bus.consume({ stream: "tasks", durable: "perm_test", filter: subject }, async () => {
      calls++;
      throw new PermanentError("unknown workflow");
    });
    try {
      await publishTask(bus, "permtest", "bulk", bytes("bad"), "bad-1");
      const [letter] = await eventually(async () => {
        const l = await listDeadLetters(bus, { consumer: "perm_test" });
        return l.length === 1 ? l : undefined;
      });
      expect(calls).toBe(1);
      expect(letter?.reason).toBe("unknown workflow");
    } finally {
      await running.stop();
    }
  });

  it("continues the producer's trace in the consumer span, linked to the producer span", async () => {
    const subject = `${bus.prefix}.events.test.traced`;
    const running = await bus.consume({ stream: "events", durable: "trace_test", filter: subject }, async () => {});
    try {
      await bus.publish(subject, bytes("t"), { msgId: "traced-1" });
      await eventually(async () => {
        await telemetry.flush();
        const spans = telemetry.memoryExporter?.getFinishedSpans() ?? [];
        return spans.some((s) => s.name === `process ${subject}`) ? true : undefined;
      });
      const spans = telemetry.memoryExporter?.getFinishedSpans() ?? [];
      const send = spans.find((s) => s.name === `send ${subject}`);
      const proc = spans.find((s) => s.name === `process ${subject}`);
      expect(proc?.spanContext().traceId).toBe(send?.spanContext().traceId);
      expect(proc?.parentSpanContext?.spanId).toBe(send?.spanContext().spanId);
      expect(proc?.links[0]?.context.spanId).toBe(send?.spanContext().spanId);
      expect(proc?.attributes).toMatchObject({
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.consumer.group.name": "trace_test",
        "messaging.message.id": "traced-1",
      });
    } finally {
      await running.stop();
    }
  });
});
