/**
 * Data-subject requests on the Email agent's tables (`ExportRecipientData`, `EraseRecipientData`),
 * called by the CRM's ExportContactData and EraseContact through the generated client.
 *
 * Erasure anonymises the messages and newsletter sends to the addresses (the address becomes its
 * SHA-256; subject, name, merge fields and server replies are cleared; their copies in the outbox
 * folder are deleted), so request ids still deduplicate and campaign reports keep their counts;
 * messages to others that carry the person's data (invitations listing them, named by the CRM)
 * lose subject and copy; it deletes stored call results of this agent
 * that contain an address, and replaces suppressions by markers holding only the SHA-256. Every
 * erased address is kept blocked by such a marker: the person is not written to again.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type EraseRecipientDataRequest,
  EraseRecipientDataRequestSchema,
  type EraseRecipientDataResponse,
  EraseRecipientDataResponseSchema,
  type ExportRecipientDataRequest,
  ExportRecipientDataRequestSchema,
  type ExportRecipientDataResponse,
  ExportRecipientDataResponseSchema,
  RecipientMessageRecordSchema,
  RecipientNewsletterRecordSchema,
  RecipientSuppressionRecordSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, transaction } from "../../../lib/db/index.ts";
import { checkContract } from "../../../lib/errors/index.ts";
import { normalizeAddress, outboxFileName } from "../delivery.ts";
import { addressSha256 } from "./guard.ts";

/** Most rows of one kind an export returns. */
export const exportLimit = 10_000;

const ts = (d: Date | string | null) => (d === null ? undefined : timestampFromDate(new Date(d)));

/** ExportRecipientData: what the agent holds about the addresses. */
export async function exportRecipientData(
  deps: { db: Database },
  req: ExportRecipientDataRequest,
): Promise<ExportRecipientDataResponse> {
  checkContract(ExportRecipientDataRequestSchema, req);
  const s = `"${deps.db.schema}"`;
  const addresses = JSON.stringify([...new Set(req.addresses.map(normalizeAddress))]);
  const hashes = JSON.stringify(req.addresses.map(addressSha256));
  const conn = deps.db.fork().getConnection();
  const list = `(select jsonb_array_elements_text(?::jsonb))`;
  const messages = await conn.execute<
    { recipient: string; subject: string; tag: string; status: string; created_at: Date }[]
  >(
    `select recipient, subject, tag, status, created_at from ${s}."email_message" where recipient in ${list}
     order by created_at, id limit ${exportLimit}`,
    [addresses],
    "all",
  );
  const sends = await conn.execute<
    {
      campaign_id: string;
      recipient: string;
      name: string;
      fields: Record<string, string> | string;
      status: string;
      sent_at: Date | null;
      unsubscribed_at: Date | null;
    }[]
  >(
    `select campaign_id, recipient, name, fields, status, sent_at, unsubscribed_at from ${s}."email_newsletter_send"
     where recipient in ${list} order by created_at, id limit ${exportLimit}`,
    [addresses],
    "all",
  );
  const suppressions = await conn.execute<{ address: string; reason: string; created_at: Date }[]>(
    `select address, reason, created_at from ${s}."email_suppression" where address in ${list}
     union all select '' as address, reason, created_at from ${s}."email_suppression_marker" where address_sha256 in ${list}
     union all select '' as address, reason, updated_at from ${s}."email_do_not_contact" where blocked and address_sha256 in ${list}`,
    [addresses, hashes, hashes],
    "all",
  );
  return create(ExportRecipientDataResponseSchema, {
    messages: messages.map((m) =>
      create(RecipientMessageRecordSchema, {
        recipient: m.recipient,
        subject: m.subject,
        tag: m.tag,
        status: m.status,
        createdAt: ts(m.created_at),
      }),
    ),
    newsletterSends: sends.map((r) =>
      create(RecipientNewsletterRecordSchema, {
        campaignId: r.campaign_id,
        recipient: r.recipient,
        name: r.name,
        fields: typeof r.fields === "string" ? (JSON.parse(r.fields) as Record<string, string>) : r.fields,
        status: r.status,
        sentAt: ts(r.sent_at),
        unsubscribedAt: ts(r.unsubscribed_at),
      }),
    ),
    suppressions: suppressions.map((r) =>
      create(RecipientSuppressionRecordSchema, { address: r.address, reason: r.reason, createdAt: ts(r.created_at) }),
    ),
  });
}

/**
 * Deletes the outbox copies (`.eml` files, named by Message-ID) of the messages the rows matching
 * `where` sent, a page at a time. Run before the rows are anonymised: a failure leaves them as
 * they were, and the retry finds the same files (gone ones are skipped), so it is safe to repeat.
 */
