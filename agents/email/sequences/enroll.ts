/**
 * Enrolment: one contact into one stored cadence, as rows — the enrolment (its state machine:
 * active → completed | stopped) and the send row of its next step, with the instant it is due.
 * Nothing is held in memory or timers: the scheduler (worker.ts) finds due rows in the table.
 * At most one active enrolment per (sequence, contact) is enforced by a partial unique index.
 * A step row may carry the trace context that planned it (`trace_context`, W3C headers).
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { EntityManager } from "@mikro-orm/postgresql";
import {
  type Enrollment,
  EnrollmentSchema,
  EnrollmentState,
  type FollowUpCadence,
  FollowUpChannel,
  StopCondition,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Carrier, injectTrace } from "../../../lib/bus/index.ts";
import { blockedReason } from "../consent/guard.ts";
import { normalizeAddress } from "../delivery.ts";
import { chooseSlot, loadArms } from "../send-time/store.ts";
import type { Uniform } from "../send-time/thompson.ts";
import { modelKeyOf, windowOf } from "./cadence.ts";
import type { FollowUpContact } from "./contacts.ts";
import { isValidZone, localIso, stepDueAt } from "./plan.ts";

/** What planning a step needs beside the cadence. */
export interface PlanContext {
  readonly schema: string;
  /** Uniform generator of the send-time draws. */
  readonly random: Uniform;
}

/** A stored enrolment row. */
export interface EnrollmentRow {
  id: string;
  sequence_id: string;
  contact_id: string;
  address: string;
  recipient: string;
  name: string;
  fields: Record<string, string> | string;
  time_zone: string;
  state: "active" | "completed" | "stopped" | "suppressed";
  stop_reason: number;
  completed_steps: number;
  next_step: number;
  next_due_at: Date | string | null;
  last_message_id: string;
  request_id: string | null;
  enrolled_at: Date | string;
}

/** The instant step `index` is due after `base`, and its send-time arm when the model chose it. */
export async function planStep(
  em: EntityManager,
  ctx: PlanContext,
  cadence: FollowUpCadence,
  index: number,
  base: Date,
  zone: string,
): Promise<{ dueAt: Date; arm: number | null }> {
  const step = cadence.steps[index];
  if (step === undefined) throw new Error(`cadence ${cadence.sequenceId} has no step ${index}`);
  const delayMs = Number(step.delay?.seconds ?? 0n) * 1000 + Math.floor((step.delay?.nanos ?? 0) / 1e6);
  const window = windowOf(cadence);
  const earliest = stepDueAt(base, delayMs, zone, window);
  if (!cadence.optimizeSendTime || step.channel !== FollowUpChannel.EMAIL) return { dueAt: earliest, arm: null };
  const arms = await loadArms(em, ctx.schema, modelKeyOf(cadence));
  const slot = chooseSlot(earliest, zone, window, arms, ctx.random);
  return { dueAt: slot.at, arm: slot.arm };
}

/** Inserts the send row of step `index` of an enrolment. */
export async function insertSend(
  em: EntityManager,
  ctx: PlanContext,
  cadence: FollowUpCadence,
  enrollmentId: string,
  index: number,
  due: { dueAt: Date; arm: number | null },
  now: Date,
  trace?: Carrier,
): Promise<void> {
  const step = cadence.steps[index];
  if (step === undefined) throw new Error(`cadence ${cadence.sequenceId} has no step ${index}`);
  await em.getConnection().execute(
    `insert into "${ctx.schema}"."email_follow_up_send" (id, enrollment_id, step_index, channel, template_id, due_at, status, request_id, arm, segment_key, trace_context, created_at, updated_at)
     values (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?) on conflict (enrollment_id, step_index) do nothing`,
    [
      randomUUID(),
      enrollmentId,
      index,
      step.channel,
      step.templateId,
      due.dueAt,
      randomUUID(),
      due.arm,
      modelKeyOf(cadence),
      trace !== undefined && trace.traceparent !== undefined ? JSON.stringify(trace) : null,
      now,
      now,
    ],
    "run",
    em.getTransactionContext(),
  );
}

/** The merge fields of a contact. */
function fieldsOf(c: FollowUpContact): Record<string, string> {
  return {
    given_name: c.givenName,
    family_name: c.familyName,
    name: c.name,
    email: c.email,
    city: c.city,
    region: c.region,
    company: c.company,
  };
}

