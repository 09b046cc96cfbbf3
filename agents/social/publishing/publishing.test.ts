import { createHmac, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PlanContentCalendarRequestSchema, SocialPlatform } from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { freePort } from "../../../test/support/harness.ts";
import { SocialOutboxPost, SocialScheduledPost } from "../entities.ts";
import { planContentCalendar } from "../skills/plan-content-calendar.ts";
import {
  createOutboxAdapter,
  createWebhookAdapter,
  type OutgoingPost,
  type PublishAdapter,
  postBody,
  verifyWebhookSignature,
} from "./adapters.ts";
import { claimDuePosts, type PublisherOptions, publishDue } from "./worker.ts";

const log = createLogger("error");
const planned = new Date("2025-03-20T12:00:00Z");
const later = new Date("2025-06-01T12:00:00Z");
const ts = (d: Date) => timestampFromDate(d);

/** Plans `n` items on a daily X channel of calendar `calendarId`: n scheduled posts, all due by `later`. */
async function seed(db: Database, calendarId: string, n: number, requestId = randomUUID()) {
  const init: MessageInitShape<typeof PlanContentCalendarRequestSchema> = {
    requestId,
    calendarId,
    timeZone: "America/Chicago",
    window: { start: ts(new Date("2025-04-01T05:00:00Z")), end: ts(new Date("2025-05-31T05:00:00Z")) },
    channels: [{ channelId: "x", platform: SocialPlatform.X, rrule: "FREQ=DAILY;BYHOUR=10" }],
    items: Array.from({ length: n }, (_, i) => ({
      itemId: `item-${i}`,
      title: `Community spotlight ${i}`,
      channelIds: ["x"],
      url: `https://example.com/spotlight/${i}`,
    })),
  };
  return planContentCalendar({ db, now: () => planned }, create(PlanContentCalendarRequestSchema, init));
}

/** An adapter that records every call and delegates to `inner`, yielding first so workers interleave. */
function counting(inner: PublishAdapter) {
  const calls: string[] = [];
  const adapter: PublishAdapter = {
    name: inner.name,
    async publish(post) {
      calls.push(post.postKey);
      await new Promise((r) => setImmediate(r));
      return inner.publish(post);
    },
  };
  return { adapter, calls };
}

