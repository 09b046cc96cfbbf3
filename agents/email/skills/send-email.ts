/**
 * SendEmail: one message to one recipient, at most once per request id.
 *
 * Method: the call claims the request id in `email_message` (status `sending`) in a transaction of
 * its own, after checking the suppression list (a suppressed recipient is recorded as `suppressed`
 * and nothing is sent); it then hands the message to the transport and records the outcome (`sent`,
 * `written_to_outbox` or `failed`) in a second transaction. Both commit independently of the call's
 * idempotency transaction on purpose: a message that left the process cannot be rolled back, so
 * the record of it must survive whatever happens to the call afterwards. The transaction that records
 * a message as sent (or written to the outbox folder) also enqueues `MessageSent` through the
 * transactional outbox, so the announcement exists exactly when the record does: once per message.
 * A follow-up step (its request id is on an `email_follow_up_send` row) is announced with its
 * contact, sequence and step.
 *
 * Replays with the same request id: a finished message is answered from its row without sending; a
 * failed one is tried again (with the same Message-ID); one still `sending` — another call in flight,
 * or a process that died mid-send — is refused with ABORTED rather than risk a second copy.
 *
 * A send is deliberately not cancelled with the call: once the message may have reached the server
 * its outcome must be recorded, and a caller that gave up finds it on its retry.
 */
