/**
 * Event-driven re-scoring: two durable JetStream consumers (NATS 2.9 allows one filter subject
 * each), in inbox mode so that each message takes effect once however often it is redelivered:
 *
 * - `crm_lead_scoring_interactions` on `<prefix>.events.crm.interaction_tracked`, batched
 *   (lib/bus consumeBatches: up to `batchSize` events per transaction, inbox in bulk): re-scores
 *   the interactions' contacts (one read for all, one upsert, locks in sorted order), and drops
 *   the stored scores of contacts merged into them, with the effect of handling the events one by
 *   one in order; a failed batch is retried event by event through the per-message path.
 * - `crm_lead_scoring_conversions` on `<prefix>.events.data.conversion_recorded`: resolves the
 *   conversion's contact (its contact id, else its anonymous id through identity stitching, then
 *   through merges to the surviving contact), records the conversion, re-learns the national
 *   rates and the market weights of the contact's market (when the stored model is
 *   location-aware), and re-scores the contact.
 *
 * Every change (score row, conversion row, `LeadScoreChanged` outbox row, inbox row) commits in
 * one transaction.
 */

import type { Context } from "@opentelemetry/api";
import { ConversionRecordedSchema } from "../../../gen/mesh/data/v1/data_events_pb.ts";
import {
  type Bus,
  consumeBatches,
  type Delivery,
  decodeEvent,
  defineEvent,
  type Running,
} from "../../../lib/bus/index.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { InteractionTracked } from "../events.ts";
import { marketKey } from "./evaluate.ts";
import { type RescoreStep, rescoreBatch, rescoreContact } from "./rescore.ts";
import { loadStoredModel, refreshMarket } from "./stored-model.ts";

/** The Data agent's conversion event (subject only; the CRM never imports another agent). */
export const ConversionRecorded = defineEvent("data", "conversion_recorded", ConversionRecordedSchema);

/** Durable consumer names. */
export const interactionsDurable = "crm_lead_scoring_interactions";
export const conversionsDurable = "crm_lead_scoring_conversions";

