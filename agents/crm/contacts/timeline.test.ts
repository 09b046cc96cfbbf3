import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AppointmentChangeKind,
  CancelAppointmentRequestSchema,
  ComparisonOperator,
  ConsentChannel,
  ConsentState,
  ContactField,
  CreateDealRequestSchema,
  EvaluateSegmentRequestSchema,
  GetContactTimelineRequestSchema,
  InteractionType,
  LeadGrade,
  RecordConsentRequestSchema,
  SaveSegmentRequestSchema,
  ScheduleAppointmentRequestSchema,
  SegmentMembershipAction,
  type TimelineEntry,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import type { MeshClient } from "../../../lib/transport/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, openBackboneFixture } from "../../../test/support/backbone.ts";
import { cancelAppointment } from "../appointments/api.ts";
import { recordConsent } from "../consent/consent.ts";
import { CrmContact, CrmInteraction } from "../entities.ts";
import { createDeal } from "../pipeline/deals.ts";
import { evaluateSegment, saveSegment } from "../segments/stored.ts";
import { scheduleAppointment } from "../skills/schedule-appointment.ts";
import { getContactTimeline } from "./read.ts";

const start = Date.parse("2025-01-15T12:00:00Z");
let clock = start;
const now = (): Date => new Date(clock);
const minute = 60_000;
const at = (m: number) => new Date(start + m * minute);
const log = createLogger("error");

/** Invitations are suppressed in this test: the Email agent is never called. */
const noEmail = {
  agent: () => {
    throw new Error("the Email agent is not called when invitations are suppressed");
  },
} as unknown as MeshClient;

const kindName: Record<number, string> = {
  [AppointmentChangeKind.BOOKED]: "BOOKED",
  [AppointmentChangeKind.RESCHEDULED]: "RESCHEDULED",
  [AppointmentChangeKind.CANCELLED]: "CANCELLED",
};

/** One timeline entry as (minutes after start, what). */
function describeEntry(e: TimelineEntry): [number, string] {
  const minutes = (timestampDate(e.occurredAt ?? timestampFromDate(new Date(0))).getTime() - start) / minute;
  const i = e.item;
  switch (i.case) {
    case "interaction":
      return [minutes, `interaction ${i.value.url}`];
    case "stageChange":
      return [minutes, `stage ${i.value.fromStage}>${i.value.toStage}`];
    case "leadScore":
      return [minutes, `score ${i.value.score?.totalScore} grade ${i.value.score?.grade}`];
    case "segmentMembership":
      return [
        minutes,
        `segment ${i.value.segmentKey} ${i.value.action === SegmentMembershipAction.JOINED ? "joined" : "left"}`,
      ];
    case "appointment":
      return [minutes, `appointment ${kindName[i.value.kind]} ${i.value.sequence} ${i.value.summary}`];
    case "consent":
      return [minutes, `consent ${i.value.state === ConsentState.GRANTED ? "GRANTED" : "WITHDRAWN"} ${i.value.source}`];
    default:
      return [minutes, "?"];
  }
}

