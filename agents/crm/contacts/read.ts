/**
 * The CRM's read API: one contact, a filtered contact list and a contact's timeline.
 *
 * Every list is keyset-paged (see page-token.ts) and bounded by `page_size` ≤ 500. The list query
 * reads ids and sort keys first (one index range), then loads that page's rows by primary key.
 * The timeline merges two append-only sources, interactions and deal stage changes, newest first:
 * each source contributes at most `page_size + 1` rows past the keyset, read in index order, and
 * the merged head decides the page.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type GetContactRequest,
  GetContactRequestSchema,
  type GetContactResponse,
  GetContactResponseSchema,
  type GetContactTimelineRequest,
  GetContactTimelineRequestSchema,
  type GetContactTimelineResponse,
  GetContactTimelineResponseSchema,
  type ListContactsRequest,
  ListContactsRequestSchema,
  type ListContactsResponse,
  ListContactsResponseSchema,
  type TimelineEntry,
  TimelineEntrySchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { checkContract, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { CrmContact, type CrmContactRow, CrmDealStageChange, CrmInteraction } from "../entities.ts";
import { stageChangeFromRow } from "../pipeline/records.ts";
import { decodePageToken, encodePageToken, type Keyset, pageSizeOf } from "./page-token.ts";
import { contactFromRow, interactionFromRow } from "./records.ts";

/** Dependencies of the read API. */
export interface ContactReadDeps {
  /** The operations database. */
  db: Database;
}

/** Guards against a cycle in `merged_into` (which no writer creates). */
const maxMergeHops = 32;

/** The contact at the end of the `merged_into` chain from `row`. */
async function survivorIdOf(em: EntityManager, row: CrmContactRow): Promise<string> {
  let c = row;
  for (let hops = 0; c.mergedInto != null; hops++) {
    if (hops >= maxMergeHops) throw new Error(`merged_into chain from contact ${row.id} is too long`);
    c = await em.findOneOrFail(CrmContact, { id: c.mergedInto });
  }
  return c.id;
}

/** GetContact: the stored contact, with where it went when it was merged away. */
export async function getContact(deps: ContactReadDeps, req: GetContactRequest): Promise<GetContactResponse> {
  checkContract(GetContactRequestSchema, req);
  const em = deps.db.fork();
  const row = await em.findOne(CrmContact, { id: req.contactId.toLowerCase() });
  if (row === null) throw new NotFoundError(`no contact has id ${req.contactId}`);
  return create(GetContactResponseSchema, {
    contact: contactFromRow(row),
    mergedIntoContactId: row.mergedInto ?? "",
    survivorContactId: await survivorIdOf(em, row),
    version: BigInt(row.version),
  });
}

