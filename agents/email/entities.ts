/**
 * Tables of the Email agent in the `operations` schema: every message it was asked to send, keyed
 * by the caller's request id, and the suppression list consulted before sending.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/** Where a message stands. `sending` is claimed and not finished; the others are outcomes. */
export type EmailMessageStatus = "sending" | "sent" | "written_to_outbox" | "suppressed" | "failed";

/**
 * One message. The unique request id is what makes SendEmail at most once: a call claims the row
 * before handing the message to the transport and records the outcome after, each in its own
 * committed transaction, so a replay finds the outcome (or the claim) whatever happened to the call.
 */
export const EmailMessage = defineEntity({
  name: "EmailMessage",
  tableName: "email_message",
  properties: {
    id: p.uuid().primary(),
    /** The caller's idempotency key. */
    requestId: p.uuid().unique(),
    /** SHA-256 of the request, to refuse the same request id with other input. */
    requestHash: p.string().length(64),
    /** RFC 5322 Message-ID with angle brackets, assigned at the claim (a suppressed message never uses it). */
    messageId: p.string().length(255).index(),
    fromAddress: p.string().length(254),
    /** Recipient address, trimmed and lower-cased. */
    recipient: p.string().length(254).index(),
    subject: p.string().length(300),
    /** Caller's category, for example `seo.link_outreach`; "" when none. */
    tag: p.string().length(64).default("").index(),
    status: p.string().length(20).$type<EmailMessageStatus>(),
    /** `smtp` or `outbox`; "" until a transport was tried, and for suppressed messages. */
    transport: p.string().length(10).default(""),
    accepted: p.json<string[]>(),
    rejected: p.json<string[]>(),
    smtpResponse: p.text().default(""),
    outboxFile: p.string().length(255).default(""),
    suppressionReason: p.string().length(200).default(""),
    /** Last transport error, for a failed message. */
    error: p.text().default(""),
    /** Transport attempts (a replay after a failure tries again). */
    attempts: p.integer().default(0),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    /** When the message was sent, written or suppressed. */
    processedAt: p.datetime().nullable(),
  },
});

/** A row of {@link EmailMessage}. */
export type EmailMessageRow = InferEntity<typeof EmailMessage>;

/** An address no message may be sent to (unsubscribed, hard-bounced, complained, or added by hand). */
export const EmailSuppression = defineEntity({
  name: "EmailSuppression",
  tableName: "email_suppression",
  properties: {
    /** Trimmed, lower-cased address. */
    address: p.string().length(254).primary(),
    reason: p.string().length(200),
    createdAt: p.datetime(),
  },
});

/** Email entities. */
export const emailEntities = [EmailMessage, EmailSuppression] as const;
