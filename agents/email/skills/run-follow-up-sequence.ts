/**
 * RunFollowUpSequence: stores a follow-up cadence and enrols contacts in it.
 *
 * Method: each enrolment is a small state machine kept in rows (active → completed | stopped), and
 * each step due is a row with its instant (sequences/worker.ts polls them: durable timers, no
 * in-process timers). A step is due its delay after the previous send — whole days as calendar
 * days in the contact's IANA time zone (its CRM `time_zone` attribute when `use_contact_time_zone`,
 * else the cadence's), the rest as elapsed time — moved forward into the sending window's allowed
 * weekdays and hours (sequences/plan.ts, luxon; DST gaps move forward). With `optimize_send_time`,
 * the hour inside the next day of the window is chosen by Thompson sampling over hour-of-week arms
 * of the segment (send-time/). Contacts are resolved through the CRM's GetContact; unknown ids are
 * NOT_FOUND, addresses on the suppression list (unsubscribed, bounced) or without an email are
 * SUPPRESSED, and a contact already active in the sequence is reported as it stands. Replays of a
 * request id return its enrolments (the idempotency interceptor stores the first answer; the rows
 * also remember the request, so a direct replay enrols nobody twice).
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  EnrollmentState,
  type RunFollowUpSequenceRequest,
  RunFollowUpSequenceRequestSchema,
  type RunFollowUpSequenceResponse,
  RunFollowUpSequenceResponseSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, transaction } from "../../../lib/db/index.ts";
import { checkContract } from "../../../lib/errors/index.ts";
import type { Uniform } from "../send-time/thompson.ts";
import { checkCadence, storeCadence } from "../sequences/cadence.ts";
import { type ContactLookup, lookupAll } from "../sequences/contacts.ts";
import { enrollContact } from "../sequences/enroll.ts";

/** Dependencies of the skill. */
export interface RunFollowUpSequenceDeps {
  readonly db: Database;
  readonly now: () => Date;
  /** Resolves CRM contact ids. */
  readonly lookup: ContactLookup;
  /** Uniform generator of the send-time draws (default Math.random). */
  readonly random?: Uniform;
  /** Called after the enrolments are committed, to start a scheduler round soon. */
  readonly wake?: () => void;
}

/** Stores the cadence and enrols the contacts; see the file comment. */
export async function runFollowUpSequence(
  deps: RunFollowUpSequenceDeps,
  req: RunFollowUpSequenceRequest,
): Promise<RunFollowUpSequenceResponse> {
  checkContract(RunFollowUpSequenceRequestSchema, req);
  const cadence = req.cadence as NonNullable<RunFollowUpSequenceRequest["cadence"]>; // required by the contract
  checkCadence(cadence);
  const now = deps.now();
  const startAt = req.startAt ? timestampDate(req.startAt) : now;
  const contacts = await lookupAll(deps.lookup, req.contactIds);
  const ctx = { schema: deps.db.schema, random: deps.random ?? Math.random };
  const res = await transaction(deps.db, async (em) => {
    const stored = await storeCadence(em, deps.db.schema, cadence, now);
    const enrollments = [];
    for (const id of req.contactIds) {
      enrollments.push(
        await enrollContact(em, ctx, stored.cadence, id, contacts.get(id), {
          startAt,
          now,
          allowReenrollment: req.allowReenrollment,
          requestId: req.requestId,
        }),
      );
    }
    const enrolled = enrollments.filter((e) => e.newlyEnrolled && e.state === EnrollmentState.ACTIVE).length;
    return create(RunFollowUpSequenceResponseSchema, {
      sequenceId: cadence.sequenceId,
      revision: stored.revision,
      enrollments,
      enrolledCount: enrolled,
      skippedCount: enrollments.length - enrolled,
    });
  });
  deps.wake?.();
  return res;
}
