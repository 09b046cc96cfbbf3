/**
 * Tables of the Social agent in the `operations` schema: the calendars, every plan stored for them
 * (kept so a replayed request_id answers with the plan it made), the posts scheduled for publishing
 * and the outbox of posts recorded instead of published.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/** A calendar: its settings and the revision of its current plan. */
export const SocialCalendar = defineEntity({
  name: "SocialCalendar",
  tableName: "social_calendar",
  properties: {
    calendarId: p.string().length(64).primary(),
    name: p.string().length(200),
    timeZone: p.string().length(64),
    /** Revision of the current plan (1 for the first). */
    revision: p.integer(),
    updatedAt: p.datetime(),
  },
});

/** One stored plan of a calendar, with the response the call that made it returned. */
export const SocialCalendarPlan = defineEntity({
  name: "SocialCalendarPlan",
  tableName: "social_calendar_plan",
  uniques: [{ properties: ["calendarId", "revision"] }],
  properties: {
    id: p.uuid().primary(),
    calendarId: p.string().length(64),
    revision: p.integer(),
    /** The call's idempotency key. */
    requestId: p.uuid().unique(),
    /** SHA-256 of the request, to refuse the same request id with other input. */
    requestHash: p.string().length(64),
    /** PlanContentCalendarResponse, binary protobuf. */
    response: p.blob(),
    createdAt: p.datetime(),
  },
});

/**
 * Where a scheduled post stands. `scheduled`: waiting for its due time; `publishing`: claimed by a
 * worker, outcome not recorded yet; `published`: the adapter took it; `failed`: refused or out of
 * attempts; `unknown`: claimed but its outcome was never recorded (a crash, or an answer lost
 * mid-request), never published again automatically; `cancelled`: a later plan dropped it.
 */
export type ScheduledPostStatus = "scheduled" | "publishing" | "published" | "failed" | "unknown" | "cancelled";

/**
 * One post to publish at a due time. The unique post key (the slot's stable UID: calendar, item and
 * channel) is what makes publishing at most once: a re-plan moves a post that is still `scheduled`
 * and leaves every other state alone, and a worker publishes only a post it claimed.
 */
export const SocialScheduledPost = defineEntity({
  name: "SocialScheduledPost",
  tableName: "social_scheduled_post",
  indexes: [{ properties: ["status", "dueAt"] }],
  properties: {
    id: p.uuid().primary(),
    postKey: p.string().length(120).unique(),
    calendarId: p.string().length(64).index(),
    /** Plan revision that last scheduled it. */
    revision: p.integer(),
    itemId: p.string().length(128),
    channelId: p.string().length(64),
    /** Platform name, for example `linkedin`. */
    platform: p.string().length(20),
    dueAt: p.datetime(),
    text: p.text(),
    linkUrl: p.text().default(""),
    hashtags: p.json<string[]>(),
    status: p.string().length(12).$type<ScheduledPostStatus>(),
    /** Publication attempts started. */
    attempts: p.integer().default(0),
    /** Token of the current claim: only its holder records the outcome. */
    claimToken: p.uuid().nullable(),
    claimedAt: p.datetime().nullable(),
    /** Node id of the worker holding the claim. */
    claimedBy: p.string().length(64).default(""),
    /** Adapter that took the post: `outbox` or `webhook`. */
    adapter: p.string().length(20).default(""),
    /** The adapter's id of the post (outbox row, or the webhook receiver's answer). */
    externalId: p.string().length(255).default(""),
    /** Last error or the reason for `unknown`. */
    error: p.text().default(""),
    publishedAt: p.datetime().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** A row of {@link SocialScheduledPost}. */
export type SocialScheduledPostRow = InferEntity<typeof SocialScheduledPost>;

/** A post the outbox adapter recorded: exactly the body a publishing webhook would have been sent. */
export const SocialOutboxPost = defineEntity({
  name: "SocialOutboxPost",
  tableName: "social_outbox_post",
  properties: {
    /** The scheduled post: one outbox row per post, whatever the retries. */
    postId: p.uuid().primary(),
    postKey: p.string().length(120),
    channelId: p.string().length(64).index(),
    platform: p.string().length(20),
    /** The JSON body, as it would be sent. */
    body: p.text(),
    recordedAt: p.datetime(),
  },
});

/** Social entities. */
export const socialEntities = [SocialCalendar, SocialCalendarPlan, SocialScheduledPost, SocialOutboxPost] as const;
