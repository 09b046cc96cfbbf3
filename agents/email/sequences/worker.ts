/**
 * The follow-up scheduler: durable timers as rows. Every step due is a row of
 * `email_follow_up_send` with its `due_at`; workers on every instance hosting the agent poll the
 * due index (the interval only decides how soon a due row is seen: nothing lives in `setTimeout`,
 * so a restart loses nothing). One round:
 *
 * 1. Claims older than `claimTimeoutMs` (a worker that died mid-step) go back to `pending`. That is
 *    safe because of step 3: the message's SendEmail request id is fixed on the row.
 * 2. A bounded batch of due `pending` rows is claimed in one short transaction
 *    (`FOR UPDATE SKIP LOCKED`: workers never wait for or take each other's rows); rows whose
 *    enrolment is no longer active become `cancelled` in the same statement.
 * 3. Each claimed email step goes through SendEmail's own claim + send path with the row's request
 *    id: that path checks the suppression list (and whatever else guards sending), claims the
 *    request id in `email_message`, sends outside any transaction and records the outcome. A second
 *    call with the same request id — after a crash, a claim expiry or a concurrent worker — returns
 *    the first outcome, or ABORTED when the first call ended mid-send; it never sends again. So a
 *    step goes out at most once per (enrolment, step).
 * 4. The outcome is recorded where the claim is still ours, and the enrolment advances in the same
 *    transaction: the next step's row is planned from the send time, or the enrolment completes; a
 *    suppressed recipient stops it as unsubscribed (bounced when the list says so), a permanent
 *    refusal as bounced.
 *
 * Steps on other channels (SMS, call and manual tasks) are not the Email agent's to deliver: they
 * are recorded `skipped` and the sequence moves on.
 *
 * A step is delivered in a span `email.follow_up.step` that continues the trace stored on its row
 * (the first step of an enrolment keeps the trace that enrolled it), so the SendEmail call and the
 * SMTP send join the trace of the event or request the enrolment came from.
 */
import { randomUUID } from "node:crypto";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { DateTime } from "luxon";
import {
  EmailStatus,
  type FollowUpCadence,
  FollowUpCadenceSchema,
  FollowUpChannel,
  FollowUpChannelSchema,
  type SendEmailRequest,
  SendEmailRequestSchema,
  type SendEmailResponse,
  StopCondition,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Carrier, type Running, withStoredTrace } from "../../../lib/bus/index.ts";
import { type Database, type PollLoop, startPollLoop } from "../../../lib/db/index.ts";
import { toConnectError } from "../../../lib/errors/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { personalize } from "../newsletter/render.ts";
import { signUnsubscribeToken, unsubscribeUrlFor } from "../newsletter/unsubscribe.ts";
import { addToArms } from "../send-time/store.ts";
import type { Uniform } from "../send-time/thompson.ts";
import { windowOf } from "./cadence.ts";
import { insertSend, planStep } from "./enroll.ts";
import { nextAllowedInstant } from "./plan.ts";

/** Sends one message through SendEmail's claim + send path. */
export type FollowUpSend = (req: SendEmailRequest) => Promise<SendEmailResponse>;

/** Options of the scheduler. */
export interface FollowUpWorkerOptions {
  readonly db: Database;
  readonly send: FollowUpSend;
  readonly log: Logger;
  readonly now: () => Date;
  /** Id of this instance, recorded on its claims. */
  readonly nodeId: string;
  /** Uniform generator of the send-time draws (default Math.random). */
  readonly random?: Uniform;
  /** Rows claimed per round (default 100). */
  readonly batch?: number;
  /** Steps in flight at once (default 8). */
  readonly concurrency?: number;
  /** Poll interval when idle, ms (default 1000). */
  readonly pollMs?: number;
  /** Claim age after which a step is claimed again (default 5 min: well over the SMTP timeouts). */
  readonly claimTimeoutMs?: number;
  /** Attempts of a step whose SMTP server was unavailable before it is given up (default 5). */
  readonly maxAttempts?: number;
  /** The unsubscribe signing key, for cadences with one-click unsubscribe (see newsletter/unsubscribe.ts). */
  readonly key: () => Promise<Buffer>;
}

