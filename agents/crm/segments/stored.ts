/**
 * Stored (dynamic) segments: definitions in `crm_segment`, membership materialised in
 * `crm_segment_member` (segment key, contact id, joined at).
 *
 * - Full evaluation (SaveSegment, EvaluateSegment) is one SQL statement: the members the rule tree
 *   selects, a DELETE of the rows no longer selected and an INSERT … SELECT of the new ones, as
 *   data-modifying CTEs that return the changed contacts with their city and region; each change
 *   becomes a SegmentMembershipChanged event in the outbox of the same transaction.
 * - Incremental evaluation (on an event about one contact) evaluates every stored segment's tree
 *   for that contact alone (the same compiled SQL restricted to its id) and applies the difference
 *   with INSERT … ON CONFLICT DO NOTHING / DELETE … RETURNING, so each join and leave is announced
 *   exactly once even when two events about the contact are handled at the same time.
 * - Time: a segment whose tree has windows or relative dates also records when time alone may next
 *   change its membership (`next_evaluation_at`, next-change.ts); the scheduler (schedule.ts) runs
 *   the full evaluation then. Every full evaluation sets it, and an event whose contact brings the
 *   instant forward (a back-dated interaction) moves it earlier in the same transaction.
 */
import { randomUUID } from "node:crypto";
import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { SegmentMembershipChange, SegmentMembershipChangedSchema } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  type EvaluateSegmentRequest,
  EvaluateSegmentRequestSchema,
  type EvaluateSegmentResponse,
  EvaluateSegmentResponseSchema,
  type GetSegmentRequest,
  GetSegmentRequestSchema,
  type GetSegmentResponse,
  GetSegmentResponseSchema,
  type ListSegmentMembersRequest,
  ListSegmentMembersRequestSchema,
  type ListSegmentMembersResponse,
  ListSegmentMembersResponseSchema,
  type ListSegmentsRequest,
  ListSegmentsRequestSchema,
  type ListSegmentsResponse,
  ListSegmentsResponseSchema,
  type SaveSegmentRequest,
  SaveSegmentRequestSchema,
  type SaveSegmentResponse,
  SaveSegmentResponseSchema,
  type SegmentDefinition,
  SegmentDefinitionSchema,
  type StoredSegment,
  StoredSegmentSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Bus, enqueueEvent } from "../../../lib/bus/index.ts";
import { type Database, type EntityManager, transaction } from "../../../lib/db/index.ts";
import { checkContract, NotFoundError } from "../../../lib/errors/index.ts";
import { SegmentMembershipChanged } from "../events.ts";
import { compileCondition } from "./compile.ts";
import { CrmSegmentMembershipChange } from "./entities.ts";
import {
  contactNextChangeSql,
  defaultRecheckLimits,
  dueAfter,
  type RecheckLimits,
  segmentNextChangeSql,
  timeDependence,
} from "./next-change.ts";
import type { SqlFragment } from "./sql.ts";
import { decodeKeyToken, encodeKeyToken } from "./token.ts";

/** What stored segments need. */
export interface StoredSegmentDeps {
  readonly db: Database;
  readonly bus: Pick<Bus, "prefix">;
  readonly now: () => Date;
  /** Spacing of scheduled re-evaluations of time-relative segments (default {@link defaultRecheckLimits}). */
  readonly recheck?: RecheckLimits;
}

/** Page size of the segment lists when the request says 0. */
export const defaultListPageSize = 50;
const keyPattern = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** One stored row of `crm_segment`. */
export interface SegmentRow {
  key: string;
  definition: JsonValue;
  version: number;
  created_at: Date;
  updated_at: Date;
  evaluated_at: Date | null;
  next_evaluation_at: Date | null;
}

/** The columns of a {@link SegmentRow}. */
export const segmentColumns = "key, definition, version, created_at, updated_at, evaluated_at, next_evaluation_at";

/** The market key of a city and region: lower-cased `city|region`, "" without a city (as lead scoring keys it). */
export function marketKey(city: string, region: string): string {
  const c = city.trim().toLowerCase();
  return c === "" ? "" : `${c}|${region.trim().toLowerCase()}`;
}

