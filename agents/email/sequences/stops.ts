/**
 * Stop conditions and the events that enrol or stop: a reply, open or click of a follow-up message
 * (RecordFollowUpEngagement), a conversion the Data agent recorded (`data.conversion_recorded`,
 * consumed durably), and a contact joining a CRM segment (enrolment in the cadence of its segment
 * and market). A stop is a row change: the enrolment becomes `stopped` with its reason and its
 * pending step is cancelled, so the scheduler never claims it. Only conditions the cadence lists
 * stop it (unsubscribes and bounces always do).
 */
import { create } from "@bufbuild/protobuf";
import type { EntityManager } from "@mikro-orm/postgresql";
import { ConversionRecordedSchema } from "../../../gen/mesh/data/v1/data_events_pb.ts";
import {
  type Enrollment,
  FollowUpEngagementKind,
  FollowUpEngagementKindSchema,
  type RecordFollowUpEngagementRequest,
  RecordFollowUpEngagementRequestSchema,
  type RecordFollowUpEngagementResponse,
  RecordFollowUpEngagementResponseSchema,
  StopCondition,
  StopConditionSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Bus, decodeEvent, defineEvent, type Running } from "../../../lib/bus/index.ts";
import { type Database, transaction } from "../../../lib/db/index.ts";
import { checkContract } from "../../../lib/errors/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { addToArms } from "../send-time/store.ts";
import type { Uniform } from "../send-time/thompson.ts";
import { cadenceForMarket } from "./cadence.ts";
import type { ContactLookup } from "./contacts.ts";
import { enrollContact } from "./enroll.ts";

/**
 * Stops the active enrolments of a contact (or the listed enrolments) whose cadence lists
 * `condition`, and cancels their pending steps. Returns how many it stopped.
 */
export async function stopEnrollments(
  em: EntityManager,
  schema: string,
  target: { contactId: string } | { enrollmentIds: readonly string[] },
  condition: StopCondition,
  detail: string,
  now: Date,
): Promise<number> {
  const conn = em.getConnection();
  const tx = em.getTransactionContext();
  const byContact = "contactId" in target;
  const stopped = await conn.execute<{ id: string }[]>(
    `update "${schema}"."email_follow_up_enrollment" e set state = 'stopped', stop_reason = ?, stop_detail = left(?, 300),
       next_due_at = null, stopped_at = ?, updated_at = ?
     from "${schema}"."email_follow_up_cadence" c
     where c.sequence_id = e.sequence_id and e.state = 'active' and c.stop_conditions @> ?::jsonb
       and ${byContact ? "e.contact_id = ?" : "e.id in (select jsonb_array_elements_text(?::jsonb)::uuid)"}
     returning e.id`,
    [
      condition,
      detail,
      now,
      now,
      JSON.stringify([condition]),
      byContact ? target.contactId : JSON.stringify(target.enrollmentIds),
    ],
    "all",
    tx,
  );
  if (stopped.length > 0) {
    await conn.execute(
      `update "${schema}"."email_follow_up_send" set status = 'cancelled', error = ?, updated_at = ?
       where status = 'pending' and enrollment_id in (select jsonb_array_elements_text(?::jsonb)::uuid)`,
      [
        `enrolment stopped: ${StopConditionSchema.value[condition]?.name ?? condition}`,
        now,
        JSON.stringify(stopped.map((r) => r.id)),
      ],
      "run",
      tx,
    );
  }
  return stopped.length;
}

const tsDate = (t: { seconds: bigint; nanos: number } | undefined, fallback: Date): Date =>
  t === undefined ? fallback : new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));

/**
 * RecordFollowUpEngagement: replies stop, opens and clicks teach the send-time model; see the
 * RPC's comment. One transaction; each (message, kind) counts once.
 */
