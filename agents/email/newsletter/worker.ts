/**
 * The newsletter send worker: durable, at most once per (campaign, recipient).
 *
 * Every message is a row of `email_newsletter_send`, created by SendNewsletter. Workers on every
 * instance hosting the agent poll the table (the interval only decides how soon a due row is seen;
 * nothing lives in timers). One round:
 *
 * 1. Claims that outlived `claimTimeoutMs` — their worker died between handing messages to SMTP and
 *    recording the outcome — become `unknown`: the message may have gone out, and a second copy is
 *    worse than a missing one, so it is never sent again.
 * 2. Subject-line tests whose test sends are all out and significant, or whose window has closed,
 *    are decided, and the held rest of the audience is released with the winning subject.
 * 3. A bounded batch of due `pending` rows is claimed in one short transaction with a fresh claim
 *    token (`FOR UPDATE SKIP LOCKED`: workers never wait for or take each other's rows); rows whose
 *    address is on the suppression list become `suppressed` in the same statement.
 * 4. The claimed messages are personalised and handed to SMTP outside any transaction, several at
 *    a time over pooled connections, and the outcomes are recorded in small batches — only where the
 *    claim token is still ours. Each message recorded `sent` in a batch is announced (`MessageSent`,
 *    through the outbox) in that batch's transaction, so exactly the recorded sends are announced.
 *
 * A message the SMTP server refused before DATA for a temporary reason, or that never reached it,
 * goes back to `pending` with a backoff; a permanent refusal of the recipient is a bounce (`failed`,
 * address suppressed); a failure during or after DATA is `unknown`, since the server may have
 * accepted it.
 */
import { createHash, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EmailMessageKind, MessageSentSchema } from "../../../gen/mesh/email/v1/email_events_pb.ts";
import { EmailStatus } from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Bus, enqueueEvent, type Running } from "../../../lib/bus/index.ts";
import { type Database, type PollLoop, startPollLoop } from "../../../lib/db/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { blockedJoinSql } from "../consent/guard.ts";
import { DeliveryError, type MailTransport, type OutgoingEmail, RecipientSuppressedError } from "../delivery.ts";
import { type AbDecision, EmailNewsletter, type EmailNewsletterRow, type StoredVariant } from "../entities.ts";
import { MessageSent, messageSentId } from "../events.ts";
import { personalize } from "./render.ts";
import { decideWinner } from "./stats.ts";
import { signUnsubscribeToken, unsubscribeUrlFor } from "./unsubscribe.ts";

/** Options of the worker. */
export interface NewsletterWorkerOptions {
  readonly db: Database;
  readonly transport: MailTransport;
  /** The bus, for the subject prefix of `MessageSent`. */
  readonly bus: Pick<Bus, "prefix">;
  readonly log: Logger;
  readonly now: () => Date;
  /** Id of this instance, recorded on its claims. */
  readonly nodeId: string;
  /** The unsubscribe signing key. */
  readonly key: () => Promise<Buffer>;
  /** Rows claimed per round (default 200). */
  readonly batch?: number;
  /** Messages in flight at once (default 16). */
  readonly concurrency?: number;
  /** Poll interval when idle, ms (default 500). */
  readonly pollMs?: number;
  /** Claim age after which its rows are `unknown` (default 5 min: well over the SMTP timeouts). */
  readonly claimTimeoutMs?: number;
  /** Attempts before a message that never reached the server is `failed` (default 5). */
  readonly maxAttempts?: number;
}

/**
 * Deterministic assignment of a recipient: in the test when `u < fraction`, and which variant, from
 * SHA-256 of campaign and address (stable across calls, instances and restarts).
 */
export function assignment(
  campaignId: string,
  recipient: string,
  fraction: number,
  variants: number,
): { inTest: boolean; variant: number } {
  const h = createHash("sha256").update(`${campaignId}\u0000${recipient}`).digest();
  const u = h.readUInt32BE(0) / 2 ** 32;
  const v = h.readUInt32BE(4) / 2 ** 32;
  return { inTest: u < fraction, variant: Math.min(variants - 1, Math.floor(v * variants)) };
}

