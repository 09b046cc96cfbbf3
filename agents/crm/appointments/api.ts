/**
 * The appointment skill's other RPCs: ImportCalendar and GetFreeBusy (stored calendars),
 * RescheduleAppointment and CancelAppointment (changes of a booking, sent as iTIP REQUEST with a
 * higher SEQUENCE and iTIP CANCEL).
 */
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type CancelAppointmentRequest,
  CancelAppointmentRequestSchema,
  type CancelAppointmentResponse,
  CancelAppointmentResponseSchema,
  type GetFreeBusyRequest,
  GetFreeBusyRequestSchema,
  type GetFreeBusyResponse,
  GetFreeBusyResponseSchema,
  type ImportCalendarRequest,
  ImportCalendarRequestSchema,
  type ImportCalendarResponse,
  ImportCalendarResponseSchema,
  type RescheduleAppointmentRequest,
  RescheduleAppointmentRequestSchema,
  type RescheduleAppointmentResponse,
  RescheduleAppointmentResponseSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { transaction } from "../../../lib/db/index.ts";
import { checkContract, InvalidInputError } from "../../../lib/errors/index.ts";
import {
  answer,
  type BookingDeps,
  calendarIds,
  checkZone,
  deliver,
  findChange,
  hashRequest,
  intervalOf,
  normalizeEmail,
  rangeOf,
  storeCancel,
  storedBusy,
  storeReschedule,
} from "./booking.ts";
import { CrmCalendar, CrmCalendarBusy } from "./entities.ts";
import { busyFromCalendar } from "./icalendar.ts";
import { type Interval, intersect, normalize } from "./intervals.ts";

const day = 86_400_000;
/** Longest window one import stores. */
export const maxImportWindowDays = 400;
/** Longest window GetFreeBusy reads. */
export const maxFreeBusyWindowDays = 366;

/** ImportCalendar: replaces a calendar's busy intervals with those of the iCalendar text in the window. */
export async function importCalendar(
  deps: Pick<BookingDeps, "db" | "now">,
  req: ImportCalendarRequest,
): Promise<ImportCalendarResponse> {
  checkContract(ImportCalendarRequestSchema, req);
  const zone = checkZone(req.timeZone || "UTC", "time_zone");
  const window = intervalOf(req.window as NonNullable<typeof req.window>) as Interval;
  if (window.end - window.start > maxImportWindowDays * day) {
    throw new InvalidInputError("window", `spans more than ${maxImportWindowDays} days; import a shorter window`);
  }
  // Parsed and expanded before anything is written: bad text changes nothing.
  const parsed = busyFromCalendar(req.ics, zone, window, "ics");
  const busy = intersect(parsed.busy, [window]);
  const email = normalizeEmail(req.email);
  const now = deps.now();
  await transaction(deps.db, async (em) => {
    const id = (await calendarIds(em, [email], now)).get(email) as number;
    await em.nativeDelete(CrmCalendarBusy, { calendar: id });
    await em.nativeUpdate(
      CrmCalendar,
      { id },
      {
        timeZone: zone,
        windowStart: new Date(window.start),
        windowEnd: new Date(window.end),
        events: parsed.events,
        importedAt: now,
      },
    );
    for (let i = 0; i < busy.length; i += 5000) {
      await em.insertMany(
        CrmCalendarBusy,
        busy.slice(i, i + 5000).map((b) => ({ calendar: id, startAt: new Date(b.start), endAt: new Date(b.end) })),
      );
    }
  });
  return create(ImportCalendarResponseSchema, {
    email,
    events: parsed.events,
    busyIntervals: busy.length,
    window: rangeOf(window),
  });
}

interface FreeBusyToken {
  e: string;
  s: number;
  w: number;
  a: number;
}

/** GetFreeBusy: a calendar's merged busy intervals (imported and booked) in a window, in pages. */
export async function getFreeBusy(
  deps: Pick<BookingDeps, "db">,
  req: GetFreeBusyRequest,
): Promise<GetFreeBusyResponse> {
  checkContract(GetFreeBusyRequestSchema, req);
  const window = intervalOf(req.window as NonNullable<typeof req.window>) as Interval;
  if (window.end - window.start > maxFreeBusyWindowDays * day) {
    throw new InvalidInputError("window", `spans more than ${maxFreeBusyWindowDays} days; read a shorter window`);
  }
  const email = normalizeEmail(req.email);
  let after = window.start;
  if (req.pageToken !== "") {
    let t: FreeBusyToken | undefined;
    try {
      t = JSON.parse(Buffer.from(req.pageToken, "base64url").toString("utf8")) as FreeBusyToken;
    } catch {
      t = undefined;
    }
    if (!t || t.e !== email || t.s !== window.start || t.w !== window.end || typeof t.a !== "number") {
      throw new InvalidInputError("page_token", "is not a token of this calendar and window");
    }
    after = t.a;
  }
  const pageSize = req.pageSize || 500;
  const stored = await storedBusy(deps.db.fork(), [email], { start: after, end: window.end });
  const merged = intersect(normalize(stored.get(email) ?? []), [{ start: after, end: window.end }]);
  const page = merged.slice(0, pageSize);
  const last = page[page.length - 1];
  const next =
    merged.length > pageSize && last !== undefined
      ? Buffer.from(
          JSON.stringify({ e: email, s: window.start, w: window.end, a: last.end } satisfies FreeBusyToken),
        ).toString("base64url")
      : "";
  return create(GetFreeBusyResponseSchema, { busy: page.map(rangeOf), nextPageToken: next });
}

/** RescheduleAppointment: the new time with SEQUENCE + 1, sent as an iTIP REQUEST. */
export async function rescheduleAppointment(
  deps: BookingDeps,
  req: RescheduleAppointmentRequest,
): Promise<RescheduleAppointmentResponse> {
  checkContract(RescheduleAppointmentRequestSchema, req);
  const start = timestampDate(req.start as NonNullable<typeof req.start>).getTime();
  const now = deps.now().getTime();
  if (start < now) {
    throw new InvalidInputError(
      "start",
      `${new Date(start).toISOString()} is in the past (now is ${new Date(now).toISOString()}); choose a future start`,
    );
  }
  const length = req.duration ? Number(durationMs(req.duration)) : 0;
  if (req.duration && length < 300_000)
    throw new InvalidInputError("duration", "must be at least 5 minutes, or unset to keep the length");
  const hash = hashRequest(RescheduleAppointmentRequestSchema, req);
  const done =
    (await findChange(deps.db, req.requestId, hash)) ??
    (await storeReschedule(deps, req.uid, start, length || undefined, req.requestId, hash, req.suppressInvitations));
  await deliver(deps, done.change, done.row, "");
  return create(RescheduleAppointmentResponseSchema, await answer(deps.db, done.row, done.change));
}

/** CancelAppointment: frees the time and sends an iTIP CANCEL with SEQUENCE + 1. */
export async function cancelAppointment(
  deps: BookingDeps,
  req: CancelAppointmentRequest,
): Promise<CancelAppointmentResponse> {
  checkContract(CancelAppointmentRequestSchema, req);
  const hash = hashRequest(CancelAppointmentRequestSchema, req);
  const done =
    (await findChange(deps.db, req.requestId, hash)) ??
    (await storeCancel(deps, req.uid, req.reason, req.requestId, hash, req.suppressInvitations));
  await deliver(deps, done.change, done.row, req.reason);
  return create(CancelAppointmentResponseSchema, await answer(deps.db, done.row, done.change));
}
