import ICAL from "ical.js";
import { describe, expect, it } from "vitest";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { buildInvite, busyFromCalendar } from "./icalendar.ts";

const crlf = (lines: string[]) => `${lines.join("\r\n")}\r\n`;
const newYork = [
  "BEGIN:VTIMEZONE",
  "TZID:America/New_York",
  "BEGIN:DAYLIGHT",
  "TZOFFSETFROM:-0500",
  "TZOFFSETTO:-0400",
  "TZNAME:EDT",
  "DTSTART:19700308T020000",
  "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU",
  "END:DAYLIGHT",
  "BEGIN:STANDARD",
  "TZOFFSETFROM:-0400",
  "TZOFFSETTO:-0500",
  "TZNAME:EST",
  "DTSTART:19701101T020000",
  "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
  "END:STANDARD",
  "END:VTIMEZONE",
];
const march = { start: Date.UTC(2025, 2, 1), end: Date.UTC(2025, 3, 1) };
const iso = (ms: number) => new Date(ms).toISOString();

describe("busy time from iCalendar", () => {
  it("expands a weekly RRULE across the DST change with EXDATE and a moved instance, and reads TZIDs, dates and VFREEBUSY", () => {
    const ics = crlf([
      "BEGIN:VCALENDAR",
      "VERSION:2.0",
      "PRODID:-//test//EN",
      ...newYork,
      "BEGIN:VEVENT",
      "UID:weekly@example.com",
      "DTSTAMP:20250101T000000Z",
      "DTSTART;TZID=America/New_York:20250303T100000",
      "DTEND;TZID=America/New_York:20250303T110000",
      "RRULE:FREQ=WEEKLY;COUNT=5",
      "EXDATE;TZID=America/New_York:20250317T100000",
      "END:VEVENT",
      "BEGIN:VEVENT",
      "UID:weekly@example.com",
      "DTSTAMP:20250101T000000Z",
      "RECURRENCE-ID;TZID=America/New_York:20250324T100000",
      "DTSTART;TZID=America/New_York:20250324T140000",
      "DTEND;TZID=America/New_York:20250324T143000",
      "END:VEVENT",
      "BEGIN:VEVENT",
      "UID:berlin@example.com",
      "DTSTAMP:20250101T000000Z",
      "DTSTART;TZID=Europe/Berlin:20250310T090000",
      "DTEND;TZID=Europe/Berlin:20250310T100000",
      "END:VEVENT",
      "BEGIN:VEVENT",
      "UID:allday@example.com",
      "DTSTAMP:20250101T000000Z",
      "DTSTART;VALUE=DATE:20250311",
      "DTEND;VALUE=DATE:20250312",
      "END:VEVENT",
      "BEGIN:VEVENT",
      "UID:free@example.com",
      "DTSTAMP:20250101T000000Z",
      "DTSTART:20250312T150000Z",
      "DTEND:20250312T160000Z",
      "TRANSP:TRANSPARENT",
      "END:VEVENT",
      "BEGIN:VEVENT",
      "UID:cancelled@example.com",
      "DTSTAMP:20250101T000000Z",
      "DTSTART:20250312T170000Z",
      "DTEND:20250312T180000Z",
      "STATUS:CANCELLED",
      "END:VEVENT",
      "BEGIN:VFREEBUSY",
      "UID:fb@example.com",
      "DTSTAMP:20250101T000000Z",
      "FREEBUSY;FBTYPE=BUSY:20250313T150000Z/20250313T160000Z,20250313T170000Z/PT30M",
      "FREEBUSY;FBTYPE=FREE:20250313T180000Z/PT1H",
      "END:VFREEBUSY",
      "END:VCALENDAR",
    ]);
    const r = busyFromCalendar(ics, "America/Chicago", march, "ics");
    expect(r.events).toBe(5);
    expect(r.busy.map((b) => `${iso(b.start)} ${iso(b.end)}`)).toEqual([
      // 10:00 EST = 15:00Z; from 03-10 on 10:00 EDT = 14:00Z; 03-17 excluded; 03-24 moved to 14:00 EDT.
      "2025-03-03T15:00:00.000Z 2025-03-03T16:00:00.000Z",
      "2025-03-10T14:00:00.000Z 2025-03-10T15:00:00.000Z",
      "2025-03-24T18:00:00.000Z 2025-03-24T18:30:00.000Z",
      "2025-03-31T14:00:00.000Z 2025-03-31T15:00:00.000Z",
      // TZID without a VTIMEZONE: the IANA zone of that name (09:00 CET = 08:00Z).
      "2025-03-10T08:00:00.000Z 2025-03-10T09:00:00.000Z",
      // All-day date in the default zone: midnight CDT = 05:00Z.
      "2025-03-11T05:00:00.000Z 2025-03-12T05:00:00.000Z",
      "2025-03-13T15:00:00.000Z 2025-03-13T16:00:00.000Z",
      "2025-03-13T17:00:00.000Z 2025-03-13T17:30:00.000Z",
    ]);
  });

  it("stops an endless rule at the window and refuses text that is not iCalendar", () => {
    const daily = crlf([
      "BEGIN:VCALENDAR",
      "VERSION:2.0",
      "BEGIN:VEVENT",
      "UID:daily@example.com",
      "DTSTAMP:20250101T000000Z",
      "DTSTART:20250101T120000Z",
      "DURATION:PT1H",
      "RRULE:FREQ=DAILY",
      "END:VEVENT",
      "END:VCALENDAR",
    ]);
    expect(busyFromCalendar(daily, "UTC", march, "ics").busy).toHaveLength(31);
    expect(() => busyFromCalendar("not a calendar", "UTC", march, "ics")).toThrow(InvalidInputError);
    expect(() => busyFromCalendar(crlf(["BEGIN:VEVENT", "END:VEVENT"]), "UTC", march, "ics")).toThrow(/VCALENDAR/);
  });
});

