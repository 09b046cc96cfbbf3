/**
 * Re-scoring one contact under the stored model, inside the transaction of the event that caused
 * it: the contact's score is recomputed at `now` from its stored fields and interactions (with the
 * stored market weights of its market), stored in `crm_lead_score`, and, when it moved by at least
 * {@link minChange} points or changed grade (or is the first score), announced as
 * `LeadScoreChanged` through the outbox. A transaction-scoped advisory lock per contact serialises
 * concurrent re-scorings of one contact, so the stored previous score is the one the event reports.
 */
import { create, fromJson, type JsonValue, toBinary, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Context } from "@opentelemetry/api";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { LeadScoreChangedSchema } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  AttributeSchema,
  type Contact,
  ContactSchema,
  type LeadGrade,
  type LeadScore,
  type LifecycleStage,
  RuleContributionSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { enqueue, enqueueAll, type OutgoingMessage, TYPE_HEADER } from "../../../lib/bus/index.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { LeadScoreChanged } from "../events.ts";
import { prepareContact, type ScoredInteraction, scoreContact, typesRead } from "./evaluate.ts";
import { maxInteractionsPerContact } from "./load.ts";
import { cachedStoredModel, loadStoredModel } from "./stored-model.ts";

/** Smallest score movement announced (decay alone moves every score a little between events). */
export const minChange = 0.01;

/** Where a re-scoring came from, for the event and its dedup id. */
export interface Cause {
  subject: string;
  msgId: string;
}

/** What re-scoring needs. */
export interface RescoreDeps {
  db: Database;
  /** Bus subject prefix of the outbox event. */
  prefix: string;
}

/** Outcome of one re-scoring. */
export interface Rescored {
  score: LeadScore;
  changed: boolean;
}

/** Holds the per-contact scoring lock until the transaction ends. */
export async function lockContact(em: EntityManager, contactId: string): Promise<void> {
  await em.execute("select pg_advisory_xact_lock(hashtextextended(?, 0))", [`crm.lead_score:${contactId}`]);
}

/** The contact, its recent interactions, its market's multipliers and its previous score, in one row. */
interface ReadRow {
  id: string;
  given_name: string;
  family_name: string;
  email: string | null;
  phone: string;
  company: string;
  title: string;
  address: JsonValue | null;
  city: string;
  region: string;
  source: string;
  lifecycle_stage: number;
  attributes: JsonValue[];
  created_at: Date;
  updated_at: Date;
  market: string;
  model_version: number | null;
  /** [event id, type, channel, url, occurred at (ms)], newest first. */
  interactions: [string, number, number, string, number][];
  multipliers: Record<string, number>;
  previous: [number, number] | null;
}

function readSql(schema: string, where: string): string {
  const s = `"${schema}"`;
  const market = `case when lower(trim(c.city)) = '' then '' else lower(trim(c.city)) || '|' || lower(trim(c.region)) end`;
  return (
    `select c.id, c.given_name, c.family_name, c.email, c.phone, c.company, c.title, c.address, c.city, c.region,` +
    ` c.source, c.lifecycle_stage, c.attributes, c.created_at, c.updated_at, ${market} as market,` +
    ` (select version from ${s}."crm_scoring_model" where id = 'default') as model_version,` +
    ` (select coalesce(json_agg(json_build_array(x.event_id, x.type, x.channel, x.url, (extract(epoch from x.occurred_at) * 1000)::float8)` +
    ` order by x.occurred_at desc, x.id desc), '[]'::json) from (select id, event_id, type, channel, url, occurred_at` +
    ` from ${s}."crm_interaction" where contact_id = c.id and type = any(?::int[]) and occurred_at <= ?` +
    ` order by occurred_at desc, id desc limit ?) x) as interactions,` +
    ` (select coalesce(json_object_agg(w.rule_id, w.multiplier), '{}'::json) from ${s}."crm_scoring_market_weight" w` +
    ` where w.market = ${market} and w.market <> '') as multipliers,` +
    ` (select json_build_array(p.score, p.grade) from ${s}."crm_lead_score" p where p.contact_id = c.id) as previous` +
    ` from ${s}."crm_contact" c where ${where}`
  );
}

