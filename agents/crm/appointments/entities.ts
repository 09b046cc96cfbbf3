/**
 * Appointment tables in the `operations` schema: stored calendars (one per owner email) and their
 * imported busy intervals; appointments, the time they hold on each participant's calendar, their
 * changes (the booking, each reschedule and the cancellation, one SEQUENCE each, with the iTIP
 * object sent) and the invitation emails of each change.
 *
 * Double booking is impossible by construction: `crm_appointment_hold` carries an exclusion
 * constraint — no two holds of one calendar overlap — so of two concurrent bookings of the same
 * time the second insert fails, whatever the isolation level. The calendar key is compared as the
 * one-point range `int8range(calendar_id, calendar_id, '[]')`, which GiST indexes natively, so the
 * constraint needs no btree_gist extension.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";
import type { StoredJson } from "../entities.ts";

/** A calendar, named by its owner's normalised email. */
export const CrmCalendar = defineEntity({
  name: "CrmCalendar",
  tableName: "crm_calendar",
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    email: p.string().length(254).unique(),
    /** Zone floating times of the last import were read in. */
    timeZone: p.string().length(64).default("UTC"),
    /** Window of the last import; null before any import. */
    windowStart: p.datetime().nullable(),
    windowEnd: p.datetime().nullable(),
    /** VEVENTs of the last import. */
    events: p.integer().default(0),
    importedAt: p.datetime().nullable(),
    createdAt: p.datetime(),
  },
});

/** One imported busy interval. */
export const CrmCalendarBusy = defineEntity({
  name: "CrmCalendarBusy",
  tableName: "crm_calendar_busy",
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    calendar: () => p.manyToOne(CrmCalendar).mapToPk(),
    startAt: p.datetime(),
    endAt: p.datetime(),
  },
  indexes: [{ properties: ["calendar", "startAt"] }],
});

/** An appointment: its current times and SEQUENCE, and what it was booked with. */
export const CrmAppointment = defineEntity({
  name: "CrmAppointment",
  tableName: "crm_appointment",
  properties: {
    id: p.uuid().primary(),
    /** iCalendar UID: `<id>@<organiser's domain>`. */
    uid: p.string().length(255).unique(),
    organizerEmail: p.string().length(254).index(),
    organizerName: p.string().length(200).default(""),
    /** Attendees: `{ name, email, contactId, optional }` each. */
    attendees: p.json<StoredJson[]>(),
    timeZone: p.string().length(64),
    /** Working hours the booking was checked against: `{ day, startMinute, endMinute }` each. */
    workingHours: p.json<StoredJson[]>(),
    bufferSeconds: p.integer().default(0),
    summary: p.string().length(200),
    description: p.text().default(""),
    location: p.string().length(500).default(""),
    meetingUrl: p.string().length(2048).default(""),
    reminderSeconds: p.integer().default(0),
    dealId: p.uuid().nullable(),
    startAt: p.datetime(),
    endAt: p.datetime(),
    sequence: p.integer().default(0),
    /** `booked` or `cancelled`. */
    status: p.string().length(16),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
  // Attendees by containment (`attendees @> '[{"contactId": …}]'`): the timeline and erasure.
  indexes: [
    {
      name: "crm_appointment_attendees_index",
      expression: `create index "crm_appointment_attendees_index" on "operations"."crm_appointment" using gin ("attendees" jsonb_path_ops)`,
    },
  ],
});

/** Time an appointment holds on one participant's calendar (no two holds of a calendar overlap). */
export const CrmAppointmentHold = defineEntity({
  name: "CrmAppointmentHold",
  tableName: "crm_appointment_hold",
  properties: {
    appointmentId: p.uuid().primary(),
    calendarId: p.bigint("number").primary(),
    startAt: p.datetime(),
    endAt: p.datetime(),
  },
  indexes: [
    {
      name: "crm_appointment_hold_no_overlap",
      expression: `alter table "operations"."crm_appointment_hold" add constraint "crm_appointment_hold_no_overlap" exclude using gist (int8range("calendar_id", "calendar_id", '[]') with &&, tstzrange("start_at", "end_at", '[)') with &&)`,
    },
  ],
});

/** One change of an appointment (booking, reschedule, cancellation): one SEQUENCE, one iTIP object. */
export const CrmAppointmentChange = defineEntity({
  name: "CrmAppointmentChange",
  tableName: "crm_appointment_change",
  properties: {
    id: p.uuid().primary(),
    appointment: () => p.manyToOne(CrmAppointment).mapToPk().index(),
    /** The request that made it: a retry finds the change instead of making another. */
    requestId: p.uuid().unique(),
    /** SHA-256 (hex) of the request, so a request id reused with other input is refused. */
    requestHash: p.string().length(64),
    sequence: p.integer(),
    /** `REQUEST` or `CANCEL`. */
    method: p.string().length(8),
    ics: p.text(),
    startAt: p.datetime(),
    endAt: p.datetime(),
    createdAt: p.datetime(),
  },
});

/** The email of one change to one attendee; its id is the SendEmail request id, so it is sent once. */
export const CrmAppointmentInvite = defineEntity({
  name: "CrmAppointmentInvite",
  tableName: "crm_appointment_invite",
  properties: {
    emailRequestId: p.uuid().primary(),
    change: () => p.manyToOne(CrmAppointmentChange).mapToPk().index(),
    email: p.string().length(254),
    name: p.string().length(200).default(""),
    /** `pending`, `sent`, `suppressed` or `failed`. */
    status: p.string().length(16),
    messageId: p.string().length(300).default(""),
    error: p.text().default(""),
    updatedAt: p.datetime(),
  },
  indexes: [{ name: "crm_appointment_invite_email_index", properties: ["email"] }],
});

/** A stored appointment. */
export type CrmAppointmentRow = InferEntity<typeof CrmAppointment>;
/** A stored change. */
export type CrmAppointmentChangeRow = InferEntity<typeof CrmAppointmentChange>;
/** A stored invitation email. */
export type CrmAppointmentInviteRow = InferEntity<typeof CrmAppointmentInvite>;

/** The appointment entities, for the operations domain. */
export const appointmentEntities = [
  CrmCalendar,
  CrmCalendarBusy,
  CrmAppointment,
  CrmAppointmentHold,
  CrmAppointmentChange,
  CrmAppointmentInvite,
] as const;
