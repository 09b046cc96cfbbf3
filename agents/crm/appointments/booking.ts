/**
 * Booking, rescheduling and cancelling appointments, and their invitations.
 *
 * Each change (the booking, a reschedule, the cancellation) is made once per request id: in one
 * short transaction it updates the appointment and its holds on the participants' calendars
 * (whose exclusion constraint refuses any overlap, so concurrent bookings of the same time cannot
 * both succeed), stores the change with its SEQUENCE and iTIP object, and one invitation row per
 * attendee. Only then, with no transaction open, are the invitations handed to the Email agent,
 * each with a SendEmail request id derived from the appointment, the SEQUENCE and the attendee
 * (a name-based UUID), so a retry after a lost answer or a crash asks for the same message and the
 * Email agent sends it at most once. A retry of the same request id finds the stored change and
 * only sends what is still pending.
 */
import { createHash, randomUUID } from "node:crypto";
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { DateTime } from "luxon";
import type { TimeRange } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  type BookedAppointment,
  type InvitationDelivery,
  InvitationStatus,
  type Participant,
  ParticipationRole,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { CalendarMethod, EmailService, EmailStatus } from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, type EntityManager, LockMode } from "../../../lib/db/index.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import type { AgentDeps } from "../../../lib/server/index.ts";
import type { StoredJson } from "../entities.ts";
import {
  CrmAppointment,
  CrmAppointmentChange,
  type CrmAppointmentChangeRow,
  CrmAppointmentHold,
  CrmAppointmentInvite,
  type CrmAppointmentInviteRow,
  type CrmAppointmentRow,
  CrmCalendar,
  CrmCalendarBusy,
} from "./entities.ts";
import { buildInvite, type InviteParticipant } from "./icalendar.ts";
import { covers, type Interval } from "./intervals.ts";
import { type Constraint, type DailyHours, freeTime, isTimeZone } from "./slots.ts";

/** What booking needs from the agent. */
export type BookingDeps = Pick<AgentDeps, "db" | "now" | "client" | "log">;

/** Tag the Email agent records invitations with. */
export const INVITE_TAG = "crm.appointment";

/** The normalised form emails are stored and compared in. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** SHA-256 (hex) of a request's binary form: what a retry with the same request id must match. */
export function hashRequest<D extends DescMessage>(schema: D, req: MessageShape<D>): string {
  return createHash("sha256").update(toBinary(schema, req)).digest("hex");
}

/**
 * The SendEmail request id of one change's invitation to one attendee: a UUID (version 8, RFC 9562
 * §5.8, name-based on SHA-256) of the appointment, the SEQUENCE and the address.
 */
export function inviteRequestId(appointmentId: string, sequence: number, email: string): string {
  const h = createHash("sha256")
    .update(`${INVITE_TAG}\n${appointmentId}\n${sequence}\n${normalizeEmail(email)}`)
    .digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Milliseconds of a TimeRange, or undefined when an end is missing. */
export function intervalOf(r: TimeRange): Interval | undefined {
  if (!r.start || !r.end) return undefined;
  return { start: timestampDate(r.start).getTime(), end: timestampDate(r.end).getTime() };
}

/** A TimeRange of an interval. */
export function rangeOf(i: Interval): TimeRange {
  return { $typeName: "mesh.common.v1.TimeRange", start: timestampFromMs(i.start), end: timestampFromMs(i.end) };
}

/** Whether an error (or one it wraps) is PostgreSQL's exclusion_violation (23P01). */
function isExclusionViolation(err: unknown): boolean {
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === "23P01") return true;
  }
  return false;
}

