/**
 * Dynamic segmentation (`crm.segmentation` and stored segments) over a large synthetic CRM, in
 * process on an isolated database and NATS prefix:
 *
 * 1. Inserts 100,000 contacts (by default) and about 3 interactions each with INSERT … SELECT over
 *    generate_series (not timed).
 * 2. Full evaluation of a realistic segment — leads in three Texas cities who enquired in the last
 *    30 days or viewed the pricing page 3+ times in 14 days — timed three ways: SegmentContacts
 *    (counts and a first page, one SQL query), SaveSegment (first materialisation: the INSERT …
 *    SELECT of every member plus one outbox event per join) and EvaluateSegment (the DELETE/INSERT
 *    diff when nothing changed). Target < 2 s.
 * 3. Event → membership change: with the segment consumers, the outbox relay and subscribers
 *    running, N times (500 by default) one contact that lacks only an enquiry gets one through
 *    TrackInteraction; latency is from the publication of its `interaction_tracked` event to the
 *    arrival of its SegmentMembershipChanged event at a subscriber (the durable consumer's delivery,
 *    the re-evaluation transaction, the outbox relay and JetStream included); the time from the
 *    TrackInteraction call is reported beside it. Events are sent one at a time, after 20 warm-up
 *    events. Target p99 < 50 ms.
 *
 * `node bench/crm-segments.ts [contacts] [events]` runs it alone and prints the result.
 */
import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { startSegmentConsumers } from "../agents/crm/segments/consumer.ts";
import { evaluateSegment, saveSegment } from "../agents/crm/segments/stored.ts";
import { segmentContacts } from "../agents/crm/skills/segment-contacts.ts";
import { trackInteraction } from "../agents/crm/skills/track-interaction.ts";
import {
  InteractionTrackedSchema,
  SegmentMembershipChange,
  SegmentMembershipChangedSchema,
} from "../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  BooleanOperator,
  ComparisonOperator,
  type ConditionSchema,
  ContactField,
  EvaluateSegmentRequestSchema,
  InteractionType,
  SaveSegmentRequestSchema,
  SegmentContactsRequestSchema,
  TrackInteractionRequestSchema,
} from "../gen/mesh/crm/v1/crm_service_pb.ts";
import { decodeEvent, defineEvent, startOutboxRelay } from "../lib/bus/index.ts";
import { openDatabase } from "../lib/db/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { domains } from "../servers/domains.ts";
import { isolatedBus, isolatedDatabase } from "../test/support/backbone.ts";
import { quantile } from "./lib.ts";

/** Options of {@link benchCrmSegments}. */
export interface CrmSegmentsBenchOptions {
  /** Contacts in the population. */
  contacts: number;
  /** Timed events for the latency part. */
  events: number;
}

/** The measurements. */
export interface CrmSegmentsResult {
  contacts: number;
  interactions: number;
  seedSeconds: number;
  members: number;
  /** SegmentContacts with counts and a first page of 100, seconds (median of 3). */
  segmentContactsSeconds: number;
  /** SaveSegment: first full materialisation with one event per join, seconds. */
  saveSeconds: number;
  /** EvaluateSegment when nothing changed, seconds (median of 3). */
  reevaluateSeconds: number;
  events: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** From the TrackInteraction call (rather than its event) to the membership change. */
  callToChangeP50Ms: number;
  callToChangeP99Ms: number;
}

type ConditionInit = MessageInitShape<typeof ConditionSchema>;
const day = 86_400_000;
const Changed = defineEvent("crm", "segment_membership_changed", SegmentMembershipChangedSchema);
const InteractionTracked = defineEvent("crm", "interaction_tracked", InteractionTrackedSchema);

