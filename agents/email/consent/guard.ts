/**
 * The send guard: the one check every send path of the Email agent makes before a message leaves.
 * An address may receive nothing when it is on the suppression list (unsubscribed through any
 * message, hard-bounced, complained, added by hand), when its erased suppression survives as a
 * hashed marker, or when the CRM's do-not-contact list or consent withdrawal blocks it
 * (`email_do_not_contact`, fed by `crm.consent_changed`).
 *
 * The same rule is available three ways: {@link blockedReason} inside a transaction (SendEmail's
 * claim), {@link blockedJoinSql} inside a claim statement (the newsletter worker), and
 * {@link createSendGuard} for the transport itself ({@link MailTransportOptions.guard}), which
 * checks every message right before it is handed to SMTP or the outbox, whichever path composed it.
 */
import { createHash } from "node:crypto";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { normalizeAddress, type SendGuard } from "../delivery.ts";

/** Hex SHA-256 of a normalised address (as the CRM's events and erased markers name it). */
export function addressSha256(address: string): string {
  return createHash("sha256").update(normalizeAddress(address)).digest("hex");
}

/** SQL for the hex SHA-256 of a normalised-address SQL expression (PostgreSQL ≥ 11 `sha256`). */
const sqlSha256 = (expr: string) => `encode(sha256(convert_to(${expr}, 'UTF8')), 'hex')`;

/** The union of blocking rows for an address expression (`address`) and its hash expression (`hash`). */
function blockingRows(schema: string, address: string, hash: string): string {
  const s = `"${schema}"`;
  return `select reason, 1 as o from ${s}."email_suppression" where address = ${address}
    union all select reason, 2 as o from ${s}."email_suppression_marker" where address_sha256 = ${hash}
    union all select reason, 3 as o from ${s}."email_do_not_contact" where address_sha256 = ${hash} and blocked`;
}

/**
 * A `left join lateral … x on true` clause giving `x.reason` (null when the address may be sent
 * to) for a normalised-address column, for claim statements.
 */
export function blockedJoinSql(schema: string, recipientColumn: string): string {
  return `left join lateral (select b.reason from (${blockingRows(schema, recipientColumn, sqlSha256(recipientColumn))}) b order by b.o limit 1) x on true`;
}

/** Why `address` may receive nothing, or undefined when it may be sent to; in `em`'s transaction. */
export async function blockedReason(em: EntityManager, schema: string, address: string): Promise<string | undefined> {
  const rows = await em
    .getConnection()
    .execute<{ reason: string }[]>(
      `select reason from (${blockingRows(schema, "?", "?")}) b order by o limit 1`,
      [normalizeAddress(address), addressSha256(address), addressSha256(address)],
      "all",
      em.getTransactionContext(),
    );
  return rows[0]?.reason;
}

/** The guard transports check right before sending (a fresh read, outside any transaction). */
export function createSendGuard(db: Database): SendGuard {
  return (address) => blockedReason(db.fork(), db.schema, address);
}
