import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createContextValues, type ServiceImpl } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AdaptSocialContentRequestSchema,
  PlanContentCalendarRequestSchema,
  SocialPlatform,
  type SocialService,
} from "../../gen/mesh/social/v1/social_service_pb.ts";
import { type Database, openDatabase } from "../../lib/db/index.ts";
import { createLogger } from "../../lib/log/index.ts";
import { createCatalog } from "../../lib/registry/index.ts";
import type { AgentDeps, CallContext } from "../../lib/server/index.ts";
import { domains } from "../../servers/domains.ts";
import { eventually, isolatedDatabase } from "../../test/support/backbone.ts";
import { SocialOutboxPost, SocialScheduledPost } from "./entities.ts";
import { publishingAdapter, socialAgent } from "./index.ts";

const log = createLogger("error");

describe("socialAgent", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
  });
  afterAll(async () => {
    await db?.close();
    await dbHandle?.drop();
  });

  it("serves both skills and publishes due posts from its background worker, into the outbox by default", async () => {
    let clock = new Date("2025-03-20T12:00:00Z");
    const deps = {
      db,
      log,
      now: () => clock,
      nodeId: "node-test",
      catalog: createCatalog(),
      config: { skillTimeBudgetMs: 60_000 },
    } as unknown as AgentDeps;
    const parts = await socialAgent.start(deps);
    const impl = parts.services?.[0]?.impl as ServiceImpl<typeof SocialService>;
    const ctx: CallContext = {
      signal: new AbortController().signal,
      timeoutMs: () => undefined,
      values: createContextValues(),
    };
    try {
      const adapted = await impl.adaptSocialContent(
        create(AdaptSocialContentRequestSchema, {
          content: { title: "Choosing Assisted Living in Austin, TX", url: "https://example.com/g" },
          platforms: [SocialPlatform.BLUESKY],
        }),
        ctx as never,
      );
      expect(adapted.posts?.[0]?.text).toBe("Choosing Assisted Living in Austin, TX\n\nhttps://example.com/g");
      const plan = await impl.planContentCalendar(
        create(PlanContentCalendarRequestSchema, {
          requestId: randomUUID(),
          calendarId: "agent",
          timeZone: "America/Chicago",
          window: {
            start: timestampFromDate(new Date("2025-04-01T05:00:00Z")),
            end: timestampFromDate(new Date("2025-04-08T05:00:00Z")),
          },
          channels: [{ channelId: "bsky", platform: SocialPlatform.BLUESKY, rrule: "FREQ=DAILY;BYHOUR=12" }],
          items: [{ itemId: "a", title: "Open house on Saturday", channelIds: ["bsky"] }],
        }),
        ctx as never,
      );
      expect(plan.slots).toHaveLength(1);
      clock = new Date("2025-04-02T00:00:00Z");
      const row = await eventually(async () => {
        const p = await db.fork().findOne(SocialScheduledPost, { calendarId: "agent" });
        return p?.status === "published" ? p : undefined;
      });
      expect(row.adapter).toBe("outbox");
      const outbox = await db.fork().findOneOrFail(SocialOutboxPost, { postId: row.id });
      expect(JSON.parse(outbox.body).text).toBe("Open house on Saturday");
    } finally {
      for (const r of parts.running ?? []) await r.stop();
    }
  });

  it("publishes through the webhook when the configuration names one", () => {
    const adapter = publishingAdapter({
      db,
      now: () => new Date(),
      config: {
        socialWebhookUrl: "http://127.0.0.1:9/hook",
        socialWebhookSecret: "k",
      } as unknown as AgentDeps["config"],
    });
    expect(adapter.name).toBe("webhook");
    expect(publishingAdapter({ db, now: () => new Date(), config: {} as AgentDeps["config"] }).name).toBe("outbox");
  });
});