/** A claimed row. */
interface ClaimedRow {
  id: string;
  campaign_id: string;
  address: string;
  recipient: string;
  name: string;
  fields: Record<string, string> | string;
  variant_id: string;
  message_id: string;
  attempts: number;
  status: string;
}

/** An outcome to record. */
interface Outcome {
  id: string;
  status: "sent" | "failed" | "pending" | "unknown" | "suppressed";
  smtp_response: string;
  error: string;
  sent_at: string | null;
  bounced_at: string | null;
  next_attempt_at: string | null;
  suppress_reason: string | null;
  recipient: string;
  /** For `sent`: the subject line as sent, and how it left (announced in `MessageSent`). */
  subject?: string;
  transport?: "smtp" | "outbox";
}

/** What a round did. */
export interface RoundResult {
  expired: number;
  decided: number;
  claimed: number;
  sent: number;
  failed: number;
  suppressed: number;
  retried: number;
  unknown: number;
}

const backoffMs = (attempt: number) => Math.min(30_000 * 2 ** (attempt - 1), 3_600_000);

/** Marks claims older than the timeout `unknown`. */
export async function expireAbandonedClaims(
  opts: Pick<NewsletterWorkerOptions, "db" | "now" | "claimTimeoutMs">,
): Promise<number> {
  const { db } = opts;
  const now = opts.now();
  const before = new Date(now.getTime() - (opts.claimTimeoutMs ?? 5 * 60_000));
  const res = await db
    .fork()
    .getConnection()
    .execute(
      `update "${db.schema}"."email_newsletter_send" set status = 'unknown', error = 'claimed by ' || claimed_by || ' with no outcome recorded: it may have been sent, so it is not sent again', updated_at = ?
     where status = 'sending' and claimed_at < ?`,
      [now, before],
      "run",
    );
  return (res as { affectedRows?: number }).affectedRows ?? 0;
}

/**
 * Decides the subject-line tests that are ready: all test sends out and the best variant
 * significantly ahead of every other, or the window closed. Returns the number decided.
 */
export async function decideTests(opts: Pick<NewsletterWorkerOptions, "db" | "now" | "log">): Promise<number> {
  const { db } = opts;
  const s = db.schema;
  const now = opts.now();
  let decided = 0;
  const candidates = await db
    .fork()
    .getConnection()
    .execute<{ campaign_id: string }[]>(
      `select campaign_id from "${s}"."email_newsletter" where ab_state = 'testing'`,
      [],
      "all",
    );
  for (const { campaign_id: campaignId } of candidates) {
    const done = await db.transaction(async (em) => {
      const conn = em.getConnection();
      const tx = em.getTransactionContext();
      const [n] = await conn.execute<
        { variants: StoredVariant[] | string; ab_metric: string; ab_alpha: number; test_ends_at: Date | string }[]
      >(
        `select variants, ab_metric, ab_alpha, test_ends_at from "${s}"."email_newsletter" where campaign_id = ? and ab_state = 'testing' for update skip locked`,
        [campaignId],
        "all",
        tx,
      );
      if (n === undefined) return false;
      const variants: StoredVariant[] = typeof n.variants === "string" ? JSON.parse(n.variants) : n.variants;
      const engaged = n.ab_metric === "open" ? "opened_at" : "clicked_at";
      const rows = await conn.execute<{ variant_id: string; trials: string; successes: string; open: string }[]>(
        `select variant_id, count(*) filter (where status = 'sent') as trials,
                count(*) filter (where status = 'sent' and ${engaged} is not null) as successes,
                count(*) filter (where status in ('pending', 'sending')) as open
         from "${s}"."email_newsletter_send" where campaign_id = ? and in_test group by variant_id`,
        [campaignId],
        "all",
        tx,
      );
      const by = new Map(rows.map((r) => [r.variant_id, r]));
      const arms = variants.map((v) => ({
        successes: Number(by.get(v.variantId)?.successes ?? 0),
        trials: Number(by.get(v.variantId)?.trials ?? 0),
      }));
      const outstanding = rows.reduce((a, r) => a + Number(r.open), 0);
      const d = decideWinner(arms, Number(n.ab_alpha));
      const closed = now.getTime() >= new Date(n.test_ends_at).getTime();
      let reason: string;
      if (outstanding === 0 && d.significant) reason = "significant";
      else if (closed) reason = "window closed";
      else return false;
      const winner = (variants[d.winner] as StoredVariant).variantId;
      const decision: AbDecision = { reason, significant: d.significant, z: d.z, pValue: d.pValue };
      await conn.execute(
        `update "${s}"."email_newsletter" set ab_state = 'decided', winner_variant_id = ?, decision = ?, decided_at = ?, updated_at = ? where campaign_id = ?`,
        [winner, JSON.stringify(decision), now, now, campaignId],
        "run",
        tx,
      );
      await conn.execute(
        `update "${s}"."email_newsletter_send" set status = 'pending', variant_id = ?, next_attempt_at = ?, updated_at = ? where campaign_id = ? and status = 'held'`,
        [winner, now, now, campaignId],
        "run",
        tx,
      );
      opts.log.info("newsletter subject test decided", { campaignId, winner, ...decision, arms });
      return true;
    });
    if (done) decided++;
  }
  return decided;
}

