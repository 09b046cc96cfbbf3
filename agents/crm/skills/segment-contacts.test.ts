import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BooleanOperator,
  ComparisonOperator,
  type ConditionSchema,
  ContactField,
  InteractionType,
  LifecycleStage,
  RfmSegment,
  SegmentContactsRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { CrmContact, CrmInteraction } from "../entities.ts";
import { gridSegment, measuresOf, quantileScores, rfmSegment, scoreRfm } from "../segments/rfm.ts";
import { segmentContacts } from "./segment-contacts.ts";

type ConditionInit = MessageInitShape<typeof ConditionSchema>;
type RequestInit = MessageInitShape<typeof SegmentContactsRequestSchema>;

const asOf = new Date("2025-06-01T00:00:00Z");
const day = 86_400_000;
const ago = (days: number) => new Date(asOf.getTime() - days * day);

// Fixed ids, so member order (by contact id) is known.
const A = "00000000-0000-4000-8000-00000000000a";
const B = "00000000-0000-4000-8000-00000000000b";
const C = "00000000-0000-4000-8000-00000000000c";
const D = "00000000-0000-4000-8000-00000000000d";
const E = "00000000-0000-4000-8000-00000000000e";
const F = "00000000-0000-4000-8000-00000000000f";
const G = "00000000-0000-4000-8000-000000000010";

const text = (v: string) => ({ kind: { case: "stringValue" as const, value: v } });
const int = (v: number) => ({ kind: { case: "intValue" as const, value: BigInt(v) } });
const num = (v: number) => ({ kind: { case: "numberValue" as const, value: v } });
const field = (f: ContactField, comparison: ComparisonOperator, values: ReturnType<typeof text>[]): ConditionInit => ({
  node: { case: "field", value: { field: { ref: { case: "contactField", value: f } }, comparison, values } },
});
const attr = (
  key: string,
  comparison: ComparisonOperator,
  values: (ReturnType<typeof text> | ReturnType<typeof int> | ReturnType<typeof num>)[],
): ConditionInit => ({
  node: { case: "field", value: { field: { ref: { case: "attributeKey", value: key } }, comparison, values } },
});
const behaviour = (type: InteractionType, minCount: number, withinDays: number, urlContains = ""): ConditionInit => ({
  node: {
    case: "behaviour",
    value: { interactionType: type, minCount, urlContains, within: durationFromMs(withinDays * day) },
  },
});
const group = (op: BooleanOperator, ...conditions: ConditionInit[]): ConditionInit => ({
  node: { case: "group", value: { booleanOperator: op, conditions } },
});