async function readContact(
  em: EntityManager,
  schema: string,
  contactId: string,
  types: readonly number[],
  now: Date,
): Promise<ReadRow | undefined> {
  const rows = (await em.execute(readSql(schema, "c.id = ?"), [
    `{${types.join(",")}}`,
    now,
    maxInteractionsPerContact,
    contactId,
  ])) as ReadRow[];
  return rows[0];
}

/** {@link readContact} for several contacts in one round trip (`ids` are valid uuids). */
async function readContacts(
  em: EntityManager,
  schema: string,
  ids: readonly string[],
  types: readonly number[],
  now: Date,
): Promise<Map<string, ReadRow>> {
  const rows = (await em.execute(readSql(schema, "c.id = any(?::uuid[])"), [
    `{${types.join(",")}}`,
    now,
    maxInteractionsPerContact,
    `{${ids.join(",")}}`,
  ])) as ReadRow[];
  return new Map(rows.map((r) => [r.id, r]));
}

function contactOf(r: ReadRow): Contact {
  return create(ContactSchema, {
    id: r.id,
    givenName: r.given_name,
    familyName: r.family_name,
    email: r.email ?? "",
    phone: r.phone,
    company: r.company,
    title: r.title,
    ...(r.address !== null ? { address: fromJson(PostalAddressSchema, r.address) } : {}),
    city: r.city,
    region: r.region,
    source: r.source,
    lifecycleStage: r.lifecycle_stage as LifecycleStage,
    attributes: r.attributes.map((a) => fromJson(AttributeSchema, a)),
    createdAt: timestampFromDate(new Date(r.created_at)),
    updatedAt: timestampFromDate(new Date(r.updated_at)),
  });
}

type Stored = NonNullable<Awaited<ReturnType<typeof loadStoredModel>>>;
type Score = ReturnType<typeof scoreContact>;

/** The score of a read contact under `stored` at `now`. */
function scoreOf(stored: Stored, row: ReadRow, now: Date): Score {
  const interactions: ScoredInteraction[] = row.interactions.map(([eventId, type, channel, url, at]) => ({
    eventId,
    type,
    channel,
    url,
    occurredAtMs: Number(at),
  }));
  const multipliers =
    stored.settings === undefined
      ? undefined
      : new Map(Object.entries(row.multipliers).map(([k, v]) => [k, Number(v)]));
  return scoreContact(stored.model, prepareContact(contactOf(row)), interactions, now, {
    inputIndex: 0,
    market: row.market,
    ...(multipliers === undefined ? {} : { multipliers }),
  });
}

interface Previous {
  score: number;
  grade: number;
}

function previousOf(row: ReadRow): Previous | undefined {
  return row.previous === null ? undefined : { score: Number(row.previous[0]), grade: Number(row.previous[1]) };
}

function changedFrom(before: Previous | undefined, score: Score): boolean {
  return before === undefined || Math.abs(before.score - score.totalScore) >= minChange || before.grade !== score.grade;
}

/** The `LeadScoreChanged` outbox message of a re-scoring. */
function changeMessage(
  deps: RescoreDeps,
  contactId: string,
  before: Previous | undefined,
  score: Score,
  market: string,
  version: number,
  now: Date,
  cause: Cause,
  parent: Context | undefined,
): OutgoingMessage {
  return {
    subject: `${deps.prefix}.events.${LeadScoreChanged.domain}.${LeadScoreChanged.name}`,
    data: toBinary(
      LeadScoreChangedSchema,
      create(LeadScoreChangedSchema, {
        contactId,
        previousScore: before === undefined ? 0 : before.score,
        score: score.totalScore,
        previousGrade: (before?.grade ?? 0) as LeadGrade,
        grade: score.grade,
        fitScore: score.fitScore,
        behaviourScore: score.behaviourScore,
        market,
        modelVersion: BigInt(version),
        scoredAt: timestampFromDate(now),
        causeSubject: cause.subject,
        causeMessageId: cause.msgId,
      }),
    ),
    msgId: `crm.lead_score_changed:${contactId}:${cause.msgId}`,
    headers: { [TYPE_HEADER]: LeadScoreChangedSchema.typeName },
    parent,
  };
}

