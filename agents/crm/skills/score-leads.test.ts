import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BooleanOperator,
  ComparisonOperator,
  type ConditionSchema,
  ContactField,
  type FieldComparisonSchema,
  InteractionType,
  LeadGrade,
  ScoreLeadsRequestSchema,
  type ScoreLeadsResponse,
  type ScoringModelSchema,
  ScoringRuleKind,
  TouchpointChannel,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, openBackboneFixture } from "../../../test/support/backbone.ts";
import { marketMultiplier, shrunkRate } from "../scoring/market.ts";
import { scoreLeads } from "./score-leads.ts";

type Init = MessageInitShape<typeof ScoreLeadsRequestSchema>;
type ModelInit = MessageInitShape<typeof ScoringModelSchema>;
type ConditionInit = MessageInitShape<typeof ConditionSchema>;
type FieldComparisonInit = MessageInitShape<typeof FieldComparisonSchema>;

const asOf = new Date("2025-01-31T00:00:00Z");
const day = 86_400_000;
const ago = (days: number) => timestampFromDate(new Date(asOf.getTime() - days * day));
const str = (value: string) => ({ kind: { case: "stringValue" as const, value } });

/** The contract's example model, with a minimum fit for SQL and an unsubscribe penalty added. */
const model: ModelInit = {
  fitRules: [
    {
      id: "memory-care-interest",
      condition: {
        node: {
          case: "field",
          value: {
            field: { ref: { case: "attributeKey", value: "care_type" } },
            comparison: ComparisonOperator.EQUALS,
            values: [str("memory care")],
          },
        },
      },
      points: 15,
    },
    {
      id: "austin-metro",
      condition: {
        node: {
          case: "field",
          value: {
            field: { ref: { case: "contactField", value: ContactField.CITY } },
            comparison: ComparisonOperator.IN,
            values: [str("Austin"), str("Round Rock")],
          },
        },
      },
      points: 10,
    },
  ],
  behaviourRules: [
    {
      id: "enquiry",
      interactionType: InteractionType.ENQUIRY,
      points: 40,
      halfLife: durationFromMs(30 * day),
    },
    {
      id: "pricing-view",
      interactionType: InteractionType.PAGE_VIEW,
      urlContains: "/pricing",
      points: 5,
      halfLife: durationFromMs(7 * day),
      maxOccurrences: 5,
    },
    { id: "unsubscribe", interactionType: InteractionType.EMAIL_UNSUBSCRIBE, points: -20 },
  ],
  mqlThreshold: 40,
  sqlThreshold: 70,
  sqlMinFitScore: 20,
};

const view = (days: number, path: string, n: number) => ({
  eventId: `view-${path}-${n}`,
  type: InteractionType.PAGE_VIEW,
  channel: TouchpointChannel.WEB,
  url: `https://example.com${path}`,
  occurredAt: ago(days),
});
const enquiry = (days: number, n = 0) => ({
  eventId: `enq-${days}-${n}`,
  type: InteractionType.ENQUIRY,
  occurredAt: ago(days),
});

const points = (res: ScoreLeadsResponse, index: number) =>
  res.scores.find((s) => s.inputIndex === index)?.contributions.map((c) => [c.ruleId, c.points, c.occurrences]);

