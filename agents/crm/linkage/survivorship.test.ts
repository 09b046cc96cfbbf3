import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  type Contact,
  ContactField,
  ContactSchema,
  SurvivorshipRuleSchema,
  SurvivorshipStrategy,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { goldenRecord, survivorOf } from "./survivorship.ts";

const day = 86_400_000;
const t0 = Date.parse("2025-01-01T00:00:00Z");
const contact = (init: MessageInitShape<typeof ContactSchema>, created: number, updated: number): Contact =>
  create(ContactSchema, {
    ...init,
    createdAt: timestampFromMs(t0 + created * day),
    updatedAt: timestampFromMs(t0 + updated * day),
  });
const rule = (value: ContactField, strategy: SurvivorshipStrategy, sourcePriority: string[] = []) =>
  create(SurvivorshipRuleSchema, { field: { ref: { case: "contactField", value } }, strategy, sourcePriority });

describe("survivorship", () => {
  const oldest = contact(
    {
      id: "00000000-0000-4000-8000-000000000001",
      givenName: "Bob",
      familyName: "Smith",
      email: "bob@example.com",
      phone: "+15125550101",
      company: "Acme",
      source: "web-enquiry",
      address: { streetLines: ["1 Main St"], postalCode: "78701", countryCode: "US" },
    },
    0,
    10,
  );
  const newest = contact(
    {
      id: "00000000-0000-4000-8000-000000000002",
      givenName: "Robert",
      familyName: "Smith",
      phone: "+15125550199",
      company: "Acme Corporation",
      source: "sales-import",
      address: { postalCode: "78702" },
      attributes: [{ key: "care_type", value: { kind: { case: "stringValue", value: "memory care" } } }],
    },
    5,
    30,
  );
  const middle = contact(
    {
      id: "00000000-0000-4000-8000-000000000003",
      givenName: "Robert",
      familyName: "Smyth",
      email: "robert.smith@example.com",
      company: "ACME",
      source: "referral",
    },
    3,
    20,
  );
  const members = [newest, middle, oldest];

  it("keeps the earliest created contact", () => {
    expect(survivorOf(members).id).toBe(oldest.id);
  });

  it("takes each field by its rule and records where it came from", () => {
    const golden = goldenRecord(
      members,
      survivorOf(members),
      [
        rule(ContactField.PHONE, SurvivorshipStrategy.MOST_RECENT),
        rule(ContactField.COMPANY, SurvivorshipStrategy.SOURCE_PRIORITY, ["sales-import", "web-enquiry"]),
        rule(ContactField.GIVEN_NAME, SurvivorshipStrategy.MOST_FREQUENT),
        rule(ContactField.EMAIL, SurvivorshipStrategy.OLDEST),
      ],
      SurvivorshipStrategy.MOST_COMPLETE,
    );
    const r = golden.record;
    expect(r.id).toBe(oldest.id);
    expect(r.phone).toBe("+15125550199"); // most recent
    expect(r.company).toBe("Acme Corporation"); // sales-import ranks first
    expect(r.givenName).toBe("Robert"); // two of three
    expect(r.email).toBe("bob@example.com"); // oldest non-empty
    expect(r.familyName).toBe("Smith"); // default most complete: equal length, tie to the survivor
    // The address is one unit: the most complete one, street and postal code together.
    expect(r.address?.streetLines).toEqual(["1 Main St"]);
    expect(r.address?.postalCode).toBe("78701");
    expect(r.attributes.map((a) => a.key)).toEqual(["care_type"]);
    expect(r.createdAt).toEqual(oldest.createdAt);
    expect(r.updatedAt).toEqual(newest.updatedAt);
    const from = Object.fromEntries(golden.provenance.map((p) => [p.field, [p.sourceContactId, p.strategy]]));
    expect(from.phone).toEqual([newest.id, SurvivorshipStrategy.MOST_RECENT]);
    expect(from.company).toEqual([newest.id, SurvivorshipStrategy.SOURCE_PRIORITY]);
    expect(from.email).toEqual([oldest.id, SurvivorshipStrategy.OLDEST]);
    expect(from.address).toEqual([oldest.id, SurvivorshipStrategy.MOST_COMPLETE]);
    expect(from["attr:care_type"]).toEqual([newest.id, SurvivorshipStrategy.MOST_COMPLETE]);
  });

  it("takes given and family name from one member under a full_name rule", () => {
    const golden = goldenRecord(
      members,
      survivorOf(members),
      [rule(ContactField.FULL_NAME, SurvivorshipStrategy.MOST_RECENT)],
      SurvivorshipStrategy.UNSPECIFIED,
    );
    expect([golden.record.givenName, golden.record.familyName]).toEqual(["Robert", "Smith"]);
    expect(golden.provenance.filter((p) => p.field.endsWith("_name")).map((p) => p.sourceContactId)).toEqual([
      newest.id,
      newest.id,
    ]);
  });

  it("defaults to the most recent non-empty value", () => {
    const golden = goldenRecord(members, survivorOf(members), [], SurvivorshipStrategy.UNSPECIFIED);
    expect(golden.record.email).toBe("robert.smith@example.com"); // newest has none
    expect(golden.record.company).toBe("Acme Corporation");
    expect(golden.provenance.find((p) => p.field === "email")?.strategy).toBe(SurvivorshipStrategy.MOST_RECENT);
  });
});
