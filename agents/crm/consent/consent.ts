/**
 * Consent and the do-not-contact list: the CRM's privacy API (`RecordConsent`, `GetConsent`,
 * `AddDoNotContact`, `RemoveDoNotContact`, `ListDoNotContact`).
 *
 * Method: consent is an append-only log of decisions (channel, granted or withdrawn, source, when
 * the person decided), and the current state of a (contact, channel) is its latest decision by
 * `occurred_at` (ties: the later record), so a decision recorded late never overrides a newer one.
 * No decision on a channel means no restriction from consent; a withdrawal blocks the channel.
 * The do-not-contact list blocks every channel, by contact or by address.
 *
 * Every change publishes `ConsentChanged` through the outbox in the change's transaction. The
 * event names the email addresses it concerns by SHA-256 only (a contact's addresses: its email
 * and every email stitched to its identity set) and which of them may receive no email now,
 * computed from the whole state (email consent, the contact's entry, each address's entry), so a
 * sender applies it without asking back.
 */
import { createHash, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConsentChangedSchema, ConsentChangeKind } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  type AddDoNotContactRequest,
  AddDoNotContactRequestSchema,
  type AddDoNotContactResponse,
  AddDoNotContactResponseSchema,
  type ChannelConsent,
  ChannelConsentSchema,
  ConsentChannel,
  type ConsentRecord,
  ConsentRecordSchema,
  ConsentState,
  type DoNotContactEntry,
  DoNotContactEntrySchema,
  type GetConsentRequest,
  GetConsentRequestSchema,
  type GetConsentResponse,
  GetConsentResponseSchema,
  type ListDoNotContactRequest,
  ListDoNotContactRequestSchema,
  type ListDoNotContactResponse,
  ListDoNotContactResponseSchema,
  type RecordConsentRequest,
  RecordConsentRequestSchema,
  type RecordConsentResponse,
  RecordConsentResponseSchema,
  type RemoveDoNotContactRequest,
  RemoveDoNotContactRequestSchema,
  type RemoveDoNotContactResponse,
  RemoveDoNotContactResponseSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Bus, enqueueEvent } from "../../../lib/bus/index.ts";
