/**
 * SendNewsletter: queues a stored campaign for recipients. The call only writes rows — one per
 * (campaign, address), unique, so no call, retry or concurrent call queues a recipient twice — and
 * the send worker (newsletter/worker.ts) delivers them. The first call of a campaign with a subject
 * test fixes the test share and starts the test window; recipients outside the test share are
 * `held` until the worker decides the winner.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { LockMode } from "@mikro-orm/postgresql";
import {
  type SendNewsletterRequest,
  SendNewsletterRequestSchema,
  type SendNewsletterResponse,
  SendNewsletterResponseSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, transaction } from "../../../lib/db/index.ts";
import { checkContract, NotFoundError } from "../../../lib/errors/index.ts";
import { normalizeAddress } from "../delivery.ts";
import { EmailNewsletter } from "../entities.ts";
import { assignment } from "../newsletter/worker.ts";

/** Dependencies of the call. */
export interface SendNewsletterDeps {
  readonly db: Database;
  readonly now: () => Date;
  /** Called after the rows are committed, to start a worker round soon. */
  readonly wake?: () => void;
}

/** Queues the recipients; see the file comment. */
export async function sendNewsletter(
  deps: SendNewsletterDeps,
  req: SendNewsletterRequest,
): Promise<SendNewsletterResponse> {
  checkContract(SendNewsletterRequestSchema, req);
  // The first occurrence of an address in the request wins.
  const seen = new Set<string>();
  const recipients = req.recipients.filter((r) => {
    const key = normalizeAddress(r.address);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const res = await transaction(deps.db, async (em) => {
    const s = deps.db.schema;
    const conn = em.getConnection();
    const tx = em.getTransactionContext();
    const now = deps.now();
    // The campaign row orders concurrent calls of one campaign (the test share is fixed once).
    const c = await em.findOne(
      EmailNewsletter,
      { campaignId: req.campaignId },
      { lockMode: LockMode.PESSIMISTIC_WRITE },
    );
    if (c === null)
      throw new NotFoundError(`campaign ${req.campaignId} does not exist; create it with CreateNewsletter`);
    if (c.abState === "draft") {
      const audience = c.abAudienceSize > 0 ? c.abAudienceSize : recipients.length;
      c.abTestFraction = Math.min(1, c.abTestSize / Math.max(1, audience));
      c.abState = "testing";
      c.testStartedAt = now;
      c.testEndsAt = new Date(now.getTime() + c.abTestDurationMs);
      c.updatedAt = now;
      await em.flush();
    }
    const fraction = c.abState === "none" ? 1 : Number(c.abTestFraction ?? 1);
    const domain = c.senderAddress.slice(c.senderAddress.lastIndexOf("@") + 1);
    const suppressed = new Set(
      (
        await conn.execute<{ address: string }[]>(
          `select address from "${s}"."email_suppression" where address in (select jsonb_array_elements_text(?::jsonb))`,
          [JSON.stringify([...seen])],
          "all",
          tx,
        )
      ).map((r) => r.address),
    );
    const rows = recipients.map((r) => {
      const recipient = normalizeAddress(r.address);
      const id = randomUUID();
      let variantId = "";
      let inTest = false;
      let status = "pending";
      if (suppressed.has(recipient)) status = "suppressed";
      if (c.abState === "none") variantId = c.variants[0]?.variantId ?? "";
      else if (c.abState === "decided") variantId = c.winnerVariantId;
      else {
        const a = assignment(c.campaignId, recipient, fraction, c.variants.length);
        inTest = a.inTest;
        if (inTest) variantId = c.variants[a.variant]?.variantId ?? "";
        else if (status === "pending") status = "held";
      }
      return {
        id,
        recipient,
        address: r.address.trim(),
        name: r.name,
        fields: r.fields,
        variant_id: variantId,
        in_test: inTest,
        status,
        message_id: `<${id}@${domain}>`,
        error: status === "suppressed" ? "on the suppression list" : "",
      };
    });
    const inserted = await conn.execute<{ status: string; in_test: boolean }[]>(
      `insert into "${s}"."email_newsletter_send" (id, campaign_id, recipient, address, name, fields, variant_id, in_test, status, message_id, error, next_attempt_at, created_at, updated_at)
       select r.id, ?, r.recipient, r.address, r.name, r.fields, r.variant_id, r.in_test, r.status, r.message_id, r.error, ?, ?, ?
       from jsonb_to_recordset(?::jsonb) as r(id uuid, recipient text, address text, name text, fields jsonb, variant_id text, in_test boolean, status text, message_id text, error text)
       on conflict (campaign_id, recipient) do nothing
       returning status, in_test`,
      [c.campaignId, now, now, now, JSON.stringify(rows)],
      "all",
      tx,
    );
    const count = (f: (r: { status: string; in_test: boolean }) => boolean) => inserted.filter(f).length;
    return create(SendNewsletterResponseSchema, {
      campaignId: c.campaignId,
      queued: count((r) => r.status !== "suppressed"),
      duplicates: req.recipients.length - inserted.length,
      suppressed: count((r) => r.status === "suppressed"),
      inTest: count((r) => r.in_test && r.status !== "suppressed"),
      heldForWinner: count((r) => r.status === "held"),
      testFraction: c.abState === "none" ? 0 : fraction,
      ...(c.testEndsAt ? { testEndsAt: timestampFromDate(c.testEndsAt) } : {}),
    });
  });
  deps.wake?.();
  return res;
}
