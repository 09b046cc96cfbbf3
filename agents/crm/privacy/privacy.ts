/**
 * Data-subject requests: `ExportContactData` (access) and `EraseContact` (erasure).
 *
 * Export gathers every CRM row about a contact and asks the Email agent, through its generated
 * client, for what it holds about the contact's addresses.
 *
 * Erasure, in order (each step is safe to repeat, so a retried call completes a failed one):
 *
 * 1. the Email agent erases its data for the contact's addresses (EraseRecipientData, with request
 *    ids derived from this call's, so a retry is one erasure);
 * 2. one transaction anonymises or deletes the CRM rows: the contact (and contacts merged into it)
 *    becomes a blank tombstone keeping its id, so deals and stage history stay consistent for
 *    forecasting; appointments lose the person's attendee entries, iTIP texts, invitations and
 *    stored calendars (appointments/privacy.ts); the segment membership history and the copies of
 *    the emails sent to the person (`crm_email_message`) go, and so do the audit rows of merges
 *    the person's records took part in (they hold the records as they were);
 *    interactions lose every personal field (email, anonymous id, place, URLs,
 *    properties) and keep type, channel and time; identity nodes and sets, consent, enrichment
 *    cache entries (by SHA-256 of the email) go; do-not-contact entries become SHA-256 markers and
 *    every address of the person gets one, so they are not contacted again; deal names and
 *    attributes are cleared; stored call results and unpublished outbox rows of this schema that
 *    contain one of the person's identifiers are deleted; `ContactErased` (ids only) is enqueued
 *    and the audit row written;
 * 3. stored event messages that contain one of the person's identifiers (addresses, phone,
 *    anonymous ids, contact ids) are deleted from the events and dead-letter streams with
 *    JetStream's secure delete (the message is overwritten, not only unlinked).
 *
 * Why deletion from the streams rather than per-contact keys (crypto-shredding): the events that
 * carry personal data today (interaction_tracked with anonymous id and place, data's conversions,
 * pipeline and scoring events with the contact id) are consumed by several agents as plain
 * protobuf; encrypting fields would change every consumer. The streams keep events 7 days (DLQ 30),
 * so a scan of them on erasure is bounded and needs no change to any producer or consumer.
 */
import { createHash, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ContactErasedSchema } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  AttributeSchema,
  ContactIdentitySchema,
  EnrichmentCacheRecordSchema,
  type EraseContactRequest,
  EraseContactRequestSchema,
  type EraseContactResponse,
  EraseContactResponseSchema,
  type ErasureCounts,
  ErasureCountsSchema,
  type ExportContactDataRequest,
  ExportContactDataRequestSchema,
  type ExportContactDataResponse,
  ExportContactDataResponseSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import {
  EmailService,
  type ExportRecipientDataResponse,
  ExportRecipientDataResponseSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Bus, enqueueEvent } from "../../../lib/bus/index.ts";
import { type Database, type EntityManager, transaction } from "../../../lib/db/index.ts";
import { checkContract, NotFoundError } from "../../../lib/errors/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { type CallContext, principalKey } from "../../../lib/server/index.ts";
import type { MeshClient } from "../../../lib/transport/index.ts";
import { eraseAppointmentData, exportAppointmentData, invitationsToOthers } from "../appointments/privacy.ts";
import {
  addressesOf,
  channelConsentFromRow,
  consentRecordFromRow,
  doNotContactFromRow,
  emailSha256,
} from "../consent/consent.ts";
import { CrmConsent, CrmConsentRecord, CrmDoNotContact } from "../consent/entities.ts";
import { contactFromRow, interactionFromRow } from "../contacts/records.ts";
import { CrmEmailMessage } from "../emails/entities.ts";
import { emailRecordFromRow } from "../emails/store.ts";
import { CrmEnrichmentCache } from "../enrichment/entities.ts";
import { CrmContact, CrmDeal, CrmDealStageChange, CrmInteraction } from "../entities.ts";
import { ContactErased } from "../events.ts";
import { dealFromRow, stageChangeFromRow } from "../pipeline/records.ts";
import { CrmErasureAudit } from "./entities.ts";

/** Dependencies of the privacy API. */
export interface PrivacyDeps {
  readonly db: Database;
  readonly bus: Bus;
  readonly client: MeshClient;
  readonly now: () => Date;
  readonly log: Logger;
}

