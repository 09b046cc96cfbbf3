/** A stored contact as the `Contact` message and back, for the fields enrichment reads and writes. */
import { clone, create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  AttributeSchema,
  type Contact,
  ContactSchema,
  type LifecycleStage,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { CrmContactRow, StoredJson } from "../entities.ts";

/** The row as a message. */
export function contactOfRow(row: CrmContactRow): Contact {
  return create(ContactSchema, {
    id: row.id,
    givenName: row.givenName,
    familyName: row.familyName,
    email: row.email ?? "",
    phone: row.phone,
    company: row.company,
    title: row.title,
    ...(row.address === null || row.address === undefined
      ? {}
      : { address: fromJson(PostalAddressSchema, row.address as JsonValue) }),
    city: row.city,
    region: row.region,
    source: row.source,
    createdAt: timestampFromDate(row.createdAt),
    updatedAt: timestampFromDate(row.updatedAt),
    lifecycleStage: row.lifecycleStage as LifecycleStage,
    attributes: row.attributes.map((a) => fromJson(AttributeSchema, a as JsonValue)),
  });
}

/** Copies the enrichable fields of `contact` onto `row`; true when anything changed. */
export function writeEnrichableFields(contact: Contact, row: CrmContactRow): boolean {
  const before = contactOfRow(row);
  let changed = false;
  const set = <K extends "givenName" | "familyName" | "phone" | "company" | "title" | "city" | "region">(k: K) => {
    if (before[k] !== contact[k]) {
      row[k] = contact[k];
      changed = true;
    }
  };
  for (const k of ["givenName", "familyName", "phone", "company", "title", "city", "region"] as const) set(k);
  const address = contact.address === undefined ? null : (toJson(PostalAddressSchema, contact.address) as StoredJson);
  if (JSON.stringify(address) !== JSON.stringify(row.address ?? null)) {
    row.address = address;
    changed = true;
  }
  const attributes = contact.attributes.map((a) => toJson(AttributeSchema, a) as StoredJson);
  if (JSON.stringify(attributes) !== JSON.stringify(row.attributes)) {
    row.attributes = attributes;
    changed = true;
  }
  return changed;
}

/** A deep copy, so enrichment never mutates the caller's message. */
export function copyContact(c: Contact): Contact {
  return clone(ContactSchema, c);
}