export async function recordFollowUpEngagement(
  deps: { db: Database; now: () => Date },
  req: RecordFollowUpEngagementRequest,
): Promise<RecordFollowUpEngagementResponse> {
  checkContract(RecordFollowUpEngagementRequestSchema, req);
  const s = deps.db.schema;
  const now = deps.now();
  return transaction(deps.db, async (em) => {
    const conn = em.getConnection();
    const tx = em.getTransactionContext();
    let recorded = 0;
    let repeated = 0;
    let unmatched = 0;
    let stoppedCount = 0;
    for (const ev of req.events) {
      const at = tsDate(ev.occurredAt, now);
      let contactId = ev.contactId;
      let sendId: string | undefined;
      let first = false;
      if (ev.messageId !== "") {
        const col =
          ev.kind === FollowUpEngagementKind.REPLY
            ? "replied_at"
            : ev.kind === FollowUpEngagementKind.CLICK
              ? "clicked_at"
              : "opened_at";
        const [row] = await conn.execute<
          {
            id: string;
            contact_id: string;
            arm: number | null;
            segment_key: string;
            was: Date | null;
            opened: Date | null;
            clicked: Date | null;
          }[]
        >(
          `select s.id, e.contact_id, s.arm, s.segment_key, s.${col} as was, s.opened_at as opened, s.clicked_at as clicked
           from "${s}"."email_follow_up_send" s join "${s}"."email_follow_up_enrollment" e on e.id = s.enrollment_id
           where s.message_id = ? and s.status in ('sent', 'unknown') limit 1 for update of s`,
          [ev.messageId],
          "all",
          tx,
        );
        if (row === undefined) {
          unmatched++;
          continue;
        }
        sendId = row.id;
        contactId = row.contact_id;
        first = row.was === null;
        if (first) {
          // A click implies an open; the first open or click of a send is the model's success.
          const opens = ev.kind !== FollowUpEngagementKind.REPLY;
          const alsoOpened = col === "clicked_at" ? ", opened_at = coalesce(opened_at, ?)" : "";
          await conn.execute(
            `update "${s}"."email_follow_up_send" set ${col} = ?${alsoOpened}, updated_at = ? where id = ?`,
            alsoOpened === "" ? [at, now, sendId] : [at, at, now, sendId],
            "run",
            tx,
          );
          if (opens && row.opened === null && row.clicked === null && row.arm !== null) {
            await addToArms(em, s, [{ segmentKey: row.segment_key, arm: row.arm, trials: 0, successes: 1 }], now);
          }
        }
      } else {
        const [known] = await conn.execute<{ n: string }[]>(
          `select count(*) as n from "${s}"."email_follow_up_enrollment" where contact_id = ?`,
          [contactId],
          "all",
          tx,
        );
        if (Number(known?.n ?? 0) === 0) {
          unmatched++;
          continue;
        }
        first = true;
      }
      const condition =
        ev.kind === FollowUpEngagementKind.REPLY
          ? StopCondition.REPLIED
          : ev.kind === FollowUpEngagementKind.CLICK
            ? StopCondition.CLICKED
            : undefined;
      const n =
        condition === undefined
          ? 0
          : await stopEnrollments(
              em,
              s,
              { contactId },
              condition,
              `${FollowUpEngagementKindSchema.value[ev.kind]?.name ?? ev.kind} at ${at.toISOString()}`,
              now,
            );
      stoppedCount += n;
      if (first || n > 0) recorded++;
      else repeated++;
    }
    return create(RecordFollowUpEngagementResponseSchema, {
      recorded,
      repeatedEvents: repeated,
      unmatched,
      stoppedEnrollments: stoppedCount,
    });
  });
}

/** The Data agent's conversion event (its contract, not its code). */
export const ConversionRecordedEvent = defineEvent("data", "conversion_recorded", ConversionRecordedSchema);

/** Durable name of the conversion consumer. */
export const CONVERSION_CONSUMER = "email_follow_up_conversions";

/** Stops the enrolments of a converted contact (cadences listing STOP_CONDITION_CONVERTED). */
export async function stopOnConversion(
  em: EntityManager,
  schema: string,
  contactId: string,
  conversion: string,
  now: Date,
): Promise<number> {
  if (contactId === "") return 0;
  return stopEnrollments(em, schema, { contactId }, StopCondition.CONVERTED, `conversion ${conversion}`, now);
}

/** Consumes `data.conversion_recorded` durably (inbox mode: each event takes effect once). */
export function consumeConversions(deps: { db: Database; bus: Bus; log: Logger; now: () => Date }): Promise<Running> {
  return deps.bus.consume(
    { stream: "events", durable: CONVERSION_CONSUMER, filter: deps.bus.eventSubject(ConversionRecordedEvent) },
    async (d, em) => {
      const ev = decodeEvent(ConversionRecordedEvent, d);
      const run = (m: EntityManager) =>
        stopOnConversion(m, deps.db.schema, ev.contactId, `${ev.conversionName} ${ev.conversionId}`, deps.now());
      const n = em === undefined ? await transaction(deps.db, run) : await run(em);
      if (n > 0) deps.log.info("follow-ups stopped by a conversion", { contactId: ev.contactId, stopped: n });
    },
    { db: deps.db },
  );
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A contact joined or left a CRM segment (the shape of the CRM's SegmentMembershipChanged). */
export interface SegmentMembershipChange {
  readonly contactId: string;
  readonly segmentKey: string;
  readonly city: string;
  readonly region: string;
  readonly joined: boolean;
  readonly occurredAt: Date;
  /** Event id, recorded as the enrolment's origin. */
  readonly eventId: string | null;
}

/**
 * Enrols a contact who joined a segment in the cadence of the segment and the contact's market
 * (city → region → the segment's default). Returns the enrolment, or undefined when the segment has
 * no cadence or the contact left. Run it in the consuming transaction (inbox mode) so a redelivered
 * event enrols once; a second enrolment of an active contact is refused by the sequence anyway.
 */
export async function enrollFromSegmentChange(
  em: EntityManager,
  deps: { schema: string; lookup: ContactLookup; now: () => Date; random: Uniform },
  change: SegmentMembershipChange,
): Promise<Enrollment | undefined> {
  if (!change.joined) return undefined;
  const stored = await cadenceForMarket(em, deps.schema, change.segmentKey, change.region, change.city);
  if (stored === undefined) return undefined;
  const contact = await deps.lookup(change.contactId);
  const now = deps.now();
  return enrollContact(em, { schema: deps.schema, random: deps.random }, stored.cadence, change.contactId, contact, {
    startAt: change.occurredAt.getTime() > now.getTime() ? change.occurredAt : now,
    now,
    allowReenrollment: false,
    requestId: change.eventId !== null && uuidPattern.test(change.eventId) ? change.eventId : null,
  });
}
