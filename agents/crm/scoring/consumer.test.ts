import { randomUUID } from "node:crypto";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  InteractionTrackedSchema,
  type LeadScoreChanged as LeadScoreChangedMessage,
  LeadScoreChangedSchema,
} from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  ComparisonOperator,
  ContactField,
  GetLeadScoreRequestSchema,
  InteractionType,
  LeadGrade,
  ListLeadScoresRequestSchema,
  SaveScoringModelRequestSchema,
  type ScoringModelSchema,
  TouchpointChannel,
  TrackInteractionRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { ConversionRecordedSchema } from "../../../gen/mesh/data/v1/data_events_pb.ts";
import { applyOnce, type Delivery, decodeEvent, type Running } from "../../../lib/bus/bus.ts";
import type { EntityManager } from "../../../lib/db/index.ts";
import { InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { InteractionTracked, LeadScoreChanged } from "../events.ts";
import { trackInteraction } from "../skills/track-interaction.ts";
import {
  ConversionRecorded,
  interactionsDurable,
  onInteractionsTracked,
  onInteractionTracked,
  startLeadScoring,
} from "./consumer.ts";
import { getLeadScore, listLeadScores } from "./read.ts";
import { rescoreContact } from "./rescore.ts";
import { saveScoringModel } from "./stored-model.ts";

const t0 = new Date("2025-03-01T12:00:00Z");
const day = 86_400_000;
const log = createLogger("warn");

const model: MessageInitShape<typeof ScoringModelSchema> = {
  fitRules: [
    {
      id: "austin",
      condition: {
        node: {
          case: "field",
          value: {
            field: { ref: { case: "contactField", value: ContactField.CITY } },
            comparison: ComparisonOperator.EQUALS,
            values: [{ kind: { case: "stringValue", value: "Austin" } }],
          },
        },
      },
      points: 10,
    },
  ],
  behaviourRules: [
    { id: "enquiry", interactionType: InteractionType.ENQUIRY, points: 40, halfLife: durationFromMs(30 * day) },
  ],
  mqlThreshold: 40,
  sqlThreshold: 70,
};

describe("lead scores recomputed from events", () => {
  let fx: BackboneFixture;
  let clock = t0;
  const now = () => clock;
  let running: Running[] = [];
  const changes: LeadScoreChangedMessage[] = [];
  const contacts = { mary: "", bob: "" };

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-scoring-events");
    running = await startLeadScoring({ db: fx.db, bus: fx.bus, log, now });
    running.push(
      await fx.bus.consume(
        { stream: "events", durable: "test_score_changes", filter: fx.bus.eventSubject(LeadScoreChanged) },
        async (d) => {
          changes.push(decodeEvent(LeadScoreChanged, d));
        },
      ),
    );
  });

  afterAll(async () => {
    for (const r of running) await r.stop();
    await fx?.dispose();
  });

  const track = async (email: string, city: string, region: string, at: Date) =>
    (
      await trackInteraction(
        { db: fx.db, bus: fx.bus, now },
        create(TrackInteractionRequestSchema, {
          requestId: randomUUID(),
          interaction: {
            eventId: randomUUID(),
            email,
            type: InteractionType.ENQUIRY,
            channel: TouchpointChannel.WEB,
            city,
            region,
            occurredAt: timestampFromDate(at),
          },
        }),
      )
    ).contactId;
  const stored = (contactId: string) =>
    getLeadScore({ db: fx.db }, create(GetLeadScoreRequestSchema, { contactId })).then(
      (r) => r.leadScore,
      (err: unknown) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      },
    );
  const changeOf = (pred: (c: LeadScoreChangedMessage) => boolean) => eventually(() => changes.find(pred));

  it("stores the model with a version that increases on replacement", async () => {
    const save = () =>
      saveScoringModel(
        { db: fx.db, now },
        create(SaveScoringModelRequestSchema, {
          requestId: randomUUID(),
          model,
          marketWeighting: { enabled: true, priorStrength: 20 },
        }),
      );
    expect((await save()).version).toBe(1n);
    expect((await save()).version).toBe(2n);
    await expect(
      saveScoringModel(
        { db: fx.db, now },
        create(SaveScoringModelRequestSchema, {
          requestId: randomUUID(),
          model: { ...model, mqlThreshold: 90 },
        }),
      ),
    ).rejects.toBeInstanceOf(InvalidInputError);
  });

  it("scores a contact when its interaction is tracked and announces the change", async () => {
    contacts.mary = await track("mary@example.com", "Austin", "TX", t0);
    contacts.bob = await track("bob@example.com", "Dallas", "TX", t0);
    // Mary: Austin fit 10 + enquiry now 40 = 50 (MQL); Bob: 40 (MQL). No conversion yet: national
    // rate 0, every market multiplier 1.
    const mary = await eventually(() => stored(contacts.mary));
    expect([mary.score?.totalScore, mary.score?.grade, mary.score?.market, mary.modelVersion]).toEqual([
      50,
      LeadGrade.MARKETING_QUALIFIED,
      "austin|tx",
      2n,
    ]);
    const event = await changeOf((c) => c.contactId === contacts.mary);
    expect([event.previousScore, event.previousGrade, event.score, event.grade, event.fitScore]).toEqual([
      0,
      LeadGrade.UNSPECIFIED,
      50,
      LeadGrade.MARKETING_QUALIFIED,
      10,
    ]);
    expect(event.causeSubject).toBe(fx.bus.eventSubject(InteractionTracked));
    expect((await eventually(() => stored(contacts.bob))).score?.totalScore).toBe(40);
  });

  it("records a conversion, re-learns the market weights and re-scores with them", async () => {
    const conversionId = randomUUID();
    await fx.bus.publishEvent(
      ConversionRecorded,
      create(ConversionRecordedSchema, {
        conversionId,
        conversionName: "move-in",
        contactId: contacts.mary,
        occurredAt: timestampFromDate(t0),
      }),
      // The Data agent publishes with the conversion id as the message id.
      { msgId: conversionId },
    );
    // Enquiry engaged 2 contacts nationally, 1 converted: p = 0.5. Austin: 1 of 1, so
    // (1 + 20·0.5) / (1 + 20) = 11/21, multiplier (11/21) / 0.5 = 22/21: 10 + 40 × 22/21.
    const event = await changeOf((c) => c.contactId === contacts.mary && c.causeMessageId === conversionId);
    expect(event.previousScore).toBe(50);
    expect(event.score).toBeCloseTo(10 + (40 * 22) / 21, 10);
    const mary = await stored(contacts.mary);
    const enquiry = mary?.score?.contributions.find((c) => c.ruleId === "enquiry");
    expect(enquiry?.marketMultiplier).toBeCloseTo(22 / 21, 12);
    const rows = (await fx.db
      .fork()
      .execute(`select contact_id from "${fx.db.schema}"."crm_scoring_conversion" where conversion_id = ?`, [
        conversionId,
      ])) as { contact_id: string }[];
    expect(rows).toEqual([{ contact_id: contacts.mary }]);
  });

  it("applies a redelivered event once", async () => {
    const delivery: Delivery = {
      subject: fx.bus.eventSubject(InteractionTracked),
      data: toBinary(InteractionTrackedSchema, create(InteractionTrackedSchema, { contactId: contacts.mary })),
      headers: {},
      msgId: "redelivered-1",
      deliveryCount: 1,
      streamSeq: 0,
    };
    const deps = { db: fx.db, bus: fx.bus, log, now };
    const apply = () =>
      applyOnce(fx.db, interactionsDurable, delivery, async (d, em) => {
        if (em !== undefined) await onInteractionTracked(deps, d, em);
      });
    // 30 days on, the enquiry is worth half: 10 + 20 × 22/21 = 30.95…: unqualified.
    clock = new Date(t0.getTime() + 30 * day);
    await apply();
    const once = (await stored(contacts.mary))?.score?.totalScore;
    expect(once).toBeCloseTo(10 + (20 * 22) / 21, 10);
    // The same message again, later: nothing changes.
    clock = new Date(t0.getTime() + 60 * day);
    await apply();
    await apply();
    expect((await stored(contacts.mary))?.score?.totalScore).toBe(once);
    const event = await changeOf((c) => c.causeMessageId === "redelivered-1");
    expect([event.previousGrade, event.grade]).toEqual([LeadGrade.MARKETING_QUALIFIED, LeadGrade.UNQUALIFIED]);
    clock = t0;
  });

  it("re-scores a batch exactly as the events one by one", async () => {
    const deps = { db: fx.db, bus: fx.bus, log, now };
    const subject = fx.bus.eventSubject(InteractionTracked);
    const delivery = (msgId: string, contactId: string, mergedContactIds: string[] = []): Delivery => ({
      subject,
      data: toBinary(InteractionTrackedSchema, create(InteractionTrackedSchema, { contactId, mergedContactIds })),
      headers: {},
      msgId,
      deliveryCount: 1,
      streamSeq: 0,
    });
    // Mary twice (only her first event announces a change), Bob, an unknown contact, then Bob merged
    // into Mary (Bob's score dropped), and Bob again (scored afresh: announced with no previous score).
    const batch = [
      delivery("batch-1", contacts.mary),
      delivery("batch-2", contacts.bob),
      delivery("batch-3", contacts.mary),
      delivery("batch-4", randomUUID()),
      delivery("batch-5", contacts.mary, [contacts.bob]),
      delivery("batch-6", contacts.bob),
    ];
    clock = new Date(t0.getTime() + 10 * day);
    const rolledBack = new Error("rolled back");
    /** Runs `apply` in a transaction that is rolled back; returns the scores and the outbox events it wrote. */
    const outcome = async (apply: (em: EntityManager) => Promise<void>) => {
      let seen: unknown;
      await fx.db
        .transaction(async (em) => {
          await apply(em);
          await em.flush();
          const scores = await em.execute(
            `select contact_id, score, fit_score, behaviour_score, grade, market, model_version, contributions` +
              ` from "${fx.db.schema}"."crm_lead_score" where contact_id = any(?::uuid[]) order by contact_id`,
            [`{${contacts.mary},${contacts.bob}}`],
          );
          const events = (
            (await em.execute(
              `select msg_id, payload from "${fx.db.schema}"."outbox" where msg_id like '%:batch-%' order by id`,
            )) as { msg_id: string; payload: Buffer }[]
          ).map((r) => ({ msgId: r.msg_id, event: fromBinary(LeadScoreChangedSchema, new Uint8Array(r.payload)) }));
          seen = { scores, events };
          throw rolledBack;
        })
        .catch((err: unknown) => {
          if (err !== rolledBack) throw err;
        });
      return seen as { scores: unknown[]; events: { msgId: string; event: LeadScoreChangedMessage }[] };
    };
    const oneByOne = await outcome(async (em) => {
      for (const d of batch) {
        const e = decodeEvent(InteractionTracked, d);
        for (const id of e.mergedContactIds) {
          await em.execute(`delete from "${fx.db.schema}"."crm_lead_score" where contact_id = ?`, [id]);
        }
        await rescoreContact({ db: fx.db, prefix: fx.bus.prefix }, em, e.contactId, now(), {
          subject,
          msgId: d.msgId ?? "",
        });
      }
    });
    const batched = await outcome((em) => onInteractionsTracked(deps, batch, em));
    clock = t0;
    expect(batched).toEqual(oneByOne);
    expect(batched.events.map((e) => [e.msgId, e.event.previousScore])).toEqual([
      [`crm.lead_score_changed:${contacts.mary}:batch-1`, expect.any(Number)],
      [`crm.lead_score_changed:${contacts.bob}:batch-2`, 40],
      [`crm.lead_score_changed:${contacts.bob}:batch-6`, 0],
    ]);
    // 10 days on, Bob's enquiry is worth 40 · 2^(−10/30).
    expect(batched.events[1]?.event.score).toBeCloseTo(40 * 2 ** (-10 / 30), 10);
  });

  it("lists stored scores highest first, filtered and paged", async () => {
    const list = (init: MessageInitShape<typeof ListLeadScoresRequestSchema>) =>
      listLeadScores({ db: fx.db }, create(ListLeadScoresRequestSchema, init));
    const all = await list({});
    expect(all.leadScores.map((s) => [s.score?.contactId, s.score?.totalScore])).toEqual([
      [contacts.bob, 40],
      [contacts.mary, (await stored(contacts.mary))?.score?.totalScore],
    ]);
    const first = await list({ pageSize: 1 });
    expect(first.leadScores.map((s) => s.score?.contactId)).toEqual([contacts.bob]);
    const second = await list({ pageSize: 1, pageToken: first.nextPageToken });
    expect(second.leadScores.map((s) => s.score?.contactId)).toEqual([contacts.mary]);
    expect(second.nextPageToken).toBe("");
    expect((await list({ market: "Austin|TX" })).leadScores.map((s) => s.score?.contactId)).toEqual([contacts.mary]);
    expect((await list({ grades: [LeadGrade.MARKETING_QUALIFIED] })).leadScores).toHaveLength(1);
    expect((await list({ minScore: 35 })).leadScores.map((s) => s.score?.contactId)).toEqual([contacts.bob]);
    await expect(list({ pageToken: "bm9wZQ" })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(stored(randomUUID())).resolves.toBeUndefined();
  });
});