const upsertColumns =
  "(contact_id, score, fit_score, behaviour_score, grade, market, model_version, contributions, scored_at, updated_at)";
const upsertSet =
  " on conflict (contact_id) do update set score = excluded.score," +
  " fit_score = excluded.fit_score, behaviour_score = excluded.behaviour_score, grade = excluded.grade," +
  " market = excluded.market, model_version = excluded.model_version, contributions = excluded.contributions," +
  " scored_at = excluded.scored_at, updated_at = excluded.updated_at";

function contributionsJson(score: Score): JsonValue[] {
  return score.contributions.map((c) => toJson(RuleContributionSchema, c));
}

/**
 * Recomputes and stores a contact's score; undefined when no model is stored or the contact does
 * not exist. Must run inside a transaction (`em`). Round trips: the lock, one read (contact,
 * interactions, market multipliers, previous score, model version), the upsert; the model is
 * parsed again only when its version changed.
 */
export async function rescoreContact(
  deps: RescoreDeps,
  em: EntityManager,
  contactId: string,
  now: Date,
  cause: Cause,
): Promise<Rescored | undefined> {
  const schema = deps.db.schema;
  let stored = cachedStoredModel(deps.db) ?? (await loadStoredModel(deps.db, em));
  if (stored === undefined) return undefined;
  await lockContact(em, contactId);
  let row = await readContact(em, schema, contactId, typesRead(stored.model), now);
  if (row === undefined || row.model_version === null) return undefined;
  if (row.model_version !== stored.version) {
    stored = await loadStoredModel(deps.db, em);
    if (stored === undefined) return undefined;
    row = await readContact(em, schema, contactId, typesRead(stored.model), now);
    if (row === undefined) return undefined;
  }
  const score = scoreOf(stored, row, now);
  const before = previousOf(row);
  await em.execute(
    `insert into "${schema}"."crm_lead_score" ${upsertColumns} values (?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, ?)${upsertSet}`,
    [
      contactId,
      score.totalScore,
      score.fitScore,
      score.behaviourScore,
      score.grade,
      row.market,
      stored.version,
      JSON.stringify(contributionsJson(score)),
      now,
      now,
    ],
  );
  const changed = changedFrom(before, score);
  if (changed) {
    enqueue(
      deps.db,
      em,
      changeMessage(deps, contactId, before, score, row.market, stored.version, now, cause, undefined),
    );
  }
  return { score, changed };
}

/** One step of a batch re-scoring, in event order. */
export type RescoreStep =
  | { kind: "drop"; contactIds: readonly string[] }
  | { kind: "score"; contactId: string; cause: Cause; parent?: Context | undefined };

/** Holds the scoring locks of `contactIds` until the transaction ends, taken in one order (no deadlock). */
export async function lockContacts(em: EntityManager, contactIds: readonly string[]): Promise<void> {
  if (contactIds.length === 0) return;
  await em.execute(
    "select count(pg_advisory_xact_lock(k)) as n from (select distinct hashtextextended('crm.lead_score:' || id, 0) as k" +
      " from unnest(?::text[]) id order by k) s",
    [`{${[...new Set(contactIds)].sort().join(",")}}`],
  );
}

/**
 * Applies a batch of re-scoring steps (valid lower-case uuids) in one transaction, with the effect
 * of applying them one by one at `now` through {@link rescoreContact} (after deleting the scores of
 * the `drop` steps' contacts): each contact is read and scored once (its score at `now` is the same
 * for all its steps), events are announced per step exactly where the one-by-one path would (the
 * first score, a move of at least {@link minChange} or a new grade since the previous step), and
 * the final state is written with one delete and one upsert. Round trips: the locks (sorted), one
 * read, the delete, the upsert (the model again only when its version changed).
 */
