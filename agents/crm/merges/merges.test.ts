/**
 * Duplicate detection over stored contacts, audited merges and their exact reversal, on the real
 * PostgreSQL (and NATS for the outbox events).
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary, type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { ContactsMergedSchema, ContactsUnmergedSchema } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  AttributeSchema,
  type Contact,
  DetectDuplicatesRequestSchema,
  type DetectDuplicatesResponse,
  InteractionType,
  TrackInteractionRequestSchema,
  UnmergeContactsRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { CrmContact, CrmIdentityNode, CrmIdentitySet, CrmInteraction, type StoredJson } from "../entities.ts";
import { pairKey, syntheticPopulation } from "../linkage/index.ts";
import { detectDuplicates } from "../skills/detect-duplicates.ts";
import { trackInteraction } from "../skills/track-interaction.ts";
import { CrmContactMerge } from "./entities.ts";
import { contactMerger, storedContactsSource, unmergeContacts } from "./store.ts";

const start = Date.parse("2026-01-10T09:00:00Z");
let clock = start;
const now = (): Date => new Date(clock);

// 600 people and 60 corrupted duplicates, no households (so every match cluster is one person).
const population = syntheticPopulation({ seed: 424242, people: 600, duplicates: 60, householdShare: 0 });

/** A synthetic contact as a stored row (an email already held goes unstored: it is unique). */
function rowOf(c: Contact, emails: Set<string>) {
  const email = c.email.trim().toLowerCase();
  const free = email !== "" && !emails.has(email);
  if (free) emails.add(email);
  return {
    id: c.id,
    email: free ? email : null,
    givenName: c.givenName,
    familyName: c.familyName,
    phone: c.phone.slice(0, 16),
    company: c.company,
    title: c.title,
    address: c.address === undefined ? null : (toJson(PostalAddressSchema, c.address) as StoredJson),
    city: c.city,
    region: c.region,
    source: c.source,
    lifecycleStage: c.lifecycleStage,
    attributes: c.attributes.map((a) => toJson(AttributeSchema, a) as StoredJson),
    createdAt: c.createdAt === undefined ? new Date(0) : timestampDate(c.createdAt),
    updatedAt: c.updatedAt === undefined ? new Date(0) : timestampDate(c.updatedAt),
  };
}