describe("crm.segmentation (SegmentContacts) on PostgreSQL", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  const deps = () => ({ db, now: () => asOf });
  const segment = (init: RequestInit) =>
    segmentContacts(deps(), create(SegmentContactsRequestSchema, { asOf: timestampFromDate(asOf), ...init }));

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log: createLogger("warn") });
    const em = db.fork();
    const contact = (id: string, more: Record<string, unknown>) =>
      em.create(CrmContact, {
        id,
        email: null,
        attributes: [],
        createdAt: ago(100),
        updatedAt: ago(100),
        ...more,
      } as never);
    contact(A, {
      city: "Austin",
      region: "TX",
      lifecycleStage: LifecycleStage.LEAD,
      attributes: [
        { key: "care_type", value: { stringValue: "Memory Care" } },
        { key: "budget", value: { intValue: "5000" } },
      ],
    });
    contact(B, {
      city: "AUSTIN",
      lifecycleStage: LifecycleStage.MARKETING_QUALIFIED_LEAD,
      attributes: [{ key: "budget", value: { numberValue: 3000 } }],
    });
    contact(C, {
      city: "Dallas",
      lifecycleStage: LifecycleStage.CUSTOMER,
      attributes: [{ key: "budget", value: { numberValue: 8000.5 } }],
    });
    contact(D, { city: "Round Rock", email: "dee@gmail.com" });
    contact(E, { city: "Austin", lifecycleStage: LifecycleStage.LEAD });
    contact(F, { city: "Zürich", createdAt: ago(3), updatedAt: ago(3) });
    contact(G, { city: "Austin", lifecycleStage: LifecycleStage.SUBSCRIBER });
    await em.flush();
    // E was found to be A (identity stitching): merged contacts are not in the population.
    await em.execute(`update "operations"."crm_contact" set merged_into_id = ? where id = ?`, [A, E]);
    const interaction = (contact: string, type: InteractionType, at: Date, url = "") =>
      em.create(CrmInteraction, {
        id: randomUUID(),
        eventId: randomUUID(),
        contact,
        type,
        url,
        occurredAt: at,
        properties: [],
        recordedAt: at,
      } as never);
    interaction(A, InteractionType.ENQUIRY, ago(2));
    interaction(A, InteractionType.ENQUIRY, ago(10));
    interaction(B, InteractionType.ENQUIRY, ago(60));
    interaction(C, InteractionType.PAGE_VIEW, ago(1), "https://example.com/pricing");
    interaction(C, InteractionType.PAGE_VIEW, ago(2), "https://example.com/Pricing?x=1");
    interaction(C, InteractionType.PAGE_VIEW, ago(6), "https://example.com/pricing");
    interaction(D, InteractionType.PAGE_VIEW, ago(1), "https://example.com/pricing");
    // After as_of: never counted.
    interaction(G, InteractionType.ENQUIRY, new Date(asOf.getTime() + day));
    await em.flush();
  });
  afterAll(async () => {
    await db?.close();
    await dbHandle?.drop();
  });

  const segments = [
    {
      key: "austin-enquirers",
      name: "Austin enquirers",
      condition: group(
        BooleanOperator.AND,
        field(ContactField.CITY, ComparisonOperator.EQUALS, [text("austin")]),
        behaviour(InteractionType.ENQUIRY, 1, 30),
      ),
    },
    {
      key: "mid-budget",
      name: "Mid budget",
      condition: attr("budget", ComparisonOperator.BETWEEN, [int(3000), int(6000)]),
    },
    {
      key: "outside-austin",
      name: "Outside Austin",
      condition: group(
        BooleanOperator.NOT,
        field(ContactField.CITY, ComparisonOperator.IN, [text("Austin"), text("Round Rock")]),
      ),
    },
    { key: "pricing", name: "Pricing", condition: behaviour(InteractionType.PAGE_VIEW, 3, 7, "/PRICING") },
    { key: "zurich", name: "Zurich", condition: field(ContactField.CITY, ComparisonOperator.EQUALS, [text("zurich")]) },
    {
      key: "leads",
      name: "Leads",
      condition: field(ContactField.LIFECYCLE_STAGE, ComparisonOperator.IN, [
        text("LIFECYCLE_STAGE_LEAD"),
        text("marketing_qualified_lead"),
      ]),
    },
    { key: "memory", name: "Memory", condition: attr("care_type", ComparisonOperator.CONTAINS, [text("memory")]) },
    {
      key: "gmail",
      name: "Gmail",
      condition: field(ContactField.EMAIL_DOMAIN, ComparisonOperator.EQUALS, [text("gmail.com")]),
    },
    {
      key: "new",
      name: "New",
      condition: field(ContactField.CREATED_AT, ComparisonOperator.WITHIN_LAST, [
        { kind: { case: "durationValue", value: durationFromMs(7 * day) } },
      ] as never),
    },
  ];

  it("evaluates hand-built rule trees: fields, accents and case, attributes, stage names, behaviour windows", async () => {
    const res = await segment({ method: { case: "rules", value: { segments } } });
    // Population: A, B, C, D, F, G (E is merged away).
    expect(res.populationCount).toBe(6n);
    expect(res.segments.map((s) => [s.key, Number(s.memberCount)])).toEqual([
      ["austin-enquirers", 1], // A (B's enquiry is 60 days old)
      ["mid-budget", 2], // A (5000 int), B (3000 number)
      ["outside-austin", 2], // C, F
      ["pricing", 1], // C: 3 views of /pricing within 7 days, any case
      ["zurich", 1], // F, accent-insensitive
      ["leads", 2], // A, B
      ["memory", 1], // A
      ["gmail", 1], // D
      ["new", 1], // F
    ]);
    expect(res.unassignedCount).toBe(1n); // G
    expect(res.segments[1]?.share).toBeCloseTo(2 / 6, 12);
    expect(res.members.map((m) => [m.contactId, m.segmentKeys])).toEqual([
      [A, ["austin-enquirers", "mid-budget", "leads", "memory"]],
      [B, ["mid-budget", "leads"]],
      [C, ["outside-austin", "pricing"]],
      [D, ["gmail"]],
      [F, ["outside-austin", "zurich", "new"]],
    ]);
    expect(res.nextPageToken).toBe("");
  });

  it("puts each contact in its first matching segment only when asked", async () => {
    const res = await segment({ method: { case: "rules", value: { segments, firstMatchOnly: true } } });
    expect(res.segments.map((s) => Number(s.memberCount))).toEqual([1, 1, 2, 0, 0, 0, 0, 1, 0]);
    expect(res.members.map((m) => m.segmentKeys)).toEqual([
      ["austin-enquirers"],
      ["mid-budget"],
      ["outside-austin"],
      ["gmail"],
      ["outside-austin"],
    ]);
  });

  it("pages members by contact id with tokens bound to the rules", async () => {
    const method = { case: "rules" as const, value: { segments } };
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const res = await segment({ method, pageSize: 2, pageToken: token });
      seen.push(...res.members.map((m) => m.contactId));
      token = res.nextPageToken;
      pages++;
    } while (token !== "" && pages < 10);
    expect(seen).toEqual([A, B, C, D, F]);
    expect(pages).toBe(3);
    const first = await segment({ method, pageSize: 2 });
    const other = { case: "rules" as const, value: { segments: segments.slice(0, 2) } };
    await expect(segment({ method: other, pageSize: 2, pageToken: first.nextPageToken })).rejects.toMatchObject({
      field: "page_token",
    });
    const counts = await segment({ method, countsOnly: true });
    expect(counts.members).toEqual([]);
    expect(Number(counts.segments[0]?.memberCount)).toBe(1);
  });

  it("restricts the population to listed or inline contacts", async () => {
    const listed = await segment({ method: { case: "rules", value: { segments } }, contactIds: [A, C, E] });
    // E is merged away, so the population is A and C.
    expect(listed.populationCount).toBe(2n);
    expect(listed.members.map((m) => m.contactId)).toEqual([A, C]);
    const inline = await segment({
      method: { case: "rules", value: { segments: segments.slice(0, 1) } },
      // An inline contact with A's id counts A's stored interactions; the other has none.
      contacts: [
        { id: A, city: "Austin" },
        { id: "00000000-0000-4000-8000-0000000000ff", city: "Austin" },
      ],
    });
    expect(inline.populationCount).toBe(2n);
    expect(inline.members.map((m) => m.contactId)).toEqual([A]);
  });

  it("treats operands as data, never SQL", async () => {
    const res = await segment({
      method: {
        case: "rules",
        value: {
          segments: [
            {
              key: "x",
              name: "x",
              condition: field(ContactField.CITY, ComparisonOperator.EQUALS, [text("x' or '1'='1")]),
            },
            { key: "y", name: "y", condition: attr("care_type", ComparisonOperator.EQUALS, [text("a?b ' \\ \" --")]) },
          ],
        },
      },
    });
    expect(res.segments.map((s) => Number(s.memberCount))).toEqual([0, 0]);
  });

  it("answers a malformed rule with the precise field at fault", async () => {
    const bad = async (condition: ConditionInit) => {
      try {
        await segment({ method: { case: "rules", value: { segments: [{ key: "k", name: "k", condition }] } } });
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidInputError);
        return (err as InvalidInputError).field;
      }
      throw new Error("accepted a malformed rule");
    };
    expect(
      await bad(
        group(
          BooleanOperator.AND,
          field(ContactField.CITY, ComparisonOperator.EQUALS, [text("Austin")]),
          field(ContactField.CITY, ComparisonOperator.CONTAINS, [int(3) as unknown as ReturnType<typeof text>]),
        ),
      ),
    ).toBe("rules.segments[0].condition.group.conditions[1].field.values[0]");
    expect(
      await bad(field(ContactField.LIFECYCLE_STAGE, ComparisonOperator.EQUALS, [text("LIFECYCLE_STAGE_NOPE")])),
    ).toBe("rules.segments[0].condition.field.values[0]");
    expect(
      await bad(
        field(ContactField.CITY, ComparisonOperator.WITHIN_LAST, [
          { kind: { case: "durationValue", value: durationFromMs(day) } },
        ] as never),
      ),
    ).toBe("rules.segments[0].condition.field.comparison");
    expect(await bad(attr("budget", ComparisonOperator.BETWEEN, [int(1), text("x")]))).toBe(
      "rules.segments[0].condition.field.values[1]",
    );
    let deep: ConditionInit = field(ContactField.CITY, ComparisonOperator.IS_SET, []);
    for (let i = 0; i < 16; i++) deep = group(BooleanOperator.AND, deep);
    expect(await bad(deep)).toMatch(/^rules\.segments\[0\]\.condition(\.group\.conditions\[0\]){16}$/);
    // The contract's own rules (a NOT group with two conditions).
    await expect(
      segment({
        method: {
          case: "rules",
          value: {
            segments: [
              {
                key: "k",
                name: "k",
                condition: group(
                  BooleanOperator.NOT,
                  field(ContactField.CITY, ComparisonOperator.IS_SET, []),
                  field(ContactField.CITY, ComparisonOperator.IS_SET, []),
                ),
              },
            ],
          },
        },
      }),
    ).rejects.toThrow(/NOT group/);
  });

  it("scores RFM quintiles and named segments from inline transactions (checked by hand)", async () => {
    // Customer i (1…10) bought i times, 100 USD each, the last one i days before as_of.
    const ids = [...Array(10).keys()].map((i) => `00000000-0000-4000-8000-1000000000${String(i + 1).padStart(2, "0")}`);
    const transactions = ids.flatMap((contactId, i) =>
      [...Array(i + 1).keys()].map((j) => ({
        contactId,
        occurredAt: timestampFromDate(ago(i + 1 + j)),
        amountMicros: 100_000_000n,
      })),
    );
    const res = await segment({ method: { case: "rfm", value: { transactions } } });
    // R: 1 + ⌊5·(customers longer ago)/10⌋ → 5 5 4 4 3 3 2 2 1 1; F = M: 1 1 2 2 3 3 4 4 5 5; FM = F.
    expect(res.members.map((m) => [m.rfm?.recencyScore, m.rfm?.frequencyScore, m.rfm?.monetaryScore])).toEqual([
      [5, 1, 1],
      [5, 1, 1],
      [4, 2, 2],
      [4, 2, 2],
      [3, 3, 3],
      [3, 3, 3],
      [2, 4, 4],
      [2, 4, 4],
      [1, 5, 5],
      [1, 5, 5],
    ]);
    expect(res.members.map((m) => m.segmentKeys[0])).toEqual([
      "new-customers",
      "new-customers",
      "potential-loyalists",
      "potential-loyalists",
      "need-attention",
      "need-attention",
      "at-risk",
      "at-risk",
      "cannot-lose-them",
      "cannot-lose-them",
    ]);
    expect(res.members[3]?.rfm).toMatchObject({ recencyDays: 4, frequency: 4, monetaryMicros: 400_000_000n });
    expect(res.segments.map((s) => s.key)).toEqual([
      "champions",
      "loyal-customers",
      "potential-loyalists",
      "new-customers",
      "promising",
      "need-attention",
      "about-to-sleep",
      "at-risk",
      "cannot-lose-them",
      "hibernating",
      "lost",
    ]);
    expect(res.segments.find((s) => s.rfmSegment === RfmSegment.NEW_CUSTOMERS)?.memberCount).toBe(2n);
    expect(res.populationCount).toBe(10n);
  });

  it("reads won deals as purchases when no transactions are sent", async () => {
    const em = db.fork();
    const deal = (contact: string, closed: Date, units: number, currency = "USD") =>
      em.execute(
        `insert into "operations"."crm_deal" (id, pipeline_id, contact_id, stage, outcome, currency_code, amount_units, amount_nanos, attributes, created_at, updated_at, stage_entered_at, closed_at)
         values (?, 'p', ?, 'won', 2, ?, ?, 0, '[]', ?, ?, ?, ?)`,
        [randomUUID(), contact, currency, units, closed, closed, closed, closed],
      );
    await deal(A, ago(10), 1000);
    await deal(A, ago(5), 2000);
    await deal(C, ago(40), 500);
    await deal(C, ago(41), 9999, "EUR");
    const res = await segment({ method: { case: "rfm", value: {} } });
    expect(res.populationCount).toBe(6n);
    expect(res.unassignedCount).toBe(4n);
    expect(res.members.map((m) => [m.contactId, m.rfm?.frequency, m.rfm?.monetaryMicros, m.rfm?.recencyDays])).toEqual([
      [A, 2, 3_000_000_000n, 5],
      [C, 1, 500_000_000n, 40],
    ]);
  });

  it("clusters well-separated contacts like scikit-learn", async () => {
    // Three groups of five points; scikit-learn (KMeans(n_clusters=3, n_init=10) on StandardScaler
    // output) gives inertia 0.6851326206051571 and silhouette 0.8432169588171862 (script in the report).
    const offsets = [
      [0, 0],
      [1, 0],
      [0, 1],
      [-1, 0],
      [0, -1.5],
    ];
    const centres = [
      [0, 0],
      [10, 10],
      [0, 10],
    ];
    const contacts = centres.flatMap(([cx, cy], g) =>
      offsets.map(([ox, oy], i) => ({
        id: `00000000-0000-4000-8000-2000000000${g}${i}`,
        attributes: [
          { key: "x", value: num((cx as number) + (ox as number)) },
          { key: "y", value: num((cy as number) + (oy as number)) },
        ],
      })),
    );
    const features = [
      { source: { case: "attributeKey" as const, value: "x" } },
      { source: { case: "attributeKey" as const, value: "y" } },
    ];
    const res = await segment({
      method: { case: "kmeans", value: { k: 3, features, seed: 42n } },
      contacts,
      pageSize: 100,
    });
    expect(res.kmeans?.featureNames).toEqual(["attr:x", "attr:y"]);
    expect(res.kmeans?.inertia).toBeCloseTo(0.6851326206051571, 10);
    expect(res.kmeans?.silhouette).toBeCloseTo(0.8432169588171862, 10);
    expect(res.segments.map((s) => Number(s.memberCount))).toEqual([5, 5, 5]);
    const centroids = res.segments
      .map((s) => s.centroid.map((v) => Math.round(v * 1e9) / 1e9))
      .sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0) || (a[1] ?? 0) - (b[1] ?? 0));
    expect(centroids).toEqual([
      [0, -0.1],
      [0, 9.9],
      [10, 9.9],
    ]);
    // Members of one group share one cluster.
    const byGroup = new Map<string, Set<string>>();
    for (const m of res.members) {
      const g = m.contactId.slice(-2, -1);
      byGroup.set(g, (byGroup.get(g) ?? new Set()).add(m.segmentKeys[0] ?? ""));
    }
    expect([...byGroup.values()].map((s) => s.size)).toEqual([1, 1, 1]);
    expect(new Set([...byGroup.values()].map((s) => [...s][0])).size).toBe(3);
    const again = await segment({
      method: { case: "kmeans", value: { k: 3, features, seed: 42n } },
      contacts,
      pageSize: 100,
    });
    expect(again).toEqual(res);
    await expect(
      segment({ method: { case: "kmeans", value: { k: 16, features, seed: 1n } }, contacts }),
    ).rejects.toMatchObject({ field: "kmeans.k" });
  });
});

