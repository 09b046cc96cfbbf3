import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrmService, InteractionType } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Harness, startHarness } from "../../../test/support/harness.ts";

/** Duplicate detection over stored contacts and UnmergeContacts through a real operations server. */
describe("duplicate merging over Connect", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ servers: ["operations"] });
  });
  afterAll(async () => {
    await h?.close();
  });

  const code = (err: unknown) => (err instanceof ConnectError ? err.code : undefined);

  it("examines stored contacts, and answers UnmergeContacts' bad input with its codes", async () => {
    const crm = h.client("operations", CrmService, "operator");
    const ids: string[] = [];
    for (const [given, email] of [
      ["Robert", "robert.smith@example.com"],
      ["Ana", "ana.marquez@example.com"],
    ] as const) {
      const t = await crm.trackInteraction({
        requestId: randomUUID(),
        interaction: {
          eventId: `evt-${randomUUID()}`,
          email,
          type: InteractionType.ENQUIRY,
          occurredAt: timestampFromDate(new Date(Date.now() - 60_000)),
        },
        contact: { givenName: given, familyName: "Smith" },
      });
      ids.push(t.contactId);
    }
    // Stored contacts are read (no FAILED_PRECONDITION any more); a dry run merges nothing.
    const dry = await crm.detectDuplicates({ requestId: randomUUID(), contactIds: ids });
    expect(dry.recordCount).toBe(2);
    expect(dry.mergedContactCount).toBe(0);
    const unknownContact = await crm
      .detectDuplicates({ requestId: randomUUID(), contactIds: [...ids, randomUUID()] })
      .catch((e) => e);
    expect(code(unknownContact)).toBe(Code.NotFound);

    const unknown = await crm.unmergeContacts({ requestId: randomUUID(), mergeId: randomUUID() }).catch((e) => e);
    expect(code(unknown)).toBe(Code.NotFound);
    const malformed = await crm.unmergeContacts({ requestId: randomUUID(), mergeId: "nope" }).catch((e) => e);
    expect(code(malformed)).toBe(Code.InvalidArgument);
    expect(malformed.rawMessage).toContain("merge_id");
  });
});
