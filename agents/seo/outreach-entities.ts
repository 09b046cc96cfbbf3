/**
 * Tables of the SEO agent's link outreach (technical schema): one relationship per prospect domain
 * (its state machine, latest score and contact history), the append-only history of what
 * happened to each relationship, and the emails claimed per call and domain (at most once).
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/** A prospect domain and where the relationship with it stands. */
export const SeoOutreachProspect = defineEntity({
  name: "SeoOutreachProspect",
  tableName: "seo_outreach_prospect",
  properties: {
    /** Lower-cased host without `www.` and trailing dot. */
    domain: p.string().length(253).primary(),
    /** mesh.seo.v1.RelationshipState number. */
    state: p.integer().index(),
    /** Prospect page that would carry the link (latest given). */
    url: p.string().length(2048).default(""),
    contactEmail: p.string().length(254).default(""),
    contactName: p.string().length(200).default(""),
    /** Latest authority given, 0–100. */
    authority: p.double().default(0),
    /** Latest TF-IDF cosine similarity to the target page, 0–1. */
    topicSimilarity: p.double().default(0),
    /** Latest score = similarity × authority / 100. */
    score: p.double().default(0),
    /** Our page the latest score (and email) was for. */
    targetUrl: p.string().length(2048).default(""),
    /** Emails sent so far (first email plus follow-ups, and contacts recorded by updates). */
    contactAttempts: p.integer().default(0),
    lastContactedAt: p.datetime().nullable(),
    /** Message-ID of the latest email; follow-ups reply to it so they thread. */
    lastMessageId: p.string().length(255).default(""),
    /** URL of the placed link, once won. */
    wonLinkUrl: p.string().length(2048).default(""),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    /** Optimistic lock: every update checks and increments it. */
    version: p.integer().version(),
  },
});

/** One thing that happened to a relationship. Append-only: rows are never updated or deleted. */
export const SeoOutreachEvent = defineEntity({
  name: "SeoOutreachEvent",
  tableName: "seo_outreach_event",
  properties: {
    id: p.uuid().primary(),
    domain: () => p.manyToOne(SeoOutreachProspect).mapToPk().fieldName("domain").index(),
    /** `tracked`, `contacted`, `update`, `suppressed`, `no_reply`, `send_failed` or `send_unknown`. */
    kind: p.string().length(20),
    /** mesh.seo.v1.RelationshipState numbers before and after. */
    fromState: p.integer(),
    toState: p.integer(),
    note: p.text().default(""),
    linkUrl: p.string().length(2048).default(""),
    /** Message-ID of the email the event is about. */
    messageId: p.string().length(255).default(""),
    /** request_id of the outreach call that recorded it. */
    requestId: p.uuid(),
    occurredAt: p.datetime(),
    recordedAt: p.datetime(),
  },
});

/**
 * One email of one outreach call to one prospect domain. The row is claimed (`sending`) and
 * committed before the Email agent is asked, and its outcome recorded in a later transaction, so no
 * transaction or lock is held while mail goes out. A domain has at most one unconfirmed email
 * (`sending` or `unknown`) at a time: a second call cannot claim it, and an email whose outcome was
 * never recorded (the process died mid-send) blocks new emails until it is settled — by a retry of
 * the same request_id, which asks the Email agent for the same message, or by a relationship update.
 */
export const SeoOutreachSend = defineEntity({
  name: "SeoOutreachSend",
  tableName: "seo_outreach_send",
  uniques: [
    {
      name: "seo_outreach_send_unconfirmed_domain_unique",
      properties: ["domain"],
      where: "state in ('sending', 'unknown')",
    },
  ],
  properties: {
    /** request_id of the outreach call. */
    requestId: p.uuid().primary(),
    /** The prospect domain (normalised). */
    domain: p.string().length(253).primary(),
    /** request_id of the SendEmail call (derived from the call's and the domain). */
    emailRequestId: p.uuid(),
    /**
     * `sending` (claimed; outcome not recorded yet), `unknown` (the Email agent's answer was lost or
     * ambiguous), `sent`, `suppressed`, `refused` (the Email agent declined this message), or
     * `settled` (an unconfirmed email a relationship update closed).
     */
    state: p.string().length(12),
    /** The SendEmail request (binary protobuf), so a retry asks for exactly the same message. */
    emailRequest: p.blob(),
    /** Contact attempt this email is (1 = first email). */
    attempt: p.integer(),
    /** Message-ID the Email agent gave it. */
    messageId: p.string().length(255).default(""),
    /** Why it was refused or is unknown. */
    note: p.text().default(""),
    claimedAt: p.datetime(),
    finishedAt: p.datetime().nullable(),
  },
});

/** A stored relationship. */
export type SeoOutreachProspectRow = InferEntity<typeof SeoOutreachProspect>;

/** A stored email claim. */
export type SeoOutreachSendRow = InferEntity<typeof SeoOutreachSend>;

/** Link outreach entities. */
export const outreachEntities = [SeoOutreachProspect, SeoOutreachEvent, SeoOutreachSend] as const;
