import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AdvancePipelineStageRequestSchema,
  CreateDealRequestSchema,
  GetContactRequestSchema,
  GetContactTimelineRequestSchema,
  InteractionType,
  LifecycleStage,
  ListContactsRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, openBackboneFixture } from "../../../test/support/backbone.ts";
import { CrmContact, CrmInteraction } from "../entities.ts";
import { createDeal } from "../pipeline/deals.ts";
import { advancePipelineStage } from "../skills/advance-pipeline-stage.ts";
import { getContact, getContactTimeline, listContacts } from "./read.ts";

const start = Date.parse("2025-01-15T12:00:00Z");
let clock = start;
const now = (): Date => new Date(clock);
const minute = 60_000;

interface Person {
  given: string;
  family: string;
  email: string;
  city: string;
  region: string;
  stage: LifecycleStage;
  source: string;
}

const people: Person[] = [
  {
    given: "Mary",
    family: "Jones",
    email: "mary.jones@example.com",
    city: "Austin",
    region: "TX",
    stage: LifecycleStage.LEAD,
    source: "web-enquiry",
  },
  {
    given: "Marc",
    family: "Olsen",
    email: "marc@olsen.example",
    city: "austin",
    region: "tx",
    stage: LifecycleStage.CUSTOMER,
    source: "sales-import",
  },
  {
    given: "Ana",
    family: "Márquez",
    email: "ana_m@example.com",
    city: "Dallas",
    region: "TX",
    stage: LifecycleStage.LEAD,
    source: "web-enquiry",
  },
  {
    given: "Zoë",
    family: "Mary",
    email: "zoe@example.com",
    city: "Denver",
    region: "CO",
    stage: LifecycleStage.SUBSCRIBER,
    source: "web-enquiry",
  },
  {
    given: "Bob",
    family: "Stone",
    email: "bob%x@example.com",
    city: "Austin",
    region: "TX",
    stage: LifecycleStage.LEAD,
    source: "web-enquiry",
  },
  {
    given: "Mary Ann",
    family: "Lee",
    email: "ma.lee@example.com",
    city: "Boise",
    region: "ID",
    stage: LifecycleStage.OPPORTUNITY,
    source: "referral",
  },
  {
    given: "Tom",
    family: "Ray",
    email: "tom@example.com",
    city: "Austin",
    region: "TX",
    stage: LifecycleStage.LEAD,
    source: "web-enquiry",
  },
];