/** `text` with LIKE's wildcards escaped, lower-cased, as a prefix pattern. */
function prefixPattern(text: string): string {
  return `${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** ListContacts: one keyset page of contacts matching the filters, by (created_at, id). */
export async function listContacts(deps: ContactReadDeps, req: ListContactsRequest): Promise<ListContactsResponse> {
  checkContract(ListContactsRequestSchema, req);
  const size = pageSizeOf(req.pageSize);
  const after = decodePageToken("contacts", req.pageToken);
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, ...values: unknown[]) => {
    where.push(sql);
    params.push(...values);
  };
  if (!req.includeMerged) add("merged_into_id is null");
  if (req.lifecycleStages.length > 0) {
    add(`lifecycle_stage in (${req.lifecycleStages.map(() => "?").join(", ")})`, ...req.lifecycleStages);
  }
  if (req.city.trim() !== "") add("lower(city) = lower(?)", req.city.trim());
  if (req.region.trim() !== "") add("lower(region) = lower(?)", req.region.trim());
  if (req.source !== "") add("source = ?", req.source);
  for (const [column, range, field] of [
    ["created_at", req.created, "created"],
    ["updated_at", req.updated, "updated"],
  ] as const) {
    if (range?.start !== undefined) add(`${column} >= ?`, timestampDate(range.start));
    if (range?.end !== undefined) add(`${column} < ?`, timestampDate(range.end));
    if (range?.start !== undefined && range.end !== undefined && range.start.seconds > range.end.seconds) {
      throw new InvalidInputError(`${field}.start`, "must be before end");
    }
  }
  const query = req.query.trim();
  if (query !== "") {
    const p = prefixPattern(query);
    add(
      `(lower(email) like ? or lower(given_name) like ? or lower(family_name) like ? or lower(given_name || ' ' || family_name) like ?)`,
      p,
      p,
      p,
      p,
    );
  }
  if (after !== undefined) add("(created_at, id) > (?::timestamptz, ?::uuid)", after.at, after.id);
  const em = deps.db.fork();
  const keys = (await em.execute(
    `select id, created_at::text as at from "${deps.db.schema}"."crm_contact"` +
      `${where.length > 0 ? ` where ${where.join(" and ")}` : ""} order by created_at, id limit ?`,
    [...params, size + 1],
  )) as { id: string; at: string }[];
  const page = keys.slice(0, size);
  const rows = page.length === 0 ? [] : await em.find(CrmContact, { id: { $in: page.map((k) => k.id) } });
  const byId = new Map(rows.map((r) => [r.id, r]));
  const last = page.at(-1);
  return create(ListContactsResponseSchema, {
    contacts: page.flatMap((k) => {
      const r = byId.get(k.id);
      return r === undefined ? [] : [contactFromRow(r)];
    }),
    nextPageToken: keys.length > size && last !== undefined ? encodePageToken("contacts", last) : "",
  });
}

/** One row of the timeline's key query. */
interface TimelineKey extends Keyset {
  kind: "interaction" | "stage_change";
}

/** GetContactTimeline: interactions and deal stage changes of a contact, newest first. */
export async function getContactTimeline(
  deps: ContactReadDeps,
  req: GetContactTimelineRequest,
): Promise<GetContactTimelineResponse> {
  checkContract(GetContactTimelineRequestSchema, req);
  const size = pageSizeOf(req.pageSize);
  const contactId = req.contactId.toLowerCase();
  const scope = `timeline:${contactId}`;
  const before = decodePageToken(scope, req.pageToken);
  const em = deps.db.fork();
  if ((await em.count(CrmContact, { id: contactId })) === 0) {
    throw new NotFoundError(`no contact has id ${req.contactId}`);
  }
  const s = `"${deps.db.schema}"`;
  const keyset = before === undefined ? "" : " and (%t, id) < (?::timestamptz, ?::uuid)";
  const branch = (table: string, column: string, kind: TimelineKey["kind"]) =>
    `(select '${kind}' as kind, id, ${column} as ts, ${column}::text as at from ${s}."${table}"` +
    ` where contact_id = ?${keyset.replace("%t", column)} order by ${column} desc, id desc limit ?)`;
  const branchParams = [contactId, ...(before === undefined ? [] : [before.at, before.id]), size + 1];
  const keys = (await em.execute(
    `select kind, id, at from (${branch("crm_interaction", "occurred_at", "interaction")} union all ` +
      `${branch("crm_deal_stage_change", "changed_at", "stage_change")}) t order by ts desc, id desc limit ?`,
    [...branchParams, ...branchParams, size + 1],
  )) as TimelineKey[];
  const page = keys.slice(0, size);
  const interactionIds = page.filter((k) => k.kind === "interaction").map((k) => k.id);
  const changeIds = page.filter((k) => k.kind === "stage_change").map((k) => k.id);
  const [interactions, changes] = await Promise.all([
    interactionIds.length === 0 ? [] : em.find(CrmInteraction, { id: { $in: interactionIds } }),
    changeIds.length === 0 ? [] : em.fork().find(CrmDealStageChange, { id: { $in: changeIds } }),
  ]);
  const interactionById = new Map(interactions.map((r) => [r.id, r]));
  const changeById = new Map(changes.map((r) => [r.id, r]));
  const entries: TimelineEntry[] = [];
  for (const k of page) {
    if (k.kind === "interaction") {
      const r = interactionById.get(k.id);
      if (r === undefined) continue;
      const interaction = interactionFromRow(r);
      entries.push(
        create(TimelineEntrySchema, {
          occurredAt: interaction.occurredAt,
          item: { case: "interaction", value: interaction },
        }),
      );
    } else {
      const r = changeById.get(k.id);
      if (r === undefined) continue;
      const change = stageChangeFromRow(r);
      entries.push(
        create(TimelineEntrySchema, { occurredAt: change.changedAt, item: { case: "stageChange", value: change } }),
      );
    }
  }
  const last = page.at(-1);
  return create(GetContactTimelineResponseSchema, {
    entries,
    nextPageToken: keys.length > size && last !== undefined ? encodePageToken(scope, last) : "",
  });
}
