/**
 * The contact store's side of duplicate merging: stored contacts read in keyset pages for
 * detection, the audited merge of a cluster into its survivor, and its exact reversal.
 *
 * A merge follows identity stitching's representation (skills/track-interaction.ts): the merged
 * contacts keep their rows, marked `merged_into` the survivor; their interactions are attributed to
 * the survivor; their identity sets are unioned into the survivor's (nodes relabelled, absorbed set
 * rows deleted). Unlike stitching, the survivor also takes the golden record's values. Everything
 * the merge changes is written to `crm_contact_merge` first (the members' rows as they were, the
 * interaction ids and identity nodes moved, each with where it came from), in the same transaction,
 * so an unmerge puts back exactly that — interactions attributed to the survivor later stay.
 *
 * Locking: the members' identity keys (`contact:<id>`, `email:<address>`) are taken as
 * transaction-scoped advisory locks in sorted order, as TrackInteraction does, then the contact
 * rows and identity sets FOR UPDATE; a member changed (its `updated_at`) or merged since detection
 * leaves the cluster unmerged.
 */
import { randomUUID } from "node:crypto";
import { create, toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { LockMode } from "@mikro-orm/postgresql";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { ContactsMergedSchema, ContactsUnmergedSchema } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  AttributeSchema,
  type Contact,
  type UnmergeContactsRequest,
  UnmergeContactsRequestSchema,
  type UnmergeContactsResponse,
  UnmergeContactsResponseSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Bus, enqueueEvent } from "../../../lib/bus/index.ts";
import {
  type Database,
  type EntityManager,
  transaction,
  UniqueConstraintViolationException,
} from "../../../lib/db/index.ts";
import { checkContract, FailedPreconditionError, NotFoundError } from "../../../lib/errors/index.ts";
import { type CallContext, principalKey } from "../../../lib/server/index.ts";
import { contactFromRow } from "../contacts/records.ts";
import {
  CrmContact,
  type CrmContactRow,
  CrmIdentityNode,
  CrmIdentitySet,
  CrmInteraction,
  type StoredJson,
} from "../entities.ts";
import { ContactsMerged, ContactsUnmerged } from "../events.ts";
import type { ContactMerger, MergePlan, StoredContactPage, StoredContacts } from "../skills/detect-duplicates.ts";
import { CrmContactMerge, type CrmContactMergeRow } from "./entities.ts";

/** Method recorded for merges found by DetectDuplicates. */
export const linkageMethod = "fellegi-sunter";

/** A contact row as the merge found it (JSON in the audit row). */
interface ContactSnapshot {
  id: string;
  email: string | null;
  givenName: string;
  familyName: string;
  phone: string;
  company: string;
  title: string;
  address: StoredJson;
  city: string;
  region: string;
  source: string;
  lifecycleStage: number;
  attributes: StoredJson[];
  mergedInto: string | null;
  createdAt: string;
  updatedAt: string;
}

/** An interaction re-attributed by a merge, and the contact it was attributed to before. */
interface MovedInteraction {
  id: string;
  from: string;
}

/** An identity set a merge absorbed into the survivor's, and the nodes it moved. */
interface AbsorbedSet {
  id: string;
  contact: string;
  size: number;
  createdAt: string;
  nodes: { kind: string; value: string }[];
}

/** The identity changes of a merge. */
interface MovedIdentities {
  /** The survivor's set (created by the merge when the survivor had none). */
  into: string | null;
  /** True when the merge created `into`. */
  created: boolean;
  absorbed: AbsorbedSet[];
}

