/**
 * Appointments on a real operations server: a calendar imported from iCalendar, slots proposed
 * around it, a booking whose iTIP REQUEST reaches a local SMTP server through the Email agent (its
 * text/calendar part parsed with ical.js), a retry that sends nothing twice, a start in the past
 * that changes nothing, concurrent bookings of one slot, a reschedule (SEQUENCE + 1) and a CANCEL.
 */
import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import ICAL from "ical.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TimeRange } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  BookSlotSchema,
  CrmService,
  InvitationStatus,
  ParticipationRole,
  type ScheduleAppointmentRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { CalendarMethod, EmailService } from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { expectCode } from "../../../test/support/expect.ts";
import { type Harness, startHarness } from "../../../test/support/harness.ts";
import { type ReceivedMail, type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";

let h: Harness;
let sink: SmtpSink;
/** While true the SMTP server answers `flaky.*` recipients with a temporary failure (451). */
let flaky = false;

beforeAll(async () => {
  sink = await startSmtpSink({ reject: (address) => flaky && address.startsWith("flaky."), rejectCode: 451 });
  h = await startHarness({ servers: ["operations"], env: { MESH_SMTP_URL: sink.url } });
});
afterAll(async () => {
  await h?.close();
  await sink?.close();
});

const at = (iso: string) => timestampFromDate(new Date(iso));
const isoOf = (r: TimeRange) => [
  timestampDate(r.start ?? at("1970-01-01T00:00:00Z")).toISOString(),
  timestampDate(r.end ?? at("1970-01-01T00:00:00Z")).toISOString(),
];

/** The text/calendar part of a received message, parsed with ical.js. */
function calendarOf(mail: ReceivedMail): {
  method: string;
  event: InstanceType<typeof ICAL.Event>;
  contentType: string;
} {
  const raw = mail.raw.toString("utf8");
  const part = mail.parsed.attachments.find((a) => a.contentType === "text/calendar");
  const text = part ? part.content.toString("utf8") : "";
  const header = /Content-Type: text\/calendar;[^\r\n]*(\r\n[ \t][^\r\n]*)*/i.exec(raw)?.[0] ?? "";
  const cal = new ICAL.Component(ICAL.parse(text) as unknown[]);
  const vevent = cal.getFirstSubcomponent("vevent") as InstanceType<typeof ICAL.Component>;
  return { method: String(cal.getFirstPropertyValue("method")), event: new ICAL.Event(vevent), contentType: header };
}

// Monday 2030-01-07 in Chicago (CST, UTC-6): the default hours 09:00–17:00 are 15:00Z–23:00Z.
const organizer = { name: "Sam Rivera", email: "sam.rivera@example.com" };
const mary = { name: "Mary Jones", email: "mary.jones@example.com", role: ParticipationRole.REQUIRED };
const request = (init: Partial<MessageInitShape<typeof ScheduleAppointmentRequestSchema>>) =>
  ({
    requestId: randomUUID(),
    organizer,
    attendees: [mary],
    timeZone: "America/Chicago",
    duration: { seconds: 3600n },
    ...init,
  }) as MessageInitShape<typeof ScheduleAppointmentRequestSchema>;
const book = (start: string, extra: { reminderSeconds?: bigint; suppressInvitations?: boolean } = {}) => ({
  case: "book" as const,
  value: create(BookSlotSchema, {
    start: at(start),
    summary: "Austin community tour",
    location: "100 Congress Ave, Austin",
    suppressInvitations: extra.suppressInvitations ?? false,
    ...(extra.reminderSeconds === undefined ? {} : { reminderBefore: { seconds: extra.reminderSeconds } }),
  }),
});

describe("appointments on the operations server", () => {
  it("imports a calendar, proposes around it, books, invites once, reschedules and cancels", async () => {
    const crm = h.client("operations", CrmService);
    const imported = await crm.importCalendar({
      requestId: randomUUID(),
      email: organizer.email,
      timeZone: "America/Chicago",
      window: { start: at("2030-01-01T00:00:00Z"), end: at("2030-02-01T00:00:00Z") },
      ics: [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//test//EN",
        "BEGIN:VEVENT",
        "UID:standup@example.com",
        "DTSTAMP:20291201T000000Z",
        "DTSTART;TZID=America/Chicago:20300107T100000",
        "DTEND;TZID=America/Chicago:20300107T110000",
        "END:VEVENT",
        "END:VCALENDAR",
        "",
      ].join("\r\n"),
    });
    expect([imported.events, imported.busyIntervals]).toEqual([1, 1]);
    const day = { start: at("2030-01-07T00:00:00Z"), end: at("2030-01-08T00:00:00Z") };
    const fb = await crm.getFreeBusy({ email: organizer.email, window: day });
    expect(fb.busy.map(isoOf)).toEqual([["2030-01-07T16:00:00.000Z", "2030-01-07T17:00:00.000Z"]]);

    // 10:00–11:00 CST (16:00Z–17:00Z) is busy: 09:00 fits, 09:30 does not, then 11:00 and 11:30.
    const proposed = await crm.scheduleAppointment(
      request({ action: { case: "propose", value: { window: day, maxSlots: 3 } } }),
    );
    expect(proposed.proposedSlots.map((s) => isoOf(s)[0])).toEqual([
      "2030-01-07T15:00:00.000Z",
      "2030-01-07T17:00:00.000Z",
      "2030-01-07T17:30:00.000Z",
    ]);
    expect(proposed.freeIntervals.map(isoOf)).toEqual([
      ["2030-01-07T15:00:00.000Z", "2030-01-07T16:00:00.000Z"],
      ["2030-01-07T17:00:00.000Z", "2030-01-07T23:00:00.000Z"],
    ]);

    const booking = request({ action: book("2030-01-07T17:00:00Z", { reminderSeconds: 900n }) });
    const booked = await crm.scheduleAppointment(booking);
    const uid = booked.appointment?.uid ?? "";
    expect(uid).toMatch(/@example\.com$/);
    expect(booked.deliveries.map((d) => [d.email, d.status])).toEqual([[mary.email, InvitationStatus.SENT]]);
    expect(sink.messages).toHaveLength(1);
    const invite = sink.messages[0] as ReceivedMail;
    expect(invite.envelopeTo).toEqual([mary.email]);
    const req1 = calendarOf(invite);
    expect(req1.contentType).toMatch(/method=REQUEST/i);
    expect(req1.method).toBe("REQUEST");
    expect(req1.event.uid).toBe(uid);
    expect(req1.event.sequence).toBe(0);
    expect(req1.event.startDate.toJSDate().toISOString()).toBe("2030-01-07T17:00:00.000Z");
    expect(req1.event.endDate.toJSDate().toISOString()).toBe("2030-01-07T18:00:00.000Z");
    expect(req1.event.organizer).toBe(`mailto:${organizer.email}`);
    expect(invite.parsed.text).toContain("Monday, January 7, 2030, 11:00 – 12:00 CST (America/Chicago)");

    // A retry of the same request: the same answer, no second email.
    expect(await crm.scheduleAppointment(booking)).toEqual(booked);
    // The slot is taken now.
    await expectCode(
      crm.scheduleAppointment(request({ action: book("2030-01-07T17:30:00Z") })),
      Code.FailedPrecondition,
      /not free/,
    );
    expect(sink.messages).toHaveLength(1);

    const moved = await crm.rescheduleAppointment({ requestId: randomUUID(), uid, start: at("2030-01-07T20:00:00Z") });
    expect([moved.appointment?.sequence, moved.deliveries[0]?.status]).toEqual([1, InvitationStatus.SENT]);
    expect(sink.messages).toHaveLength(2);
    const req2 = calendarOf(sink.messages[1] as ReceivedMail);
    expect([req2.method, req2.event.uid, req2.event.sequence]).toEqual(["REQUEST", uid, 1]);
    expect(req2.event.startDate.toJSDate().toISOString()).toBe("2030-01-07T20:00:00.000Z");
    const fbMoved = await crm.getFreeBusy({ email: organizer.email, window: day });
    expect(fbMoved.busy.map(isoOf)).toEqual([
      ["2030-01-07T16:00:00.000Z", "2030-01-07T17:00:00.000Z"],
      ["2030-01-07T20:00:00.000Z", "2030-01-07T21:00:00.000Z"],
    ]);

    const cancel = { requestId: randomUUID(), uid, reason: "Mary asked to move to February." };
    const cancelled = await crm.cancelAppointment(cancel);
    expect([cancelled.appointment?.cancelled, cancelled.appointment?.sequence]).toEqual([true, 2]);
    expect(await crm.cancelAppointment(cancel)).toEqual(cancelled);
    expect(sink.messages).toHaveLength(3);
    const c = calendarOf(sink.messages[2] as ReceivedMail);
    expect(c.contentType).toMatch(/method=CANCEL/i);
    expect([c.method, c.event.uid, c.event.sequence, c.event.component.getFirstPropertyValue("status")]).toEqual([
      "CANCEL",
      uid,
      2,
      "CANCELLED",
    ]);
    // The time is free again.
    const fbAfter = await crm.getFreeBusy({ email: organizer.email, window: day });
    expect(fbAfter.busy.map(isoOf)).toEqual([["2030-01-07T16:00:00.000Z", "2030-01-07T17:00:00.000Z"]]);
    await expectCode(
      crm.cancelAppointment({ ...cancel, requestId: randomUUID() }),
      Code.FailedPrecondition,
      /already cancelled/,
    );
  });

  it("refuses a start in the past precisely, storing and sending nothing", async () => {
    const crm = h.client("operations", CrmService);
    const who = { name: "Pat Past", email: "pat.past@example.com" };
    const before = sink.messages.length;
    await expectCode(
      crm.scheduleAppointment(request({ organizer: who, action: book("2020-01-06T17:00:00Z") })),
      Code.InvalidArgument,
      /^book\.start: 2020-01-06T17:00:00\.000Z is in the past \(now is /,
    );
    const fb = await crm.getFreeBusy({
      email: who.email,
      window: { start: at("2020-01-01T00:00:00Z"), end: at("2020-12-31T00:00:00Z") },
    });
    expect(fb.busy).toEqual([]);
    expect(sink.messages.length).toBe(before);
  });

  it("books one of two concurrent requests for the same slot", async () => {
    const crm = h.client("operations", CrmService);
    const who = { name: "Casey Race", email: "casey.race@example.com" };
    const attempts = await Promise.allSettled(
      [1, 2].map((i) =>
        crm.scheduleAppointment(
          request({
            organizer: who,
            attendees: [{ name: `Guest ${i}`, email: `guest${i}@example.org`, role: ParticipationRole.REQUIRED }],
            action: book("2030-01-08T19:00:00Z", { suppressInvitations: true }),
          }),
        ),
      ),
    );
    expect(attempts.map((a) => a.status).sort()).toEqual(["fulfilled", "rejected"]);
    const refused = attempts.find((a) => a.status === "rejected") as PromiseRejectedResult;
    expect(String(refused.reason)).toMatch(/failed_precondition/i);
    const fb = await crm.getFreeBusy({
      email: who.email,
      window: { start: at("2030-01-08T00:00:00Z"), end: at("2030-01-09T00:00:00Z") },
    });
    expect(fb.busy.map(isoOf)).toEqual([["2030-01-08T19:00:00.000Z", "2030-01-08T20:00:00.000Z"]]);
  });

  it("keeps an invitation that failed temporarily pending, and sends it once on the retry", async () => {
    const crm = h.client("operations", CrmService);
    const fern = { name: "Fern Flaky", email: "flaky.fern@example.org", role: ParticipationRole.REQUIRED };
    const req = request({
      organizer: { name: "Robin Retry", email: "robin.retry@example.com" },
      attendees: [fern],
      action: book("2030-01-09T17:00:00Z"),
    });
    const toFern = () => sink.messages.filter((m) => m.envelopeTo[0] === fern.email);
    flaky = true;
    await expectCode(crm.scheduleAppointment(req), Code.Unavailable, /temporary failure/);
    expect(toFern()).toHaveLength(0);
    flaky = false;
    // The booking was stored by the first attempt: the retry only sends what is pending.
    const ok = await crm.scheduleAppointment(req);
    expect(ok.deliveries.map((d) => d.status)).toEqual([InvitationStatus.SENT]);
    expect(await crm.scheduleAppointment(req)).toEqual(ok);
    expect(toFern()).toHaveLength(1);
    expect(calendarOf(toFern()[0] as ReceivedMail).event.uid).toBe(ok.appointment?.uid);
  });

  it("answers bad input with INVALID_ARGUMENT naming the field", async () => {
    const crm = h.client("operations", CrmService);
    const window = { start: at("2030-01-01T00:00:00Z"), end: at("2030-02-01T00:00:00Z") };
    await expectCode(
      crm.importCalendar({
        requestId: randomUUID(),
        email: "x@example.com",
        window,
        ics: "BEGIN:VCALENDAR\r\nnot ical",
      }),
      Code.InvalidArgument,
      /^ics/,
    );
    await expectCode(
      crm.scheduleAppointment(
        request({ timeZone: "Mars/Olympus_Mons", action: { case: "propose", value: { window } } }),
      ),
      Code.InvalidArgument,
      /time_zone/,
    );
    const email = h.client("operations", EmailService);
    await expectCode(
      email.sendEmail({
        requestId: randomUUID(),
        to: { address: "a@example.org" },
        subject: "s",
        text: "t",
        calendar: { method: CalendarMethod.CANCEL, ics: "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n" },
      }),
      Code.InvalidArgument,
      /calendar\.ics/,
    );
  });
});
