/**
 * The publishing worker: durable scheduled posts, published at most once.
 *
 * Due times live in `social_scheduled_post`, not in timers: every instance polls (the interval
 * only decides how soon a due post is seen) and a restart loses nothing. One round:
 *
 * 1. Claim: one short transaction moves a bounded batch of due `scheduled` posts to `publishing`
 *    with a fresh claim token (`FOR UPDATE SKIP LOCKED`, so workers on other instances take other
 *    posts and never wait on each other), and commits.
 * 2. Publish each claimed post through the adapter, outside any transaction or lock.
 * 3. Record the outcome in another short transaction, only if the claim token is still ours:
 *    `published`; back to `scheduled` with a backoff when nothing reached the receiver (up to
 *    `maxAttempts`, then `failed`); `failed` when the receiver refused it; `unknown` when it may
 *    have gone out.
 *
 * A post whose claim is older than `claimTimeoutMs` — its worker died between claim and record —
 * becomes `unknown` and is never published again automatically: the post may have gone out, and a
 * second copy is worse than a missing one. So a crash, a retry or a second worker never posts twice.
 */
import { randomUUID } from "node:crypto";
import type { Running } from "../../../lib/bus/index.ts";
import type { Database } from "../../../lib/db/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import type { SocialScheduledPostRow } from "../entities.ts";
import { type OutgoingPost, type PublishAdapter, PublishError } from "./adapters.ts";

/** Options of {@link startPublisher}. */
export interface PublisherOptions {
  readonly db: Database;
  readonly adapter: PublishAdapter;
  readonly log: Logger;
  readonly now: () => Date;
  /** Id of this instance, recorded on its claims. */
  readonly nodeId: string;
  /** Posts claimed per round (default 20). */
  readonly batch?: number;
  /** How often due posts are looked for, in ms (default 1000). */
  readonly pollMs?: number;
  /** A claim older than this is considered abandoned and its post `unknown` (default 5 min). */
  readonly claimTimeoutMs?: number;
  /** Attempts before a post that never reached the receiver is `failed` (default 5). */
  readonly maxAttempts?: number;
  /** Delay before retry n (1-based) of a post that did not reach the receiver (default 30 s × 2^(n−1), at most 1 h). */
  readonly retryDelayMs?: (attempt: number) => number;
}

/** A claimed post. */
interface Claimed {
  readonly row: Pick<
    SocialScheduledPostRow,
    | "id"
    | "postKey"
    | "calendarId"
    | "itemId"
    | "channelId"
    | "platform"
    | "text"
    | "linkUrl"
    | "hashtags"
    | "dueAt"
    | "attempts"
  >;
  readonly token: string;
}

interface ClaimRow {
  id: string;
  post_key: string;
  calendar_id: string;
  item_id: string;
  channel_id: string;
  platform: string;
  text: string;
  link_url: string;
  hashtags: string[] | string;
  due_at: Date | string;
  attempts: number;
}

/** Claims up to `batch` due posts for this worker, in one committed transaction. */
export async function claimDuePosts(
  opts: Pick<PublisherOptions, "db" | "now" | "nodeId" | "batch">,
): Promise<Claimed[]> {
  const { db } = opts;
  const now = opts.now();
  const token = randomUUID();
  const rows = await db.transaction(async (em) =>
    em.getConnection().execute<ClaimRow[]>(
      `update "${db.schema}"."social_scheduled_post" set status = 'publishing', claim_token = ?, claimed_at = ?, claimed_by = ?, attempts = attempts + 1, updated_at = ?
       where id in (select id from "${db.schema}"."social_scheduled_post" where status = 'scheduled' and due_at <= ? order by due_at, id limit ? for update skip locked)
       returning id, post_key, calendar_id, item_id, channel_id, platform, text, link_url, hashtags, due_at, attempts`,
      [token, now, opts.nodeId, now, now, opts.batch ?? 20],
      "all",
      em.getTransactionContext(),
    ),
  );
  return rows
    .map((r) => ({
      token,
      row: {
        id: r.id,
        postKey: r.post_key,
        calendarId: r.calendar_id,
        itemId: r.item_id,
        channelId: r.channel_id,
        platform: r.platform,
        text: r.text,
        linkUrl: r.link_url,
        hashtags: typeof r.hashtags === "string" ? (JSON.parse(r.hashtags) as string[]) : r.hashtags,
        dueAt: new Date(r.due_at),
        attempts: r.attempts,
      },
    }))
    .sort((a, b) => a.row.dueAt.getTime() - b.row.dueAt.getTime());
}

/** Marks posts claimed longer than `claimTimeoutMs` ago as `unknown`; returns how many. */
export async function expireAbandonedClaims(
  opts: Pick<PublisherOptions, "db" | "now" | "claimTimeoutMs">,
): Promise<number> {
  const { db } = opts;
  const now = opts.now();
  const before = new Date(now.getTime() - (opts.claimTimeoutMs ?? 5 * 60_000));
  return db.transaction(async (em) => {
    const res = await em.getConnection().execute(
      `update "${db.schema}"."social_scheduled_post" set status = 'unknown', error = 'claimed at ' || to_char(claimed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' by ' || claimed_by || ' with no outcome recorded: it may have been published, so it is not published again', updated_at = ?
       where status = 'publishing' and claimed_at < ?`,
      [now, before],
      "run",
      em.getTransactionContext(),
    );
    return (res as { affectedRows?: number }).affectedRows ?? 0;
  });
}

