/**
 * Appointment scheduling (`crm.appointment_scheduling`), in process:
 *
 * 1. Slot search: the organiser (America/Chicago) and three required attendees (New York, London,
 *    Kolkata), each with 300 busy intervals and their own working hours, over a 62-day window
 *    (spanning the US and EU daylight-saving changes of March 2025): free time by interval
 *    arithmetic and up to 200 slots on a 15-minute grid. Pure computation, timed over N runs.
 * 2. Calendar parsing: an iCalendar file of 300 weekly recurring events (RRULE, EXDATE, one moved
 *    instance each) and 2,000 single events, expanded over a 400-day window with ical.js.
 * 3. Booking on PostgreSQL (isolated database): N sequential ScheduleAppointment bookings of
 *    distinct slots with invitations suppressed (stored calendars read, free-time check, the
 *    appointment, its holds under the exclusion constraint, its change and invitation rows).
 *
 * `node bench/crm-appointments.ts [runs] [bookings]` runs it alone and prints the result.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { busyFromCalendar } from "../agents/crm/appointments/icalendar.ts";
import type { Interval } from "../agents/crm/appointments/intervals.ts";
import { defaultHours, freeTime, proposeSlots } from "../agents/crm/appointments/slots.ts";
import { scheduleAppointment } from "../agents/crm/skills/schedule-appointment.ts";
import { ScheduleAppointmentRequestSchema } from "../gen/mesh/crm/v1/crm_service_pb.ts";
import { openDatabase } from "../lib/db/index.ts";
import { createLogger } from "../lib/log/index.ts";
import type { AgentDeps } from "../lib/server/index.ts";
import { domains } from "../servers/domains.ts";
import { isolatedDatabase } from "../test/support/backbone.ts";
import { quantile } from "./lib.ts";

/** The measurements. */
export interface CrmAppointmentsBenchResult {
  /** Slot search: median and p99 milliseconds per search. */
  searchP50Ms: number;
  searchP99Ms: number;
  /** Slots the search found. */
  slots: number;
  /** Calendar parse: milliseconds for the whole file, and the intervals it expanded to. */
  parseMs: number;
  parsedIntervals: number;
  /** Booking: median and p99 milliseconds per booking. */
  bookP50Ms: number;
  bookP99Ms: number;
  bookings: number;
}

const day = 86_400_000;
const round = (x: number) => Math.round(x * 100) / 100;

function randomBusy(seed: number, start: number, end: number, n: number): Interval[] {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  return Array.from({ length: n }, () => {
    const a = start + Math.floor(rnd() * (end - start));
    return { start: a, end: a + (15 + Math.floor(rnd() * 90)) * 60_000 };
  });
}

function calendarText(): string {
  const lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bench//EN"];
  for (let i = 0; i < 300; i++) {
    const d = String(1 + (i % 28)).padStart(2, "0");
    const h = String(8 + (i % 9)).padStart(2, "0");
    lines.push(
      "BEGIN:VEVENT",
      `UID:weekly-${i}@bench`,
      "DTSTAMP:20250101T000000Z",
      `DTSTART;TZID=America/New_York:202501${d}T${h}0000`,
      `DTEND;TZID=America/New_York:202501${d}T${h}3000`,
      "RRULE:FREQ=WEEKLY",
      `EXDATE;TZID=America/New_York:202502${d}T${h}0000`,
      "END:VEVENT",
    );
  }
  for (let i = 0; i < 2000; i++) {
    const t = new Date(Date.UTC(2025, 0, 1) + i * 4 * 3_600_000);
    const f = (x: Date) => x.toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
    lines.push(
      "BEGIN:VEVENT",
      `UID:single-${i}@bench`,
      "DTSTAMP:20250101T000000Z",
      `DTSTART:${f(t)}`,
      `DTEND:${f(new Date(t.getTime() + 3_600_000))}`,
      "END:VEVENT",
    );
  }
  lines.push("END:VCALENDAR");
  return `${lines.join("\r\n")}\r\n`;
}

/** Runs the three parts. */
export async function benchCrmAppointments(opts: {
  runs: number;
  bookings: number;
}): Promise<CrmAppointmentsBenchResult> {
  const window = { start: Date.UTC(2025, 2, 1), end: Date.UTC(2025, 2, 1) + 62 * day };
  const zones = ["America/Chicago", "America/New_York", "Europe/London", "Asia/Kolkata"];
  const participants = zones.map((zone, i) => ({
    hours: i === 3 ? defaultHours.map((h) => ({ ...h, startMinute: 600, endMinute: 1320 })) : defaultHours,
    zone,
    busy: randomBusy(i + 1, window.start, window.end, 300),
  }));
  const times: number[] = [];
  let slots = 0;
  for (let r = 0; r < opts.runs; r++) {
    const t0 = performance.now();
    const free = freeTime({ window, participants, bufferMs: 10 * 60_000 });
    slots = proposeSlots({
      free,
      durationMs: 30 * 60_000,
      stepMinutes: 15,
      zone: zones[0] as string,
      notBefore: 0,
      maxSlots: 200,
    }).length;
    times.push(performance.now() - t0);
  }
  const text = calendarText();
  const p0 = performance.now();
  const parsed = busyFromCalendar(
    text,
    "America/Chicago",
    { start: Date.UTC(2025, 0, 1), end: Date.UTC(2025, 0, 1) + 400 * day },
    "ics",
  );
  const parseMs = performance.now() - p0;

  const handle = await isolatedDatabase();
  const db = await openDatabase({ url: handle.url, domain: domains.operations, log: createLogger("warn") });
  const book: number[] = [];
  try {
    const deps = {
      db,
      now: () => new Date("2025-01-01T00:00:00Z"),
      log: createLogger("warn"),
      client: { agent: () => ({}) } as unknown as AgentDeps["client"],
    };
    for (let i = 0; i < opts.bookings; i++) {
      // Weekdays of 2025 from Monday 2025-01-06, 16 half-hour slots a day (09:00–17:00 Chicago).
      const week = Math.floor(i / 80);
      const inWeek = i % 80;
      const start = Date.UTC(2025, 0, 6 + week * 7 + Math.floor(inWeek / 16), 15, 0) + (inWeek % 16) * 30 * 60_000;
      const req = create(ScheduleAppointmentRequestSchema, {
        requestId: randomUUID(),
        organizer: { name: "Sam Rivera", email: "sam.rivera@example.com" },
        attendees: [{ name: `Guest ${i}`, email: `guest${i}@example.org` }],
        timeZone: "America/Chicago",
        duration: { seconds: 1800n },
        action: {
          case: "book",
          value: { start: timestampFromDate(new Date(start)), summary: "Tour", suppressInvitations: true },
        },
      });
      const t0 = performance.now();
      await scheduleAppointment(deps, req);
      book.push(performance.now() - t0);
    }
  } finally {
    await db.close();
    await handle.drop();
  }
  times.sort((a, b) => a - b);
  book.sort((a, b) => a - b);
  return {
    searchP50Ms: round(quantile(times, 0.5)),
    searchP99Ms: round(quantile(times, 0.99)),
    slots,
    parseMs: round(parseMs),
    parsedIntervals: parsed.busy.length,
    bookP50Ms: round(quantile(book, 0.5)),
    bookP99Ms: round(quantile(book, 0.99)),
    bookings: book.length,
  };
}

if (import.meta.main) {
  const runs = Number(process.argv[2] ?? 50);
  const bookings = Number(process.argv[3] ?? 200);
  process.stdout.write(`${JSON.stringify(await benchCrmAppointments({ runs, bookings }), null, 2)}\n`);
  process.exit(0);
}
