/**
 * Cadence planning: when each step of a follow-up sequence goes out, in the recipient's IANA time
 * zone (luxon over the platform's tz database).
 *
 * A step is due its delay after the previous step (after enrolment for the first): whole days of
 * the delay are calendar days in the recipient's zone, so "two days later" keeps the local time of
 * day across a daylight-saving change, and the remainder is elapsed time. The instant is then moved
 * forward to the next moment inside the sending window: an allowed weekday, local time in
 * [start, end). A window start that falls in a spring-forward gap (a local time that does not
 * exist) moves forward by the gap, as luxon resolves it (02:30 on the US change day is 03:30 EDT);
 * an ambiguous local time of the fall-back hour is its first occurrence (luxon alone would take the second). Quiet hours are the
 * complement of the window. Everything here is pure.
 */
import { DateTime, IANAZone } from "luxon";

/** When steps may go out, in local time. */
export interface SendingWindow {
  /** Allowed ISO weekdays, 1 = Monday … 7 = Sunday (the proto's `Weekday` numbers). */
  readonly days: ReadonlySet<number>;
  /** Start of the window, minutes after local midnight. */
  readonly startMinute: number;
  /** End of the window (exclusive), minutes after local midnight, up to 1440. */
  readonly endMinute: number;
}

/** True when `zone` is an IANA zone name the tz database knows. */
export function isValidZone(zone: string): boolean {
  return IANAZone.isValidZone(zone);
}

