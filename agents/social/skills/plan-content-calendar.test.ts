import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Priority } from "../../../gen/mesh/common/v1/types_pb.ts";
import { PlanContentCalendarRequestSchema, SocialPlatform } from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { InvalidInputError, toConnectError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { failure } from "../../../test/support/expect.ts";
import { SocialCalendar, SocialCalendarPlan, SocialScheduledPost } from "../entities.ts";
import { planContentCalendar } from "./plan-content-calendar.ts";

const log = createLogger("error");
type Init = MessageInitShape<typeof PlanContentCalendarRequestSchema>;
const ts = (s: string) => timestampFromDate(new Date(s));

function request(init: Partial<Init> = {}) {
  const base: Init = {
    requestId: randomUUID(),
    calendarId: "austin-q2",
    name: "Austin Q2 social calendar",
    timeZone: "America/Chicago",
    window: { start: ts("2025-04-01T05:00:00Z"), end: ts("2025-05-01T05:00:00Z") },
    channels: [
      { channelId: "x", platform: SocialPlatform.X, rrule: "FREQ=WEEKLY;BYDAY=TU,TH;BYHOUR=10;BYMINUTE=0" },
      { channelId: "linkedin", platform: SocialPlatform.LINKEDIN, rrule: "FREQ=WEEKLY;BYDAY=WE;BYHOUR=9;BYMINUTE=30" },
      { channelId: "newsletter", rrule: "FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=8" },
    ],
    blackouts: [{ startDate: "2025-04-18", endDate: "2025-04-20", reason: "Easter weekend" }],
    items: [
      {
        itemId: "austin-guide",
        title: "Choosing Assisted Living in Austin, TX",
        channelIds: ["x", "linkedin", "newsletter"],
        priority: Priority.URGENT,
        dueBy: ts("2025-04-15T05:00:00Z"),
        url: "https://example.com/guides/austin?ref=home",
      },
      { itemId: "memory-care-wing", title: "New memory care wing opens in North Austin", channelIds: ["x"] },
    ],
  };
  return create(PlanContentCalendarRequestSchema, { ...base, ...init } as Init);
}

const onX: Init["items"] = [{ itemId: "a", title: "A", channelIds: ["x"] }];

describe("PlanContentCalendar on PostgreSQL", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let clock = new Date("2025-03-20T12:00:00Z");
  const deps = () => ({ db, now: () => clock });
  const posts = (calendarId = "austin-q2") =>
    db.fork().find(SocialScheduledPost, { calendarId }, { orderBy: { dueAt: "asc", postKey: "asc" } });

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
  });
  afterAll(async () => {
    await db?.close();
    await dbHandle?.drop();
  });

  it("stores the plan, exports it and schedules one post per social slot", async () => {
    const req = request();
    const res = await planContentCalendar(deps(), req);
    expect(res.calendarId).toBe("austin-q2");
    expect(res.revision).toBe(1);
    expect(res.slots.map((s) => [s.itemId, s.channelId, s.localStart])).toEqual([
      ["austin-guide", "newsletter", "2025-04-01T08:00:00-05:00"],
      ["austin-guide", "x", "2025-04-01T10:00:00-05:00"],
      ["austin-guide", "linkedin", "2025-04-02T09:30:00-05:00"],
      ["memory-care-wing", "x", "2025-04-03T10:00:00-05:00"],
    ]);
    expect(res.icalendar.match(/BEGIN:VEVENT/g)).toHaveLength(4);
    const scheduled = await posts();
    // The newsletter has no platform: it is in the calendar, not published.
    expect(scheduled.map((p) => [p.itemId, p.channelId, p.status, p.dueAt.toISOString()])).toEqual([
      ["austin-guide", "x", "scheduled", "2025-04-01T15:00:00.000Z"],
      ["austin-guide", "linkedin", "scheduled", "2025-04-02T14:30:00.000Z"],
      ["memory-care-wing", "x", "scheduled", "2025-04-03T15:00:00.000Z"],
    ]);
    const first = scheduled[0];
    expect(first?.postKey).toBe(res.slots[1]?.uid);
    expect(first?.linkUrl).toBe(
      "https://example.com/guides/austin?ref=home&utm_source=x&utm_medium=social&utm_campaign=austin-q2&utm_content=austin-guide",
    );
    expect(first?.text).toBe(`Choosing Assisted Living in Austin, TX\n\n${first?.linkUrl}`);
    const cal = await db.fork().findOneOrFail(SocialCalendar, { calendarId: "austin-q2" });
    expect(cal.revision).toBe(1);
  });

  it("answers a replayed request_id with the stored plan and schedules nothing again", async () => {
    const req = request({ calendarId: "replay" });
    const first = await planContentCalendar(deps(), req);
    clock = new Date("2025-03-21T12:00:00Z");
    const again = await planContentCalendar(deps(), req);
    expect(again).toEqual(first);
    expect(await db.fork().count(SocialCalendarPlan, { calendarId: "replay" })).toBe(1);
    expect(await posts("replay")).toHaveLength(3);
    const err = await failure(
      planContentCalendar(deps(), create(PlanContentCalendarRequestSchema, { ...req, name: "Other" })),
    );
    expect(toConnectError(err, () => undefined).code).toBe(Code.AlreadyExists);
  });

  it("re-plans: a new revision moves waiting posts, cancels dropped ones, leaves published ones alone", async () => {
    clock = new Date("2025-03-20T12:00:00Z");
    await planContentCalendar(deps(), request({ calendarId: "replan" }));
    const before = await posts("replan");
    const published = before.find((p) => p.itemId === "austin-guide" && p.channelId === "linkedin");
    await db.fork().nativeUpdate(SocialScheduledPost, { id: published?.id as string }, { status: "published" });

    // Only memory-care-wing, now due later and with an earlier not-before; austin-guide is dropped.
    const res = await planContentCalendar(
      deps(),
      request({
        calendarId: "replan",
        items: [
          {
            itemId: "memory-care-wing",
            title: "Memory care wing: open house",
            channelIds: ["x"],
            notBefore: ts("2025-04-09T05:00:00Z"),
          },
        ],
      }),
    );
    expect(res.revision).toBe(2);
    const after = await posts("replan");
    const byKey = new Map(after.map((p) => [`${p.itemId}/${p.channelId}`, p]));
    expect(byKey.get("memory-care-wing/x")?.status).toBe("scheduled");
    expect(byKey.get("memory-care-wing/x")?.dueAt.toISOString()).toBe("2025-04-10T15:00:00.000Z");
    expect(byKey.get("memory-care-wing/x")?.text).toMatch(/^Memory care wing: open house/);
    expect(byKey.get("austin-guide/x")?.status).toBe("cancelled");
    expect(byKey.get("austin-guide/linkedin")?.status).toBe("published");
    expect(after).toHaveLength(3);
  });

  it("schedules only slots still ahead of now", async () => {
    clock = new Date("2025-04-02T16:00:00Z");
    await planContentCalendar(deps(), request({ calendarId: "late" }));
    expect((await posts("late")).map((p) => p.itemId)).toEqual(["memory-care-wing"]);
  });

  it.each<[string, Partial<Init>]>([
    ["request_id", { requestId: "not-a-uuid" }],
    ["time_zone", { timeZone: "Mars/Olympus_Mons" }],
    ["window", { window: undefined }],
    ["window", { window: { start: ts("2025-01-01T00:00:00Z") } }],
    [
      "channels",
      {
        channels: [
          { channelId: "x", rrule: "FREQ=DAILY" },
          { channelId: "x", rrule: "FREQ=DAILY" },
        ],
        items: onX,
      },
    ],
    ["items", { items: [{ itemId: "a", title: "A", channelIds: ["tiktok"] }] }],
    [
      "items[1].item_id",
      {
        items: [
          { itemId: "a", title: "A", channelIds: ["x"] },
          { itemId: "a", title: "B", channelIds: ["x"] },
        ],
      },
    ],
    [
      "items[0].due_by",
      {
        items: [
          {
            itemId: "a",
            title: "A",
            channelIds: ["x"],
            notBefore: ts("2025-04-10T00:00:00Z"),
            dueBy: ts("2025-04-09T00:00:00Z"),
          },
        ],
      },
    ],
    ["channels[0].rrule", { channels: [{ channelId: "x", rrule: "FREQ=DAILY;BYHOUR=99" }], items: onX }],
    ["blackouts[0].start_date", { blackouts: [{ startDate: "2025-02-30" }] }],
    ["blackouts[0].end_date", { blackouts: [{ startDate: "2025-04-10", endDate: "2025-04-09" }] }],
    ["blackouts[0].channel_ids[0]", { blackouts: [{ startDate: "2025-04-10", channelIds: ["tiktok"] }] }],
  ])("refuses a bad %s with INVALID_ARGUMENT naming it, and stores nothing", async (field, init) => {
    const err = await failure(planContentCalendar(deps(), request({ calendarId: "refused", ...init })));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(field);
    expect(toConnectError(err, () => undefined).code).toBe(Code.InvalidArgument);
    expect(await db.fork().count(SocialCalendar, { calendarId: "refused" })).toBe(0);
  });
});
