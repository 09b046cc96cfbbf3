/**
 * Database synchronisation with conflict resolution (skill `integration.database_sync`).
 *
 * Method: every record version carries a hybrid logical clock (wall ms, counter, node id), whose
 * total order decides precedence. An incoming version derived from the stored one (its base is
 * the stored HLC) fast-forwards without conflict. Otherwise the two are concurrent:
 * - last-writer-wins keeps the whole version with the greater HLC;
 * - field merge compares both against the base version (the request's base fields, else the
 *   stored history at the base HLC, else — base unknown — an empty record): a field changed on one
 *   side only takes that change, a field changed on both sides to different values goes to the
 *   greater HLC; a result combining both sides is a new version stamped by this node's clock.
 *   A tombstone against a concurrent update is decided for the whole record by HLC.
 * Tombstones are kept, so an older version arriving later does not bring a record back. Every
 * conflict is written to the audit log with its resolution. Versions whose wall time leads the
 * local clock by more than the drift limit are rejected; the others advance the node's HLC.
 *
 * Concurrency: the call's keys are locked (transaction-level advisory locks, which also cover keys
 * not stored yet, then SELECT … FOR UPDATE on the stored rows in key order), so concurrent syncs
 * of one key serialise; the rows also carry an optimistic-lock version. The changes, their
 * history, the audit rows and one CacheInvalidated event for the changed keys commit together.
 */
import { createHash, randomUUID } from "node:crypto";
import { create, fromJson, type JsonObject, toJson } from "@bufbuild/protobuf";
import { type Duration, durationMs } from "@bufbuild/protobuf/wkt";
import type { InferEntity } from "@mikro-orm/core";
import { LockMode } from "@mikro-orm/postgresql";
import {
  ConflictResolution,
  ConflictStrategy,
  type MergedRecord,
  MergedRecordSchema,
  type SyncConflict,
  SyncConflictSchema,
  type SyncFieldValue,
  SyncFieldValueSchema,
  type SynchronizeDatabaseRequest,
  type SynchronizeDatabaseResponse,
  SynchronizeDatabaseResponseSchema,
  SyncOutcome,
  type SyncRejection,
  SyncRejectionSchema,
} from "../../../gen/mesh/data/v1/data_service_pb.ts";
import type { Bus } from "../../../lib/bus/index.ts";
import {
  ClockDriftError,
  compareHlc,
  DEFAULT_MAX_DRIFT_MS,
  encodeHlc,
  enqueueInvalidation,
  type Hlc,
  type HybridClock,
  hlcFromProto,
  hlcToProto,
} from "../../../lib/cache/index.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { transaction } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { ConflictAudit, type StoredFields, SyncedRecord, SyncedRecordHistory } from "../entities.ts";

/** Dependencies of the skill. */
export interface SynchronizeDatabaseDeps {
  /** The technical database (the Data agent's domain). */
  db: Database;
  /** The bus, for the invalidation subject prefix. */
  bus: Bus;
  /** Logger. */
  log: Logger;
  /** This node's hybrid logical clock (one per process). */
  clock: HybridClock;
}

/** One field value: its stored JSON (proto JSON without the name) and a canonical text to compare. */
interface Value {
  json: JsonObject;
  canon: string;
}

type Fields = Map<string, Value>;

/** A record version as the algorithm sees it. */
interface Version {
  fields: Fields;
  deleted: boolean;
  hlc: Hlc;
}

/** A validated incoming version. */
interface Incoming extends Version {
  key: string;
  base: Hlc | undefined;
  /** Fields at the base version when the request carries them. */
  baseFields: Fields | undefined;
}

/** A conflict before it is written. */
interface ConflictDraft {
  field: string;
  base: Value | undefined;
  stored: Value | undefined;
  incoming: Value | undefined;
  /** Whole-record states, for record-level conflicts. */
  storedRecord: Version | undefined;
  incomingRecord: Version | undefined;
  baseRecord: Fields | undefined;
  incomingWon: boolean;
  reason: string;
}