function snapshot(row: CrmContactRow): ContactSnapshot {
  return {
    id: row.id,
    email: row.email ?? null,
    givenName: row.givenName,
    familyName: row.familyName,
    phone: row.phone,
    company: row.company,
    title: row.title,
    address: row.address ?? null,
    city: row.city,
    region: row.region,
    source: row.source,
    lifecycleStage: row.lifecycleStage,
    attributes: row.attributes,
    mergedInto: row.mergedInto ?? null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/** Puts a snapshot's values back on its row (the version moves on, so stale writers still fail). */
function restore(row: CrmContactRow, s: ContactSnapshot): void {
  row.email = s.email;
  row.givenName = s.givenName;
  row.familyName = s.familyName;
  row.phone = s.phone;
  row.company = s.company;
  row.title = s.title;
  row.address = s.address;
  row.city = s.city;
  row.region = s.region;
  row.source = s.source;
  row.lifecycleStage = s.lifecycleStage;
  row.attributes = s.attributes;
  row.mergedInto = s.mergedInto;
  row.updatedAt = new Date(s.updatedAt);
}

/** The golden record's values on the survivor's row. */
function applyGolden(row: CrmContactRow, golden: Contact, now: Date): void {
  row.email = golden.email.trim() === "" ? null : golden.email.trim().toLowerCase();
  row.givenName = golden.givenName;
  row.familyName = golden.familyName;
  row.phone = golden.phone;
  row.company = golden.company;
  row.title = golden.title;
  row.address = golden.address === undefined ? null : (toJson(PostalAddressSchema, golden.address) as StoredJson);
  row.city = golden.city;
  row.region = golden.region;
  row.source = golden.source;
  row.lifecycleStage = golden.lifecycleStage;
  row.attributes = golden.attributes.map((a) => toJson(AttributeSchema, a) as StoredJson);
  row.updatedAt = now;
}

/** Advisory locks on the members' identity keys, sorted (TrackInteraction's namespace and order). */
async function lockIdentityKeys(em: EntityManager, keys: Iterable<string>): Promise<void> {
  for (const k of [...new Set(keys)].sort()) {
    await em.execute("select pg_advisory_xact_lock(hashtextextended(?, 0))", [`crm.identity:${k}`]);
  }
}

/** Keyset cursor over (created_at, id). */
function encodeCursor(row: CrmContactRow): string {
  return `${row.createdAt.toISOString()}|${row.id}`;
}

function decodeCursor(cursor: string): { at: Date; id: string } {
  const [at, id] = cursor.split("|");
  return { at: new Date(at as string), id: id as string };
}

/**
 * Live (not merged-away) stored contacts in keyset pages on (created_at, id); with ids, those
 * contacts in pages of the id list (unknown and merged ones left out).
 */
export function storedContactsSource(db: Database): StoredContacts {
  return {
    async page({ ids, after, limit }): Promise<StoredContactPage> {
      const em = db.fork();
      if (ids !== undefined) {
        const from = after === undefined ? 0 : Number(after);
        const chunk = ids.slice(from, from + limit);
        const rows =
          chunk.length === 0
            ? []
            : await em.find(
                CrmContact,
                { id: { $in: [...chunk] }, mergedInto: null },
                { orderBy: { createdAt: "asc", id: "asc" } },
              );
        return {
          contacts: rows.map(contactFromRow),
          next: from + limit < ids.length ? String(from + limit) : undefined,
        };
      }
      const where =
        after === undefined
          ? { mergedInto: null }
          : (() => {
              const c = decodeCursor(after);
              return {
                mergedInto: null,
                $or: [{ createdAt: { $gt: c.at } }, { createdAt: c.at, id: { $gt: c.id } }],
              };
            })();
      const rows = await em.find(CrmContact, where, { orderBy: { createdAt: "asc", id: "asc" }, limit });
      const last = rows[rows.length - 1];
      return {
        contacts: rows.map(contactFromRow),
        next: rows.length === limit && last !== undefined ? encodeCursor(last) : undefined,
      };
    },
  };
}

/** Dependencies of the merger and of UnmergeContacts. */
export interface MergeDeps {
  db: Database;
  bus: Bus;
  now: () => Date;
}

/** Merges clusters in one transaction each, audited in `crm_contact_merge`. */
export function contactMerger(deps: MergeDeps): ContactMerger {
  return {
    merge: (plan) => transaction(deps.db, (em) => mergeCluster(deps, em, plan)),
  };
}

async function mergeCluster(deps: MergeDeps, em: EntityManager, plan: MergePlan): Promise<string | undefined> {
  const done = await em.findOne(CrmContactMerge, { requestId: plan.requestId, survivorId: plan.survivingContactId });
  if (done !== null) return done.id;
  const ids = [plan.survivingContactId, ...plan.mergedContactIds];
  const seen = new Map(plan.members.map((c) => [c.id, c]));
  await lockIdentityKeys(em, [
    ...ids.map((id) => `contact:${id}`),
    ...plan.members.filter((c) => c.email !== "").map((c) => `email:${c.email}`),
    ...(plan.golden.email !== "" ? [`email:${plan.golden.email.trim().toLowerCase()}`] : []),
  ]);
  const rows = await em.find(
    CrmContact,
    { id: { $in: ids } },
    { lockMode: LockMode.PESSIMISTIC_WRITE, orderBy: { id: "asc" }, refresh: true },
  );
  // A member merged or changed since it was read: leave the cluster for the next run.
  if (rows.length !== ids.length) return undefined;
  for (const r of rows) {
    const read = seen.get(r.id)?.updatedAt;
    if (r.mergedInto != null || read === undefined || timestampDate(read).getTime() !== r.updatedAt.getTime()) {
      return undefined;
    }
  }
  const byId = new Map(rows.map((r) => [r.id, r]));
  const survivor = byId.get(plan.survivingContactId) as CrmContactRow;
  const merged = plan.mergedContactIds.map((id) => byId.get(id) as CrmContactRow);
  const previous = [survivor, ...merged].map(snapshot);
  const now = deps.now();

  // Identities: the merged contacts' sets are unioned into the survivor's.
  const sets = await em.find(
    CrmIdentitySet,
    { contact: { $in: ids } },
    { lockMode: LockMode.PESSIMISTIC_WRITE, orderBy: { id: "asc" }, refresh: true },
  );
  let into = sets.find((s) => s.contact === survivor.id);
  const absorbedSets = sets.filter((s) => s.contact !== survivor.id);
  const moved: MovedIdentities = { into: into?.id ?? null, created: false, absorbed: [] };
  if (into === undefined && absorbedSets.length > 0) {
    into = em.create(CrmIdentitySet, { id: randomUUID(), contact: survivor.id, size: 0, createdAt: now });
    moved.into = into.id;
    moved.created = true;
  }
  let size = into?.size ?? 0;
  for (const s of absorbedSets) {
    const nodes = await em.find(CrmIdentityNode, { set: s.id }, { orderBy: { kind: "asc", value: "asc" } });
    moved.absorbed.push({
      id: s.id,
      contact: s.contact as string,
      size: s.size,
      createdAt: s.createdAt.toISOString(),
      nodes: nodes.map((n) => ({ kind: n.kind, value: n.value })),
    });
    size += s.size;
  }
  await em.flush();
  if (into !== undefined && absorbedSets.length > 0) {
    const absorbedIds = absorbedSets.map((s) => s.id);
    await em.nativeUpdate(CrmIdentityNode, { set: { $in: absorbedIds } }, { set: into.id });
    await em.nativeDelete(CrmIdentitySet, { id: { $in: absorbedIds } });
    await em.nativeUpdate(CrmIdentitySet, { id: into.id }, { size });
  }

  // Interactions of the merged contacts go to the survivor.
  const interactions = await em.find(
    CrmInteraction,
    { contact: { $in: plan.mergedContactIds } },
    { fields: ["id", "contact"], orderBy: { id: "asc" } },
  );
  const movedInteractions: MovedInteraction[] = interactions.map((i) => ({ id: i.id, from: i.contact as string }));
  if (movedInteractions.length > 0) {
    await em.nativeUpdate(CrmInteraction, { contact: { $in: plan.mergedContactIds } }, { contact: survivor.id });
  }

  // The merged contacts point at the survivor (giving up the golden email first: it is unique).
  const goldenEmail = plan.golden.email.trim().toLowerCase();
  for (const m of merged) {
    m.mergedInto = survivor.id;
    if (goldenEmail !== "" && m.email === goldenEmail) m.email = null;
    m.updatedAt = now;
  }
  await em.flush();
  applyGolden(survivor, plan.golden, now);
  await em.flush();

  const mergeId = randomUUID();
  em.create(CrmContactMerge, {
    id: mergeId,
    requestId: plan.requestId,
    survivorId: survivor.id,
    mergedIds: plan.mergedContactIds,
    previous: previous as unknown as StoredJson[],
    movedInteractionIds: movedInteractions as unknown as StoredJson[],
    movedIdentities: moved as unknown as StoredJson,
    method: linkageMethod,
    matchProbability: plan.matchProbability,
    mergedBy: plan.mergedBy,
    mergedAt: now,
    unmergeRequestId: null,
    unmergedBy: null,
    unmergedAt: null,
  });
  enqueueEvent(
    deps.db,
    em,
    deps.bus.prefix,
    ContactsMerged,
    create(ContactsMergedSchema, {
      mergeId,
      survivingContactId: survivor.id,
      mergedContactIds: plan.mergedContactIds,
      movedInteractionCount: movedInteractions.length,
      matchProbability: plan.matchProbability,
      mergedAt: timestampFromDate(now),
    }),
    { msgId: `crm.contacts_merged.${mergeId}` },
  );
  await em.flush();
  return mergeId;
}

/** UnmergeContacts: undoes one merge exactly, in one transaction. */
export async function unmergeContacts(
  deps: MergeDeps,
  req: UnmergeContactsRequest,
  ctx?: CallContext,
): Promise<UnmergeContactsResponse> {
  checkContract(UnmergeContactsRequestSchema, req);
  const by = ctx?.values.get(principalKey)?.name ?? "";
  try {
    return await transaction(deps.db, (em) => unmerge(deps, em, req, by));
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException) {
      throw new FailedPreconditionError(
        "a restored email now belongs to another contact; the merge cannot be undone until it is freed",
      );
    }
    throw err;
  }
}

async function unmerge(
  deps: MergeDeps,
  em: EntityManager,
  req: UnmergeContactsRequest,
  by: string,
): Promise<UnmergeContactsResponse> {
  const found = await em.findOne(
    CrmContactMerge,
    { id: req.mergeId },
    { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true },
  );
  if (found === null) throw new NotFoundError(`merge ${req.mergeId} not found (merge_id)`);
  const merge: CrmContactMergeRow = found;
  const previous = merge.previous as unknown as ContactSnapshot[];
  const movedInteractions = merge.movedInteractionIds as unknown as MovedInteraction[];
  const moved = merge.movedIdentities as unknown as MovedIdentities;
  const nodeCount = moved.absorbed.reduce((n, s) => n + s.nodes.length, 0);
  const ids = previous.map((s) => s.id);
  if (merge.unmergedAt != null) {
    if (merge.unmergeRequestId !== req.requestId) {
      throw new FailedPreconditionError(
        `merge ${merge.id} was already undone at ${merge.unmergedAt.toISOString()}; it cannot be undone twice`,
      );
    }
    const rows = await em.find(CrmContact, { id: { $in: ids } }, { refresh: true });
    return answer(merge, rows, movedInteractions.length, nodeCount, merge.unmergedAt);
  }

  const rows = await em.find(CrmContact, { id: { $in: ids } }, { refresh: true });
  await lockIdentityKeys(em, [
    ...ids.map((id) => `contact:${id}`),
    ...previous.flatMap((s) => (s.email === null ? [] : [`email:${s.email}`])),
    ...rows.flatMap((r) => (r.email == null ? [] : [`email:${r.email}`])),
  ]);
  const locked = await em.find(
    CrmContact,
    { id: { $in: ids } },
    { lockMode: LockMode.PESSIMISTIC_WRITE, orderBy: { id: "asc" }, refresh: true },
  );
  const byId = new Map(locked.map((r) => [r.id, r]));
  const survivor = byId.get(merge.survivorId);
  if (survivor === undefined || locked.length !== ids.length) {
    throw new FailedPreconditionError(`a contact of merge ${merge.id} no longer exists (erased?)`);
  }
  if (survivor.mergedInto != null) {
    throw new FailedPreconditionError(
      `contact ${survivor.id} was merged into ${survivor.mergedInto} after merge ${merge.id}; undo that first`,
    );
  }
  for (const id of merge.mergedIds) {
    if (byId.get(id)?.mergedInto !== survivor.id) {
      throw new FailedPreconditionError(`contact ${id} is no longer merged into ${survivor.id}`);
    }
  }
  const now = deps.now();

  // Contacts: free every member's email first (they are unique), then put each row back.
  for (const r of locked) r.email = null;
  await em.flush();
  for (const s of previous) restore(byId.get(s.id) as CrmContactRow, s);
  await em.flush();

  // Interactions: exactly the ones the merge moved, if still on the survivor.
  const back = new Map<string, string[]>();
  for (const m of movedInteractions) back.set(m.from, [...(back.get(m.from) ?? []), m.id]);
  let restoredInteractions = 0;
  for (const [from, list] of back) {
    for (let i = 0; i < list.length; i += 1_000) {
      restoredInteractions += await em.nativeUpdate(
        CrmInteraction,
        { id: { $in: list.slice(i, i + 1_000) }, contact: survivor.id },
        { contact: from },
      );
    }
  }

  // Identities: recreate the absorbed sets and move their nodes back from wherever they are now.
  let restoredNodes = 0;
  for (const s of moved.absorbed) {
    em.create(CrmIdentitySet, {
      id: s.id,
      contact: s.contact,
      size: 0,
      createdAt: new Date(s.createdAt),
    });
    await em.flush();
    if (s.nodes.length === 0) continue;
    const nodes = await em.find(
      CrmIdentityNode,
      { $or: s.nodes.map((n) => ({ kind: n.kind, value: n.value })) },
      { refresh: true },
    );
    const fromSets = new Map<string, number>();
    for (const n of nodes) fromSets.set(n.set, (fromSets.get(n.set) ?? 0) + 1);
    await em.nativeUpdate(
      CrmIdentityNode,
      { $or: s.nodes.map((n) => ({ kind: n.kind, value: n.value })) },
      { set: s.id },
    );
    const shrunk = await em.find(CrmIdentitySet, { id: { $in: [...fromSets.keys()] } }, { refresh: true });
    for (const set of shrunk) {
      await em.nativeUpdate(
        CrmIdentitySet,
        { id: set.id },
        { size: Math.max(0, set.size - (fromSets.get(set.id) ?? 0)) },
      );
    }
    await em.nativeUpdate(CrmIdentitySet, { id: s.id }, { size: s.size });
    restoredNodes += nodes.length;
  }
  if (moved.created && moved.into !== null) {
    // The set the merge created for the survivor goes again if nothing joined it since.
    const left = await em.count(CrmIdentityNode, { set: moved.into });
    if (left === 0) await em.nativeDelete(CrmIdentitySet, { id: moved.into });
  }

  merge.unmergedAt = now;
  merge.unmergedBy = by;
  merge.unmergeRequestId = req.requestId;
  enqueueEvent(
    deps.db,
    em,
    deps.bus.prefix,
    ContactsUnmerged,
    create(ContactsUnmergedSchema, {
      mergeId: merge.id,
      survivingContactId: survivor.id,
      restoredContactIds: merge.mergedIds,
      restoredInteractionCount: restoredInteractions,
      unmergedAt: timestampFromDate(now),
    }),
    { msgId: `crm.contacts_unmerged.${merge.id}` },
  );
  await em.flush();
  return answer(merge, locked, restoredInteractions, restoredNodes, now);
}

function answer(
  merge: CrmContactMergeRow,
  rows: readonly CrmContactRow[],
  interactions: number,
  identities: number,
  at: Date,
): UnmergeContactsResponse {
  const byId = new Map(rows.map((r) => [r.id, r]));
  const survivor = byId.get(merge.survivorId);
  return create(UnmergeContactsResponseSchema, {
    mergeId: merge.id,
    ...(survivor === undefined ? {} : { survivingContact: contactFromRow(survivor) }),
    restoredContacts: merge.mergedIds.flatMap((id) => {
      const r = byId.get(id);
      return r === undefined ? [] : [contactFromRow(r)];
    }),
    restoredInteractionCount: interactions,
    restoredIdentityCount: identities,
    unmergedAt: timestampFromDate(at),
  });
}
