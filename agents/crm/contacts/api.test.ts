import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrmService, InteractionType, TouchpointChannel } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Harness, startHarness } from "../../../test/support/harness.ts";

/** The read API and the pipeline through a real operations server: wiring, interceptors, error codes. */
describe("CRM read API and pipeline over Connect", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ servers: ["operations"] });
  });
  afterAll(async () => {
    await h?.close();
  });

  const code = (err: unknown) => (err instanceof ConnectError ? err.code : undefined);

  it("confirms an enquiry without psql: contact, list, deal, stage move, timeline", async () => {
    const crm = h.client("operations", CrmService, "operator");
    const tracked = await crm.trackInteraction({
      requestId: randomUUID(),
      interaction: {
        eventId: `evt-${randomUUID()}`,
        email: "mary.jones@example.com",
        type: InteractionType.ENQUIRY,
        channel: TouchpointChannel.WEB,
        city: "Austin",
        region: "TX",
        occurredAt: timestampFromDate(new Date(Date.now() - 60_000)),
      },
      contact: { givenName: "Mary", familyName: "Jones" },
    });
    const contactId = tracked.contactId;
    const got = await crm.getContact({ contactId });
    expect(got.contact).toMatchObject({ email: "mary.jones@example.com", city: "Austin", givenName: "Mary" });
    expect(got.survivorContactId).toBe(contactId);

    const listed = await crm.listContacts({ city: "austin", query: "mary", pageSize: 10 });
    expect(listed.contacts.map((c) => c.id)).toEqual([contactId]);

    const deal = (await crm.createDeal({ requestId: randomUUID(), contactId, name: "Mary – Austin" })).deal;
    const move = {
      requestId: randomUUID(),
      dealId: deal?.id ?? "",
      target: { case: "targetStage", value: "qualified" },
    } as const;
    const moved = await crm.advancePipelineStage(move);
    expect(moved).toMatchObject({ previousStage: "enquiry", newStage: "qualified", advanced: true, version: 2n });
    // The server's idempotency interceptor answers a replay with the stored result.
    expect(await crm.advancePipelineStage(move)).toEqual(moved);

    const timeline = await crm.getContactTimeline({ contactId, pageSize: 10 });
    expect(timeline.entries.map((e) => e.item.case)).toEqual(["stageChange", "stageChange", "interaction"]);
  });

  it("maps failures to their codes, naming the field or the stages", async () => {
    const crm = h.client("operations", CrmService, "operator");
    const missing = await crm.getContact({ contactId: randomUUID() }).catch((e) => e);
    expect(code(missing)).toBe(Code.NotFound);
    const big = await crm.listContacts({ pageSize: 501 }).catch((e) => e);
    expect(code(big)).toBe(Code.InvalidArgument);
    expect(big.rawMessage).toContain("page_size");
    const tracked = await crm.trackInteraction({
      requestId: randomUUID(),
      interaction: {
        eventId: `evt-${randomUUID()}`,
        email: "bob.stone@example.com",
        type: InteractionType.ENQUIRY,
        occurredAt: timestampFromDate(new Date()),
      },
    });
    const deal = (await crm.createDeal({ requestId: randomUUID(), contactId: tracked.contactId })).deal;
    const skip = await crm
      .advancePipelineStage({
        requestId: randomUUID(),
        dealId: deal?.id ?? "",
        target: { case: "targetStage", value: "move-in" },
      })
      .catch((e) => e);
    expect(code(skip)).toBe(Code.FailedPrecondition);
    expect(skip.rawMessage).toContain('from "enquiry" to "move-in"');
    const forecast = await crm.forecastSales({ currencyCode: "USD", seed: 1n });
    expect(forecast.iterations).toBe(10000);
  });
});
