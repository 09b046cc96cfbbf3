/**
 * Tables of the SEO agent's link outreach (technical schema): one relationship per prospect domain
 * (its state machine, latest score and contact history) and the append-only history of what
 * happened to each relationship.
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
    /** `tracked`, `contacted`, `update`, `suppressed`, `no_reply` or `send_failed`. */
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

/** A stored relationship. */
export type SeoOutreachProspectRow = InferEntity<typeof SeoOutreachProspect>;

/** Link outreach entities. */
export const outreachEntities = [SeoOutreachProspect, SeoOutreachEvent] as const;
