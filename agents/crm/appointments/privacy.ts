/**
 * The appointment tables' part of a data-subject request (agents/crm/privacy): what they hold about
 * a person, and its erasure.
 *
 * A person is found in an appointment by an attendee entry naming one of their contact ids or
 * addresses (GIN containment on `attendees`), or as its organiser. Erasure, inside EraseContact's
 * transaction:
 *
 * - their attendee entries become placeholders `{ name: "", email: "", contactId: "", optional,
 *   timeZone: "", erased: true }` (kept so the appointment's shape stays; later changes skip them,
 *   see booking.ts `attendeesOf`); as organiser, the address becomes `erased@erased.invalid`;
 * - the person's strings (addresses, names, phone) in summary, description and location become
 *   `[erased]`;
 * - every stored iTIP object of those appointments is rewritten with ical.js: the person's
 *   ATTENDEE properties are removed, their ORGANIZER address replaced, and the same strings in the
 *   text properties (SUMMARY, DESCRIPTION, LOCATION, COMMENT, alarms) replaced; text that does not
 *   parse is emptied;
 * - invitation rows to their addresses lose address, name and error text (a still pending one is
 *   marked failed, so no retry sends to an empty address);
 * - their stored calendars (one per address) are deleted with their busy intervals and the holds
 *   on them.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import ICAL from "ical.js";
import {
  AppointmentChangeKind,
  type AppointmentChangeRecord,
  AppointmentChangeRecordSchema,
  type ContactAppointmentRecord,
  ContactAppointmentRecordSchema,
  InvitationDeliverySchema,
  InvitationStatus,
  ParticipantSchema,
  ParticipationRole,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { EntityManager } from "../../../lib/db/index.ts";

/** Who a request is about: the person's contact ids and addresses (normalised). */
export interface AppointmentSubject {
  readonly contactIds: readonly string[];
  readonly emails: readonly string[];
}

/** What an erasure of appointment data did. */
export interface AppointmentErasure {
  /** Appointments whose data about the person was anonymised. */
  appointments: number;
  /** Stored calendars of the person's addresses deleted. */
  calendars: number;
}

/** The address an erased organiser is replaced with (RFC 2606 reserved, never delivered). */
export const erasedAddress = "erased@erased.invalid";
/** What the person's strings in free text become. */
export const erasedText = "[erased]";

/** An attendee as stored (booking.ts), with the erasure marker. */
interface StoredAttendee {
  name: string;
  email: string;
  contactId: string;
  optional: boolean;
  timeZone: string;
  erased?: boolean;
}

interface AppointmentKeyRow {
  id: string;
  uid: string;
  organizer_email: string;
  organizer_name: string;
  attendees: StoredAttendee[];
  summary: string;
  description: string;
  location: string;
  meeting_url: string;
  start_at: Date;
  end_at: Date;
  sequence: number;
  status: string;
  created_at: Date;
}

function exec<T>(em: EntityManager, sql: string, params: unknown[]): Promise<T> {
  return em.getConnection().execute(sql, params, "all", em.getTransactionContext()) as Promise<T>;
}

function normalized(subject: AppointmentSubject): { ids: string[]; emails: string[] } {
  return {
    ids: [...new Set(subject.contactIds.map((i) => i.toLowerCase()))],
    emails: [...new Set(subject.emails.map((e) => e.trim().toLowerCase()).filter((e) => e !== ""))],
  };
}

/** The SQL condition (and its parameters) matching the appointments of a subject. */
export function attendeeCondition(
  subject: AppointmentSubject,
  alias = "a",
): { sql: string; params: string[] } | undefined {
  const { ids, emails } = normalized(subject);
  const parts: string[] = [];
  const params: string[] = [];
  // One containment test per identifier, each answered by the GIN index on attendees.
  for (const id of ids) {
    parts.push(`${alias}.attendees @> ?::jsonb`);
    params.push(JSON.stringify([{ contactId: id }]));
  }
  for (const e of emails) {
    parts.push(`${alias}.attendees @> ?::jsonb`);
    params.push(JSON.stringify([{ email: e }]));
  }
  if (emails.length > 0) {
    parts.push(`${alias}.organizer_email in (select jsonb_array_elements_text(?::jsonb))`);
    params.push(JSON.stringify(emails));
  }
  return parts.length === 0 ? undefined : { sql: `(${parts.join(" or ")})`, params };
}

