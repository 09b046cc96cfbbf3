/**
 * Slot search. Working hours are wall-clock intervals of weekdays in a participant's IANA time zone;
 * each local day of the window is turned into instants with luxon, so 09:00–17:00 stays 09:00–17:00
 * local on both sides of a daylight-saving change and a day with a change is 23 or 25 hours long. A
 * wall time that does not exist (in the spring-forward gap) moves forward by the gap and an
 * ambiguous one (fall-back) takes the earlier offset, as RFC 5545 §3.3.5 asks of DATE-TIMEs.
 *
 * Free time is the intersection of every constraining participant's working hours, less the union
 * of their busy intervals each widened by the buffer. Slots of the requested duration start on a
 * grid of `step` minutes counted from local midnight in the organiser's zone (so 30-minute steps give
 * :00 and :30 local times even in zones with half-hour offsets), earliest first.
 */
import { DateTime, IANAZone } from "luxon";
import { type Interval, intersect, normalize, pad, subtract } from "./intervals.ts";

/** A weekday as ISO 8601 numbers it (1 = Monday … 7 = Sunday, as mesh.crm.v1.Weekday and luxon do). */
export type IsoWeekday = 1 | 2 | 3 | 4 | 5 | 6 | 7;

/** One bookable interval of a weekday, in minutes after local midnight (`end` up to 1440). */
export interface DailyHours {
  /** ISO weekday. */
  readonly day: IsoWeekday;
  /** Start, minutes after midnight. */
  readonly startMinute: number;
  /** End, minutes after midnight, after `startMinute`; 1440 is the following midnight. */
  readonly endMinute: number;
}

/** Monday to Friday, 09:00 to 17:00: the hours of a request that gives none. */
export const defaultHours: readonly DailyHours[] = ([1, 2, 3, 4, 5] as const).map((day) => ({
  day,
  startMinute: 540,
  endMinute: 1020,
}));

/** Zone names checked so far (luxon's check builds an Intl.DateTimeFormat each time: slow per occurrence). */
const knownZones = new Map<string, boolean>();

/** Whether `zone` is an IANA time zone name this runtime knows (or `UTC`). */
export function isTimeZone(zone: string): boolean {
  let ok = knownZones.get(zone);
  if (ok === undefined) {
    ok = zone === "UTC" || IANAZone.isValidZone(zone);
    // Bounded: names come from requests, so keep at most a few thousand.
    if (knownZones.size < 5000) knownZones.set(zone, ok);
  }
  return ok;
}

/** The instant of a local wall time `minute` minutes after midnight (up to 1440) of a local date. */
function wallInstant(date: DateTime, minute: number): number {
  const day = minute >= 1440 ? date.plus({ days: 1 }) : date;
  const m = minute % 1440;
  return day.set({ hour: Math.floor(m / 60), minute: m % 60, second: 0, millisecond: 0 }).toMillis();
}

/** Working hours of a participant as instants overlapping `[from, to)` (clipped to it). */
export function workingIntervals(hours: readonly DailyHours[], zone: string, from: number, to: number): Interval[] {
  const out: Interval[] = [];
  // One local day before and after, so hours that cross the window's ends in this zone are seen.
  let day = DateTime.fromMillis(from, { zone }).startOf("day").minus({ days: 1 });
  const last = DateTime.fromMillis(to, { zone }).startOf("day").plus({ days: 1 });
  while (day <= last) {
    const date = DateTime.fromObject({ year: day.year, month: day.month, day: day.day }, { zone });
    for (const h of hours) {
      if (h.day !== date.weekday) continue;
      out.push({ start: wallInstant(date, h.startMinute), end: wallInstant(date, h.endMinute) });
    }
    day = day.plus({ days: 1 });
  }
  return intersect(out, [{ start: from, end: to }]);
}

/** A participant as slot search sees it. */
export interface Constraint {
  /** Working hours; undefined means this participant does not limit the hours. */
  readonly hours: readonly DailyHours[] | undefined;
  /** Time zone of `hours`. */
  readonly zone: string;
  /** Busy intervals (any order, may overlap). */
  readonly busy: readonly Interval[];
}

/** What {@link freeTime} needs. */
export interface FreeTimeInput {
  /** Window searched. */
  readonly window: Interval;
  /** The organiser first, then the required attendees. */
  readonly participants: readonly Constraint[];
  /** Gap kept free before and after every busy interval, in milliseconds. */
  readonly bufferMs: number;
}

/** Free intervals of the window: common working hours less everyone's (buffered) busy time. */
export function freeTime(input: FreeTimeInput): Interval[] {
  const { window } = input;
  let available: Interval[] = [window];
  const busy: Interval[] = [];
  for (const p of input.participants) {
    if (p.hours !== undefined)
      available = intersect(available, workingIntervals(p.hours, p.zone, window.start, window.end));
    busy.push(...pad(p.busy, input.bufferMs));
  }
  return subtract(available, normalize(busy));
}

/** Minutes after local midnight of an instant in `zone`, with the seconds as a fraction. */
function wallMinute(ms: number, zone: string): number {
  const t = DateTime.fromMillis(ms, { zone });
  return t.hour * 60 + t.minute + (t.second * 1000 + t.millisecond) / 60_000;
}

/** The first instant at or after `ms` whose local time in `zone` is on the grid of `stepMinutes` from midnight. */
export function alignUp(ms: number, stepMinutes: number, zone: string): number {
  const m = wallMinute(ms, zone);
  const rest = m % stepMinutes;
  if (rest === 0) return ms;
  const next = ms + (stepMinutes - rest) * 60_000;
  // The step crossed midnight: the grid restarts at 00:00 local.
  const startOfDay = DateTime.fromMillis(next, { zone }).startOf("day").toMillis();
  return startOfDay > ms ? startOfDay : next;
}

/** What {@link proposeSlots} needs. */
export interface SlotSearch {
  /** Normalised free intervals. */
  readonly free: readonly Interval[];
  /** Length of a slot, milliseconds. */
  readonly durationMs: number;
  /** Grid of slot starts, whole minutes. */
  readonly stepMinutes: number;
  /** Zone whose local midnight anchors the grid (the organiser's). */
  readonly zone: string;
  /** Earliest allowed start (now plus the minimum notice). */
  readonly notBefore: number;
  /** Most slots to return. */
  readonly maxSlots: number;
}

/** Slots of the duration inside free intervals, starts on the grid, earliest first. */
export function proposeSlots(s: SlotSearch): Interval[] {
  const out: Interval[] = [];
  for (const f of s.free) {
    let start = alignUp(Math.max(f.start, s.notBefore), s.stepMinutes, s.zone);
    while (start + s.durationMs <= f.end) {
      if (out.length >= s.maxSlots) return out;
      out.push({ start, end: start + s.durationMs });
      // Re-align after each step: across a DST change a fixed step would leave the local grid.
      start = alignUp(start + s.stepMinutes * 60_000, s.stepMinutes, s.zone);
    }
  }
  return out;
}