/** Stored busy time (imported intervals and appointment holds) of calendars by owner email, overlapping `window`. */
export async function storedBusy(
  em: EntityManager,
  emails: readonly string[],
  window: Interval,
  exceptAppointment?: string,
): Promise<Map<string, Interval[]>> {
  const out = new Map<string, Interval[]>();
  const wanted = [...new Set(emails.map(normalizeEmail))];
  if (wanted.length === 0) return out;
  const calendars = await em.find(CrmCalendar, { email: { $in: wanted } });
  const byId = new Map(calendars.map((c) => [c.id, c.email] as const));
  if (calendars.length === 0) return out;
  const ids = calendars.map((c) => c.id);
  const from = new Date(window.start);
  const to = new Date(window.end);
  // Bounded: an import keeps at most 50,000 intervals per calendar, and holds are clipped to the window.
  const busy = await em.find(
    CrmCalendarBusy,
    { calendar: { $in: ids }, startAt: { $lt: to }, endAt: { $gt: from } },
    { limit: 200_000 },
  );
  const holds = await em.find(
    CrmAppointmentHold,
    {
      calendarId: { $in: ids },
      startAt: { $lt: to },
      endAt: { $gt: from },
      ...(exceptAppointment ? { appointmentId: { $ne: exceptAppointment } } : {}),
    },
    { limit: 200_000 },
  );
  const push = (id: number, start: Date, end: Date) => {
    const email = byId.get(id) as string;
    const list = out.get(email) ?? [];
    list.push({ start: start.getTime(), end: end.getTime() });
    out.set(email, list);
  };
  for (const b of busy) push(b.calendar as number, b.startAt, b.endAt);
  for (const h of holds) push(h.calendarId, h.startAt, h.endAt);
  return out;
}

/** Calendar ids of owner emails, creating the calendars that do not exist yet. */
export async function calendarIds(
  em: EntityManager,
  emails: readonly string[],
  now: Date,
): Promise<Map<string, number>> {
  const wanted = [...new Set(emails.map(normalizeEmail))];
  for (const email of wanted) {
    await em.upsert(
      CrmCalendar,
      { email, timeZone: "UTC", events: 0, createdAt: now },
      { onConflictFields: ["email"], onConflictAction: "ignore", disableIdentityMap: true },
    );
  }
  const rows = await em.find(CrmCalendar, { email: { $in: wanted } }, { disableIdentityMap: true });
  return new Map(rows.map((r) => [r.email, r.id] as const));
}

/** A stored attendee. */
interface StoredAttendee {
  name: string;
  email: string;
  contactId: string;
  optional: boolean;
  timeZone: string;
}

function attendeesOf(row: CrmAppointmentRow): StoredAttendee[] {
  // Entries of erased people (appointments/privacy.ts) are placeholders: no invitation, no constraint.
  return (row.attendees as unknown as (StoredAttendee & { erased?: boolean })[]).filter((a) => a.erased !== true);
}

/** Participants as stored with an appointment. */
export function storedAttendees(attendees: readonly Participant[], zone: string): StoredJson[] {
  return attendees.map((a) => ({
    name: a.name,
    email: normalizeEmail(a.email),
    contactId: a.contactId,
    optional: a.role === ParticipationRole.OPTIONAL,
    timeZone: a.timeZone || zone,
  }));
}

function inviteContent(row: CrmAppointmentRow, method: "REQUEST" | "CANCEL", stamp: Date, comment: string): string {
  return buildInvite({
    method,
    uid: row.uid,
    sequence: row.sequence,
    stamp,
    start: row.startAt,
    end: row.endAt,
    summary: row.summary,
    description: row.description,
    location: row.location,
    url: row.meetingUrl,
    reminderSeconds: row.reminderSeconds,
    comment,
    organizer: { name: row.organizerName, email: row.organizerEmail },
    attendees: attendeesOf(row).map((a): InviteParticipant => ({ name: a.name, email: a.email, optional: a.optional })),
  });
}

/** Stores a change of `row` (already updated) and its pending invitations; returns the change. */
function addChange(
  em: EntityManager,
  row: CrmAppointmentRow,
  method: "REQUEST" | "CANCEL",
  requestId: string,
  requestHash: string,
  now: Date,
  comment: string,
  suppress: boolean,
): CrmAppointmentChangeRow {
  const change = em.create(CrmAppointmentChange, {
    id: randomUUID(),
    appointment: row.id,
    requestId,
    requestHash,
    sequence: row.sequence,
    method,
    ics: inviteContent(row, method, now, comment),
    startAt: row.startAt,
    endAt: row.endAt,
    createdAt: now,
  });
  for (const a of attendeesOf(row)) {
    em.create(CrmAppointmentInvite, {
      emailRequestId: inviteRequestId(row.id, row.sequence, a.email),
      change: change.id,
      email: a.email,
      name: a.name,
      status: suppress ? "suppressed" : "pending",
      messageId: "",
      error: suppress ? "invitations suppressed by the caller" : "",
      updatedAt: now,
    });
  }
  return change;
}