/** Records the outcome of a claim, if the claim is still ours. */
async function record(db: Database, id: string, token: string, set: Record<string, unknown>): Promise<void> {
  const keys = Object.keys(set);
  await db.transaction(async (em) => {
    await em.getConnection().execute(
      `update "${db.schema}"."social_scheduled_post" set ${keys.map((k) => `${k} = ?`).join(", ")}
       where id = ? and claim_token = ? and status in ('publishing', 'unknown')`,
      [...keys.map((k) => set[k]), id, token],
      "run",
      em.getTransactionContext(),
    );
  });
}

const defaultRetryDelay = (attempt: number) => Math.min(30_000 * 2 ** (attempt - 1), 3_600_000);

/** Publishes one claimed post and records the outcome. */
async function publishClaimed(opts: PublisherOptions, c: Claimed): Promise<void> {
  const { row, token } = c;
  const post: OutgoingPost = {
    id: row.id,
    postKey: row.postKey,
    calendarId: row.calendarId,
    itemId: row.itemId,
    channelId: row.channelId,
    platform: row.platform,
    text: row.text,
    link: row.linkUrl,
    hashtags: row.hashtags,
    scheduledFor: row.dueAt,
  };
  const base = { adapter: opts.adapter.name, claimed_by: opts.nodeId };
  try {
    const { externalId } = await opts.adapter.publish(post);
    const now = opts.now();
    await record(opts.db, row.id, token, {
      ...base,
      status: "published",
      external_id: externalId,
      error: "",
      published_at: now,
      updated_at: now,
    });
  } catch (err) {
    const now = opts.now();
    const message = err instanceof Error ? err.message : String(err);
    const kind = err instanceof PublishError ? err.kind : "ambiguous";
    opts.log.warn("social post not published", { postKey: row.postKey, attempt: row.attempts, kind, error: message });
    if (kind === "not_sent" || kind === "retryable") {
      if (row.attempts < (opts.maxAttempts ?? 5)) {
        const delay = (opts.retryDelayMs ?? defaultRetryDelay)(row.attempts);
        await record(opts.db, row.id, token, {
          ...base,
          status: "scheduled",
          due_at: new Date(now.getTime() + delay),
          claim_token: null,
          error: message,
          updated_at: now,
        });
        return;
      }
      await record(opts.db, row.id, token, {
        ...base,
        status: "failed",
        error: `${message} (after ${row.attempts} attempts)`,
        updated_at: now,
      });
      return;
    }
    await record(opts.db, row.id, token, {
      ...base,
      status: kind === "rejected" ? "failed" : "unknown",
      error: message,
      updated_at: now,
    });
  }
}

/** Gives back claims whose posts were not tried: they are due again at once, with their attempt uncounted. */
async function release(db: Database, claimed: readonly Claimed[]): Promise<void> {
  if (claimed.length === 0) return;
  await db.transaction(async (em) => {
    await em.getConnection().execute(
      `update "${db.schema}"."social_scheduled_post" set status = 'scheduled', claim_token = null, attempts = attempts - 1
       where status = 'publishing' and claim_token = ? and id in (${claimed.map(() => "?").join(", ")})`,
      [claimed[0]?.token, ...claimed.map((c) => c.row.id)],
      "run",
      em.getTransactionContext(),
    );
  });
}

/**
 * One round: expire abandoned claims, claim due posts, publish them; returns the posts claimed.
 * When `stopping()` turns true between two posts, the claims not tried yet are given back, so a
 * shutdown neither waits for a whole batch nor strands posts in `publishing`.
 */
export async function publishDue(opts: PublisherOptions, stopping: () => boolean = () => false): Promise<number> {
  await expireAbandonedClaims(opts);
  const claimed = await claimDuePosts(opts);
  for (let i = 0; i < claimed.length; i++) {
    if (stopping()) {
      await release(opts.db, claimed.slice(i));
      break;
    }
    await publishClaimed(opts, claimed[i] as Claimed);
  }
  return claimed.length;
}

/** Starts polling for due posts; `stop()` waits for the round in progress. */
export function startPublisher(opts: PublisherOptions): Running & { runOnce(): Promise<void> } {
  const batch = opts.batch ?? 20;
  let running: Promise<void> | undefined;
  let stopped = false;
  const round = (): Promise<void> => {
    if (running !== undefined) return running;
    running = (async () => {
      try {
        while (!stopped && (await publishDue(opts, () => stopped)) === batch) {}
      } catch (err) {
        if (!stopped) opts.log.warn("social publisher round failed; retrying on the next poll", { error: String(err) });
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const timer = setInterval(() => void round(), opts.pollMs ?? 1000);
  timer.unref();
  void round();
  return {
    runOnce: round,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
