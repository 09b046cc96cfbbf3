/**
 * Interaction tracking across touchpoints (`crm.interaction_tracking`).
 *
 * Method: every interaction is appended to an append-only log keyed by the producer's event id; a
 * repeated event id writes nothing, emits nothing and answers the stored interaction.
 *
 * Identity stitching is union-find over identities: anonymous visitor ids, normalised emails and
 * contact ids are nodes, and the identities seen together on one interaction are unioned into one
 * set (a person). Sets are stored flattened — every node row points straight at its set, so "find"
 * is one primary-key lookup and a set's members are one indexed query — and union is by size: the
 * smaller sets' nodes are relabelled into the largest one, so a node moves O(log n) times in all.
 * A set has at most one contact. When the union brings a contact to the set (by contact id, by an
 * email of a stored contact, or by creating one for a new email), every earlier interaction of the
 * set's anonymous ids and emails is attributed to it ("stitched").
 *
 * When sets holding two different contacts meet (say a shared anonymous id), they are one person:
 * the older contact (created first; then the smaller id) survives, the others are marked
 * `merged_into` it and their interactions are attributed to it. Their fields are not copied over;
 * survivorship across merged records is the duplicate-merging skill's job.
 *
 * Contact fields of the request fill only empty fields of the resolved contact (attributes per
 * key), or seed a new contact; the interaction's city and region seed a new contact's location
 * when the request names none.
 *
 * Concurrency: the event id and every identity key are locked with transaction-scoped advisory
 * locks in sorted order (so two calls for the same new email cannot both create a contact; the
 * unique index on the normalised email backs this up), and the identity-set rows a call merges
 * are locked FOR UPDATE. A lost race (a deadlock, an optimistic-lock or unique-index conflict)
 * aborts the whole call with ABORTED, to be retried.
 */
import { randomUUID } from "node:crypto";
import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeadlockException, LockMode, LockWaitTimeoutException } from "@mikro-orm/postgresql";
import { GeoPointSchema, PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { InteractionTrackedSchema } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  type Attribute,
  AttributeSchema,
  type Contact,
  type Interaction,
  InteractionSchema,
  type InteractionType,
  type TouchpointChannel,
  type TrackInteractionRequest,
  type TrackInteractionResponse,
  TrackInteractionResponseSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Bus } from "../../../lib/bus/index.ts";
import { enqueueEvent } from "../../../lib/bus/index.ts";
import {
  type Database,
  type EntityManager,
  OptimisticLockError,
  transaction,
  UniqueConstraintViolationException,
} from "../../../lib/db/index.ts";
import { ConflictError, InvalidInputError } from "../../../lib/errors/index.ts";
import {
  CrmContact,
  type CrmContactRow,
  CrmIdentityNode,
  CrmIdentitySet,
  type CrmIdentitySetRow,
  CrmInteraction,
  type CrmInteractionRow,
  type StoredJson,
} from "../entities.ts";
import { InteractionTracked } from "../events.ts";

/** Interactions may be stamped this far ahead of our clock (producer clock skew); later is an error. */
const maxClockSkewMs = 24 * 3600 * 1000;
/** Contact attributes allowed by the contract. */
const maxAttributes = 200;
/** Guards against a cycle in `merged_into` (which the skill never creates). */
const maxMergeHops = 32;
/** Rounds of "lock the sets, check nobody moved our nodes meanwhile" before giving up. */
const maxLockRounds = 8;

/** Dependencies of the skill. */
export interface TrackInteractionDeps {
  /** The operations database. */
  db: Database;
  /** Bus, for the event subject prefix. */
  bus: Bus;
  /** Clock. */
  now: () => Date;
}

type NodeKind = "anonymous" | "email" | "contact";

/** An identity: a union-find node. */
interface IdentityKey {
  kind: NodeKind;
  value: string;
}

/** The request after normalisation and the checks the contract cannot express. */
interface Input {
  eventId: string;
  anonymousId: string;
  email: string;
  contactId: string;
  interaction: Interaction;
  occurredAt: Date;
  contact: Contact | undefined;
  skipContactCreation: boolean;
}