/** "Monday, January 20, 2025, 10:00 – 11:00 CST (America/Chicago)" in a zone. */
function when(start: Date, end: Date, zone: string): string {
  const s = DateTime.fromJSDate(start, { zone });
  const e = DateTime.fromJSDate(end, { zone });
  const day = s.toFormat("cccc, LLLL d, yyyy");
  const endText = e.hasSame(s, "day") ? e.toFormat("HH:mm ZZZZ") : e.toFormat("cccc, LLLL d, yyyy, HH:mm ZZZZ");
  return `${day}, ${s.toFormat("HH:mm")} – ${endText} (${zone})`;
}

function emailText(
  row: CrmAppointmentRow,
  method: "REQUEST" | "CANCEL",
  zone: string,
  comment: string,
): { subject: string; text: string } {
  const w = when(row.startAt, row.endAt, zone);
  const organizer = row.organizerName || row.organizerEmail;
  const subject =
    method === "CANCEL"
      ? `Cancelled: ${row.summary}`
      : row.sequence === 0
        ? `Invitation: ${row.summary}`
        : `Updated invitation: ${row.summary}`;
  const lines = [
    method === "CANCEL"
      ? `${organizer} cancelled "${row.summary}".`
      : row.sequence === 0
        ? `${organizer} invites you to "${row.summary}".`
        : `${organizer} moved "${row.summary}".`,
    "",
    `When: ${w}`,
    ...(row.location ? [`Where: ${row.location}`] : []),
    ...(row.meetingUrl ? [`Join: ${row.meetingUrl}`] : []),
    ...(comment ? ["", comment] : []),
    ...(row.description && method === "REQUEST" ? ["", row.description] : []),
  ];
  return { subject: subject.slice(0, 300), text: lines.join("\n") };
}

/**
 * Sends the pending invitations of a change. Permanent refusals are recorded as failed; a transient
 * failure (the Email agent or its SMTP server unavailable) leaves the invitation pending and is
 * thrown after the others were tried, so the caller's retry with the same request id sends the rest.
 */
export async function deliver(
  deps: BookingDeps,
  change: CrmAppointmentChangeRow,
  row: CrmAppointmentRow,
  comment: string,
): Promise<void> {
  const invites = await deps.db
    .fork()
    .find(CrmAppointmentInvite, { change: change.id, status: "pending" }, { orderBy: { email: "asc" } });
  if (invites.length === 0) return;
  const email = deps.client.agent(EmailService);
  const zones = new Map(attendeesOf(row).map((a) => [a.email, a.timeZone] as const));
  const method = change.method === "CANCEL" ? "CANCEL" : "REQUEST";
  let transient: ConnectError | undefined;
  for (const inv of invites) {
    const { subject, text } = emailText(row, method, zones.get(inv.email) || row.timeZone, comment);
    let changes: Partial<CrmAppointmentInviteRow>;
    try {
      const res = await email.sendEmail({
        requestId: inv.emailRequestId,
        to: { address: inv.email, name: inv.name },
        replyTo: row.organizerEmail,
        subject,
        text,
        tag: INVITE_TAG,
        calendar: { method: method === "CANCEL" ? CalendarMethod.CANCEL : CalendarMethod.REQUEST, ics: change.ics },
      });
      changes =
        res.status === EmailStatus.SUPPRESSED
          ? { status: "suppressed", error: `the recipient is on the suppression list: ${res.suppressionReason}` }
          : { status: "sent", messageId: res.messageId, error: "" };
    } catch (err) {
      const ce = ConnectError.from(err);
      if ([Code.FailedPrecondition, Code.InvalidArgument, Code.AlreadyExists, Code.Aborted].includes(ce.code)) {
        changes = { status: "failed", error: ce.rawMessage };
      } else {
        transient ??= ce;
        deps.log.warn("appointment invitation not sent yet", { uid: row.uid, email: inv.email, error: ce.rawMessage });
        continue;
      }
    }
    await deps.db.transaction(async (em) => {
      await em.nativeUpdate(
        CrmAppointmentInvite,
        { emailRequestId: inv.emailRequestId },
        { ...changes, updatedAt: deps.now() },
      );
    });
  }
  if (transient) throw transient;
}

const statusOf: Record<string, InvitationStatus> = {
  pending: InvitationStatus.UNSPECIFIED,
  sent: InvitationStatus.SENT,
  suppressed: InvitationStatus.SUPPRESSED,
  failed: InvitationStatus.FAILED,
};

