import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ContactField, ContactSchema, LifecycleStage } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import {
  emailDomain,
  fieldLabel,
  foldText,
  normalizedValue,
  normalizePhone,
  normalizePostalCode,
  standardGivenName,
} from "./normalize.ts";
import { UnionFind } from "./union-find.ts";

const ref = (value: ContactField) => ({
  $typeName: "mesh.crm.v1.FieldRef" as const,
  ref: { case: "contactField" as const, value },
});

describe("normalisation", () => {
  it("folds accents, case and punctuation", () => {
    expect(foldText("  José  O'Brien-Núñez ")).toBe("jose obrien nunez");
    expect(foldText("St. John")).toBe("st john");
  });

  it("reads one phone number typed five ways as one E.164 number", () => {
    for (const typed of ["(512) 555-0143", "512.555.0143", "1-512-555-0143", "+1 512 555 0143", "5125550143"]) {
      expect(normalizePhone(typed)).toBe("+15125550143");
    }
    expect(normalizePhone("+44 20 7946 0958")).toBe("+442079460958");
    expect(normalizePhone("")).toBe("");
    // Not a valid number: its digits still compare.
    expect(normalizePhone("123")).toBe("123");
  });

  it("standardises unambiguous diminutives and leaves others as typed", () => {
    expect(standardGivenName("Bob")).toBe("robert");
    expect(standardGivenName("BILLY")).toBe("william");
    expect(standardGivenName("Peggy Ann")).toBe("margaret ann");
    expect(standardGivenName("Pat")).toBe("pat");
    expect(standardGivenName("Robert")).toBe("robert");
  });

  it("cuts ZIP+4 to ZIP5 and takes the registrable email domain", () => {
    expect(normalizePostalCode("78701-1234")).toBe("78701");
    expect(normalizePostalCode("sw1a 1aa")).toBe("SW1A1AA");
    expect(emailDomain("Mary@Mail.Example.co.uk")).toBe("example.co.uk");
    expect(emailDomain("mary@sub.example.com")).toBe("example.com");
  });

  it("labels fields and reads their normalised values from a contact", () => {
    const c = create(ContactSchema, {
      givenName: "Bobby",
      familyName: "Smith",
      email: " Bob.Smith@Example.com ",
      address: { postalCode: "78701-0001", locality: "Austin" },
      lifecycleStage: LifecycleStage.LEAD,
    });
    expect(fieldLabel(ref(ContactField.GIVEN_NAME))).toBe("given_name");
    expect(fieldLabel({ $typeName: "mesh.crm.v1.FieldRef", ref: { case: "attributeKey", value: "care_type" } })).toBe(
      "attr:care_type",
    );
    expect(normalizedValue(c, ref(ContactField.FULL_NAME))).toBe("robert smith");
    expect(normalizedValue(c, ref(ContactField.EMAIL))).toBe("bob.smith@example.com");
    expect(normalizedValue(c, ref(ContactField.POSTAL_CODE))).toBe("78701");
    expect(normalizedValue(c, ref(ContactField.CITY))).toBe("austin");
    expect(normalizedValue(c, ref(ContactField.LIFECYCLE_STAGE))).toBe("LIFECYCLE_STAGE_LEAD");
    expect(normalizedValue(c, ref(ContactField.PHONE))).toBe("");
  });
});

describe("union-find", () => {
  it("groups transitively linked records and leaves singletons out", () => {
    const uf = new UnionFind(7);
    expect(uf.union(0, 3)).toBe(true);
    uf.union(3, 5);
    uf.union(2, 6);
    expect(uf.union(5, 0)).toBe(false);
    expect(uf.groups()).toEqual([
      [0, 3, 5],
      [2, 6],
    ]);
  });
});