async function deleteOutboxCopies(
  db: Database,
  outboxDir: string | undefined,
  table: "email_message" | "email_newsletter_send",
  where: string,
  params: unknown[],
): Promise<void> {
  if (outboxDir === undefined || outboxDir === "") return;
  const conn = db.fork().getConnection();
  let after = "";
  for (;;) {
    const rows = await conn.execute<{ id: string; message_id: string }[]>(
      `select id::text, message_id from "${db.schema}"."${table}" where (${where}) and message_id <> '' and id::text > ?
       order by id::text limit 500`,
      [...params, after],
      "all",
    );
    for (const r of rows) await rm(join(outboxDir, outboxFileName(r.message_id)), { force: true });
    if (rows.length < 500) return;
    after = (rows[rows.length - 1] as { id: string }).id;
  }
}

/**
 * EraseRecipientData: deletes what the agent holds about the addresses, keeping hashed suppression
 * markers; the messages of `related_request_ids` (to other people, about this one) lose their
 * subject and stored copy. The outbox folder is the one this server writes (MESH_EMAIL_OUTBOX_DIR).
 */
export async function eraseRecipientData(
  deps: { db: Database; now: () => Date; outboxDir?: string | undefined },
  req: EraseRecipientDataRequest,
): Promise<EraseRecipientDataResponse> {
  checkContract(EraseRecipientDataRequestSchema, req);
  const s = `"${deps.db.schema}"`;
  const normalized = [...new Set(req.addresses.map(normalizeAddress))];
  const addresses = JSON.stringify(normalized);
  const related = JSON.stringify(req.relatedRequestIds);
  const list = `(select jsonb_array_elements_text(?::jsonb))`;
  const relatedList = `(select (jsonb_array_elements_text(?::jsonb))::uuid)`;
  // The files first (outside the transaction: file system work holds no row locks).
  await deleteOutboxCopies(deps.db, deps.outboxDir, "email_message", `recipient in ${list}`, [addresses]);
  await deleteOutboxCopies(deps.db, deps.outboxDir, "email_message", `request_id in ${relatedList}`, [related]);
  await deleteOutboxCopies(deps.db, deps.outboxDir, "email_newsletter_send", `recipient in ${list}`, [addresses]);
  return transaction(deps.db, async (em) => {
    const conn = em.getConnection();
    const tx = em.getTransactionContext();
    const count = (r: unknown) => (r as { affectedRows?: number }).affectedRows ?? 0;
    const hashed = `encode(sha256(convert_to(recipient, 'UTF8')), 'hex')`;
    const messages = count(
      await conn.execute(
        `update ${s}."email_message" set recipient = ${hashed}, subject = '', accepted = '[]', rejected = '[]',
           smtp_response = '', error = '', suppression_reason = '', outbox_file = '', updated_at = ? where recipient in ${list}`,
        [deps.now(), addresses],
        "run",
        tx,
      ),
    );
    const relatedMessages = count(
      await conn.execute(
        `update ${s}."email_message" set subject = '', outbox_file = '', updated_at = ? where request_id in ${relatedList}`,
        [deps.now(), related],
        "run",
        tx,
      ),
    );
    const sends = count(
      await conn.execute(
        `update ${s}."email_newsletter_send" set recipient = ${hashed}, address = ${hashed}, name = '', fields = '{}',
           smtp_response = '', error = '', updated_at = ? where recipient in ${list}`,
        [deps.now(), addresses],
        "run",
        tx,
      ),
    );
    // Follow-up enrollments (agents/email/sequences): anonymised, and an active one stops.
    const [followUps] = await conn.execute<{ t: string | null }[]>(
      `select to_regclass('${deps.db.schema}.email_follow_up_enrollment')::text as t`,
      [],
      "all",
      tx,
    );
    if (followUps?.t) {
      await conn.execute(
        `update ${s}."email_follow_up_enrollment" set address = ${hashed}, recipient = ${hashed}, name = '', fields = '{}',
           state = case when state = 'active' then 'suppressed' else state end, next_due_at = null, updated_at = ?
         where recipient in ${list}`,
        [deps.now(), addresses],
        "run",
        tx,
      );
    }
    const suppressed = await conn.execute<{ address: string }[]>(
      `delete from ${s}."email_suppression" where address in ${list} returning address`,
      [addresses],
      "all",
      tx,
    );
    const wasSuppressed = new Set(suppressed.map((r) => r.address));
    await conn.execute(
      `insert into ${s}."email_suppression_marker" (address_sha256, reason, created_at)
       select r.h, r.reason, ? from jsonb_to_recordset(?::jsonb) as r(h text, reason text)
       on conflict (address_sha256) do nothing`,
      [
        deps.now(),
        JSON.stringify(
          normalized.map((a) => ({
            h: addressSha256(a),
            reason: wasSuppressed.has(a) ? "suppressed before erasure" : "erased",
          })),
        ),
      ],
      "run",
      tx,
    );
    // Stored results of this agent's calls that carry an address (SendEmail answers, reports).
    for (const a of normalized) {
      await conn.execute(
        `delete from ${s}."idempotency_record" where procedure like 'mesh.email.%' and position(convert_to(?, 'UTF8') in response) > 0`,
        [a],
        "run",
        tx,
      );
    }
    return create(EraseRecipientDataResponseSchema, {
      messages,
      newsletterSends: sends,
      suppressions: suppressed.length,
      relatedMessages,
    });
  });
}