/** What caused an evaluation, for the events. */
export interface Cause {
  readonly subject: string;
  readonly msgId: string;
}

/** One membership change with the contact's location. */
interface Change {
  change: "joined" | "left";
  id: string;
  city: string | null;
  region: string | null;
}

const cityExpr = "coalesce(nullif(c.city, ''), c.address->>'locality', '')";
const regionExpr = "coalesce(nullif(c.region, ''), c.address->>'region', '')";

/** Adds one SegmentMembershipChanged event per change to the transaction's outbox. */
function announce(
  deps: StoredSegmentDeps,
  em: EntityManager,
  key: string,
  version: number,
  changes: readonly Change[],
  at: Date,
  cause: Cause,
): void {
  for (const ch of changes) {
    const city = ch.city ?? "";
    const region = ch.region ?? "";
    const change = ch.change === "joined" ? SegmentMembershipChange.JOINED : SegmentMembershipChange.LEFT;
    // The append-only history the contact timeline reads, in the same transaction as the event.
    em.create(CrmSegmentMembershipChange, {
      id: randomUUID(),
      segmentKey: key,
      contactId: ch.id,
      action: ch.change,
      segmentVersion: version,
      cause: cause.subject.slice(0, 200),
      changedAt: at,
    });
    enqueueEvent(
      deps.db,
      em,
      deps.bus.prefix,
      SegmentMembershipChanged,
      create(SegmentMembershipChangedSchema, {
        segmentKey: key,
        contactId: ch.id,
        change,
        city,
        region,
        market: marketKey(city, region),
        segmentVersion: BigInt(version),
        changedAt: timestampFromDate(at),
        cause: cause.subject,
        causeMessageId: cause.msgId,
      }),
      { msgId: `segment.${key}.${ch.id}.${ch.change}.${cause.msgId === "" ? at.getTime() : cause.msgId}` },
    );
  }
}

/** The stored segment message of a row, with its member count. */
async function storedOf(em: EntityManager, schema: string, row: SegmentRow): Promise<StoredSegment> {
  const n = (await em.execute(`select count(*)::int as n from ${schema}."crm_segment_member" where segment_key = ?`, [
    row.key,
  ])) as { n: number }[];
  return create(StoredSegmentSchema, {
    definition: fromJson(SegmentDefinitionSchema, row.definition),
    version: BigInt(row.version),
    memberCount: BigInt(n[0]?.n ?? 0),
    createdAt: timestampFromDate(new Date(row.created_at)),
    updatedAt: timestampFromDate(new Date(row.updated_at)),
    ...(row.evaluated_at === null ? {} : { evaluatedAt: timestampFromDate(new Date(row.evaluated_at)) }),
    ...(row.next_evaluation_at === null
      ? {}
      : { nextEvaluationAt: timestampFromDate(new Date(row.next_evaluation_at)) }),
  });
}

async function loadRow(em: EntityManager, schema: string, key: string, lock = false): Promise<SegmentRow> {
  const rows = (await em.execute(
    `select ${segmentColumns} from ${schema}."crm_segment" where key = ?${lock ? " for update" : ""}`,
    [key],
  )) as SegmentRow[];
  const row = rows[0];
  if (row === undefined) throw new NotFoundError(`no stored segment has key ${key}`);
  return row;
}

/**
 * Evaluates `condition` over every stored contact and applies the difference to the segment's
 * members in one statement; returns the changes.
 */