describe("scheduled publishing on PostgreSQL", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let db2: Database;
  const rows = (calendarId: string) =>
    db.fork().find(SocialScheduledPost, { calendarId }, { orderBy: { dueAt: "asc" } });

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
    // A second pool, as a second server instance would have.
    db2 = await openDatabase({ url: dbHandle.url, domain: domains.operations, log, migrate: false });
  });
  afterAll(async () => {
    await db2?.close();
    await db?.close();
    await dbHandle?.drop();
  });

  const options = (d: Database, adapter: PublishAdapter, nodeId: string, now = later): PublisherOptions => ({
    db: d,
    adapter,
    log,
    now: () => now,
    nodeId,
    batch: 7,
  });

  it("publishes each due post exactly once with two workers racing, and a retry round adds nothing", async () => {
    await seed(db, "race", 40);
    const one = counting(createOutboxAdapter(db, () => later));
    const two = counting(createOutboxAdapter(db2, () => later));
    const drain = async (o: PublisherOptions) => {
      while ((await publishDue(o)) > 0) {}
    };
    await Promise.all([drain(options(db, one.adapter, "node-a")), drain(options(db2, two.adapter, "node-b"))]);
    const calls = [...one.calls, ...two.calls];
    expect(calls).toHaveLength(40);
    expect(new Set(calls).size).toBe(40);
    expect(one.calls.length).toBeGreaterThan(0);
    expect(two.calls.length).toBeGreaterThan(0);
    const posts = await rows("race");
    expect(posts.every((p) => p.status === "published" && p.adapter === "outbox" && p.attempts === 1)).toBe(true);
    const outbox = await db.fork().find(SocialOutboxPost, { postId: { $in: posts.map((p) => p.id) } });
    expect(outbox).toHaveLength(40);
    // The outbox holds exactly the body a webhook would get.
    const first = posts[0] as (typeof posts)[number];
    const body = JSON.parse(outbox.find((o) => o.postId === first.id)?.body ?? "{}");
    expect(body).toEqual({
      postKey: first.postKey,
      calendarId: "race",
      itemId: first.itemId,
      channelId: "x",
      platform: "x",
      text: first.text,
      link: first.linkUrl,
      hashtags: [],
      scheduledFor: first.dueAt.toISOString(),
    });
    expect(await publishDue(options(db, one.adapter, "node-a"))).toBe(0);
    expect(one.calls.length + two.calls.length).toBe(40);
  });

  it("publishes nothing before it is due", async () => {
    await seed(db, "early", 3);
    const probe = counting(createOutboxAdapter(db, () => planned));
    expect(await publishDue(options(db, probe.adapter, "node-a", new Date("2025-04-01T14:59:59Z")))).toBe(0);
    expect(await publishDue(options(db, probe.adapter, "node-a", new Date("2025-04-01T15:00:00Z")))).toBe(1);
    expect(probe.calls).toEqual([(await rows("early"))[0]?.postKey]);
  });

  it("a replayed plan request schedules nothing twice", async () => {
    const requestId = randomUUID();
    await seed(db, "replayed", 5, requestId);
    await seed(db, "replayed", 5, requestId);
    expect(await rows("replayed")).toHaveLength(5);
    const probe = counting(createOutboxAdapter(db, () => later));
    while ((await publishDue(options(db, probe.adapter, "node-a"))) > 0) {}
    const keys = new Set((await rows("replayed")).map((p) => p.postKey));
    expect(probe.calls.filter((k) => keys.has(k))).toHaveLength(5);
  });

  it("gives back the claims it has not tried when it stops mid-batch", async () => {
    await seed(db, "stopping", 3);
    const keys = new Set((await rows("stopping")).map((p) => p.postKey));
    // Publish everything else first, so the round below claims only this calendar's posts.
    const other = counting(createOutboxAdapter(db, () => later));
    await publishDue(options(db, other.adapter, "node-a", new Date("2025-03-31T00:00:00Z")));
    const probe = counting(createOutboxAdapter(db, () => later));
    const claimedNow = await publishDue(options(db, probe.adapter, "node-a"), () =>
      probe.calls.some((k) => keys.has(k)),
    );
    expect(claimedNow).toBeGreaterThanOrEqual(3);
    const posts = await rows("stopping");
    expect(posts.map((p) => [p.status, p.attempts])).toEqual([
      ["published", 1],
      ["scheduled", 0],
      ["scheduled", 0],
    ]);
    while ((await publishDue(options(db, probe.adapter, "node-a"))) > 0) {}
    expect(probe.calls.filter((k) => keys.has(k))).toHaveLength(3);
  });

  it("leaves a post claimed by a worker that died in the unknown state, never publishing it again", async () => {
    await seed(db, "crash", 2);
    // The worker claims both, then dies before publishing (nothing records an outcome).
    const claimed = await claimDuePosts({ db, now: () => later, nodeId: "node-dead", batch: 1 });
    expect(claimed).toHaveLength(1);
    const probe = counting(createOutboxAdapter(db, () => later));
    // Before the claim times out, the other post is published and the claimed one is left alone.
    await publishDue(options(db, probe.adapter, "node-b"));
    const minutesLater = new Date(later.getTime() + 6 * 60_000);
    await publishDue(options(db, probe.adapter, "node-b", minutesLater));
    await publishDue(options(db, probe.adapter, "node-b", new Date(later.getTime() + 86_400_000)));
    const posts = await rows("crash");
    const dead = posts.find((p) => p.id === claimed[0]?.row.id);
    expect(dead?.status).toBe("unknown");
    expect(dead?.error).toMatch(/node-dead .*not published again/);
    expect(probe.calls).not.toContain(dead?.postKey);
    const other = posts.find((p) => p.id !== dead?.id);
    expect(other?.status).toBe("published");
    expect(probe.calls.filter((k) => k === other?.postKey)).toHaveLength(1);
  });
});

interface Received {
  headers: IncomingMessage["headers"];
  body: string;
}

