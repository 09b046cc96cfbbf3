/**
 * Scheduling a plan's posts, in the transaction that stores the plan. Every slot on a social
 * platform that starts after now becomes a post keyed by the slot's UID, its text written for the
 * platform (title and UTM-tagged link: utm_campaign = calendar id, utm_content = item id). A
 * re-plan moves posts that are still waiting (or were cancelled) to their new time and text, leaves
 * posts that were published, claimed, failed or unknown as they are — a post is published at most
 * once whatever the plans say — and cancels waiting posts the new plan no longer has.
 */
import { randomUUID } from "node:crypto";
import type { EntityManager } from "../../../lib/db/index.ts";
import type { PlannedSlot } from "../calendar/plan.ts";
import { isSocialPlatform, rulesOf } from "../text/platforms.ts";
import { writePost } from "../text/post.ts";

/** Rows per insert statement. */
const chunk = 500;

/** Schedules `slots` of `calendarId`'s plan `revision`; returns the posts scheduled. */
export async function schedulePosts(
  em: EntityManager,
  schema: string,
  calendarId: string,
  revision: number,
  slots: readonly PlannedSlot[],
  now: Date,
): Promise<number> {
  const conn = em.getConnection();
  const tx = em.getTransactionContext();
  const due = slots.filter((s) => isSocialPlatform(s.platform) && s.start.getTime() >= now.getTime());
  for (let i = 0; i < due.length; i += chunk) {
    const part = due.slice(i, i + chunk);
    const params: unknown[] = [];
    for (const s of part) {
      const post = writePost({ title: s.title, summary: "", url: s.url, hashtags: [], callToAction: "" }, s.platform, {
        utm: { source: "", medium: "", campaign: calendarId, term: "", content: s.itemId },
      });
      params.push(
        randomUUID(),
        s.uid,
        calendarId,
        revision,
        s.itemId,
        s.channelId,
        rulesOf(s.platform).name,
        s.start,
        post.text,
        post.linkUrl,
        JSON.stringify([...post.hashtags]),
        now,
        now,
      );
    }
    await conn.execute(
      `insert into "${schema}"."social_scheduled_post" as p (id, post_key, calendar_id, revision, item_id, channel_id, platform, due_at, text, link_url, hashtags, status, created_at, updated_at)
       values ${part.map(() => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, 'scheduled', ?, ?)").join(", ")}
       on conflict (post_key) do update set revision = excluded.revision, channel_id = excluded.channel_id, platform = excluded.platform,
         due_at = excluded.due_at, text = excluded.text, link_url = excluded.link_url, hashtags = excluded.hashtags,
         status = 'scheduled', attempts = 0, error = '', updated_at = excluded.updated_at
       where p.status in ('scheduled', 'cancelled')`,
      params,
      "run",
      tx,
    );
  }
  await conn.execute(
    `update "${schema}"."social_scheduled_post" set status = 'cancelled', updated_at = ? where calendar_id = ? and status = 'scheduled' and revision < ?`,
    [now, calendarId, revision],
    "run",
    tx,
  );
  return due.length;
}