function isSubject(a: StoredAttendee, ids: ReadonlySet<string>, emails: ReadonlySet<string>): boolean {
  return a.erased !== true && (ids.has((a.contactId ?? "").toLowerCase()) || emails.has(a.email.toLowerCase()));
}

/** `text` with every occurrence of a needle (case-insensitive) replaced by `[erased]`. */
export function scrubText(text: string, needles: readonly string[]): string {
  let out = text;
  for (const n of [...needles].sort((a, b) => b.length - a.length)) {
    if (n.length < 3) continue;
    out = out.replace(new RegExp(n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gi"), erasedText);
  }
  return out;
}

function mailtoOf(value: unknown): string {
  return String(value ?? "")
    .replace(/^mailto:/i, "")
    .trim()
    .toLowerCase();
}

/**
 * An iTIP object without the person: their ATTENDEE properties removed, their ORGANIZER address
 * replaced, their strings in text properties replaced. "" when the text does not parse.
 */
export function scrubIcs(ics: string, emails: ReadonlySet<string>, needles: readonly string[]): string {
  let cal: InstanceType<typeof ICAL.Component>;
  try {
    cal = new ICAL.Component(ICAL.parse(ics));
  } catch {
    return "";
  }
  const visit = (c: InstanceType<typeof ICAL.Component>) => {
    for (const p of c.getAllProperties("attendee")) {
      if (emails.has(mailtoOf(p.getFirstValue()))) c.removeProperty(p);
    }
    for (const p of c.getAllProperties("organizer")) {
      if (emails.has(mailtoOf(p.getFirstValue()))) {
        p.setValue(`mailto:${erasedAddress}`);
        p.removeParameter("cn");
      }
    }
    for (const name of ["summary", "description", "location", "comment"]) {
      for (const p of c.getAllProperties(name)) {
        const v = p.getFirstValue();
        if (typeof v === "string") p.setValue(scrubText(v, needles));
      }
    }
    for (const sub of c.getAllSubcomponents()) visit(sub);
  };
  visit(cal);
  return `${cal.toString()}\r\n`;
}

/** Most appointments one request reads. */
export const appointmentLimit = 10_000;

/**
 * Erases the person's data from the appointment tables, in the caller's transaction (`em`).
 * `needles` are further strings of the person (names, phone) to replace in free text.
 */
/**
 * The invitations of the subject's appointments that went to other people (each lists the subject
 * as an attendee or organiser), at most `limit` of them, by SendEmail request id and Message-ID:
 * EraseContact asks the Email agent to erase their subjects and stored copies, and shreds the
 * events announcing them.
 */
export async function invitationsToOthers(
  em: EntityManager,
  schema: string,
  subject: AppointmentSubject,
  limit = 10_000,
): Promise<{ requestId: string; messageId: string }[]> {
  const cond = attendeeCondition(subject);
  if (cond === undefined) return [];
  const { ids, emails } = normalized(subject);
  const rows = await exec<{ email_request_id: string; message_id: string }[]>(
    em,
    `select i.email_request_id, i.message_id from "${schema}"."crm_appointment" a
     join "${schema}"."crm_appointment_change" c on c.appointment_id = a.id
     join "${schema}"."crm_appointment_invite" i on i.change_id = c.id
     where ${cond.sql} and lower(i.email) not in (select jsonb_array_elements_text(?::jsonb))
       and not exists (select 1 from jsonb_array_elements(a.attendees) x
         where lower(x->>'email') = lower(i.email) and lower(x->>'contactId') in (select jsonb_array_elements_text(?::jsonb)))
     order by i.email_request_id limit ${limit}`,
    [...cond.params, JSON.stringify(emails), JSON.stringify(ids)],
  );
  return rows.map((r) => ({ requestId: r.email_request_id, messageId: r.message_id }));
}

export async function eraseAppointmentData(
  em: EntityManager,
  schema: string,
  subject: AppointmentSubject,
  needles: readonly string[],
): Promise<AppointmentErasure> {
  const s = `"${schema}"`;
  const { ids, emails } = normalized(subject);
  const idSet = new Set(ids);
  const emailSet = new Set(emails);
  const out: AppointmentErasure = { appointments: 0, calendars: 0 };
  const cond = attendeeCondition(subject);
  if (cond !== undefined) {
    const rows = await exec<AppointmentKeyRow[]>(
      em,
      `select a.id, a.organizer_email, a.attendees, a.summary, a.description, a.location from ${s}."crm_appointment" a where ${cond.sql} order by a.id for update`,
      cond.params,
    );
    // Addresses of the person's attendee entries, also those booked by contact id under another address.
    for (const r of rows) {
      for (const a of r.attendees) if (isSubject(a, idSet, emailSet)) emailSet.add(a.email.toLowerCase());
    }
    const allNeedles = [...emailSet, ...needles];
    for (const r of rows) {
      const attendees = r.attendees.map((a) =>
        isSubject(a, idSet, emailSet)
          ? { name: "", email: "", contactId: "", optional: a.optional === true, timeZone: "", erased: true }
          : a,
      );
      const organizer = emailSet.has(r.organizer_email.toLowerCase());
      await exec(
        em,
        `update ${s}."crm_appointment" set attendees = ?::jsonb,
           organizer_email = case when ? then ? else organizer_email end,
           organizer_name = case when ? then '' else organizer_name end,
           summary = ?, description = ?, location = ?
         where id = ?`,
        [
          JSON.stringify(attendees),
          organizer,
          erasedAddress,
          organizer,
          scrubText(r.summary, allNeedles),
          scrubText(r.description, allNeedles),
          scrubText(r.location, allNeedles),
          r.id,
        ],
      );
      // An appointment has a handful of changes (booking, reschedules, cancellation).
      const changes = await exec<{ id: string; ics: string }[]>(
        em,
        `select id, ics from ${s}."crm_appointment_change" where appointment_id = ? order by sequence limit 1000`,
        [r.id],
      );
      for (const c of changes) {
        await exec(em, `update ${s}."crm_appointment_change" set ics = ? where id = ?`, [
          scrubIcs(c.ics, emailSet, allNeedles),
          c.id,
        ]);
      }
      out.appointments++;
    }
  }
  const list = JSON.stringify([...emailSet]);
  if (emailSet.size > 0) {
    await exec(
      em,
      `update ${s}."crm_appointment_invite" set email = '', name = '', error = '',
         status = case when status = 'pending' then 'failed' else status end
       where email in (select jsonb_array_elements_text(?::jsonb))`,
      [list],
    );
    const calendars = await exec<{ id: number }[]>(
      em,
      `select id from ${s}."crm_calendar" where email in (select jsonb_array_elements_text(?::jsonb))`,
      [list],
    );
    const calendarIds = JSON.stringify(calendars.map((c) => Number(c.id)));
    if (calendars.length > 0) {
      const inCalendars = `(select (jsonb_array_elements_text(?::jsonb))::bigint)`;
      await exec(em, `delete from ${s}."crm_calendar_busy" where calendar_id in ${inCalendars}`, [calendarIds]);
      await exec(em, `delete from ${s}."crm_appointment_hold" where calendar_id in ${inCalendars}`, [calendarIds]);
      await exec(em, `delete from ${s}."crm_calendar" where id in ${inCalendars}`, [calendarIds]);
    }
    out.calendars = calendars.length;
  }
  return out;
}

/** What a stored change did. */
export function changeKindOf(method: string, sequence: number): AppointmentChangeKind {
  if (method === "CANCEL") return AppointmentChangeKind.CANCELLED;
  return sequence === 0 ? AppointmentChangeKind.BOOKED : AppointmentChangeKind.RESCHEDULED;
}

/** A change record of stored columns. */
export function changeRecordOf(r: {
  uid: string;
  summary: string;
  method: string;
  sequence: number;
  start_at: Date;
  end_at: Date;
  created_at: Date;
}): AppointmentChangeRecord {
  return create(AppointmentChangeRecordSchema, {
    uid: r.uid,
    summary: r.summary,
    kind: changeKindOf(r.method, r.sequence),
    sequence: r.sequence,
    start: timestampFromDate(new Date(r.start_at)),
    end: timestampFromDate(new Date(r.end_at)),
    changedAt: timestampFromDate(new Date(r.created_at)),
  });
}

const inviteStatus: Record<string, InvitationStatus> = {
  pending: InvitationStatus.UNSPECIFIED,
  sent: InvitationStatus.SENT,
  suppressed: InvitationStatus.SUPPRESSED,
  failed: InvitationStatus.FAILED,
};

/**
 * The appointments of a person for an export, oldest first (at most `appointmentLimit`): each with
 * the person's own attendee entries (not the other attendees'), its changes and the invitations to
 * the person's addresses.
 */
export async function exportAppointmentData(
  em: EntityManager,
  schema: string,
  subject: AppointmentSubject,
): Promise<ContactAppointmentRecord[]> {
  const s = `"${schema}"`;
  const cond = attendeeCondition(subject);
  if (cond === undefined) return [];
  const { ids, emails } = normalized(subject);
  const idSet = new Set(ids);
  const emailSet = new Set(emails);
  const rows = await exec<AppointmentKeyRow[]>(
    em,
    `select a.id, a.uid, a.organizer_email, a.organizer_name, a.attendees, a.summary, a.description, a.location,
       a.meeting_url, a.start_at, a.end_at, a.sequence, a.status, a.created_at
     from ${s}."crm_appointment" a where ${cond.sql} order by a.created_at, a.id limit ${appointmentLimit}`,
    cond.params,
  );
  if (rows.length === 0) return [];
  for (const r of rows) {
    for (const a of r.attendees) if (isSubject(a, idSet, emailSet)) emailSet.add(a.email.toLowerCase());
  }
  const appointmentIds = JSON.stringify(rows.map((r) => r.id));
  const changes = await exec<
    {
      id: string;
      appointment_id: string;
      method: string;
      sequence: number;
      start_at: Date;
      end_at: Date;
      created_at: Date;
    }[]
  >(
    em,
    `select id, appointment_id, method, sequence, start_at, end_at, created_at from ${s}."crm_appointment_change"
     where appointment_id in (select (jsonb_array_elements_text(?::jsonb))::uuid) order by created_at, sequence
     limit ${appointmentLimit * 10}`,
    [appointmentIds],
  );
  const invites = await exec<{ change_id: string; email: string; status: string; message_id: string; error: string }[]>(
    em,
    `select i.change_id, i.email, i.status, i.message_id, i.error from ${s}."crm_appointment_invite" i
       join ${s}."crm_appointment_change" c on c.id = i.change_id
     where c.appointment_id in (select (jsonb_array_elements_text(?::jsonb))::uuid)
       and i.email in (select jsonb_array_elements_text(?::jsonb))
     order by c.created_at, i.email limit ${appointmentLimit * 10}`,
    [appointmentIds, JSON.stringify([...emailSet])],
  );
  const changeAppointment = new Map(changes.map((c) => [c.id, c.appointment_id] as const));
  return rows.map((r) =>
    create(ContactAppointmentRecordSchema, {
      uid: r.uid,
      summary: r.summary,
      description: r.description,
      location: r.location,
      meetingUrl: r.meeting_url,
      start: timestampFromDate(new Date(r.start_at)),
      end: timestampFromDate(new Date(r.end_at)),
      sequence: r.sequence,
      cancelled: r.status === "cancelled",
      organizer: create(ParticipantSchema, { name: r.organizer_name, email: r.organizer_email }),
      attendance: r.attendees
        .filter((a) => isSubject(a, idSet, emailSet))
        .map((a) =>
          create(ParticipantSchema, {
            name: a.name,
            email: a.email,
            contactId: a.contactId,
            role: a.optional ? ParticipationRole.OPTIONAL : ParticipationRole.REQUIRED,
            timeZone: a.timeZone,
          }),
        ),
      changes: changes
        .filter((c) => c.appointment_id === r.id)
        .map((c) => changeRecordOf({ ...c, uid: r.uid, summary: r.summary })),
      invitations: invites
        .filter((i) => changeAppointment.get(i.change_id) === r.id)
        .map((i) =>
          create(InvitationDeliverySchema, {
            email: i.email,
            status: inviteStatus[i.status] ?? InvitationStatus.UNSPECIFIED,
            messageId: i.message_id,
            error: i.error,
          }),
        ),
      createdAt: timestampFromDate(new Date(r.created_at)),
    }),
  );
}