/** The appointment and the deliveries of one change, as the RPCs answer. */
export async function answer(
  db: Database,
  row: CrmAppointmentRow,
  change: CrmAppointmentChangeRow,
): Promise<{ appointment: BookedAppointment; deliveries: InvitationDelivery[] }> {
  const invites = await db.fork().find(CrmAppointmentInvite, { change: change.id }, { orderBy: { email: "asc" } });
  return {
    appointment: {
      $typeName: "mesh.crm.v1.BookedAppointment",
      uid: row.uid,
      start: timestampFromMs(change.startAt.getTime()),
      end: timestampFromMs(change.endAt.getTime()),
      sequence: change.sequence,
      ics: change.ics,
      interactionIds: [],
      cancelled: change.method === "CANCEL",
    },
    deliveries: invites.map((i) => ({
      $typeName: "mesh.crm.v1.InvitationDelivery",
      email: i.email,
      status: statusOf[i.status] ?? InvitationStatus.UNSPECIFIED,
      messageId: i.messageId,
      error: i.error,
    })),
  };
}

/** The stored change of a request id, checked against the request's hash (ALREADY_EXISTS on a mismatch). */
export async function findChange(
  db: Database,
  requestId: string,
  hash: string,
): Promise<{ change: CrmAppointmentChangeRow; row: CrmAppointmentRow } | undefined> {
  const em = db.fork();
  const change = await em.findOne(CrmAppointmentChange, { requestId });
  if (change === null) return undefined;
  if (change.requestHash !== hash) {
    throw new ConnectError(
      "request_id was already used with different input; use a new request_id for a new change",
      Code.AlreadyExists,
    );
  }
  const row = await em.findOneOrFail(CrmAppointment, { id: change.appointment as string });
  return { change, row };
}

/** Everything a new booking stores. */
export interface NewBooking {
  readonly requestId: string;
  readonly requestHash: string;
  readonly organizer: Participant;
  readonly attendees: readonly Participant[];
  readonly zone: string;
  readonly hours: readonly DailyHours[];
  readonly bufferSeconds: number;
  readonly start: number;
  readonly end: number;
  readonly summary: string;
  readonly description: string;
  readonly location: string;
  readonly meetingUrl: string;
  readonly reminderSeconds: number;
  readonly dealId: string;
  readonly suppress: boolean;
}

function exclusionRefusal(err: unknown, start: number, end: number): never {
  if (isExclusionViolation(err)) {
    throw new FailedPreconditionError(
      `the slot ${new Date(start).toISOString()}–${new Date(end).toISOString()} overlaps an appointment booked meanwhile; propose slots again`,
    );
  }
  throw err;
}

/** Stores a booking (appointment, holds, change, invitations) in one transaction. */
export async function storeBooking(
  deps: BookingDeps,
  b: NewBooking,
): Promise<{ change: CrmAppointmentChangeRow; row: CrmAppointmentRow }> {
  const now = deps.now();
  try {
    return await deps.db.transaction(async (em) => {
      const id = randomUUID();
      const organizerEmail = normalizeEmail(b.organizer.email);
      const domain = organizerEmail.slice(organizerEmail.lastIndexOf("@") + 1);
      const required = b.attendees.filter((a) => a.role !== ParticipationRole.OPTIONAL).map((a) => a.email);
      const ids = await calendarIds(em, [organizerEmail, ...required], now);
      const row = em.create(CrmAppointment, {
        id,
        uid: `${id}@${domain}`,
        organizerEmail,
        organizerName: b.organizer.name,
        attendees: storedAttendees(b.attendees, b.zone),
        timeZone: b.zone,
        workingHours: b.hours.map((h) => ({ day: h.day, startMinute: h.startMinute, endMinute: h.endMinute })),
        bufferSeconds: b.bufferSeconds,
        summary: b.summary,
        description: b.description,
        location: b.location,
        meetingUrl: b.meetingUrl,
        reminderSeconds: b.reminderSeconds,
        dealId: b.dealId || null,
        startAt: new Date(b.start),
        endAt: new Date(b.end),
        sequence: 0,
        status: "booked",
        createdAt: now,
        updatedAt: now,
      });
      for (const calendarId of new Set(ids.values())) {
        em.create(CrmAppointmentHold, { appointmentId: id, calendarId, startAt: row.startAt, endAt: row.endAt });
      }
      const change = addChange(em, row, "REQUEST", b.requestId, b.requestHash, now, "", b.suppress);
      await em.flush();
      return { change, row };
    });
  } catch (err) {
    return exclusionRefusal(err, b.start, b.end);
  }
}

