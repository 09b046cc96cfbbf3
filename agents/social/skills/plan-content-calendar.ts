/**
 * PlanContentCalendar: slots content items into channel cadences, stores the plan under the
 * calendar id and schedules its posts for publishing.
 *
 * Method: each channel's RFC 5545 RRULE is expanded with `rrule` in the calendar's IANA time zone
 * over the window (local times kept across daylight-saving changes; RFC 5545 §3.3.5 for skipped and
 * repeated local times), slots overlapping the channel's previous slot are dropped and blackout
 * days closed; items are placed greedily — earliest due first, then priority, then request order —
 * in the earliest free slot of each channel between their not-before and due times, and posts on
 * one platform never overlap (agents/social/calendar/plan.ts). The plan is exported as an RFC 5545
 * VCALENDAR (calendar/icalendar.ts), stored with the response it returns (a new revision of the
 * calendar, replacing the previous plan), and every future slot on a social platform becomes a
 * durable scheduled post, published at most once by the agent's background worker
 * (publishing/worker.ts). Writes commit in the call's transaction.
 *
 * Replays: the same request_id returns the stored plan (and schedules nothing again); the same
 * request_id with other input is ALREADY_EXISTS.
 *
 * Reference: RFC 5545 §3.3.10 (RECUR), §3.6.1 (VEVENT), §3.1 (folding), §3.3.11 (TEXT escaping).
 */
import { createHash, randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type PlanContentCalendarRequest,
  PlanContentCalendarRequestSchema,
  type PlanContentCalendarResponse,
  PlanContentCalendarResponseSchema,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { type Database, transaction, UniqueConstraintViolationException } from "../../../lib/db/index.ts";
import { ConflictError, checkContract, InvalidInputError } from "../../../lib/errors/index.ts";
import { toICalendar } from "../calendar/icalendar.ts";
import { planCalendar } from "../calendar/plan.ts";
import { isTimeZone } from "../calendar/time-zone.ts";
import { SocialCalendarPlan } from "../entities.ts";
import { schedulePosts } from "../publishing/schedule.ts";

/** Dependencies of the skill. */
export interface PlanContentCalendarDeps {
  /** The Social agent's database (operations schema). */
  readonly db: Database;
  /** Clock: the plan's stored time, and which slots are still to be published. */
  readonly now: () => Date;
}

/** The field each message-level rule of the contract is about. */
const ruleFields = {
  "plan_content_calendar.window": "window",
  "plan_content_calendar.item_channels": "items",
  "plan_content_calendar.unique_channels": "channels",
  "blackout.order": "end_date",
  "content_item.range": "due_by",
};

function isCalendarDate(s: string): boolean {
  const [y, m, d] = s.split("-").map(Number) as [number, number, number];
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

/** The rules protovalidate cannot express. */
function checkRules(req: PlanContentCalendarRequest): void {
  if (!isTimeZone(req.timeZone)) throw new InvalidInputError("time_zone", `unknown IANA time zone ${req.timeZone}`);
  const channels = new Set(req.channels.map((c) => c.channelId));
  req.blackouts.forEach((b, i) => {
    if (!isCalendarDate(b.startDate)) throw new InvalidInputError(`blackouts[${i}].start_date`, "not a calendar date");
    if (b.endDate !== "" && !isCalendarDate(b.endDate)) {
      throw new InvalidInputError(`blackouts[${i}].end_date`, "not a calendar date");
    }
    b.channelIds.forEach((c, j) => {
      if (!channels.has(c)) throw new InvalidInputError(`blackouts[${i}].channel_ids[${j}]`, `no channel ${c}`);
    });
  });
  const items = new Set<string>();
  req.items.forEach((item, i) => {
    if (items.has(item.itemId))
      throw new InvalidInputError(`items[${i}].item_id`, `item ${item.itemId} is given twice`);
    items.add(item.itemId);
  });
}

/** SHA-256 of a request's binary form: what a replay must match. */
function requestHash(req: PlanContentCalendarRequest): string {
  return createHash("sha256").update(toBinary(PlanContentCalendarRequestSchema, req)).digest("hex");
}

function replayOf(row: { requestHash: string; response: Buffer | Uint8Array }, hash: string, requestId: string) {
  if (row.requestHash !== hash) {
    throw new ConnectError(
      `request_id ${requestId} was already used with different input; use a new request_id for a new plan`,
      Code.AlreadyExists,
    );
  }
  return fromBinary(PlanContentCalendarResponseSchema, new Uint8Array(row.response));
}

/** Plans, stores and schedules; see the file comment. */
export async function planContentCalendar(
  deps: PlanContentCalendarDeps,
  req: PlanContentCalendarRequest,
): Promise<PlanContentCalendarResponse> {
  checkContract(PlanContentCalendarRequestSchema, req, ruleFields);
  checkRules(req);
  const hash = requestHash(req);
  const earlier = await deps.db.fork().findOne(SocialCalendarPlan, { requestId: req.requestId });
  if (earlier !== null) return replayOf(earlier, hash, req.requestId);

  // The plan is computed before the transaction: it is CPU work only, and the transaction stays short.
  const plan = planCalendar(req);
  try {
    return await transaction(deps.db, async (em) => {
      const again = await em.findOne(SocialCalendarPlan, { requestId: req.requestId });
      if (again !== null) return replayOf(again, hash, req.requestId);
      const conn = em.getConnection();
      const tx = em.getTransactionContext();
      const schema = deps.db.schema;
      const storedAt = deps.now();
      // The calendar's row is the lock that orders concurrent plans of one calendar.
      await conn.execute(
        `insert into "${schema}"."social_calendar" (calendar_id, name, time_zone, revision, updated_at) values (?, ?, ?, 0, ?) on conflict (calendar_id) do nothing`,
        [req.calendarId, req.name, req.timeZone, storedAt],
        "run",
        tx,
      );
      const [current] = await conn.execute<{ revision: number }[]>(
        `select revision from "${schema}"."social_calendar" where calendar_id = ? for update`,
        [req.calendarId],
        "all",
        tx,
      );
      const revision = (current?.revision ?? 0) + 1;
      const icalendar = toICalendar(
        { calendarId: req.calendarId, name: req.name, timeZone: req.timeZone, revision, storedAt },
        plan.slots,
      );
      const response = create(PlanContentCalendarResponseSchema, {
        calendarId: req.calendarId,
        revision,
        slots: plan.slots.map((s) => ({
          itemId: s.itemId,
          title: s.title,
          channelId: s.channelId,
          start: timestampFromDate(s.start),
          end: timestampFromDate(s.end),
          localStart: s.localStart,
          uid: s.uid,
        })),
        unscheduled: plan.unscheduled,
        utilisation: plan.utilisation,
        icalendar,
        storedAt: timestampFromDate(storedAt),
      });
      await conn.execute(
        `update "${schema}"."social_calendar" set name = ?, time_zone = ?, revision = ?, updated_at = ? where calendar_id = ?`,
        [req.name, req.timeZone, revision, storedAt, req.calendarId],
        "run",
        tx,
      );
      em.create(SocialCalendarPlan, {
        id: randomUUID(),
        calendarId: req.calendarId,
        revision,
        requestId: req.requestId,
        requestHash: hash,
        response: Buffer.from(toBinary(PlanContentCalendarResponseSchema, response)),
        createdAt: storedAt,
      });
      await em.flush();
      await schedulePosts(em, schema, req.calendarId, revision, plan.slots, storedAt);
      return response;
    });
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException) {
      throw new ConflictError(
        `request_id ${req.requestId}: another call with this request_id is planning the calendar`,
      );
    }
    throw err;
  }
}
