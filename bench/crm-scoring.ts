/**
 * Lead re-scoring from events (`crm.lead_scoring`, scoring/consumer.ts): a synthetic CRM of 5,000
 * contacts in 50 markets with about 8 interactions each and some conversions, a stored
 * location-aware model (fit rules, four decaying behaviour rules, market weights learned), and
 * the durable `crm.interaction_tracked` consumer running in process against the local PostgreSQL
 * and NATS (isolated database and subject prefix). Events are published to JetStream as the
 * outbox relay of TrackInteraction would publish them, each naming a random contact.
 *
 * Two phases:
 * 1. sustained: events offered at a fixed rate (default 1,200/s, above the target) for a fixed
 *    time; every second the consumer's backlog (pending + unacknowledged) is sampled. The result
 *    is the processed rate and the backlog's trend over the second half (least-squares slope,
 *    events/s: ≤ ~0 means the consumer keeps up).
 * 2. drain: a burst of events published at once, timed until the consumer has processed them all
 *    (its maximum rate).
 *
 * Events are consumed in batches (lib/bus consumeBatches): per batch of up to `batchSize` events,
 * one transaction with the inbox rows in one statement, the contacts' locks (sorted), one read of
 * the contacts (interactions, market weights, previous scores), one score upsert and the
 * `LeadScoreChanged` outbox rows (the relay runs too). The target is ≥ 1,000 events/s sustained with no growing backlog.
 *
 * `node bench/crm-scoring.ts [rate] [seconds] [burst] [loops] [batchSize] [maxAckPending]` runs it alone and prints the result.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { InteractionTracked } from "../agents/crm/events.ts";
import { interactionsDurable, saveScoringModel, startLeadScoring } from "../agents/crm/scoring/index.ts";
import { InteractionTrackedSchema } from "../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  ComparisonOperator,
  ContactField,
  InteractionType,
  SaveScoringModelRequestSchema,
} from "../gen/mesh/crm/v1/crm_service_pb.ts";
import { startOutboxRelay } from "../lib/bus/index.ts";
import { openDatabase } from "../lib/db/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { domains } from "../servers/domains.ts";
import { isolatedBus, isolatedDatabase } from "../test/support/backbone.ts";

/** Options of {@link benchCrmScoring}. */
export interface CrmScoringBenchOptions {
  /** Offered rate of the sustained phase, events/s. */
  rate: number;
  /** Duration of the sustained phase, s. */
  seconds: number;
  /** Events of the drain phase. */
  burst: number;
  /** Contacts in the synthetic CRM. */
  contacts?: number;
  /** Batch loops (default 1), events per batch (default 500) and messages in flight (default 2 × batch × loops). */
  concurrency?: number;
  batchSize?: number;
  maxAckPending?: number;
}

/** Result of the scenario. */
export interface CrmScoringResult {
  contacts: number;
  concurrency: number;
  batchSize: number;
  interactions: number;
  offeredPerSecond: number;
  /** Events published in the sustained phase. */
  published: number;
  /** Events processed per second over the sustained phase (until the last was processed). */
  sustainedPerSecond: number;
  /** Backlog (pending + unacknowledged) samples, one per second. */
  backlog: number[];
  /** Least-squares slope of the backlog over the second half of the phase, events/s. */
  backlogSlopePerSecond: number;
  /** Backlog when publishing stopped. */
  backlogAtEnd: number;
  /** Drain phase: events, seconds and rate. */
  burst: number;
  drainSeconds: number;
  drainPerSecond: number;
  /** Contacts with a stored score at the end. */
  scoredContacts: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function slope(ys: readonly number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, y) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}

