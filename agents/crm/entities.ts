/**
 * Tables of the CRM agent in the `operations` schema: contacts, the append-only interaction log,
 * the identity sets that stitch anonymous visitors, emails and contacts together (union-find), and
 * the deal pipeline (stored pipeline definitions, deals and their append-only stage history).
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
  indexes: [
    // Keyset paging of ListContacts.
    { properties: ["createdAt", "id"] },
    // Prefix search of ListContacts (`lower(x) like 'q%'` needs text_pattern_ops).
    {
      name: "crm_contact_email_prefix_index",
      expression: `create index "crm_contact_email_prefix_index" on "operations"."crm_contact" (lower("email") text_pattern_ops)`,
    },
    {
      name: "crm_contact_given_name_prefix_index",
      expression: `create index "crm_contact_given_name_prefix_index" on "operations"."crm_contact" (lower("given_name") text_pattern_ops)`,
    },
    {
      name: "crm_contact_family_name_prefix_index",
      expression: `create index "crm_contact_family_name_prefix_index" on "operations"."crm_contact" (lower("family_name") text_pattern_ops)`,
    },
  ],
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
  // A contact's timeline, newest first, in keyset pages.
  indexes: [{ properties: ["contact", "occurredAt", "id"] }],
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

/** A stored pipeline definition (PipelineDefinition as protobuf JSON), replaced as a whole. */
export const CrmPipeline = defineEntity({
  name: "CrmPipeline",
  tableName: "crm_pipeline",
  properties: {
    id: p.string().length(64).primary(),
    /** mesh.crm.v1.PipelineDefinition as protobuf JSON. */
    definition: p.json<StoredJson>(),
    /** 1 when first stored, incremented by every replacement. */
    version: p.integer(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** A deal: a contact's opportunity moving through a pipeline's stages. */
export const CrmDeal = defineEntity({
  name: "CrmDeal",
  tableName: "crm_deal",
  properties: {
    id: p.uuid().primary(),
    pipelineId: p.string().length(64),
    name: p.string().length(200).default(""),
    contact: () => p.manyToOne(CrmContact).mapToPk().index(),
    stage: p.string().length(64),
    /** mesh.crm.v1.StageOutcome number of the current stage. */
    outcome: p.integer(),
    /** ISO 4217 code; null when the amount is not known. */
    currencyCode: p.string().length(3).nullable(),
    /** Whole currency units of the amount. */
    amountUnits: p.bigint().nullable(),
    /** Nano units (10^-9) of the amount, same sign as the units. */
    amountNanos: p.integer().nullable(),
    expectedClose: p.datetime().nullable(),
    ownerEmail: p.string().length(254).default(""),
    source: p.string().length(64).default(""),
    /** mesh.crm.v1.Attribute list as protobuf JSON. */
    attributes: p.json<StoredJson[]>(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    stageEnteredAt: p.datetime(),
    closedAt: p.datetime().nullable(),
    /** Optimistic lock: every change checks and increments it. */
    version: p.integer().version(),
  },
  indexes: [{ properties: ["pipelineId", "stage"] }],
});

/**
 * One stage change of a deal (its creation included). Append-only: rows are inserted, never
 * updated or deleted; they are the deal's history and the calibration data of forecasting.
 */
export const CrmDealStageChange = defineEntity({
  name: "CrmDealStageChange",
  tableName: "crm_deal_stage_change",
  // The stage history is append-only: the database refuses any UPDATE of its rows.
  triggers: [
    {
      name: "crm_deal_stage_change_no_update",
      timing: "before",
      events: ["update"],
      forEach: "row",
      body: "raise exception 'crm_deal_stage_change is append-only: rows are never updated';",
    },
  ],
  properties: {
    id: p.uuid().primary(),
    deal: () => p.manyToOne(CrmDeal).mapToPk(),
    /** The deal's contact, copied so a contact's timeline reads one index. */
    contact: () => p.manyToOne(CrmContact).mapToPk(),
    pipelineId: p.string().length(64),
    /** "" when the deal was created. */
    fromStage: p.string().length(64),
    toStage: p.string().length(64),
    /** mesh.crm.v1.StageOutcome number of `toStage`. */
    outcome: p.integer(),
    changedAt: p.datetime(),
    dealVersion: p.integer(),
    /** Request that made the change; unique, so a replayed request finds its change. */
    requestId: p.uuid().unique(),
    /** mesh.crm.v1.GuardEvaluation list as protobuf JSON. */
    guards: p.json<StoredJson[]>(),
    /** mesh.crm.v1.TriggerResult list as protobuf JSON. */
    triggers: p.json<StoredJson[]>(),
  },
  indexes: [{ properties: ["deal", "changedAt", "id"] }, { properties: ["contact", "changedAt", "id"] }],
});

/** A stored contact. */
export type CrmContactRow = InferEntity<typeof CrmContact>;
/** A stored interaction. */
export type CrmInteractionRow = InferEntity<typeof CrmInteraction>;
/** A stored identity set. */
export type CrmIdentitySetRow = InferEntity<typeof CrmIdentitySet>;

/** A stored pipeline definition. */
export type CrmPipelineRow = InferEntity<typeof CrmPipeline>;
/** A stored deal. */
export type CrmDealRow = InferEntity<typeof CrmDeal>;
/** A stored stage change. */
export type CrmDealStageChangeRow = InferEntity<typeof CrmDealStageChange>;

/** Every CRM entity, for the operations domain. */
export const crmEntities = [
  CrmContact,
  CrmInteraction,
  CrmIdentitySet,
  CrmIdentityNode,
  CrmPipeline,
  CrmDeal,
  CrmDealStageChange,
] as const;
