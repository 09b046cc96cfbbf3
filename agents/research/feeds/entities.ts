/**
 * Tables of the Research agent's feed reader in the `content` schema: each feed's HTTP validators
 * (for conditional GET) and the items read from it, deduplicated by guid or link. Items outlive
 * their place in the feed document — a feed lists its latest few dozen entries — so the stored ones
 * are the history the trailing window of burst detection is computed on.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/** One feed URL: what the last fetch left (validators, title, outcome). */
export const ResearchFeed = defineEntity({
  name: "ResearchFeed",
  tableName: "research_feed",
  properties: {
    /** SHA-256 (hex) of the URL as requested: URLs can be longer than an index entry allows. */
    feedId: p.string().length(64).primary(),
    url: p.text(),
    /** Feed title from the last successful parse. */
    title: p.text().default(""),
    /** `rss`, `atom` or `rdf`. */
    format: p.string().length(8).default(""),
    /** `ETag` of the last 200, sent back as `If-None-Match`. */
    etag: p.text().default(""),
    /** `Last-Modified` of the last 200, sent back as `If-Modified-Since`. */
    lastModified: p.string().length(100).default(""),
    /** When the feed was last fetched (whatever the outcome); null when only given inline. */
    lastFetchedAt: p.datetime().nullable(),
    /** HTTP status of the last fetch; 0 when no response came. */
    lastStatus: p.integer().default(0),
    /** Why the last fetch or parse failed; empty when it did not. */
    lastError: p.text().default(""),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** A stored feed row. */
export type ResearchFeedRow = InferEntity<typeof ResearchFeed>;

/** One item of a feed, stored once per feed and guid (else link). */
export const ResearchFeedItem = defineEntity({
  name: "ResearchFeedItem",
  tableName: "research_feed_item",
  indexes: [{ properties: ["feedId", "publishedAt"] }],
  properties: {
    /** SHA-256 (hex) of the feed id and the item's key (guid, else link, else title and date). */
    itemId: p.string().length(64).primary(),
    feedId: p.string().length(64),
    guid: p.text().default(""),
    link: p.text().default(""),
    title: p.text().default(""),
    /** Plain-text summary, cut to a few thousand characters. */
    summary: p.text().default(""),
    /** Publication time from the feed; the time the item was first seen when the feed gives none. */
    publishedAt: p.datetime(),
    /** False when `publishedAt` is the first-seen time. */
    dated: p.boolean(),
    firstSeenAt: p.datetime(),
  },
});

/** A stored feed item row. */
export type ResearchFeedItemRow = InferEntity<typeof ResearchFeedItem>;

/** Every entity of the feed reader. */
export const feedEntities = [ResearchFeed, ResearchFeedItem] as const;