describe("iTIP objects", () => {
  it("builds a REQUEST that ical.js parses back, and a CANCEL", () => {
    const base = {
      uid: "0b6c2a5e@example.com",
      sequence: 0,
      stamp: new Date("2025-01-10T12:00:00Z"),
      start: new Date("2025-01-20T16:00:00Z"),
      end: new Date("2025-01-20T17:00:00Z"),
      summary: "Tour, Austin; memory care",
      description: "Line 1\nLine 2",
      location: "100 Congress Ave, Austin",
      url: "",
      reminderSeconds: 900,
      comment: "",
      organizer: { name: "Sam Rivera", email: "sam.rivera@example.com" },
      attendees: [{ name: "Mary Jones", email: "mary.jones@example.com" }],
    };
    const cal = new ICAL.Component(ICAL.parse(buildInvite({ ...base, method: "REQUEST" })) as unknown[]);
    expect(cal.getFirstPropertyValue("method")).toBe("REQUEST");
    const ev = new ICAL.Event(cal.getFirstSubcomponent("vevent") as InstanceType<typeof ICAL.Component>);
    expect(ev.uid).toBe(base.uid);
    expect(ev.summary).toBe(base.summary);
    expect(ev.description).toBe(base.description);
    expect(ev.startDate.toJSDate().toISOString()).toBe("2025-01-20T16:00:00.000Z");
    expect(ev.endDate.toJSDate().toISOString()).toBe("2025-01-20T17:00:00.000Z");
    expect(ev.attendees[0]?.getFirstValue()).toBe("mailto:mary.jones@example.com");
    expect(ev.attendees[0]?.getParameter("role")).toBe("REQ-PARTICIPANT");
    expect(String(ev.component.getFirstSubcomponent("valarm")?.getFirstPropertyValue("trigger"))).toBe("-PT15M");
    const cancel = new ICAL.Component(
      ICAL.parse(buildInvite({ ...base, method: "CANCEL", sequence: 1, comment: "Moved away" })) as unknown[],
    );
    expect(cancel.getFirstPropertyValue("method")).toBe("CANCEL");
    const cev = cancel.getFirstSubcomponent("vevent");
    expect([
      cev?.getFirstPropertyValue("status"),
      cev?.getFirstPropertyValue("sequence"),
      cev?.getFirstPropertyValue("comment"),
    ]).toEqual(["CANCELLED", 1, "Moved away"]);
  });
});