export async function evaluateAll(
  em: EntityManager,
  schema: string,
  key: string,
  condition: SqlFragment,
  at: Date,
): Promise<Change[]> {
  const sql =
    `with m as (select c.id from ${schema}."crm_contact" c where c.merged_into_id is null and coalesce(${condition.sql}, false)), ` +
    `gone as (delete from ${schema}."crm_segment_member" sm where sm.segment_key = ? and not exists (select 1 from m where m.id = sm.contact_id) returning sm.contact_id), ` +
    `came as (insert into ${schema}."crm_segment_member" (segment_key, contact_id, joined_at) select ?, m.id, ?::timestamptz from m ` +
    `on conflict (segment_key, contact_id) do nothing returning contact_id), ` +
    `ch as (select 'joined' as change, contact_id from came union all select 'left' as change, contact_id from gone) ` +
    `select ch.change, ch.contact_id as id, ${cityExpr} as city, ${regionExpr} as region from ch left join ${schema}."crm_contact" c on c.id = ch.contact_id`;
  // JIT compilation costs more than it saves on these plans (see rules.ts).
  await em.execute("set local jit = off");
  return (await em.execute(sql, [...condition.params, key, key, at.toISOString()])) as Change[];
}

/** Compiles a stored or requested definition (INVALID_ARGUMENT naming `path` on a malformed tree). */
function compileDefinition(def: SegmentDefinition, path: string, schema: string, asOf: Date): SqlFragment {
  return compileCondition(def.condition, `${path}.condition`, { asOf, schema });
}

/** The due time of a segment just evaluated at `at` (its members as stored now), or null. */
async function nextDue(
  deps: StoredSegmentDeps,
  em: EntityManager,
  key: string,
  def: SegmentDefinition,
  at: Date,
): Promise<Date | null> {
  const dependence = timeDependence(def.condition);
  const q = segmentNextChangeSql(def.condition, key, { schema: `"${deps.db.schema}"`, asOf: at });
  const next =
    q === undefined ? null : (((await em.execute(q.sql, [...q.params])) as { next: number | null }[])[0]?.next ?? null);
  return dueAfter(dependence, next, at, deps.recheck ?? defaultRecheckLimits);
}

/**
 * Runs a full evaluation of a stored row, records it with the segment's next due time, and
 * announces each change with `cause` (`full` for SaveSegment and EvaluateSegment, `schedule` for
 * the scheduler); returns joins and leaves. The caller holds the segment's row lock.
 */
export async function runFull(
  deps: StoredSegmentDeps,
  em: EntityManager,
  row: SegmentRow,
  def: SegmentDefinition,
  cause: Cause = { subject: "full", msgId: "" },
): Promise<{ joined: number; left: number }> {
  const schema = `"${deps.db.schema}"`;
  const at = deps.now();
  const changes = await evaluateAll(em, schema, row.key, compileDefinition(def, "segment", schema, at), at);
  const due = await nextDue(deps, em, row.key, def, at);
  await em.execute(`update ${schema}."crm_segment" set evaluated_at = ?, next_evaluation_at = ? where key = ?`, [
    at,
    due,
    row.key,
  ]);
  announce(deps, em, row.key, row.version, changes, at, cause);
  return {
    joined: changes.filter((c) => c.change === "joined").length,
    left: changes.filter((c) => c.change === "left").length,
  };
}

/** SaveSegment: validates, stores (create or replace by key) and fully evaluates a segment. */
export async function saveSegment(deps: StoredSegmentDeps, req: SaveSegmentRequest): Promise<SaveSegmentResponse> {
  checkContract(SaveSegmentRequestSchema, req);
  const def = req.segment;
  if (def === undefined) throw new NotFoundError("segment is required");
  const schema = `"${deps.db.schema}"`;
  // Validate before anything is written: a malformed tree stores nothing.
  compileDefinition(def, "segment", schema, deps.now());
  return transaction(deps.db, async (em) => {
    const now = deps.now();
    await em.execute(
      `insert into ${schema}."crm_segment" (key, name, definition, version, created_at, updated_at) values (?, ?, ?::jsonb, 1, ?, ?) ` +
        `on conflict (key) do update set name = excluded.name, definition = excluded.definition, version = ${schema}."crm_segment".version + 1, updated_at = excluded.updated_at`,
      [def.key, def.name, JSON.stringify(toJson(SegmentDefinitionSchema, def)), now, now],
    );
    const row = await loadRow(em, schema, def.key, true);
    const { joined, left } = await runFull(deps, em, row, def);
    return create(SaveSegmentResponseSchema, {
      segment: await storedOf(em, schema, await loadRow(em, schema, def.key)),
      joinedCount: BigInt(joined),
      leftCount: BigInt(left),
    });
  });
}

