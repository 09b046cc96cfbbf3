import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CacheInvalidated } from "../../../gen/mesh/common/v1/cache_pb.ts";
import {
  ConflictResolution,
  ConflictStrategy,
  type SyncFieldValue,
  SyncFieldValueSchema,
  type SynchronizeDatabaseRequest,
  SynchronizeDatabaseRequestSchema,
  type SynchronizeDatabaseResponse,
  SyncOutcome,
  type SyncRecord,
  SyncRecordSchema,
} from "../../../gen/mesh/data/v1/data_service_pb.ts";
import type { Bus, startOutboxRelay } from "../../../lib/bus/index.ts";
import { decodeEvent } from "../../../lib/bus/index.ts";
import {
  CacheInvalidatedEvent,
  compareHlc,
  createClock,
  createReplicatedCache,
  decodeHlc,
  encodeHlc,
  type Hlc,
  hlcFromProto,
  hlcToProto,
} from "../../../lib/cache/index.ts";
import type { Database } from "../../../lib/db/index.ts";
import { runInUnitOfWork } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createCatalog } from "../../../lib/registry/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { ConflictAudit, SyncedRecord, SyncedRecordHistory } from "../entities.ts";
import { synchronizeDatabase } from "./synchronize-database.ts";

const log = createLogger("warn");
const clock = createClock("technical-test");

type Plain = string | bigint | number | boolean | Date | null;

/** A field value from a plain JS value (bigint → int64, number → double, null → NULL). */
function field(name: string, v: Plain): SyncFieldValue {
  const value =
    v === null
      ? { case: undefined }
      : typeof v === "string"
        ? { case: "stringValue" as const, value: v }
        : typeof v === "bigint"
          ? { case: "int64Value" as const, value: v }
          : typeof v === "number"
            ? { case: "doubleValue" as const, value: v }
            : typeof v === "boolean"
              ? { case: "boolValue" as const, value: v }
              : { case: "timestampValue" as const, value: timestampFromDate(v) };
  return create(SyncFieldValueSchema, { name, value });
}

const fieldsOf = (o: Record<string, Plain>): SyncFieldValue[] => Object.entries(o).map(([k, v]) => field(k, v));

/** Plain values of response or stored fields, for comparisons. */
function plain(fields: readonly SyncFieldValue[]): Record<string, unknown> {
  return Object.fromEntries(fields.map((f) => [f.name, f.value.value ?? null]));
}

function storedPlain(fields: Record<string, Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Object.values(v)[0] ?? null]));
}

const hlc = (wallTimeMs: number, logical: number, nodeId: string): Hlc => ({ wallTimeMs, logical, nodeId });

function record(
  key: string,
  fields: Record<string, Plain>,
  at: Hlc,
  opts: { base?: Hlc; baseFields?: Record<string, Plain>; deleted?: boolean } = {},
): SyncRecord {
  return create(SyncRecordSchema, {
    key,
    fields: fieldsOf(fields),
    hlc: hlcToProto(at),
    ...(opts.base === undefined ? {} : { baseVersion: hlcToProto(opts.base) }),
    ...(opts.baseFields === undefined ? {} : { baseFields: fieldsOf(opts.baseFields) }),
    deleted: opts.deleted ?? false,
  });
}

type RequestInit = MessageInitShape<typeof SynchronizeDatabaseRequestSchema>;

function request(
  collection: string,
  records: SyncRecord[],
  init: Partial<RequestInit> = {},
): SynchronizeDatabaseRequest {
  return create(SynchronizeDatabaseRequestSchema, {
    requestId: randomUUID(),
    collection,
    records,
    strategy: ConflictStrategy.LAST_WRITER_WINS,
    ...init,
  });
}