describe("CRM read API on PostgreSQL", () => {
  let fx: BackboneFixture;
  let db: Database;
  const ids: string[] = [];

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-read");
    db = fx.db;
    const em = db.fork();
    // Two contacts share a creation time, so the id breaks the tie in the keyset.
    people.forEach((p, i) => {
      const id = randomUUID();
      ids.push(id);
      const at = new Date(start + Math.min(i, 5) * minute);
      em.create(CrmContact, {
        id,
        email: p.email,
        givenName: p.given,
        familyName: p.family,
        city: p.city,
        region: p.region,
        lifecycleStage: p.stage,
        source: p.source,
        attributes: [],
        createdAt: at,
        updatedAt: new Date(at.getTime() + 60 * minute),
      });
    });
    await em.flush();
  });
  afterAll(async () => {
    await fx?.dispose();
  });

  const list = (init: MessageInitShape<typeof ListContactsRequestSchema> = {}) =>
    listContacts({ db }, create(ListContactsRequestSchema, init));
  const emailsOf = (r: Awaited<ReturnType<typeof list>>) => r.contacts.map((c) => c.email);
  async function all(init: MessageInitShape<typeof ListContactsRequestSchema>): Promise<string[]> {
    const out: string[] = [];
    let pageToken = "";
    for (let i = 0; i < 20; i++) {
      const r = await list({ ...init, pageToken });
      expect(r.contacts.length).toBeLessThanOrEqual(init.pageSize || 50);
      out.push(...emailsOf(r));
      pageToken = r.nextPageToken;
      if (pageToken === "") return out;
    }
    throw new Error("paging did not end");
  }

  it("pages every contact exactly once in (created_at, id) order", async () => {
    const expected = people
      .map((p, i) => ({ email: p.email, at: Math.min(i, 5), id: ids[i] as string }))
      .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1))
      .map((p) => p.email);
    expect(await all({ pageSize: 3 })).toEqual(expected);
    expect(await all({ pageSize: 1 })).toEqual(expected);
    const first = await list({ pageSize: 7 });
    expect(first.contacts).toHaveLength(7);
    expect(first.nextPageToken).toBe("");
  });

  it("filters by stage, city and region ignoring case, source and time ranges", async () => {
    expect(await all({ lifecycleStages: [LifecycleStage.CUSTOMER, LifecycleStage.OPPORTUNITY] })).toEqual([
      "marc@olsen.example",
      "ma.lee@example.com",
    ]);
    expect(await all({ city: "AUSTIN", region: "Tx", pageSize: 2 })).toEqual([
      "mary.jones@example.com",
      "marc@olsen.example",
      "bob%x@example.com",
      "tom@example.com",
    ]);
    expect(await all({ source: "referral" })).toEqual(["ma.lee@example.com"]);
    const created = {
      start: timestampFromDate(new Date(start + minute)),
      end: timestampFromDate(new Date(start + 3 * minute)),
    };
    expect(await all({ created })).toEqual(["marc@olsen.example", "ana_m@example.com"]);
    const updated = { start: timestampFromDate(new Date(start + 64 * minute)) };
    expect((await all({ updated })).sort()).toEqual(
      ["bob%x@example.com", "ma.lee@example.com", "tom@example.com"].sort(),
    );
  });

  it("searches by prefix of email, given, family or full name, ignoring case, with LIKE wildcards literal", async () => {
    expect(await all({ query: "MARY" })).toEqual(["mary.jones@example.com", "zoe@example.com", "ma.lee@example.com"]);
    expect(await all({ query: "mary a" })).toEqual(["ma.lee@example.com"]);
    expect(await all({ query: "bob%" })).toEqual(["bob%x@example.com"]);
    expect(await all({ query: "%" })).toEqual([]);
    expect(await all({ query: "ana_" })).toEqual(["ana_m@example.com"]);
    expect(await all({ query: "an_" })).toEqual([]);
  });

  it("rejects a foreign page token and an oversized page, naming the field", async () => {
    const bad = await list({ pageToken: "not-a-token" }).catch((e) => e);
    expect(bad).toBeInstanceOf(InvalidInputError);
    expect(bad.field).toBe("page_token");
    const first = await list({ pageSize: 1 });
    const timeline = await getContactTimeline(
      { db },
      create(GetContactTimelineRequestSchema, { contactId: ids[0] as string, pageToken: first.nextPageToken }),
    ).catch((e) => e);
    expect(timeline.field).toBe("page_token");
    const big = await list({ pageSize: 501 }).catch((e) => e);
    expect(big.field).toBe("page_size");
  });

  it("returns a merged contact with its survivor, hides it from the list unless asked, and 404s an unknown id", async () => {
    const a = ids[0] as string;
    const b = ids[1] as string;
    const c = ids[2] as string;
    const em = db.fork();
    // c was merged into b, b into a: the chain ends at a (each update increments the version).
    await em.nativeUpdate(CrmContact, { id: c }, { mergedInto: b });
    await em.nativeUpdate(CrmContact, { id: b }, { mergedInto: a });
    const got = await getContact({ db }, create(GetContactRequestSchema, { contactId: c }));
    expect(got.contact?.email).toBe("ana_m@example.com");
    expect(got).toMatchObject({ mergedIntoContactId: b, survivorContactId: a, version: 2n });
    expect((await getContact({ db }, create(GetContactRequestSchema, { contactId: a }))).survivorContactId).toBe(a);
    expect(await all({ query: "ma" })).toEqual(["mary.jones@example.com", "zoe@example.com", "ma.lee@example.com"]);
    expect(await all({ query: "ma", includeMerged: true })).toContain("marc@olsen.example");
    const missing = await getContact({ db }, create(GetContactRequestSchema, { contactId: randomUUID() })).catch(
      (e) => e,
    );
    expect(missing).toBeInstanceOf(NotFoundError);
    const bad = await getContact({ db }, create(GetContactRequestSchema, { contactId: "x" })).catch((e) => e);
    expect(bad.field).toBe("contact_id");
    await em.nativeUpdate(CrmContact, { id: { $in: [b, c] } }, { mergedInto: null });
  });

  it("merges interactions and deal stage changes into one timeline, newest first, in keyset pages", async () => {
    const contactId = ids[6] as string;
    const em = db.fork();
    const at = (m: number) => new Date(start + m * minute);
    // Interactions at minutes 10, 20, 20 (a tie), 40; deal created at 15, moved at 30.
    for (const [i, m] of [10, 20, 20, 40].entries()) {
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
    const deps = { db, bus: fx.bus, now };
    clock = at(15).getTime();
    const deal = (await createDeal(deps, create(CreateDealRequestSchema, { requestId: randomUUID(), contactId }))).deal;
    clock = at(30).getTime();
    await advancePipelineStage(
      deps,
      create(AdvancePipelineStageRequestSchema, {
        requestId: randomUUID(),
        dealId: deal?.id ?? "",
        target: { case: "targetStage", value: "qualified" },
      }),
    );
    async function walk(pageSize: number): Promise<Array<[number, string]>> {
      const out: Array<[number, string]> = [];
      let pageToken = "";
      for (let i = 0; i < 10; i++) {
        const r = await getContactTimeline(
          { db },
          create(GetContactTimelineRequestSchema, { contactId, pageSize, pageToken }),
        );
        expect(r.entries.length).toBeLessThanOrEqual(pageSize);
        for (const e of r.entries) {
          const minutes = (timestampDate(e.occurredAt ?? timestampFromDate(new Date(0))).getTime() - start) / minute;
          out.push([
            minutes,
            e.item.case === "interaction"
              ? e.item.value.url
              : e.item.case === "stageChange"
                ? `${e.item.value.fromStage}>${e.item.value.toStage}`
                : (e.item.case ?? ""),
          ]);
        }
        pageToken = r.nextPageToken;
        if (pageToken === "") break;
      }
      return out;
    }
    const seen = await walk(2);
    // One entry per page crosses the tie at minute 20 on a page boundary: the id breaks it.
    expect(await walk(1)).toEqual(seen);
    expect(await walk(6)).toEqual(seen);
    expect(seen.map(([m]) => m)).toEqual([40, 30, 20, 20, 15, 10]);
    expect(seen[0]?.[1]).toBe("https://example.com/p/3");
    expect(seen[1]?.[1]).toBe("enquiry>qualified");
    expect(new Set(seen.slice(2, 4).map(([, w]) => w))).toEqual(
      new Set(["https://example.com/p/1", "https://example.com/p/2"]),
    );
    expect(seen[4]?.[1]).toBe(">enquiry");
    const missing = await getContactTimeline(
      { db },
      create(GetContactTimelineRequestSchema, { contactId: randomUUID() }),
    ).catch((e) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
  });
});
