import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type SegmentMembershipChanged as ChangedMessage,
  LeadScoreChangedSchema,
  SegmentMembershipChange,
} from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  BooleanOperator,
  ComparisonOperator,
  type ConditionSchema,
  ContactField,
  EvaluateSegmentRequestSchema,
  GetSegmentRequestSchema,
  InteractionType,
  ListSegmentMembersRequestSchema,
  ListSegmentsRequestSchema,
  SaveSegmentRequestSchema,
  TrackInteractionRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { decodeEvent, enqueueEvent, type Running } from "../../../lib/bus/index.ts";
import { transaction } from "../../../lib/db/index.ts";
import { InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { CrmContact } from "../entities.ts";
import { LeadScoreChanged, SegmentMembershipChanged } from "../events.ts";
import { trackInteraction } from "../skills/track-interaction.ts";
import { startSegmentConsumers } from "./consumer.ts";
import { evaluateSegment, getSegment, listSegmentMembers, listSegments, saveSegment } from "./stored.ts";

type ConditionInit = MessageInitShape<typeof ConditionSchema>;
const day = 86_400_000;
const start = Date.parse("2025-06-01T00:00:00Z");
let clock = start;
const now = () => new Date(clock);

const A = "00000000-0000-4000-8000-00000000000a";
const B = "00000000-0000-4000-8000-00000000000b";
const G = "00000000-0000-4000-8000-000000000010";

const city = (name: string): ConditionInit => ({
  node: {
    case: "field",
    value: {
      field: { ref: { case: "contactField", value: ContactField.CITY } },
      comparison: ComparisonOperator.EQUALS,
      values: [{ kind: { case: "stringValue", value: name } }],
    },
  },
});
const austinEnquirers: ConditionInit = {
  node: {
    case: "group",
    value: {
      booleanOperator: BooleanOperator.AND,
      conditions: [
        city("Austin"),
        {
          node: {
            case: "behaviour",
            value: { interactionType: InteractionType.ENQUIRY, minCount: 1, within: durationFromMs(30 * day) },
          },
        },
      ],
    },
  },
};

describe("stored segments on PostgreSQL and NATS", () => {
  let fx: BackboneFixture;
  let consumers: Running[] = [];
  const events: ChangedMessage[] = [];
  let collector: Running | undefined;
  const deps = () => ({ db: fx.db, bus: fx.bus, now });
  const save = (key: string, condition: ConditionInit) =>
    saveSegment(
      deps(),
      create(SaveSegmentRequestSchema, { requestId: randomUUID(), segment: { key, name: key, condition } }),
    );

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-segments-test");
    const em = fx.db.fork();
    const contact = (id: string, c: string, region = "TX") =>
      em.create(CrmContact, {
        id,
        email: null,
        city: c,
        region,
        attributes: [],
        createdAt: new Date(start - 100 * day),
        updatedAt: new Date(start - 100 * day),
      } as never);
    contact(A, "Austin");
    contact(B, "Dallas");
    contact(G, "Austin");
    await em.flush();
    collector = await fx.bus.consume(
      {
        stream: "events",
        durable: "test_collector",
        filter: `${fx.bus.prefix}.events.crm.segment_membership_changed`,
      },
      async (d) => {
        events.push(decodeEvent(SegmentMembershipChanged, d));
      },
    );
  });
  afterAll(async () => {
    for (const c of consumers) await c.stop();
    await collector?.stop();
    await fx?.dispose();
  });

  it("stores a segment, evaluates it fully and announces joins with the contact's market", async () => {
    await trackInteraction(
      deps(),
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          eventId: "e-a-1",
          contactId: A,
          type: InteractionType.ENQUIRY,
          occurredAt: timestampFromDate(new Date(start - 2 * day)),
        },
      }),
    );
    const res = await save("austin-enquirers", austinEnquirers);
    expect([res.joinedCount, res.leftCount]).toEqual([1n, 0n]);
    expect(res.segment?.memberCount).toBe(1n);
    expect(res.segment?.version).toBe(1n);
    const members = await listSegmentMembers(
      deps(),
      create(ListSegmentMembersRequestSchema, { key: "austin-enquirers" }),
    );
    expect(members.members.map((m) => m.contactId)).toEqual([A]);
    const e = await eventually(() => events.find((x) => x.contactId === A));
    expect(e).toMatchObject({
      segmentKey: "austin-enquirers",
      change: SegmentMembershipChange.JOINED,
      city: "Austin",
      region: "TX",
      market: "austin|tx",
      cause: "full",
      segmentVersion: 1n,
    });
  });

  it("refuses a malformed rule precisely and stores nothing", async () => {
    const bad: ConditionInit = {
      node: {
        case: "group",
        value: {
          booleanOperator: BooleanOperator.OR,
          conditions: [
            city("Austin"),
            {
              node: {
                case: "field",
                value: {
                  field: { ref: { case: "contactField", value: ContactField.CREATED_AT } },
                  comparison: ComparisonOperator.GREATER_THAN,
                  values: [{ kind: { case: "stringValue", value: "yesterday" } }],
                },
              },
            },
          ],
        },
      },
    };
    const err = await save("austin-enquirers", bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe("segment.condition.group.conditions[1].field.values[0]");
    const stored = await getSegment(deps(), create(GetSegmentRequestSchema, { key: "austin-enquirers" }));
    expect(stored.segment?.version).toBe(1n);
    expect(stored.segment?.memberCount).toBe(1n);
    await expect(save("never", bad)).rejects.toBeInstanceOf(InvalidInputError);
    await expect(getSegment(deps(), create(GetSegmentRequestSchema, { key: "never" }))).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  it("re-evaluates one contact on interaction and lead-score events, announcing joins and leaves once", async () => {
    consumers = await startSegmentConsumers({ db: fx.db, bus: fx.bus, now });
    // G enquires: the consumer of interaction_tracked re-evaluates G alone, and G joins.
    await trackInteraction(
      deps(),
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          eventId: "e-g-1",
          contactId: G,
          type: InteractionType.ENQUIRY,
          occurredAt: timestampFromDate(new Date(start - day)),
        },
      }),
    );
    const joined = await eventually(() => events.find((x) => x.contactId === G));
    expect(joined).toMatchObject({
      change: SegmentMembershipChange.JOINED,
      market: "austin|tx",
      cause: `${fx.bus.prefix}.events.crm.interaction_tracked`,
    });
    expect(joined.causeMessageId).not.toBe("");
    // G moves away; a lead-score event about G makes G leave.
    await fx.db.fork().execute(`update "operations"."crm_contact" set city = 'Houston' where id = ?`, [G]);
    await transaction(fx.db, async (em) => {
      enqueueEvent(
        fx.db,
        em,
        fx.bus.prefix,
        LeadScoreChanged,
        create(LeadScoreChangedSchema, { contactId: G, score: 10 }),
      );
    });
    const left = await eventually(() =>
      events.find((x) => x.contactId === G && x.change === SegmentMembershipChange.LEFT),
    );
    expect(left).toMatchObject({ city: "Houston", market: "houston|tx" });
    // An event about a contact that changed nothing announces nothing.
    await trackInteraction(
      deps(),
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          eventId: "e-b-1",
          contactId: B,
          type: InteractionType.ENQUIRY,
          occurredAt: timestampFromDate(new Date(start - day)),
        },
      }),
    );
    await trackInteraction(
      deps(),
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          eventId: "e-a-2",
          contactId: A,
          type: InteractionType.PAGE_VIEW,
          occurredAt: timestampFromDate(new Date(start - day)),
        },
      }),
    );
    // Wait until both were handled: a segment that B joins on the next event proves ordering.
    await save("dallas", city("Dallas"));
    await eventually(() => events.find((x) => x.contactId === B && x.segmentKey === "dallas"));
    const members = await listSegmentMembers(
      deps(),
      create(ListSegmentMembersRequestSchema, { key: "austin-enquirers" }),
    );
    expect(members.members.map((m) => m.contactId)).toEqual([A]);
    expect(events.filter((x) => x.segmentKey === "austin-enquirers").map((x) => [x.contactId, x.change])).toEqual([
      [A, SegmentMembershipChange.JOINED],
      [G, SegmentMembershipChange.JOINED],
      [G, SegmentMembershipChange.LEFT],
    ]);
  });

  it("leaves members out when the window moves on, on a full re-evaluation", async () => {
    clock = start + 40 * day;
    const res = await evaluateSegment(
      deps(),
      create(EvaluateSegmentRequestSchema, { requestId: randomUUID(), key: "austin-enquirers" }),
    );
    expect([res.joinedCount, res.leftCount, res.segment?.memberCount]).toEqual([0n, 1n, 0n]);
    clock = start;
  });

  it("filters on stored lead scores and pages members and segments", async () => {
    const em = fx.db.fork();
    for (const [id, score] of [
      [A, 72],
      [B, 40],
      [G, 55.5],
    ] as const) {
      await em.execute(
        `insert into "operations"."crm_lead_score" (contact_id, score, fit_score, behaviour_score, grade, market, model_version, contributions, scored_at, updated_at)
         values (?, ?, 0, ?, 2, '', 1, '[]', ?, ?)`,
        [id, score, score, now(), now()],
      );
    }
    const res = await save("hot", {
      node: { case: "score", value: { comparison: ComparisonOperator.GREATER_THAN_OR_EQUAL, values: [55.5] } },
    });
    expect(res.joinedCount).toBe(2n);
    const page1 = await listSegmentMembers(
      deps(),
      create(ListSegmentMembersRequestSchema, { key: "hot", pageSize: 1 }),
    );
    expect(page1.members.map((m) => m.contactId)).toEqual([A]);
    const page2 = await listSegmentMembers(
      deps(),
      create(ListSegmentMembersRequestSchema, { key: "hot", pageSize: 1, pageToken: page1.nextPageToken }),
    );
    expect(page2.members.map((m) => m.contactId)).toEqual([G]);
    expect(page2.nextPageToken).toBe("");
    await expect(
      listSegmentMembers(
        deps(),
        create(ListSegmentMembersRequestSchema, { key: "dallas", pageSize: 1, pageToken: page1.nextPageToken }),
      ),
    ).rejects.toMatchObject({ field: "page_token" });
    const all = await listSegments(deps(), create(ListSegmentsRequestSchema, { pageSize: 2 }));
    expect(all.segments.map((s) => s.definition?.key)).toEqual(["austin-enquirers", "dallas"]);
    const rest = await listSegments(
      deps(),
      create(ListSegmentsRequestSchema, { pageSize: 2, pageToken: all.nextPageToken }),
    );
    expect(rest.segments.map((s) => [s.definition?.key, s.memberCount])).toEqual([["hot", 2n]]);
  });
});