describe("crm.lead_scoring", () => {
  const noDb = { db: undefined as unknown as Database, now: () => asOf };
  const defaults: Init = { model, asOf: timestampFromDate(asOf) };
  const score = (init: Init) => scoreLeads(noDb, create(ScoreLeadsRequestSchema, { ...defaults, ...init } as Init));

  it("adds fit points and decayed behaviour points, grades and explains each lead (hand-computed)", async () => {
    const res = await score({
      inlineLeads: [
        {
          // Fit 15 + 10 (care type matched ignoring case). Enquiry 30 days old = one half-life: 40 × 0.5 = 20.
          // Pricing views at 0, 7, 14, 21, 28, 35 days, at most 5 counted (the newest):
          // 5 × (1 + ½ + ¼ + ⅛ + 1/16) = 9.6875. The /about view does not match. Total 54.6875: MQL.
          contact: {
            city: "Austin",
            region: "TX",
            attributes: [{ key: "care_type", value: str("Memory Care") }],
          },
          interactions: [
            enquiry(30),
            ...[0, 7, 14, 21, 28, 35].map((d, n) => view(d, "/pricing", n)),
            view(1, "/about", 9),
          ],
        },
        {
          // Fit 25; enquiries now (40) and 60 days ago (40 × ¼ = 10): total 75 ≥ 70 and fit ≥ 20: SQL.
          contact: { city: "round rock", attributes: [{ key: "care_type", value: str("memory care") }] },
          interactions: [enquiry(0), enquiry(60)],
        },
        {
          // No fit; three enquiries today = 120 but fit 0 < 20: only MQL. An unsubscribe (no decay) −20.
          // An enquiry after as_of does not count.
          contact: { city: "Dallas" },
          interactions: [
            enquiry(0, 1),
            enquiry(0, 2),
            enquiry(0, 3),
            { eventId: "unsub", type: InteractionType.EMAIL_UNSUBSCRIBE, occurredAt: ago(400) },
            { eventId: "future", type: InteractionType.ENQUIRY, occurredAt: ago(-1) },
          ],
        },
        { contact: { city: "Houston" } },
      ],
    });
    expect(res.scores.map((s) => [s.inputIndex, s.totalScore, s.fitScore, s.behaviourScore, s.grade])).toEqual([
      [2, 100, 0, 100, LeadGrade.MARKETING_QUALIFIED],
      [1, 75, 25, 50, LeadGrade.SALES_QUALIFIED],
      [0, 54.6875, 25, 29.6875, LeadGrade.MARKETING_QUALIFIED],
      [3, 0, 0, 0, LeadGrade.UNQUALIFIED],
    ]);
    expect(points(res, 0)).toEqual([
      ["enquiry", 20, 1],
      ["memory-care-interest", 15, 1],
      ["austin-metro", 10, 1],
      ["pricing-view", 9.6875, 5],
    ]);
    expect(points(res, 2)).toEqual([
      ["enquiry", 120, 3],
      ["unsubscribe", -20, 1],
    ]);
    const first = res.scores.find((s) => s.inputIndex === 0);
    const pricing = first?.contributions.find((c) => c.ruleId === "pricing-view");
    expect(pricing?.undecayedPoints).toBe(25);
    expect(pricing?.kind).toBe(ScoringRuleKind.BEHAVIOUR);
    expect(pricing?.marketMultiplier).toBe(1);
    expect(first?.market).toBe("austin|tx");
    expect(res.scores.find((s) => s.inputIndex === 3)?.contributions).toEqual([]);
    expect(res.asOf).toEqual(timestampFromDate(asOf));
  });

  it("evaluates rule trees with groups, NOT and behaviour conditions", async () => {
    const tree: ConditionInit = {
      node: {
        case: "group",
        value: {
          booleanOperator: BooleanOperator.AND,
          conditions: [
            {
              node: {
                case: "behaviour",
                value: { interactionType: InteractionType.ENQUIRY, minCount: 2, within: durationFromMs(10 * day) },
              },
            },
            {
              node: {
                case: "group",
                value: {
                  booleanOperator: BooleanOperator.NOT,
                  conditions: [
                    {
                      node: {
                        case: "field",
                        value: {
                          field: { ref: { case: "contactField", value: ContactField.EMAIL_DOMAIN } },
                          comparison: ComparisonOperator.IN,
                          values: [str("gmail.com"), str("yahoo.com")],
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
    const res = await score({
      model: {
        fitRules: [{ id: "engaged-business", condition: tree, points: 30 }],
        mqlThreshold: 10,
        sqlThreshold: 50,
      },
      inlineLeads: [
        // Two enquiries within 10 days and a business domain: 30.
        { contact: { email: "ann@acme.com" }, interactions: [enquiry(1), enquiry(9)] },
        // Free-mail domain: the NOT fails.
        { contact: { email: "bob@GMAIL.com" }, interactions: [enquiry(1), enquiry(9)] },
        // Second enquiry outside the window.
        { contact: { email: "cy@acme.com" }, interactions: [enquiry(1), enquiry(11)] },
      ],
    });
    expect(res.scores.map((s) => [s.inputIndex, s.totalScore, s.grade])).toEqual([
      [0, 30, LeadGrade.MARKETING_QUALIFIED],
      [1, 0, LeadGrade.UNQUALIFIED],
      [2, 0, LeadGrade.UNQUALIFIED],
    ]);
  });

  it("refuses bad input with INVALID_ARGUMENT naming the field", async () => {
    const fail = async (init: Init): Promise<string> => {
      try {
        await score(init);
      } catch (err) {
        if (err instanceof InvalidInputError) return err.field;
        throw err;
      }
      throw new Error("expected INVALID_ARGUMENT");
    };
    const lead = { inlineLeads: [{ contact: { city: "Austin" } }] };
    const fitOn = (condition: ConditionInit): ModelInit => ({
      ...model,
      fitRules: [{ id: "r", condition, points: 1 }],
    });
    const field = (value: FieldComparisonInit): ConditionInit => ({ node: { case: "field", value } });
    // Duplicate rule ids (across fit and behaviour rules).
    expect(
      await fail({
        ...lead,
        model: {
          ...model,
          behaviourRules: [{ id: "austin-metro", interactionType: InteractionType.ENQUIRY, points: 1 }],
        },
      }),
    ).toBe("model");
    // Unknown contact field.
    expect(
      await fail({
        ...lead,
        model: fitOn(
          field({
            field: { ref: { case: "contactField", value: 99 as ContactField } },
            comparison: ComparisonOperator.IS_SET,
          }),
        ),
      }),
    ).toBe("model.fit_rules[0].condition.field.field.contact_field");
    // Malformed rule: a text operator on a time field.
    expect(
      await fail({
        ...lead,
        model: fitOn(
          field({
            field: { ref: { case: "contactField", value: ContactField.CREATED_AT } },
            comparison: ComparisonOperator.CONTAINS,
            values: [str("2025")],
          }),
        ),
      }),
    ).toBe("model.fit_rules[0].condition.field.comparison");
    // A lifecycle stage that does not exist.
    expect(
      await fail({
        ...lead,
        model: fitOn(
          field({
            field: { ref: { case: "contactField", value: ContactField.LIFECYCLE_STAGE } },
            comparison: ComparisonOperator.EQUALS,
            values: [str("PROSPECT")],
          }),
        ),
      }),
    ).toBe("model.fit_rules[0].condition.field.values[0]");
    // Operand count that does not fit the operator.
    expect(
      await fail({
        ...lead,
        model: fitOn(
          field({
            field: { ref: { case: "attributeKey", value: "beds" } },
            comparison: ComparisonOperator.BETWEEN,
            values: [str("1")],
          }),
        ),
      }),
    ).toMatch(/^model\.fit_rules\[0\]\.condition\.field/);
    // A tree deeper than 16 levels.
    let deep: ConditionInit = field({
      field: { ref: { case: "attributeKey", value: "x" } },
      comparison: ComparisonOperator.IS_SET,
    });
    for (let i = 0; i < 16; i++) {
      deep = { node: { case: "group", value: { booleanOperator: BooleanOperator.AND, conditions: [deep] } } };
    }
    expect(await fail({ ...lead, model: fitOn(deep) })).toMatch(
      /^model\.fit_rules\[0\]\.condition(\.group\.conditions\[0\]){16}$/,
    );
    // A segmentation-only node (stored score) in a fit rule, nested in a group.
    expect(
      await fail({
        ...lead,
        model: fitOn({
          node: {
            case: "group",
            value: {
              booleanOperator: BooleanOperator.OR,
              conditions: [
                { node: { case: "score", value: { comparison: ComparisonOperator.GREATER_THAN, values: [1] } } },
              ],
            },
          },
        }),
      }),
    ).toBe("model.fit_rules[0].condition.group.conditions[0].score");
    // Thresholds out of order; both subjects; neither.
    expect(await fail({ ...lead, model: { ...model, mqlThreshold: 80, sqlThreshold: 70 } })).toBe("model");
    expect(await fail({ ...lead, contactIds: [randomUUID()] })).toBe("request");
    expect(await fail({})).toBe("request");
    // Negative half-life.
    expect(
      await fail({
        ...lead,
        model: {
          ...model,
          behaviourRules: [
            { id: "e", interactionType: InteractionType.ENQUIRY, points: 1, halfLife: { seconds: -5n, nanos: 0 } },
          ],
        },
      }),
    ).toBe("model.behaviour_rules[0].half_life");
  });

  it("shrinks a market's conversion rate towards the national one (beta-binomial posterior mean)", () => {
    // National 10 %, k = 20, a city with 3 of 10 engaged contacts converted: (3 + 20·0.1) / (10 + 20) = 1/6.
    expect(shrunkRate(3, 10, 0.1, 20)).toBeCloseTo(1 / 6, 12);
    expect(marketMultiplier(3, 10, 0.1, { priorStrength: 20, maxMultiplier: 3 })).toBeCloseTo(5 / 3, 12);
    // A city with 300 of 1,000: (300 + 2) / 1,020 = 0.296078…, lift 2.96; capped at 2.5 when asked.
    expect(shrunkRate(300, 1000, 0.1, 20)).toBeCloseTo(302 / 1020, 12);
    expect(marketMultiplier(300, 1000, 0.1, { priorStrength: 20, maxMultiplier: 2.5 })).toBe(2.5);
    // A city with no data keeps the national weight; with no national conversions, weights stay 1.
    expect(marketMultiplier(0, 0, 0.1, { priorStrength: 20, maxMultiplier: 3 })).toBe(1);
    expect(marketMultiplier(2, 5, 0, { priorStrength: 20, maxMultiplier: 3 })).toBe(1);
  });

  describe("stored contacts", () => {
    let fx: BackboneFixture;
    const deps = () => ({ db: fx.db, now: () => asOf });
    const s = () => `"${fx.db.schema}"`;
    const ids = { austin: [] as string[], dallas: [] as string[], solo: randomUUID() };

    beforeAll(async () => {
      fx = await openBackboneFixture(domains.operations, "crm-scoring");
      const em = fx.db.fork();
      const contact = async (id: string, city: string, region: string, attributes = "[]") =>
        em.execute(
          `insert into ${s()}."crm_contact" (id, city, region, attributes, created_at, updated_at) values (?, ?, ?, ?::jsonb, ?, ?)`,
          [id, city, region, attributes, asOf, asOf],
        );
      const interaction = async (contactId: string, type: number, days: number, url = "") =>
        em.execute(
          `insert into ${s()}."crm_interaction" (id, event_id, contact_id, type, url, occurred_at, properties, recorded_at) values (?, ?, ?, ?, ?, ?, '[]'::jsonb, ?)`,
          [randomUUID(), randomUUID(), contactId, type, url, new Date(asOf.getTime() - days * day), asOf],
        );
      const convert = async (contactId: string) =>
        em.execute(
          `insert into ${s()}."crm_scoring_conversion" (conversion_id, contact_id, occurred_at, recorded_at) values (?, ?, ?, ?)`,
          [randomUUID(), contactId, asOf, asOf],
        );
      // Austin: 10 contacts with an enquiry today, 3 converted. Dallas: 90, 7 converted.
      // National: 100 engaged, 10 converted → p = 0.1.
      for (let i = 0; i < 100; i++) {
        const id = randomUUID();
        const austin = i < 10;
        (austin ? ids.austin : ids.dallas).push(id);
        await contact(
          id,
          austin ? " Austin" : "Dallas",
          "TX",
          austin ? '[{"key":"care_type","value":{"stringValue":"memory care"}}]' : "[]",
        );
        await interaction(id, InteractionType.ENQUIRY, 0);
        if ((austin && i < 3) || (!austin && i < 17)) await convert(id);
      }
      // A contact without a city: pricing views now and 7 days ago, a blog view and an enquiry after as_of.
      await contact(ids.solo, "", "");
      await interaction(ids.solo, InteractionType.PAGE_VIEW, 0, "https://example.com/pricing");
      await interaction(ids.solo, InteractionType.PAGE_VIEW, 7, "https://example.com/pricing/memory-care");
      await interaction(ids.solo, InteractionType.PAGE_VIEW, 7, "https://example.com/blog");
      await interaction(ids.solo, InteractionType.ENQUIRY, -2);
    });

    afterAll(async () => {
      await fx?.dispose();
    });

    it("scores stored contacts by id and reports the missing ones", async () => {
      const missing = randomUUID();
      const res = await scoreLeads(
        deps(),
        create(ScoreLeadsRequestSchema, {
          model,
          asOf: timestampFromDate(asOf),
          contactIds: [ids.solo, missing, ids.austin[0] as string],
        }),
      );
      expect(res.missingContactIds).toEqual([missing]);
      // Austin contact (stored city " Austin"): enquiry today 40; fit 15 for the care type only, since
      // IN compares the untrimmed city; the market key is trimmed.
      const austin = res.scores.find((x) => x.inputIndex === 2);
      const solo = res.scores.find((x) => x.inputIndex === 0);
      // Solo: pricing views now (5) and 7 days ago (2.5); the blog view and the future enquiry do not count.
      expect(solo?.totalScore).toBe(7.5);
      expect(solo?.market).toBe("");
      expect(austin?.behaviourScore).toBe(40);
      expect(austin?.market).toBe("austin|tx");
      expect(austin?.fitScore).toBe(15);
    });

    it("weights behaviour points by the market's shrunk conversion rate", async () => {
      const res = await scoreLeads(
        deps(),
        create(ScoreLeadsRequestSchema, {
          model,
          asOf: timestampFromDate(asOf),
          contactIds: [ids.austin[5] as string, ids.dallas[50] as string, ids.solo],
          marketWeighting: { enabled: true, priorStrength: 20 },
        }),
      );
      const byIndex = (i: number) => res.scores.find((x) => x.inputIndex === i);
      // Austin: (3 + 20·0.1) / (10 + 20) = 1/6 → ×(1/6)/0.1 = 5/3: enquiry 40 × 5/3 = 66.67.
      const austin = byIndex(0)?.contributions.find((c) => c.ruleId === "enquiry");
      expect(austin?.marketMultiplier).toBeCloseTo(5 / 3, 12);
      expect(austin?.points).toBeCloseTo(200 / 3, 10);
      // Dallas: (7 + 2) / (90 + 20) = 9/110 → ×0.81818: 40 × 9/11 = 32.727….
      const dallas = byIndex(1)?.contributions.find((c) => c.ruleId === "enquiry");
      expect(dallas?.marketMultiplier).toBeCloseTo(9 / 11, 12);
      expect(byIndex(1)?.totalScore).toBeCloseTo(360 / 11, 10);
      // No city: national points.
      expect(byIndex(2)?.contributions.every((c) => c.marketMultiplier === 1)).toBe(true);
      expect(byIndex(2)?.totalScore).toBe(7.5);
    });

    it("adds stored interactions to an inline lead with a stored id", async () => {
      const res = await scoreLeads(
        deps(),
        create(ScoreLeadsRequestSchema, {
          model,
          asOf: timestampFromDate(asOf),
          inlineLeads: [{ contact: { id: ids.solo, city: "Round Rock" }, interactions: [enquiry(30)] }],
        }),
      );
      // Fit 10 (inline city), inline enquiry 20, stored pricing views 7.5.
      expect(res.scores[0]?.totalScore).toBe(37.5);
    });
  });
});