/** The benchmark segment. */
export function realisticSegment(): ConditionInit {
  const cities = ["Austin", "Round Rock", "Houston"].map((c) => ({ kind: { case: "stringValue" as const, value: c } }));
  return {
    node: {
      case: "group",
      value: {
        booleanOperator: BooleanOperator.AND,
        conditions: [
          {
            node: {
              case: "field",
              value: {
                field: { ref: { case: "contactField", value: ContactField.CITY } },
                comparison: ComparisonOperator.IN,
                values: cities,
              },
            },
          },
          {
            node: {
              case: "field",
              value: {
                field: { ref: { case: "contactField", value: ContactField.LIFECYCLE_STAGE } },
                comparison: ComparisonOperator.IN,
                values: [
                  { kind: { case: "stringValue", value: "LEAD" } },
                  { kind: { case: "stringValue", value: "MARKETING_QUALIFIED_LEAD" } },
                ],
              },
            },
          },
          {
            node: {
              case: "group",
              value: {
                booleanOperator: BooleanOperator.OR,
                conditions: [
                  {
                    node: {
                      case: "behaviour",
                      value: {
                        interactionType: InteractionType.ENQUIRY,
                        minCount: 1,
                        within: durationFromMs(30 * day),
                      },
                    },
                  },
                  {
                    node: {
                      case: "behaviour",
                      value: {
                        interactionType: InteractionType.PAGE_VIEW,
                        urlContains: "/pricing",
                        minCount: 3,
                        within: durationFromMs(14 * day),
                      },
                    },
                  },
                ],
              },
            },
          },
        ],
      },
    },
  };
}

