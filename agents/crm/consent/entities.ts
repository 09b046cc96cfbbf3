/**
 * Consent tables of the CRM agent (operations schema): the append-only history of consent
 * decisions, the current decision per (contact, channel), and the do-not-contact list. None has a
 * foreign key to `crm_contact`, so an erasure can delete the contact and keep what must outlive it
 * (hashed do-not-contact markers).
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/** One consent decision. Append-only: rows are inserted and, on erasure, deleted; never updated. */
export const CrmConsentRecord = defineEntity({
  name: "CrmConsentRecord",
  tableName: "crm_consent_record",
  properties: {
    id: p.uuid().primary(),
    /** RecordConsent's request id: a replay finds its record. */
    requestId: p.uuid().unique(),
    contactId: p.uuid(),
    /** mesh.crm.v1.ConsentChannel number. */
    channel: p.integer(),
    /** mesh.crm.v1.ConsentState number. */
    state: p.integer(),
    source: p.string().length(64),
    occurredAt: p.datetime(),
    recordedAt: p.datetime(),
  },
  indexes: [{ properties: ["contactId", "recordedAt", "id"] }],
});

/** The latest decision (by `occurredAt`, then record id) of a contact on a channel. */
export const CrmConsent = defineEntity({
  name: "CrmConsent",
  tableName: "crm_consent",
  properties: {
    contactId: p.uuid().primary(),
    channel: p.integer().primary(),
    state: p.integer(),
    source: p.string().length(64),
    occurredAt: p.datetime(),
    recordId: p.uuid(),
    updatedAt: p.datetime(),
  },
});

/**
 * An entry of the do-not-contact list: by normalised address, by contact, or — after the person
 * was erased — by SHA-256 of an address alone, which keeps them blocked without storing it.
 */
export const CrmDoNotContact = defineEntity({
  name: "CrmDoNotContact",
  tableName: "crm_do_not_contact",
  checks: [
    {
      name: "crm_do_not_contact_target_check",
      expression: `"email" is not null or "contact_id" is not null or "email_sha256" is not null`,
    },
  ],
  properties: {
    id: p.uuid().primary(),
    email: p.string().length(254).nullable().unique(),
    contactId: p.uuid().nullable().unique(),
    /** Hex SHA-256 of the normalised address (set for address entries and erased markers). */
    emailSha256: p.string().length(64).nullable().unique(),
    reason: p.string().length(200).default(""),
    source: p.string().length(64).default(""),
    createdAt: p.datetime(),
  },
  indexes: [{ properties: ["createdAt", "id"] }],
});

/** A stored consent decision. */
export type CrmConsentRecordRow = InferEntity<typeof CrmConsentRecord>;
/** A current consent. */
export type CrmConsentRow = InferEntity<typeof CrmConsent>;
/** A do-not-contact entry. */
export type CrmDoNotContactRow = InferEntity<typeof CrmDoNotContact>;

/** Every consent entity. */
export const consentEntities = [CrmConsentRecord, CrmConsent, CrmDoNotContact] as const;
