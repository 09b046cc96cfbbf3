/**
 * The CRM's copy of the emails sent to its contacts: the Email agent announces every message it
 * handed to its transport (`mesh.email.v1.MessageSent`, through its outbox), and the CRM keeps the
 * facts the timeline and data-subject requests show — Message-ID, subject, send path, status and
 * time, never the body — in `crm_email_message`. The CRM never reads the Email agent's tables.
 *
 * Attribution: the event's contact id when it names a stored contact, else the contact holding the
 * recipient address (its own email, then an address stitched to its identity set); either way the
 * end of the `merged_into` chain, so mail to a merged duplicate lands on its survivor. A recipient
 * the CRM does not know, or a contact that was erased, stores nothing: the copy exists for the
 * CRM's own contacts only. One row per Message-ID (`on conflict do nothing`), so a redelivered or
 * republished event changes nothing.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type EmailMessageRecord, EmailMessageRecordSchema } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { EmailMessageKind, MessageSent } from "../../../gen/mesh/email/v1/email_events_pb.ts";
import type { EmailStatus } from "../../../gen/mesh/email/v1/email_service_pb.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import type { CrmEmailMessageRow } from "./entities.ts";

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Guards against a cycle in `merged_into` (which no writer creates), as the read API does. */
const maxMergeHops = 32;

/** Trimmed and lower-cased, as the CRM stores addresses. */
function normalizeAddress(address: string): string {
  return address.trim().toLowerCase();
}

/** Why an event stored nothing, or the row it stored. */
export type StoreOutcome =
  | { stored: true; contactId: string }
  | { stored: false; reason: "unknown_recipient" | "erased" | "duplicate" | "invalid" };

async function rows<T>(em: EntityManager, sql: string, params: unknown[]): Promise<T[]> {
  return em.getConnection().execute<T[]>(sql, params, "all", em.getTransactionContext());
}

/** The contact at the end of the `merged_into` chain from `id`, or undefined when no contact has `id`. */
async function survivorOf(db: Database, em: EntityManager, id: string): Promise<string | undefined> {
  const s = `"${db.schema}"`;
  const found = await rows<{ id: string }>(
    em,
    `with recursive chain (id, merged_into_id, hops) as (
       select id, merged_into_id, 0 from ${s}."crm_contact" where id = ?
       union all
       select c.id, c.merged_into_id, chain.hops + 1 from ${s}."crm_contact" c join chain on c.id = chain.merged_into_id
       where chain.hops < ${maxMergeHops})
     select id from chain where merged_into_id is null limit 1`,
    [id],
  );
  return found[0]?.id;
}

/** The contact holding `address`: its own email first, then an address stitched to its identity set. */
async function contactWithAddress(db: Database, em: EntityManager, address: string): Promise<string | undefined> {
  const s = `"${db.schema}"`;
  const found = await rows<{ id: string }>(
    em,
    `(select id, 0 as rank from ${s}."crm_contact" where email = ?)
     union all
     (select t.contact_id as id, 1 as rank from ${s}."crm_identity_node" n join ${s}."crm_identity_set" t on t.id = n.set_id
      where n.kind = 'email' and n.value = ? and t.contact_id is not null)
     order by rank limit 1`,
    [address, address],
  );
  return found[0]?.id;
}

/** Stores the copy of an announced message in the consumer's transaction; see the file comment. */
export async function storeSentMessage(
  db: Database,
  em: EntityManager,
  e: MessageSent,
  now: Date,
): Promise<StoreOutcome> {
  if (e.messageId === "" || e.messageId.length > 255 || e.sentAt === undefined) {
    return { stored: false, reason: "invalid" };
  }
  const givenId = e.contactId.trim().toLowerCase();
  const recipient = normalizeAddress(e.recipient);
  let contactId = uuid.test(givenId) ? await survivorOf(db, em, givenId) : undefined;
  if (contactId === undefined && recipient !== "") {
    const holder = await contactWithAddress(db, em, recipient);
    if (holder !== undefined) contactId = await survivorOf(db, em, holder);
  }
  if (contactId === undefined) return { stored: false, reason: "unknown_recipient" };
  const s = `"${db.schema}"`;
  const erased = await rows<{ one: number }>(
    em,
    `select 1 as one from ${s}."crm_erasure_audit" where contact_id = ? limit 1`,
    [contactId],
  );
  if (erased.length > 0) return { stored: false, reason: "erased" };
  const inserted = await rows<{ id: string }>(
    em,
    `insert into ${s}."crm_email_message"
       (id, message_id, contact_id, recipient, subject, kind, tag, campaign_id, sequence_id, step_index, status, sent_at, recorded_at)
     values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     on conflict (message_id) do nothing returning id`,
    [
      randomUUID(),
      e.messageId,
      contactId,
      recipient.slice(0, 254),
      e.subject.slice(0, 300),
      e.kind,
      e.tag.slice(0, 64),
      e.campaignId.slice(0, 64),
      e.sequenceId.slice(0, 64),
      e.stepIndex,
      e.status,
      timestampDate(e.sentAt),
      now,
    ],
  );
  return inserted.length > 0 ? { stored: true, contactId } : { stored: false, reason: "duplicate" };
}

/** The timeline and export message of a stored copy. */
export function emailRecordFromRow(row: CrmEmailMessageRow): EmailMessageRecord {
  return create(EmailMessageRecordSchema, {
    messageId: row.messageId,
    contactId: row.contactId,
    recipient: row.recipient,
    subject: row.subject,
    kind: row.kind as EmailMessageKind,
    tag: row.tag,
    campaignId: row.campaignId,
    sequenceId: row.sequenceId,
    stepIndex: row.stepIndex,
    status: row.status as EmailStatus,
    sentAt: timestampFromDate(row.sentAt),
  });
}
