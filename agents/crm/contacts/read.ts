/**
 * The CRM's read API: one contact, a filtered contact list and a contact's timeline.
 *
 * Every list is keyset-paged (see page-token.ts) and bounded by `page_size` ≤ 500. The list query
 * reads ids and sort keys first (one index range), then loads that page's rows by primary key.
 * The timeline merges seven sources, newest first: interactions, deal stage changes, the current lead
 * score (one entry at its `scored_at`: scores keep no history), segment joins and leaves
 * (`crm_segment_membership_change`), the bookings, reschedules and cancellations of appointments the
 * contact attends (by contact id or address), consent decisions (at their `occurred_at`), and the
 * emails sent to the contact (at their `sent_at`). Each source contributes at most `page_size + 1`
 * rows past the same (time, id) keyset, read in index order; the union of those bounded heads is
 * sorted and cut to the page, so one page reads at most 7 × (page_size + 1) keys.
 *
 * Emails come from the CRM's own copy (`crm_email_message`, kept from the Email agent's
 * `message_sent` events by emails/consumer.ts), never from the Email agent's tables. Mail sent to a
 * duplicate after it was merged is attributed to the survivor when it arrives; mail stored for it
 * before the merge stays on its row, so the survivor's timeline reads the emails of the contacts
 * merged into it too (as its interactions, which the merge moved, are). That keeps an unmerge exact
 * without moving any email row.
 */