/** What the consumers need. */
export interface LeadScoringConsumerDeps {
  db: Database;
  bus: Bus;
  log: Logger;
  now: () => Date;
  /**
   * Messages in flight per consumer (default 64 for conversions; for interactions twice
   * `batchSize × concurrency`, at least 64).
   */
  maxAckPending?: number;
  /**
   * Interaction batches handled at once per instance (default 1): each is a batch loop on the
   * shared durable, as replicas split the messages; each holds a database connection while it
   * handles a batch. Concurrent batches wait for each other's contacts (locks), so one loop with
   * large batches does best (bench/crm-scoring.ts).
   */
  concurrency?: number;
  /** Interaction events per batch at most (default 500). */
  batchSize?: number;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const maxMergeHops = 32;

function causeOf(d: Delivery): { subject: string; msgId: string } {
  return { subject: d.subject, msgId: d.msgId ?? `${d.subject}#${d.streamSeq}` };
}

function required(em: EntityManager | undefined): EntityManager {
  if (em === undefined) throw new Error("lead scoring consumers run in inbox mode");
  return em;
}

/** The surviving contact of `id` (following merges), with its city and region; undefined when unknown. */
async function survivor(
  em: EntityManager,
  schema: string,
  id: string,
): Promise<{ id: string; city: string; region: string } | undefined> {
  let current = id;
  for (let hop = 0; hop < maxMergeHops; hop++) {
    const rows = (await em.execute(
      `select id, merged_into_id, city, region from "${schema}"."crm_contact" where id = ?`,
      [current],
    )) as { id: string; merged_into_id: string | null; city: string; region: string }[];
    const r = rows[0];
    if (r === undefined) return undefined;
    if (r.merged_into_id === null) return { id: r.id, city: r.city, region: r.region };
    current = r.merged_into_id;
  }
  return undefined;
}

/** The contact an anonymous visitor id was stitched to; undefined when still anonymous. */
async function contactOfAnonymous(em: EntityManager, schema: string, anonymousId: string): Promise<string | undefined> {
  const rows = (await em.execute(
    `select s.contact_id from "${schema}"."crm_identity_node" n join "${schema}"."crm_identity_set" s on s.id = n.set_id` +
      ` where n.kind = 'anonymous' and n.value = ? and s.contact_id is not null`,
    [anonymousId],
  )) as { contact_id: string }[];
  return rows[0]?.contact_id;
}

/** The re-scoring steps of `crm.interaction_tracked` deliveries, in order. */
function interactionSteps(ds: readonly (Delivery & { context?: Context })[]): RescoreStep[] {
  const steps: RescoreStep[] = [];
  for (const d of ds) {
    const e = decodeEvent(InteractionTracked, d);
    const merged = e.mergedContactIds.map((id) => id.toLowerCase()).filter((id) => uuid.test(id));
    if (merged.length > 0) steps.push({ kind: "drop", contactIds: merged });
    const id = e.contactId.toLowerCase();
    if (uuid.test(id)) steps.push({ kind: "score", contactId: id, cause: causeOf(d), parent: d.context });
  }
  return steps;
}

/**
 * Handles a batch of `crm.interaction_tracked` deliveries in one transaction: drops the stored
 * scores of merged contacts and re-scores each interaction's contact, with the effect of handling
 * them one by one in order (see {@link rescoreBatch}).
 */
export async function onInteractionsTracked(
  deps: LeadScoringConsumerDeps,
  ds: readonly (Delivery & { context?: Context })[],
  em: EntityManager,
): Promise<void> {
  const steps = interactionSteps(ds);
  if (steps.length === 0) return;
  await rescoreBatch({ db: deps.db, prefix: deps.bus.prefix }, em, steps, deps.now());
}

/** Handles one `crm.interaction_tracked` delivery (a batch of one). */
export async function onInteractionTracked(
  deps: LeadScoringConsumerDeps,
  d: Delivery,
  em: EntityManager,
): Promise<void> {
  await onInteractionsTracked(deps, [d], em);
}

/** Handles one `data.conversion_recorded` delivery. */
export async function onConversionRecorded(
  deps: LeadScoringConsumerDeps,
  d: Delivery,
  em: EntityManager,
): Promise<void> {
  const e = decodeEvent(ConversionRecorded, d);
  const schema = deps.db.schema;
  let id = e.contactId.toLowerCase();
  if (!uuid.test(id)) {
    if (e.anonymousId === "") return;
    id = (await contactOfAnonymous(em, schema, e.anonymousId)) ?? "";
    if (id === "") return;
  }
  const contact = await survivor(em, schema, id);
  if (contact === undefined) return;
  const now = deps.now();
  const conversionId = e.conversionId !== "" ? e.conversionId : causeOf(d).msgId;
  const inserted = (await em.execute(
    `insert into "${schema}"."crm_scoring_conversion" (conversion_id, contact_id, conversion_name, occurred_at, recorded_at)` +
      " values (?, ?, ?, ?, ?) on conflict do nothing returning 1 as inserted",
    [
      conversionId.slice(0, 64),
      contact.id,
      e.conversionName.slice(0, 128),
      e.occurredAt === undefined ? now : new Date(Number(e.occurredAt.seconds) * 1000 + e.occurredAt.nanos / 1e6),
      now,
    ],
  )) as { inserted: number }[];
  if (inserted.length > 0 && (await loadStoredModel(deps.db, em))?.settings !== undefined) {
    await refreshMarket(deps.db, em, marketKey(contact.city, contact.region), now);
  }
  await rescoreContact({ db: deps.db, prefix: deps.bus.prefix }, em, contact.id, now, causeOf(d));
}

/** Starts both consumers (the interactions one batched, with `concurrency` batch loops). */
export async function startLeadScoring(deps: LeadScoringConsumerDeps): Promise<Running[]> {
  const batchSize = Math.max(1, deps.batchSize ?? 500);
  const loops = Math.max(1, deps.concurrency ?? 1);
  const interactions = await consumeBatches(
    deps.bus,
    {
      stream: "events",
      durable: interactionsDurable,
      filter: deps.bus.eventSubject(InteractionTracked),
      maxAckPending: deps.maxAckPending ?? Math.max(64, batchSize * loops * 2),
    },
    (batch, em) => onInteractionsTracked(deps, batch, em),
    { db: deps.db, batchSize, concurrency: loops },
  );
  const conversions = await deps.bus.consume(
    {
      stream: "events",
      durable: conversionsDurable,
      filter: deps.bus.eventSubject(ConversionRecorded),
      maxAckPending: deps.maxAckPending ?? 64,
    },
    (d, em) => onConversionRecorded(deps, d, required(em)),
    { db: deps.db },
  );
  return [interactions, conversions];
}
