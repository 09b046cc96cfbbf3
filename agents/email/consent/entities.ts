/**
 * The Email agent's own do-not-contact tables (operations schema). Addresses are kept as hex
 * SHA-256 of the normalised address, never in clear: the CRM announces its do-not-contact list and
 * consent withdrawals that way, and an erasure keeps the address blocked without keeping it.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/** The CRM's verdict on an address, from `crm.consent_changed`: the latest change wins. */
export const EmailDoNotContact = defineEntity({
  name: "EmailDoNotContact",
  tableName: "email_do_not_contact",
  properties: {
    addressSha256: p.string().length(64).primary(),
    /** True while the CRM says the address may receive no email. */
    blocked: p.boolean(),
    /** Why, without personal data (for example `crm consent withdrawn`). */
    reason: p.string().length(200),
    /** `changed_at` of the CRM change applied; an older change is ignored. */
    changedAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** A suppression of an address that was erased: it stays suppressed, by hash only. */
export const EmailSuppressionMarker = defineEntity({
  name: "EmailSuppressionMarker",
  tableName: "email_suppression_marker",
  properties: {
    addressSha256: p.string().length(64).primary(),
    reason: p.string().length(200),
    createdAt: p.datetime(),
  },
});

/** A row of {@link EmailDoNotContact}. */
export type EmailDoNotContactRow = InferEntity<typeof EmailDoNotContact>;

/** The consent entities of the Email agent. */
export const emailConsentEntities = [EmailDoNotContact, EmailSuppressionMarker] as const;