/** The response entry of a stored enrolment. */
export async function enrollmentOf(
  em: EntityManager,
  schema: string,
  row: EnrollmentRow,
  newly: boolean,
): Promise<Enrollment> {
  const state = {
    active: EnrollmentState.ACTIVE,
    completed: EnrollmentState.COMPLETED,
    stopped: EnrollmentState.STOPPED,
    suppressed: EnrollmentState.SUPPRESSED,
  }[row.state];
  let nextSend: Enrollment["nextSend"];
  if (row.state === "active") {
    const [s] = await em
      .getConnection()
      .execute<{ step_index: number; channel: number; template_id: string; due_at: Date | string }[]>(
        `select step_index, channel, template_id, due_at from "${schema}"."email_follow_up_send"
         where enrollment_id = ? and status in ('pending', 'sending') order by step_index limit 1`,
        [row.id],
        "all",
        em.getTransactionContext(),
      );
    if (s !== undefined) {
      const at = new Date(s.due_at);
      nextSend = {
        $typeName: "mesh.email.v1.ScheduledSend",
        stepIndex: s.step_index,
        channel: s.channel as FollowUpChannel,
        templateId: s.template_id,
        sendAt: timestampFromDate(at),
        localSendAt: localIso(at, row.time_zone),
      };
    }
  }
  return create(EnrollmentSchema, {
    contactId: row.contact_id,
    enrollmentId: row.id,
    state,
    newlyEnrolled: newly,
    completedSteps: row.completed_steps,
    stopReason: row.stop_reason as StopCondition,
    enrolledAt: timestampFromDate(new Date(row.enrolled_at)),
    timeZone: row.time_zone,
    ...(nextSend ? { nextSend } : {}),
  });
}

/** Options of {@link enrollContact}. */
export interface EnrollOptions {
  readonly startAt: Date;
  readonly now: Date;
  readonly allowReenrollment: boolean;
  /** Request (or event) that enrols; a replay of it reports the enrolment as newly made again. */
  readonly requestId: string | null;
}

/**
 * Enrols one resolved contact (undefined: CRM does not know it) in a stored cadence, or reports why
 * not: an active enrolment in the sequence is reported as it is; a finished one unless re-enrolment
 * is allowed (never after an unsubscribe or bounce); an address on the suppression list is not
 * enrolled. Runs in the caller's transaction.
 */
export async function enrollContact(
  em: EntityManager,
  ctx: PlanContext,
  cadence: FollowUpCadence,
  contactId: string,
  contact: FollowUpContact | undefined,
  opts: EnrollOptions,
): Promise<Enrollment> {
  const conn = em.getConnection();
  const tx = em.getTransactionContext();
  const s = ctx.schema;
  if (contact === undefined) return create(EnrollmentSchema, { contactId, state: EnrollmentState.NOT_FOUND });
  const [latest] = await conn.execute<EnrollmentRow[]>(
    `select * from "${s}"."email_follow_up_enrollment" where sequence_id = ? and contact_id = ? order by created_at desc limit 1 for update`,
    [cadence.sequenceId, contactId],
    "all",
    tx,
  );
  if (latest !== undefined) {
    const sameRequest = opts.requestId !== null && latest.request_id === opts.requestId;
    const final = latest.stop_reason === StopCondition.UNSUBSCRIBED || latest.stop_reason === StopCondition.BOUNCED;
    if (latest.state === "active" || sameRequest || !opts.allowReenrollment || final) {
      return enrollmentOf(em, s, latest, sameRequest);
    }
  }
  const emailSteps = cadence.steps.some((st) => st.channel === FollowUpChannel.EMAIL);
  const recipient = normalizeAddress(contact.email);
  let suppressedBy: StopCondition | undefined;
  if (emailSteps && recipient === "") suppressedBy = StopCondition.UNSPECIFIED;
  else if (emailSteps) {
    // The send guard's rule: suppression list, erased markers, the CRM's do-not-contact list.
    const reason = await blockedReason(em, s, recipient);
    if (reason !== undefined) {
      suppressedBy = /bounce|reject/i.test(reason) ? StopCondition.BOUNCED : StopCondition.UNSUBSCRIBED;
    }
  }
  if (suppressedBy !== undefined) {
    return create(EnrollmentSchema, { contactId, state: EnrollmentState.SUPPRESSED, stopReason: suppressedBy });
  }
  const zone = cadence.useContactTimeZone && isValidZone(contact.timeZone) ? contact.timeZone : cadence.timeZone;
  const id = randomUUID();
  const due = await planStep(em, ctx, cadence, 0, opts.startAt, zone);
  const [row] = await conn.execute<EnrollmentRow[]>(
    `insert into "${s}"."email_follow_up_enrollment" (id, sequence_id, contact_id, address, recipient, name, fields, time_zone, segment_key, state, completed_steps, next_step, next_due_at, request_id, enrolled_at, created_at, updated_at)
     values (?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', 0, 0, ?, ?, ?, ?, ?) returning *`,
    [
      id,
      cadence.sequenceId,
      contactId,
      contact.email.trim(),
      recipient,
      contact.name,
      JSON.stringify(fieldsOf(contact)),
      zone,
      cadence.segmentKey,
      due.dueAt,
      opts.requestId,
      opts.startAt,
      opts.now,
      opts.now,
    ],
    "all",
    tx,
  );
  // The first step continues the trace that enrolled (the RPC, or the CRM event the segment join
  // came with): the scheduler sends it in that trace (worker.ts). Later steps, days apart, do not.
  await insertSend(em, ctx, cadence, id, 0, due, opts.now, injectTrace({}));
  return enrollmentOf(em, s, row as EnrollmentRow, true);
}
