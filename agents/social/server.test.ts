/**
 * The Social agent on a real operations server: both skills over Connect with the server's
 * validation and idempotency, and a scheduled post that survives `kill -9` of the server between
 * planning and its due time — the due time is in PostgreSQL, not in a timer.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AdaptSocialContentRequestSchema,
  PlanContentCalendarRequestSchema,
  SocialPlatform,
  SocialService,
} from "../../gen/mesh/social/v1/social_service_pb.ts";
import { eventually } from "../../test/support/backbone.ts";
import { expectCode } from "../../test/support/expect.ts";
import { type Harness, startHarness } from "../../test/support/harness.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ servers: ["operations"] });
});
afterAll(async () => {
  await h?.close();
});

/** Rows of the run's operations schema. */
async function query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: h.databaseUrl });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

describe("Social agent over the wire", () => {
  it("adapts the contract's example and names the field of bad input", async () => {
    const social = h.client("operations", SocialService);
    const res = await social.adaptSocialContent(
      create(AdaptSocialContentRequestSchema, {
        content: {
          title: "Choosing Assisted Living in Austin, TX",
          summary: "What assisted living includes, what it costs in Austin and the questions to ask on a tour.",
          url: "https://example.com/guides/assisted-living-austin",
          hashtags: ["AssistedLiving", "Austin", "SeniorCare"],
          callToAction: "Read the guide",
        },
        platforms: [SocialPlatform.X, SocialPlatform.LINKEDIN, SocialPlatform.BLUESKY],
        utm: { campaign: "austin-guide-2025" },
      }),
    );
    expect(res.posts.map((p) => p.withinLimit)).toEqual([true, true, true]);
    expect(res.posts[0]?.weightedLength).toBe(195);
    await expectCode(
      social.adaptSocialContent(create(AdaptSocialContentRequestSchema, { content: { title: "T" }, platforms: [] })),
      Code.InvalidArgument,
      /platforms/,
    );
  });

  it("plans, replays from the stored plan, and publishes a post due after a kill -9 and restart", async () => {
    const social = h.client("operations", SocialService);
    // A daily slot a few seconds from now (UTC), so the post falls due while the server is down.
    const due = new Date(Math.ceil((Date.now() + 6000) / 1000) * 1000);
    const rule = `FREQ=DAILY;BYHOUR=${due.getUTCHours()};BYMINUTE=${due.getUTCMinutes()};BYSECOND=${due.getUTCSeconds()}`;
    const req = create(PlanContentCalendarRequestSchema, {
      requestId: randomUUID(),
      calendarId: "restart",
      timeZone: "UTC",
      window: {
        start: timestampFromDate(new Date(due.getTime() - 1000)),
        end: timestampFromDate(new Date(due.getTime() + 3_600_000)),
      },
      channels: [{ channelId: "bsky", platform: SocialPlatform.BLUESKY, rrule: rule }],
      items: [
        {
          itemId: "open-house",
          title: "Open house this Saturday",
          channelIds: ["bsky"],
          url: "https://example.com/open-house",
        },
      ],
    });
    const plan = await social.planContentCalendar(req);
    expect(plan.slots.map((s) => s.start?.seconds)).toEqual([BigInt(due.getTime() / 1000)]);
    const replay = await social.planContentCalendar(req);
    expect(replay.revision).toBe(plan.revision);
    expect(replay.icalendar).toBe(plan.icalendar);
    await expectCode(
      social.planContentCalendar(
        create(PlanContentCalendarRequestSchema, { ...req, requestId: randomUUID(), timeZone: "Mars/Olympus" }),
      ),
      Code.InvalidArgument,
      /time_zone/,
    );

    expect(await h.stop("operations", "SIGKILL")).toBeNull();
    const [waiting] = await query<{ status: string }>(
      `select status from operations.social_scheduled_post where calendar_id = 'restart'`,
    );
    expect(waiting?.status).toBe("scheduled");
    await h.start("operations");
    const published = await eventually(async () => {
      const [row] = await query<{ status: string; id: string; published_at: Date }>(
        `select id, status, published_at from operations.social_scheduled_post where calendar_id = 'restart'`,
      );
      return row?.status === "published" ? row : undefined;
    }, 30_000);
    expect(published.published_at.getTime()).toBeGreaterThanOrEqual(due.getTime());
    const outbox = await query<{ body: string }>(`select body from operations.social_outbox_post where post_id = $1`, [
      published.id,
    ]);
    expect(outbox).toHaveLength(1);
    expect(JSON.parse(outbox[0]?.body ?? "{}").link).toBe(
      "https://example.com/open-house?utm_source=bluesky&utm_medium=social&utm_campaign=restart&utm_content=open-house",
    );
  });
});
