import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import ICAL from "ical.js";
import { describe, expect, it } from "vitest";
import { Priority } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  PlanContentCalendarRequestSchema,
  SocialPlatform,
  UnscheduledReason,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { expandRule } from "./expand.ts";
import { foldLine, toICalendar } from "./icalendar.ts";
import { planCalendar, slotUid } from "./plan.ts";
import { instantOf, localIso, wallTimeOf } from "./time-zone.ts";

const iso = (s: string) => new Date(s);
const chicago = "America/Chicago";

describe("time zones (RFC 5545 §3.3.5)", () => {
  it("places local times on either side of a change with the offset in force", () => {
    expect(instantOf({ year: 2025, month: 3, day: 8, hour: 10, minute: 0, second: 0 }, chicago).toISOString()).toBe(
      "2025-03-08T16:00:00.000Z",
    );
    expect(instantOf({ year: 2025, month: 3, day: 9, hour: 10, minute: 0, second: 0 }, chicago).toISOString()).toBe(
      "2025-03-09T15:00:00.000Z",
    );
  });
  it("reads a skipped local time with the offset before the gap", () => {
    // 2025-03-09 02:30 does not exist in Chicago; with CST (−6) it is 08:30Z = 03:30 CDT.
    const t = instantOf({ year: 2025, month: 3, day: 9, hour: 2, minute: 30, second: 0 }, chicago);
    expect(t.toISOString()).toBe("2025-03-09T08:30:00.000Z");
    expect(localIso(t, chicago)).toBe("2025-03-09T03:30:00-05:00");
  });
  it("takes the first of a repeated local time", () => {
    // 2025-11-02 01:30 happens at 06:30Z (CDT) and again at 07:30Z (CST).
    const t = instantOf({ year: 2025, month: 11, day: 2, hour: 1, minute: 30, second: 0 }, chicago);
    expect(t.toISOString()).toBe("2025-11-02T06:30:00.000Z");
    expect(wallTimeOf(iso("2025-11-02T07:30:00Z"), chicago).hour).toBe(1);
  });
  it("formats local times with their offset", () => {
    expect(localIso(iso("2025-04-01T15:00:00Z"), chicago)).toBe("2025-04-01T10:00:00-05:00");
    expect(localIso(iso("2025-01-15T09:30:00Z"), "Asia/Kolkata")).toBe("2025-01-15T15:00:00+05:30");
    expect(localIso(iso("2025-01-15T09:30:00Z"), "UTC")).toBe("2025-01-15T09:30:00+00:00");
  });
});