/** What happens to one record. */
interface Decision {
  outcome: SyncOutcome;
  /** The resulting version (the stored one when unchanged). */
  result: Version | undefined;
  changed: string[];
  conflicts: ConflictDraft[];
}

const ABSENT = "\u0000absent";
const canonOf = (v: Value | undefined): string => v?.canon ?? ABSENT;

function toValue(json: JsonObject): Value {
  return { json, canon: JSON.stringify(json) };
}

function fieldsFromProto(list: readonly SyncFieldValue[]): Fields {
  const out: Fields = new Map();
  for (const f of list) {
    const json = toJson(SyncFieldValueSchema, create(SyncFieldValueSchema, { value: f.value })) as JsonObject;
    out.set(f.name, toValue(json));
  }
  return out;
}

function fieldsFromStored(stored: StoredFields): Fields {
  const out: Fields = new Map();
  for (const name of Object.keys(stored).sort()) out.set(name, toValue(stored[name] as JsonObject));
  return out;
}

function fieldsToStored(fields: Fields): StoredFields {
  const out: StoredFields = {};
  for (const [name, v] of fields) out[name] = v.json;
  return out;
}

function valueToProto(name: string, v: Value): SyncFieldValue {
  return fromJson(SyncFieldValueSchema, { ...v.json, name });
}

function fieldsToProto(fields: Fields): SyncFieldValue[] {
  return [...fields.keys()].sort().map((name) => valueToProto(name, fields.get(name) as Value));
}

function recordJson(v: Version | undefined): JsonObject | null {
  return v === undefined ? null : { deleted: v.deleted, fields: fieldsToStored(v.fields) as JsonObject };
}

/** Names whose value differs between two versions (a deleted record has no fields). */
function changedFields(before: Version | undefined, after: Version): string[] {
  const a = before === undefined || before.deleted ? new Map<string, Value>() : before.fields;
  const b = after.deleted ? new Map<string, Value>() : after.fields;
  const names = new Set([...a.keys(), ...b.keys()]);
  return [...names].filter((n) => canonOf(a.get(n)) !== canonOf(b.get(n))).sort();
}

function sameContent(a: Version, b: Version): boolean {
  return a.deleted === b.deleted && changedFields(a, b).length === 0;
}

/** Why one HLC beats the other, for the audit log. */
function precedence(incoming: Hlc, stored: Hlc): { incomingWon: boolean; reason: string } {
  const incomingWon = compareHlc(incoming, stored) > 0;
  const side = incomingWon ? "incoming" : "stored";
  if (incoming.wallTimeMs !== stored.wallTimeMs) return { incomingWon, reason: `${side} HLC is later` };
  if (incoming.logical !== stored.logical) {
    return { incomingWon, reason: `equal wall time, ${side} logical counter is higher` };
  }
  const [win, lose] = incomingWon ? [incoming, stored] : [stored, incoming];
  return { incomingWon, reason: `equal wall time, node id tie-break (${win.nodeId} > ${lose.nodeId})` };
}

