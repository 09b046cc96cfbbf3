/**
 * Tables of the CRM agent in the `operations` schema: contacts, the append-only interaction log and
 * the identity sets that stitch anonymous visitors, emails and contacts together (union-find).
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/** JSON as stored in jsonb columns (protobuf JSON of nested messages). */
export type StoredJson = null | boolean | number | string | StoredJson[] | { [key: string]: StoredJson };

/** A person the CRM holds. Text fields are "" when unknown, so "fill empty fields" is a plain check. */
export const CrmContact = defineEntity({
  name: "CrmContact",
  tableName: "crm_contact",
  properties: {
    id: p.uuid().primary(),
    /** Normalised (trimmed, lower-case); unique, so two writers can never create the same person twice. */
    email: p.string().length(254).nullable().unique(),
    givenName: p.string().length(100).default(""),
    familyName: p.string().length(100).default(""),
    phone: p.string().length(16).default(""),
    company: p.string().length(200).default(""),
    title: p.string().length(200).default(""),
    /** mesh.common.v1.PostalAddress as protobuf JSON. */
    address: p.json<StoredJson>().nullable(),
    city: p.string().length(200).default(""),
    region: p.string().length(100).default(""),
    source: p.string().length(64).default(""),
    /** mesh.crm.v1.LifecycleStage number. */
    lifecycleStage: p.integer().default(0),
    /** mesh.crm.v1.Attribute list as protobuf JSON. */
    attributes: p.json<StoredJson[]>(),
    /** Set when identity stitching found this contact to be the same person as an older one. */
    mergedInto: () => p.manyToOne(CrmContact).mapToPk().nullable().index(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    /** Optimistic lock: every update checks and increments it. */
    version: p.integer().version(),
  },
});

/**
 * One touchpoint. Append-only: rows are never deleted and the facts the producer sent never
 * change; only the attribution (`contactId`) moves when identity stitching learns who it was.
 */
export const CrmInteraction = defineEntity({
  name: "CrmInteraction",
  tableName: "crm_interaction",
  properties: {
    id: p.uuid().primary(),
    /** Producer-assigned id; unique, which is what deduplicates repeated deliveries. */
    eventId: p.string().length(128).unique(),
    anonymousId: p.string().length(128).nullable().index(),
    /** Normalised email the person identified with on this interaction. */
    email: p.string().length(254).nullable().index(),
    /** Contact the interaction is attributed to; null while the person is anonymous. */
    contact: () => p.manyToOne(CrmContact).mapToPk().nullable().index(),
    /** mesh.crm.v1.InteractionType number. */
    type: p.integer(),
    /** mesh.crm.v1.TouchpointChannel number. */
    channel: p.integer().default(0),
    url: p.string().length(2048).default(""),
    referrerUrl: p.string().length(2048).default(""),
    campaign: p.string().length(200).default(""),
    city: p.string().length(200).default(""),
    region: p.string().length(100).default(""),
    latitude: p.double().nullable(),
    longitude: p.double().nullable(),
    occurredAt: p.datetime().index(),
    /** mesh.crm.v1.Attribute list as protobuf JSON. */
    properties: p.json<StoredJson[]>(),
    recordedAt: p.datetime(),
  },
});

/**
 * A disjoint set of identities known to be one person. Its row is what concurrent merges lock;
 * `size` drives union by size.
 */
export const CrmIdentitySet = defineEntity({
  name: "CrmIdentitySet",
  tableName: "crm_identity_set",
  properties: {
    id: p.uuid().primary(),
    /** The set's contact (the surviving one after merges); null while the person is anonymous. */
    contact: () => p.manyToOne(CrmContact).mapToPk().nullable().unique(),
    size: p.integer(),
    createdAt: p.datetime(),
  },
});

/**
 * One identity (an anonymous visitor id, a normalised email or a contact id) and the set it
 * belongs to. Every node points straight at its set, so "find" is one primary-key lookup.
 */
export const CrmIdentityNode = defineEntity({
  name: "CrmIdentityNode",
  tableName: "crm_identity_node",
  properties: {
    /** `anonymous`, `email` or `contact`. */
    kind: p.string().length(16).primary(),
    value: p.string().length(254).primary(),
    set: () => p.manyToOne(CrmIdentitySet).mapToPk().index(),
    createdAt: p.datetime(),
  },
});

/** A stored contact. */
export type CrmContactRow = InferEntity<typeof CrmContact>;
/** A stored interaction. */
export type CrmInteractionRow = InferEntity<typeof CrmInteraction>;
/** A stored identity set. */
export type CrmIdentitySetRow = InferEntity<typeof CrmIdentitySet>;

/** Every CRM entity, for the operations domain. */
export const crmEntities = [CrmContact, CrmInteraction, CrmIdentitySet, CrmIdentityNode] as const;
