/** Stored contact and interaction rows as their protobuf messages (the read API's shapes). */
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { GeoPointSchema, PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  AttributeSchema,
  type Contact,
  ContactSchema,
  type Interaction,
  InteractionSchema,
  type InteractionType,
  type LifecycleStage,
  type TouchpointChannel,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { CrmContactRow, CrmInteractionRow } from "../entities.ts";

/** The contact message of a stored contact. */
export function contactFromRow(row: CrmContactRow): Contact {
  return create(ContactSchema, {
    id: row.id,
    givenName: row.givenName,
    familyName: row.familyName,
    email: row.email ?? "",
    phone: row.phone,
    company: row.company,
    title: row.title,
    ...(row.address != null ? { address: fromJson(PostalAddressSchema, row.address as JsonValue) } : {}),
    city: row.city,
    region: row.region,
    source: row.source,
    createdAt: timestampFromDate(row.createdAt),
    updatedAt: timestampFromDate(row.updatedAt),
    lifecycleStage: row.lifecycleStage as LifecycleStage,
    attributes: row.attributes.map((a) => fromJson(AttributeSchema, a as JsonValue)),
  });
}

/** The interaction message of a stored interaction. */
export function interactionFromRow(row: CrmInteractionRow): Interaction {
  return create(InteractionSchema, {
    id: row.id,
    eventId: row.eventId,
    anonymousId: row.anonymousId ?? "",
    contactId: row.contact ?? "",
    email: row.email ?? "",
    type: row.type as InteractionType,
    channel: row.channel as TouchpointChannel,
    url: row.url,
    referrerUrl: row.referrerUrl,
    campaign: row.campaign,
    city: row.city,
    region: row.region,
    ...(row.latitude != null && row.longitude != null
      ? { location: create(GeoPointSchema, { latitude: Number(row.latitude), longitude: Number(row.longitude) }) }
      : {}),
    occurredAt: timestampFromDate(row.occurredAt),
    properties: row.properties.map((p) => fromJson(AttributeSchema, p as JsonValue)),
  });
}
