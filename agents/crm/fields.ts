/**
 * The fields of a contact as rule trees read them: lead scoring's fit rules (on the protobuf
 * `Contact`, which may be an inline lead never stored) and pipeline guards (on the stored row) read
 * the same standard fields and attributes the same way, and compare them the same way.
 *
 * The two forms differ only in how they hold a value, never in the value a rule sees:
 * - email: the stored email is already trimmed and lower-cased when it is written, and an inline one
 *   may not be, so it is lower-cased here for both (as segmentation's SQL does with `lower(email)`);
 *   a rule on the email therefore reads the same value whichever form the contact comes in;
 * - times are a protobuf `Timestamp` on the message and a `Date` on the row: both read as a `Date`;
 * - the address is a `PostalAddress` on the message and its protobuf JSON on the row.
 */
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { type PostalAddress, PostalAddressSchema } from "../../gen/mesh/common/v1/types_pb.ts";
import {
  type AttributeValue,
  AttributeValueSchema,
  type Contact,
  ContactField,
  type FieldComparison,
  LifecycleStageSchema,
} from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { CrmContactRow } from "./entities.ts";
import { type Comparison, compareValue, enumName, type FieldValue } from "./pipeline/compare.ts";

/** A contact in either form rules read: the protobuf message or the stored row. */
export type RuleContact = Contact | CrmContactRow;

/** Milliseconds of a protobuf duration (0 when unset). */
export function durationMs(d: { seconds: bigint; nanos: number } | undefined): number {
  return d === undefined ? 0 : Number(d.seconds) * 1000 + d.nanos / 1e6;
}

/** An attribute's value as rules compare it (a duration reads as seconds). */
export function attributeFieldValue(v: AttributeValue): FieldValue {
  const k = v.kind;
  switch (k.case) {
    case "stringValue":
    case "numberValue":
    case "boolValue":
      return k.value;
    case "intValue":
      return Number(k.value);
    case "timestampValue":
      return timestampDate(k.value);
    case "durationValue":
      return durationMs(k.value) / 1000;
    default:
      return undefined;
  }
}

function addressOf(c: RuleContact): PostalAddress | undefined {
  if ("$typeName" in c) return c.address;
  return c.address != null ? fromJson(PostalAddressSchema, c.address as JsonValue) : undefined;
}

function timeOf(t: Timestamp | Date | undefined): Date | undefined {
  return t === undefined || t instanceof Date ? t : timestampDate(t);
}

/** A standard contact field's value, as `ContactField` defines it. */
export function contactFieldValue(c: RuleContact, field: ContactField): FieldValue {
  const address = addressOf(c);
  const email = (c.email ?? "").toLowerCase();
  switch (field) {
    case ContactField.GIVEN_NAME:
      return c.givenName;
    case ContactField.FAMILY_NAME:
      return c.familyName;
    case ContactField.FULL_NAME:
      return [c.givenName, c.familyName].filter((s) => s !== "").join(" ");
    case ContactField.EMAIL:
      return email;
    case ContactField.EMAIL_DOMAIN:
      return email.split("@")[1] ?? "";
    case ContactField.PHONE:
      return c.phone;
    case ContactField.COMPANY:
      return c.company;
    case ContactField.TITLE:
      return c.title;
    case ContactField.STREET:
      return address?.streetLines[0] ?? "";
    case ContactField.POSTAL_CODE:
      return address?.postalCode ?? "";
    case ContactField.CITY:
      return c.city || (address?.locality ?? "");
    case ContactField.REGION:
      return c.region || (address?.region ?? "");
    case ContactField.COUNTRY_CODE:
      return address?.countryCode ?? "";
    case ContactField.SOURCE:
      return c.source;
    case ContactField.LIFECYCLE_STAGE:
      return c.lifecycleStage === 0 ? "" : enumName(LifecycleStageSchema, c.lifecycleStage);
    case ContactField.CREATED_AT:
      return timeOf(c.createdAt);
    case ContactField.UPDATED_AT:
      return timeOf(c.updatedAt);
    default:
      return undefined;
  }
}

/** Lifecycle-stage operands may name the stage without its enum prefix (`CUSTOMER`). */
function lifecycleOperands(values: readonly AttributeValue[]): AttributeValue[] {
  return values.map((v) =>
    v.kind.case === "stringValue" && !/^lifecycle_stage_/i.test(v.kind.value)
      ? create(AttributeValueSchema, { kind: { case: "stringValue", value: `LIFECYCLE_STAGE_${v.kind.value}` } })
      : v,
  );
}

/**
 * Compares the field `cmp` names (a standard field, or an attribute read through `attribute`) with
 * its operands; `now` anchors WITHIN_LAST.
 */
export function compareContactField(
  c: RuleContact,
  attribute: (key: string) => FieldValue,
  cmp: FieldComparison,
  now: Date,
): Comparison {
  const ref = cmp.field?.ref;
  let value: FieldValue;
  let values = cmp.values;
  if (ref?.case === "contactField") {
    value = contactFieldValue(c, ref.value);
    if (ref.value === ContactField.LIFECYCLE_STAGE) values = lifecycleOperands(values);
  } else {
    value = ref?.case === "attributeKey" ? attribute(ref.value) : undefined;
  }
  return compareValue(value, cmp.comparison, values, { now, caseSensitive: cmp.caseSensitive });
}
