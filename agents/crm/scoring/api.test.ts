import { randomUUID } from "node:crypto";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ComparisonOperator,
  ContactField,
  CrmService,
  InteractionType,
  LeadGrade,
  TouchpointChannel,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { eventually } from "../../../test/support/backbone.ts";
import { type Harness, startHarness } from "../../../test/support/harness.ts";

const model = {
  fitRules: [
    {
      id: "austin",
      condition: {
        node: {
          case: "field" as const,
          value: {
            field: { ref: { case: "contactField" as const, value: ContactField.CITY } },
            comparison: ComparisonOperator.EQUALS,
            values: [{ kind: { case: "stringValue" as const, value: "Austin" } }],
          },
        },
      },
      points: 10,
    },
  ],
  behaviourRules: [
    { id: "enquiry", interactionType: InteractionType.ENQUIRY, points: 40, halfLife: durationFromMs(30 * 86_400_000) },
  ],
  mqlThreshold: 40,
  sqlThreshold: 70,
};

/** Lead scoring through a real operations server: wiring, validation, the background consumer. */
describe("lead scoring over Connect", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ servers: ["operations"] });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("scores inline leads, refuses a bad model naming the field, and keeps stored scores current", async () => {
    const crm = h.client("operations", CrmService, "operator");
    const asOf = new Date("2025-01-31T00:00:00Z");
    const res = await crm.scoreLeads({
      model,
      asOf: timestampFromDate(asOf),
      inlineLeads: [
        {
          contact: { city: "Austin" },
          interactions: [
            {
              eventId: "e1",
              type: InteractionType.ENQUIRY,
              occurredAt: timestampFromDate(new Date(asOf.getTime() - 30 * 86_400_000)),
            },
          ],
        },
      ],
    });
    // 10 + 40 × 0.5 = 30.
    expect(res.scores.map((s) => [s.totalScore, s.grade])).toEqual([[30, LeadGrade.UNQUALIFIED]]);

    const bad = await crm
      .scoreLeads({
        model: { ...model, behaviourRules: [{ ...model.behaviourRules[0], id: "austin" }] },
        inlineLeads: [{ contact: {} }],
      })
      .catch((e: unknown) => e);
    expect(bad instanceof ConnectError ? bad.code : undefined).toBe(Code.InvalidArgument);
    expect(bad instanceof ConnectError ? bad.rawMessage : "").toContain("model");

    await crm.saveScoringModel({ requestId: randomUUID(), model, marketWeighting: { enabled: true } });
    const tracked = await crm.trackInteraction({
      requestId: randomUUID(),
      interaction: {
        eventId: `evt-${randomUUID()}`,
        email: "mary.jones@example.com",
        type: InteractionType.ENQUIRY,
        channel: TouchpointChannel.WEB,
        city: "Austin",
        region: "TX",
        occurredAt: timestampFromDate(new Date()),
      },
    });
    const stored = await eventually(() =>
      crm.getLeadScore({ contactId: tracked.contactId }).then(
        (r) => r.leadScore,
        () => undefined,
      ),
    );
    expect(stored.score?.totalScore).toBeCloseTo(50, 3);
    expect(stored.score?.grade).toBe(LeadGrade.MARKETING_QUALIFIED);
    const listed = await crm.listLeadScores({ market: "austin|tx" });
    expect(listed.leadScores.map((s) => s.score?.contactId)).toEqual([tracked.contactId]);
  });
});
