import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isolatedBus } from "../../test/support/backbone.ts";
import type { Bus } from "./bus.ts";
import { type DeadLetter, listDeadLetters, scanDeadLetters } from "./dlq.ts";

const LETTERS = 2500;
const BATCH = 500;
const PAYLOAD = 100;

/** What a scan asked of the server: messages per fetch requested and received, consumers opened. */
interface FetchProbe {
  maxRequested: number;
  maxReceived: number;
  fetches: number;
  consumers: number;
}

/** A bus whose ordered-consumer fetches are counted (what a scan holds is what one fetch returns). */
function probed(bus: Bus): { bus: Bus; probe: FetchProbe } {
  const probe: FetchProbe = { maxRequested: 0, maxReceived: 0, fetches: 0, consumers: 0 };
  const consumers = new Proxy(bus.js.consumers, {
    get(t, k) {
      const v = Reflect.get(t, k, t);
      if (k !== "get") return typeof v === "function" ? v.bind(t) : v;
      return async (...args: Parameters<typeof t.get>) => {
        const consumer = await t.get(...args);
        probe.consumers++;
        return new Proxy(consumer, {
          get(c, ck) {
            const cv = Reflect.get(c, ck, c);
            if (ck !== "fetch") return typeof cv === "function" ? cv.bind(c) : cv;
            return async (opts: Parameters<typeof c.fetch>[0]) => {
              probe.fetches++;
              probe.maxRequested = Math.max(probe.maxRequested, opts?.max_messages ?? 100);
              const messages = await c.fetch(opts);
              let received = 0;
              const counted = (async function* () {
                for await (const m of messages) {
                  received++;
                  probe.maxReceived = Math.max(probe.maxReceived, received);
                  yield m;
                }
              })();
              return Object.assign(counted, { close: () => messages.close(), stop: () => messages.stop() });
            };
          },
        });
      };
    },
  });
  const js = new Proxy(bus.js, {
    get(t, k) {
      if (k === "consumers") return consumers;
      const v = Reflect.get(t, k, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
  return { bus: { ...bus, js }, probe };
}

describe("dead letters read in bounded batches", () => {
  let handle: Awaited<ReturnType<typeof isolatedBus>>;
  let bus: Bus;
  const subjectOf = (i: number) => `${bus.prefix}.tasks.${i % 2 === 0 ? "even" : "odd"}.normal`;

  beforeAll(async () => {
    handle = await isolatedBus("dlq");
    bus = handle.bus;
    const payload = new Uint8Array(PAYLOAD).fill(120);
    // One at a time, so that DLQ order is the order of i.
    for (let i = 0; i < LETTERS; i++) {
      await bus.deadLetter(
        { subject: subjectOf(i), data: payload, headers: {}, msgId: `m-${i}`, deliveryCount: 3, streamSeq: i + 1 },
        { stream: bus.streams.tasks, consumer: i % 2 === 0 ? "even" : "odd" },
        `failed ${i}`,
      );
    }
  }, 120_000);
  afterAll(async () => {
    await handle?.dispose();
  });

  const drain = async (it: AsyncIterable<{ letters: DeadLetter[]; scanned: number }>) => {
    const letters: DeadLetter[] = [];
    let maxScanned = 0;
    let batches = 0;
    for await (const b of it) {
      batches++;
      maxScanned = Math.max(maxScanned, b.scanned, b.letters.length);
      letters.push(...b.letters);
    }
    return { letters, maxScanned, batches };
  };

  it("scans oldest first, every letter exactly once, never more than one batch at a time, headers only", async () => {
    const { bus: b, probe } = probed(bus);
    const { letters, maxScanned, batches } = await drain(scanDeadLetters(b, {}, { batchSize: BATCH }));
    expect(letters.map((l) => l.msgId)).toEqual(Array.from({ length: LETTERS }, (_, i) => `m-${i}`));
    expect(new Set(letters.map((l) => l.seq)).size).toBe(LETTERS);
    expect(batches).toBeGreaterThanOrEqual(LETTERS / BATCH);
    expect(maxScanned).toBeLessThanOrEqual(BATCH);
    expect(probe.maxRequested).toBeLessThanOrEqual(BATCH);
    expect(probe.maxReceived).toBeLessThanOrEqual(BATCH);
    expect(probe.fetches).toBeGreaterThanOrEqual(LETTERS / BATCH);
    // Headers only: the server sent no payload, the size comes from its header.
    expect(letters.every((l) => l.data.length === 0 && l.size === PAYLOAD && l.truncated)).toBe(true);
    expect(letters[0]).toMatchObject({ subject: subjectOf(0), deliveries: 3, reason: "failed 0", consumer: "even" });
    expect(letters[0]?.headers["Nats-Msg-Size"]).toBeUndefined();
  });

  it("scans newest first from a cursor, in windows of one batch", async () => {
    const { letters: all } = await drain(scanDeadLetters(bus, {}, { batchSize: BATCH }));
    const cursor = all[2000]?.seq ?? 0;
    const { bus: b, probe } = probed(bus);
    const { letters, maxScanned } = await drain(scanDeadLetters(b, {}, { order: "newest", cursor, batchSize: BATCH }));
    expect(letters.map((l) => l.msgId)).toEqual(Array.from({ length: 2000 }, (_, i) => `m-${1999 - i}`));
    expect(maxScanned).toBeLessThanOrEqual(BATCH);
    expect(probe.maxRequested).toBeLessThanOrEqual(BATCH);
    expect(probe.maxReceived).toBeLessThanOrEqual(BATCH);
  });

  it("filters on headers (original subject, consumer, ids) and stops at a limit", async () => {
    const odd = await drain(scanDeadLetters(bus, { subject: `${bus.prefix}.tasks.odd.>` }, { batchSize: BATCH }));
    expect(odd.letters).toHaveLength(LETTERS / 2);
    expect(odd.letters.every((l) => l.consumer === "odd")).toBe(true);
    const byIds = await drain(scanDeadLetters(bus, { msgIds: ["m-7", "m-2400", "nope"] }, { batchSize: BATCH }));
    expect(byIds.letters.map((l) => l.msgId)).toEqual(["m-7", "m-2400"]);
    const limited = await drain(scanDeadLetters(bus, { consumer: "even", limit: 3 }, { batchSize: BATCH }));
    expect(limited.letters.map((l) => l.msgId)).toEqual(["m-0", "m-2", "m-4"]);
  });

  it("lists a capped page, with payloads cut to a cap when asked", async () => {
    const page = await listDeadLetters(bus, { limit: 100_000 });
    expect(page).toHaveLength(1000);
    const cut = await listDeadLetters(bus, { limit: 2, payloadBytes: 10 });
    expect(cut.map((l) => [l.msgId, l.data.length, l.size, l.truncated])).toEqual([
      ["m-0", 10, PAYLOAD, true],
      ["m-1", 10, PAYLOAD, true],
    ]);
    const whole = await listDeadLetters(bus, { limit: 1 });
    expect([whole[0]?.data.length, whole[0]?.truncated]).toEqual([PAYLOAD, false]);
    const next = await listDeadLetters(bus, { limit: 2, cursor: whole[0]?.seq ?? 0 });
    expect(next.map((l) => l.msgId)).toEqual(["m-1", "m-2"]);
    const newest = await listDeadLetters(bus, { limit: 2, order: "newest" });
    expect(newest.map((l) => l.msgId)).toEqual([`m-${LETTERS - 1}`, `m-${LETTERS - 2}`]);
  });
});
