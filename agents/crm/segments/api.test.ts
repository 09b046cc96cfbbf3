import { randomUUID } from "node:crypto";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BooleanOperator,
  ComparisonOperator,
  ContactField,
  CrmService,
  InteractionType,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { eventually } from "../../../test/support/backbone.ts";
import { type Harness, startHarness } from "../../../test/support/harness.ts";

/** Segmentation through a real operations server: wiring, validation, idempotency, the consumers. */
describe("CRM segmentation over Connect", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ servers: ["operations"] });
  });
  afterAll(async () => {
    await h?.close();
  });

  const austinEnquirers = {
    group: {
      booleanOperator: BooleanOperator.AND,
      conditions: [
        {
          node: {
            case: "field" as const,
            value: {
              field: { ref: { case: "contactField" as const, value: ContactField.CITY } },
              comparison: ComparisonOperator.EQUALS,
              values: [{ kind: { case: "stringValue" as const, value: "Austin" } }],
            },
          },
        },
        {
          node: {
            case: "behaviour" as const,
            value: { interactionType: InteractionType.ENQUIRY, minCount: 1, within: durationFromMs(30 * 86_400_000) },
          },
        },
      ],
    },
  };

  it("segments at request time, stores a segment and keeps it current from interactions", async () => {
    const crm = h.client("operations", CrmService, "operator");
    const track = (email: string, city: string) =>
      crm.trackInteraction({
        requestId: randomUUID(),
        interaction: {
          eventId: `evt-${randomUUID()}`,
          email,
          type: InteractionType.ENQUIRY,
          occurredAt: timestampFromDate(new Date(Date.now() - 60_000)),
        },
        contact: { givenName: "X", city, region: "TX" },
      });
    const mary = (await track("mary@example.com", "Austin")).contactId;
    await track("dan@example.com", "Dallas");
    const adHoc = await crm.segmentContacts({
      method: {
        case: "rules",
        value: {
          segments: [
            { key: "austin", name: "Austin", condition: { node: { case: "group", value: austinEnquirers.group } } },
          ],
        },
      },
    });
    expect(adHoc.members.map((m) => m.contactId)).toEqual([mary]);
    expect(adHoc.populationCount).toBe(2n);

    const save = {
      requestId: randomUUID(),
      segment: {
        key: "austin",
        name: "Austin",
        condition: { node: { case: "group" as const, value: austinEnquirers.group } },
      },
    };
    const saved = await crm.saveSegment(save);
    expect([saved.joinedCount, saved.segment?.memberCount]).toEqual([1n, 1n]);
    // A replay returns the stored result (the idempotency interceptor).
    expect(await crm.saveSegment(save)).toEqual(saved);

    const ann = (await track("ann@example.com", "Austin")).contactId;
    const members = await eventually(async () => {
      const page = await crm.listSegmentMembers({ key: "austin" });
      return page.members.length === 2 ? page.members.map((m) => m.contactId) : undefined;
    });
    expect(members).toEqual([ann, mary].sort());
    expect((await crm.listSegments({})).segments.map((s) => s.definition?.key)).toEqual(["austin"]);
  });

  it("answers a malformed rule with INVALID_ARGUMENT naming the field, and stores nothing", async () => {
    const crm = h.client("operations", CrmService, "operator");
    const err = await crm
      .saveSegment({
        requestId: randomUUID(),
        segment: {
          key: "broken",
          name: "Broken",
          condition: {
            node: {
              case: "field",
              value: {
                field: { ref: { case: "contactField", value: ContactField.CITY } },
                comparison: ComparisonOperator.BETWEEN,
                values: [{ kind: { case: "stringValue", value: "a" } }],
              },
            },
          },
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).message).toMatch(/segment\.condition\.field/);
    const missing = await crm.getSegment({ key: "broken" }).catch((e: unknown) => e);
    expect((missing as ConnectError).code).toBe(Code.NotFound);
  });
});