/** Runs the scenario on an isolated database and bus prefix, removed afterwards. */
export async function benchCrmScoring(opts: CrmScoringBenchOptions): Promise<CrmScoringResult> {
  const log = createLogger("error");
  const contactsN = opts.contacts ?? 5000;
  const dbHandle = await isolatedDatabase();
  const busHandle = await isolatedBus("bench-crm-scoring");
  const bus = busHandle.bus;
  const concurrency = opts.concurrency ?? 1;
  const batchSize = opts.batchSize ?? 500;
  const db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log, poolMax: concurrency + 4 });
  const relay = startOutboxRelay(db, bus, { log, pollMs: 200 });
  const s = `"${db.schema}"`;
  try {
    // Population: contacts in 50 markets, ~8 interactions each over 90 days, 8 % converted.
    const em = db.fork();
    await em.execute(
      `insert into ${s}."crm_contact" (id, city, region, attributes, created_at, updated_at)` +
        ` select gen_random_uuid(), 'City ' || (g % 50), 'TX', case when g % 3 = 0 then '[{"key":"care_type","value":{"stringValue":"memory care"}}]'::jsonb else '[]'::jsonb end, now(), now()` +
        " from generate_series(1, ?) g",
      [contactsN],
    );
    const ids = ((await em.execute(`select id from ${s}."crm_contact"`)) as { id: string }[]).map((r) => r.id);
    await em.execute(
      `insert into ${s}."crm_interaction" (id, event_id, contact_id, type, url, occurred_at, properties, recorded_at)` +
        ` select gen_random_uuid(), gen_random_uuid()::text, c.id, (array[1, 1, 1, 2, 4, 5, 16, 1])[1 + (k % 8)],` +
        ` case when k % 2 = 0 then 'https://example.com/pricing' else 'https://example.com/blog' end,` +
        ` now() - (random() * interval '90 days'), '[]'::jsonb, now()` +
        ` from ${s}."crm_contact" c cross join generate_series(0, 7) k`,
    );
    await em.execute(
      `insert into ${s}."crm_scoring_conversion" (conversion_id, contact_id, occurred_at, recorded_at)` +
        ` select gen_random_uuid()::text, id, now() - interval '1 day', now() from ${s}."crm_contact" where random() < 0.08`,
    );
    const interactions = contactsN * 8;
    await saveScoringModel(
      { db, now: () => new Date() },
      create(SaveScoringModelRequestSchema, {
        requestId: randomUUID(),
        model: {
          fitRules: [
            {
              id: "memory-care",
              condition: {
                node: {
                  case: "field",
                  value: {
                    field: { ref: { case: "attributeKey", value: "care_type" } },
                    comparison: ComparisonOperator.EQUALS,
                    values: [{ kind: { case: "stringValue", value: "memory care" } }],
                  },
                },
              },
              points: 15,
            },
            {
              id: "texas",
              condition: {
                node: {
                  case: "field",
                  value: {
                    field: { ref: { case: "contactField", value: ContactField.REGION } },
                    comparison: ComparisonOperator.EQUALS,
                    values: [{ kind: { case: "stringValue", value: "TX" } }],
                  },
                },
              },
              points: 5,
            },
          ],
          behaviourRules: [
            {
              id: "enquiry",
              interactionType: InteractionType.ENQUIRY,
              points: 40,
              halfLife: durationFromMs(30 * 86_400_000),
            },
            {
              id: "pricing",
              interactionType: InteractionType.PAGE_VIEW,
              urlContains: "/pricing",
              points: 5,
              halfLife: durationFromMs(7 * 86_400_000),
              maxOccurrences: 5,
            },
            {
              id: "email-click",
              interactionType: InteractionType.EMAIL_CLICK,
              points: 3,
              halfLife: durationFromMs(14 * 86_400_000),
            },
            {
              id: "download",
              interactionType: InteractionType.CONTENT_DOWNLOAD,
              points: 10,
              halfLife: durationFromMs(30 * 86_400_000),
            },
          ],
          mqlThreshold: 40,
          sqlThreshold: 70,
        },
        marketWeighting: { enabled: true, priorStrength: 20 },
      }),
    );
    const running = await startLeadScoring({
      db,
      bus,
      log,
      now: () => new Date(),
      concurrency,
      batchSize,
      ...(opts.maxAckPending === undefined ? {} : { maxAckPending: opts.maxAckPending }),
    });
    const processed = async (): Promise<number> =>
      Number(
        (
          (await db
            .fork()
            .execute(`select count(*)::int as n from ${s}."inbox" where consumer = ?`, [interactionsDurable])) as {
            n: number;
          }[]
        )[0]?.n ?? 0,
      );
    const backlogNow = async (): Promise<number> => {
      const info = await bus.jsm.consumers.info(bus.streams.events, interactionsDurable);
      return info.num_pending + info.num_ack_pending;
    };
    const publish = (n: number) =>
      Promise.all(
        Array.from({ length: n }, () =>
          bus.publishEvent(
            InteractionTracked,
            create(InteractionTrackedSchema, {
              interactionId: randomUUID(),
              contactId: ids[Math.floor(Math.random() * ids.length)] as string,
              type: InteractionType.PAGE_VIEW,
            }),
          ),
        ),
      );

    const say = (m: string) => process.stderr.write(`  crm-scoring: ${m}\n`);
    say(`population ready: ${contactsN} contacts, ${interactions} interactions`);
    // Warm-up (JIT, connection pool, model cache).
    await publish(500);
    while ((await processed()) < 500) await sleep(50);

    say("warmed up");
    // 1. Sustained.
    const base = await processed();
    const tick = 100;
    const backlog: number[] = [];
    const start = performance.now();
    let published = 0;
    let nextSample = start + 1000;
    while (performance.now() - start < opts.seconds * 1000) {
      const t = performance.now();
      const due = Math.floor(((t - start) / 1000) * opts.rate) - published;
      if (due > 0) {
        await publish(due);
        published += due;
      }
      if (performance.now() >= nextSample) {
        backlog.push(await backlogNow());
        nextSample += 1000;
      }
      await sleep(Math.max(1, tick - (performance.now() - t)));
    }
    const backlogAtEnd = await backlogNow();
    while ((await processed()) - base < published) await sleep(20);
    const sustainedSeconds = (performance.now() - start) / 1000;
    const half = backlog.slice(Math.floor(backlog.length / 2));

    say(`sustained phase done: ${published} events`);
    // 2. Drain.
    const base2 = await processed();
    const t2 = performance.now();
    for (let i = 0; i < opts.burst; i += 1000) await publish(Math.min(1000, opts.burst - i));
    while ((await processed()) - base2 < opts.burst) await sleep(20);
    const drainSeconds = (performance.now() - t2) / 1000;

    const scored = (await db.fork().execute(`select count(*)::int as n from ${s}."crm_lead_score"`)) as { n: number }[];
    for (const r of running) await r.stop();
    return {
      contacts: contactsN,
      concurrency,
      batchSize,
      interactions,
      offeredPerSecond: opts.rate,
      published,
      sustainedPerSecond: Math.round(published / sustainedSeconds),
      backlog,
      backlogSlopePerSecond: Math.round(slope(half) * 10) / 10,
      backlogAtEnd,
      burst: opts.burst,
      drainSeconds: Math.round(drainSeconds * 100) / 100,
      drainPerSecond: Math.round(opts.burst / drainSeconds),
      scoredContacts: scored[0]?.n ?? 0,
    };
  } finally {
    await relay.stop();
    await db.close();
    await busHandle.dispose();
    await dbHandle.drop();
  }
}

if (import.meta.main) {
  const [rate, seconds, burst, concurrency, batchSize, maxAckPending] = process.argv.slice(2).map(Number);
  const r = await benchCrmScoring({
    rate: rate || 1200,
    seconds: seconds || 20,
    burst: burst || 10000,
    ...(concurrency ? { concurrency } : {}),
    ...(batchSize ? { batchSize } : {}),
    ...(maxAckPending ? { maxAckPending } : {}),
  });
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  process.exit(0);
}