describe("RRULE expansion in the calendar's zone", () => {
  const starts = (rule: string, from: string, to: string, tz = chicago) =>
    expandRule(rule, tz, iso(from), iso(to), "rrule").map((s) => s.start.toISOString());

  it("keeps 10:00 local across the spring change (the UTC hour moves)", () => {
    expect(starts("FREQ=DAILY;BYHOUR=10;BYMINUTE=0", "2025-03-07T06:00:00Z", "2025-03-11T05:00:00Z")).toEqual([
      "2025-03-07T16:00:00.000Z",
      "2025-03-08T16:00:00.000Z",
      "2025-03-09T15:00:00.000Z",
      "2025-03-10T15:00:00.000Z",
    ]);
  });
  it("moves a slot in the skipped hour to the same instant after the gap", () => {
    expect(starts("RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "2025-03-08T06:00:00Z", "2025-03-11T05:00:00Z")).toEqual([
      "2025-03-08T08:30:00.000Z",
      "2025-03-09T08:30:00.000Z",
      "2025-03-10T07:30:00.000Z",
    ]);
  });
  it("posts once in the repeated hour of the autumn change", () => {
    expect(starts("FREQ=DAILY;BYHOUR=1;BYMINUTE=30", "2025-11-01T05:00:00Z", "2025-11-04T06:00:00Z")).toEqual([
      "2025-11-01T06:30:00.000Z",
      "2025-11-02T06:30:00.000Z",
      "2025-11-03T07:30:00.000Z",
    ]);
  });
  it("does the same in London (BST from 2025-03-30)", () => {
    expect(
      starts(
        "FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=9;BYMINUTE=15",
        "2025-03-29T00:00:00Z",
        "2025-04-01T00:00:00Z",
        "Europe/London",
      ),
    ).toEqual(["2025-03-29T09:15:00.000Z", "2025-03-30T08:15:00.000Z"]);
  });
  it("anchors at the window's first local day and honours COUNT and a UTC UNTIL", () => {
    expect(starts("FREQ=DAILY;COUNT=2;BYHOUR=9", "2025-04-01T05:00:00Z", "2025-05-01T05:00:00Z")).toEqual([
      "2025-04-01T14:00:00.000Z",
      "2025-04-02T14:00:00.000Z",
    ]);
    // UNTIL 2025-04-03T14:00Z is 09:00 CDT: the 3rd is still in.
    expect(
      starts("FREQ=DAILY;UNTIL=20250403T140000Z;BYHOUR=9", "2025-04-01T05:00:00Z", "2025-05-01T05:00:00Z"),
    ).toHaveLength(3);
  });
  it("reads rule values in any case", () => {
    expect(starts("FREQ=WEEKLY;BYDAY=tu;BYHOUR=10", "2025-04-01T05:00:00Z", "2025-04-09T05:00:00Z")).toEqual([
      "2025-04-01T15:00:00.000Z",
      "2025-04-08T15:00:00.000Z",
    ]);
  });
  it("refuses bad rules, naming the field", () => {
    for (const rule of [
      "FREQ=DAILY;BYHOUR=24",
      "FREQ=DAILY;DTSTART=20250101T000000Z",
      "FREQ=WEEKLY;BYDAY=XX",
      "FREQ=DAILY;FREQ=DAILY",
    ]) {
      expect(() =>
        expandRule(rule, chicago, iso("2025-04-01T05:00:00Z"), iso("2025-04-05T05:00:00Z"), "channels[0].rrule"),
      ).toThrow(expect.objectContaining({ field: "channels[0].rrule" }));
    }
    expect(() =>
      expandRule(
        "FREQ=HOURLY;BYMINUTE=0,15,30,45",
        chicago,
        iso("2025-01-01T06:00:00Z"),
        iso("2025-12-31T06:00:00Z"),
        "channels[2].rrule",
      ),
    ).toThrow(InvalidInputError);
  });
});

type Init = MessageInitShape<typeof PlanContentCalendarRequestSchema>;
const ts = (s: string) => timestampFromDate(iso(s));

function request(init: Partial<Init> = {}) {
  const base: Init = {
    requestId: "5b2d7c1e-9f3a-4b6c-8d0e-2a4f6b8c0d1e",
    calendarId: "austin-q2",
    name: "Austin Q2 social calendar",
    timeZone: chicago,
    window: { start: ts("2025-04-01T05:00:00Z"), end: ts("2025-05-01T05:00:00Z") },
    channels: [
      { channelId: "x", platform: SocialPlatform.X, rrule: "FREQ=WEEKLY;BYDAY=TU,TH;BYHOUR=10;BYMINUTE=0" },
      {
        channelId: "linkedin",
        platform: SocialPlatform.LINKEDIN,
        rrule: "FREQ=WEEKLY;BYDAY=WE;BYHOUR=9;BYMINUTE=30",
        slotDuration: { seconds: 1800n },
      },
    ],
    blackouts: [{ startDate: "2025-04-15", endDate: "2025-04-17", reason: "Conference" }],
    items: [
      {
        itemId: "austin-guide",
        title: "Choosing Assisted Living in Austin, TX",
        channelIds: ["x", "linkedin"],
        priority: Priority.URGENT,
        dueBy: ts("2025-04-15T05:00:00Z"),
        url: "https://example.com/guides/austin",
      },
      { itemId: "memory-care-wing", title: "New memory care wing opens in North Austin", channelIds: ["x"] },
    ],
  };
  return create(PlanContentCalendarRequestSchema, { ...base, ...init } as Init);
}