/** Trimmed and lower-cased, as every stored email is. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

const keyString = (k: IdentityKey): string => `${k.kind}:${k.value}`;

function normalizeInput(req: TrackInteractionRequest, now: Date): Input {
  const it = req.interaction;
  if (it === undefined) throw new InvalidInputError("interaction", "is required");
  const eventId = it.eventId.trim();
  if (eventId === "") throw new InvalidInputError("interaction.event_id", "is required and must not be blank");
  const anonymousId = it.anonymousId.trim();
  if (it.anonymousId !== "" && anonymousId === "") {
    throw new InvalidInputError("interaction.anonymous_id", "must not be blank");
  }
  const email = normalizeEmail(it.email);
  const contactEmail = normalizeEmail(req.contact?.email ?? "");
  if (email !== "" && contactEmail !== "" && email !== contactEmail) {
    throw new InvalidInputError(
      "contact.email",
      "differs from interaction.email; send the email the person identified with in interaction.email only",
    );
  }
  const contactId = it.contactId.toLowerCase();
  const givenContactId = (req.contact?.id ?? "").toLowerCase();
  if (contactId !== "" && givenContactId !== "" && contactId !== givenContactId) {
    throw new InvalidInputError("contact.id", "differs from interaction.contact_id");
  }
  const identity = { anonymousId, email: email || contactEmail, contactId: contactId || givenContactId };
  if (identity.anonymousId === "" && identity.email === "" && identity.contactId === "") {
    throw new InvalidInputError("interaction", "needs an anonymous_id, contact_id or email");
  }
  if (it.occurredAt === undefined) throw new InvalidInputError("interaction.occurred_at", "is required");
  const occurredAt = timestampDate(it.occurredAt);
  if (occurredAt.getTime() > now.getTime() + maxClockSkewMs) {
    throw new InvalidInputError("interaction.occurred_at", "is more than 24 hours ahead of the CRM's clock");
  }
  return {
    eventId,
    ...identity,
    interaction: it,
    occurredAt,
    contact: req.contact,
    skipContactCreation: req.skipContactCreation,
  };
}

/** Runs interaction tracking on a validated request. */
export async function trackInteraction(
  deps: TrackInteractionDeps,
  req: TrackInteractionRequest,
): Promise<TrackInteractionResponse> {
  // Everything the request alone can tell is checked before the transaction: nothing to undo.
  const input = normalizeInput(req, deps.now());
  try {
    return await transaction(deps.db, (em) => track(deps, em, input));
  } catch (err) {
    if (
      err instanceof DeadlockException ||
      err instanceof LockWaitTimeoutException ||
      err instanceof OptimisticLockError ||
      err instanceof UniqueConstraintViolationException
    ) {
      throw new ConflictError("a concurrent call changed the same identities; retry the call", { cause: err });
    }
    throw err;
  }
}

/** Takes transaction-scoped advisory locks on `keys`, in the order given. */
async function lockKeys(em: EntityManager, keys: readonly string[]): Promise<void> {
  for (const k of keys) {
    await em.execute("select pg_advisory_xact_lock(hashtextextended(?, 0))", [`crm.identity:${k}`]);
  }
}

/** Follows `merged_into` to the contact that survived. */
async function survivorOf(em: EntityManager, contact: CrmContactRow): Promise<CrmContactRow> {
  let c = contact;
  for (let hops = 0; c.mergedInto !== null && c.mergedInto !== undefined; hops++) {
    if (hops >= maxMergeHops) throw new Error(`merged_into chain from contact ${contact.id} is too long`);
    c = await em.findOneOrFail(CrmContact, { id: c.mergedInto });
  }
  return c;
}

