/**
 * iCalendar in and out, with ical.js.
 *
 * In: busy time from a VCALENDAR (RFC 5545). VEVENTs are expanded with ical.js's recurrence
 * expansion (RRULE, RDATE, EXDATE) and their RECURRENCE-ID exceptions, occurrence by occurrence,
 * within a bounded window; VFREEBUSY's FREEBUSY periods are read as they are. A DATE-TIME with a
 * TZID resolves to the file's VTIMEZONE (ical.js looks it up in the component tree), else to the
 * IANA zone of that name (luxon), else — like floating times and all-day DATEs — to the caller's
 * zone. Transparent (TRANSP:TRANSPARENT) and cancelled events and FBTYPE=FREE periods are not busy.
 *
 * Out: an iTIP object (RFC 5546) with one VEVENT: METHOD:REQUEST for an invitation or an update (a
 * higher SEQUENCE), METHOD:CANCEL with STATUS:CANCELLED for a cancellation. Times are written in UTC
 * (RFC 5545 §3.3.5 form 2), which needs no VTIMEZONE; ical.js escapes TEXT values and folds lines.
 */
import ICAL from "ical.js";
import { DateTime } from "luxon";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import type { Interval } from "./intervals.ts";
import { isTimeZone } from "./slots.ts";

/** Most busy intervals one calendar may expand to in a window. */
export const maxBusyIntervals = 50_000;
/** Most recurrence instances looked at per event (instances before the window count too). */
const maxInstancesPerEvent = 200_000;

/** Busy time read from a calendar. */
export interface CalendarBusy {
  /** VEVENT components read. */
  readonly events: number;
  /** Busy intervals overlapping the window, in file order (not merged). */
  readonly busy: Interval[];
}

type ICalTime = InstanceType<typeof ICAL.Time>;
type ICalComponent = InstanceType<typeof ICAL.Component>;
type ICalEvent = InstanceType<typeof ICAL.Event>;

/** The instant of an ical.js time; `tzid` is the TZID parameter of the property it came from. */
function instantOf(t: ICalTime, tzid: string | undefined, defaultZone: string): number {
  const zone = t.zone;
  if (!t.isDate && zone !== undefined && zone.tzid === "UTC") {
    return Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute, t.second);
  }
  // A VTIMEZONE of the file: ical.js applies its observances.
  if (!t.isDate && zone !== undefined && zone.component !== null && zone !== ICAL.Timezone.localTimezone) {
    return t.toUnixTime() * 1000;
  }
  const name = !t.isDate && tzid !== undefined && isTimeZone(tzid) ? tzid : defaultZone;
  return DateTime.fromObject(
    t.isDate
      ? { year: t.year, month: t.month, day: t.day }
      : { year: t.year, month: t.month, day: t.day, hour: t.hour, minute: t.minute, second: t.second },
    { zone: name },
  ).toMillis();
}