describe("a contact's timeline across sources, on PostgreSQL", () => {
  let fx: BackboneFixture;
  let db: Database;
  const contactId = randomUUID();
  const email = "tess.timeline@example.com";

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-timeline");
    db = fx.db;
    const deps = { db, bus: fx.bus, now, log, client: noEmail };
    const em = db.fork();
    em.create(CrmContact, {
      id: contactId,
      email,
      givenName: "Tess",
      familyName: "Timeline",
      city: "Austin",
      region: "TX",
      attributes: [],
      createdAt: at(0),
      updatedAt: at(0),
    });
    // Interactions at minutes 10 and 40 (twice: ties with the appointment booking at 40).
    for (const [i, m] of [10, 40, 40].entries()) {
      em.create(CrmInteraction, {
        id: randomUUID(),
        eventId: `tl-${i}`,
        contact: contactId,
        type: InteractionType.PAGE_VIEW,
        url: `https://example.com/p/${i}`,
        occurredAt: at(m),
        properties: [],
        recordedAt: at(m),
      });
    }
    await em.flush();
    // The stored lead score, as the scoring consumer leaves it (scored at minute 20).
    await em.execute(
      `insert into "operations"."crm_lead_score" (contact_id, score, fit_score, behaviour_score, grade, market, model_version, contributions, scored_at, updated_at)
       values (?, 61.5, 20, 41.5, ?, 'austin|tx', 1, '[]', ?, ?)`,
      [contactId, LeadGrade.MARKETING_QUALIFIED, at(20), at(20)],
    );
    clock = at(25).getTime();
    await createDeal(deps, create(CreateDealRequestSchema, { requestId: randomUUID(), contactId }));
    // Joins "austin" at 30 (full evaluation on save); leaves at 35 after moving to Dallas.
    clock = at(30).getTime();
    await saveSegment(
      deps,
      create(SaveSegmentRequestSchema, {
        requestId: randomUUID(),
        segment: {
          key: "austin",
          name: "austin",
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
        },
      }),
    );
    await db.fork().nativeUpdate(CrmContact, { id: contactId }, { city: "Dallas" });
    clock = at(35).getTime();
    await evaluateSegment(deps, create(EvaluateSegmentRequestSchema, { requestId: randomUUID(), key: "austin" }));
    // Booked at 40 (by address only, no contact id), cancelled at 45.
    clock = at(40).getTime();
    const booked = await scheduleAppointment(
      deps,
      create(ScheduleAppointmentRequestSchema, {
        requestId: randomUUID(),
        organizer: { name: "Sam Rivera", email: "sam.rivera@agency.example" },
        attendees: [{ name: "Tess Timeline", email }],
        timeZone: "America/Chicago",
        duration: { seconds: 3600n },
        action: {
          case: "book",
          value: {
            start: timestampFromDate(new Date("2025-01-20T15:00:00Z")),
            summary: "Community tour",
            suppressInvitations: true,
          },
        },
      }),
    );
    clock = at(45).getTime();
    await cancelAppointment(
      deps,
      create(CancelAppointmentRequestSchema, {
        requestId: randomUUID(),
        uid: booked.appointment?.uid ?? "",
        suppressInvitations: true,
      }),
    );
    // Consent given at 50, recorded at 55: the timeline places it when it was given.
    clock = at(55).getTime();
    await recordConsent(
      deps,
      create(RecordConsentRequestSchema, {
        requestId: randomUUID(),
        contactId,
        channel: ConsentChannel.EMAIL,
        state: ConsentState.GRANTED,
        source: "web-form",
        occurredAt: timestampFromDate(at(50)),
      }),
    );
    // Another contact's appointment at the same time must not appear.
    clock = at(46).getTime();
    await scheduleAppointment(
      deps,
      create(ScheduleAppointmentRequestSchema, {
        requestId: randomUUID(),
        organizer: { name: "Sam Rivera", email: "sam.rivera@agency.example" },
        attendees: [{ name: "Someone Else", email: "someone.else@example.com", contactId: randomUUID() }],
        timeZone: "America/Chicago",
        duration: { seconds: 3600n },
        action: {
          case: "book",
          value: {
            start: timestampFromDate(new Date("2025-01-20T17:00:00Z")),
            summary: "Other tour",
            suppressInvitations: true,
          },
        },
      }),
    );
  });
  afterAll(async () => {
    await fx?.dispose();
  });

  async function walk(pageSize: number): Promise<Array<[number, string]>> {
    const out: Array<[number, string]> = [];
    let pageToken = "";
    for (let i = 0; i < 30; i++) {
      const r = await getContactTimeline(
        { db },
        create(GetContactTimelineRequestSchema, { contactId, pageSize, pageToken }),
      );
      expect(r.entries.length).toBeLessThanOrEqual(pageSize);
      out.push(...r.entries.map(describeEntry));
      pageToken = r.nextPageToken;
      if (pageToken === "") return out;
    }
    throw new Error("the timeline did not end");
  }

  it("shows interactions, the score, stage changes, segment joins and leaves, appointments and consent, newest first", async () => {
    const all = await walk(50);
    expect(all.map(([m]) => m)).toEqual([50, 45, 40, 40, 40, 35, 30, 25, 20, 10]);
    expect(all[0]).toEqual([50, "consent GRANTED web-form"]);
    expect(all[1]).toEqual([45, "appointment CANCELLED 1 Community tour"]);
    // Three entries at minute 40 (two interactions, the booking), in id order: compare as a set.
    expect(new Set(all.slice(2, 5).map(([, w]) => w))).toEqual(
      new Set([
        "interaction https://example.com/p/1",
        "interaction https://example.com/p/2",
        "appointment BOOKED 0 Community tour",
      ]),
    );
    expect(all.slice(5)).toEqual([
      [35, "segment austin left"],
      [30, "segment austin joined"],
      [25, "stage >enquiry"],
      [20, `score 61.5 grade ${LeadGrade.MARKETING_QUALIFIED}`],
      [10, "interaction https://example.com/p/0"],
    ]);
  });

  it("pages across sources without duplicates or gaps, whatever the page size", async () => {
    const all = await walk(50);
    for (const size of [1, 2, 3, 4, 7]) {
      const paged = await walk(size);
      expect(paged, `page size ${size}`).toEqual(all);
      expect(new Set(paged.map(([m, w]) => `${m} ${w}`)).size).toBe(paged.length);
    }
  });
});