/** The request's identities plus the contacts they name (resolved to survivors). */
async function resolveIdentities(
  em: EntityManager,
  input: Input,
): Promise<{ keys: IdentityKey[]; contacts: CrmContactRow[]; emailTaken: boolean }> {
  const keys: IdentityKey[] = [];
  const contacts = new Map<string, CrmContactRow>();
  let emailTaken = false;
  if (input.anonymousId !== "") keys.push({ kind: "anonymous", value: input.anonymousId });
  if (input.email !== "") keys.push({ kind: "email", value: input.email });
  if (input.contactId !== "") {
    keys.push({ kind: "contact", value: input.contactId });
    const given = await em.findOne(CrmContact, { id: input.contactId }, { refresh: true });
    if (given === null) throw new InvalidInputError("interaction.contact_id", "no contact has this id");
    const c = await survivorOf(em, given);
    contacts.set(c.id, c);
  }
  if (input.email !== "") {
    // A contact stored by any other path (an import, say) may own the email without a node yet.
    const owner = await em.findOne(CrmContact, { email: input.email }, { refresh: true });
    if (owner !== null) {
      emailTaken = true;
      const c = await survivorOf(em, owner);
      contacts.set(c.id, c);
    }
  }
  for (const id of contacts.keys()) {
    if (!keys.some((k) => k.kind === "contact" && k.value === id)) keys.push({ kind: "contact", value: id });
  }
  return { keys, contacts: [...contacts.values()], emailTaken };
}

/** Current set of each key that has a node. */
async function setsOfKeys(em: EntityManager, keys: readonly IdentityKey[]): Promise<Map<string, string>> {
  const nodes = await em.find(
    CrmIdentityNode,
    { $or: keys.map((k) => ({ kind: k.kind, value: k.value })) },
    { refresh: true },
  );
  return new Map(nodes.map((n) => [keyString(n as IdentityKey), n.set]));
}

/** Locks the identity sets the keys belong to; returns them once no concurrent merge moved a key meanwhile. */
async function lockSets(
  em: EntityManager,
  keys: readonly IdentityKey[],
): Promise<{ sets: CrmIdentitySetRow[]; setOf: Map<string, string> }> {
  let setOf = await setsOfKeys(em, keys);
  for (let round = 0; round < maxLockRounds; round++) {
    const ids = [...new Set(setOf.values())].sort();
    const sets =
      ids.length === 0
        ? []
        : await em.find(
            CrmIdentitySet,
            { id: { $in: ids } },
            { lockMode: LockMode.PESSIMISTIC_WRITE, orderBy: { id: "asc" }, refresh: true },
          );
    // Nodes only leave a set whose row is locked, so if every key is still where it was, it stays.
    const again = await setsOfKeys(em, keys);
    const unmoved = again.size === setOf.size && [...again].every(([k, s]) => setOf.get(k) === s);
    if (sets.length === ids.length && unmoved) return { sets, setOf };
    setOf = again;
  }
  throw new ConflictError("identity sets kept changing under concurrent merges; retry the call");
}

