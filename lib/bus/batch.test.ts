import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { domains } from "../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../test/support/backbone.ts";
import type { EntityManager } from "../db/index.ts";
import { type BatchDelivery, consumeBatches } from "./batch.ts";
import { PermanentError, type Running } from "./bus.ts";

const text = new TextEncoder();
const decode = (d: { data: Uint8Array }) => new TextDecoder().decode(d.data);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("batched durable consumer", () => {
  let fx: BackboneFixture;
  let table: string;
  const running: Running[] = [];

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "bus-batch");
    table = `"${fx.db.schema}"."batch_test_applied"`;
    await fx.db.fork().execute(`create table ${table} (durable text not null, payload text not null)`);
  });
  afterAll(async () => {
    for (const r of running) await r.stop();
    await fx?.dispose();
  });

  const subjectOf = (name: string) => `${fx.bus.prefix}.events.test.${name}`;
  const publish = async (name: string, payloads: string[], msgIdOf = (p: string) => `${name}-${p}`) => {
    for (const p of payloads) {
      await fx.bus.publish(subjectOf(name), text.encode(p), {
        msgId: msgIdOf(p),
        headers: { "Mesh-Msg-Id": msgIdOf(p) },
      });
    }
  };
  /** Records each delivery's payload in the batch's transaction. */
  const record = async (durable: string, batch: readonly BatchDelivery[], em: EntityManager) => {
    await em.execute(`insert into ${table} (durable, payload) select ?, unnest(?::text[])`, [
      durable,
      `{${batch.map(decode).join(",")}}`,
    ]);
  };
  const applied = async (durable: string) =>
    (
      (await fx.db.fork().execute(`select payload from ${table} where durable = ? order by payload`, [durable])) as {
        payload: string;
      }[]
    ).map((r) => r.payload);
  const settled = async (durable: string) => {
    const info = await fx.bus.jsm.consumers.info(fx.bus.streams.events, durable);
    return info.num_pending === 0 && info.num_ack_pending === 0 ? info : undefined;
  };
  const names = (n: number) => Array.from({ length: n }, (_, i) => `m${String(i).padStart(3, "0")}`);

  it("applies each message once when it is redelivered while its batch is still running", async () => {
    const durable = "redelivered";
    let calls = 0;
    const payloads = names(40);
    await publish(durable, payloads);
    running.push(
      await consumeBatches(
        fx.bus,
        { stream: "events", durable, filter: subjectOf(durable), ackWaitMs: 1000, backoffMs: [50] },
        async (batch, em) => {
          calls++;
          await record(durable, batch, em);
          // The first batch outlives the ack wait: the server redelivers its messages meanwhile.
          if (calls === 1) await sleep(2500);
        },
        { db: fx.db, batchSize: 25, concurrency: 2 },
      ),
    );
    const info = await eventually(
      async () => ((await applied(durable)).length >= 40 ? settled(durable) : undefined),
      20_000,
    );
    // More deliveries than messages: some were redelivered.
    expect(info.delivered.consumer_seq).toBeGreaterThan(40);
    expect(await applied(durable)).toEqual(payloads);
    const inbox = (await fx.db
      .fork()
      .execute(`select count(*)::int as n from "${fx.db.schema}"."inbox" where consumer = ?`, [durable])) as {
      n: number;
    }[];
    expect(inbox[0]?.n).toBe(40);
  });

  it("skips messages already in the inbox and duplicates within a batch", async () => {
    const durable = "deduped";
    // m000 and m001 were applied before (e.g. by an instance that crashed before acknowledging).
    await fx.db
      .fork()
      .execute(
        `insert into "${fx.db.schema}"."inbox" (consumer, msg_id, subject, processed_at) values (?, ?, ?, now()), (?, ?, ?, now())`,
        [durable, `${durable}-m000`, subjectOf(durable), durable, `${durable}-m001`, subjectOf(durable)],
      );
    await publish(durable, names(10));
    // Same logical id (Mesh-Msg-Id) published again under another stream dedup id.
    await fx.bus.publish(subjectOf(durable), text.encode("m005-again"), {
      msgId: "other-nats-id",
      headers: { "Mesh-Msg-Id": `${durable}-m005` },
    });
    running.push(
      await consumeBatches(
        fx.bus,
        { stream: "events", durable, filter: subjectOf(durable) },
        (batch, em) => record(durable, batch, em),
        { db: fx.db, batchSize: 100 },
      ),
    );
    await eventually(async () => ((await applied(durable)).length >= 8 ? settled(durable) : undefined));
    expect(await applied(durable)).toEqual(names(10).slice(2));
  });

  it("dead-letters a poison message and applies the others of its batch", async () => {
    const durable = "poisoned";
    const payloads = names(30);
    const poison = "m007";
    let flakyFailures = 0;
    await publish(durable, payloads);
    running.push(
      await consumeBatches(
        fx.bus,
        { stream: "events", durable, filter: subjectOf(durable), backoffMs: [50, 50, 50] },
        async (batch, em) => {
          if (batch.some((d) => decode(d) === poison)) throw new PermanentError("poison");
          // m020 fails twice (alone, then redelivered), then succeeds.
          if (batch.some((d) => decode(d) === "m020") && flakyFailures < 2) {
            flakyFailures++;
            throw new Error("transient");
          }
          await record(durable, batch, em);
        },
        { db: fx.db, batchSize: 30 },
      ),
    );
    // (The termed poison message is not waited for: how soon the server forgets it depends on its version.)
    await eventually(async () => ((await applied(durable)).length >= 29 ? true : undefined), 20_000);
    expect(await applied(durable)).toEqual(payloads.filter((p) => p !== poison));
    expect(flakyFailures).toBe(2);
    const dlq = await eventually(async () => {
      const state = (await fx.bus.jsm.streams.info(fx.bus.streams.dlq)).state;
      return state.messages > 0 ? state : undefined;
    });
    expect(dlq.messages).toBe(1);
    const letter = await fx.bus.jsm.streams.getMessage(fx.bus.streams.dlq, { seq: dlq.first_seq });
    expect(letter?.header.get("Mesh-Msg-Id")).toBe(`${durable}-${poison}`);
    expect(letter?.header.get("Mesh-Dlq-Consumer")).toBe(durable);
  });
});
