/**
 * The plan as an RFC 5545 iCalendar object: one VCALENDAR, one VEVENT per slot, times in UTC (so
 * no VTIMEZONE is needed; X-WR-TIMEZONE tells clients the calendar's zone). TEXT values are escaped
 * (§3.3.11), lines end in CRLF and are folded at 75 octets without splitting a UTF-8 sequence
 * (§3.1). SEQUENCE is the plan's revision, so a re-planned slot updates the event it replaces.
 */
import type { PlannedSlot } from "./plan.ts";

/** What the calendar is. */
export interface CalendarHeader {
  readonly calendarId: string;
  readonly name: string;
  readonly timeZone: string;
  readonly revision: number;
  readonly storedAt: Date;
}

/** Escapes a TEXT value (backslash, semicolon, comma, newline). */
export function escapeText(value: string): string {
  return value
    .replace(/\\/g, "\\\\")
    .replace(/;/g, "\\;")
    .replace(/,/g, "\\,")
    .replace(/\r\n|\r|\n/g, "\\n");
}

/** UTC DATE-TIME form, for example `20250401T150000Z`. */
export function utcStamp(d: Date): string {
  return `${d.toISOString().slice(0, 19).replace(/[-:]/g, "")}Z`;
}

const encoder = new TextEncoder();

/** Folds one content line into lines of at most 75 octets, continuation lines starting with a space. */
export function foldLine(line: string): string {
  if (encoder.encode(line).length <= 75) return line;
  const out: string[] = [];
  let current = "";
  let octets = 0;
  for (const ch of line) {
    const n = encoder.encode(ch).length;
    const max = out.length === 0 ? 75 : 74; // a continuation's leading space is one of its 75
    if (octets + n > max) {
      out.push(current);
      current = "";
      octets = 0;
    }
    current += ch;
    octets += n;
  }
  out.push(current);
  return out.join("\r\n ");
}

/** The VCALENDAR of a plan. */
export function toICalendar(header: CalendarHeader, slots: readonly PlannedSlot[]): string {
  const lines = [
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    "PRODID:-//Marketing Mesh//Social Agent//EN",
    "CALSCALE:GREGORIAN",
    "METHOD:PUBLISH",
    `X-WR-CALNAME:${escapeText(header.name || header.calendarId)}`,
    `X-WR-TIMEZONE:${header.timeZone}`,
  ];
  const stamp = utcStamp(header.storedAt);
  for (const s of slots) {
    const description = [`Channel: ${s.channelId}`, `Item: ${s.itemId}`, ...(s.url ? [s.url] : [])].join("\n");
    lines.push(
      "BEGIN:VEVENT",
      `UID:${s.uid}`,
      `DTSTAMP:${stamp}`,
      `SEQUENCE:${header.revision}`,
      `DTSTART:${utcStamp(s.start)}`,
      `DTEND:${utcStamp(s.end)}`,
      `SUMMARY:${escapeText(s.title)}`,
      `DESCRIPTION:${escapeText(description)}`,
      ...(s.url ? [`URL:${s.url}`] : []),
      `CATEGORIES:${escapeText(s.channelId)}`,
      "TRANSP:TRANSPARENT",
      "END:VEVENT",
    );
  }
  lines.push("END:VCALENDAR");
  return `${lines.map(foldLine).join("\r\n")}\r\n`;
}