describe("webhook adapter against a local server", () => {
  const secret = "s3cret-for-tests";
  let server: Server;
  let url: string;
  const received: Received[] = [];
  let answer: (res: ServerResponse, n: number) => void = (res) => res.end();

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString("utf8");
      });
      req.on("end", () => {
        received.push({ headers: req.headers, body });
        // The receiver's check: the signature over timestamp and body.
        const ok = verifyWebhookSignature(
          secret,
          String(req.headers["x-mesh-timestamp"]),
          String(req.headers["x-mesh-signature"]),
          body,
          Math.floor(Date.now() / 1000),
        );
        if (!ok) {
          res.statusCode = 401;
          res.end("bad signature");
          return;
        }
        answer(res, received.length);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/social`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const post: OutgoingPost = {
    id: randomUUID(),
    postKey: "abc@social.marketing-mesh",
    calendarId: "austin-q2",
    itemId: "austin-guide",
    channelId: "x",
    platform: "x",
    text: "Choosing Assisted Living in Austin, TX — 費用 🏡",
    link: "https://example.com/g?utm_source=x",
    hashtags: ["#Austin"],
    scheduledFor: new Date("2025-04-01T15:00:00Z"),
  };

  it("signs the body with HMAC-SHA256 over timestamp.body, which the server verifies", async () => {
    received.length = 0;
    answer = (res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ id: "post-991" }));
    };
    const adapter = createWebhookAdapter({ url, secret, now: () => new Date() });
    expect(await adapter.publish(post)).toEqual({ externalId: "post-991" });
    const got = received[0] as Received;
    expect(got.body).toBe(postBody(post));
    expect(got.headers["content-type"]).toBe("application/json");
    expect(got.headers["idempotency-key"]).toBe(post.postKey);
    const t = String(got.headers["x-mesh-timestamp"]);
    const expected = createHmac("sha256", secret).update(`${t}.${got.body}`).digest("hex");
    expect(got.headers["x-mesh-signature"]).toBe(`v1=${expected}`);
    // A tampered body, another secret or a stale timestamp do not verify.
    const sig = String(got.headers["x-mesh-signature"]);
    const now = Number(t);
    expect(verifyWebhookSignature(secret, t, sig, `${got.body} `, now)).toBe(false);
    expect(verifyWebhookSignature("other", t, sig, got.body, now)).toBe(false);
    expect(verifyWebhookSignature(secret, t, sig, got.body, now + 301)).toBe(false);
  });

  it("is refused by the server with a wrong secret", async () => {
    const adapter = createWebhookAdapter({ url, secret: "wrong", now: () => new Date() });
    await expect(adapter.publish(post)).rejects.toMatchObject({ kind: "rejected" });
  });

  describe("through the worker", () => {
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
    const only = async (calendarId: string) => db.fork().findOneOrFail(SocialScheduledPost, { calendarId });
    const run = (adapter: PublishAdapter, now: Date) =>
      publishDue({ db, adapter, log, now: () => now, nodeId: "node-a", retryDelayMs: () => 60_000 });

    it("retries after a 503, with the same idempotency key, and records the receiver's id", async () => {
      await seed(db, "flaky", 1);
      received.length = 0;
      answer = (res, n) => {
        res.statusCode = n === 1 ? 503 : 200;
        res.end(n === 1 ? "busy" : JSON.stringify({ id: "p-2" }));
      };
      const adapter = createWebhookAdapter({ url, secret, now: () => new Date() });
      await run(adapter, later);
      let row = await only("flaky");
      expect(row.status).toBe("scheduled");
      expect(row.error).toMatch(/503/);
      expect(row.dueAt.toISOString()).toBe(new Date(later.getTime() + 60_000).toISOString());
      await run(adapter, later); // not due again yet
      expect(received).toHaveLength(1);
      await run(adapter, new Date(later.getTime() + 60_000));
      row = await only("flaky");
      expect(row.status).toBe("published");
      expect(row.externalId).toBe("p-2");
      expect(row.attempts).toBe(2);
      expect(received.map((r) => r.headers["idempotency-key"])).toEqual([row.postKey, row.postKey]);
    });

    it("does not retry a post the receiver refused (4xx)", async () => {
      await seed(db, "refused", 1);
      received.length = 0;
      answer = (res) => {
        res.statusCode = 422;
        res.end("text too long");
      };
      const adapter = createWebhookAdapter({ url, secret, now: () => new Date() });
      await run(adapter, later);
      await run(adapter, new Date(later.getTime() + 86_400_000));
      const row = await only("refused");
      expect(row.status).toBe("failed");
      expect(row.error).toMatch(/422: text too long/);
      expect(received).toHaveLength(1);
    });

    it("marks a post whose answer never came as unknown and does not send it again", async () => {
      await seed(db, "silent", 1);
      received.length = 0;
      answer = () => {}; // never answers
      const adapter = createWebhookAdapter({ url, secret, timeoutMs: 300, now: () => new Date() });
      await run(adapter, later);
      await run(adapter, new Date(later.getTime() + 86_400_000));
      const row = await only("silent");
      expect(row.status).toBe("unknown");
      expect(received).toHaveLength(1);
    });

    it("retries an unreachable receiver up to the attempt limit, then fails", async () => {
      await seed(db, "down", 1);
      const closed = await freePort();
      const adapter = createWebhookAdapter({ url: `http://127.0.0.1:${closed}/`, secret, now: () => new Date() });
      for (let i = 0; i < 7; i++) await run(adapter, new Date(later.getTime() + i * 86_400_000));
      const row = await only("down");
      expect(row.status).toBe("failed");
      expect(row.attempts).toBe(5);
      expect(row.error).toMatch(/ECONNREFUSED.*after 5 attempts/);
    });
  });
});