/** Runs the scenario once. */
export async function benchCrmSegments(opts: CrmSegmentsBenchOptions): Promise<CrmSegmentsResult> {
  const log = createLogger("warn");
  const dbHandle = await isolatedDatabase();
  const busHandle = await isolatedBus("bench-segments");
  const db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
  const bus = busHandle.bus;
  const relay = startOutboxRelay(db, bus, { log, pollMs: 100 });
  const now = () => new Date();
  const deps = { db, bus, now };
  try {
    // 1. Population: cities and stages cycle with co-prime periods; interactions in the last 60 days.
    let started = performance.now();
    const em = db.fork();
    const s = `"${db.schema}"`;
    await em.execute(
      `insert into ${s}."crm_contact" (id, email, given_name, family_name, city, region, lifecycle_stage, attributes, created_at, updated_at)
       select ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 'p' || g || '@example.com', 'Given' || g, 'Family' || g,
              (array['Austin','Round Rock','Houston','Dallas','San Antonio','El Paso','Plano'])[1 + g % 7], 'TX', 1 + g % 5,
              jsonb_build_array(jsonb_build_object('key', 'budget', 'value', jsonb_build_object('intValue', (1000 + g % 9000)::text))),
              now() - interval '200 days', now() - interval '200 days'
       from generate_series(1, ?) g`,
      [opts.contacts],
    );
    // Enquiries for one contact in 4, pricing views (three in two weeks) for one in 13, other views for all.
    await em.execute(
      `insert into ${s}."crm_interaction" (id, event_id, contact_id, type, channel, url, occurred_at, properties, recorded_at)
       select gen_random_uuid(), 'seed-' || k || '-' || g, ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
              case when k = 0 and g % 4 = 0 then 2 else 1 end, 1,
              case when g % 13 = 0 then 'https://example.com/pricing' else 'https://example.com/page' end,
              now() - ((g + k * 7) % 60) * interval '1 day' - k * interval '1 hour', '[]', now()
       from generate_series(1, ?) g, generate_series(0, 2) k`,
      [opts.contacts],
    );
    await em.execute(`analyze ${s}."crm_contact"`);
    await em.execute(`analyze ${s}."crm_interaction"`);
    const seedSeconds = (performance.now() - started) / 1000;

    // 2. Full evaluation.
    const condition = realisticSegment();
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const adHocRuns: number[] = [];
    let adHoc: Awaited<ReturnType<typeof segmentContacts>> | undefined;
    for (let run = 0; run < 3; run++) {
      started = performance.now();
      adHoc = await segmentContacts(
        deps,
        create(SegmentContactsRequestSchema, {
          method: { case: "rules", value: { segments: [{ key: "tx-hot-leads", name: "TX hot leads", condition }] } },
          pageSize: 100,
        }),
      );
      adHocRuns.push((performance.now() - started) / 1000);
    }
    const segmentContactsSeconds = median(adHocRuns);
    started = performance.now();
    const saved = await saveSegment(
      deps,
      create(SaveSegmentRequestSchema, {
        requestId: randomUUID(),
        segment: { key: "tx-hot-leads", name: "TX hot leads", condition },
      }),
    );
    const saveSeconds = (performance.now() - started) / 1000;
    const reRuns: number[] = [];
    for (let run = 0; run < 3; run++) {
      started = performance.now();
      await evaluateSegment(
        deps,
        create(EvaluateSegmentRequestSchema, { requestId: randomUUID(), key: "tx-hot-leads" }),
      );
      reRuns.push((performance.now() - started) / 1000);
    }
    const reevaluateSeconds = median(reRuns);
    await relay.flush();

    // 3. Event → membership change. Candidates: Austin leads (g % 7 = 0, g % 5 = 1) without enquiries or pricing views.
    const candidates = (await em.execute(
      `select c.id from ${s}."crm_contact" c where c.city = 'Austin' and c.lifecycle_stage in (2, 3)
       and not exists (select 1 from ${s}."crm_segment_member" m where m.contact_id = c.id) order by c.id limit ?`,
      [opts.events + 20],
    )) as { id: string }[];
    const consumers = await startSegmentConsumers({ db, bus, now });
    const waiting = new Map<string, (t: number) => void>();
    const sub = bus.fanout(`${bus.prefix}.events.crm.segment_membership_changed`, (d) => {
      const e = decodeEvent(Changed, d);
      if (e.change === SegmentMembershipChange.JOINED) waiting.get(e.contactId)?.(performance.now());
    });
    // When each interaction_tracked event was published (seen by a core subscriber).
    const published = new Map<string, number>();
    const tracked = bus.fanout(`${bus.prefix}.events.crm.interaction_tracked`, (d) => {
      published.set(decodeEvent(InteractionTracked, d).contactId, performance.now());
    });
    const latencies: number[] = [];
    const endToEnd: number[] = [];
    const warm = Math.min(20, Math.max(0, candidates.length - opts.events));
    for (const [i, c] of candidates.entries()) {
      const arrived = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no membership change for ${c.id} within 10 s`)), 10_000);
        waiting.set(c.id, (t) => {
          clearTimeout(timer);
          resolve(t);
        });
      });
      const t0 = performance.now();
      await trackInteraction(
        deps,
        create(TrackInteractionRequestSchema, {
          requestId: randomUUID(),
          interaction: {
            eventId: `bench-${c.id}`,
            contactId: c.id,
            type: InteractionType.ENQUIRY,
            occurredAt: timestampFromDate(new Date()),
          },
        }),
      );
      const t1 = await arrived;
      waiting.delete(c.id);
      if (i >= warm) {
        latencies.push(t1 - (published.get(c.id) ?? t0));
        endToEnd.push(t1 - t0);
      }
    }
    sub.unsubscribe();
    tracked.unsubscribe();
    for (const r of consumers) await r.stop();
    latencies.sort((a, b) => a - b);
    endToEnd.sort((a, b) => a - b);
    const round = (x: number) => Math.round(x * 100) / 100;
    return {
      contacts: opts.contacts,
      interactions: opts.contacts * 3,
      seedSeconds: round(seedSeconds),
      members: Number(saved.segment?.memberCount ?? 0n),
      segmentContactsSeconds: round(segmentContactsSeconds),
      saveSeconds: round(saveSeconds),
      reevaluateSeconds: round(reevaluateSeconds),
      events: latencies.length,
      p50Ms: round(quantile(latencies, 0.5)),
      p90Ms: round(quantile(latencies, 0.9)),
      p99Ms: round(quantile(latencies, 0.99)),
      maxMs: round(latencies.at(-1) ?? Number.NaN),
      callToChangeP50Ms: round(quantile(endToEnd, 0.5)),
      callToChangeP99Ms: round(quantile(endToEnd, 0.99)),
      ...(Number(adHoc?.segments[0]?.memberCount ?? 0n) !== Number(saved.segment?.memberCount ?? 0n)
        ? { mismatch: true }
        : {}),
    };
  } finally {
    await relay.stop();
    await db.close();
    await busHandle.dispose();
    await dbHandle.drop();
  }
}

if (import.meta.main) {
  const contacts = Number(process.argv[2] ?? 100_000);
  const events = Number(process.argv[3] ?? 500);
  const r = await benchCrmSegments({ contacts, events });
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  process.exit(0);
}