import { create, fromJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type GetContactRequest,
  GetContactRequestSchema,
  type GetContactResponse,
  GetContactResponseSchema,
  type GetContactTimelineRequest,
  GetContactTimelineRequestSchema,
  type GetContactTimelineResponse,
  GetContactTimelineResponseSchema,
  type LeadGrade,
  LeadScoreSchema,
  type ListContactsRequest,
  ListContactsRequestSchema,
  type ListContactsResponse,
  ListContactsResponseSchema,
  RuleContributionSchema,
  SegmentMembershipAction,
  SegmentMembershipRecordSchema,
  StoredLeadScoreSchema,
  type TimelineEntry,
  TimelineEntrySchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { checkContract, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { attendeeCondition, changeRecordOf } from "../appointments/privacy.ts";
import { consentRecordFromRow } from "../consent/consent.ts";
import { CrmConsentRecord } from "../consent/entities.ts";
import { CrmEmailMessage } from "../emails/entities.ts";
import { emailRecordFromRow } from "../emails/store.ts";
import { CrmContact, type CrmContactRow, CrmDealStageChange, CrmInteraction } from "../entities.ts";
import { stageChangeFromRow } from "../pipeline/records.ts";
import { CrmLeadScore } from "../scoring/entities.ts";
import { CrmSegmentMembershipChange } from "../segments/entities.ts";
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

/** Sources of the timeline. */
type TimelineKind = "interaction" | "stage_change" | "lead_score" | "segment" | "appointment" | "consent" | "email";

/** One row of the timeline's key query. */
interface TimelineKey extends Keyset {
  kind: TimelineKind;
}

/** One source of the timeline: its rows of the contact, their time and id columns. */
interface TimelineSource {
  kind: TimelineKind;
  /** `from … where …` selecting the contact's rows. */
  from: string;
  params: unknown[];
  ts: string;
  id: string;
}

interface AppointmentChangeKeyRow {
  id: string;
  uid: string;
  summary: string;
  method: string;
  sequence: number;
  start_at: Date;
  end_at: Date;
  created_at: Date;
}

/**
 * GetContactTimeline: interactions, deal stage changes, the lead score, segment joins and leaves,
 * appointment changes, consent decisions and emails of a contact, newest first.
 */
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
  const contact = await em.findOne(CrmContact, { id: contactId });
  if (contact === null) throw new NotFoundError(`no contact has id ${req.contactId}`);
  const s = `"${deps.db.schema}"`;
  const sources: TimelineSource[] = [
    {
      kind: "interaction",
      from: `from ${s}."crm_interaction" t where t.contact_id = ?`,
      params: [contactId],
      ts: "t.occurred_at",
      id: "t.id",
    },
    {
      kind: "stage_change",
      from: `from ${s}."crm_deal_stage_change" t where t.contact_id = ?`,
      params: [contactId],
      ts: "t.changed_at",
      id: "t.id",
    },
    {
      kind: "lead_score",
      from: `from ${s}."crm_lead_score" t where t.contact_id = ?`,
      params: [contactId],
      ts: "t.scored_at",
      id: "t.contact_id",
    },
    {
      kind: "segment",
      from: `from ${s}."crm_segment_membership_change" t where t.contact_id = ?`,
      params: [contactId],
      ts: "t.changed_at",
      id: "t.id",
    },
    {
      kind: "consent",
      from: `from ${s}."crm_consent_record" t where t.contact_id = ?`,
      params: [contactId],
      ts: "t.occurred_at",
      id: "t.id",
    },
    {
      // The contact's emails and those of the contacts merged straight into it (see the file comment):
      // each contact's head is read in index order past the keyset, then the heads are merged.
      kind: "email",
      from:
        `from ${s}."crm_contact" c cross join lateral (select e.id, e.sent_at from ${s}."crm_email_message" e` +
        ` where e.contact_id = c.id${before === undefined ? "" : " and (e.sent_at, e.id) < (?::timestamptz, ?::uuid)"}` +
        ` order by e.sent_at desc, e.id desc limit ?) t where (c.id = ? or c.merged_into_id = ?)`,
      params: [...(before === undefined ? [] : [before.at, before.id]), size + 1, contactId, contactId],
      ts: "t.sent_at",
      id: "t.id",
    },
  ];
  const attends = attendeeCondition({ contactIds: [contactId], emails: contact.email ? [contact.email] : [] });
  if (attends !== undefined) {
    sources.push({
      kind: "appointment",
      from: `from ${s}."crm_appointment_change" t join ${s}."crm_appointment" a on a.id = t.appointment_id where ${attends.sql}`,
      params: attends.params,
      ts: "t.created_at",
      id: "t.id",
    });
  }
  const keyset = before === undefined ? [] : [before.at, before.id];
  const branches = sources.map(
    (b) =>
      `(select '${b.kind}' as kind, ${b.id} as id, ${b.ts} as ts, ${b.ts}::text as at ${b.from}` +
      `${before === undefined ? "" : ` and (${b.ts}, ${b.id}) < (?::timestamptz, ?::uuid)`}` +
      ` order by ${b.ts} desc, ${b.id} desc limit ?)`,
  );
  const keys = (await em.execute(
    `select kind, id, at from (${branches.join(" union all ")}) t order by ts desc, id desc limit ?`,
    [...sources.flatMap((b) => [...b.params, ...keyset, size + 1]), size + 1],
  )) as TimelineKey[];
  const page = keys.slice(0, size);
  const idsOf = (kind: TimelineKind) => page.filter((k) => k.kind === kind).map((k) => k.id);
  const some = <T>(ids: string[], load: () => Promise<T[]>): Promise<T[]> =>
    ids.length === 0 ? Promise.resolve([]) : load();
  const appointmentIds = idsOf("appointment");
  const [interactions, changes, scores, segments, consents, appointments, emails] = await Promise.all([
    some(idsOf("interaction"), () => em.fork().find(CrmInteraction, { id: { $in: idsOf("interaction") } })),
    some(idsOf("stage_change"), () => em.fork().find(CrmDealStageChange, { id: { $in: idsOf("stage_change") } })),
    some(idsOf("lead_score"), () => em.fork().find(CrmLeadScore, { contactId })),
    some(idsOf("segment"), () => em.fork().find(CrmSegmentMembershipChange, { id: { $in: idsOf("segment") } })),
    some(idsOf("consent"), () => em.fork().find(CrmConsentRecord, { id: { $in: idsOf("consent") } })),
    some(
      appointmentIds,
      () =>
        em.fork().execute(
          `select c.id, a.uid, a.summary, c.method, c.sequence, c.start_at, c.end_at, c.created_at
             from ${s}."crm_appointment_change" c join ${s}."crm_appointment" a on a.id = c.appointment_id
             where c.id in (select (jsonb_array_elements_text(?::jsonb))::uuid)`,
          [JSON.stringify(appointmentIds)],
        ) as Promise<AppointmentChangeKeyRow[]>,
    ),
    some(idsOf("email"), () => em.fork().find(CrmEmailMessage, { id: { $in: idsOf("email") } })),
  ]);
  const byId = <T>(rows: T[], id: (r: T) => string) => new Map(rows.map((r) => [id(r), r] as const));
  const interactionById = byId(interactions, (r) => r.id);
  const changeById = byId(changes, (r) => r.id);
  const scoreById = byId(scores, (r) => r.contactId);
  const segmentById = byId(segments, (r) => r.id);
  const consentById = byId(consents, (r) => r.id);
  const appointmentById = byId(appointments, (r) => r.id);
  const emailById = byId(emails, (r) => r.id);
  const entries: TimelineEntry[] = [];
  for (const k of page) {
    const entry = entryOf(k);
    if (entry !== undefined) entries.push(entry);
  }
  function entryOf(k: TimelineKey): TimelineEntry | undefined {
    switch (k.kind) {
      case "interaction": {
        const r = interactionById.get(k.id);
        if (r === undefined) return undefined;
        const value = interactionFromRow(r);
        return create(TimelineEntrySchema, { occurredAt: value.occurredAt, item: { case: "interaction", value } });
      }
      case "stage_change": {
        const r = changeById.get(k.id);
        if (r === undefined) return undefined;
        const value = stageChangeFromRow(r);
        return create(TimelineEntrySchema, { occurredAt: value.changedAt, item: { case: "stageChange", value } });
      }
      case "lead_score": {
        const r = scoreById.get(k.id);
        if (r === undefined) return undefined;
        const value = create(StoredLeadScoreSchema, {
          score: create(LeadScoreSchema, {
            contactId: r.contactId,
            totalScore: Number(r.score),
            fitScore: Number(r.fitScore),
            behaviourScore: Number(r.behaviourScore),
            grade: r.grade as LeadGrade,
            contributions: r.contributions.map((c) => fromJson(RuleContributionSchema, c)),
            market: r.market,
          }),
          modelVersion: BigInt(r.modelVersion),
          scoredAt: timestampFromDate(r.scoredAt),
        });
        return create(TimelineEntrySchema, { occurredAt: value.scoredAt, item: { case: "leadScore", value } });
      }
      case "segment": {
        const r = segmentById.get(k.id);
        if (r === undefined) return undefined;
        const value = create(SegmentMembershipRecordSchema, {
          segmentKey: r.segmentKey,
          action: r.action === "joined" ? SegmentMembershipAction.JOINED : SegmentMembershipAction.LEFT,
          segmentVersion: BigInt(r.segmentVersion),
          changedAt: timestampFromDate(r.changedAt),
          cause: r.cause,
        });
        return create(TimelineEntrySchema, {
          occurredAt: value.changedAt,
          item: { case: "segmentMembership", value },
        });
      }
      case "consent": {
        const r = consentById.get(k.id);
        if (r === undefined) return undefined;
        const value = consentRecordFromRow(r);
        return create(TimelineEntrySchema, { occurredAt: value.occurredAt, item: { case: "consent", value } });
      }
      case "appointment": {
        const r = appointmentById.get(k.id);
        if (r === undefined) return undefined;
        const value = changeRecordOf(r);
        return create(TimelineEntrySchema, { occurredAt: value.changedAt, item: { case: "appointment", value } });
      }
      case "email": {
        const r = emailById.get(k.id);
        if (r === undefined) return undefined;
        const value = emailRecordFromRow(r);
        return create(TimelineEntrySchema, { occurredAt: value.sentAt, item: { case: "email", value } });
      }
    }
  }
  const last = page.at(-1);
  return create(GetContactTimelineResponseSchema, {
    entries,
    nextPageToken: keys.length > size && last !== undefined ? encodePageToken(scope, last) : "",
  });
}