/** A claimed row with what composing it needs. */
interface ClaimedStep {
  id: string;
  enrollment_id: string;
  step_index: number;
  channel: number;
  template_id: string;
  request_id: string;
  arm: number | null;
  segment_key: string;
  attempts: number;
  status: "sending" | "cancelled";
  address: string;
  name: string;
  fields: Record<string, string> | string;
  time_zone: string;
  last_message_id: string;
  definition: JsonValue;
  /** Trace headers of what planned the step (the first step of an enrolment), or null. */
  trace_context: Carrier | null;
}

/** What happened to a step. */
type StepOutcome =
  | { kind: "sent"; messageId: string }
  | { kind: "skipped"; detail: string }
  | { kind: "stop"; reason: StopCondition; detail: string; status: "suppressed" | "failed" }
  | { kind: "retry"; detail: string }
  | { kind: "defer"; until: Date; detail: string }
  | { kind: "advance"; status: "failed" | "unknown" | "cancelled"; detail: string };

/** What a round did. */
export interface FollowUpRoundResult {
  claimed: number;
  cancelled: number;
  sent: number;
  skipped: number;
  stopped: number;
  retried: number;
  /** Steps moved to a later day by the daily send limit. */
  deferred: number;
  failed: number;
}

const backoffMs = (attempt: number) => Math.min(60_000 * 2 ** (attempt - 1), 3_600_000);

/** The worker; `round` is one pass, `start` polls until stopped. */
export interface FollowUpWorker {
  round(): Promise<FollowUpRoundResult>;
  /** Asks for a round soon (an in-process hint; the poll finds the rows anyway). */
  wake(): void;
  start(): Running;
}

/**
 * The SendEmail request of an email step: deterministic, so a replay of its request id matches
 * (the unsubscribe token is an HMAC of the step's id, the same on every attempt).
 */
export function composeStep(row: ClaimedStep, cadence: FollowUpCadence, key: Buffer | undefined): SendEmailRequest {
  const t = cadence.templates.find((x) => x.templateId === row.template_id);
  if (t === undefined) throw new Error(`template ${row.template_id} is not in cadence ${cadence.sequenceId}`);
  const fields: Record<string, string> = typeof row.fields === "string" ? JSON.parse(row.fields) : row.fields;
  return create(SendEmailRequestSchema, {
    requestId: row.request_id,
    ...(cadence.sender ? { from: cadence.sender } : {}),
    to: { address: row.address, name: row.name.replace(/[\r\n]/g, " ").slice(0, 100) },
    subject: personalize(t.subject, fields, "line").slice(0, 300) || t.subject,
    text: personalize(t.text, fields, "text"),
    html: t.html === "" ? "" : personalize(t.html, fields, "html"),
    inReplyTo: row.last_message_id,
    tag: "email.follow_up",
    ...(cadence.unsubscribe?.url && key !== undefined
      ? {
          listUnsubscribeUrl: unsubscribeUrlFor(
            cadence.unsubscribe.url,
            signUnsubscribeToken(key, row.id, "follow_up"),
          ),
          listUnsubscribeMailto: cadence.unsubscribe.mailto,
        }
      : {}),
  });
}

