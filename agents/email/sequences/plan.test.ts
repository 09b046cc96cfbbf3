/**
 * Cadence planning against hand-computed instants (UTC offsets checked with Python's zoneinfo):
 * sending windows, weekends, calendar-day delays across DST changes in both hemispheres, a window
 * start inside a spring-forward gap, the fall-back hour, and the send-time slots.
 */
import { describe, expect, it } from "vitest";
import {
  addDelay,
  hourOfWeek,
  inWindow,
  localIso,
  nextAllowedInstant,
  planCadence,
  type SendingWindow,
  sendSlots,
} from "./plan.ts";

const H = 3_600_000;
const D = 24 * H;
const weekdays9to5: SendingWindow = { days: new Set([1, 2, 3, 4, 5]), startMinute: 9 * 60, endMinute: 17 * 60 };
const everyDay = (start: number, end: number): SendingWindow => ({
  days: new Set([1, 2, 3, 4, 5, 6, 7]),
  startMinute: start,
  endMinute: end,
});
const iso = (d: Date) => d.toISOString();

describe("planCadence", () => {
  it("moves a Friday-evening step over the weekend and the US DST change (Chicago)", () => {
    // Fri 2025-03-07 16:30 CST = 22:30Z. Step 1: +1 h = 17:30, after the window → Mon 2025-03-10
    // 09:00, which is CDT after the change of Sun 2025-03-09 = 14:00Z. Step 2: +2 calendar days →
    // Wed 09:00 CDT = 14:00Z. Step 3: no delay, same instant.
    const plan = planCadence(new Date("2025-03-07T22:30:00Z"), [H, 2 * D, 0], "America/Chicago", weekdays9to5);
    expect(plan.map(iso)).toEqual(["2025-03-10T14:00:00.000Z", "2025-03-12T14:00:00.000Z", "2025-03-12T14:00:00.000Z"]);
    expect(localIso(plan[0] as Date, "America/Chicago")).toBe("2025-03-10T09:00:00-05:00");
  });

  it("keeps the local time of day over calendar days across DST, elapsed time for the rest", () => {
    // Sat 2025-03-08 10:00 CST = 16:00Z; one day later is Sun 10:00 CDT = 15:00Z (23 h elapsed);
    // one day and one hour later is 11:00 CDT = 16:00Z.
    expect(iso(addDelay(new Date("2025-03-08T16:00:00Z"), D, "America/Chicago"))).toBe("2025-03-09T15:00:00.000Z");
    expect(iso(addDelay(new Date("2025-03-08T16:00:00Z"), D + H, "America/Chicago"))).toBe("2025-03-09T16:00:00.000Z");
    // Berlin, autumn: Sat 2025-10-25 09:00 CEST = 07:00Z; one day later Sun 09:00 CET = 08:00Z (25 h).
    expect(iso(addDelay(new Date("2025-10-25T07:00:00Z"), D, "Europe/Berlin"))).toBe("2025-10-26T08:00:00.000Z");
  });

  it("handles the southern hemisphere's April change (Sydney)", () => {
    // Sat 2025-04-05 09:00 AEDT (+11) = 2025-04-04T22:00Z; DST ends Sun 03:00 → 02:00; the next day
    // 09:00 is AEST (+10) = 2025-04-05T23:00Z.
    const plan = planCadence(new Date("2025-04-04T22:00:00Z"), [0, D], "Australia/Sydney", everyDay(540, 1020));
    expect(plan.map(iso)).toEqual(["2025-04-04T22:00:00.000Z", "2025-04-05T23:00:00.000Z"]);
  });

  it("skips a weekend in a zone without DST (Tokyo)", () => {
    // Fri 2025-04-04 18:00 JST = 09:00Z, after the window → Mon 2025-04-07 09:00 JST = 00:00Z.
    expect(iso(nextAllowedInstant(new Date("2025-04-04T09:00:00Z"), "Asia/Tokyo", weekdays9to5))).toBe(
      "2025-04-07T00:00:00.000Z",
    );
    // Inside the window it stays where it is.
    const inside = new Date("2025-04-07T03:17:00Z");
    expect(nextAllowedInstant(inside, "Asia/Tokyo", weekdays9to5)).toEqual(inside);
    expect(inWindow(inside, "Asia/Tokyo", weekdays9to5)).toBe(true);
  });

  it("moves a window start inside a spring-forward gap forward by the gap", () => {
    // New York, Sun 2025-03-09: 02:00–02:59 does not exist. A 02:30 start is 03:30 EDT = 07:30Z.
    const w = everyDay(150, 240);
    expect(iso(nextAllowedInstant(new Date("2025-03-09T05:00:00Z"), "America/New_York", w))).toBe(
      "2025-03-09T07:30:00.000Z",
    );
  });

  it("takes the first occurrence of an ambiguous fall-back time", () => {
    // New York, Sun 2025-11-02: 01:30 occurs at EDT (05:30Z) and again at EST (06:30Z).
    expect(iso(nextAllowedInstant(new Date("2025-11-02T04:00:00Z"), "America/New_York", everyDay(90, 120)))).toBe(
      "2025-11-02T05:30:00.000Z",
    );
  });

  it("accepts a window ending at 24:00 and a single allowed day", () => {
    // Saturdays 22:00–24:00 UTC; from Sun 2025-04-06 → Sat 2025-04-12 22:00Z.
    const w: SendingWindow = { days: new Set([6]), startMinute: 22 * 60, endMinute: 1440 };
    expect(iso(nextAllowedInstant(new Date("2025-04-06T12:00:00Z"), "UTC", w))).toBe("2025-04-12T22:00:00.000Z");
    expect(iso(nextAllowedInstant(new Date("2025-04-12T23:59:00Z"), "UTC", w))).toBe("2025-04-12T23:59:00.000Z");
  });

  it("without a window, a step is due exactly its delay later", () => {
    expect(planCadence(new Date("2025-01-01T00:00:00Z"), [H, H], "UTC", undefined).map(iso)).toEqual([
      "2025-01-01T01:00:00.000Z",
      "2025-01-01T02:00:00.000Z",
    ]);
  });
});

describe("send slots", () => {
  it("numbers hours of the week from Monday 00:00 local", () => {
    // Mon 2025-04-07 09:00 CDT = 14:00Z → arm 9; Sun 2025-04-13 23:30 CDT → arm 6·24 + 23 = 167.
    expect(hourOfWeek(new Date("2025-04-07T14:00:00Z"), "America/Chicago")).toBe(9);
    expect(hourOfWeek(new Date("2025-04-14T04:30:00Z"), "America/Chicago")).toBe(167);
  });

  it("lists the window's hours in the next day, the earliest instant first", () => {
    // Earliest Mon 2025-04-07 15:20 CDT (20:20Z); window 9–17 weekdays: 15:20 (arm 15), 16:00
    // (arm 16), then Tue 09:00…14:00 (arms 33…38) before the 24 h horizon (Tue 15:20).
    const slots = sendSlots(new Date("2025-04-07T20:20:00Z"), "America/Chicago", weekdays9to5);
    expect(slots.map((s) => s.arm)).toEqual([15, 16, 33, 34, 35, 36, 37, 38, 39]);
    expect(iso(slots[0]?.at as Date)).toBe("2025-04-07T20:20:00.000Z");
    expect(iso(slots[2]?.at as Date)).toBe("2025-04-08T14:00:00.000Z");
  });
});
