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

/** Where a subject-line test stands: `none` (one subject), `draft`, `testing`, `decided`. */
export type AbState = "none" | "draft" | "testing" | "decided";

/** The outcome of a decided subject-line test. */
export interface AbDecision {
  /** `significant` or `window closed`. */
  reason: string;
  significant: boolean;
  /** Smallest z of the winner against another variant. */
  z: number;
  /** Largest two-sided p-value of those comparisons. */
  pValue: number;
}

/** A subject variant as stored. */
export interface StoredVariant {
  variantId: string;
  subject: string;
  preheader: string;
}

/**
 * A newsletter campaign: the rendered issue (HTML and text with merge-field placeholders, filled in
 * per recipient at send time), its subject variants and the state of its subject-line test. The
 * test's state lives here, not in a timer: the worker decides the winner from the stored counts
 * once the test is significant or `testEndsAt` has passed, whichever instance runs it.
 */
export const EmailNewsletter = defineEntity({
  name: "EmailNewsletter",
  tableName: "email_newsletter",
  properties: {
    campaignId: p.string().length(64).primary(),
    /** Request id of the CreateNewsletter call that stored the current revision. */
    requestId: p.uuid().unique(),
    revision: p.integer(),
    title: p.string().length(200),
    segmentId: p.string().length(128),
    senderName: p.string().length(100),
    senderAddress: p.string().length(254),
    replyTo: p.string().length(254).default(""),
    variants: p.json<StoredVariant[]>(),
    /** Campaign preheader, used by variants without their own. */
    preheader: p.string().length(200).default(""),
    mjml: p.text(),
    /** Rendered HTML with `{{field}}` placeholders. */
    html: p.text(),
    /** Plain-text part with `{{field}}` placeholders. */
    plainText: p.text(),
    unsubscribeUrl: p.string().length(2048),
    unsubscribeMailto: p.string().length(254).default(""),
    /** The stored CreateNewsletter response, answered to replays. */
    response: p.blob(),
    /** `open` or `click`: the rate the subject-line test compares. */
    abMetric: p.string().length(10).default("click"),
    abState: p.string().length(10).$type<AbState>(),
    /** Significance level per comparison (Bonferroni-adjusted). */
    abAlpha: p.double().default(0.05),
    /** Planned recipients in the test, all variants together; 0 = unknown audience. */
    abTestSize: p.bigint("number").default(0),
    /** Planned audience of the test plan; 0 = taken from the first SendNewsletter call. */
    abAudienceSize: p.bigint("number").default(0),
    abTestDurationMs: p.bigint("number").default(0),
    /** Share of recipients in the test, fixed by the first SendNewsletter call. */
    abTestFraction: p.double().nullable(),
    testStartedAt: p.datetime().nullable(),
    testEndsAt: p.datetime().nullable(),
    winnerVariantId: p.string().length(8).default(""),
    decision: p.json<AbDecision>().nullable(),
    decidedAt: p.datetime().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** A row of {@link EmailNewsletter}. */
export type EmailNewsletterRow = InferEntity<typeof EmailNewsletter>;

/**
 * Where one newsletter message stands: `held` waits for the test's winner; `pending` is due;
 * `sending` is claimed by a worker; `unknown` was claimed by a worker that stopped before recording
 * the outcome (it may have gone out, so it is never sent again); the rest are outcomes.
 */
export type NewsletterSendStatus = "held" | "pending" | "sending" | "sent" | "failed" | "suppressed" | "unknown";

/**
 * One (campaign, recipient): the unique pair is what makes a newsletter at most once per recipient,
 * whatever the calls, workers and crashes.
 */
export const EmailNewsletterSend = defineEntity({
  name: "EmailNewsletterSend",
  tableName: "email_newsletter_send",
  uniques: [{ properties: ["campaignId", "recipient"] }],
  indexes: [{ properties: ["status", "nextAttemptAt"] }],
  properties: {
    id: p.uuid().primary(),
    campaignId: p.string().length(64),
    /** Trimmed, lower-cased address. */
    recipient: p.string().length(254),
    /** Address as given, for the To header. */
    address: p.string().length(254),
    name: p.string().length(100).default(""),
    fields: p.json<Record<string, string>>(),
    /** Subject variant; "" while held for the winner. */
    variantId: p.string().length(8).default(""),
    inTest: p.boolean().default(false),
    status: p.string().length(12).$type<NewsletterSendStatus>(),
    /** RFC 5322 Message-ID, assigned at the claim. */
    messageId: p.string().length(255).default("").index(),
    claimToken: p.uuid().nullable(),
    claimedAt: p.datetime().nullable(),
    claimedBy: p.string().length(100).default(""),
    attempts: p.integer().default(0),
    nextAttemptAt: p.datetime(),
    smtpResponse: p.text().default(""),
    error: p.text().default(""),
    sentAt: p.datetime().nullable(),
    bouncedAt: p.datetime().nullable(),
    complainedAt: p.datetime().nullable(),
    unsubscribedAt: p.datetime().nullable(),
    openedAt: p.datetime().nullable(),
    clickedAt: p.datetime().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** A row of {@link EmailNewsletterSend}. */
export type EmailNewsletterSendRow = InferEntity<typeof EmailNewsletterSend>;

/** Secrets the agent generates for itself when none is configured (the unsubscribe signing key). */
export const EmailSecret = defineEntity({
  name: "EmailSecret",
  tableName: "email_secret",
  properties: {
    name: p.string().length(64).primary(),
    value: p.blob(),
    createdAt: p.datetime(),
  },
});

/** Every entity of the Email agent. */
export const emailEntities = [
  EmailMessage,
  EmailSuppression,
  EmailNewsletter,
  EmailNewsletterSend,
  EmailSecret,
] as const;
