/**
 * The CRM's segment events drive enrolment: a contact joining a stored segment
 * (`crm.segment_membership_changed`, JOINED) is enrolled in the cadence of the segment and its
 * market (city → region → the segment's default, sequences/cadence.ts). This closes the directory
 * loop: enquiry → contact → segment → first follow-up email. The consumer is durable and in inbox
 * mode, so a redelivered event enrols once; the partial unique index refuses a second active
 * enrolment in any case.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { SegmentMembershipChange, SegmentMembershipChangedSchema } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import { type Bus, decodeEvent, defineEvent, type Running } from "../../../lib/bus/index.ts";
import { type Database, transaction } from "../../../lib/db/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import type { Uniform } from "../send-time/thompson.ts";
import type { ContactLookup } from "./contacts.ts";
import { enrollFromSegmentChange } from "./stops.ts";

/** The CRM's segment membership event (its contract, not its code). */
export const SegmentMembershipChangedEvent = defineEvent(
  "crm",
  "segment_membership_changed",
  SegmentMembershipChangedSchema,
);

/** Durable name of the segment consumer. */
export const SEGMENT_CONSUMER = "email_follow_up_segments";

/** Consumes segment joins and enrols the joiners. */
export function consumeSegmentChanges(deps: {
  db: Database;
  bus: Bus;
  log: Logger;
  now: () => Date;
  lookup: ContactLookup;
  random?: Uniform;
}): Promise<Running> {
  return deps.bus.consume(
    { stream: "events", durable: SEGMENT_CONSUMER, filter: deps.bus.eventSubject(SegmentMembershipChangedEvent) },
    async (d, em) => {
      const ev = decodeEvent(SegmentMembershipChangedEvent, d);
      if (ev.change !== SegmentMembershipChange.JOINED) return;
      const change = {
        contactId: ev.contactId,
        segmentKey: ev.segmentKey,
        city: ev.city,
        region: ev.region,
        joined: true,
        occurredAt: ev.changedAt ? timestampDate(ev.changedAt) : deps.now(),
        eventId: d.msgId ?? null,
      };
      const ctx = { schema: deps.db.schema, lookup: deps.lookup, now: deps.now, random: deps.random ?? Math.random };
      const e =
        em === undefined
          ? await transaction(deps.db, (m) => enrollFromSegmentChange(m, ctx, change))
          : await enrollFromSegmentChange(em, ctx, change);
      if (e?.newlyEnrolled) {
        deps.log.info("segment joiner enrolled in a follow-up", {
          contactId: ev.contactId,
          segmentKey: ev.segmentKey,
          enrollmentId: e.enrollmentId,
        });
      }
    },
    { db: deps.db },
  );
}
