/** The CRM's copy of the emails sent to its contacts (fed by the Email agent's `message_sent` events). */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/**
 * One email sent to a contact, as the Email agent announced it: the Message-ID, subject line and
 * how it was sent, never the body. Kept so the timeline and data-subject requests can show emails
 * without reading the Email agent's tables; one row per Message-ID, so a redelivered event stores
 * nothing new.
 */
export const CrmEmailMessage = defineEntity({
  name: "CrmEmailMessage",
  tableName: "crm_email_message",
  properties: {
    id: p.uuid().primary(),
    /** RFC 5322 Message-ID, with angle brackets. */
    messageId: p.string().length(255).unique("crm_email_message_message_id_unique"),
    /** The contact it is attributed to (the survivor when the recipient had been merged). */
    contactId: p.uuid(),
    /** Trimmed, lower-cased address it was sent to. */
    recipient: p.string().length(254),
    subject: p.string().length(300).default(""),
    /** mesh.email.v1.EmailMessageKind number. */
    kind: p.smallint(),
    tag: p.string().length(64).default(""),
    campaignId: p.string().length(64).default(""),
    sequenceId: p.string().length(64).default(""),
    stepIndex: p.integer().default(0),
    /** mesh.email.v1.EmailStatus number. */
    status: p.smallint(),
    sentAt: p.datetime(),
    /** When the CRM stored it. */
    recordedAt: p.datetime(),
  },
  indexes: [
    // The timeline reads a contact's messages newest first, past a (sent_at, id) keyset.
    {
      name: "crm_email_message_contact_index",
      expression: `create index "crm_email_message_contact_index" on "operations"."crm_email_message" ("contact_id", "sent_at" desc, "id" desc)`,
    },
  ],
});

/** A row of {@link CrmEmailMessage}. */
export type CrmEmailMessageRow = InferEntity<typeof CrmEmailMessage>;

/** The entities of the email copies, for the agent's `data`. */
export const emailCopyEntities = [CrmEmailMessage] as const;