export async function rescoreBatch(
  deps: RescoreDeps,
  em: EntityManager,
  steps: readonly RescoreStep[],
  now: Date,
): Promise<{ scored: number; announced: number }> {
  const schema = deps.db.schema;
  const t = `"${schema}"."crm_lead_score"`;
  const scoredIds = [...new Set(steps.flatMap((s) => (s.kind === "score" ? [s.contactId] : [])))];
  let stored = cachedStoredModel(deps.db) ?? (await loadStoredModel(deps.db, em));
  let rows = new Map<string, ReadRow>();
  if (stored !== undefined && scoredIds.length > 0) {
    await lockContacts(em, scoredIds);
    rows = await readContacts(em, schema, scoredIds, typesRead(stored.model), now);
    const version = rows.values().next().value?.model_version;
    if (version === null) rows = new Map();
    else if (version !== undefined && version !== stored.version) {
      stored = await loadStoredModel(deps.db, em);
      rows = stored === undefined ? new Map() : await readContacts(em, schema, scoredIds, typesRead(stored.model), now);
    }
  }
  const scores = new Map<string, Score>();
  if (stored !== undefined) for (const [id, row] of rows) scores.set(id, scoreOf(stored, row, now));
  // Replay the steps on the previous scores: which contacts end dropped or scored, and the events.
  const previous = new Map<string, Previous | undefined>();
  for (const [id, row] of rows) previous.set(id, previousOf(row));
  const final = new Map<string, "drop" | "score">();
  const events: OutgoingMessage[] = [];
  for (const step of steps) {
    if (step.kind === "drop") {
      for (const id of step.contactIds) {
        previous.set(id, undefined);
        final.set(id, "drop");
      }
      continue;
    }
    const row = rows.get(step.contactId);
    const score = scores.get(step.contactId);
    if (row === undefined || score === undefined || stored === undefined) continue;
    const before = previous.get(step.contactId);
    if (changedFrom(before, score)) {
      events.push(
        changeMessage(deps, step.contactId, before, score, row.market, stored.version, now, step.cause, step.parent),
      );
    }
    previous.set(step.contactId, { score: score.totalScore, grade: score.grade });
    final.set(step.contactId, "score");
  }
  const dropped = [...final].filter(([, f]) => f === "drop").map(([id]) => id);
  if (dropped.length > 0) {
    await em.execute(`delete from ${t} where contact_id = any(?::uuid[])`, [`{${dropped.sort().join(",")}}`]);
  }
  const upserts = [...final]
    .filter(([, f]) => f === "score")
    .map(([id]) => id)
    .sort()
    .flatMap((id) => {
      const score = scores.get(id);
      const row = rows.get(id);
      return score === undefined || row === undefined || stored === undefined
        ? []
        : [
            {
              contact_id: id,
              score: score.totalScore,
              fit_score: score.fitScore,
              behaviour_score: score.behaviourScore,
              grade: score.grade,
              market: row.market,
              model_version: stored.version,
              contributions: contributionsJson(score),
            },
          ];
    });
  await enqueueAll(deps.db, em, events);
  if (upserts.length > 0) {
    await em.execute(
      `insert into ${t} ${upsertColumns} select x.contact_id, x.score, x.fit_score, x.behaviour_score, x.grade, x.market,` +
        " x.model_version, x.contributions, ?, ? from jsonb_to_recordset(?::jsonb) as x(contact_id uuid, score float8," +
        ` fit_score float8, behaviour_score float8, grade int, market text, model_version int, contributions jsonb)${upsertSet}`,
      [now, now, JSON.stringify(upserts)],
    );
  }
  return { scored: upserts.length, announced: events.length };
}
