import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, decodeEvent, defineEvent, enqueueEvent, startOutboxRelay } from "../../lib/bus/index.ts";
import { type Database, IdempotencyRecord, openDatabase } from "../../lib/db/index.ts";
import { createLogger } from "../../lib/log/index.ts";
import { setupTelemetry } from "../../lib/telemetry/index.ts";
import { domains } from "../../servers/domains.ts";
import { eventually, isolatedBus, isolatedDatabase } from "../support/backbone.ts";

const Ticked = defineEvent("test", "ticked", TimestampSchema);
const log = createLogger("warn");
const telemetry = setupTelemetry({ serviceName: "outbox-test", memorySpans: true });

describe("transactional outbox", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let busHandle: Awaited<ReturnType<typeof isolatedBus>>;
  let db: Database;
  let bus: Bus;
  let relay: ReturnType<typeof startOutboxRelay>;

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    busHandle = await isolatedBus();
    bus = busHandle.bus;
    db = await openDatabase({ url: dbHandle.url, domain: domains.content, log });
    relay = startOutboxRelay(db, bus, { log, pollMs: 100 });
  });
  afterAll(async () => {
    await relay?.stop();
    await db?.close();
    await busHandle?.dispose();
    await dbHandle?.drop();
  });

  const eventsInStream = async (): Promise<number> => (await bus.jsm.streams.info(bus.streams.events)).state.messages;
  const outboxRows = async (): Promise<number> =>
    Number((await db.fork().getConnection().execute(`select count(*) as n from "content"."outbox"`))[0]?.n);

  it("publishes an event whose change committed, once", async () => {
    await db.transaction(async (em) => {
      em.create(IdempotencyRecord, { id: "x:commit", procedure: "x", requestHash: "h", response: Buffer.alloc(0) });
      enqueueEvent(db, em, bus.prefix, Ticked, create(TimestampSchema, { seconds: 42n }), { msgId: "tick-42" });
    });
    await eventually(async () => ((await eventsInStream()) === 1 ? true : undefined));
    await relay.flush();
    expect(await outboxRows()).toBe(0);
    const m = await bus.jsm.streams.getMessage(bus.streams.events, { seq: 1 });
    expect(m?.subject).toBe(`${bus.prefix}.events.test.ticked`);
    expect(m?.header.get("Nats-Msg-Id")).toBe("tick-42");
    expect(m?.header.get("traceparent")).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    await telemetry.flush();
    const send = telemetry.memoryExporter
      ?.getFinishedSpans()
      .find((s) => s.name === `send ${bus.prefix}.events.test.ticked`);
    expect(send?.attributes["messaging.system"]).toBe("nats");
    expect(send?.attributes["messaging.message.id"]).toBe("tick-42");
    expect(m?.header.get("traceparent")).toContain(send?.spanContext().spanId);
    if (m === null) throw new Error("no message");
    const d = { subject: m.subject, data: m.data, headers: {}, msgId: "tick-42", deliveryCount: 1, streamSeq: 1 };
    expect(decodeEvent(Ticked, d).seconds).toBe(42n);
  });

  it("publishes nothing when the transaction rolls back", async () => {
    const before = await eventsInStream();
    await expect(
      db.transaction(async (em) => {
        em.create(IdempotencyRecord, { id: "x:rollback", procedure: "x", requestHash: "h", response: Buffer.alloc(0) });
        enqueueEvent(db, em, bus.prefix, Ticked, create(TimestampSchema, { seconds: 7n }));
        await em.flush();
        throw new Error("business rule failed");
      }),
    ).rejects.toThrow("business rule failed");
    await relay.flush();
    await new Promise((r) => setTimeout(r, 300));
    expect(await eventsInStream()).toBe(before);
    expect(await outboxRows()).toBe(0);
    expect(await db.fork().findOne(IdempotencyRecord, { id: "x:rollback" })).toBeNull();
  });

  it("publishes what a crashed process left in the outbox (on the next poll)", async () => {
    // Written by a transaction whose process died before the relay ran: no wake-up, only the poll.
    await db
      .fork()
      .getConnection()
      .execute(
        `insert into "content"."outbox" (subject, msg_id, payload, headers, created_at) values (?, 'left-1', '\\x', '{}', now())`,
        [`${bus.prefix}.events.test.ticked`],
      );
    const before = await eventsInStream();
    await eventually(async () => ((await eventsInStream()) === before + 1 ? true : undefined), 5000);
  });
});
