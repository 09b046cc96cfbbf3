/**
 * IngestMailFeedback: a bounce (DSN) or complaint (ARF) report feeds the suppression list.
 * Permanent failures (`Action: failed` with a 5.x.x status) and complaints (any Feedback-Type but
 * `not-spam`) suppress the address; the send row of the original message, found by its
 * Message-ID, is marked bounced or complained so the campaign's report counts it. Ingesting the
 * same report twice changes nothing more.
 */
import { create } from "@bufbuild/protobuf";
import {
  FeedbackKind,
  type IngestMailFeedbackRequest,
  IngestMailFeedbackRequestSchema,
  type IngestMailFeedbackResponse,
  IngestMailFeedbackResponseSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, transaction } from "../../../lib/db/index.ts";
import { checkContract, InvalidInputError } from "../../../lib/errors/index.ts";
import { FeedbackFormatError, type ParsedFeedback, parseFeedback } from "../newsletter/feedback.ts";

/** Reads the report, then applies it. */
export async function ingestMailFeedback(
  deps: { db: Database; now: () => Date },
  req: IngestMailFeedbackRequest,
): Promise<IngestMailFeedbackResponse> {
  checkContract(IngestMailFeedbackRequestSchema, req);
  let report: ParsedFeedback;
  try {
    report = await parseFeedback(Buffer.from(req.rawMessage));
  } catch (err) {
    if (err instanceof FeedbackFormatError) throw new InvalidInputError("raw_message", err.message);
    throw err;
  }
  const s = deps.db.schema;
  const complaint = report.kind === "feedback-report";
  return transaction(deps.db, async (em) => {
    const conn = em.getConnection();
    const tx = em.getTransactionContext();
    const now = deps.now();
    const [send] = report.originalMessageId
      ? await conn.execute<{ id: string; campaign_id: string; recipient: string }[]>(
          `select id, campaign_id, recipient from "${s}"."email_newsletter_send" where message_id = ? limit 1`,
          [report.originalMessageId],
          "all",
          tx,
        )
      : [];
    const recipients = [];
    for (const r of report.recipients) {
      const address = r.address || send?.recipient || report.originalTo;
      const permanent = complaint ? r.action !== "not-spam" : r.action === "failed" && r.status.startsWith("5.");
      if (permanent && address !== "") {
        const reason = complaint
          ? `complaint (${r.action})`
          : `hard bounce ${r.status}${r.diagnostic ? `: ${r.diagnostic}` : ""}`;
        await conn.execute(
          `insert into "${s}"."email_suppression" (address, reason, created_at) values (?, ?, ?) on conflict (address) do nothing`,
          [address, reason.slice(0, 200), now],
          "run",
          tx,
        );
        if (send !== undefined && send.recipient === address) {
          await conn.execute(
            `update "${s}"."email_newsletter_send" set ${complaint ? "complained_at = coalesce(complained_at, ?)" : "bounced_at = coalesce(bounced_at, ?)"}, updated_at = ? where id = ?`,
            [now, now, send.id],
            "run",
            tx,
          );
        }
      }
      recipients.push({
        address,
        action: r.action,
        status: r.status,
        diagnostic: r.diagnostic,
        suppressed: permanent && address !== "",
      });
    }
    return create(IngestMailFeedbackResponseSchema, {
      kind: complaint ? FeedbackKind.COMPLAINT : FeedbackKind.DELIVERY_STATUS,
      originalMessageId: report.originalMessageId,
      campaignId: send?.campaign_id ?? "",
      recipients,
    });
  });
}
