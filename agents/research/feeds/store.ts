/**
 * The feed reader's storage: validators and outcome per feed URL, items deduplicated per feed by
 * their key, and bounded reads of the items inside a time range. A successful fetch stores its
 * validators and its new items in one transaction, so a stored ETag always comes with the items of
 * the document it names (a 304 for it can safely reuse them).
 */
import { createHash } from "node:crypto";
import { type Database, type EntityManager, transaction } from "../../../lib/db/index.ts";
import { ResearchFeed, ResearchFeedItem, type ResearchFeedItemRow, type ResearchFeedRow } from "./entities.ts";
import type { Validators } from "./fetch.ts";
import type { ParsedFeed } from "./parse.ts";

/** Items older than this (by publication time) are deleted when their feed is next stored. */
export const ITEM_RETENTION_DAYS = 400;
/** Rows per insert statement (9 parameters each; PostgreSQL allows 65,535 per statement). */
const INSERT_CHUNK = 500;

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");

/** The id a feed URL is stored under. */
export const feedIdOf = (url: string): string => sha256(url);

/** Stored feeds of `urls`, by feed id. */
export async function loadFeeds(db: Database, urls: readonly string[]): Promise<Map<string, ResearchFeedRow>> {
  if (urls.length === 0) return new Map();
  const rows = await db
    .fork()
    .find(ResearchFeed, { feedId: { $in: urls.map(feedIdOf) } }, { disableIdentityMap: true });
  return new Map(rows.map((r) => [r.feedId, r] as const));
}

/** What happened to a feed in this call, to record on its row. */
export type FeedOutcome =
  | { readonly kind: "parsed"; readonly feed: ParsedFeed; readonly status: number; readonly validators?: Validators }
  | { readonly kind: "not-modified" }
  | { readonly kind: "failed"; readonly status: number; readonly error: string };

async function upsertFeed(
  em: EntityManager,
  url: string,
  now: Date,
  fields: Partial<ResearchFeedRow>,
  merge: readonly Exclude<keyof ResearchFeedRow, symbol>[],
): Promise<void> {
  await em.upsert(
    ResearchFeed,
    { feedId: feedIdOf(url), url, createdAt: now, updatedAt: now, ...fields },
    {
      onConflictFields: ["feedId"],
      onConflictAction: "merge",
      onConflictMergeFields: [...merge, "updatedAt"],
      disableIdentityMap: true,
    },
  );
}

/**
 * Records the outcome of reading `url` at `now`: on a parse, its title, format and (for a fetch)
 * validators, and its items not stored before; returns how many were new. A fetched feed's items
 * older than the retention are deleted in the same transaction.
 */
export async function recordFeed(db: Database, url: string, now: Date, outcome: FeedOutcome): Promise<number> {
  const feedId = feedIdOf(url);
  return transaction(db, async (em) => {
    if (outcome.kind === "failed") {
      await upsertFeed(em, url, now, { lastFetchedAt: now, lastStatus: outcome.status, lastError: outcome.error }, [
        "lastFetchedAt",
        "lastStatus",
        "lastError",
      ]);
      return 0;
    }
    if (outcome.kind === "not-modified") {
      await upsertFeed(em, url, now, { lastFetchedAt: now, lastStatus: 304, lastError: "" }, [
        "lastFetchedAt",
        "lastStatus",
        "lastError",
      ]);
      return 0;
    }
    const { feed, validators } = outcome;
    if (validators !== undefined) {
      // A new document without validators must clear the old ones: they name an older version.
      await upsertFeed(
        em,
        url,
        now,
        {
          title: feed.title,
          format: feed.format,
          etag: validators.etag.slice(0, 1024),
          lastModified: validators.lastModified.slice(0, 100),
          lastFetchedAt: now,
          lastStatus: outcome.status,
          lastError: "",
        },
        ["title", "format", "etag", "lastModified", "lastFetchedAt", "lastStatus", "lastError"],
      );
    } else {
      await upsertFeed(em, url, now, { title: feed.title, format: feed.format }, ["title", "format"]);
    }
    const table = `"${db.schema}"."research_feed_item"`;
    let inserted = 0;
    for (let i = 0; i < feed.items.length; i += INSERT_CHUNK) {
      const chunk = feed.items.slice(i, i + INSERT_CHUNK);
      const params: unknown[] = [];
      for (const item of chunk) {
        params.push(
          sha256(`${feedId}\n${item.key}`),
          feedId,
          item.guid,
          item.link,
          item.title,
          item.summary,
          item.publishedAt ?? now,
          item.publishedAt !== undefined,
          now,
        );
      }
      const rows = await em
        .getConnection()
        .execute<Array<{ item_id: string }>>(
          `insert into ${table} ("item_id", "feed_id", "guid", "link", "title", "summary", "published_at", "dated", "first_seen_at") values ${chunk
            .map(() => "(?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .join(", ")} on conflict ("item_id") do nothing returning "item_id"`,
          params,
          "all",
        );
      inserted += rows.length;
    }
    await em
      .getConnection()
      .execute(
        `delete from ${table} where "feed_id" = ? and "published_at" < ?`,
        [feedId, new Date(now.getTime() - ITEM_RETENTION_DAYS * 86_400_000)],
        "run",
      );
    return inserted;
  });
}

/**
 * Stored items of the feeds `urls` published in [from, to), newest first, at most `limit` (the
 * newest win: they hold the current window).
 */
export async function readItems(
  db: Database,
  urls: readonly string[],
  from: Date,
  to: Date,
  limit: number,
): Promise<ResearchFeedItemRow[]> {
  if (urls.length === 0) return [];
  return db
    .fork()
    .find(
      ResearchFeedItem,
      { feedId: { $in: urls.map(feedIdOf) }, publishedAt: { $gte: from, $lt: to } },
      { orderBy: { publishedAt: "desc", itemId: "asc" }, limit, disableIdentityMap: true },
    );
}