function oldestFirst(a: CrmContactRow, b: CrmContactRow): number {
  return a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function attributesJson(attrs: readonly Attribute[]): StoredJson[] {
  return attrs.map((a) => toJson(AttributeSchema, a) as StoredJson);
}

/** Fills the empty fields of `row` from `from`; true when something changed. */
function fillEmptyFields(row: CrmContactRow, from: Contact, email: string): boolean {
  let changed = false;
  const text = ["givenName", "familyName", "phone", "company", "title", "city", "region", "source"] as const;
  for (const f of text) {
    const v = from[f].trim();
    if (row[f] === "" && v !== "") {
      row[f] = v;
      changed = true;
    }
  }
  if ((row.email === null || row.email === undefined) && email !== "") {
    row.email = email;
    changed = true;
  }
  if ((row.address === null || row.address === undefined) && from.address !== undefined) {
    row.address = toJson(PostalAddressSchema, from.address) as StoredJson;
    changed = true;
  }
  if (row.lifecycleStage === 0 && from.lifecycleStage !== 0) {
    row.lifecycleStage = from.lifecycleStage;
    changed = true;
  }
  const have = new Set(row.attributes.map((a) => (a as { key?: string }).key));
  const missing = from.attributes.filter((a) => !have.has(a.key));
  if (missing.length > 0 && row.attributes.length < maxAttributes) {
    row.attributes = [...row.attributes, ...attributesJson(missing)].slice(0, maxAttributes);
    changed = true;
  }
  return changed;
}

function toInteraction(row: CrmInteractionRow): Interaction {
  return create(InteractionSchema, {
    id: row.id,
    eventId: row.eventId,
    anonymousId: row.anonymousId ?? "",
    contactId: row.contact ?? "",
    email: row.email ?? "",
    type: row.type as InteractionType,
    channel: row.channel as TouchpointChannel,
    url: row.url,
    referrerUrl: row.referrerUrl,
    campaign: row.campaign,
    city: row.city,
    region: row.region,
    ...(row.latitude != null && row.longitude != null
      ? { location: create(GeoPointSchema, { latitude: Number(row.latitude), longitude: Number(row.longitude) }) }
      : {}),
    occurredAt: timestampFromDate(row.occurredAt),
    properties: row.properties.map((p) => fromJson(AttributeSchema, p as JsonValue)),
  });
}

/** Anonymous ids of an identity set, sorted. */
async function anonymousIdsOf(em: EntityManager, setId: string | undefined): Promise<string[]> {
  if (setId === undefined) return [];
  const nodes = await em.find(CrmIdentityNode, { set: setId, kind: "anonymous" }, { orderBy: { value: "asc" } });
  return nodes.map((n) => n.value);
}

/** The answer for an event id already in the log. */
async function duplicateResponse(em: EntityManager, row: CrmInteractionRow): Promise<TrackInteractionResponse> {
  const key: IdentityKey | undefined = row.contact
    ? { kind: "contact", value: row.contact }
    : row.anonymousId
      ? { kind: "anonymous", value: row.anonymousId }
      : row.email
        ? { kind: "email", value: row.email }
        : undefined;
  const setId = key === undefined ? undefined : (await setsOfKeys(em, [key])).get(keyString(key));
  return create(TrackInteractionResponseSchema, {
    interaction: toInteraction(row),
    contactId: row.contact ?? "",
    anonymousIds: await anonymousIdsOf(em, setId),
    duplicateEvent: true,
  });
}

async function track(deps: TrackInteractionDeps, em: EntityManager, input: Input): Promise<TrackInteractionResponse> {
  const now = deps.now();

  // 1. The event id first: a concurrent delivery of the same event waits here, then sees ours.
  await lockKeys(em, [`event:${input.eventId}`]);
  const stored = await em.findOne(CrmInteraction, { eventId: input.eventId }, { refresh: true });
  if (stored !== null) return duplicateResponse(em, stored);

  // 2. Lock every identity key (sorted, so two calls never wait on each other in a cycle). Resolving
  // an email may name a contact whose key was not locked yet: lock it and resolve again.
  const locked = new Set<string>();
  let resolved = await resolveIdentities(em, input);
  for (;;) {
    const fresh = resolved.keys.map(keyString).filter((k) => !locked.has(k));
    if (fresh.length === 0) break;
    fresh.sort();
    await lockKeys(em, fresh);
    for (const k of fresh) locked.add(k);
    resolved = await resolveIdentities(em, input);
  }
  const { keys } = resolved;

  // 3. Union: lock the sets the keys are in, keep the largest, relabel the others into it.
  const { sets, setOf } = await lockSets(em, keys);
  sets.sort((a, b) => b.size - a.size || a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1));
  let target = sets[0];
  let size = target?.size ?? 0;
  if (target === undefined) {
    target = em.create(CrmIdentitySet, { id: randomUUID(), contact: null, size: 0, createdAt: now });
    await em.flush();
  }
  const targetId = target.id;
  const absorbed = sets.slice(1);
  if (absorbed.length > 0) {
    const ids = absorbed.map((s) => s.id);
    await em.nativeUpdate(CrmIdentityNode, { set: { $in: ids } }, { set: targetId });
    await em.nativeDelete(CrmIdentitySet, { id: { $in: ids } });
    for (const s of absorbed) size += s.size;
  }
  const newNodes = keys.filter((k) => !setOf.has(keyString(k)));

  // 4. The set's contact: the contacts the sets and the request bring, the oldest surviving.
  const candidateIds = new Set(resolved.contacts.map((c) => c.id));
  for (const s of sets) if (s.contact) candidateIds.add(s.contact);
  const candidates =
    candidateIds.size === 0 ? [] : await em.find(CrmContact, { id: { $in: [...candidateIds] } }, { refresh: true });
  candidates.sort(oldestFirst);
  let contact = candidates[0];
  const merged = candidates.slice(1);
  let contactCreated = false;
  if (contact === undefined && input.email !== "" && !input.skipContactCreation) {
    const seed = input.contact;
    contact = em.create(CrmContact, {
      id: randomUUID(),
      email: input.email,
      attributes: [],
      createdAt: now,
      updatedAt: now,
    });
    if (seed !== undefined) fillEmptyFields(contact, seed, input.email);
    if (contact.city === "" && contact.region === "") {
      contact.city = input.interaction.city.trim();
      contact.region = input.interaction.region.trim();
    }
    newNodes.push({ kind: "contact", value: contact.id });
    contactCreated = true;
  } else if (contact !== undefined && input.contact !== undefined) {
    // The email goes onto the contact only if nobody else holds it (the unique index).
    if (fillEmptyFields(contact, input.contact, resolved.emailTaken ? "" : input.email)) contact.updatedAt = now;
  }
  for (const m of merged) {
    m.mergedInto = (contact as CrmContactRow).id;
    m.updatedAt = now;
  }
  await em.flush();

  if (newNodes.length > 0) {
    await em.insertMany(
      CrmIdentityNode,
      newNodes.map((k) => ({ kind: k.kind, value: k.value, set: targetId, createdAt: now })),
    );
    size += newNodes.length;
  }
  await em.nativeUpdate(CrmIdentitySet, { id: targetId }, { size, contact: contact?.id ?? null });

  // 5. Stitch: every interaction of the set's identities not yet attributed to the contact.
  let stitched = 0;
  if (contact !== undefined) {
    const members = await em.find(CrmIdentityNode, { set: targetId });
    const anonymous = members.filter((n) => n.kind === "anonymous").map((n) => n.value);
    const emails = members.filter((n) => n.kind === "email").map((n) => n.value);
    const whose = [
      ...(anonymous.length > 0 ? [{ anonymousId: { $in: anonymous } }] : []),
      ...(emails.length > 0 ? [{ email: { $in: emails } }] : []),
      ...(merged.length > 0 ? [{ contact: { $in: merged.map((m) => m.id) } }] : []),
    ];
    if (whose.length > 0) {
      stitched = await em.nativeUpdate(
        CrmInteraction,
        { $and: [{ $or: [{ contact: null }, { contact: { $ne: contact.id } }] }, { $or: whose }] },
        { contact: contact.id },
      );
    }
  }

  // 6. Append the interaction and announce it in the same transaction.
  const it = input.interaction;
  const row = em.create(CrmInteraction, {
    id: randomUUID(),
    eventId: input.eventId,
    anonymousId: input.anonymousId || null,
    email: input.email || null,
    contact: contact?.id ?? null,
    type: it.type,
    channel: it.channel,
    url: it.url,
    referrerUrl: it.referrerUrl,
    campaign: it.campaign,
    city: it.city,
    region: it.region,
    latitude: it.location?.latitude ?? null,
    longitude: it.location?.longitude ?? null,
    occurredAt: input.occurredAt,
    properties: attributesJson(it.properties),
    recordedAt: now,
  });
  enqueueEvent(
    deps.db,
    em,
    deps.bus.prefix,
    InteractionTracked,
    create(InteractionTrackedSchema, {
      interactionId: row.id,
      eventId: row.eventId,
      contactId: contact?.id ?? "",
      anonymousId: input.anonymousId,
      type: it.type,
      channel: it.channel,
      city: it.city,
      region: it.region,
      occurredAt: timestampFromDate(input.occurredAt),
      contactCreated,
      stitchedInteractionCount: stitched,
      mergedContactIds: merged.map((m) => m.id),
    }),
    { msgId: `crm.interaction_tracked.${row.id}` },
  );
  await em.flush();

  return create(TrackInteractionResponseSchema, {
    interaction: toInteraction(row),
    contactId: contact?.id ?? "",
    contactCreated,
    stitched: stitched > 0,
    stitchedInteractionCount: stitched,
    anonymousIds: await anonymousIdsOf(em, targetId),
    duplicateEvent: false,
  });
}
