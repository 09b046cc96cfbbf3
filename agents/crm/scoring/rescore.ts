/**
 * Re-scoring one contact under the stored model, inside the transaction of the event that caused
 * it: the contact's score is recomputed at `now` from its stored fields and interactions (with the
 * stored market weights of its market), stored in `crm_lead_score`, and, when it moved by at least
 * {@link minChange} points or changed grade (or is the first score), announced as
 * `LeadScoreChanged` through the outbox. A transaction-scoped advisory lock per contact serialises
 * concurrent re-scorings of one contact, so the stored previous score is the one the event reports.
 */
import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
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
import { enqueueEvent } from "../../../lib/bus/index.ts";
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

async function readContact(
  em: EntityManager,
  schema: string,
  contactId: string,
  types: readonly number[],
  now: Date,
): Promise<ReadRow | undefined> {
  const s = `"${schema}"`;
  const market = `case when lower(trim(c.city)) = '' then '' else lower(trim(c.city)) || '|' || lower(trim(c.region)) end`;
  const rows = (await em.execute(
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
      ` from ${s}."crm_contact" c where c.id = ?`,
    [`{${types.join(",")}}`, now, maxInteractionsPerContact, contactId],
  )) as ReadRow[];
  return rows[0];
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
  const market = row.market;
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
  const score = scoreContact(stored.model, prepareContact(contactOf(row)), interactions, now, {
    inputIndex: 0,
    market,
    ...(multipliers === undefined ? {} : { multipliers }),
  });
  const before = row.previous === null ? undefined : { score: Number(row.previous[0]), grade: Number(row.previous[1]) };
  const t = `"${schema}"."crm_lead_score"`;
  await em.execute(
    `insert into ${t} (contact_id, score, fit_score, behaviour_score, grade, market, model_version, contributions, scored_at, updated_at)` +
      " values (?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, ?) on conflict (contact_id) do update set score = excluded.score," +
      " fit_score = excluded.fit_score, behaviour_score = excluded.behaviour_score, grade = excluded.grade," +
      " market = excluded.market, model_version = excluded.model_version, contributions = excluded.contributions," +
      " scored_at = excluded.scored_at, updated_at = excluded.updated_at",
    [
      contactId,
      score.totalScore,
      score.fitScore,
      score.behaviourScore,
      score.grade,
      market,
      stored.version,
      JSON.stringify(score.contributions.map((c) => toJson(RuleContributionSchema, c))),
      now,
      now,
    ],
  );
  const changed =
    before === undefined ||
    Math.abs(Number(before.score) - score.totalScore) >= minChange ||
    before.grade !== score.grade;
  if (changed) {
    enqueueEvent(
      deps.db,
      em,
      deps.prefix,
      LeadScoreChanged,
      create(LeadScoreChangedSchema, {
        contactId,
        previousScore: before === undefined ? 0 : Number(before.score),
        score: score.totalScore,
        previousGrade: (before?.grade ?? 0) as LeadGrade,
        grade: score.grade,
        fitScore: score.fitScore,
        behaviourScore: score.behaviourScore,
        market,
        modelVersion: BigInt(stored.version),
        scoredAt: timestampFromDate(now),
        causeSubject: cause.subject,
        causeMessageId: cause.msgId,
      }),
      { msgId: `crm.lead_score_changed:${contactId}:${cause.msgId}` },
    );
  }
  return { score, changed };
}
