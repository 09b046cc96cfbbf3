/**
 * Lead scoring on behaviour and demographics (`crm.lead_scoring`).
 *
 * Method: a points model (scoring/evaluate.ts). Fit points come from rule trees over the contact's
 * standard fields and custom attributes (and interaction counts); behaviour points come per
 * matching interaction, decayed exponentially by the rule's half-life: points × 0.5^(age /
 * half-life), at most `max_occurrences` most recent interactions per rule. The total is graded
 * against the MQL and SQL thresholds (an SQL also needs `sql_min_fit_score`), and every
 * contributing rule is reported, largest absolute contribution first. Reference: the
 * points-based lead scoring of marketing automation (fit × engagement), with exponential decay as
 * in the half-life models of HubSpot/Marketo score degradation.
 *
 * Location: with `market_weighting` enabled, each behaviour rule's points are scaled per market
 * (city|region) by the market's engagement→conversion rate relative to the national one, shrunk by
 * a beta-binomial prior (scoring/market.ts), learned from the stored interactions and conversions.
 *
 * Stored contacts are read in chunks of 500 with at most 5,000 most recent relevant interactions
 * each; inline leads are scored on their own interactions plus, when they carry a stored id, the
 * stored ones (inline ones win on a shared event id). Interactions after `as_of` do not count.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type Interaction,
  type LeadScore,
  type ScoreLeadsRequest,
  ScoreLeadsRequestSchema,
  type ScoreLeadsResponse,
  ScoreLeadsResponseSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { checkContract, InvalidInputError } from "../../../lib/errors/index.ts";
import {
  marketKey,
  newestFirst,
  prepareContact,
  type RuleMultipliers,
  type ScoredInteraction,
  scoreContact,
  typesRead,
} from "../scoring/evaluate.ts";
import { loadContacts, loadInteractions } from "../scoring/load.ts";
import { type LearnedWeights, learnMarketWeights, marketSettings } from "../scoring/market.ts";
import { checkScoringModel } from "../scoring/validate.ts";

/** Dependencies of the skill. */
export interface ScoreLeadsDeps {
  /** The operations database (stored contacts, interactions and conversions). */
  db: Database;
  /** Clock, for `as_of` when the request has none. */
  now: () => Date;
}

/** Contacts read per database round trip. */
const chunkSize = 500;

function scoredInteraction(i: Interaction): ScoredInteraction {
  return {
    eventId: i.eventId,
    type: i.type,
    channel: i.channel,
    url: i.url,
    occurredAtMs: i.occurredAt === undefined ? 0 : timestampDate(i.occurredAt).getTime(),
  };
}

function multipliersOf(weights: LearnedWeights | undefined, market: string): RuleMultipliers | undefined {
  if (weights === undefined || market === "") return undefined;
  const m = weights.markets.get(market);
  return m === undefined ? undefined : new Map([...m].map(([rule, w]) => [rule, w.multiplier]));
}

/** ScoreLeads: scores stored or inline contacts with the request's model. */
export async function scoreLeads(deps: ScoreLeadsDeps, req: ScoreLeadsRequest): Promise<ScoreLeadsResponse> {
  checkContract(ScoreLeadsRequestSchema, req);
  const model = checkScoringModel(req.model);
  const asOf = req.asOf === undefined ? deps.now() : timestampDate(req.asOf);
  if (Number.isNaN(asOf.getTime())) throw new InvalidInputError("as_of", "is not a valid time");
  const settings = marketSettings(req.marketWeighting);
  const types = typesRead(model);
  const needsDb =
    settings !== undefined || req.contactIds.length > 0 || req.inlineLeads.some((l) => (l.contact?.id ?? "") !== "");
  const em = needsDb ? deps.db.fork() : undefined;
  const weights =
    em !== undefined && settings !== undefined
      ? await learnMarketWeights(em, deps.db.schema, model, settings, asOf)
      : undefined;

  const scores: LeadScore[] = [];
  const missing: string[] = [];
  if (em !== undefined && req.contactIds.length > 0) {
    for (let start = 0; start < req.contactIds.length; start += chunkSize) {
      const ids = req.contactIds.slice(start, start + chunkSize).map((id) => id.toLowerCase());
      const contacts = await loadContacts(em, ids);
      const found = ids.filter((id) => contacts.has(id));
      const interactions = await loadInteractions(em, deps.db.schema, found, types, asOf);
      ids.forEach((id, j) => {
        const contact = contacts.get(id);
        if (contact === undefined) {
          missing.push(req.contactIds[start + j] as string);
          return;
        }
        const market = marketKey(contact.city, contact.region);
        scores.push(
          scoreContact(model, prepareContact(contact), interactions.get(id) ?? [], asOf, {
            inputIndex: start + j,
            market,
            ...withMultipliers(multipliersOf(weights, market)),
          }),
        );
      });
      em.clear();
    }
  }
  for (let start = 0; start < req.inlineLeads.length; start += chunkSize) {
    const leads = req.inlineLeads.slice(start, start + chunkSize);
    const storedIds = [...new Set(leads.map((l) => (l.contact?.id ?? "").toLowerCase()).filter((id) => id !== ""))];
    const stored =
      em !== undefined && storedIds.length > 0
        ? await loadInteractions(em, deps.db.schema, storedIds, types, asOf)
        : new Map<string, ScoredInteraction[]>();
    leads.forEach((lead, j) => {
      const contact = lead.contact;
      if (contact === undefined) throw new InvalidInputError(`inline_leads[${start + j}].contact`, "is required");
      const own = lead.interactions.map(scoredInteraction);
      const ownIds = new Set(own.map((i) => i.eventId).filter((e) => e !== ""));
      const extra = (stored.get(contact.id.toLowerCase()) ?? []).filter(
        (i) => i.eventId === "" || !ownIds.has(i.eventId),
      );
      const market = marketKey(contact.city, contact.region);
      scores.push(
        scoreContact(model, prepareContact(contact), newestFirst([...own, ...extra]), asOf, {
          inputIndex: start + j,
          market,
          ...withMultipliers(multipliersOf(weights, market)),
        }),
      );
    });
  }
  scores.sort((a, b) => b.totalScore - a.totalScore || a.inputIndex - b.inputIndex);
  return create(ScoreLeadsResponseSchema, { scores, missingContactIds: missing, asOf: timestampFromDate(asOf) });
}

function withMultipliers(m: RuleMultipliers | undefined): { multipliers?: RuleMultipliers } {
  return m === undefined ? {} : { multipliers: m };
}