/** Creates the scheduler. */
export function createFollowUpWorker(opts: FollowUpWorkerOptions): FollowUpWorker {
  const { db } = opts;
  const s = db.schema;
  const random = opts.random ?? Math.random;
  let loop: PollLoop | undefined;

  async function expire(): Promise<void> {
    const now = opts.now();
    await db
      .fork()
      .getConnection()
      .execute(
        `update "${s}"."email_follow_up_send" set status = 'pending', claim_token = null, updated_at = ?
         where status = 'sending' and claimed_at < ?`,
        [now, new Date(now.getTime() - (opts.claimTimeoutMs ?? 5 * 60_000))],
        "run",
      );
  }

  async function claim(token: string): Promise<ClaimedStep[]> {
    const now = opts.now();
    return db.transaction(async (em) =>
      em.getConnection().execute<ClaimedStep[]>(
        `with picked as (
           select id from "${s}"."email_follow_up_send"
           where status = 'pending' and due_at <= ? order by due_at, id limit ? for update skip locked)
         update "${s}"."email_follow_up_send" t set
           status = case when e.state = 'active' then 'sending' else 'cancelled' end,
           claim_token = ?, claimed_at = ?, claimed_by = ?, updated_at = ?,
           attempts = t.attempts + case when e.state = 'active' then 1 else 0 end
         from picked, "${s}"."email_follow_up_enrollment" e, "${s}"."email_follow_up_cadence" c
         where t.id = picked.id and e.id = t.enrollment_id and c.sequence_id = e.sequence_id
         returning t.id, t.enrollment_id, t.step_index, t.channel, t.template_id, t.request_id, t.arm, t.segment_key,
           t.attempts, t.status, e.address, e.name, e.fields, e.time_zone, e.last_message_id, c.definition, t.trace_context`,
        [now, opts.batch ?? 100, token, now, opts.nodeId, now],
        "all",
        em.getTransactionContext(),
      ),
    );
  }

  /**
   * The cadence's daily send limit, counted per calendar day in the cadence's time zone: when the
   * day's sends reached it, the step moves to the window's next opening on a later day. Within a
   * round, steps reserve their place in `used` (read once from the table per sequence and day), so
   * one worker never exceeds the limit; the count and the send are not one transaction, so
   * concurrent workers on other instances may exceed it by their steps in flight (a soft limit).
   */
  async function dailyLimitReached(
    cadence: FollowUpCadence,
    used: Map<string, Promise<{ n: number }>>,
  ): Promise<StepOutcome | undefined> {
    if (cadence.dailySendLimit <= 0) return undefined;
    const now = opts.now();
    const day = DateTime.fromJSDate(now, { zone: cadence.timeZone }).startOf("day");
    const next = day.plus({ days: 1 });
    const key = `${cadence.sequenceId}|${day.toISODate()}`;
    let counter = used.get(key);
    if (counter === undefined) {
      counter = db
        .fork()
        .getConnection()
        .execute<{ n: string }[]>(
          `select count(*) as n from "${s}"."email_follow_up_send" f join "${s}"."email_follow_up_enrollment" e on e.id = f.enrollment_id
           where e.sequence_id = ? and f.status in ('sent', 'unknown') and f.sent_at >= ? and f.sent_at < ?`,
          [cadence.sequenceId, day.toJSDate(), next.toJSDate()],
          "all",
        )
        .then(([c]) => ({ n: Number(c?.n ?? 0) }));
      used.set(key, counter);
    }
    const count = await counter;
    // Check and reserve with no await between them: lanes of this round never overbook.
    if (count.n < cadence.dailySendLimit) {
      count.n++;
      return undefined;
    }
    return {
      kind: "defer",
      until: nextAllowedInstant(next.toJSDate(), cadence.timeZone, windowOf(cadence)),
      detail: `daily send limit of ${cadence.dailySendLimit} reached`,
    };
  }

  async function deliver(
    row: ClaimedStep,
    cadence: FollowUpCadence,
    used: Map<string, Promise<{ n: number }>>,
  ): Promise<StepOutcome> {
    if (row.channel !== FollowUpChannel.EMAIL) {
      return {
        kind: "skipped",
        detail: `channel ${FollowUpChannelSchema.value[row.channel as FollowUpChannel]?.name ?? row.channel} is not sent by the Email agent`,
      };
    }
    // A stop that committed after the claim still wins when it is seen before the send.
    const [e] = await db
      .fork()
      .getConnection()
      .execute<{ state: string }[]>(
        `select state from "${s}"."email_follow_up_enrollment" where id = ?`,
        [row.enrollment_id],
        "all",
      );
    if (e?.state !== "active")
      return { kind: "advance", status: "cancelled", detail: "the enrolment stopped before the send" };
    const deferred = await dailyLimitReached(cadence, used);
    if (deferred !== undefined) return deferred;
    let key: Buffer | undefined;
    try {
      if (cadence.unsubscribe?.url) key = await opts.key();
    } catch (err) {
      // The key lives in the database: an outage is retried like an SMTP one, never sent without it.
      return { kind: "retry", detail: `unsubscribe key: ${String(err)}` };
    }
    let req: SendEmailRequest;
    try {
      req = composeStep(row, cadence, key);
    } catch (err) {
      return { kind: "advance", status: "failed", detail: `could not compose: ${String(err)}` };
    }
    try {
      const res = await opts.send(req);
      if (res.status === EmailStatus.SUPPRESSED) {
        const bounced = /bounce|reject/i.test(res.suppressionReason);
        return {
          kind: "stop",
          reason: bounced ? StopCondition.BOUNCED : StopCondition.UNSUBSCRIBED,
          detail: res.suppressionReason || "on the suppression list",
          status: "suppressed",
        };
      }
      return { kind: "sent", messageId: res.messageId };
    } catch (err) {
      const ce = toConnectError(err, () => undefined);
      switch (ce.code) {
        case Code.Unavailable:
        case Code.DeadlineExceeded:
          return row.attempts < (opts.maxAttempts ?? 5)
            ? { kind: "retry", detail: ce.rawMessage }
            : { kind: "advance", status: "failed", detail: `${ce.rawMessage} (after ${row.attempts} attempts)` };
        case Code.FailedPrecondition:
        case Code.PermissionDenied:
          // A permanent refusal (or a do-not-contact guard): the contact cannot be reached.
          return {
            kind: "stop",
            reason: /do.not.contact|consent|unsubscrib|suppress/i.test(ce.rawMessage)
              ? StopCondition.UNSUBSCRIBED
              : StopCondition.BOUNCED,
            detail: ce.rawMessage,
            status: "failed",
          };
        case Code.Aborted:
        case Code.AlreadyExists:
          // SendEmail saw this request id before and cannot say it was not sent: never again.
          return { kind: "advance", status: "unknown", detail: ce.rawMessage };
        default:
          return row.attempts < (opts.maxAttempts ?? 5)
            ? { kind: "retry", detail: ce.rawMessage }
            : { kind: "advance", status: "failed", detail: ce.rawMessage };
      }
    }
  }

  /** Records a step's outcome where the claim is ours, and moves the enrolment on. */
  async function record(row: ClaimedStep, cadence: FollowUpCadence, token: string, o: StepOutcome): Promise<void> {
    const now = opts.now();
    await db.transaction(async (em) => {
      const conn = em.getConnection();
      const tx = em.getTransactionContext();
      if (o.kind === "retry" || o.kind === "defer") {
        // A deferral is no attempt: the claim's count is given back.
        await conn.execute(
          `update "${s}"."email_follow_up_send" set status = 'pending', claim_token = null, error = ?, due_at = ?,
             attempts = attempts - ?, updated_at = ?
           where id = ? and claim_token = ? and status = 'sending'`,
          [
            o.detail,
            o.kind === "defer" ? o.until : new Date(now.getTime() + backoffMs(row.attempts)),
            o.kind === "defer" ? 1 : 0,
            now,
            row.id,
            token,
          ],
          "run",
          tx,
        );
        if (o.kind === "defer") {
          await conn.execute(
            `update "${s}"."email_follow_up_enrollment" set next_due_at = ?, updated_at = ? where id = ?`,
            [o.until, now, row.enrollment_id],
            "run",
            tx,
          );
        }
        return;
      }
      const status = o.kind === "sent" ? "sent" : o.kind === "skipped" ? "skipped" : o.status;
      const mine = await conn.execute<{ id: string }[]>(
        `update "${s}"."email_follow_up_send" set status = ?, message_id = ?, error = ?, sent_at = ?, updated_at = ?
         where id = ? and claim_token = ? and status = 'sending' returning id`,
        [
          status,
          o.kind === "sent" ? o.messageId : "",
          o.kind === "sent" ? "" : o.detail,
          o.kind === "sent" ? now : null,
          now,
          row.id,
          token,
        ],
        "all",
        tx,
      );
      if (mine.length === 0) return; // another worker took the row over after our claim expired
      if (o.kind === "sent" && row.arm !== null) {
        await addToArms(em, s, [{ segmentKey: row.segment_key, arm: row.arm, trials: 1, successes: 0 }], now);
      }
      const [e] = await conn.execute<{ state: string }[]>(
        `select state from "${s}"."email_follow_up_enrollment" where id = ? for update`,
        [row.enrollment_id],
        "all",
        tx,
      );
      if (e?.state !== "active") return;
      if (o.kind === "stop") {
        await conn.execute(
          `update "${s}"."email_follow_up_enrollment" set state = 'stopped', stop_reason = ?, stop_detail = left(?, 300), next_due_at = null, stopped_at = ?, updated_at = ? where id = ?`,
          [o.reason, o.detail, now, now, row.enrollment_id],
          "run",
          tx,
        );
        return;
      }
      const next = row.step_index + 1;
      const messageId = o.kind === "sent" ? o.messageId : "";
      if (next >= cadence.steps.length) {
        await conn.execute(
          `update "${s}"."email_follow_up_enrollment" set state = 'completed', completed_steps = ?, next_step = ?, next_due_at = null,
             last_message_id = case when ? = '' then last_message_id else ? end, updated_at = ? where id = ?`,
          [next, next, messageId, messageId, now, row.enrollment_id],
          "run",
          tx,
        );
        return;
      }
      const due = await planStep(em, { schema: s, random }, cadence, next, now, row.time_zone);
      await insertSend(em, { schema: s, random }, cadence, row.enrollment_id, next, due, now);
      await conn.execute(
        `update "${s}"."email_follow_up_enrollment" set completed_steps = ?, next_step = ?, next_due_at = ?,
           last_message_id = case when ? = '' then last_message_id else ? end, updated_at = ? where id = ?`,
        [next, next, due.dueAt, messageId, messageId, now, row.enrollment_id],
        "run",
        tx,
      );
    });
  }

  async function round(): Promise<FollowUpRoundResult> {
    const result: FollowUpRoundResult = {
      claimed: 0,
      cancelled: 0,
      sent: 0,
      skipped: 0,
      stopped: 0,
      retried: 0,
      deferred: 0,
      failed: 0,
    };
    await expire();
    const token = randomUUID();
    const rows = await claim(token);
    result.claimed = rows.length;
    const live = rows.filter((r) => r.status === "sending");
    result.cancelled = rows.length - live.length;
    const used = new Map<string, Promise<{ n: number }>>();
    let next = 0;
    const lane = async () => {
      while (next < live.length) {
        const row = live[next++] as ClaimedStep;
        // The definition as the claim read it: a replaced cadence applies from the next step on.
        const cadence = fromJson(FollowUpCadenceSchema, row.definition);
        // The send continues the trace that planned the step (a segment join's event, an RPC).
        const o = await withStoredTrace(
          "email.follow_up.step",
          row.trace_context,
          {
            "mesh.email.sequence_id": cadence.sequenceId,
            "mesh.email.enrollment_id": row.enrollment_id,
            "mesh.email.step_index": row.step_index,
          },
          () => deliver(row, cadence, used),
        );
        await record(row, cadence, token, o);
        if (o.kind === "sent") result.sent++;
        else if (o.kind === "skipped") result.skipped++;
        else if (o.kind === "stop") result.stopped++;
        else if (o.kind === "retry") result.retried++;
        else if (o.kind === "defer") result.deferred++;
        else result.failed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, live.length) }, lane));
    return result;
  }

  return {
    round,
    wake: () => loop?.wake(),
    start() {
      const poll = startPollLoop({
        name: "follow-up worker",
        round: async () => ({ busy: (await round()).claimed > 0 }),
        pollMs: opts.pollMs ?? 1000,
        log: opts.log,
      });
      loop = poll;
      return {
        async stop() {
          await poll.stop();
          loop = undefined;
        },
      };
    },
  };
}