describe("planning", () => {
  it("places items earliest due first in the earliest free slot (worked example)", () => {
    const plan = planCalendar(request());
    expect(plan.slots.map((s) => [s.itemId, s.channelId, s.localStart])).toEqual([
      ["austin-guide", "x", "2025-04-01T10:00:00-05:00"],
      ["austin-guide", "linkedin", "2025-04-02T09:30:00-05:00"],
      ["memory-care-wing", "x", "2025-04-03T10:00:00-05:00"],
    ]);
    expect(plan.unscheduled).toEqual([]);
    // x: Tuesdays and Thursdays of April 2025 = 9, less the 15th and 17th; linkedin: 5 Wednesdays less the 16th.
    expect(plan.utilisation).toEqual([
      { channelId: "x", slotCount: 7, filledCount: 2 },
      { channelId: "linkedin", slotCount: 4, filledCount: 1 },
    ]);
    expect(plan.slots[0]?.uid).toBe(slotUid("austin-q2", "austin-guide", "x"));
    expect(plan.slots[1]?.end.getTime() ?? 0).toBe((plan.slots[1]?.start.getTime() ?? 0) + 30 * 60_000);
  });

  it("ranks by due time, then priority, then request order", () => {
    const items = [
      { itemId: "bulk", title: "B", channelIds: ["x"], priority: Priority.BULK, dueBy: ts("2025-04-20T05:00:00Z") },
      { itemId: "normal", title: "N", channelIds: ["x"], dueBy: ts("2025-04-20T05:00:00Z") },
      { itemId: "urgent", title: "U", channelIds: ["x"], priority: Priority.URGENT, dueBy: ts("2025-04-20T05:00:00Z") },
      { itemId: "early", title: "E", channelIds: ["x"], priority: Priority.BULK, dueBy: ts("2025-04-10T05:00:00Z") },
    ];
    const plan = planCalendar(request({ items, blackouts: [] }));
    expect(plan.slots.map((s) => s.itemId)).toEqual(["early", "urgent", "normal", "bulk"]);
  });

  it("says why an item could not be placed", () => {
    const items = [
      {
        itemId: "a",
        title: "A",
        channelIds: ["x"],
        notBefore: ts("2025-04-15T05:00:00Z"),
        dueBy: ts("2025-04-18T04:00:00Z"),
      },
      {
        itemId: "b",
        title: "B",
        channelIds: ["x"],
        notBefore: ts("2025-04-09T05:00:00Z"),
        dueBy: ts("2025-04-10T05:00:00Z"),
      },
      { itemId: "c", title: "C", channelIds: ["x"], notBefore: ts("2025-06-01T05:00:00Z") },
      {
        itemId: "d",
        title: "D",
        channelIds: ["x"],
        notBefore: ts("2025-04-03T05:00:00Z"),
        dueBy: ts("2025-04-04T05:00:00Z"),
      },
      {
        itemId: "e",
        title: "E",
        channelIds: ["x"],
        notBefore: ts("2025-04-03T05:00:00Z"),
        dueBy: ts("2025-04-04T05:00:00Z"),
      },
    ];
    const plan = planCalendar(request({ items }));
    expect(plan.unscheduled).toEqual([
      { itemId: "e", channelId: "x", reason: UnscheduledReason.NO_FREE_SLOT },
      { itemId: "b", channelId: "x", reason: UnscheduledReason.NO_SLOT_IN_RANGE },
      { itemId: "a", channelId: "x", reason: UnscheduledReason.BLACKED_OUT },
      { itemId: "c", channelId: "x", reason: UnscheduledReason.OUTSIDE_WINDOW },
    ]);
  });

  it("applies a blackout only to the channels it names", () => {
    const items = [
      {
        itemId: "a",
        title: "A",
        channelIds: ["x", "linkedin"],
        notBefore: ts("2025-04-15T05:00:00Z"),
        dueBy: ts("2025-04-18T04:00:00Z"),
      },
    ];
    const plan = planCalendar(
      request({ items, blackouts: [{ startDate: "2025-04-14", endDate: "2025-04-18", channelIds: ["x"] }] }),
    );
    expect(plan.slots.map((s) => [s.channelId, s.localStart])).toEqual([["linkedin", "2025-04-16T09:30:00-05:00"]]);
    expect(plan.unscheduled).toEqual([{ itemId: "a", channelId: "x", reason: UnscheduledReason.BLACKED_OUT }]);
  });

  it("spaces posts on one platform: two X accounts never post in overlapping slots", () => {
    const channels = [
      { channelId: "x", platform: SocialPlatform.X, rrule: "FREQ=DAILY;BYHOUR=10", slotDuration: { seconds: 3600n } },
      { channelId: "x-brand", platform: SocialPlatform.X, rrule: "FREQ=DAILY;BYHOUR=10;BYMINUTE=30,59" },
      { channelId: "blog", rrule: "FREQ=DAILY;BYHOUR=10" },
    ];
    const items = [
      { itemId: "one", title: "1", channelIds: ["x", "blog"] },
      { itemId: "two", title: "2", channelIds: ["x-brand", "blog"] },
    ];
    const plan = planCalendar(request({ channels, items, blackouts: [] }));
    expect(plan.slots.map((s) => [s.itemId, s.channelId, s.localStart])).toEqual([
      ["one", "blog", "2025-04-01T10:00:00-05:00"],
      ["one", "x", "2025-04-01T10:00:00-05:00"],
      // 10:30 and 10:59 on the 1st overlap x's 10:00–11:00 post; blog has no platform to space.
      ["two", "blog", "2025-04-02T10:00:00-05:00"],
      ["two", "x-brand", "2025-04-02T10:30:00-05:00"],
    ]);
  });

  it("drops a channel's slots that overlap its previous one", () => {
    const channels = [
      {
        channelId: "x",
        platform: SocialPlatform.X,
        rrule: "FREQ=DAILY;BYHOUR=10,11",
        slotDuration: { seconds: 5400n },
      },
    ];
    const plan = planCalendar(
      request({ channels, items: [{ itemId: "a", title: "A", channelIds: ["x"] }], blackouts: [] }),
    );
    expect(plan.utilisation).toEqual([{ channelId: "x", slotCount: 30, filledCount: 1 }]);
  });
});