import { type Database, type EntityManager, transaction } from "../../../lib/db/index.ts";
import { checkContract, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { decodePageToken, encodePageToken, pageSizeOf } from "../contacts/page-token.ts";
import { CrmContact } from "../entities.ts";
import { ConsentChanged } from "../events.ts";
import {
  CrmConsent,
  CrmConsentRecord,
  type CrmConsentRecordRow,
  type CrmConsentRow,
  CrmDoNotContact,
  type CrmDoNotContactRow,
} from "./entities.ts";

/** Dependencies of the consent API. */
export interface ConsentDeps {
  /** The operations database. */
  readonly db: Database;
  /** The bus, for the event subject prefix. */
  readonly bus: Pick<Bus, "prefix">;
  /** Clock. */
  readonly now: () => Date;
}

/** The form addresses are stored and compared in. */
export function normalizeEmail(address: string): string {
  return address.trim().toLowerCase();
}

/** Hex SHA-256 of a normalised address: how events and erased markers name an address. */
export function emailSha256(address: string): string {
  return createHash("sha256").update(normalizeEmail(address)).digest("hex");
}

/** Every email address known for a contact: its own and those stitched to its identity set. */
export async function addressesOf(db: Database, em: EntityManager, contactId: string): Promise<string[]> {
  const s = `"${db.schema}"`;
  const rows = await em.getConnection().execute<{ email: string }[]>(
    `select email from ${s}."crm_contact" where id = ? and email is not null
     union select n.value as email from ${s}."crm_identity_node" n join ${s}."crm_identity_set" t on t.id = n.set_id
     where t.contact_id = ? and n.kind = 'email'
     union select c.email from ${s}."crm_contact" c where c.merged_into_id = ? and c.email is not null`,
    [contactId, contactId, contactId],
    "all",
    em.getTransactionContext(),
  );
  return [...new Set(rows.map((r) => normalizeEmail(r.email)))].sort();
}

/** True when a contact may be emailed as far as its own state goes (consent and its entry). */
async function contactAllowsEmail(em: EntityManager, contactId: string): Promise<boolean> {
  const consent = await em.findOne(CrmConsent, { contactId, channel: ConsentChannel.EMAIL });
  if (consent !== null && consent.state === ConsentState.WITHDRAWN) return false;
  return (await em.count(CrmDoNotContact, { contactId })) === 0;
}

/** Contacts whose email (or a stitched email) is `address`. */
async function contactsWithAddress(db: Database, em: EntityManager, address: string): Promise<string[]> {
  const s = `"${db.schema}"`;
  const rows = await em.getConnection().execute<{ id: string }[]>(
    `select id from ${s}."crm_contact" where email = ?
     union select t.contact_id as id from ${s}."crm_identity_node" n join ${s}."crm_identity_set" t on t.id = n.set_id
     where n.kind = 'email' and n.value = ? and t.contact_id is not null`,
    [address, address],
    "all",
    em.getTransactionContext(),
  );
  return rows.map((r) => r.id);
}

/** Whether an address may be emailed: no entry for it, and every contact holding it allows email. */
async function addressAllowsEmail(db: Database, em: EntityManager, address: string): Promise<boolean> {
  if ((await em.count(CrmDoNotContact, { email: address })) > 0) return false;
  for (const id of await contactsWithAddress(db, em, address)) {
    if (!(await contactAllowsEmail(em, id))) return false;
  }
  return true;
}

/** Enqueues `ConsentChanged` for `addresses`, with the ones blocked now. */
async function publishChange(
  deps: ConsentDeps,
  em: EntityManager,
  change: { kind: ConsentChangeKind; contactId: string; channel: ConsentChannel; addresses: readonly string[] },
): Promise<void> {
  const blocked: string[] = [];
  for (const a of change.addresses) {
    if (!(await addressAllowsEmail(deps.db, em, a))) blocked.push(emailSha256(a));
  }
  const changeId = randomUUID();
  enqueueEvent(
    deps.db,
    em,
    deps.bus.prefix,
    ConsentChanged,
    create(ConsentChangedSchema, {
      changeId,
      kind: change.kind,
      contactId: change.contactId,
      channel: change.channel,
      emailSha256: change.addresses.map(emailSha256),
      blockedEmailSha256: blocked,
      changedAt: timestampFromDate(deps.now()),
    }),
    { msgId: changeId },
  );
}

/**
 * Re-announces a blocked contact's addresses (DNC entry or email consent withdrawn), so an address
 * stitched to the contact after the change is blocked too; nothing for a contact that may be emailed.
 */
export async function announceIfBlocked(deps: ConsentDeps, em: EntityManager, contactId: string): Promise<boolean> {
  if (await contactAllowsEmail(em, contactId)) return false;
  await publishChange(deps, em, {
    kind: ConsentChangeKind.DO_NOT_CONTACT_ADDED,
    contactId,
    channel: ConsentChannel.UNSPECIFIED,
    addresses: await addressesOf(deps.db, em, contactId),
  });
  return true;
}

/** A stored record as its message. */
export function consentRecordFromRow(row: CrmConsentRecordRow): ConsentRecord {
  return create(ConsentRecordSchema, {
    id: row.id,
    contactId: row.contactId,
    channel: row.channel as ConsentChannel,
    state: row.state as ConsentState,
    source: row.source,
    occurredAt: timestampFromDate(row.occurredAt),
    recordedAt: timestampFromDate(row.recordedAt),
  });
}

/** A current consent as its message. */
export function channelConsentFromRow(row: CrmConsentRow): ChannelConsent {
  return create(ChannelConsentSchema, {
    channel: row.channel as ConsentChannel,
    state: row.state as ConsentState,
    source: row.source,
    occurredAt: timestampFromDate(row.occurredAt),
  });
}

/** A do-not-contact entry as its message. */
export function doNotContactFromRow(row: CrmDoNotContactRow): DoNotContactEntry {
  return create(DoNotContactEntrySchema, {
    id: row.id,
    email: row.email ?? "",
    contactId: row.contactId ?? "",
    reason: row.reason,
    source: row.source,
    createdAt: timestampFromDate(row.createdAt),
  });
}

async function requireContact(em: EntityManager, contactId: string, field: string): Promise<void> {
  if ((await em.count(CrmContact, { id: contactId })) === 0) {
    throw new NotFoundError(`${field}: no contact has id ${contactId}`);
  }
}

/** RecordConsent: appends a decision and moves the channel's current state when it is the latest. */
export async function recordConsent(deps: ConsentDeps, req: RecordConsentRequest): Promise<RecordConsentResponse> {
  checkContract(RecordConsentRequestSchema, req);
  const contactId = req.contactId.toLowerCase();
  const occurredAt = timestampDate(req.occurredAt as NonNullable<RecordConsentRequest["occurredAt"]>);
  return transaction(deps.db, async (em) => {
    const existing = await em.findOne(CrmConsentRecord, { requestId: req.requestId });
    if (existing !== null) {
      if (
        existing.contactId !== contactId ||
        existing.channel !== req.channel ||
        existing.state !== req.state ||
        existing.source !== req.source ||
        existing.occurredAt.getTime() !== occurredAt.getTime()
      ) {
        throw new InvalidInputError("request_id", "was already used for another consent record");
      }
      const current = await em.findOneOrFail(CrmConsent, { contactId, channel: req.channel });
      return create(RecordConsentResponseSchema, {
        record: consentRecordFromRow(existing),
        current: channelConsentFromRow(current),
      });
    }
    await requireContact(em, contactId, "contact_id");
    const now = deps.now();
    const record = em.create(CrmConsentRecord, {
      id: randomUUID(),
      requestId: req.requestId,
      contactId,
      channel: req.channel,
      state: req.state,
      source: req.source,
      occurredAt,
      recordedAt: now,
    });
    // The channel's row is what concurrent decisions on it serialise on.
    await em.getConnection().execute(
      `insert into "${deps.db.schema}"."crm_consent" (contact_id, channel, state, source, occurred_at, record_id, updated_at)
       values (?, ?, ?, ?, ?, ?, ?)
       on conflict (contact_id, channel) do update set state = excluded.state, source = excluded.source,
         occurred_at = excluded.occurred_at, record_id = excluded.record_id, updated_at = excluded.updated_at
       where "crm_consent".occurred_at <= excluded.occurred_at`,
      [contactId, req.channel, req.state, req.source, occurredAt, record.id, now],
      "run",
      em.getTransactionContext(),
    );
    await em.flush();
    const current = await em.findOneOrFail(CrmConsent, { contactId, channel: req.channel }, { refresh: true });
    if (current.recordId === record.id) {
      await publishChange(deps, em, {
        kind: ConsentChangeKind.CONSENT,
        contactId,
        channel: req.channel,
        addresses: await addressesOf(deps.db, em, contactId),
      });
    }
    return create(RecordConsentResponseSchema, {
      record: consentRecordFromRow(record),
      current: channelConsentFromRow(current),
    });
  });
}

/** GetConsent: current consent per channel, do-not-contact, and a page of the history (newest first). */
export async function getConsent(deps: Pick<ConsentDeps, "db">, req: GetConsentRequest): Promise<GetConsentResponse> {
  checkContract(GetConsentRequestSchema, req);
  const contactId = req.contactId.toLowerCase();
  const size = pageSizeOf(req.pageSize);
  const scope = `consent:${contactId}`;
  const before = decodePageToken(scope, req.pageToken);
  const em = deps.db.fork();
  await requireContact(em, contactId, "contact_id");
  const channels = await em.find(CrmConsent, { contactId }, { orderBy: { channel: "asc" } });
  const s = `"${deps.db.schema}"`;
  const keys = await em.getConnection().execute<{ id: string; at: string }[]>(
    `select id, recorded_at::text as at from ${s}."crm_consent_record" where contact_id = ?
     ${before === undefined ? "" : "and (recorded_at, id) < (?::timestamptz, ?::uuid)"}
     order by recorded_at desc, id desc limit ?`,
    before === undefined ? [contactId, size + 1] : [contactId, before.at, before.id, size + 1],
    "all",
  );
  const page = keys.slice(0, size);
  const rows = page.length === 0 ? [] : await em.find(CrmConsentRecord, { id: { $in: page.map((k) => k.id) } });
  const byId = new Map(rows.map((r) => [r.id, r]));
  const last = page.at(-1);
  const addresses = await addressesOf(deps.db, em, contactId);
  const blocked =
    (await em.count(CrmDoNotContact, { contactId })) > 0 ||
    (addresses.length > 0 && (await em.count(CrmDoNotContact, { email: { $in: addresses } })) > 0);
  return create(GetConsentResponseSchema, {
    contactId,
    channels: channels.map(channelConsentFromRow),
    doNotContact: blocked,
    history: page.map((k) => consentRecordFromRow(byId.get(k.id) as CrmConsentRecordRow)),
    nextPageToken: keys.length > size && last !== undefined ? encodePageToken(scope, last) : "",
  });
}

type Target = { email: string; contactId?: undefined } | { contactId: string; email?: undefined };

function targetOf(req: AddDoNotContactRequest | RemoveDoNotContactRequest): Target {
  if (req.target.case === "email") return { email: normalizeEmail(req.target.value) };
  if (req.target.case === "contactId") return { contactId: req.target.value.toLowerCase() };
  throw new InvalidInputError("target", "name an email or a contact_id");
}

/** AddDoNotContact: lists an address or a contact (an existing entry is returned as is). */
export async function addDoNotContact(
  deps: ConsentDeps,
  req: AddDoNotContactRequest,
): Promise<AddDoNotContactResponse> {
  checkContract(AddDoNotContactRequestSchema, req);
  const target = targetOf(req);
  return transaction(deps.db, async (em) => {
    if (target.contactId !== undefined) await requireContact(em, target.contactId, "contact_id");
    const where = target.email !== undefined ? { email: target.email } : { contactId: target.contactId };
    const existing = await em.findOne(CrmDoNotContact, where);
    if (existing !== null) return create(AddDoNotContactResponseSchema, { entry: doNotContactFromRow(existing) });
    const row = em.create(CrmDoNotContact, {
      id: randomUUID(),
      email: target.email ?? null,
      contactId: target.contactId ?? null,
      emailSha256: target.email === undefined ? null : emailSha256(target.email),
      reason: req.reason,
      source: req.source,
      createdAt: deps.now(),
    });
    // Two calls listing the same target: the unique index makes the second wait, then fail; the
    // idempotency layer's transaction is then retried by the caller (ABORTED).
    await em.flush();
    await publishChange(deps, em, {
      kind: ConsentChangeKind.DO_NOT_CONTACT_ADDED,
      contactId: target.contactId ?? "",
      channel: ConsentChannel.UNSPECIFIED,
      addresses:
        target.email !== undefined ? [target.email] : await addressesOf(deps.db, em, target.contactId as string),
    });
    return create(AddDoNotContactResponseSchema, { entry: doNotContactFromRow(row), created: true });
  });
}

/** RemoveDoNotContact: unlists an address or a contact (nothing to remove changes nothing). */
export async function removeDoNotContact(
  deps: ConsentDeps,
  req: RemoveDoNotContactRequest,
): Promise<RemoveDoNotContactResponse> {
  checkContract(RemoveDoNotContactRequestSchema, req);
  const target = targetOf(req);
  return transaction(deps.db, async (em) => {
    const where = target.email !== undefined ? { email: target.email } : { contactId: target.contactId };
    const existing = await em.findOne(CrmDoNotContact, where);
    if (existing === null) return create(RemoveDoNotContactResponseSchema, { removed: false });
    em.remove(existing);
    await em.flush();
    await publishChange(deps, em, {
      kind: ConsentChangeKind.DO_NOT_CONTACT_REMOVED,
      contactId: target.contactId ?? "",
      channel: ConsentChannel.UNSPECIFIED,
      addresses:
        target.email !== undefined ? [target.email] : await addressesOf(deps.db, em, target.contactId as string),
    });
    return create(RemoveDoNotContactResponseSchema, { removed: true });
  });
}

/** ListDoNotContact: a keyset page of the list, oldest first. */
export async function listDoNotContact(
  deps: Pick<ConsentDeps, "db">,
  req: ListDoNotContactRequest,
): Promise<ListDoNotContactResponse> {
  checkContract(ListDoNotContactRequestSchema, req);
  const size = pageSizeOf(req.pageSize);
  const after = decodePageToken("do-not-contact", req.pageToken);
  const em = deps.db.fork();
  const keys = await em.getConnection().execute<{ id: string; at: string }[]>(
    `select id, created_at::text as at from "${deps.db.schema}"."crm_do_not_contact"
     ${after === undefined ? "" : "where (created_at, id) > (?::timestamptz, ?::uuid)"}
     order by created_at, id limit ?`,
    after === undefined ? [size + 1] : [after.at, after.id, size + 1],
    "all",
  );
  const page = keys.slice(0, size);
  const rows = page.length === 0 ? [] : await em.find(CrmDoNotContact, { id: { $in: page.map((k) => k.id) } });
  const byId = new Map(rows.map((r) => [r.id, r]));
  const last = page.at(-1);
  return create(ListDoNotContactResponseSchema, {
    entries: page.map((k) => doNotContactFromRow(byId.get(k.id) as CrmDoNotContactRow)),
    nextPageToken: keys.length > size && last !== undefined ? encodePageToken("do-not-contact", last) : "",
  });
}