function tzidOf(component: ICalComponent, property: string): string | undefined {
  const p = component.getFirstProperty(property);
  const v = p?.getParameter("tzid");
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** Whether an event (or an exception of one) blocks time. */
function blocks(component: ICalComponent): boolean {
  const status = String(component.getFirstPropertyValue("status") ?? "").toUpperCase();
  const transp = String(component.getFirstPropertyValue("transp") ?? "").toUpperCase();
  return status !== "CANCELLED" && transp !== "TRANSPARENT";
}

/** Parses iCalendar text; `field` names it in errors. */
export function parseCalendar(text: string, field: string): ICalComponent {
  let jcal: unknown;
  try {
    jcal = ICAL.parse(text);
  } catch (err) {
    throw new InvalidInputError(
      field,
      `is not iCalendar (RFC 5545): ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  // Several VCALENDARs parse to a list of them; one calendar per field is accepted.
  if (!Array.isArray(jcal) || typeof jcal[0] !== "string") {
    throw new InvalidInputError(field, "holds more than one VCALENDAR; send one");
  }
  const root = new ICAL.Component(jcal as unknown[]);
  if (root.name !== "vcalendar")
    throw new InvalidInputError(field, `starts with ${root.name.toUpperCase()}, not VCALENDAR`);
  return root;
}

/** Busy intervals of a calendar that overlap `window`; see the file comment for the rules. */
export function busyFromCalendar(text: string, defaultZone: string, window: Interval, field: string): CalendarBusy {
  const root = parseCalendar(text, field);
  const busy: Interval[] = [];
  const add = (start: number, end: number) => {
    if (end > window.start && start < window.end && start < end) {
      if (busy.length >= maxBusyIntervals) {
        throw new InvalidInputError(
          field,
          `has more than ${maxBusyIntervals} busy intervals in the window; import a shorter window`,
        );
      }
      busy.push({ start, end });
    }
  };
  const vevents = root.getAllSubcomponents("vevent");
  const masters = new Set<string>();
  // Exceptions by UID, passed to each event: ical.js would otherwise scan every sibling per event.
  const exceptions = new Map<string, ICalComponent[]>();
  for (const c of vevents) {
    const uid = String(c.getFirstPropertyValue("uid") ?? "");
    if (!c.hasProperty("recurrence-id")) masters.add(uid);
    else exceptions.set(uid, [...(exceptions.get(uid) ?? []), c]);
  }
  let events = 0;
  for (const c of vevents) {
    const uid = String(c.getFirstPropertyValue("uid") ?? "");
    // An exception is expanded with its master; one whose master is absent stands alone.
    if (c.hasProperty("recurrence-id") && masters.has(uid)) continue;
    if (!c.hasProperty("dtstart"))
      throw new InvalidInputError(field, `VEVENT ${uid || `#${events + 1}`} has no DTSTART`);
    events++;
    let event: ICalEvent;
    try {
      event = new ICAL.Event(c, { exceptions: c.hasProperty("recurrence-id") ? [] : (exceptions.get(uid) ?? []) });
    } catch (err) {
      throw new InvalidInputError(field, `VEVENT ${uid}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const tzid = tzidOf(c, "dtstart");
    const endTzid = tzidOf(c, "dtend") ?? tzid;
    if (!event.isRecurring() || c.hasProperty("recurrence-id")) {
      if (blocks(c)) add(instantOf(event.startDate, tzid, defaultZone), instantOf(event.endDate, endTzid, defaultZone));
      continue;
    }
    const masterBlocks = blocks(c);
    const it = event.iterator();
    let n = 0;
    for (let next = it.next(); next; next = it.next()) {
      if (++n > maxInstancesPerEvent) {
        throw new InvalidInputError(
          field,
          `VEVENT ${uid} recurs more than ${maxInstancesPerEvent} times before the window ends`,
        );
      }
      if (instantOf(next, tzid, defaultZone) >= window.end) break;
      const d = event.getOccurrenceDetails(next);
      const item = d.item.component;
      if (!(d.item === event ? masterBlocks : blocks(item))) continue;
      add(
        instantOf(d.startDate, tzidOf(item, "dtstart") ?? tzid, defaultZone),
        instantOf(d.endDate, tzidOf(item, "dtend") ?? tzidOf(item, "dtstart") ?? endTzid, defaultZone),
      );
    }
    // An exception that moves an instance from after the window into it.
    for (const ex of Object.values(event.exceptions) as ICalEvent[]) {
      const rid = ex.recurrenceId;
      if (rid && instantOf(rid, tzid, defaultZone) >= window.end && blocks(ex.component)) {
        add(
          instantOf(ex.startDate, tzidOf(ex.component, "dtstart"), defaultZone),
          instantOf(ex.endDate, tzidOf(ex.component, "dtend") ?? tzidOf(ex.component, "dtstart"), defaultZone),
        );
      }
    }
  }
  for (const fb of root.getAllSubcomponents("vfreebusy")) {
    for (const p of fb.getAllProperties("freebusy")) {
      const type = String(p.getParameter("fbtype") ?? "BUSY").toUpperCase();
      if (type === "FREE") continue;
      for (const v of p.getValues()) {
        if (!(v instanceof ICAL.Period)) continue;
        const start = instantOf(v.start, undefined, defaultZone);
        add(start, instantOf(v.getEnd(), undefined, defaultZone));
      }
    }
  }
  return { events, busy };
}

/** A participant of an invitation. */
export interface InviteParticipant {
  /** Display name ("" for none). */
  readonly name: string;
  /** Email address. */
  readonly email: string;
  /** Whether the attendee is optional (ROLE=OPT-PARTICIPANT). */
  readonly optional?: boolean;
}

/** What an iTIP object says. */
export interface InviteContent {
  /** REQUEST (invitation or update) or CANCEL. */
  readonly method: "REQUEST" | "CANCEL";
  /** Globally unique UID of the event. */
  readonly uid: string;
  /** SEQUENCE: 0 for the first invitation, incremented by every update and the cancellation. */
  readonly sequence: number;
  /** DTSTAMP: when this object was made. */
  readonly stamp: Date;
  /** DTSTART. */
  readonly start: Date;
  /** DTEND. */
  readonly end: Date;
  /** SUMMARY. */
  readonly summary: string;
  /** DESCRIPTION ("" for none). */
  readonly description: string;
  /** LOCATION ("" for none). */
  readonly location: string;
  /** URL ("" for none). */
  readonly url: string;
  /** Reminder before the start in seconds (a VALARM); 0 for none. */
  readonly reminderSeconds: number;
  /** COMMENT, for example a cancellation's reason ("" for none). */
  readonly comment: string;
  /** ORGANIZER. */
  readonly organizer: InviteParticipant;
  /** ATTENDEEs. */
  readonly attendees: readonly InviteParticipant[];
}

function utc(d: Date): ICalTime {
  return ICAL.Time.fromJSDate(new Date(Math.floor(d.getTime() / 1000) * 1000), true);
}

function person(vevent: ICalComponent, name: "organizer" | "attendee", p: InviteParticipant, attendee: boolean): void {
  const prop = new ICAL.Property(name, vevent);
  prop.setValue(`mailto:${p.email}`);
  if (p.name !== "") prop.setParameter("cn", p.name);
  if (attendee) {
    prop.setParameter("role", p.optional ? "OPT-PARTICIPANT" : "REQ-PARTICIPANT");
    prop.setParameter("partstat", "NEEDS-ACTION");
    prop.setParameter("rsvp", "TRUE");
  }
  vevent.addProperty(prop);
}

/** The VCALENDAR text of an iTIP REQUEST or CANCEL with one VEVENT (CRLF line breaks, folded at 75). */
export function buildInvite(c: InviteContent): string {
  const cal = new ICAL.Component("vcalendar");
  cal.addPropertyWithValue("prodid", "-//Marketing Mesh//CRM appointments//EN");
  cal.addPropertyWithValue("version", "2.0");
  cal.addPropertyWithValue("calscale", "GREGORIAN");
  cal.addPropertyWithValue("method", c.method);
  const ev = new ICAL.Component("vevent", cal);
  ev.addPropertyWithValue("uid", c.uid);
  ev.addPropertyWithValue("sequence", c.sequence);
  ev.addPropertyWithValue("dtstamp", utc(c.stamp));
  ev.addPropertyWithValue("dtstart", utc(c.start));
  ev.addPropertyWithValue("dtend", utc(c.end));
  ev.addPropertyWithValue("summary", c.summary);
  if (c.description !== "") ev.addPropertyWithValue("description", c.description);
  if (c.location !== "") ev.addPropertyWithValue("location", c.location);
  if (c.url !== "") ev.addPropertyWithValue("url", c.url);
  if (c.comment !== "") ev.addPropertyWithValue("comment", c.comment);
  ev.addPropertyWithValue("status", c.method === "CANCEL" ? "CANCELLED" : "CONFIRMED");
  ev.addPropertyWithValue("transp", "OPAQUE");
  person(ev, "organizer", c.organizer, false);
  for (const a of c.attendees) person(ev, "attendee", a, true);
  if (c.method === "REQUEST" && c.reminderSeconds > 0) {
    const alarm = new ICAL.Component("valarm", ev);
    alarm.addPropertyWithValue("action", "DISPLAY");
    alarm.addPropertyWithValue("description", c.summary);
    const trigger = new ICAL.Property("trigger", alarm);
    trigger.setValue(ICAL.Duration.fromSeconds(-c.reminderSeconds));
    alarm.addProperty(trigger);
    ev.addSubcomponent(alarm);
  }
  cal.addSubcomponent(ev);
  return `${cal.toString()}\r\n`;
}
