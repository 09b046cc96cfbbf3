/**
 * ScheduleAppointment: proposes free slots, or books one and sends iCalendar invitations.
 *
 * Method: free time is the organiser's working hours (in the request's IANA zone) intersected with
 * the working hours of every required attendee that gives them (each in their own zone), less the
 * union of everyone's busy time — the intervals in the request, the organiser's iCalendar
 * (VFREEBUSY / VEVENT, recurrences expanded), the calendars stored with ImportCalendar and the
 * appointments already booked — each widened by the buffer (interval arithmetic,
 * appointments/intervals.ts; DST-aware local days with luxon, appointments/slots.ts). Proposals are
 * slots of the duration on a grid of local times; a booking must lie inside the free time, is
 * stored under an exclusion constraint that refuses overlapping bookings, and is sent to every
 * attendee as an RFC 5545 VEVENT in an RFC 5546 iTIP REQUEST through the Email agent
 * (appointments/booking.ts), at most once per attendee and SEQUENCE.
 *
 * References: RFC 5545 (iCalendar), RFC 5546 (iTIP), RFC 6047 (iMIP: the text/calendar part).
 */
import { create } from "@bufbuild/protobuf";
import { type Duration, durationMs as durationMillis, timestampDate } from "@bufbuild/protobuf/wkt";
import {
  ParticipationRole,
  type ScheduleAppointmentRequest,
  ScheduleAppointmentRequestSchema,
  type ScheduleAppointmentResponse,
  ScheduleAppointmentResponseSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { checkContract, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import {
  answer,
  type BookingDeps,
  checkZone,
  deliver,
  findChange,
  hashRequest,
  intervalOf,
  normalizeEmail,
  rangeOf,
  storeBooking,
  storedBusy,
} from "../appointments/booking.ts";
import { busyFromCalendar } from "../appointments/icalendar.ts";
import { covers, type Interval } from "../appointments/intervals.ts";
import {
  type Constraint,
  type DailyHours,
  defaultHours,
  freeTime,
  type IsoWeekday,
  proposeSlots,
} from "../appointments/slots.ts";

/** Dependencies of the skill. */
export type ScheduleAppointmentDeps = BookingDeps;

/** Longest window a proposal searches. */
export const maxProposalWindowDays = 62;

function ms(d: Duration | undefined): number {
  return d === undefined ? 0 : Number(durationMillis(d));
}

function hoursOf(list: ScheduleAppointmentRequest["workingHours"]): DailyHours[] {
  return list.map((h) => ({ day: h.day as number as IsoWeekday, startMinute: h.startMinute, endMinute: h.endMinute }));
}

function ranges(list: ScheduleAppointmentRequest["organizerBusy"]): Interval[] {
  return list.map(intervalOf).filter((i): i is Interval => i !== undefined);
}

/** Everyone's constraints over `window`: the request's, the organiser's .ics and the stored calendars. */
async function constraints(
  deps: ScheduleAppointmentDeps,
  req: ScheduleAppointmentRequest,
  zone: string,
  window: Interval,
): Promise<Constraint[]> {
  const organizer = req.organizer as NonNullable<ScheduleAppointmentRequest["organizer"]>;
  const required = req.attendees.map((a, i) => ({ a, i })).filter(({ a }) => a.role !== ParticipationRole.OPTIONAL);
  const stored = await storedBusy(deps.db.fork(), [organizer.email, ...required.map(({ a }) => a.email)], window);
  const organizerBusy = [...ranges(req.organizerBusy), ...(stored.get(normalizeEmail(organizer.email)) ?? [])];
  if (req.freeBusyIcs !== "")
    organizerBusy.push(...busyFromCalendar(req.freeBusyIcs, zone, window, "free_busy_ics").busy);
  return [
    { hours: req.workingHours.length > 0 ? hoursOf(req.workingHours) : defaultHours, zone, busy: organizerBusy },
    ...required.map(({ a, i }) => ({
      hours: a.workingHours.length > 0 ? hoursOf(a.workingHours) : undefined,
      zone: a.timeZone ? checkZone(a.timeZone, `attendees[${i}].time_zone`) : zone,
      busy: [...ranges(a.busy), ...(stored.get(normalizeEmail(a.email)) ?? [])],
    })),
  ];
}

/** Proposes or books; see the file comment for the method. */
export async function scheduleAppointment(
  deps: ScheduleAppointmentDeps,
  req: ScheduleAppointmentRequest,
): Promise<ScheduleAppointmentResponse> {
  checkContract(ScheduleAppointmentRequestSchema, req);
  const zone = checkZone(req.timeZone || "UTC", "time_zone");
  const durationMs = ms(req.duration);
  const bufferMs = ms(req.buffer);
  const now = deps.now().getTime();
  const action = req.action;

  if (action.case === "propose") {
    const p = action.value;
    const window = intervalOf(p.window as NonNullable<typeof p.window>) as Interval;
    if (window.end - window.start > maxProposalWindowDays * 86_400_000) {
      throw new InvalidInputError(
        "propose.window",
        `spans more than ${maxProposalWindowDays} days; search a shorter window`,
      );
    }
    const stepMs = ms(p.slotStep) || 30 * 60_000;
    if (stepMs % 60_000 !== 0) throw new InvalidInputError("propose.slot_step", "must be whole minutes");
    const free = freeTime({ window, participants: await constraints(deps, req, zone, window), bufferMs });
    const slots = proposeSlots({
      free,
      durationMs,
      stepMinutes: stepMs / 60_000,
      zone,
      notBefore: Math.max(window.start, now + ms(p.minNotice)),
      maxSlots: p.maxSlots || 10,
    });
    return create(ScheduleAppointmentResponseSchema, {
      proposedSlots: slots.map(rangeOf),
      freeIntervals: free.map(rangeOf),
    });
  }

  const book = action.value as NonNullable<Extract<typeof action, { case: "book" }>["value"]>;
  const start = timestampDate(book.start as NonNullable<typeof book.start>).getTime();
  const end = start + durationMs;
  // Checked before anything is read or written: a start in the past stores and sends nothing.
  if (start < now) {
    throw new InvalidInputError(
      "book.start",
      `${new Date(start).toISOString()} is in the past (now is ${new Date(now).toISOString()}); choose a future start`,
    );
  }
  const hash = hashRequest(ScheduleAppointmentRequestSchema, req);
  const earlier = await findChange(deps.db, req.requestId, hash);
  if (earlier !== undefined) {
    await deliver(deps, earlier.change, earlier.row, "");
    return create(ScheduleAppointmentResponseSchema, await answer(deps.db, earlier.row, earlier.change));
  }
  const window = { start: start - bufferMs - 86_400_000, end: end + bufferMs + 86_400_000 };
  const free = freeTime({ window, participants: await constraints(deps, req, zone, window), bufferMs });
  if (!covers(free, start, end)) {
    throw new FailedPreconditionError(
      `book.start: the slot ${new Date(start).toISOString()}–${new Date(end).toISOString()} is not free (outside working hours, or busy within the buffer of ${bufferMs / 60_000} minutes); propose slots first`,
    );
  }
  const stored = await storeBooking(deps, {
    requestId: req.requestId,
    requestHash: hash,
    organizer: req.organizer as NonNullable<ScheduleAppointmentRequest["organizer"]>,
    attendees: req.attendees,
    zone,
    hours: req.workingHours.length > 0 ? hoursOf(req.workingHours) : defaultHours,
    bufferSeconds: Math.round(bufferMs / 1000),
    start,
    end,
    summary: book.summary,
    description: book.description,
    location: book.location,
    meetingUrl: book.meetingUrl,
    reminderSeconds: Math.round(ms(book.reminderBefore) / 1000),
    dealId: req.dealId,
    suppress: book.suppressInvitations,
  });
  await deliver(deps, stored.change, stored.row, "");
  return create(ScheduleAppointmentResponseSchema, await answer(deps.db, stored.row, stored.change));
}
