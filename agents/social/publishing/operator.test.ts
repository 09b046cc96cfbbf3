import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CancelScheduledPostRequestSchema,
  ListScheduledPostsRequestSchema,
  PlanContentCalendarRequestSchema,
  PostResolution,
  ResolveScheduledPostRequestSchema,
  ScheduledPostStatus,
  SocialPlatform,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { planContentCalendar } from "../skills/plan-content-calendar.ts";
import { createOutboxAdapter, type PublishAdapter } from "./adapters.ts";
import { cancelScheduledPost, listScheduledPosts, type OperatorDeps, resolveScheduledPost } from "./operator.ts";
import { claimDuePosts, publishDue } from "./worker.ts";

const log = createLogger("error");
const planned = new Date("2025-03-20T12:00:00Z");
const ts = (d: Date) => timestampFromDate(d);
/** Due times of a daily 10:00 (America/Chicago, CDT) channel from 2025-04-01. */
const dueOn = (day: number) => new Date(Date.UTC(2025, 3, day, 15));

async function seed(db: Database, calendarId: string, n: number) {
  const init: MessageInitShape<typeof PlanContentCalendarRequestSchema> = {
    requestId: randomUUID(),
    calendarId,
    timeZone: "America/Chicago",
    window: { start: ts(new Date("2025-04-01T05:00:00Z")), end: ts(new Date("2025-05-31T05:00:00Z")) },
    channels: [{ channelId: "x", platform: SocialPlatform.X, rrule: "FREQ=DAILY;BYHOUR=10" }],
    items: Array.from({ length: n }, (_, i) => ({
      itemId: `item-${i}`,
      title: `Open house ${i}`,
      channelIds: ["x"],
      url: `https://example.com/open-house/${i}`,
    })),
  };
  await planContentCalendar({ db, now: () => planned }, create(PlanContentCalendarRequestSchema, init));
}