/** EvaluateSegment: a full re-evaluation of a stored segment. */
export async function evaluateSegment(
  deps: StoredSegmentDeps,
  req: EvaluateSegmentRequest,
): Promise<EvaluateSegmentResponse> {
  checkContract(EvaluateSegmentRequestSchema, req);
  const schema = `"${deps.db.schema}"`;
  return transaction(deps.db, async (em) => {
    const row = await loadRow(em, schema, req.key, true);
    const { joined, left } = await runFull(deps, em, row, fromJson(SegmentDefinitionSchema, row.definition));
    return create(EvaluateSegmentResponseSchema, {
      segment: await storedOf(em, schema, await loadRow(em, schema, req.key)),
      joinedCount: BigInt(joined),
      leftCount: BigInt(left),
    });
  });
}

/** GetSegment. */
export async function getSegment(
  deps: Pick<StoredSegmentDeps, "db">,
  req: GetSegmentRequest,
): Promise<GetSegmentResponse> {
  checkContract(GetSegmentRequestSchema, req);
  const schema = `"${deps.db.schema}"`;
  const em = deps.db.fork();
  return create(GetSegmentResponseSchema, { segment: await storedOf(em, schema, await loadRow(em, schema, req.key)) });
}

/** ListSegments: stored segments by key, in keyset pages. */
export async function listSegments(
  deps: Pick<StoredSegmentDeps, "db">,
  req: ListSegmentsRequest,
): Promise<ListSegmentsResponse> {
  checkContract(ListSegmentsRequestSchema, req);
  const schema = `"${deps.db.schema}"`;
  const size = req.pageSize === 0 ? defaultListPageSize : req.pageSize;
  const after = decodeKeyToken("segments", req.pageToken, keyPattern);
  const em = deps.db.fork();
  const rows = (await em.execute(
    `select ${segmentColumns} from ${schema}."crm_segment"` +
      `${after === undefined ? "" : " where key > ?"} order by key limit ?`,
    [...(after === undefined ? [] : [after]), size + 1],
  )) as SegmentRow[];
  const page = rows.slice(0, size);
  const segments: StoredSegment[] = [];
  for (const r of page) segments.push(await storedOf(em, schema, r));
  const last = page.at(-1);
  return create(ListSegmentsResponseSchema, {
    segments,
    nextPageToken: rows.length > size && last !== undefined ? encodeKeyToken("segments", last.key) : "",
  });
}

/** ListSegmentMembers: current members of a stored segment by contact id, in keyset pages. */
export async function listSegmentMembers(
  deps: Pick<StoredSegmentDeps, "db">,
  req: ListSegmentMembersRequest,
): Promise<ListSegmentMembersResponse> {
  checkContract(ListSegmentMembersRequestSchema, req);
  const schema = `"${deps.db.schema}"`;
  const size = req.pageSize === 0 ? defaultListPageSize : req.pageSize;
  const scope = `segment-members:${req.key}`;
  const after = decodeKeyToken(scope, req.pageToken, uuidPattern);
  const em = deps.db.fork();
  await loadRow(em, schema, req.key);
  const rows = (await em.execute(
    `select contact_id, joined_at from ${schema}."crm_segment_member" where segment_key = ?` +
      `${after === undefined ? "" : " and contact_id > ?::uuid"} order by contact_id limit ?`,
    [req.key, ...(after === undefined ? [] : [after]), size + 1],
  )) as { contact_id: string; joined_at: Date }[];
  const page = rows.slice(0, size);
  const last = page.at(-1);
  return create(ListSegmentMembersResponseSchema, {
    members: page.map((r) => ({ contactId: r.contact_id, joinedAt: timestampFromDate(new Date(r.joined_at)) })),
    nextPageToken: rows.length > size && last !== undefined ? encodeKeyToken(scope, last.contact_id) : "",
  });
}

