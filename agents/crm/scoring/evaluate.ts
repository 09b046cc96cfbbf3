/**
 * The points model of lead scoring, evaluated in memory on one contact and its interactions.
 *
 * - Fit: every fit rule whose condition (a boolean rule tree over the contact's standard fields,
 *   custom attributes and interaction counts) holds adds its points once.
 * - Behaviour: every interaction matching a behaviour rule (type; channel and URL substring when the
 *   rule sets them; at or before `asOf`) adds points × m × 0.5^(age / half-life), where age is
 *   `asOf − occurred_at`, a zero half-life means no decay, and m is the market multiplier of the
 *   rule in the contact's market (1 without market weighting, see market.ts). With
 *   `max_occurrences` > 0 only the most recent matching interactions count.
 * - Grade: SQL when the total reaches the SQL threshold and the fit score reaches
 *   `sql_min_fit_score`; else MQL when the total reaches the MQL threshold; else unqualified.
 *
 * Every contributing rule is reported (fit rules that matched; behaviour rules with at least one
 * counted interaction), largest absolute contribution first.
 */
import { create } from "@bufbuild/protobuf";
import {
  type BehaviourCondition,
  type BehaviourRule,
  BooleanOperator,
  type Condition,
  type Contact,
  LeadGrade,
  type LeadScore,
  LeadScoreSchema,
  type RuleContribution,
  RuleContributionSchema,
  type ScoringModel,
  ScoringRuleKind,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { forEachLeaf, maxConditionDepth } from "../conditions.ts";
import { attributeFieldValue, compareContactField, durationMs } from "../fields.ts";
import type { FieldValue } from "../pipeline/compare.ts";

/** What scoring reads of an interaction. */
export interface ScoredInteraction {
  /** Producer event id (to deduplicate inline and stored interactions); "" when unknown. */
  eventId: string;
  /** mesh.crm.v1.InteractionType number. */
  type: number;
  /** mesh.crm.v1.TouchpointChannel number. */
  channel: number;
  url: string;
  /** Milliseconds since the epoch. */
  occurredAtMs: number;
}

/** Market multipliers of behaviour rules (by rule id) in a contact's market; missing means 1. */
export type RuleMultipliers = ReadonlyMap<string, number>;

/** Market key of a city and region: both trimmed and lower-cased, joined by `|`; "" without a city. */
export function marketKey(city: string, region: string): string {
  const c = city.trim().toLowerCase();
  return c === "" ? "" : `${c}|${region.trim().toLowerCase()}`;
}

/** A contact prepared for evaluation: attribute values by key. */
export interface PreparedContact {
  contact: Contact;
  attributes: ReadonlyMap<string, FieldValue>;
}

/** Prepares a contact (its attributes by key) once for every rule. */
export function prepareContact(contact: Contact): PreparedContact {
  const attributes = new Map<string, FieldValue>();
  for (const a of contact.attributes) if (a.value !== undefined) attributes.set(a.key, attributeFieldValue(a.value));
  return { contact, attributes };
}

/** True when the interaction counts for a rule or condition of this type, channel and URL text. */
function matches(i: ScoredInteraction, type: number, channel: number, urlContains: string): boolean {
  return (
    i.type === type && (channel === 0 || i.channel === channel) && (urlContains === "" || i.url.includes(urlContains))
  );
}

function countBehaviour(b: BehaviourCondition, interactions: readonly ScoredInteraction[], asOfMs: number): number {
  const within = durationMs(b.within);
  const since = within > 0 ? asOfMs - within : Number.NEGATIVE_INFINITY;
  let n = 0;
  for (const i of interactions) {
    if (i.occurredAtMs >= since && matches(i, b.interactionType, b.channel, b.urlContains)) n++;
  }
  return n;
}

/** Evaluates a rule tree; `interactions` are those at or before `asOf`. */
export function conditionHolds(
  c: PreparedContact,
  cond: Condition,
  interactions: readonly ScoredInteraction[],
  asOf: Date,
  depth = 0,
): boolean {
  if (depth >= maxConditionDepth) return false;
  const node = cond.node;
  switch (node.case) {
    case "field":
      return compareContactField(c.contact, (key) => c.attributes.get(key), node.value, asOf).passed;
    case "behaviour":
      return countBehaviour(node.value, interactions, asOf.getTime()) >= node.value.minCount;
    case "group": {
      const g = node.value;
      if (g.booleanOperator === BooleanOperator.AND) {
        return g.conditions.every((x) => conditionHolds(c, x, interactions, asOf, depth + 1));
      }
      if (g.booleanOperator === BooleanOperator.OR) {
        return g.conditions.some((x) => conditionHolds(c, x, interactions, asOf, depth + 1));
      }
      const only = g.conditions[0];
      return only !== undefined && !conditionHolds(c, only, interactions, asOf, depth + 1);
    }
    default:
      return false;
  }
}

/** Decayed and undecayed points of a behaviour rule over the contact's interactions (newest first). */
export function behaviourPoints(
  rule: BehaviourRule,
  newestFirst: readonly ScoredInteraction[],
  asOfMs: number,
  multiplier: number,
): { points: number; undecayed: number; occurrences: number } {
  const halfLife = durationMs(rule.halfLife);
  const base = rule.points * multiplier;
  let points = 0;
  let occurrences = 0;
  for (const i of newestFirst) {
    if (rule.maxOccurrences > 0 && occurrences >= rule.maxOccurrences) break;
    if (i.occurredAtMs > asOfMs || !matches(i, rule.interactionType, rule.channel, rule.urlContains)) continue;
    const age = asOfMs - i.occurredAtMs;
    points += halfLife > 0 ? base * 0.5 ** (age / halfLife) : base;
    occurrences++;
  }
  return { points, undecayed: base * occurrences, occurrences };
}

/** The grade a total and fit score reach under the model's thresholds. */
export function gradeOf(model: ScoringModel, total: number, fit: number): LeadGrade {
  if (total >= model.sqlThreshold && fit >= model.sqlMinFitScore) return LeadGrade.SALES_QUALIFIED;
  if (total >= model.mqlThreshold) return LeadGrade.MARKETING_QUALIFIED;
  return LeadGrade.UNQUALIFIED;
}

/** Orders interactions newest first (ties by event id, so the order is stable). */
export function newestFirst(interactions: readonly ScoredInteraction[]): ScoredInteraction[] {
  return [...interactions].sort((a, b) => b.occurredAtMs - a.occurredAtMs || (a.eventId < b.eventId ? -1 : 1));
}

/**
 * Scores one contact. `interactions` must be newest first (see {@link newestFirst}); those after
 * `asOf` are ignored.
 */
export function scoreContact(
  model: ScoringModel,
  contact: PreparedContact,
  interactions: readonly ScoredInteraction[],
  asOf: Date,
  opts: { inputIndex: number; market: string; multipliers?: RuleMultipliers },
): LeadScore {
  const asOfMs = asOf.getTime();
  const past = interactions.filter((i) => i.occurredAtMs <= asOfMs);
  const contributions: RuleContribution[] = [];
  let fit = 0;
  for (const rule of model.fitRules) {
    if (rule.condition === undefined || !conditionHolds(contact, rule.condition, past, asOf)) continue;
    fit += rule.points;
    contributions.push(
      create(RuleContributionSchema, {
        ruleId: rule.id,
        kind: ScoringRuleKind.FIT,
        points: rule.points,
        undecayedPoints: rule.points,
        occurrences: 1,
        marketMultiplier: 1,
      }),
    );
  }
  let behaviour = 0;
  for (const rule of model.behaviourRules) {
    const m = opts.multipliers?.get(rule.id) ?? 1;
    const r = behaviourPoints(rule, past, asOfMs, m);
    if (r.occurrences === 0) continue;
    behaviour += r.points;
    contributions.push(
      create(RuleContributionSchema, {
        ruleId: rule.id,
        kind: ScoringRuleKind.BEHAVIOUR,
        points: r.points,
        undecayedPoints: r.undecayed,
        occurrences: r.occurrences,
        marketMultiplier: m,
      }),
    );
  }
  contributions.sort((a, b) => Math.abs(b.points) - Math.abs(a.points) || (a.ruleId < b.ruleId ? -1 : 1));
  const total = fit + behaviour;
  return create(LeadScoreSchema, {
    contactId: contact.contact.id,
    inputIndex: opts.inputIndex,
    totalScore: total,
    fitScore: fit,
    behaviourScore: behaviour,
    grade: gradeOf(model, total, fit),
    contributions,
    market: opts.market,
  });
}

/** Interaction types a model reads (behaviour rules and behaviour conditions of fit rules). */
export function typesRead(model: ScoringModel): number[] {
  const types = new Set<number>();
  for (const r of model.behaviourRules) types.add(r.interactionType);
  for (const r of model.fitRules) {
    if (r.condition === undefined) continue;
    forEachLeaf(r.condition, "", (leaf) => {
      if (leaf.node.case === "behaviour") types.add(leaf.node.value.interactionType);
    });
  }
  return [...types].sort((a, b) => a - b);
}