describe("the publishing operator's API", () => {
  let handle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let deps: OperatorDeps;
  const list = (init: MessageInitShape<typeof ListScheduledPostsRequestSchema>) =>
    listScheduledPosts(deps, create(ListScheduledPostsRequestSchema, init));
  const cancel = (postId: string) => cancelScheduledPost(deps, create(CancelScheduledPostRequestSchema, { postId }));
  const resolve = (init: MessageInitShape<typeof ResolveScheduledPostRequestSchema>) =>
    resolveScheduledPost(deps, create(ResolveScheduledPostRequestSchema, init));
  const published: string[] = [];
  const recording = (at: Date): PublishAdapter => {
    const inner = createOutboxAdapter(db, () => at);
    return {
      name: inner.name,
      publish: (post) => {
        published.push(post.postKey);
        return inner.publish(post);
      },
    };
  };
  const publishAt = (at: Date) =>
    publishDue({ db, adapter: recording(at), log, now: () => at, nodeId: "node-a", batch: 10 });

  beforeAll(async () => {
    handle = await isolatedDatabase();
    db = await openDatabase({ url: handle.url, domain: domains.operations, log });
    deps = { db, now: () => new Date("2025-04-02T00:00:00Z") };
    await seed(db, "spring", 5);
    await seed(db, "other", 2);
  });
  afterAll(async () => {
    await db?.close();
    await handle?.drop();
  });

  it("pages through a calendar's posts by due time, with stable tokens, and filters by state and due range", async () => {
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await list({ calendarId: "spring", pageSize: 2, pageToken: token });
      seen.push(...page.posts.map((p) => p.postId));
      expect(page.posts.every((p) => p.calendarId === "spring" && p.status === ScheduledPostStatus.SCHEDULED)).toBe(
        true,
      );
      token = page.nextPageToken;
      pages += 1;
    } while (token !== "");
    expect(pages).toBe(3);
    expect(new Set(seen).size).toBe(5);
    const all = await list({ calendarId: "spring" });
    expect(all.posts.map((p) => timestampDate(p.dueAt ?? ts(new Date(0))).toISOString())).toEqual(
      [1, 2, 3, 4, 5].map((d) => dueOn(d).toISOString()),
    );
    expect(all.posts[0]).toMatchObject({ itemId: "item-0", channelId: "x", platform: "x", attempts: 0 });
    expect(all.posts[0]?.linkUrl).toContain("utm_campaign=spring");
    // Both calendars' posts due on April 1 and 2.
    const early = await list({ due: { start: ts(dueOn(1)), end: ts(dueOn(3)) } });
    expect(early.posts).toHaveLength(4);
    expect((await list({ statuses: [ScheduledPostStatus.PUBLISHED] })).posts).toEqual([]);
    await expect(list({ pageToken: "not-a-token" })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it("cancels a waiting post, which then is never published; twice changes nothing", async () => {
    const [first] = (await list({ calendarId: "other" })).posts;
    if (first === undefined) throw new Error("no post");
    const cancelled = await cancel(first.postId);
    expect(cancelled.post?.status).toBe(ScheduledPostStatus.CANCELLED);
    const again = await cancel(first.postId);
    expect(again.post?.updatedAt).toEqual(cancelled.post?.updatedAt);
    while ((await publishAt(new Date("2025-04-03T00:00:00Z"))) > 0) {}
    expect(published).not.toContain(first.postKey);
    const [, second] = (await list({ calendarId: "other" })).posts;
    expect(second?.status).toBe(ScheduledPostStatus.PUBLISHED);
    // A published post cannot be cancelled; nothing changes.
    await expect(cancel(second?.postId ?? "")).rejects.toBeInstanceOf(FailedPreconditionError);
    expect((await list({ calendarId: "other" })).posts[1]?.status).toBe(ScheduledPostStatus.PUBLISHED);
    await expect(cancel(randomUUID())).rejects.toBeInstanceOf(NotFoundError);
  });

  it("settles posts whose outcome was lost: published, republished once, or given up", async () => {
    // Three posts of April 3–5 are claimed by a worker that dies; after the claim timeout they are unknown.
    const at = new Date("2025-04-06T00:00:00Z");
    const claimed = await claimDuePosts({ db, now: () => at, nodeId: "node-dead", batch: 3 });
    expect(claimed).toHaveLength(3);
    await publishAt(new Date(at.getTime() + 10 * 60_000));
    const unknown = (await list({ calendarId: "spring", statuses: [ScheduledPostStatus.UNKNOWN] })).posts;
    expect(unknown.map((p) => p.itemId)).toEqual(["item-2", "item-3", "item-4"]);
    const [a, b, c] = unknown as [(typeof unknown)[0], (typeof unknown)[0], (typeof unknown)[0]];

    // The operator found the first on the platform.
    const one = await resolve({ postId: a.postId, resolution: PostResolution.PUBLISHED, externalId: "x-123" });
    expect(one.post).toMatchObject({ status: ScheduledPostStatus.PUBLISHED, adapter: "operator", externalId: "x-123" });
    expect(
      (await resolve({ postId: a.postId, resolution: PostResolution.PUBLISHED, externalId: "x-123" })).post?.updatedAt,
    ).toEqual(one.post?.updatedAt);
    // Not the second: it is published again, exactly once.
    const before = published.length;
    const two = await resolve({ postId: b.postId, resolution: PostResolution.REPUBLISH, note: "not on X" });
    expect(two.post).toMatchObject({ status: ScheduledPostStatus.SCHEDULED, attempts: 0, error: "not on X" });
    await expect(resolve({ postId: b.postId, resolution: PostResolution.REPUBLISH })).rejects.toBeInstanceOf(
      FailedPreconditionError,
    );
    const later = new Date(at.getTime() + 20 * 60_000);
    while ((await publishAt(later)) > 0) {}
    expect(published.slice(before)).toEqual([b.postKey]);
    // The third is given up.
    const three = await resolve({ postId: c.postId, resolution: PostResolution.FAILED });
    expect(three.post).toMatchObject({
      status: ScheduledPostStatus.FAILED,
      error: "resolved as not published by an operator",
    });
    while ((await publishAt(new Date(later.getTime() + 86_400_000))) > 0) {}
    expect(published).not.toContain(c.postKey);
    expect(published).not.toContain(a.postKey);

    // Only unknown (or, to republish, failed) posts are resolved; bad input changes nothing.
    const [waiting] = (await list({ calendarId: "spring", statuses: [ScheduledPostStatus.PUBLISHED] })).posts;
    await expect(resolve({ postId: waiting?.postId ?? "", resolution: PostResolution.FAILED })).rejects.toBeInstanceOf(
      FailedPreconditionError,
    );
    await expect(
      resolve({ postId: c.postId, resolution: PostResolution.REPUBLISH, externalId: "x-9" }),
    ).rejects.toMatchObject({ field: "external_id" });
    expect(
      (await list({ calendarId: "spring", statuses: [ScheduledPostStatus.FAILED] })).posts.map((p) => p.postId),
    ).toEqual([c.postId]);
  });
});