/** Parses `HH:MM` (or `24:00`) into minutes after midnight. */
export function minutesOf(hhmm: string): number {
  const m = /^(\d{2}):(\d{2})$/.exec(hhmm);
  if (m === null) throw new Error(`"${hhmm}" is not HH:MM`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/** The local instant `minute` minutes into the calendar day `day` (a luxon start of day). */
function atMinute(day: DateTime, minute: number): DateTime {
  if (minute >= 1440) return day.plus({ days: 1 }).startOf("day");
  const t = DateTime.fromObject(
    { year: day.year, month: day.month, day: day.day, hour: Math.floor(minute / 60), minute: minute % 60 },
    { zone: day.zone },
  );
  // An ambiguous wall time (the repeated hour of a fall-back) resolves to its later occurrence in
  // luxon; the window opens at the first.
  const earlier = t.minus({ hours: 1 });
  return earlier.hour === t.hour && earlier.minute === t.minute && earlier.day === t.day ? earlier : t;
}

/** True when `t` is inside the window (in `zone`). */
export function inWindow(t: Date, zone: string, window: SendingWindow | undefined): boolean {
  if (window === undefined) return true;
  const local = DateTime.fromJSDate(t, { zone });
  if (!window.days.has(local.weekday)) return false;
  const day = local.startOf("day");
  return local >= atMinute(day, window.startMinute) && local < atMinute(day, window.endMinute);
}

/** The first instant at or after `t` inside the window (in `zone`); `t` itself when there is no window. */
export function nextAllowedInstant(t: Date, zone: string, window: SendingWindow | undefined): Date {
  if (window === undefined) return t;
  const local = DateTime.fromJSDate(t, { zone });
  const today = local.startOf("day");
  for (let k = 0; k <= 7; k++) {
    const day = today.plus({ days: k }).startOf("day");
    if (!window.days.has(day.weekday)) continue;
    const start = atMinute(day, window.startMinute);
    const end = atMinute(day, window.endMinute);
    if (local >= end) continue;
    return local > start ? local.toJSDate() : start.toJSDate();
  }
  // Unreachable with at least one allowed day: some day of the next week has its whole window ahead.
  throw new Error("the sending window allows no day");
}

/** `base` plus `delayMs`: whole days as calendar days in `zone`, the rest as elapsed time. */
export function addDelay(base: Date, delayMs: number, zone: string): Date {
  const days = Math.floor(delayMs / 86_400_000);
  const rest = delayMs - days * 86_400_000;
  return DateTime.fromJSDate(base, { zone }).plus({ days }).plus({ milliseconds: rest }).toJSDate();
}

/** When a step is due: its delay after `base` (the previous send, or the enrolment), moved into the window. */
export function stepDueAt(base: Date, delayMs: number, zone: string, window: SendingWindow | undefined): Date {
  return nextAllowedInstant(addDelay(base, delayMs, zone), zone, window);
}

/** Every step's due instant, each counted from the previous one's (no send-time optimisation). */
export function planCadence(
  enrolledAt: Date,
  delaysMs: readonly number[],
  zone: string,
  window: SendingWindow | undefined,
): Date[] {
  const out: Date[] = [];
  let base = enrolledAt;
  for (const d of delaysMs) {
    base = stepDueAt(base, d, zone, window);
    out.push(base);
  }
  return out;
}

/** ISO 8601 with the zone's offset, for example `2025-04-02T09:00:00-05:00`. */
export function localIso(t: Date, zone: string): string {
  return DateTime.fromJSDate(t, { zone }).toISO({ suppressMilliseconds: true }) ?? t.toISOString();
}

/** Hour-of-week of an instant in `zone`: 0 = Monday 00:00–00:59 … 167 = Sunday 23:00–23:59. */
export function hourOfWeek(t: Date, zone: string): number {
  const local = DateTime.fromJSDate(t, { zone });
  return (local.weekday - 1) * 24 + local.hour;
}

const offsets = new Map<string, number>();

/** The zone's UTC offset at an instant, ms, cached per zone and UTC quarter-hour (offsets change on those). */
function cachedOffsetMs(tz: IANAZone, ms: number): number {
  const key = `${tz.name}|${Math.floor(ms / 900_000)}`;
  let v = offsets.get(key);
  if (v === undefined) {
    if (offsets.size >= 50_000) offsets.clear();
    v = tz.offset(ms) * 60_000;
    offsets.set(key, v);
  }
  return v;
}

/** A candidate send slot: the first instant of a local hour inside the window, and its arm. */
export interface SendSlot {
  /** When the send would go out. */
  readonly at: Date;
  /** Hour-of-week arm. */
  readonly arm: number;
}

/**
 * The slots from `earliest` (itself the first, already inside the window) through the following
 * `horizonHours`: each later local hour whose start lies inside the window, one slot per distinct
 * arm (the first occurrence).
 */
export function sendSlots(
  earliest: Date,
  zone: string,
  window: SendingWindow | undefined,
  horizonHours = 24,
): SendSlot[] {
  const slots: SendSlot[] = [{ at: earliest, arm: hourOfWeek(earliest, zone) }];
  const seen = new Set([slots[0]?.arm]);
  const tz = IANAZone.create(zone);
  const limit = earliest.getTime() + horizonHours * 3_600_000;
  // Whole local hours after `earliest`, stepped in elapsed time so a DST change neither skips nor
  // repeats an instant; local fields from the zone's offset at each instant (cheaper than a luxon
  // DateTime per hour, which matters to the simulations).
  const offsetMs = (ms: number) => cachedOffsetMs(tz, ms);
  const e = earliest.getTime();
  let at = e - ((((e + offsetMs(e)) % 3_600_000) + 3_600_000) % 3_600_000) + 3_600_000;
  for (; at < limit; at += 3_600_000) {
    const local = new Date(at + offsetMs(at));
    // A half-hour-offset zone's hour starts are not on UTC hours: align to the local hour.
    const skew = local.getUTCMinutes() * 60_000;
    const start = at - skew;
    if (start <= e) continue;
    const weekday = ((local.getUTCDay() + 6) % 7) + 1;
    const minute = local.getUTCHours() * 60;
    if (
      window !== undefined &&
      (!window.days.has(weekday) || minute < window.startMinute || minute >= window.endMinute)
    ) {
      continue;
    }
    const arm = (weekday - 1) * 24 + local.getUTCHours();
    if (seen.has(arm)) continue;
    seen.add(arm);
    slots.push({ at: new Date(start), arm });
  }
  return slots;
}
