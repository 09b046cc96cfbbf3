/**
 * Wall-clock time in an IANA time zone, both ways, with Intl (the zone data of the running ICU).
 * Local times that do not exist (the hour skipped when clocks go forward) and local times that
 * happen twice (the hour repeated when they go back) are resolved as RFC 5545 §3.3.5 says: a
 * skipped time is read with the offset before the gap (02:30 becomes 03:30 daylight time), a
 * repeated one is its first occurrence.
 */

/** A local date and time (month 1–12). */
export interface WallTime {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** True when `timeZone` is an IANA zone this runtime knows. */
export function isTimeZone(timeZone: string): boolean {
  try {
    formatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The wall-clock time of `instant` in `timeZone`. */
export function wallTimeOf(instant: Date, timeZone: string): WallTime {
  const parts: Record<string, number> = {};
  for (const p of formatter(timeZone).formatToParts(instant)) {
    if (p.type !== "literal") parts[p.type] = Number(p.value);
  }
  return {
    year: parts.year as number,
    month: parts.month as number,
    day: parts.day as number,
    hour: parts.hour as number,
    minute: parts.minute as number,
    second: parts.second as number,
  };
}

/** Milliseconds of `wall` read as if it were UTC (the "floating" form rrule computes in). */
export function floatingMs(wall: WallTime): number {
  return Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute, wall.second);
}

/** The wall time a floating instant stands for. */
export function wallOfFloating(ms: number): WallTime {
  const d = new Date(ms);
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
  };
}

/** Offset of `timeZone` from UTC at `instantMs`, in milliseconds (−5 h is −18,000,000). */
export function offsetMs(instantMs: number, timeZone: string): number {
  const ms = instantMs - (((instantMs % 1000) + 1000) % 1000);
  return floatingMs(wallTimeOf(new Date(ms), timeZone)) - ms;
}

const day = 86_400_000;

/** The instant at which clocks in `timeZone` show `wall` (RFC 5545 rules for skipped and repeated times). */
export function instantOf(wall: WallTime, timeZone: string): Date {
  const floating = floatingMs(wall);
  // Offsets well before and after: every zone changes its offset at most once within a day.
  const before = offsetMs(floating - day, timeZone);
  const after = offsetMs(floating + day, timeZone);
  const candidates = [floating - before, floating - after].filter(
    (t) => floatingMs(wallTimeOf(new Date(t), timeZone)) === floating,
  );
  // Repeated: the first occurrence; skipped: the offset before the gap.
  return new Date(candidates.length > 0 ? Math.min(...candidates) : floating - before);
}

/** `YYYY-MM-DD` of a wall time. */
export function dateString(wall: WallTime): string {
  return `${String(wall.year).padStart(4, "0")}-${String(wall.month).padStart(2, "0")}-${String(wall.day).padStart(2, "0")}`;
}

/** ISO 8601 local time with offset, for example `2025-04-01T10:00:00-05:00`. */
export function localIso(instant: Date, timeZone: string): string {
  const wall = wallTimeOf(instant, timeZone);
  const off = Math.round(offsetMs(instant.getTime(), timeZone) / 60_000);
  const sign = off < 0 ? "-" : "+";
  const abs = Math.abs(off);
  const hh = String(Math.floor(abs / 60)).padStart(2, "0");
  const mm = String(abs % 60).padStart(2, "0");
  const p2 = (n: number) => String(n).padStart(2, "0");
  return `${dateString(wall)}T${p2(wall.hour)}:${p2(wall.minute)}:${p2(wall.second)}${sign}${hh}:${mm}`;
}