describe("integration.database_sync", () => {
  let fixture: BackboneFixture;
  let db: Database;
  let bus: Bus;
  let relay: ReturnType<typeof startOutboxRelay>;
  const events: CacheInvalidated[] = [];
  let sync: (req: SynchronizeDatabaseRequest) => Promise<SynchronizeDatabaseResponse>;
  // Wall times a minute in the past: well inside the drift limit, and earlier than the local clock.
  const t0 = Date.now() - 60_000;

  beforeAll(async () => {
    fixture = await openBackboneFixture(domains.technical, "technical");
    ({ db, bus, relay } = fixture);
    bus.fanout(bus.eventSubject(CacheInvalidatedEvent), (d) => {
      events.push(decodeEvent(CacheInvalidatedEvent, d));
    });
    await bus.nc.flush();
    const deps = { client: undefined as never, catalog: createCatalog(), log, now: () => new Date(), db, bus, clock };
    sync = (req) => synchronizeDatabase(deps, req);
  });
  afterAll(async () => {
    await fixture?.dispose();
  });

  const stored = (collection: string, key: string) => db.fork().findOne(SyncedRecord, { collection, key });
  const audits = (collection: string, key?: string) =>
    db
      .fork()
      .find(ConflictAudit, key === undefined ? { collection } : { collection, key }, { orderBy: { createdAt: "asc" } });
  const eventsFor = (collection: string) => events.filter((e) => e.cacheName === collection);
  /** Waits until the relay has published what committed, plus a margin for late duplicates. */
  const settle = async (): Promise<void> => {
    await relay.flush();
    await bus.nc.flush();
    await new Promise((r) => setTimeout(r, 150));
  };

  it("resolves concurrent updates by HLC precedence and converges in either order of arrival", async () => {
    const h0 = hlc(t0, 0, "technical-1");
    const hA = hlc(t0 + 1000, 0, "operations-1");
    const hB = hlc(t0 + 2000, 0, "content-1");
    const a = record("contact-1042", { email: "a@example.org", lead_score: 60n }, hA, { base: h0 });
    const b = record("contact-1042", { email: "b@example.org", lead_score: 70n }, hB, { base: h0 });
    for (const [collection, order] of [
      ["crm.contacts_ab", [a, b]],
      ["crm.contacts_ba", [b, a]],
    ] as const) {
      const seeded = await sync(
        request(collection, [record("contact-1042", { email: "pat@example.org", lead_score: 50n }, h0)]),
      );
      expect(seeded.records[0]?.outcome).toBe(SyncOutcome.INSERTED);
      const first = await sync(request(collection, [order[0]]));
      expect(first.records[0]?.outcome).toBe(SyncOutcome.UPDATED);
      expect(first.conflicts).toHaveLength(0);
      const second = await sync(request(collection, [order[1]]));
      expect(second.conflicts).toHaveLength(1);
      const conflict = second.conflicts[0];
      if (order[1] === b) {
        expect(second.records[0]?.outcome).toBe(SyncOutcome.UPDATED);
        expect(conflict?.resolution).toBe(ConflictResolution.INCOMING_APPLIED);
        expect(conflict?.reason).toBe("incoming HLC is later");
        expect(second.records[0]?.changedFields).toEqual(["email", "lead_score"]);
      } else {
        expect(second.records[0]?.outcome).toBe(SyncOutcome.UNCHANGED);
        expect(conflict?.resolution).toBe(ConflictResolution.STORED_KEPT);
        expect(conflict?.reason).toBe("stale version: stored HLC is later");
        expect(second.unchangedCount).toBe(1);
      }
      expect(hlcFromProto(conflict?.winningHlc ?? hlcToProto(h0))).toEqual(hB);
      expect(hlcFromProto(conflict?.losingHlc ?? hlcToProto(h0))).toEqual(hA);
      expect(conflict?.fieldName).toBe("");
      expect(conflict?.auditEntryId).toMatch(/^[0-9a-f-]{36}$/);
      expect(plain(second.records[0]?.fields ?? [])).toEqual({ email: "b@example.org", lead_score: 70n });

      const row = await stored(collection, "contact-1042");
      expect(storedPlain(row?.fields ?? {})).toEqual({ email: "b@example.org", lead_score: "70" });
      expect(row?.hlc).toBe(encodeHlc(hB));
      expect(decodeHlc(row?.hlc ?? "")).toEqual(hB);
      const rows = await audits(collection);
      expect(rows).toHaveLength(1);
      expect(rows[0]?.id).toBe(conflict?.auditEntryId);
      expect(rows[0]?.winner).toBe(order[1] === b ? "incoming" : "stored");
      expect(rows[0]?.winningHlc).toBe(encodeHlc(hB));
      expect(rows[0]?.losingHlc).toBe(encodeHlc(hA));
      expect(rows[0]?.field).toBe("");
      expect(rows[0]?.storedValue).toEqual({
        deleted: false,
        fields:
          order[1] === b
            ? { email: { stringValue: "a@example.org" }, lead_score: { int64Value: "60" } }
            : {
                email: { stringValue: "b@example.org" },
                lead_score: { int64Value: "70" },
              },
      });
    }
  });

  it("breaks a tie of wall time and counter by node id, whichever arrives first", async () => {
    const low = hlc(t0 + 5000, 3, "operations-1");
    const high = hlc(t0 + 5000, 3, "technical-2");
    for (const [collection, first, second] of [
      ["crm.tie_a", low, high],
      ["crm.tie_b", high, low],
    ] as const) {
      await sync(request(collection, [record("k", { owner: first.nodeId }, first)]));
      const res = await sync(request(collection, [record("k", { owner: second.nodeId }, second)]));
      expect(res.conflicts[0]?.reason).toMatch(
        /^(stale version: )?equal wall time, node id tie-break \(technical-2 > operations-1\)$/,
      );
      expect(plain(res.records[0]?.fields ?? [])).toEqual({ owner: "technical-2" });
      expect((await stored(collection, "k"))?.hlc).toBe(encodeHlc(high));
      expect(await audits(collection)).toHaveLength(1);
    }
  });

  it("field merge keeps non-overlapping changes of both sides and gives fields changed on both to the greater HLC", async () => {
    const collection = "crm.merge";
    const h0 = hlc(t0, 0, "technical-1");
    const hA = hlc(t0 + 1000, 0, "operations-1");
    const hB = hlc(t0 + 2000, 0, "content-1");
    const merge = { strategy: ConflictStrategy.FIELD_MERGE };
    await sync(
      request(collection, [record("c1", { email: "pat@example.org", lead_score: 50n, city: "Dallas" }, h0)], merge),
    );
    // Node A changed email and lead_score; it arrives first and fast-forwards.
    const a = await sync(
      request(collection, [record("c1", { email: "pat@a.example", lead_score: 60n }, hA, { base: h0 })], merge),
    );
    expect(a.records[0]?.outcome).toBe(SyncOutcome.UPDATED);
    expect(plain(a.records[0]?.fields ?? [])).toEqual({ email: "pat@a.example", lead_score: 60n, city: "Dallas" });
    // Node B (later HLC) changed lead_score and city from the same base; the base comes from history.
    const b = await sync(
      request(collection, [record("c1", { lead_score: 70n, city: "Austin" }, hB, { base: h0 })], merge),
    );
    const out = b.records[0];
    expect(out?.outcome).toBe(SyncOutcome.MERGED);
    expect(plain(out?.fields ?? [])).toEqual({ email: "pat@a.example", lead_score: 70n, city: "Austin" });
    expect(out?.changedFields).toEqual(["city", "lead_score"]);
    // The merged version is new: stamped by this node, later than both sides.
    const mergedHlc = hlcFromProto(out?.hlc ?? hlcToProto(h0));
    expect(mergedHlc.nodeId).toBe("technical-test");
    expect(compareHlc(mergedHlc, hB)).toBe(1);
    expect(b.conflicts).toHaveLength(1);
    expect(b.conflicts[0]?.fieldName).toBe("lead_score");
    expect(b.conflicts[0]?.baseValue?.value.value).toBe(50n);
    expect(b.conflicts[0]?.storedValue?.value.value).toBe(60n);
    expect(b.conflicts[0]?.incomingValue?.value.value).toBe(70n);
    expect(b.conflicts[0]?.resolution).toBe(ConflictResolution.INCOMING_APPLIED);
    expect(b.conflicts[0]?.reason).toBe("field changed on both sides; incoming HLC is later");
    const rows = await audits(collection);
    expect(rows.map((r) => [r.field, r.baseValue, r.storedValue, r.incomingValue, r.winner])).toEqual([
      ["lead_score", { int64Value: "50" }, { int64Value: "60" }, { int64Value: "70" }, "incoming"],
    ]);
    const history = await db.fork().find(SyncedRecordHistory, { collection, key: "c1" }, { orderBy: { id: "asc" } });
    expect(history.map((h) => h.hlc)).toEqual([encodeHlc(h0), encodeHlc(hA), encodeHlc(mergedHlc)]);

    // An older concurrent change (base fields in the request) keeps its non-overlapping field and
    // loses the overlapping one.
    const hOld = hlc(t0 + 500, 0, "social-1");
    const c = await sync(
      request(
        collection,
        [
          record("c1", { email: "old@example.org", phone: "+15125550100" }, hOld, {
            base: h0,
            baseFields: { email: "pat@example.org", lead_score: 50n, city: "Dallas" },
          }),
        ],
        merge,
      ),
    );
    expect(c.records[0]?.outcome).toBe(SyncOutcome.MERGED);
    expect(plain(c.records[0]?.fields ?? [])).toEqual({
      email: "pat@a.example",
      lead_score: 70n,
      city: "Austin",
      phone: "+15125550100",
    });
    expect(c.conflicts.map((x) => [x.fieldName, x.resolution, x.reason])).toEqual([
      ["email", ConflictResolution.STORED_KEPT, "field changed on both sides; stored HLC is later"],
    ]);
    expect(await audits(collection)).toHaveLength(2);
  });

  it("leaves a stale version unchanged with an audit row, and a replayed version unchanged without one", async () => {
    const collection = "crm.stale";
    const newer = hlc(t0 + 3000, 0, "operations-1");
    const older = hlc(t0 + 1000, 0, "content-1");
    await sync(request(collection, [record("k1", { status: "customer" }, newer)]));
    const res = await sync(request(collection, [record("k1", { status: "lead" }, older)]));
    expect(res.records[0]?.outcome).toBe(SyncOutcome.UNCHANGED);
    expect(res.unchangedCount).toBe(1);
    expect(res.appliedCount).toBe(0);
    expect(res.conflictCount).toBe(1);
    expect(res.conflicts[0]?.resolution).toBe(ConflictResolution.STORED_KEPT);
    expect(plain(res.records[0]?.fields ?? [])).toEqual({ status: "customer" });
    const rows = await audits(collection, "k1");
    expect(rows).toHaveLength(1);
    expect(rows[0]?.reason).toBe("stale version: stored HLC is later");
    expect(rows[0]?.incomingValue).toEqual({ deleted: false, fields: { status: { stringValue: "lead" } } });
    const again = await sync(request(collection, [record("k1", { status: "customer" }, newer)]));
    expect(again.records[0]?.outcome).toBe(SyncOutcome.UNCHANGED);
    expect(again.conflicts).toHaveLength(0);
    expect(await audits(collection, "k1")).toHaveLength(1);
    expect((await stored(collection, "k1"))?.version).toBe(1);
  });

  it("keeps tombstones, so an older update does not bring a deleted record back", async () => {
    const collection = "crm.tombstones";
    const h1 = hlc(t0, 0, "operations-1");
    const h2 = hlc(t0 + 2000, 0, "operations-1");
    const h3 = hlc(t0 + 1000, 0, "content-1");
    await sync(request(collection, [record("k", { name: "Sunrise" }, h1)]));
    const del = await sync(request(collection, [record("k", {}, h2, { base: h1, deleted: true })]));
    expect(del.records[0]?.outcome).toBe(SyncOutcome.DELETED);
    expect(del.records[0]?.deleted).toBe(true);
    expect(del.records[0]?.changedFields).toEqual(["name"]);
    const late = await sync(request(collection, [record("k", { name: "Sunrise Austin" }, h3, { base: h1 })]));
    expect(late.records[0]?.outcome).toBe(SyncOutcome.UNCHANGED);
    expect(late.records[0]?.deleted).toBe(true);
    expect(late.conflicts).toHaveLength(1);
    const row = await stored(collection, "k");
    expect(row?.deleted).toBe(true);
    expect(row?.fields).toEqual({});
    // A tombstone for a key never seen is stored too.
    const unseen = await sync(request(collection, [record("gone", {}, h2, { deleted: true })]));
    expect(unseen.records[0]?.outcome).toBe(SyncOutcome.DELETED);
    expect((await stored(collection, "gone"))?.deleted).toBe(true);
  });

  it("rejects versions whose wall time drifts past the limit and applies the rest", async () => {
    const collection = "crm.drift";
    const before = clock.peek();
    const ahead = hlc(Date.now() + 120_000, 0, "operations-9");
    const res = await sync(
      request(collection, [record("far", { x: 1n }, ahead), record("near", { x: 2n }, hlc(t0, 0, "operations-9"))]),
    );
    expect(res.rejections).toHaveLength(1);
    expect(res.rejections[0]?.key).toBe("far");
    expect(res.rejections[0]?.reason).toMatch(/^wall time 1[12]\d(\.\d)? s ahead of local clock \(limit 60 s\)$/);
    expect(res.records.map((r) => r.outcome)).toEqual([SyncOutcome.REJECTED, SyncOutcome.INSERTED]);
    expect(res.appliedCount).toBe(1);
    expect(await stored(collection, "far")).toBeNull();
    // The node's clock did not adopt the rejected wall time.
    expect(hlcFromProto(res.nodeClock ?? hlcToProto(before)).wallTimeMs).toBeLessThan(ahead.wallTimeMs);
    // A larger limit accepts it, and the node's clock moves past it.
    const wide = await sync(
      request(collection, [record("far", { x: 1n }, ahead)], { maxClockDrift: durationFromMs(300_000) }),
    );
    expect(wide.records[0]?.outcome).toBe(SyncOutcome.INSERTED);
    expect(compareHlc(hlcFromProto(wide.nodeClock ?? hlcToProto(before)), ahead)).toBe(1);
    await settle();
    expect(eventsFor(collection).flatMap((e) => e.keys)).toEqual(["near", "far"]);
  });

  it("computes a dry run without writing, auditing, publishing or advancing the clock", async () => {
    const collection = "crm.dry";
    const h1 = hlc(t0, 0, "operations-1");
    await sync(request(collection, [record("k", { stage: "lead" }, h1)]));
    await settle();
    const eventsBefore = eventsFor(collection).length;
    const clockBefore = clock.peek();
    const res = await sync(
      request(
        collection,
        [record("k", { stage: "customer" }, hlc(t0 + 1000, 0, "content-1")), record("new", { a: true }, h1)],
        {
          dryRun: true,
        },
      ),
    );
    expect(res.records.map((r) => r.outcome)).toEqual([SyncOutcome.UPDATED, SyncOutcome.INSERTED]);
    expect(res.conflicts).toHaveLength(1);
    expect(res.conflicts[0]?.auditEntryId).toBe("");
    expect(clock.peek()).toEqual(clockBefore);
    const row = await stored(collection, "k");
    expect(storedPlain(row?.fields ?? {})).toEqual({ stage: "lead" });
    expect(row?.version).toBe(1);
    expect(await stored(collection, "new")).toBeNull();
    expect(await audits(collection)).toHaveLength(0);
    expect(await db.fork().count(SyncedRecordHistory, { collection })).toBe(1);
    await settle();
    expect(eventsFor(collection)).toHaveLength(eventsBefore);
  });

  it("serialises concurrent syncs of one key into one consistent winner", async () => {
    const collection = "crm.race";
    const h0 = hlc(t0, 0, "technical-1");
    for (let round = 0; round < 5; round++) {
      const key = `k${round}`;
      await sync(request(collection, [record(key, { v: "base" }, h0)]));
      const hA = hlc(t0 + 1000 + round, 0, "operations-1");
      const hB = hlc(t0 + 1000 + round, 1, "content-1");
      const [ra, rb] = await Promise.all([
        sync(request(collection, [record(key, { v: "a" }, hA, { base: h0 })])),
        sync(request(collection, [record(key, { v: "b" }, hB, { base: h0 })])),
      ]);
      const row = await stored(collection, key);
      expect(storedPlain(row?.fields ?? {})).toEqual({ v: "b" });
      expect(row?.hlc).toBe(encodeHlc(hB));
      // Exactly one of the two saw the other's write: one conflict, one audit row.
      expect(ra.conflicts.length + rb.conflicts.length).toBe(1);
      expect(await audits(collection, key)).toHaveLength(1);
      const writes = await db.fork().count(SyncedRecordHistory, { collection, key });
      expect(row?.version).toBe(writes);
    }
    // A bulk call (locking the whole collection) racing a single-key call on one of its keys.
    const bulk = Array.from({ length: 100 }, (_, i) =>
      record(`bulk-${i}`, { v: "bulk" }, hlc(t0 + 20_000, 0, "operations-1")),
    );
    const [rBulk, rOne] = await Promise.all([
      sync(request(collection, bulk)),
      sync(request(collection, [record("bulk-7", { v: "one" }, hlc(t0 + 20_000, 0, "social-1"))])),
    ]);
    expect(rBulk.records).toHaveLength(100);
    expect(rBulk.conflicts.length + rOne.conflicts.length).toBe(1);
    expect(storedPlain((await stored(collection, "bulk-7"))?.fields ?? {})).toEqual({ v: "one" });
    expect(await db.fork().count(SyncedRecord, { collection, key: { $like: "bulk-%" } })).toBe(100);
    // Two nodes creating the same new key at once: one insert, one resolved conflict.
    const [x, y] = await Promise.all([
      sync(request(collection, [record("fresh", { v: "x" }, hlc(t0 + 9000, 0, "operations-1"))])),
      sync(request(collection, [record("fresh", { v: "y" }, hlc(t0 + 9000, 0, "social-1"))])),
    ]);
    expect([x, y].map((r) => r.records[0]?.outcome)).toContain(SyncOutcome.INSERTED);
    expect(storedPlain((await stored(collection, "fresh"))?.fields ?? {})).toEqual({ v: "y" });
    expect(await audits(collection, "fresh")).toHaveLength(1);
  });

  it("publishes one CacheInvalidated per committed change and none for unchanged, invalid or rolled-back calls", async () => {
    const collection = "crm.events";
    const h1 = hlc(t0, 0, "operations-1");
    const h2 = hlc(t0 + 10, 0, "operations-1");
    const res = await sync(request(collection, [record("a", { n: 1n }, h1), record("b", { n: 2n }, h2)]));
    await eventually(() => (eventsFor(collection).length > 0 ? true : undefined));
    await settle();
    expect(eventsFor(collection)).toHaveLength(1);
    const event = eventsFor(collection)[0] as CacheInvalidated;
    expect(event.keys).toEqual(["a", "b"]);
    // Stamped at commit by this node: later than every version it names.
    const eventHlc = hlcFromProto(event.hlc ?? hlcToProto(h1));
    expect(compareHlc(eventHlc, h2)).toBe(1);
    expect(eventHlc.nodeId).toBe("technical-test");
    // (An earlier test let the clock accept a wall time 2 minutes ahead: HLC wall time never goes back.)
    expect(eventHlc.wallTimeMs).toBeGreaterThanOrEqual(Date.now() - 5000);
    expect(event.originNodeId).toBe("technical-test");
    expect(res.appliedCount).toBe(2);

    // Nothing changed: nothing to invalidate.
    await sync(request(collection, [record("a", { n: 1n }, h1)]));
    // Invalid input: INVALID_ARGUMENT naming the field, nothing written.
    const dup = sync(request(collection, [record("c", { n: 3n }, h2), record("c", { n: 4n }, h2)]));
    await expect(dup).rejects.toThrow(InvalidInputError);
    await expect(dup).rejects.toMatchObject({ field: "records[1].key" });
    const backwards = sync(request(collection, [record("c", { n: 3n }, h1, { base: h2 })]));
    await expect(backwards).rejects.toMatchObject({ field: "records[0].hlc" });
    const orphan = record("c", {}, h2);
    orphan.baseFields = fieldsOf({ n: 1n });
    const orphanBase = sync(request(collection, [orphan]));
    await expect(orphanBase).rejects.toMatchObject({ field: "records[0].base_fields" });
    expect(await stored(collection, "c")).toBeNull();
    // A change whose surrounding transaction rolls back publishes nothing.
    await expect(
      db.transaction((em) =>
        runInUnitOfWork(db, em, async () => {
          const r = await sync(request(collection, [record("d", { n: 5n }, h2)]));
          expect(r.records[0]?.outcome).toBe(SyncOutcome.INSERTED);
          throw new Error("a later step failed");
        }),
      ),
    ).rejects.toThrow("a later step failed");
    expect(await stored(collection, "d")).toBeNull();
    await settle();
    await new Promise((r) => setTimeout(r, 200));
    expect(eventsFor(collection)).toHaveLength(1);
    expect(events.every((e) => e.cacheName !== "" && e.keys.length > 0)).toBe(true);
  });

  it("evicts a replicated cache of the collection when a sync commits", async () => {
    const collection = "crm.cached";
    const h1 = hlc(t0, 0, "operations-1");
    await sync(request(collection, [record("k", { stage: "lead" }, h1)]));
    await settle();
    const cache = await createReplicatedCache({
      name: collection,
      bus,
      ttlMs: 60_000,
      maxEntries: 100,
      log,
      load: async (key) => {
        const row = await stored(collection, key);
        return row === null ? undefined : { value: storedPlain(row.fields), hlc: decodeHlc(row.hlc) };
      },
    });
    try {
      expect(await cache.get("k")).toEqual({ stage: "lead" });
      expect(await cache.get("k")).toEqual({ stage: "lead" });
      expect(cache.stats().hits).toBe(1);
      await sync(
        request(collection, [record("k", { stage: "customer" }, hlc(t0 + 1000, 0, "content-1"), { base: h1 })]),
      );
      await eventually(() => (cache.stats().entries === 0 ? true : undefined));
      expect(await cache.get("k")).toEqual({ stage: "customer" });
      expect(cache.stats().loads).toBe(2);
    } finally {
      await cache.close();
    }
  });

  it("stores every field type and NULL", async () => {
    const collection = "crm.types";
    const at = new Date("2025-06-01T14:05:40Z");
    const res = await sync(
      request(collection, [
        record("k", { s: "", i: -9007199254740993n, d: Number.NaN, b: false, t: at, n: null }, hlc(t0, 0, "x")),
      ]),
    );
    expect(res.records[0]?.outcome).toBe(SyncOutcome.INSERTED);
    const row = await stored(collection, "k");
    expect(row?.fields).toEqual({
      s: { stringValue: "" },
      i: { int64Value: "-9007199254740993" },
      d: { doubleValue: "NaN" },
      b: { boolValue: false },
      t: { timestampValue: "2025-06-01T14:05:40Z" },
      n: {},
    });
    const out = plain(res.records[0]?.fields ?? []);
    expect(out.i).toBe(-9007199254740993n);
    expect(out.n).toBeNull();
    expect(Number.isNaN(out.d)).toBe(true);
    // The same values again are the same version content: no conflict.
    const same = await sync(
      request(collection, [
        record("k", { s: "", i: -9007199254740993n, d: Number.NaN, b: false, t: at, n: null }, hlc(t0 + 1, 0, "y")),
      ]),
    );
    expect(same.conflicts).toHaveLength(0);
    expect(same.records[0]?.changedFields).toEqual([]);
  });
});
