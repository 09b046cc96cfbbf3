import { describe, expect, it } from "vitest";
import { type Interval, intersect, normalize, pad, subtract } from "./intervals.ts";
import { alignUp, freeTime, proposeSlots, workingIntervals } from "./slots.ts";

const z = (iso: string) => Date.parse(iso);
const iso = (i: Interval) => [new Date(i.start).toISOString(), new Date(i.end).toISOString()];
const hour = 3_600_000;

describe("interval arithmetic", () => {
  it("merges, intersects and subtracts half-open intervals", () => {
    expect(
      normalize([
        { start: 5, end: 7 },
        { start: 1, end: 3 },
        { start: 3, end: 4 },
        { start: 6, end: 9 },
        { start: 9, end: 9 },
      ]),
    ).toEqual([
      { start: 1, end: 4 },
      { start: 5, end: 9 },
    ]);
    expect(
      intersect(
        [{ start: 0, end: 10 }],
        [
          { start: 2, end: 4 },
          { start: 8, end: 12 },
        ],
      ),
    ).toEqual([
      { start: 2, end: 4 },
      { start: 8, end: 10 },
    ]);
    // 0–10 less 2–4, 3–5 (overlapping), 9–12: free 0–2, 5–9.
    expect(
      subtract(
        [
          { start: 0, end: 10 },
          { start: 20, end: 30 },
        ],
        [
          { start: 2, end: 4 },
          { start: 3, end: 5 },
          { start: 9, end: 12 },
        ],
      ),
    ).toEqual([
      { start: 0, end: 2 },
      { start: 5, end: 9 },
      { start: 20, end: 30 },
    ]);
    expect(pad([{ start: 10, end: 20 }], 5)).toEqual([{ start: 5, end: 25 }]);
  });
});

describe("working hours across daylight-saving changes (hand-computed in UTC)", () => {
  // America/New_York: EST is UTC-5, EDT UTC-4; 2025-03-09 02:00 EST → 03:00 EDT, 2025-11-02 02:00 EDT → 01:00 EST.
  const night = [{ day: 7 as const, startMinute: 0, endMinute: 240 }]; // Sunday 00:00–04:00 local
  it("spring-forward Sunday: 00:00 EST = 05:00Z to 04:00 EDT = 08:00Z, three hourly slots (02:00 does not exist)", () => {
    const w = workingIntervals(night, "America/New_York", z("2025-03-08T00:00:00Z"), z("2025-03-11T00:00:00Z"));
    expect(w.map(iso)).toEqual([["2025-03-09T05:00:00.000Z", "2025-03-09T08:00:00.000Z"]]);
    const slots = proposeSlots({
      free: w,
      durationMs: hour,
      stepMinutes: 60,
      zone: "America/New_York",
      notBefore: 0,
      maxSlots: 10,
    });
    expect(slots.map((s) => iso(s)[0])).toEqual([
      "2025-03-09T05:00:00.000Z",
      "2025-03-09T06:00:00.000Z",
      "2025-03-09T07:00:00.000Z",
    ]);
  });
  it("fall-back Sunday: 00:00 EDT = 04:00Z to 04:00 EST = 09:00Z, five hourly slots (01:00 twice)", () => {
    const w = workingIntervals(night, "America/New_York", z("2025-11-01T00:00:00Z"), z("2025-11-04T00:00:00Z"));
    expect(w.map(iso)).toEqual([["2025-11-02T04:00:00.000Z", "2025-11-02T09:00:00.000Z"]]);
    const slots = proposeSlots({
      free: w,
      durationMs: hour,
      stepMinutes: 60,
      zone: "America/New_York",
      notBefore: 0,
      maxSlots: 10,
    });
    expect(slots.map((s) => iso(s)[0])).toEqual([
      "2025-11-02T04:00:00.000Z",
      "2025-11-02T05:00:00.000Z",
      "2025-11-02T06:00:00.000Z",
      "2025-11-02T07:00:00.000Z",
      "2025-11-02T08:00:00.000Z",
    ]);
  });
  it("09:00–17:00 stays local: 14:00Z on Friday 2025-03-07 (EST), 13:00Z on Monday 2025-03-10 (EDT)", () => {
    const weekdays = ([1, 2, 3, 4, 5] as const).map((day) => ({ day, startMinute: 540, endMinute: 1020 }));
    const w = workingIntervals(weekdays, "America/New_York", z("2025-03-07T00:00:00Z"), z("2025-03-11T00:00:00Z"));
    expect(w.map(iso)).toEqual([
      ["2025-03-07T14:00:00.000Z", "2025-03-07T22:00:00.000Z"],
      ["2025-03-10T13:00:00.000Z", "2025-03-10T21:00:00.000Z"],
    ]);
  });
});

describe("slot search across time zones", () => {
  it("intersects Chicago and London hours in the week their DST differs, less busy time with a buffer", () => {
    // 2025-03-10: Chicago is on CDT (UTC-5) since 03-09, London still on GMT until 03-30.
    // Chicago 09–17 = 14:00Z–22:00Z; London 09–17 = 09:00Z–17:00Z; common 14:00Z–17:00Z.
    const weekdays = ([1, 2, 3, 4, 5] as const).map((day) => ({ day, startMinute: 540, endMinute: 1020 }));
    const window = { start: z("2025-03-10T00:00:00Z"), end: z("2025-03-11T00:00:00Z") };
    const free = freeTime({
      window,
      bufferMs: 15 * 60_000,
      participants: [
        {
          hours: weekdays,
          zone: "America/Chicago",
          busy: [{ start: z("2025-03-10T15:00:00Z"), end: z("2025-03-10T15:30:00Z") }],
        },
        { hours: weekdays, zone: "Europe/London", busy: [] },
      ],
    });
    // Busy 15:00–15:30 widened by 15 minutes: 14:45–15:45.
    expect(free.map(iso)).toEqual([
      ["2025-03-10T14:00:00.000Z", "2025-03-10T14:45:00.000Z"],
      ["2025-03-10T15:45:00.000Z", "2025-03-10T17:00:00.000Z"],
    ]);
    const slots = proposeSlots({
      free,
      durationMs: 30 * 60_000,
      stepMinutes: 30,
      zone: "America/Chicago",
      notBefore: 0,
      maxSlots: 10,
    });
    // Starts on the :00/:30 local grid: 14:00Z; 16:00Z and 16:30Z (15:45 is not on the grid).
    expect(slots.map((s) => iso(s)[0])).toEqual([
      "2025-03-10T14:00:00.000Z",
      "2025-03-10T16:00:00.000Z",
      "2025-03-10T16:30:00.000Z",
    ]);
  });
  it("aligns the grid to local midnight in a half-hour zone and honours notBefore and maxSlots", () => {
    // Asia/Kolkata is UTC+05:30: local 10:00 = 04:30Z; a 60-minute grid gives 04:30Z, 05:30Z, ...
    expect(new Date(alignUp(z("2025-01-06T04:10:00Z"), 60, "Asia/Kolkata")).toISOString()).toBe(
      "2025-01-06T04:30:00.000Z",
    );
    const slots = proposeSlots({
      free: [{ start: z("2025-01-06T03:30:00Z"), end: z("2025-01-06T09:00:00Z") }],
      durationMs: hour,
      stepMinutes: 60,
      zone: "Asia/Kolkata",
      notBefore: z("2025-01-06T04:10:00Z"),
      maxSlots: 2,
    });
    expect(slots.map((s) => iso(s)[0])).toEqual(["2025-01-06T04:30:00.000Z", "2025-01-06T05:30:00.000Z"]);
  });
});