/** Validates what protovalidate cannot express; throws InvalidInputError naming the field. */
function parseRecords(req: SynchronizeDatabaseRequest): Incoming[] {
  if (req.strategy !== ConflictStrategy.LAST_WRITER_WINS && req.strategy !== ConflictStrategy.FIELD_MERGE) {
    throw new InvalidInputError(
      "strategy",
      "must be CONFLICT_STRATEGY_LAST_WRITER_WINS or CONFLICT_STRATEGY_FIELD_MERGE",
    );
  }
  if (req.collection === "") throw new InvalidInputError("collection", "must not be empty");
  const seen = new Map<string, number>();
  return req.records.map((r, index) => {
    const at = `records[${index}]`;
    const first = seen.get(r.key);
    if (first !== undefined) throw new InvalidInputError(`${at}.key`, `repeats records[${first}].key "${r.key}"`);
    seen.set(r.key, index);
    if (r.hlc === undefined) throw new InvalidInputError(`${at}.hlc`, "is required");
    const parse = (m: NonNullable<typeof r.hlc>, path: string): Hlc => {
      try {
        return hlcFromProto(m);
      } catch (err) {
        throw new InvalidInputError(path, (err as Error).message);
      }
    };
    const hlc = parse(r.hlc, `${at}.hlc`);
    const base = r.baseVersion === undefined ? undefined : parse(r.baseVersion, `${at}.base_version`);
    if (base !== undefined && compareHlc(hlc, base) <= 0) {
      throw new InvalidInputError(`${at}.hlc`, "must be later than base_version (a version follows its base)");
    }
    if (r.baseFields.length > 0 && base === undefined) {
      throw new InvalidInputError(`${at}.base_fields`, "given without base_version");
    }
    const names = new Set<string>();
    r.baseFields.forEach((f, i) => {
      if (names.has(f.name)) throw new InvalidInputError(`${at}.base_fields[${i}].name`, `repeats "${f.name}"`);
      names.add(f.name);
    });
    return {
      key: r.key,
      // A tombstone has no fields, whatever it carried.
      fields: r.deleted ? new Map() : fieldsFromProto(r.fields),
      deleted: r.deleted,
      hlc,
      base,
      baseFields: r.baseFields.length > 0 ? fieldsFromProto(r.baseFields) : undefined,
    };
  });
}

/** Record-level resolution (last-writer-wins, or a tombstone against a concurrent update). */
function resolveWhole(stored: Version, inc: Incoming, why: string, base: Fields | undefined): Decision {
  if (sameContent(stored, inc)) {
    // The same change made on both sides is no conflict; the greater HLC keeps both sides converging.
    if (compareHlc(inc.hlc, stored.hlc) <= 0)
      return { outcome: SyncOutcome.UNCHANGED, result: stored, changed: [], conflicts: [] };
    const result = { fields: inc.fields, deleted: inc.deleted, hlc: inc.hlc };
    return { outcome: inc.deleted ? SyncOutcome.DELETED : SyncOutcome.UPDATED, result, changed: [], conflicts: [] };
  }
  const p = precedence(inc.hlc, stored.hlc);
  const conflict: ConflictDraft = {
    field: "",
    base: undefined,
    stored: undefined,
    incoming: undefined,
    storedRecord: stored,
    incomingRecord: inc,
    baseRecord: base,
    incomingWon: p.incomingWon,
    reason: `${why}${p.incomingWon ? "" : "stale version: "}${p.reason}`,
  };
  if (!p.incomingWon) return { outcome: SyncOutcome.UNCHANGED, result: stored, changed: [], conflicts: [conflict] };
  const result = { fields: inc.fields, deleted: inc.deleted, hlc: inc.hlc };
  return {
    outcome: inc.deleted ? SyncOutcome.DELETED : SyncOutcome.UPDATED,
    result,
    changed: changedFields(stored, result),
    conflicts: [conflict],
  };
}

/**
 * Decides one record. `base` is the base version's fields when known; `stamp` issues a new HLC
 * later than the stored one (for merged versions).
 */
