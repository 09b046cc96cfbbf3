/**
 * A channel's slots: its RFC 5545 RRULE expanded in the calendar's time zone over the planning
 * window. The rule is expanded by `rrule` in floating local time (wall-clock times carried as UTC
 * dates, the form rrule recommends for zone-independent arithmetic) from the start of the window's
 * first local day, and each local time is then placed in the zone (time-zone.ts). So a 10:00 slot
 * stays at 10:00 local across a daylight-saving change, and its UTC instant moves by the hour.
 */
import rrulePkg from "rrule";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { floatingMs, instantOf, type WallTime, wallOfFloating, wallTimeOf } from "./time-zone.ts";

const { RRule } = rrulePkg;

/** Slots a channel may have in one window: a rule producing more is refused rather than expanded. */
export const maxSlotsPerChannel = 10_000;

/** One occurrence of a channel's rule. */
export interface RuleSlot {
  /** Start instant. */
  readonly start: Date;
  /** Local wall time of the start. */
  readonly wall: WallTime;
}

/** Number ranges of the rule parts that take numbers (RFC 5545 §3.3.10); signed parts may be negative. */
const numberParts: Readonly<Record<string, { min: number; max: number; signed: boolean }>> = {
  COUNT: { min: 1, max: 1_000_000, signed: false },
  INTERVAL: { min: 1, max: 10_000, signed: false },
  BYSECOND: { min: 0, max: 60, signed: false },
  BYMINUTE: { min: 0, max: 59, signed: false },
  BYHOUR: { min: 0, max: 23, signed: false },
  BYMONTHDAY: { min: 1, max: 31, signed: true },
  BYYEARDAY: { min: 1, max: 366, signed: true },
  BYWEEKNO: { min: 1, max: 53, signed: true },
  BYMONTH: { min: 1, max: 12, signed: false },
  BYSETPOS: { min: 1, max: 366, signed: true },
};
const otherParts = new Set(["FREQ", "UNTIL", "BYDAY", "WKST"]);
const weekday = /^[+-]?\d{0,2}(MO|TU|WE|TH|FR|SA|SU)$/;

/** Checks the rule's parts (rrule itself accepts numbers out of range and DTSTART/TZID in the rule). */
function checkParts(rule: string, field: string): void {
  const seen = new Set<string>();
  for (const part of rule.split(";")) {
    const [key = "", value = ""] = part.split("=");
    if (seen.has(key)) throw new InvalidInputError(field, `${key} is given twice`);
    seen.add(key);
    const range = numberParts[key];
    if (range !== undefined) {
      for (const v of value.split(",")) {
        const n = /^[+-]?\d+$/.test(v) ? Number(v) : Number.NaN;
        const abs = Math.abs(n);
        if (!Number.isInteger(n) || abs < range.min || abs > range.max || (n < 0 && !range.signed)) {
          throw new InvalidInputError(field, `${key}=${v} is out of range`);
        }
      }
    } else if (!otherParts.has(key)) {
      throw new InvalidInputError(field, `${key} is not a recurrence rule part this calendar accepts`);
    } else if (
      (key === "BYDAY" && !value.split(",").every((d) => weekday.test(d))) ||
      (key === "WKST" && !weekday.test(value))
    ) {
      throw new InvalidInputError(field, `${key}=${value} is not a list of weekdays`);
    } else if (key === "UNTIL" && !/^\d{8}(T\d{6}Z?)?$/.test(value)) {
      throw new InvalidInputError(field, `UNTIL=${value} is not a DATE or DATE-TIME`);
    }
  }
  if (seen.has("COUNT") && seen.has("UNTIL"))
    throw new InvalidInputError(field, "COUNT and UNTIL cannot both be given");
}

/**
 * The starts of `rule` in `[windowStart, windowEnd)`, in order, anchored at 00:00 local of the
 * window's first day. `field` names the rule in errors. Throws InvalidInputError for a rule that
 * does not parse or that has more than {@link maxSlotsPerChannel} slots in the window.
 */
export function expandRule(
  rule: string,
  timeZone: string,
  windowStart: Date,
  windowEnd: Date,
  field: string,
): RuleSlot[] {
  // Rule values are case-insensitive (RFC 5545 §3.3.10 lists them in upper case; rrule wants that).
  const body = rule.replace(/^RRULE:/, "").toUpperCase();
  checkParts(body, field);
  let options: ReturnType<typeof RRule.parseString>;
  try {
    options = RRule.parseString(body);
  } catch (err) {
    throw new InvalidInputError(
      field,
      `not an RFC 5545 recurrence rule: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const first = wallTimeOf(windowStart, timeZone);
  const anchor = floatingMs({ ...first, hour: 0, minute: 0, second: 0 });
  // Local times one day past the window's end cover the last local day whatever the offset.
  const lastFloating = floatingMs(wallTimeOf(windowEnd, timeZone)) + 86_400_000;
  let until = lastFloating;
  const untilMatch = /(?:^|;)UNTIL=(\d{8}(?:T\d{6})?)(Z?)/.exec(body);
  if (untilMatch !== null && options.until != null) {
    // A UTC UNTIL is an instant: read it on the calendar's clock. A local one is already floating.
    const own = untilMatch[2] === "Z" ? floatingMs(wallTimeOf(options.until, timeZone)) : options.until.getTime();
    until = Math.min(until, own);
  }
  let expanded: Date[];
  try {
    // Bounded by `until` (the end of the window) and by the slot cap, whatever the rule.
    expanded = new RRule({ ...options, dtstart: new Date(anchor), until: new Date(until), tzid: null }).all(
      (_d, i) => i <= maxSlotsPerChannel * 2,
    );
  } catch (err) {
    throw new InvalidInputError(
      field,
      `cannot expand the recurrence rule: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const slots: RuleSlot[] = [];
  let last = Number.NEGATIVE_INFINITY;
  for (const d of expanded) {
    const wall = wallOfFloating(d.getTime());
    const start = instantOf(wall, timeZone);
    const t = start.getTime();
    // Two local times in a skipped hour's surroundings can name one instant: keep it once.
    if (t < windowStart.getTime() || t >= windowEnd.getTime() || t <= last) continue;
    last = t;
    slots.push({ start, wall: wallTimeOf(start, timeZone) });
    if (slots.length > maxSlotsPerChannel) {
      throw new InvalidInputError(field, `the rule has more than ${maxSlotsPerChannel} slots in the window`);
    }
  }
  return slots;
}