/**
 * Re-evaluates every stored segment for one contact and applies the difference, announcing each
 * join and leave; a contact merged away or gone leaves every segment. Returns the changes.
 */
export async function reevaluateContact(
  deps: StoredSegmentDeps,
  em: EntityManager,
  contactId: string,
  cause: Cause,
): Promise<{ key: string; change: "joined" | "left" }[]> {
  const schema = `"${deps.db.schema}"`;
  const at = deps.now();
  const segments = (await em.execute(
    `select key, definition, version from ${schema}."crm_segment" order by key`,
  )) as Pick<SegmentRow, "key" | "definition" | "version">[];
  if (segments.length === 0) return [];
  const defs = segments.map((s) => fromJson(SegmentDefinitionSchema, s.definition));
  const compiled = defs.map((d) => compileDefinition(d, "segment", schema, at));
  // This contact's next time-driven change per segment (null where the tree does not depend on time).
  const next = defs.map(
    (d) => contactNextChangeSql(d.condition, { schema, asOf: at }) ?? { sql: "null::float8", params: [] },
  );
  const rows = (await em.execute(
    `select c.id, ${cityExpr} as city, ${regionExpr} as region, json_build_array(${compiled.map((f) => `coalesce(${f.sql}, false)`).join(", ")}) as m, ` +
      `json_build_array(${next.map((f) => f.sql).join(", ")}) as n, ` +
      `array(select segment_key::text from ${schema}."crm_segment_member" where contact_id = c.id) as have ` +
      `from ${schema}."crm_contact" c where c.id = ? and c.merged_into_id is null`,
    [...compiled.flatMap((f) => f.params), ...next.flatMap((f) => f.params), contactId],
  )) as { id: string; city: string; region: string; m: boolean[]; n: (number | null)[]; have: string[] }[];
  const row = rows[0];
  // Bring due times forward first, in key order, before any membership row is touched: the
  // scheduler locks the segment row and then its member rows, so this order cannot deadlock with it.
  // The update writes (and locks) only when the instant is earlier than the stored due time.
  const limits = deps.recheck ?? defaultRecheckLimits;
  for (const [i, s] of segments.entries()) {
    const n = row?.n[i] ?? null;
    const due = n === null ? null : dueAfter(timeDependence(defs[i]?.condition), n, at, limits);
    if (due === null) continue;
    await em.execute(
      `update ${schema}."crm_segment" set next_evaluation_at = ? where key = ? and (next_evaluation_at is null or next_evaluation_at > ?)`,
      [due, s.key, due],
    );
  }
  const have = new Set(
    row !== undefined
      ? row.have
      : (
          (await em.execute(`select segment_key from ${schema}."crm_segment_member" where contact_id = ?`, [
            contactId,
          ])) as {
            segment_key: string;
          }[]
        ).map((r) => r.segment_key),
  );
  const out: { key: string; change: "joined" | "left" }[] = [];
  for (const [i, s] of segments.entries()) {
    const want = row?.m[i] === true;
    let changed = false;
    if (want && !have.has(s.key)) {
      const r = (await em.execute(
        `insert into ${schema}."crm_segment_member" (segment_key, contact_id, joined_at) values (?, ?, ?) on conflict do nothing returning contact_id`,
        [s.key, contactId, at],
      )) as unknown[];
      changed = r.length > 0;
    } else if (!want && have.has(s.key)) {
      const r = (await em.execute(
        `delete from ${schema}."crm_segment_member" where segment_key = ? and contact_id = ? returning contact_id`,
        [s.key, contactId],
      )) as unknown[];
      changed = r.length > 0;
    }
    if (!changed) continue;
    const change = want ? "joined" : "left";
    out.push({ key: s.key, change });
    announce(
      deps,
      em,
      s.key,
      s.version,
      [{ change, id: contactId, city: row?.city ?? "", region: row?.region ?? "" }],
      at,
      cause,
    );
  }
  return out;
}