/** Claims up to `batch` due rows for this worker in one committed transaction. */
async function claim(opts: NewsletterWorkerOptions, token: string): Promise<ClaimedRow[]> {
  const { db } = opts;
  const s = db.schema;
  const now = opts.now();
  return db.transaction(async (em) =>
    em.getConnection().execute<ClaimedRow[]>(
      `with picked as (
         select id, recipient from "${s}"."email_newsletter_send"
         where status = 'pending' and next_attempt_at <= ? order by next_attempt_at, id limit ? for update skip locked)
       update "${s}"."email_newsletter_send" t set
         status = case when x.reason is null then 'sending' else 'suppressed' end,
         error = case when x.reason is null then t.error else x.reason end,
         claim_token = ?, claimed_at = ?, claimed_by = ?, updated_at = ?,
         attempts = t.attempts + case when x.reason is null then 1 else 0 end
       from picked ${blockedJoinSql(s, "picked.recipient")}
       where t.id = picked.id
       returning t.id, t.campaign_id, t.address, t.recipient, t.name, t.fields, t.variant_id, t.message_id, t.attempts, t.status`,
      [now, opts.batch ?? 200, token, now, opts.nodeId, now],
      "all",
      em.getTransactionContext(),
    ),
  );
}

/** Records outcomes where the claim is still ours; permanent refusals also suppress the address. */
async function recordOutcomes(opts: NewsletterWorkerOptions, token: string, outcomes: Outcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  const { db } = opts;
  const s = db.schema;
  const now = opts.now();
  await db.transaction(async (em) => {
    const conn = em.getConnection();
    const tx = em.getTransactionContext();
    const recorded = await conn.execute<
      {
        id: string;
        status: string;
        campaign_id: string;
        recipient: string;
        message_id: string;
        sent_at: Date | string | null;
      }[]
    >(
      `update "${s}"."email_newsletter_send" t set status = r.status, smtp_response = r.smtp_response, error = r.error,
         sent_at = r.sent_at, bounced_at = coalesce(t.bounced_at, r.bounced_at),
         next_attempt_at = coalesce(r.next_attempt_at, t.next_attempt_at),
         claim_token = case when r.status = 'pending' then null else t.claim_token end, updated_at = ?
       from jsonb_to_recordset(?::jsonb) as r(id uuid, status text, smtp_response text, error text, sent_at timestamptz, bounced_at timestamptz, next_attempt_at timestamptz)
       where t.id = r.id and t.claim_token = ? and t.status = 'sending'
       returning t.id, t.status, t.campaign_id, t.recipient, t.message_id, t.sent_at`,
      [now, JSON.stringify(outcomes), token],
      "all",
      tx,
    );
    // Only rows this claim recorded as sent: a row another worker took over is announced by it.
    const byId = new Map(outcomes.map((o) => [o.id, o]));
    for (const r of recorded) {
      if (r.status !== "sent") continue;
      const o = byId.get(r.id);
      enqueueEvent(
        db,
        em,
        opts.bus.prefix,
        MessageSent,
        create(MessageSentSchema, {
          messageId: r.message_id,
          recipient: r.recipient,
          subject: o?.subject ?? "",
          kind: EmailMessageKind.NEWSLETTER,
          campaignId: r.campaign_id,
          sentAt: timestampFromDate(r.sent_at === null ? now : new Date(r.sent_at)),
          status: o?.transport === "outbox" ? EmailStatus.WRITTEN_TO_OUTBOX : EmailStatus.SENT,
        }),
        { msgId: messageSentId(r.message_id) },
      );
    }
    const suppress = outcomes.filter((o) => o.suppress_reason !== null);
    if (suppress.length > 0) {
      await conn.execute(
        `insert into "${s}"."email_suppression" (address, reason, created_at)
         select r.recipient, left(r.reason, 200), ? from jsonb_to_recordset(?::jsonb) as r(recipient text, reason text)
         on conflict (address) do nothing`,
        [now, JSON.stringify(suppress.map((o) => ({ recipient: o.recipient, reason: o.suppress_reason })))],
        "run",
        tx,
      );
    }
  });
}

