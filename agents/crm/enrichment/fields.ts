/**
 * Where each enrichable field lives on a `Contact`, and how a found value is read, compared and
 * written there. Standard fields map to the contact's own fields; the rest are typed attributes
 * (`company_domain`, `industry`, `employee_count`, `annual_revenue`, `linkedin_url`, `time_zone`).
 * CITY is the city and its region together (`Austin, TX`).
 */
import { create, equals } from "@bufbuild/protobuf";
import { type PostalAddress, PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  type AttributeValue,
  AttributeValueSchema,
  type Contact,
  EnrichableField,
  EnrichableFieldSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";

/** A value a provider found: its reported form, and the structured address for POSTAL_ADDRESS. */
export interface FieldValue {
  /** As reported in `EnrichedField.value`. */
  readonly value: AttributeValue;
  /** The address itself, for POSTAL_ADDRESS (its value is the one-line form). */
  readonly address?: PostalAddress;
  /** City and region apart, for CITY (its value is `city, region`). */
  readonly place?: { readonly city: string; readonly region: string };
}

/** Every enrichable field, in enum order. */
export const allFields: readonly EnrichableField[] = [
  EnrichableField.GIVEN_NAME,
  EnrichableField.FAMILY_NAME,
  EnrichableField.COMPANY_NAME,
  EnrichableField.COMPANY_DOMAIN,
  EnrichableField.JOB_TITLE,
  EnrichableField.PHONE,
  EnrichableField.POSTAL_ADDRESS,
  EnrichableField.CITY,
  EnrichableField.INDUSTRY,
  EnrichableField.EMPLOYEE_COUNT,
  EnrichableField.ANNUAL_REVENUE,
  EnrichableField.LINKEDIN_URL,
  EnrichableField.TIME_ZONE,
];

/** Attribute key of the fields stored as contact attributes. */
export const attributeKeys: ReadonlyMap<EnrichableField, string> = new Map([
  [EnrichableField.COMPANY_DOMAIN, "company_domain"],
  [EnrichableField.INDUSTRY, "industry"],
  [EnrichableField.EMPLOYEE_COUNT, "employee_count"],
  [EnrichableField.ANNUAL_REVENUE, "annual_revenue"],
  [EnrichableField.LINKEDIN_URL, "linkedin_url"],
  [EnrichableField.TIME_ZONE, "time_zone"],
]);

/** Longest text per standard field (the contract's limits on `Contact`); attributes allow 2,000. */
export const maxChars: ReadonlyMap<EnrichableField, number> = new Map([
  [EnrichableField.GIVEN_NAME, 100],
  [EnrichableField.FAMILY_NAME, 100],
  [EnrichableField.COMPANY_NAME, 200],
  [EnrichableField.JOB_TITLE, 200],
  [EnrichableField.CITY, 200],
]);

/** Most attributes a contact may have (the contract's limit). */
export const maxAttributes = 200;

/** The field's name in lower snake case without the enum prefix (`company_name`), as HTTP providers use. */
export function fieldName(field: EnrichableField): string {
  return (EnrichableFieldSchema.value[field]?.localName ?? "unspecified").toLowerCase();
}

/** The field named `name` (lower snake case), or undefined. */
export function fieldByName(name: string): EnrichableField | undefined {
  const v = EnrichableFieldSchema.values.find((e) => e.localName === name.toUpperCase());
  return v === undefined || v.number === EnrichableField.UNSPECIFIED ? undefined : (v.number as EnrichableField);
}

/** A text value. */
export function text(value: string): AttributeValue {
  return create(AttributeValueSchema, { kind: { case: "stringValue", value } });
}

/** `Austin, TX` from its parts (either may be empty). */
export function placeText(city: string, region: string): string {
  return [city, region].filter((s) => s !== "").join(", ");
}

/** One line for an address: street lines, locality, `region postal code`, country. */
export function addressText(a: PostalAddress): string {
  const regionLine = [a.region, a.postalCode].filter((s) => s !== "").join(" ");
  return [...a.streetLines, a.locality, regionLine, a.countryCode].filter((s) => s !== "").join(", ");
}

/** The contact's current value of `field`, or undefined when it is empty. */
export function currentValue(contact: Contact, field: EnrichableField): AttributeValue | undefined {
  const key = attributeKeys.get(field);
  if (key !== undefined) return contact.attributes.find((a) => a.key === key)?.value;
  const s = standardText(contact, field);
  return s === "" ? undefined : text(s);
}

function standardText(contact: Contact, field: EnrichableField): string {
  switch (field) {
    case EnrichableField.GIVEN_NAME:
      return contact.givenName;
    case EnrichableField.FAMILY_NAME:
      return contact.familyName;
    case EnrichableField.COMPANY_NAME:
      return contact.company;
    case EnrichableField.JOB_TITLE:
      return contact.title;
    case EnrichableField.PHONE:
      return contact.phone;
    case EnrichableField.POSTAL_ADDRESS:
      return contact.address === undefined ? "" : addressText(contact.address);
    case EnrichableField.CITY:
      return placeText(contact.city, contact.region);
    default:
      return "";
  }
}

/**
 * True when `field` counts as empty on the contact: no value at all, or for CITY a city or region
 * missing, so that a city without its state can be completed.
 */
export function isEmpty(contact: Contact, field: EnrichableField): boolean {
  if (field === EnrichableField.CITY) return contact.city === "" || contact.region === "";
  return currentValue(contact, field) === undefined;
}

/** True when two values are the same. */
export function sameValue(a: AttributeValue | undefined, b: AttributeValue | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return equals(AttributeValueSchema, a, b);
}

/**
 * Writes `found` into `contact` (mutating it). Returns false when it cannot be stored (a contact
 * at its attribute limit), leaving the contact unchanged.
 */
export function applyValue(contact: Contact, field: EnrichableField, found: FieldValue): boolean {
  const key = attributeKeys.get(field);
  if (key !== undefined) {
    const existing = contact.attributes.find((a) => a.key === key);
    if (existing !== undefined) {
      existing.value = found.value;
      return true;
    }
    if (contact.attributes.length >= maxAttributes) return false;
    contact.attributes.push({ $typeName: "mesh.crm.v1.Attribute", key, value: found.value });
    return true;
  }
  const s = found.value.kind.case === "stringValue" ? found.value.kind.value : "";
  switch (field) {
    case EnrichableField.GIVEN_NAME:
      contact.givenName = s;
      return true;
    case EnrichableField.FAMILY_NAME:
      contact.familyName = s;
      return true;
    case EnrichableField.COMPANY_NAME:
      contact.company = s;
      return true;
    case EnrichableField.JOB_TITLE:
      contact.title = s;
      return true;
    case EnrichableField.PHONE:
      contact.phone = s;
      return true;
    case EnrichableField.POSTAL_ADDRESS:
      contact.address = found.address ?? create(PostalAddressSchema, {});
      return true;
    case EnrichableField.CITY:
      if (found.place === undefined) return false;
      contact.city = found.place.city;
      contact.region = found.place.region;
      return true;
    default:
      return false;
  }
}
