/**
 * Incremental re-evaluation of stored segments: durable JetStream consumers (one filter subject
 * each, as NATS 2.9 requires), in inbox mode, so each event takes effect once however often it is
 * redelivered. Each re-evaluates every stored segment for the event's contact (stored.ts) in the
 * transaction that records the inbox row and the SegmentMembershipChanged outbox rows.
 *
 * - `crm_segments_interactions` on `<prefix>.events.crm.interaction_tracked`: the interaction's
 *   contact, and the contacts merged into it (they leave every segment).
 * - `crm_segments_lead_scores` on `<prefix>.events.crm.lead_score_changed`: the re-scored contact.
 */
import { type Bus, type Delivery, decodeEvent, type Running } from "../../../lib/bus/index.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { InteractionTracked, LeadScoreChanged } from "../events.ts";
import type { RecheckLimits } from "./next-change.ts";
import { type Cause, reevaluateContact } from "./stored.ts";

/** Durable consumer names. */
export const segmentInteractionsDurable = "crm_segments_interactions";
export const segmentScoresDurable = "crm_segments_lead_scores";

/** What the consumers need. */
export interface SegmentConsumerDeps {
  readonly db: Database;
  readonly bus: Bus;
  readonly now: () => Date;
  /** Messages in flight per instance and consumer (default 64). */
  readonly maxAckPending?: number;
  /** Spacing of scheduled re-evaluations, for the due times events bring forward (schedule.ts). */
  readonly recheck?: RecheckLimits;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function causeOf(d: Delivery): Cause {
  return { subject: d.subject, msgId: d.msgId ?? `${d.subject}#${d.streamSeq}` };
}

function inbox(em: EntityManager | undefined): EntityManager {
  if (em === undefined) throw new Error("segment consumers run in inbox mode");
  return em;
}

/** Re-evaluates the contacts an event is about. */
async function reevaluate(
  deps: SegmentConsumerDeps,
  em: EntityManager,
  ids: readonly string[],
  d: Delivery,
): Promise<void> {
  for (const id of new Set(ids.map((x) => x.toLowerCase()).filter((x) => uuid.test(x)))) {
    await reevaluateContact(deps, em, id, causeOf(d));
  }
}

/** Starts both consumers. */
export async function startSegmentConsumers(deps: SegmentConsumerDeps): Promise<Running[]> {
  const prefix = deps.bus.prefix;
  const maxAckPending = deps.maxAckPending ?? 64;
  return Promise.all([
    deps.bus.consume(
      {
        stream: "events",
        durable: segmentInteractionsDurable,
        filter: `${prefix}.events.crm.interaction_tracked`,
        maxAckPending,
      },
      async (d, em) => {
        const e = decodeEvent(InteractionTracked, d);
        await reevaluate(deps, inbox(em), [e.contactId, ...e.mergedContactIds], d);
      },
      { db: deps.db },
    ),
    deps.bus.consume(
      {
        stream: "events",
        durable: segmentScoresDurable,
        filter: `${prefix}.events.crm.lead_score_changed`,
        maxAckPending,
      },
      async (d, em) => {
        const e = decodeEvent(LeadScoreChanged, d);
        await reevaluate(deps, inbox(em), [e.contactId], d);
      },
      { db: deps.db },
    ),
  ]);
}
