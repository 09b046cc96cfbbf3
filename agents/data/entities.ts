/**
 * Tables of the Data agent's database synchronisation, in the technical schema: the synchronised
 * records, every version they went through, and the audit log of conflicts.
 *
 * Field values are stored as JSON objects keyed by field name, each value the protobuf JSON of a
 * `SyncFieldValue` without its name (`{"stringValue": "…"}`, `{"int64Value": "72"}`, `{}` for NULL).
 */
import { defineEntity, p } from "@mikro-orm/postgresql";

/** Field values by name, each the proto JSON of a SyncFieldValue without `name`. */
export type StoredFields = Record<string, Record<string, unknown>>;

/** The current version of one record of a collection (a tombstone when deleted). */
export const SyncedRecord = defineEntity({
  name: "SyncedRecord",
  tableName: "synced_record",
  uniques: [{ properties: ["collection", "key"] }],
  indexes: [{ properties: ["collection", "hlc"] }],
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    /** Collection, for example `crm.contacts`. */
    collection: p.string().length(127),
    /** Primary key within the collection. */
    key: p.string().length(256),
    fields: p.json<StoredFields>(),
    /** Encoded HLC of this version (text order = HLC order; up to 27 + 2 × 256 UTF-8 bytes of node id). */
    hlc: p.string().length(540),
    hlcWallMs: p.bigint("number"),
    hlcLogical: p.integer(),
    hlcNode: p.string().length(64),
    /** A tombstone: kept so an older version arriving later cannot bring the record back. */
    deleted: p.boolean().default(false),
    updatedAt: p.datetime().onCreate(() => new Date()),
    version: p.integer().version(),
  },
});

/** Every version a record took, so a later three-way merge can read the fields of its base. */
export const SyncedRecordHistory = defineEntity({
  name: "SyncedRecordHistory",
  tableName: "synced_record_history",
  uniques: [{ properties: ["collection", "key", "hlc"] }],
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    collection: p.string().length(127),
    key: p.string().length(256),
    /** Encoded HLC of the version. */
    hlc: p.string().length(540),
    fields: p.json<StoredFields>(),
    deleted: p.boolean().default(false),
    /** The sync call that wrote it (its request_id). */
    requestId: p.string().length(64),
    createdAt: p.datetime().onCreate(() => new Date()),
  },
});

/**
 * One conflict between a stored and an incoming version and its resolution. For a field conflict
 * the value columns hold the field's value; for a whole-record conflict (last-writer-wins, or a
 * tombstone against an update) they hold `{"deleted": bool, "fields": {…}}`.
 */
export const ConflictAudit = defineEntity({
  name: "ConflictAudit",
  tableName: "sync_conflict_audit",
  indexes: [{ properties: ["collection", "key", "createdAt"] }, { properties: ["requestId"] }],
  properties: {
    id: p.uuid().primary(),
    collection: p.string().length(127),
    key: p.string().length(256),
    /** Field in conflict; empty for a whole-record conflict. */
    field: p.string().length(63).default(""),
    storedValue: p.json<Record<string, unknown>>().nullable(),
    incomingValue: p.json<Record<string, unknown>>().nullable(),
    /** Value at the base version; null when the base is unknown. */
    baseValue: p.json<Record<string, unknown>>().nullable(),
    /** `incoming` or `stored`. */
    winner: p.string().length(8),
    /** Encoded HLCs of the winning and losing versions. */
    winningHlc: p.string().length(540),
    losingHlc: p.string().length(540),
    reason: p.text(),
    /** The sync call's request_id. */
    requestId: p.string().length(64),
    createdAt: p.datetime().onCreate(() => new Date()),
  },
});

/** Entities of the Data agent (technical schema). */
export const dataEntities = [SyncedRecord, SyncedRecordHistory, ConflictAudit] as const;
