/**
 * Location-aware behaviour weights: each market (a contact's city with its region) gets the points
 * of each behaviour rule scaled by how well that rule's engagement converts in the market, shrunk
 * towards the national rate by empirical Bayes.
 *
 * For a behaviour rule r, the contacts "engaged" by r are those with at least one interaction
 * matching r (type, channel, URL text), and a contact "converted" when the CRM holds a conversion
 * of it (`data.conversion_recorded`) or a PURCHASE interaction. With N engaged contacts nationally
 * of which C converted, the national rate is p = C / N. In a market with n engaged and c converted,
 * the rate is estimated by the posterior mean of a beta-binomial model whose prior Beta(k·p, k·(1−p))
 * is centred on the national rate with strength k (pseudo-contacts):
 *
 *     p̂ = (c + k·p) / (n + k)
 *
 * and the rule's points in the market are multiplied by m = min(p̂ / p, max_multiplier). With n ≪ k
 * p̂ ≈ p and m ≈ 1 (national weights); with n ≫ k p̂ ≈ c / n (the market's own rate). When p = 0
 * (no engaged contact converted anywhere) m = 1. Reference: the beta-binomial posterior mean
 * (Gelman et al., Bayesian Data Analysis, 3rd ed., §2.4 and §5.3), as used for empirical-Bayes
 * shrinkage of local rates (Efron & Morris 1975).
 */
import type { BehaviourRule, MarketWeighting, ScoringModel } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { EntityManager } from "../../../lib/db/index.ts";

/** Prior strength k when the request says 0. */
export const defaultPriorStrength = 20;
/** Largest multiplier when the request says 0. */
export const defaultMaxMultiplier = 3;

/** Effective market weighting settings; undefined when weighting is off. */
export interface MarketSettings {
  priorStrength: number;
  maxMultiplier: number;
}

/** The settings of a request's market weighting (defaults applied); undefined when disabled. */
export function marketSettings(w: MarketWeighting | undefined): MarketSettings | undefined {
  if (w === undefined || !w.enabled) return undefined;
  return {
    priorStrength: w.priorStrength === 0 ? defaultPriorStrength : w.priorStrength,
    maxMultiplier: w.maxMultiplier === 0 ? defaultMaxMultiplier : w.maxMultiplier,
  };
}

/** The shrunk market rate (c + k·p) / (n + k). */
export function shrunkRate(converted: number, engaged: number, nationalRate: number, k: number): number {
  return engaged + k === 0 ? nationalRate : (converted + k * nationalRate) / (engaged + k);
}

/** The multiplier of a rule's points in a market: shrunk rate over national rate, capped; 1 when p = 0. */
export function marketMultiplier(converted: number, engaged: number, nationalRate: number, s: MarketSettings): number {
  if (!(nationalRate > 0)) return 1;
  return Math.min(shrunkRate(converted, engaged, nationalRate, s.priorStrength) / nationalRate, s.maxMultiplier);
}

/** Counts and weight of one rule in one market ("" = national). */
export interface RuleWeight {
  market: string;
  ruleId: string;
  engaged: number;
  converted: number;
  /** National: C / N; market: the shrunk rate. */
  rate: number;
  multiplier: number;
}

/** Learned weights: national rows and per-market rows. */
export interface LearnedWeights {
  national: RuleWeight[];
  /** Market key → rule id → weight. */
  markets: Map<string, Map<string, RuleWeight>>;
}

interface CountRow {
  market: string;
  engaged: number;
  converted: number;
}

/** Engaged and converted contacts of one rule, per market ("" for contacts without a city). */
async function countRule(em: EntityManager, schema: string, rule: BehaviourRule, asOf: Date): Promise<CountRow[]> {
  const s = `"${schema}"`;
  const where = ["i.contact_id is not null", "i.type = ?", "i.occurred_at <= ?"];
  const params: (string | number | Date)[] = [rule.interactionType, asOf];
  if (rule.channel !== 0) {
    where.push("i.channel = ?");
    params.push(rule.channel);
  }
  if (rule.urlContains !== "") {
    where.push("strpos(i.url, ?) > 0");
    params.push(rule.urlContains);
  }
  const marketExpr = `case when lower(trim(c.city)) = '' then '' else lower(trim(c.city)) || '|' || lower(trim(c.region)) end`;
  const sql =
    `select ${marketExpr} as market, count(*)::int as engaged,` +
    ` count(*) filter (where exists (select 1 from ${s}."crm_scoring_conversion" v where v.contact_id = c.id and v.occurred_at <= ?)` +
    ` or exists (select 1 from ${s}."crm_interaction" p where p.contact_id = c.id and p.type = 17 and p.occurred_at <= ?))::int as converted` +
    ` from (select distinct i.contact_id from ${s}."crm_interaction" i where ${where.join(" and ")}) e` +
    ` join ${s}."crm_contact" c on c.id = e.contact_id and c.merged_into_id is null` +
    " group by 1";
  return (await em.execute(sql, [asOf, asOf, ...params])) as CountRow[];
}

/**
 * Learns the weights of every behaviour rule of `model` from the stored interactions and
 * conversions at or before `asOf`: national rates, and the weights of every market (or only of
 * `onlyMarket`).
 */
export async function learnMarketWeights(
  em: EntityManager,
  schema: string,
  model: ScoringModel,
  s: MarketSettings,
  asOf: Date,
  onlyMarket?: string,
): Promise<LearnedWeights> {
  const national: RuleWeight[] = [];
  const markets = new Map<string, Map<string, RuleWeight>>();
  for (const rule of model.behaviourRules) {
    const all = await countRule(em, schema, rule, asOf);
    const N = all.reduce((a, r) => a + r.engaged, 0);
    const C = all.reduce((a, r) => a + r.converted, 0);
    const p = N === 0 ? 0 : C / N;
    national.push({ market: "", ruleId: rule.id, engaged: N, converted: C, rate: p, multiplier: 1 });
    for (const r of all) {
      if (r.market === "" || (onlyMarket !== undefined && r.market !== onlyMarket)) continue;
      let m = markets.get(r.market);
      if (m === undefined) {
        m = new Map();
        markets.set(r.market, m);
      }
      m.set(rule.id, {
        market: r.market,
        ruleId: rule.id,
        engaged: r.engaged,
        converted: r.converted,
        rate: p > 0 ? shrunkRate(r.converted, r.engaged, p, s.priorStrength) : 0,
        multiplier: marketMultiplier(r.converted, r.engaged, p, s),
      });
    }
  }
  return { national, markets };
}