import { createHash, randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { LockMode } from "@mikro-orm/postgresql";
import { EmailMessageKind, MessageSentSchema } from "../../../gen/mesh/email/v1/email_events_pb.ts";
import {
  CalendarMethod,
  EmailStatus,
  EmailTransport,
  type SendEmailRequest,
  SendEmailRequestSchema,
  type SendEmailResponse,
  SendEmailResponseSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Bus, enqueueEvent } from "../../../lib/bus/index.ts";
import { type Database, type EntityManager, UniqueConstraintViolationException } from "../../../lib/db/index.ts";
import { ConflictError, checkContract, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { blockedReason } from "../consent/guard.ts";
import {
  DeliveryError,
  type Mailbox,
  type MailTransport,
  normalizeAddress,
  type OutgoingEmail,
  RecipientSuppressedError,
} from "../delivery.ts";
import { EmailMessage, type EmailMessageRow, type EmailMessageStatus } from "../entities.ts";
import { MessageSent, messageSentId } from "../events.ts";

/** Dependencies of the skill. */
export interface SendEmailDeps {
  /** The Email agent's database (operations schema). */
  readonly db: Database;
  /** Clock. */
  readonly now: () => Date;
  /** SMTP or outbox. */
  readonly transport: MailTransport;
  /** From identity of requests that give none (MESH_EMAIL_FROM). */
  readonly defaultFrom: Mailbox;
  /** Logger, for transport failures. */
  readonly log: Logger;
  /** The bus, for the subject prefix of `MessageSent`. */
  readonly bus: Pick<Bus, "prefix">;
}

export { normalizeAddress };

const statusOf: Record<EmailMessageStatus, EmailStatus> = {
  sending: EmailStatus.UNSPECIFIED,
  failed: EmailStatus.UNSPECIFIED,
  sent: EmailStatus.SENT,
  written_to_outbox: EmailStatus.WRITTEN_TO_OUTBOX,
  suppressed: EmailStatus.SUPPRESSED,
};

function responseOf(row: EmailMessageRow): SendEmailResponse {
  return create(SendEmailResponseSchema, {
    messageId: row.status === "suppressed" ? "" : row.messageId,
    status: statusOf[row.status],
    transport:
      row.transport === "smtp"
        ? EmailTransport.SMTP
        : row.transport === "outbox"
          ? EmailTransport.OUTBOX
          : EmailTransport.UNSPECIFIED,
    accepted: row.accepted,
    rejected: row.rejected,
    smtpResponse: row.smtpResponse,
    outboxFile: row.outboxFile,
    suppressionReason: row.suppressionReason,
    ...(row.processedAt ? { processedAt: timestampFromDate(row.processedAt) } : {}),
  });
}

/** A new Message-ID on the sender's domain (RFC 5322 §3.6.4: globally unique, `<left@right>`). */
function newMessageId(from: Mailbox): string {
  const domain = from.address.slice(from.address.lastIndexOf("@") + 1) || "localhost";
  return `<${randomUUID()}@${domain}>`;
}

interface Claim {
  /** The message's row. */
  row: EmailMessageRow;
  /** True when this call must hand the message to the transport; false when the row is the answer. */
  send: boolean;
}

/** Claims the request id (or finds its earlier outcome) and applies the suppression list. */
async function claim(deps: SendEmailDeps, req: SendEmailRequest, from: Mailbox, hash: string): Promise<Claim> {
  const recipient = normalizeAddress(req.to?.address ?? "");
  try {
    return await deps.db.transaction(async (em) => {
      const existing = await em.findOne(
        EmailMessage,
        { requestId: req.requestId },
        { lockMode: LockMode.PESSIMISTIC_WRITE },
      );
      if (existing !== null) {
        if (existing.requestHash !== hash) {
          throw new ConnectError(
            "request_id was already used with different input; use a new request_id for a new message",
            Code.AlreadyExists,
          );
        }
        if (existing.status === "sending") {
          throw new ConflictError(
            `request_id ${req.requestId}: the message is being sent by another call, or that call ended without a known outcome; it is not sent again`,
          );
        }
        if (existing.status !== "failed") return { row: existing, send: false };
      }
      const now = deps.now();
      const row =
        existing ??
        em.create(EmailMessage, {
          id: randomUUID(),
          requestId: req.requestId,
          requestHash: hash,
          messageId: newMessageId(from),
          fromAddress: normalizeAddress(from.address),
          recipient,
          subject: req.subject,
          tag: req.tag,
          status: "sending",
          transport: "",
          accepted: [],
          rejected: [],
          smtpResponse: "",
          outboxFile: "",
          suppressionReason: "",
          error: "",
          attempts: 0,
          createdAt: now,
          updatedAt: now,
          processedAt: null,
        });
      row.updatedAt = now;
      // The send guard: suppression list, erased markers and the CRM's do-not-contact verdicts.
      const suppression = await blockedReason(em, deps.db.schema, recipient);
      if (suppression !== undefined) {
        row.status = "suppressed";
        row.suppressionReason = suppression.slice(0, 200);
        row.processedAt = now;
        return { row, send: false };
      }
      row.status = "sending";
      row.attempts += 1;
      return { row, send: true };
    });
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException) {
      throw new ConflictError(`request_id ${req.requestId}: another call with this request_id is sending the message`);
    }
    throw err;
  }
}

/** Records the outcome of a send in its own transaction. */
function record(deps: SendEmailDeps, id: string, changes: Partial<EmailMessageRow>): Promise<EmailMessageRow> {
  return deps.db.transaction(async (em) => {
    const row = await em.findOneOrFail(EmailMessage, { id });
    em.assign(row, { ...changes, updatedAt: deps.now() });
    return row;
  });
}

/** The follow-up step a request id belongs to, when a follow-up sequence sent the message. */
async function followUpStepOf(
  deps: SendEmailDeps,
  em: EntityManager,
  requestId: string,
): Promise<{ contact_id: string; sequence_id: string; step_index: number } | undefined> {
  const s = `"${deps.db.schema}"`;
  const rows = await em.getConnection().execute<{ contact_id: string; sequence_id: string; step_index: number }[]>(
    `select e.contact_id, e.sequence_id, f.step_index from ${s}."email_follow_up_send" f
       join ${s}."email_follow_up_enrollment" e on e.id = f.enrollment_id where f.request_id = ?`,
    [requestId],
    "all",
    em.getTransactionContext(),
  );
  return rows[0];
}

/** Records a message the transport took, and enqueues its `MessageSent`, in one transaction. */
function recordSent(deps: SendEmailDeps, id: string, changes: Partial<EmailMessageRow>): Promise<EmailMessageRow> {
  return deps.db.transaction(async (em) => {
    const row = await em.findOneOrFail(EmailMessage, { id });
    em.assign(row, { ...changes, updatedAt: deps.now() });
    const step = await followUpStepOf(deps, em, row.requestId);
    enqueueEvent(
      deps.db,
      em,
      deps.bus.prefix,
      MessageSent,
      create(MessageSentSchema, {
        messageId: row.messageId,
        contactId: step?.contact_id ?? "",
        recipient: row.recipient,
        subject: row.subject,
        kind: step === undefined ? EmailMessageKind.SINGLE : EmailMessageKind.FOLLOW_UP,
        tag: row.tag,
        sequenceId: step?.sequence_id ?? "",
        stepIndex: step?.step_index ?? 0,
        sentAt: timestampFromDate(row.processedAt ?? deps.now()),
        status: statusOf[row.status],
      }),
      { msgId: messageSentId(row.messageId) },
    );
    return row;
  });
}

/** SHA-256 of a request's binary form: what a replay must match. */
export function requestHash(req: SendEmailRequest): string {
  return createHash("sha256").update(toBinary(SendEmailRequestSchema, req)).digest("hex");
}

/** The calendar part of a request; its METHOD property must be the method the request names. */
function calendarOf(req: SendEmailRequest): OutgoingEmail["calendar"] {
  if (req.calendar === undefined) return undefined;
  const method = req.calendar.method === CalendarMethod.CANCEL ? "CANCEL" : "REQUEST";
  const stated = /^METHOD:([A-Za-z-]+)\r?$/m.exec(req.calendar.ics)?.[1]?.toUpperCase();
  if (stated !== method) {
    throw new InvalidInputError("calendar.ics", `has METHOD:${stated ?? "(none)"}, but calendar.method is ${method}`);
  }
  return { method, ics: req.calendar.ics };
}

/** Sends (or writes, or suppresses) one message; see the file comment for the replay rules. */
export async function sendEmail(deps: SendEmailDeps, req: SendEmailRequest): Promise<SendEmailResponse> {
  checkContract(SendEmailRequestSchema, req);
  const to = req.to as NonNullable<SendEmailRequest["to"]>; // required by the contract
  const calendar = calendarOf(req);
  const from: Mailbox = req.from ? { name: req.from.name, address: req.from.address } : deps.defaultFrom;
  const claimed = await claim(deps, req, from, requestHash(req));
  if (!claimed.send) return responseOf(claimed.row);

  const mail: OutgoingEmail = {
    messageId: claimed.row.messageId,
    date: deps.now(),
    from,
    to: { name: to.name, address: to.address.trim() },
    replyTo: req.replyTo || req.from?.replyTo || undefined,
    subject: req.subject,
    text: req.text,
    html: req.html || undefined,
    inReplyTo: req.inReplyTo || undefined,
    unsubscribeUrl: req.listUnsubscribeUrl || undefined,
    unsubscribeMailto: req.listUnsubscribeMailto || undefined,
    ...(calendar ? { calendar } : {}),
  };
  let result: Awaited<ReturnType<MailTransport["send"]>>;
  try {
    result = await deps.transport.send(mail);
  } catch (err) {
    // Blocked between the claim and the send (an unsubscribe or a do-not-contact change): not sent.
    if (err instanceof RecipientSuppressedError) {
      return responseOf(
        await record(deps, claimed.row.id, {
          status: "suppressed",
          suppressionReason: err.reason.slice(0, 200),
          processedAt: deps.now(),
        }),
      );
    }
    const message = err instanceof Error ? err.message : String(err);
    await record(deps, claimed.row.id, {
      status: "failed",
      transport: deps.transport.kind,
      error: message,
      ...(err instanceof DeliveryError && err.kind === "rejected" ? { rejected: [to.address] } : {}),
    });
    deps.log.warn("email not sent", { requestId: req.requestId, messageId: mail.messageId, error: message });
    if (err instanceof DeliveryError) {
      if (err.kind === "rejected") throw new FailedPreconditionError(message);
      throw new ConnectError(message, Code.Unavailable);
    }
    throw err;
  }
  const row = await recordSent(deps, claimed.row.id, {
    status: result.transport === "smtp" ? "sent" : "written_to_outbox",
    transport: result.transport,
    accepted: [...result.accepted],
    rejected: [...result.rejected],
    smtpResponse: result.response,
    outboxFile: result.outboxFile,
    error: "",
    processedAt: deps.now(),
  });
  return responseOf(row);
}