/** Constraints of a stored appointment's participants for a new time: its hours and the stored calendars. */
async function storedConstraints(db: Database, row: CrmAppointmentRow, window: Interval): Promise<Constraint[]> {
  const required = attendeesOf(row)
    .filter((a) => !a.optional)
    .map((a) => a.email);
  const busy = await storedBusy(db.fork(), [row.organizerEmail, ...required], window, row.id);
  const hours = row.workingHours as unknown as DailyHours[];
  return [
    { hours, zone: row.timeZone, busy: busy.get(row.organizerEmail) ?? [] },
    ...required.map((e) => ({ hours: undefined, zone: row.timeZone, busy: busy.get(e) ?? [] })),
  ];
}

/** Loads an appointment by UID (NOT_FOUND when unknown). */
export async function appointmentByUid(db: Database, uid: string): Promise<CrmAppointmentRow> {
  const row = await db.fork().findOne(CrmAppointment, { uid });
  if (row === null) throw new NotFoundError(`no appointment has UID ${uid}`);
  return row;
}

/** Moves an appointment: checks the new slot, then stores it with SEQUENCE + 1 and pending updates. */
export async function storeReschedule(
  deps: BookingDeps,
  uid: string,
  start: number,
  durationMs: number | undefined,
  requestId: string,
  requestHash: string,
  suppress: boolean,
): Promise<{ change: CrmAppointmentChangeRow; row: CrmAppointmentRow }> {
  const current = await appointmentByUid(deps.db, uid);
  if (current.status === "cancelled")
    throw new FailedPreconditionError(`appointment ${uid} is cancelled; book a new one`);
  const end = start + (durationMs ?? current.endAt.getTime() - current.startAt.getTime());
  const bufferMs = current.bufferSeconds * 1000;
  const window = { start: start - bufferMs - 86_400_000, end: end + bufferMs + 86_400_000 };
  const free = freeTime({ window, participants: await storedConstraints(deps.db, current, window), bufferMs });
  if (!covers(free, start, end)) {
    throw new FailedPreconditionError(
      `the slot ${new Date(start).toISOString()}–${new Date(end).toISOString()} is not free in the working hours and stored calendars of appointment ${uid}`,
    );
  }
  const now = deps.now();
  try {
    return await deps.db.transaction(async (em) => {
      const row = await em.findOneOrFail(CrmAppointment, { id: current.id }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      if (row.status === "cancelled")
        throw new FailedPreconditionError(`appointment ${uid} is cancelled; book a new one`);
      row.sequence += 1;
      row.startAt = new Date(start);
      row.endAt = new Date(end);
      row.updatedAt = now;
      await em.nativeUpdate(CrmAppointmentHold, { appointmentId: row.id }, { startAt: row.startAt, endAt: row.endAt });
      const change = addChange(em, row, "REQUEST", requestId, requestHash, now, "", suppress);
      await em.flush();
      return { change, row };
    });
  } catch (err) {
    return exclusionRefusal(err, start, end);
  }
}

/** Cancels an appointment: frees its holds and stores SEQUENCE + 1 with pending CANCELs. */
export async function storeCancel(
  deps: BookingDeps,
  uid: string,
  reason: string,
  requestId: string,
  requestHash: string,
  suppress: boolean,
): Promise<{ change: CrmAppointmentChangeRow; row: CrmAppointmentRow }> {
  const current = await appointmentByUid(deps.db, uid);
  const now = deps.now();
  return deps.db.transaction(async (em) => {
    const row = await em.findOneOrFail(CrmAppointment, { id: current.id }, { lockMode: LockMode.PESSIMISTIC_WRITE });
    if (row.status === "cancelled") throw new FailedPreconditionError(`appointment ${uid} is already cancelled`);
    if (row.startAt.getTime() <= now.getTime()) {
      throw new FailedPreconditionError(
        `appointment ${uid} started at ${row.startAt.toISOString()}; it can no longer be cancelled`,
      );
    }
    row.sequence += 1;
    row.status = "cancelled";
    row.updatedAt = now;
    await em.nativeDelete(CrmAppointmentHold, { appointmentId: row.id });
    const change = addChange(em, row, "CANCEL", requestId, requestHash, now, reason, suppress);
    await em.flush();
    return { change, row };
  });
}

/** Checks a time zone field (INVALID_ARGUMENT naming it when unknown). */
export function checkZone(zone: string, field: string): string {
  if (!isTimeZone(zone)) throw new InvalidInputError(field, `"${zone}" is not an IANA time zone this server knows`);
  return zone;
}
