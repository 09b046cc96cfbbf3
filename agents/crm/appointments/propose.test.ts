/** ScheduleAppointment called directly with a fixed clock (deps.now) on an isolated database. */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ScheduleAppointmentRequestSchema } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import type { AgentDeps } from "../../../lib/server/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, openBackboneFixture } from "../../../test/support/backbone.ts";
import { scheduleAppointment } from "../skills/schedule-appointment.ts";
import { CrmAppointment } from "./entities.ts";

let fx: BackboneFixture;
beforeAll(async () => {
  fx = await openBackboneFixture(domains.operations, "crm-appointments");
});
afterAll(async () => {
  await fx?.dispose();
});

// Monday 2025-03-10 10:10 in Chicago (CDT, UTC-5, the day after the spring-forward change).
const now = new Date("2025-03-10T15:10:00Z");
const deps = () => ({
  db: fx.db,
  now: () => now,
  log: createLogger("warn"),
  // Nothing here may email: a call to any agent fails the test.
  client: {
    agent: () => {
      throw new Error("no agent may be called");
    },
  } as unknown as AgentDeps["client"],
});
const base = {
  organizer: { name: "Sam Rivera", email: "sam.rivera@example.com" },
  attendees: [{ name: "Mary Jones", email: "mary.jones@example.com" }],
  timeZone: "America/Chicago",
  duration: { seconds: 1800n },
};

describe("ScheduleAppointment with a fixed clock", () => {
  it("proposes nothing before now plus the minimum notice, on the local half-hour grid", async () => {
    const res = await scheduleAppointment(
      deps(),
      create(ScheduleAppointmentRequestSchema, {
        ...base,
        requestId: randomUUID(),
        action: {
          case: "propose",
          value: {
            window: {
              start: timestampFromDate(new Date("2025-03-10T00:00:00Z")),
              end: timestampFromDate(new Date("2025-03-11T00:00:00Z")),
            },
            maxSlots: 3,
            minNotice: { seconds: 3600n },
          },
        },
      }),
    );
    // 09:00–17:00 CDT = 14:00Z–22:00Z; now + 1 h = 16:10Z, next :00/:30 local = 16:30Z.
    expect(res.proposedSlots.map((s) => timestampDate(s.start ?? timestampFromDate(now)).toISOString())).toEqual([
      "2025-03-10T16:30:00.000Z",
      "2025-03-10T17:00:00.000Z",
      "2025-03-10T17:30:00.000Z",
    ]);
  });

  it("refuses a start before deps.now with INVALID_ARGUMENT on book.start and stores nothing", async () => {
    const req = create(ScheduleAppointmentRequestSchema, {
      ...base,
      requestId: randomUUID(),
      action: { case: "book", value: { start: timestampFromDate(new Date("2025-03-10T15:00:00Z")), summary: "Tour" } },
    });
    await expect(scheduleAppointment(deps(), req)).rejects.toThrow(InvalidInputError);
    await expect(scheduleAppointment(deps(), req)).rejects.toThrow(
      "book.start: 2025-03-10T15:00:00.000Z is in the past (now is 2025-03-10T15:10:00.000Z); choose a future start",
    );
    expect(await fx.db.fork().count(CrmAppointment, {})).toBe(0);
  });
});