function decide(
  strategy: ConflictStrategy,
  stored: Version | undefined,
  inc: Incoming,
  base: Fields | undefined,
  stamp: (stored: Hlc) => Hlc,
): Decision {
  if (stored === undefined) {
    const result = { fields: inc.fields, deleted: inc.deleted, hlc: inc.hlc };
    return {
      outcome: inc.deleted ? SyncOutcome.DELETED : SyncOutcome.INSERTED,
      result,
      changed: changedFields(undefined, result),
      conflicts: [],
    };
  }
  // The same version again (a replay from another path): nothing to do.
  if (compareHlc(inc.hlc, stored.hlc) === 0) {
    return { outcome: SyncOutcome.UNCHANGED, result: stored, changed: [], conflicts: [] };
  }
  const merge = strategy === ConflictStrategy.FIELD_MERGE;
  // Derived from the stored version: a fast-forward, no conflict.
  if (inc.base !== undefined && compareHlc(inc.base, stored.hlc) === 0) {
    const fields = merge && !inc.deleted && !stored.deleted ? new Map([...stored.fields, ...inc.fields]) : inc.fields;
    const result = { fields, deleted: inc.deleted, hlc: inc.hlc };
    return {
      outcome: inc.deleted ? SyncOutcome.DELETED : SyncOutcome.UPDATED,
      result,
      changed: changedFields(stored, result),
      conflicts: [],
    };
  }
  if (!merge) return resolveWhole(stored, inc, "", base);
  if (inc.deleted || stored.deleted) {
    if (inc.deleted && stored.deleted) return resolveWhole(stored, inc, "", base);
    return resolveWhole(stored, inc, "delete conflicts with a concurrent update; ", base);
  }

  // Three-way merge against the base (an unknown base compares as an empty record).
  const baseFields = base ?? new Map<string, Value>();
  const unknownBase = base === undefined ? " (base version unknown: compared as a new record)" : "";
  const fields = new Map(stored.fields);
  const taken = new Set<string>();
  const conflicts: ConflictDraft[] = [];
  for (const [name, iv] of inc.fields) {
    const bv = baseFields.get(name);
    const sv = stored.fields.get(name);
    if (canonOf(iv) === canonOf(bv)) continue;
    if (canonOf(sv) === canonOf(bv)) {
      fields.set(name, iv);
      taken.add(name);
      continue;
    }
    if (canonOf(sv) === canonOf(iv)) continue;
    const p = precedence(inc.hlc, stored.hlc);
    conflicts.push({
      field: name,
      base: bv,
      stored: sv,
      incoming: iv,
      storedRecord: undefined,
      incomingRecord: undefined,
      baseRecord: undefined,
      incomingWon: p.incomingWon,
      reason: `field changed on both sides; ${p.reason}${unknownBase}`,
    });
    if (p.incomingWon) {
      fields.set(name, iv);
      taken.add(name);
    }
  }
  if (taken.size === 0) return { outcome: SyncOutcome.UNCHANGED, result: stored, changed: [], conflicts };
  const names = new Set([...stored.fields.keys(), ...baseFields.keys()]);
  const storedContributes = [...names].some(
    (n) => !taken.has(n) && canonOf(stored.fields.get(n)) !== canonOf(baseFields.get(n)),
  );
  if (!storedContributes && compareHlc(inc.hlc, stored.hlc) > 0) {
    const result = { fields, deleted: false, hlc: inc.hlc };
    return { outcome: SyncOutcome.UPDATED, result, changed: changedFields(stored, result), conflicts };
  }
  // Both sides contribute: a version neither had, later than both.
  const result = { fields, deleted: false, hlc: stamp(stored.hlc) };
  return { outcome: SyncOutcome.MERGED, result, changed: changedFields(stored, result), conflicts };
}

/** A 64-bit advisory-lock id of a name. */
function lockId(...parts: string[]): bigint {
  const hex = createHash("sha256")
    .update(["mesh.data.sync", ...parts].join("\u0000"))
    .digest("hex");
  return BigInt.asIntN(64, BigInt(`0x${hex.slice(0, 16)}`));
}

/** Calls with more keys lock the whole collection (advisory locks use PostgreSQL's bounded lock table). */
const maxKeyLocks = 64;

/**
 * Locks the keys for the rest of the transaction. A lock hierarchy: a call takes the collection's
 * lock, shared when it then locks its few keys one by one (in id order), exclusive when it has
 * many; so overlapping calls serialise per key and can never deadlock. Advisory locks also cover
 * keys not stored yet, which a row lock cannot.
 */