/** Most rows of one kind an export returns. */
export const exportLimit = 10_000;
/** Addresses per Email agent call (its contract's bound). */
const addressBatch = 50;
/** Related request ids per EraseRecipientData call (the contract's limit). */
const relatedBatch = 1_000;

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A UUID derived from a request id and a label, so a retried call reuses its downstream request ids. */
function derivedUuid(requestId: string, label: string): string {
  const h = createHash("sha256").update(`${requestId}\u0000${label}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The contact ids of a person: the contact and the contacts merged into it. */
async function personIds(db: Database, em: EntityManager, contactId: string): Promise<string[]> {
  const rows = await em
    .getConnection()
    .execute<{ id: string }[]>(
      `select id from "${db.schema}"."crm_contact" where id = ? or merged_into_id = ?`,
      [contactId, contactId],
      "all",
      em.getTransactionContext(),
    );
  return rows.map((r) => r.id);
}

/** Identities stitched to the contact (anonymous ids, emails, contact ids). */
async function identitiesOf(
  db: Database,
  em: EntityManager,
  contactId: string,
): Promise<{ kind: string; value: string }[]> {
  const s = `"${db.schema}"`;
  return em.getConnection().execute<{ kind: string; value: string }[]>(
    `select n.kind, n.value from ${s}."crm_identity_node" n join ${s}."crm_identity_set" t on t.id = n.set_id
       where t.contact_id = ? order by n.kind, n.value limit ${exportLimit}`,
    [contactId],
    "all",
    em.getTransactionContext(),
  );
}

/** ExportContactData: every row about the contact, and the Email agent's data for its addresses. */
export async function exportContactData(
  deps: Pick<PrivacyDeps, "db" | "client" | "now">,
  req: ExportContactDataRequest,
  ctx?: CallContext,
): Promise<ExportContactDataResponse> {
  checkContract(ExportContactDataRequestSchema, req);
  const contactId = req.contactId.toLowerCase();
  const em = deps.db.fork();
  const contact = await em.findOne(CrmContact, { id: contactId });
  if (contact === null) throw new NotFoundError(`no contact has id ${req.contactId}`);
  const ids = await personIds(deps.db, em, contactId);
  const addresses = await addressesOf(deps.db, em, contactId);
  const interactions = await em.find(
    CrmInteraction,
    { contact: { $in: ids } },
    { orderBy: { occurredAt: "asc", id: "asc" }, limit: exportLimit + 1 },
  );
  const deals = await em.find(
    CrmDeal,
    { contact: { $in: ids } },
    { orderBy: { createdAt: "asc" }, limit: exportLimit },
  );
  const changes = await em.find(
    CrmDealStageChange,
    { contact: { $in: ids } },
    { orderBy: { changedAt: "asc", id: "asc" }, limit: exportLimit },
  );
  const consent = await em.find(CrmConsent, { contactId: { $in: ids } }, { orderBy: { channel: "asc" } });
  const history = await em.find(
    CrmConsentRecord,
    { contactId: { $in: ids } },
    { orderBy: { recordedAt: "asc", id: "asc" }, limit: exportLimit },
  );
  const dnc = await em.find(
    CrmDoNotContact,
    { $or: [{ contactId: { $in: ids } }, { email: { $in: addresses } }] },
    { orderBy: { createdAt: "asc" } },
  );
  const emailCopies = await em.find(
    CrmEmailMessage,
    { contactId: { $in: ids } },
    { orderBy: { sentAt: "asc", id: "asc" }, limit: exportLimit },
  );
  const cache =
    addresses.length === 0
      ? []
      : await em.find(CrmEnrichmentCache, { emailKey: { $in: addresses.map(emailSha256) } }, { limit: exportLimit });
  let email: ExportRecipientDataResponse = create(ExportRecipientDataResponseSchema, {});
  for (const batch of chunks(addresses, addressBatch)) {
    const part = await deps.client
      .agent(EmailService)
      .exportRecipientData({ addresses: batch }, ctx?.signal ? { signal: ctx.signal } : {});
    email = create(ExportRecipientDataResponseSchema, {
      messages: [...email.messages, ...part.messages],
      newsletterSends: [...email.newsletterSends, ...part.newsletterSends],
      suppressions: [...email.suppressions, ...part.suppressions],
    });
  }
  return create(ExportContactDataResponseSchema, {
    contact: contactFromRow(contact),
    identities: (await identitiesOf(deps.db, em, contactId)).map((i) => create(ContactIdentitySchema, i)),
    interactions: interactions.slice(0, exportLimit).map(interactionFromRow),
    interactionsTruncated: interactions.length > exportLimit,
    deals: deals.map(dealFromRow),
    dealStageChanges: changes.map(stageChangeFromRow),
    consent: consent.map(channelConsentFromRow),
    consentHistory: history.map(consentRecordFromRow),
    doNotContact: dnc.map(doNotContactFromRow),
    enrichmentCache: cache.map((c) =>
      create(EnrichmentCacheRecordSchema, {
        provider: c.provider,
        fields: c.fields.map((f) =>
          create(AttributeSchema, {
            key: "field",
            value: { kind: { case: "stringValue", value: JSON.stringify(f) } },
          }),
        ),
        fetchedAt: timestampFromDate(c.fetchedAt),
      }),
    ),
    email,
    exportedAt: timestampFromDate(deps.now()),
    appointments: await exportAppointmentData(em, deps.db.schema, { contactIds: ids, emails: addresses }),
    emailMessages: emailCopies.map(emailRecordFromRow),
  });
}

/**
 * What identifies the person in stored bytes: addresses, phone, anonymous ids and contact ids, as
 * stored and lower-cased (byte searches in the database are exact; the stream scan lower-cases).
 */
function needlesOf(contact: { phone: string }, addresses: string[], identities: { value: string }[], ids: string[]) {
  const all = [...addresses, ...identities.map((i) => i.value), ...ids, contact.phone];
  // Very short values would match unrelated bytes; real identifiers are longer.
  return [...new Set([...all, ...all.map((v) => v.toLowerCase())].filter((v) => v.length >= 6))];
}

/** The person's strings that may appear in free text (appointment summaries, iTIP comments). */
function textNeedlesOf(contact: { givenName: string; familyName: string; phone: string }): string[] {
  const full = `${contact.givenName} ${contact.familyName}`.trim();
  return [full, contact.givenName, contact.familyName, contact.phone].filter((v) => v.trim().length >= 3);
}

/** Secure-deletes the messages of `stream` whose payload contains a needle; returns how many. */
export async function shredStream(
  bus: Bus,
  stream: string,
  needles: readonly string[],
  skipSubject: (subject: string) => boolean,
): Promise<number> {
  if (needles.length === 0) return 0;
  const info = await bus.jsm.streams.info(stream).catch(() => undefined);
  if (info === undefined || info.state.messages === 0) return 0;
  const last = info.state.last_seq;
  const lower = needles.map((n) => n.toLowerCase());
  // An ordered consumer (ephemeral, flow-controlled) reads the stream from its first message.
  const consumer = await bus.js.consumers.get(stream);
  const hits: number[] = [];
  let seen = 0;
  while (seen < last) {
    const batch = await consumer.fetch({ max_messages: 500, expires: 2000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      seen = m.seq;
      if (!skipSubject(m.subject)) {
        const text = Buffer.from(m.data).toString("latin1").toLowerCase();
        if (lower.some((n) => text.includes(n))) hits.push(m.seq);
      }
      if (m.seq >= last) break;
    }
    if (got === 0) break;
  }
  await consumer.delete().catch(() => undefined);
  let deleted = 0;
  for (const seq of hits) {
    // erase = true: the server overwrites the message on disk, not only unlinks it.
    if (await bus.jsm.streams.deleteMessage(stream, seq, true).catch(() => false)) deleted++;
  }
  return deleted;
}

/** EraseContact: see the file comment for the steps. */
export async function eraseContact(
  deps: PrivacyDeps,
  req: EraseContactRequest,
  ctx?: CallContext,
): Promise<EraseContactResponse> {
  checkContract(EraseContactRequestSchema, req);
  const contactId = req.contactId.toLowerCase();
  const s = `"${deps.db.schema}"`;
  const done = await deps.db.fork().findOne(CrmErasureAudit, { requestId: req.requestId });
  if (done !== null) return responseOf(done);
  const read = deps.db.fork();
  const contact = await read.findOne(CrmContact, { id: contactId });
  if (contact === null) throw new NotFoundError(`no contact has id ${req.contactId}`);
  const ids = await personIds(deps.db, read, contactId);
  const addresses = await addressesOf(deps.db, read, contactId);
  const identities = await identitiesOf(deps.db, read, contactId);
  const needles = needlesOf(contact, addresses, identities, ids);

  // 1. The Email agent's copies: of the messages to the person, and of the invitations to others
  //    listing them (read before step 2 anonymises the appointments).
  const counts: ErasureCounts = create(ErasureCountsSchema, {});
  const invitations = await invitationsToOthers(deps.db.fork(), deps.db.schema, {
    contactIds: ids,
    emails: addresses,
  });
  const relatedBatches = chunks(
    invitations.map((i) => i.requestId),
    relatedBatch,
  );
  // The events announcing those invitations (email.message_sent) carry their subject: shredded by
  // Message-ID with the person's own identifiers.
  const eventNeedles = [...needles, ...invitations.map((i) => i.messageId).filter((m) => m !== "")];
  // A person with no address has no mail (an attendee entry always has one, found by contact id).
  const batches =
    addresses.length === 0 ? 0 : Math.max(Math.ceil(addresses.length / addressBatch), relatedBatches.length);
  for (let i = 0; i < batches; i++) {
    const batch = addresses.slice(i * addressBatch, (i + 1) * addressBatch);
    const r = await deps.client.agent(EmailService).eraseRecipientData(
      {
        requestId: derivedUuid(req.requestId, `email-${i}`),
        // The contract wants an address in every request: later ones repeat the first (a no-op).
        addresses: batch.length > 0 ? batch : addresses.slice(0, 1),
        relatedRequestIds: relatedBatches[i] ?? [],
      },
      ctx?.signal ? { signal: ctx.signal } : {},
    );
    counts.emailMessages += r.messages;
    counts.newsletterSends += r.newsletterSends;
    counts.emailSuppressions += r.suppressions;
    counts.emailMessages += r.relatedMessages;
  }

  // 2. The CRM's rows, in one transaction.
  const erasureId = randomUUID();
  const erasedAt = deps.now();
  const caller = ctx?.values.get(principalKey)?.name ?? "";
  const audit = await transaction(deps.db, async (em) => {
    const conn = em.getConnection();
    const tx = em.getTransactionContext();
    const run = async (sql: string, params: unknown[]) =>
      ((await conn.execute(sql, params, "run", tx)) as { affectedRows?: number }).affectedRows ?? 0;
    const idList = JSON.stringify(ids);
    const inIds = `(select (jsonb_array_elements_text(?::jsonb))::uuid)`;
    const hashes = addresses.map(emailSha256);
    // Appointments first: their attendee entries are found by the contact's addresses and ids.
    const appointments = await eraseAppointmentData(
      em,
      deps.db.schema,
      { contactIds: ids, emails: addresses },
      textNeedlesOf(contact),
    );
    counts.appointments = appointments.appointments;
    counts.calendars = appointments.calendars;
    counts.contacts = await run(
      `update ${s}."crm_contact" set email = null, given_name = '', family_name = '', phone = '', company = '', title = '',
         address = null, city = '', region = '', source = '', attributes = '[]', updated_at = ?, version = version + 1
       where id in ${inIds}`,
      [erasedAt, idList],
    );
    counts.interactions = await run(
      `update ${s}."crm_interaction" set email = null, anonymous_id = null, url = '', referrer_url = '', campaign = '',
         city = '', region = '', latitude = null, longitude = null, properties = '[]'
       where contact_id in ${inIds} or email in (select jsonb_array_elements_text(?::jsonb))
         or anonymous_id in (select jsonb_array_elements_text(?::jsonb))`,
      [
        idList,
        JSON.stringify(addresses),
        JSON.stringify(identities.filter((i) => i.kind === "anonymous").map((i) => i.value)),
      ],
    );
    counts.identities = await run(
      `delete from ${s}."crm_identity_node" where set_id in (select id from ${s}."crm_identity_set" where contact_id in ${inIds})`,
      [idList],
    );
    await run(`delete from ${s}."crm_identity_set" where contact_id in ${inIds}`, [idList]);
    counts.deals = await run(`update ${s}."crm_deal" set name = '', attributes = '[]' where contact_id in ${inIds}`, [
      idList,
    ]);
    counts.consentRecords = await run(`delete from ${s}."crm_consent_record" where contact_id in ${inIds}`, [idList]);
    await run(`delete from ${s}."crm_consent" where contact_id in ${inIds}`, [idList]);
    await run(`delete from ${s}."crm_segment_membership_change" where contact_id in ${inIds}`, [idList]);
    // A merge's audit row keeps every member's record as it was (for UnmergeContacts): personal data
    // the append-only trigger forbids rewriting, so the row goes (it fires on update, not delete).
    counts.mergeRecords = await run(
      `delete from ${s}."crm_contact_merge" where survivor_id in ${inIds} or jsonb_exists_any(merged_ids, array(select jsonb_array_elements_text(?::jsonb)))`,
      [idList, idList],
    );
    await run(`delete from ${s}."crm_email_message" where contact_id in ${inIds}`, [idList]);
    counts.doNotContactEntries = await run(
      `delete from ${s}."crm_do_not_contact" where contact_id in ${inIds} or email in (select jsonb_array_elements_text(?::jsonb))
         or email_sha256 in (select jsonb_array_elements_text(?::jsonb))`,
      [idList, JSON.stringify(addresses), JSON.stringify(hashes)],
    );
    // Every address of the person stays blocked, by hash only.
    for (const h of hashes) {
      await run(
        `insert into ${s}."crm_do_not_contact" (id, email_sha256, reason, source, created_at) values (?, ?, 'erased', 'erasure', ?)
         on conflict (email_sha256) do nothing`,
        [randomUUID(), h, erasedAt],
      );
    }
    counts.enrichmentCacheEntries =
      hashes.length === 0
        ? 0
        : await run(
            `delete from ${s}."crm_enrichment_cache" where email_key in (select jsonb_array_elements_text(?::jsonb))`,
            [JSON.stringify(hashes)],
          );
    for (const n of eventNeedles) {
      counts.storedResults += await run(
        `delete from ${s}."idempotency_record" where procedure like 'mesh.crm.%' and position(convert_to(?, 'UTF8') in response) > 0`,
        [n],
      );
      // Not yet published: delete rather than publish and shred.
      await run(
        `delete from ${s}."outbox" where subject not like '%.contact_erased' and position(convert_to(?, 'UTF8') in payload) > 0`,
        [n],
      );
    }
    enqueueEvent(
      deps.db,
      em,
      deps.bus.prefix,
      ContactErased,
      create(ContactErasedSchema, { erasureId, contactId, erasedAt: timestampFromDate(erasedAt) }),
      { msgId: erasureId },
    );
    return em.create(CrmErasureAudit, {
      id: erasureId,
      requestId: req.requestId,
      contactId,
      requestedBy: req.requestedBy,
      caller,
      erasedAt,
      counts: {},
    });
  });

  // 3. Stored event messages (after the commit, so nothing about the person is published later).
  const erasedSubject = deps.bus.eventSubject(ContactErased);
  for (const stream of [deps.bus.streams.events, deps.bus.streams.dlq]) {
    counts.eventMessages += await shredStream(deps.bus, stream, eventNeedles, (subject) => subject === erasedSubject);
  }
  const final = await transaction(deps.db, async (em) => {
    const row = await em.findOneOrFail(CrmErasureAudit, { id: audit.id });
    row.counts = countsJson(counts);
    return row;
  });
  deps.log.info("contact erased", { erasureId, contactId, counts: countsJson(counts) });
  return responseOf(final);
}

/** The counts as stored on the audit row: every field of the message, by its JSON name. */
function countsJson(c: ErasureCounts): Record<string, number> {
  return Object.fromEntries(
    ErasureCountsSchema.fields.map((f) => [f.localName, Number(c[f.localName as keyof ErasureCounts])]),
  );
}

function responseOf(row: { id: string; contactId: string; erasedAt: Date; counts: Record<string, number> }) {
  return create(EraseContactResponseSchema, {
    erasureId: row.id,
    contactId: row.contactId,
    erasedAt: timestampFromDate(row.erasedAt),
    counts: create(ErasureCountsSchema, row.counts),
  });
}