/** SMTP stages before the message content is sent. */
const preDataCommands = new Set(["EHLO", "HELO", "LHLO", "STARTTLS", "MAIL FROM", "RCPT TO"]);

/**
 * True when a failure provably happened before the message content was sent: a refusal at the
 * envelope stage, or a connection that was never established. A connection lost later ("CONN"
 * after the greeting) may have been lost after the server accepted the message.
 */
function failedBeforeData(err: unknown): boolean {
  const cause =
    err instanceof Error
      ? (err.cause as { command?: unknown; code?: unknown; message?: unknown } | undefined)
      : undefined;
  const command = typeof cause?.command === "string" ? cause.command.toUpperCase() : "";
  if (preDataCommands.has(command)) return true;
  const text = `${String(cause?.code ?? "")} ${String(cause?.message ?? "")}`;
  return (
    command === "CONN" &&
    /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|Greeting never received/i.test(text)
  );
}

/** Reads campaign rows, cached (a campaign cannot change once sending). */
function campaignCache(db: Database) {
  const cache = new Map<string, EmailNewsletterRow>();
  return async (campaignId: string): Promise<EmailNewsletterRow> => {
    const hit = cache.get(campaignId);
    if (hit) return hit;
    const row = await db.fork().findOneOrFail(EmailNewsletter, { campaignId });
    if (cache.size >= 100) cache.delete(cache.keys().next().value as string);
    cache.set(campaignId, row);
    return row;
  };
}

/** The newsletter worker; {@link NewsletterWorker.round} is one round, `start` polls until stopped. */
export interface NewsletterWorker {
  round(): Promise<RoundResult>;
  /** Asks for a round soon (an in-process hint; the poll finds the rows anyway). */
  wake(): void;
  start(): Running;
}