describe("crm.duplicate_merging over stored contacts, with reversible merges", () => {
  let fx: BackboneFixture;
  let db: Database;
  let deps: { db: Database; bus: BackboneFixture["bus"]; now: () => Date };

  const detect = (init: MessageInitShape<typeof DetectDuplicatesRequestSchema> = {}) =>
    detectDuplicates(
      { storedContacts: storedContactsSource(db), merger: contactMerger(deps) },
      create(DetectDuplicatesRequestSchema, { requestId: randomUUID(), ...init }),
    );

  /** Every contact row as plain data, the optimistic-lock version left out (it only moves forward). */
  async function contactRows(ids: readonly string[]) {
    const rows = await db.fork().find(CrmContact, { id: { $in: [...ids] } }, { orderBy: { id: "asc" } });
    return rows.map(({ version: _v, ...rest }) => ({ ...rest }));
  }
  async function interactionRows(contactId: string) {
    const rows = await db.fork().find(CrmInteraction, { contact: contactId }, { orderBy: { id: "asc" } });
    return rows.map((r) => ({ ...r }));
  }
  async function identityOf(contactId: string) {
    const em = db.fork();
    const set = await em.findOne(CrmIdentitySet, { contact: contactId });
    if (set === null) return null;
    const nodes = await em.find(CrmIdentityNode, { set: set.id }, { orderBy: { kind: "asc", value: "asc" } });
    return { set: { ...set }, nodes: nodes.map((n) => ({ ...n })) };
  }
  async function snapshot(ids: readonly string[]) {
    return {
      contacts: await contactRows(ids),
      interactions: await Promise.all(ids.map(interactionRows)),
      identities: await Promise.all(ids.map(identityOf)),
    };
  }
  async function eventsOf(suffix: string): Promise<Uint8Array[]> {
    await fx.relay.flush();
    await eventually(async () => {
      const [r] = await fx.db.fork().getConnection().execute(`select count(*)::int as n from "operations"."outbox"`);
      return r?.n === 0 ? true : undefined;
    });
    const stream = fx.bus.streams.events;
    const info = await fx.bus.jsm.streams.info(stream);
    const out: Uint8Array[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await fx.bus.jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (m?.subject.endsWith(suffix)) out.push(m.data);
    }
    return out;
  }

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-merges");
    db = fx.db;
    deps = { db, bus: fx.bus, now };
    const em = db.fork();
    const emails = new Set<string>();
    for (const c of population.contacts) em.create(CrmContact, rowOf(c, emails));
    await em.flush();
  });
  afterAll(async () => {
    await fx?.dispose();
  });

  it("pages stored contacts by keyset on (created_at, id), leaving merged ones out", async () => {
    const source = storedContactsSource(db);
    const seen: Contact[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = await source.page({ after, limit: 97 });
      seen.push(...page.contacts);
      after = page.next;
      pages++;
    } while (after !== undefined);
    expect(seen).toHaveLength(population.contacts.length);
    expect(pages).toBe(Math.ceil(population.contacts.length / 97));
    const key = (c: Contact) => `${c.createdAt === undefined ? "" : timestampDate(c.createdAt).toISOString()}|${c.id}`;
    const keys = seen.map(key);
    expect(keys).toEqual([...keys].sort());
    expect(new Set(seen.map((c) => c.id)).size).toBe(population.contacts.length);
  });

  let dryRun: DetectDuplicatesResponse;

  it("detects duplicates over the stored contacts (dry run writes nothing)", async () => {
    const before = await db.fork().count(CrmContact, { mergedInto: null });
    dryRun = await detect();
    expect(dryRun.recordCount).toBe(population.contacts.length);
    expect(dryRun.clusters.length).toBeGreaterThan(30);
    expect(dryRun.clusters.every((c) => !c.merged && c.mergeId === "")).toBe(true);
    // Most linked pairs are true duplicates (the labelled truth of the synthetic population).
    const linked = dryRun.clusters.flatMap((c) =>
      c.contactIds.slice(1).map((id) => pairKey(c.contactIds[0] as string, id)),
    );
    const right = linked.filter((k) => population.truePairs.has(k)).length;
    expect(right / linked.length).toBeGreaterThan(0.9);
    expect(await db.fork().count(CrmContact, { mergedInto: null })).toBe(before);
    expect(await db.fork().count(CrmContactMerge, {})).toBe(0);
  });

  it("merges each cluster into its survivor, moving interactions and identities, and undoes it exactly", async () => {
    // Interactions and identities on the members of three clusters, through TrackInteraction.
    const clusters = dryRun.clusters.filter((c) => c.contactIds.length === 2).slice(0, 3);
    expect(clusters).toHaveLength(3);
    const members = clusters.flatMap((c) => c.contactIds);
    for (const [i, id] of members.entries()) {
      for (let k = 0; k < 2; k++) {
        clock += 60_000;
        await trackInteraction(
          deps,
          create(TrackInteractionRequestSchema, {
            interaction: {
              eventId: `ev-${i}-${k}`,
              anonymousId: `anon-${i}`,
              contactId: id,
              type: InteractionType.PAGE_VIEW,
              url: `https://example.com/p/${k}`,
              occurredAt: { seconds: BigInt(Math.floor(clock / 1000)), nanos: 0 },
            },
          }),
        );
      }
    }
    const before = await snapshot(members);
    expect(before.interactions.every((list) => list.length === 2)).toBe(true);
    expect(before.identities.every((s) => s !== null && s.nodes.length === 2)).toBe(true);

    clock += 3_600_000;
    // Merges over every stored contact (EM needs the population); the three clusters are checked.
    const req = create(DetectDuplicatesRequestSchema, { requestId: randomUUID(), applyMerges: true });
    const all = await detectDuplicates({ storedContacts: storedContactsSource(db), merger: contactMerger(deps) }, req);
    expect(all.clusters.map((c) => c.contactIds)).toEqual(dryRun.clusters.map((c) => c.contactIds));
    expect(all.clusters.every((c) => c.merged && c.mergeId !== "")).toBe(true);
    expect(all.mergedContactCount).toBe(dryRun.clusters.reduce((n, c) => n + c.contactIds.length - 1, 0));
    expect(await db.fork().count(CrmContactMerge, {})).toBe(all.clusters.length);
    const chosen = new Set(clusters.map((c) => c.survivingContactId));
    const res = { clusters: all.clusters.filter((c) => chosen.has(c.survivingContactId)) };
    expect(res.clusters).toHaveLength(3);

    for (const c of res.clusters) {
      const survivor = c.survivingContactId;
      const other = c.contactIds.find((id) => id !== survivor) as string;
      const [s, o] = [
        await db.fork().findOneOrFail(CrmContact, { id: survivor }),
        await db.fork().findOneOrFail(CrmContact, { id: other }),
      ];
      // The survivor is the earliest created and carries the golden record.
      expect(s.createdAt.getTime()).toBeLessThanOrEqual(o.createdAt.getTime());
      const g = c.goldenRecord as Contact;
      expect({
        givenName: s.givenName,
        familyName: s.familyName,
        email: s.email ?? "",
        phone: s.phone,
        company: s.company,
        title: s.title,
        city: s.city,
        region: s.region,
        source: s.source,
        lifecycleStage: s.lifecycleStage,
        address: s.address,
        attributes: s.attributes,
      }).toEqual({
        givenName: g.givenName,
        familyName: g.familyName,
        email: g.email,
        phone: g.phone,
        company: g.company,
        title: g.title,
        city: g.city,
        region: g.region,
        source: g.source,
        lifecycleStage: g.lifecycleStage,
        address: g.address === undefined ? null : toJson(PostalAddressSchema, g.address),
        attributes: g.attributes.map((a) => toJson(AttributeSchema, a)),
      });
      expect(s.mergedInto ?? null).toBeNull();
      expect(o.mergedInto).toBe(survivor);
      // All four interactions are the survivor's now; the other's identities joined its set.
      expect(await interactionRows(other)).toEqual([]);
      expect((await interactionRows(survivor)).map((r) => r.eventId).sort()).toHaveLength(4);
      expect(await identityOf(other)).toBeNull();
      expect((await identityOf(survivor))?.nodes).toHaveLength(4);
      const audit = await db.fork().findOneOrFail(CrmContactMerge, { id: c.mergeId });
      expect(audit.survivorId).toBe(survivor);
      expect(audit.mergedIds).toEqual([other]);
      expect(audit.method).toBe("fellegi-sunter");
      expect(audit.matchProbability).toBeGreaterThanOrEqual(0.95 - 1e-9);
      expect(audit.movedInteractionIds).toHaveLength(2);
    }
    const mergedEvents = (await eventsOf(".crm.contacts_merged")).map((d) => fromBinary(ContactsMergedSchema, d));
    expect(mergedEvents.map((e) => e.mergeId).sort()).toEqual(all.clusters.map((c) => c.mergeId).sort());
    const chosenEvents = mergedEvents.filter((e) => chosen.has(e.survivingContactId));
    expect(chosenEvents.map((e) => e.movedInteractionCount)).toEqual([2, 2, 2]);

    // A replay of the same request merges nothing again: the merger answers the first merge.
    const first = res.clusters[0];
    const replayed = await contactMerger(deps).merge({
      requestId: req.requestId,
      survivingContactId: first?.survivingContactId as string,
      mergedContactIds: first?.contactIds.filter((id) => id !== first.survivingContactId) ?? [],
      golden: first?.goldenRecord as Contact,
      members: [],
      matchProbability: 1,
      mergedBy: "",
    });
    expect(replayed).toBe(first?.mergeId);
    expect(await db.fork().count(CrmContactMerge, {})).toBe(all.clusters.length);

    // An interaction attributed to a survivor after the merge stays with it on unmerge.
    clock += 60_000;
    const later = await trackInteraction(
      deps,
      create(TrackInteractionRequestSchema, {
        interaction: {
          eventId: "ev-after-merge",
          contactId: first?.survivingContactId as string,
          type: InteractionType.PAGE_VIEW,
          occurredAt: { seconds: BigInt(Math.floor(clock / 1000)), nanos: 0 },
        },
      }),
    );

    // Bad input changes nothing.
    const audits = async () =>
      (await db.fork().find(CrmContactMerge, {}, { orderBy: { id: "asc" } })).map((r) => ({ ...r }));
    const mid = { ...(await snapshot(members)), audits: await audits() };
    const unknown = await unmergeContacts(
      deps,
      create(UnmergeContactsRequestSchema, { requestId: randomUUID(), mergeId: randomUUID() }),
    ).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(NotFoundError);
    const malformed = await unmergeContacts(
      deps,
      create(UnmergeContactsRequestSchema, { requestId: randomUUID(), mergeId: "not-a-uuid" }),
    ).catch((e: unknown) => e);
    expect(malformed).toBeInstanceOf(InvalidInputError);
    expect((malformed as InvalidInputError).field).toBe("merge_id");
    expect({ ...(await snapshot(members)), audits: await audits() }).toEqual(mid);

    // Unmerge every cluster: both records and their interaction and identity sets are as before.
    clock += 60_000;
    const unmergeIds = new Map<string, string>();
    for (const c of res.clusters) {
      const requestId = randomUUID();
      unmergeIds.set(c.mergeId, requestId);
      const u = await unmergeContacts(deps, create(UnmergeContactsRequestSchema, { requestId, mergeId: c.mergeId }));
      expect(u.mergeId).toBe(c.mergeId);
      expect(u.restoredInteractionCount).toBe(2);
      expect(u.restoredIdentityCount).toBe(2);
      expect(u.restoredContacts.map((r) => r.id)).toEqual(c.contactIds.filter((id) => id !== c.survivingContactId));
    }
    const after = await snapshot(members);
    expect(after.contacts).toEqual(before.contacts);
    expect(after.identities).toEqual(before.identities);
    const firstIndex = members.indexOf(first?.survivingContactId as string);
    after.interactions.forEach((list, i) => {
      expect(list.filter((r) => r.id !== later.interaction?.id)).toEqual(before.interactions[i]);
    });
    expect(after.interactions[firstIndex]?.map((r) => r.id)).toContain(later.interaction?.id);
    const audit = await db.fork().findOneOrFail(CrmContactMerge, { id: first?.mergeId as string });
    expect(audit.unmergedAt?.getTime()).toBe(clock);
    const unmergedEvents = (await eventsOf(".crm.contacts_unmerged")).map((d) => fromBinary(ContactsUnmergedSchema, d));
    expect(unmergedEvents.map((e) => e.mergeId).sort()).toEqual(res.clusters.map((c) => c.mergeId).sort());

    // Unmerging twice is refused; a replay of the same request answers again and changes nothing.
    const settled = { ...(await snapshot(members)), audits: await audits() };
    const twice = await unmergeContacts(
      deps,
      create(UnmergeContactsRequestSchema, { requestId: randomUUID(), mergeId: first?.mergeId as string }),
    ).catch((e: unknown) => e);
    expect(twice).toBeInstanceOf(FailedPreconditionError);
    const replay = await unmergeContacts(
      deps,
      create(UnmergeContactsRequestSchema, {
        requestId: unmergeIds.get(first?.mergeId as string) as string,
        mergeId: first?.mergeId as string,
      }),
    );
    expect(replay.mergeId).toBe(first?.mergeId);
    expect({ ...(await snapshot(members)), audits: await audits() }).toEqual(settled);
  });

  it("refuses to change a merge's audit row other than recording its unmerge", async () => {
    const [row] = await db.fork().find(CrmContactMerge, {}, { limit: 1 });
    const err = await db
      .fork()
      .nativeUpdate(CrmContactMerge, { id: row?.id as string }, { method: "manual" })
      .catch((e: unknown) => e);
    expect(String(err)).toMatch(/append-only/);
  });
});