describe("iCalendar export", () => {
  it("parses back with ical.js: one VEVENT per slot with the same times, text and UIDs", () => {
    const req = request({
      items: [
        {
          itemId: "austin-guide",
          title: "Austin, TX; costs\\fees — 費用ガイド ".repeat(4).trim(),
          channelIds: ["x", "linkedin"],
          url: "https://example.com/guides/austin?a=1,2",
        },
      ],
    });
    const plan = planCalendar(req);
    const text = toICalendar(
      {
        calendarId: "austin-q2",
        name: "Austin Q2 — social",
        timeZone: chicago,
        revision: 3,
        storedAt: iso("2025-03-20T12:00:00Z"),
      },
      plan.slots,
    );
    for (const line of text.split("\r\n")) expect(new TextEncoder().encode(line).length).toBeLessThanOrEqual(75);
    expect(text.endsWith("\r\n")).toBe(true);
    const cal = new ICAL.Component(ICAL.parse(text));
    expect(cal.name).toBe("vcalendar");
    expect(cal.getFirstPropertyValue("version")).toBe("2.0");
    expect(cal.getFirstPropertyValue("x-wr-calname")).toBe("Austin Q2 — social");
    const events = cal.getAllSubcomponents("vevent").map((v) => new ICAL.Event(v));
    expect(events).toHaveLength(plan.slots.length);
    events.forEach((e, i) => {
      const slot = plan.slots[i];
      expect(e.uid).toBe(slot?.uid);
      expect(e.summary).toBe(req.items[0]?.title);
      expect(e.startDate.toJSDate().toISOString()).toBe(slot?.start.toISOString());
      expect(e.endDate.toJSDate().toISOString()).toBe(slot?.end.toISOString());
      expect(e.description).toBe(
        `Channel: ${slot?.channelId}\nItem: austin-guide\nhttps://example.com/guides/austin?a=1,2`,
      );
      expect(e.sequence).toBe(3);
    });
  });

  it("folds without splitting a UTF-8 sequence", () => {
    const line = `SUMMARY:${"é".repeat(100)}`;
    const folded = foldLine(line);
    const parts = folded.split("\r\n ");
    expect(parts.join("")).toBe(line);
    for (const p of parts) expect(new TextEncoder().encode(p).length).toBeLessThanOrEqual(75);
  });
});