async function lockKeys(em: EntityManager, collection: string, keys: readonly string[]): Promise<void> {
  const conn = em.getConnection();
  const tx = em.getTransactionContext();
  const whole = lockId("collection", collection).toString();
  const ids = [...new Set(keys.map((k) => lockId("key", collection, k)))];
  if (ids.length > maxKeyLocks) {
    await conn.execute("select pg_advisory_xact_lock(?::bigint)", [whole], "all", tx);
    return;
  }
  await conn.execute("select pg_advisory_xact_lock_shared(?::bigint)", [whole], "all", tx);
  ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  await conn.execute(
    "select count(pg_advisory_xact_lock(k::bigint)) as n from jsonb_array_elements_text(?::jsonb) as k",
    [JSON.stringify(ids.map(String))],
    "all",
    tx,
  );
}

type StoredRow = InferEntity<typeof SyncedRecord>;

function versionOf(row: StoredRow): Version {
  return {
    fields: fieldsFromStored(row.fields),
    deleted: row.deleted,
    hlc: { wallTimeMs: Number(row.hlcWallMs), logical: row.hlcLogical, nodeId: row.hlcNode },
  };
}

/** Runs database synchronisation on a validated request. */
export async function synchronizeDatabase(
  deps: SynchronizeDatabaseDeps,
  req: SynchronizeDatabaseRequest,
): Promise<SynchronizeDatabaseResponse> {
  const records = parseRecords(req);
  const { collection } = req;
  const dryRun = req.dryRun;
  const maxDriftMs = req.maxClockDrift === undefined ? DEFAULT_MAX_DRIFT_MS : durationMs(req.maxClockDrift as Duration);
  // A dry run works on a copy of the clock: it computes the same result and changes nothing.
  const clock = dryRun ? deps.clock.fork() : deps.clock;
  const keys = records.map((r) => r.key);

  return transaction(deps.db, async (em) => {
    if (!dryRun) await lockKeys(em, collection, keys);
    const rows = await em.find(
      SyncedRecord,
      { collection, key: { $in: keys } },
      dryRun ? {} : { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true, orderBy: { key: "asc" } },
    );
    const byKey = new Map(rows.map((r) => [r.key, r]));

    // Base fields the request does not carry come from the history of concurrent records.
    const wanted = records.filter(
      (r) =>
        req.strategy === ConflictStrategy.FIELD_MERGE &&
        r.base !== undefined &&
        r.baseFields === undefined &&
        byKey.has(r.key) &&
        byKey.get(r.key)?.hlc !== encodeHlc(r.base),
    );
    const history = new Map<string, Fields>();
    if (wanted.length > 0) {
      const found = await em.find(SyncedRecordHistory, {
        collection,
        key: { $in: wanted.map((r) => r.key) },
        hlc: { $in: wanted.map((r) => encodeHlc(r.base as Hlc)) },
      });
      for (const h of found) history.set(`${h.key}\u0000${h.hlc}`, fieldsFromStored(h.fields));
    }

    const merged: MergedRecord[] = [];
    const conflicts: SyncConflict[] = [];
    const rejections: SyncRejection[] = [];
    const changedKeys: string[] = [];
    let applied = 0;
    let unchanged = 0;

    for (const inc of records) {
      const row = byKey.get(inc.key);
      const stored = row === undefined ? undefined : versionOf(row);
      try {
        clock.receive(inc.hlc, { maxDriftMs });
      } catch (err) {
        if (!(err instanceof ClockDriftError)) throw err;
        rejections.push(create(SyncRejectionSchema, { key: inc.key, reason: err.message }));
        merged.push(
          create(MergedRecordSchema, {
            key: inc.key,
            outcome: SyncOutcome.REJECTED,
            ...(stored === undefined
              ? {}
              : { fields: fieldsToProto(stored.fields), hlc: hlcToProto(stored.hlc), deleted: stored.deleted }),
          }),
        );
        continue;
      }
      const base =
        inc.baseFields ?? (inc.base === undefined ? undefined : history.get(`${inc.key}\u0000${encodeHlc(inc.base)}`));
      // Stored versions are trusted (already accepted), so no drift limit applies to them here.
      const stamp = (s: Hlc): Hlc => clock.receive(s, { maxDriftMs: Number.POSITIVE_INFINITY });
      const d = decide(req.strategy, stored, inc, base, stamp);
      const result = d.result as Version;
      const changes = d.outcome !== SyncOutcome.UNCHANGED;

      if (changes && !dryRun) {
        const data = {
          fields: fieldsToStored(result.deleted ? new Map() : result.fields),
          hlc: encodeHlc(result.hlc),
          hlcWallMs: result.hlc.wallTimeMs,
          hlcLogical: result.hlc.logical,
          hlcNode: result.hlc.nodeId,
          deleted: result.deleted,
        };
        if (row === undefined) {
          em.create(SyncedRecord, { collection, key: inc.key, ...data });
        } else {
          em.assign(row, { ...data, updatedAt: new Date() });
        }
        em.create(SyncedRecordHistory, {
          collection,
          key: inc.key,
          hlc: data.hlc,
          fields: data.fields,
          deleted: data.deleted,
          requestId: req.requestId,
        });
      }
      if (changes) {
        changedKeys.push(inc.key);
        applied++;
      } else {
        unchanged++;
      }

      for (const c of d.conflicts) {
        const auditId = dryRun ? "" : randomUUID();
        const winning = c.incomingWon ? inc.hlc : (stored as Version).hlc;
        const losing = c.incomingWon ? (stored as Version).hlc : inc.hlc;
        if (!dryRun) {
          const record = c.field === "";
          em.create(ConflictAudit, {
            id: auditId,
            collection,
            key: inc.key,
            field: c.field,
            storedValue: record ? recordJson(c.storedRecord) : (c.stored?.json ?? null),
            incomingValue: record ? recordJson(c.incomingRecord) : (c.incoming?.json ?? null),
            baseValue: record
              ? c.baseRecord === undefined
                ? null
                : (fieldsToStored(c.baseRecord) as JsonObject)
              : (c.base?.json ?? null),
            winner: c.incomingWon ? "incoming" : "stored",
            winningHlc: encodeHlc(winning),
            losingHlc: encodeHlc(losing),
            reason: c.reason,
            requestId: req.requestId,
          });
        }
        conflicts.push(
          create(SyncConflictSchema, {
            key: inc.key,
            fieldName: c.field,
            ...(c.base === undefined ? {} : { baseValue: valueToProto(c.field, c.base) }),
            ...(c.stored === undefined ? {} : { storedValue: valueToProto(c.field, c.stored) }),
            ...(c.incoming === undefined ? {} : { incomingValue: valueToProto(c.field, c.incoming) }),
            resolution: c.incomingWon ? ConflictResolution.INCOMING_APPLIED : ConflictResolution.STORED_KEPT,
            winningHlc: hlcToProto(winning),
            losingHlc: hlcToProto(losing),
            reason: c.reason,
            auditEntryId: auditId,
          }),
        );
      }

      merged.push(
        create(MergedRecordSchema, {
          key: inc.key,
          fields: result.deleted ? [] : fieldsToProto(result.fields),
          hlc: hlcToProto(result.hlc),
          outcome: d.outcome,
          deleted: result.deleted,
          changedFields: d.changed,
        }),
      );
    }

    if (!dryRun && changedKeys.length > 0) {
      // Every server's cache of the collection drops these keys once the change commits. The
      // clock has received or stamped every new version, so now() is later than all of them.
      enqueueInvalidation(deps.db, em, deps.bus.prefix, collection, changedKeys, clock.now(), clock.nodeId);
    }
    deps.log.debug("database sync", {
      collection,
      records: records.length,
      applied,
      unchanged,
      conflicts: conflicts.length,
      rejected: rejections.length,
      dryRun,
    });
    return create(SynchronizeDatabaseResponseSchema, {
      records: merged,
      conflicts,
      rejections,
      nodeClock: hlcToProto(clock.peek()),
      appliedCount: applied,
      unchangedCount: unchanged,
      conflictCount: conflicts.length,
    });
  });
}