/** Creates the worker. */
export function createNewsletterWorker(opts: NewsletterWorkerOptions): NewsletterWorker {
  const campaign = campaignCache(opts.db);
  let loop: PollLoop | undefined;

  async function compose(row: ClaimedRow, key: Buffer): Promise<OutgoingEmail> {
    const c = await campaign(row.campaign_id);
    const variant = c.variants.find((v) => v.variantId === row.variant_id) ?? (c.variants[0] as StoredVariant);
    const own: Record<string, string> = typeof row.fields === "string" ? JSON.parse(row.fields) : row.fields;
    const unsubscribeUrl = unsubscribeUrlFor(c.unsubscribeUrl, signUnsubscribeToken(key, row.id));
    const base: Record<string, string> = {
      ...own,
      email: row.address,
      name: row.name,
      unsubscribe_url: unsubscribeUrl,
    };
    const fields = { ...base, preheader: personalize(variant.preheader || c.preheader, base, "line") };
    return {
      messageId: row.message_id,
      date: opts.now(),
      from: { name: c.senderName, address: c.senderAddress },
      to: { name: row.name, address: row.address },
      replyTo: c.replyTo || undefined,
      subject: personalize(variant.subject, fields, "line"),
      text: personalize(c.plainText, fields, "text"),
      html: personalize(c.html, fields, "html"),
      inReplyTo: undefined,
      unsubscribeUrl,
      unsubscribeMailto: c.unsubscribeMailto || undefined,
      headers: { "Feedback-ID": `${row.campaign_id}:newsletter:marketing-mesh` },
    };
  }

  async function deliver(row: ClaimedRow, key: Buffer): Promise<Outcome> {
    const at = () => opts.now().toISOString();
    const base = {
      id: row.id,
      recipient: row.recipient,
      smtp_response: "",
      error: "",
      sent_at: null,
      bounced_at: null,
      next_attempt_at: null,
      suppress_reason: null,
    };
    let mail: OutgoingEmail;
    try {
      mail = await compose(row, key);
    } catch (err) {
      return {
        ...base,
        status: "failed",
        error: `could not compose: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
    try {
      const r = await opts.transport.send(mail);
      if (r.rejected.length > 0 && r.accepted.length === 0) {
        return {
          ...base,
          status: "failed",
          smtp_response: r.response,
          error: `rejected: ${r.rejected.join(", ")}`,
          bounced_at: at(),
          suppress_reason: `rejected at RCPT: ${r.response}`,
        };
      }
      return {
        ...base,
        status: "sent",
        smtp_response: r.response,
        sent_at: at(),
        subject: mail.subject,
        transport: r.transport,
      };
    } catch (err) {
      // The transport's guard refused the recipient after the claim (unsubscribed meanwhile): not sent.
      if (err instanceof RecipientSuppressedError) return { ...base, status: "suppressed", error: err.reason };
      const message = err instanceof Error ? err.message : String(err);
      if (err instanceof DeliveryError && err.kind === "rejected") {
        const recipientRefused = (err.responseCode ?? 0) >= 500 && /recipient/.test(message);
        return {
          ...base,
          status: "failed",
          error: message,
          ...(recipientRefused ? { bounced_at: at(), suppress_reason: `hard bounce at RCPT: ${message}` } : {}),
        };
      }
      if (!(err instanceof DeliveryError && failedBeforeData(err))) {
        return {
          ...base,
          status: "unknown",
          error: `${message} (during DATA: the server may have accepted it, so it is not sent again)`,
        };
      }
      if (row.attempts < (opts.maxAttempts ?? 5)) {
        return {
          ...base,
          status: "pending",
          error: message,
          next_attempt_at: new Date(opts.now().getTime() + backoffMs(row.attempts)).toISOString(),
        };
      }
      return { ...base, status: "failed", error: `${message} (after ${row.attempts} attempts)` };
    }
  }

  async function round(): Promise<RoundResult> {
    const result: RoundResult = {
      expired: 0,
      decided: 0,
      claimed: 0,
      sent: 0,
      failed: 0,
      suppressed: 0,
      retried: 0,
      unknown: 0,
    };
    result.expired = await expireAbandonedClaims(opts);
    result.decided = await decideTests(opts);
    const token = randomUUID();
    const rows = await claim(opts, token);
    result.claimed = rows.length;
    const toSend = rows.filter((r) => r.status === "sending");
    result.suppressed = rows.length - toSend.length;
    if (toSend.length === 0) return result;
    const key = await opts.key();
    const pending: Outcome[] = [];
    let flushing = Promise.resolve();
    const flush = (force: boolean) => {
      if (pending.length === 0 || (!force && pending.length < 25)) return flushing;
      const chunk = pending.splice(0, pending.length);
      flushing = flushing.then(() => recordOutcomes(opts, token, chunk));
      return flushing;
    };
    let next = 0;
    const lane = async () => {
      while (next < toSend.length) {
        const row = toSend[next++] as ClaimedRow;
        const o = await deliver(row, key);
        if (o.status === "sent") result.sent++;
        else if (o.status === "failed") result.failed++;
        else if (o.status === "pending") result.retried++;
        else if (o.status === "suppressed") result.suppressed++;
        else result.unknown++;
        pending.push(o);
        void flush(false);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 16, toSend.length) }, lane));
    await flush(true);
    return result;
  }

  return {
    round,
    wake: () => loop?.wake(),
    start() {
      const poll = startPollLoop({
        name: "newsletter worker",
        round: async () => ({ busy: (await round()).claimed > 0 }),
        pollMs: opts.pollMs ?? 500,
        log: opts.log,
      });
      loop = poll;
      return {
        async stop() {
          await poll.stop();
          loop = undefined;
          opts.transport.close();
        },
      };
    },
  };
}