describe("RFM scoring by hand", () => {
  it("gives tied values one score: the share of strictly lower values", () => {
    expect(quantileScores([1, 1, 1, 2], 4, (a, b) => a - b)).toEqual([1, 1, 1, 4]);
    expect(quantileScores([5, 3, 3, 9, 1], 5, (a, b) => a - b)).toEqual([4, 2, 2, 5, 1]);
  });

  it("maps the R × FM grid to the standard segments", () => {
    expect(gridSegment(1, 1)).toBe(RfmSegment.LOST);
    expect(gridSegment(2, 1)).toBe(RfmSegment.HIBERNATING);
    expect(gridSegment(1, 5)).toBe(RfmSegment.CANNOT_LOSE_THEM);
    expect(gridSegment(2, 3)).toBe(RfmSegment.AT_RISK);
    expect(gridSegment(3, 2)).toBe(RfmSegment.ABOUT_TO_SLEEP);
    expect(gridSegment(3, 3)).toBe(RfmSegment.NEED_ATTENTION);
    expect(gridSegment(3, 5)).toBe(RfmSegment.LOYAL_CUSTOMERS);
    expect(gridSegment(4, 1)).toBe(RfmSegment.PROMISING);
    expect(gridSegment(5, 1)).toBe(RfmSegment.NEW_CUSTOMERS);
    expect(gridSegment(4, 3)).toBe(RfmSegment.POTENTIAL_LOYALISTS);
    expect(gridSegment(5, 4)).toBe(RfmSegment.CHAMPIONS);
    // FM is the mean of F and M rounded half up; 3 bins are put on the 1–5 scale as 1, 3, 5.
    expect(rfmSegment(5, 5, 4, 5)).toBe(RfmSegment.CHAMPIONS);
    expect(rfmSegment(3, 1, 1, 3)).toBe(RfmSegment.NEW_CUSTOMERS);
    expect(rfmSegment(2, 2, 2, 3)).toBe(RfmSegment.NEED_ATTENTION);
    expect(rfmSegment(2, 2, 3, 3)).toBe(RfmSegment.LOYAL_CUSTOMERS);
    const all = new Set<RfmSegment>();
    for (let r = 1; r <= 5; r++) for (let fm = 1; fm <= 5; fm++) all.add(gridSegment(r, fm));
    expect(all.size).toBe(11);
  });

  it("counts refunds against spend, drops repeated transaction ids and respects the look-back", () => {
    const asOfMs = asOf.getTime();
    const m = measuresOf(
      [
        { contactId: "A", atMs: asOfMs - 2 * day, amountMicros: 100n, transactionId: "t1" },
        { contactId: "A", atMs: asOfMs - 2 * day, amountMicros: 100n, transactionId: "t1" },
        { contactId: "A", atMs: asOfMs - 1 * day, amountMicros: -30n, transactionId: "" },
        { contactId: "A", atMs: asOfMs - 50 * day, amountMicros: 1000n, transactionId: "" },
        { contactId: "B", atMs: asOfMs - 1 * day, amountMicros: -5n, transactionId: "" },
        { contactId: "C", atMs: asOfMs + 1 * day, amountMicros: 5n, transactionId: "" },
      ],
      asOfMs,
      30 * day,
    );
    expect(m).toEqual([{ contactId: "a", recencyDays: 2, frequency: 1, monetaryMicros: 70n }]);
    expect(scoreRfm(m, 5)[0]).toMatchObject({ r: 1, f: 1, m: 1, segment: RfmSegment.LOST });
  });
});
