/**
 * Sales forecasting from the pipeline (`crm.sales_forecast`).
 *
 * Method, three views of the coming months:
 * - the stage-probability weighted pipeline: Σ amount × probability per month of expected close.
 *   For deals the CRM holds, a stage's probability is calibrated from the CRM's own history: the
 *   closed deals that passed through the stage, won or lost, update a Beta prior centred on the
 *   probability the pipeline configures (forecast/calibration.ts). Inline deals carry their own.
 *   Deals older than `stale_after` have their probability multiplied by the stale factor; deals
 *   whose expected close has passed are moved to the first month (slipped).
 * - a Monte Carlo simulation, seeded, in which each deal closes in its month with its probability,
 *   giving P10/P50/P90 per month and for the horizon (forecast/monte-carlo.ts); a calibrated
 *   stage's probability is itself drawn from its Beta posterior in each iteration, so the
 *   intervals carry the calibration's uncertainty as well as the deals' luck. The work is capped
 *   at 2·10⁸ deal draws: beyond it fewer iterations run, and `iterations` says how many.
 * - Holt-Winters triple exponential smoothing of the monthly booking history
 *   (forecast/holt-winters.ts), projected onto the same months.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Money, MoneySchema, TimeRangeSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  ForecastPeriodSchema,
  type ForecastSalesRequest,
  ForecastSalesRequestSchema,
  type ForecastSalesResponse,
  ForecastSalesResponseSchema,
  HoltWintersFitSchema,
  SeasonalMode,
  StageForecastSchema,
  StageOutcome,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { checkContract, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import { CrmDeal } from "../entities.ts";
import { calibratedProbability } from "../forecast/calibration.ts";
import { fitHoltWinters, type HoltWintersModel } from "../forecast/holt-winters.ts";
import { type SimDeal, type StagePosterior, simulate } from "../forecast/monte-carlo.ts";
import { seededRandom } from "../forecast/random.ts";
import { loadPipeline, stageOf } from "../pipeline/definition.ts";

/** Dependencies of the skill. */
export interface ForecastSalesDeps {
  /** The operations database. */
  db: Database;
  /** Clock, for `as_of` when the request has none. */
  now: () => Date;
}

/** Most stored open deals forecast at once (the inline limit of the contract). */
const maxStoredDeals = 100_000;
/** Most Bernoulli draws one forecast makes (iterations × deals in the horizon). */
const maxDraws = 200_000_000;
const defaultPriorStrength = 10;

/** A deal ready to forecast. */
interface ForecastDeal {
  stageKey: string;
  amountMicros: number;
  /** Probability before ageing. */
  probability: number;
  configured: number;
  won: number;
  lost: number;
  /** Calibrated from the CRM's history (stored deals), so simulated from its Beta posterior. */
  calibrated: boolean;
  expectedClose: Date | undefined;
  ageMs: number;
}

/** Micros of a Money. */
function micros(m: Money): number {
  return Number(m.units) * 1e6 + m.nanos / 1e3;
}

/** A Money of `value` micros (rounded to the micro). */
function money(currencyCode: string, value: number): Money {
  const rounded = Math.round(value);
  const units = Math.trunc(rounded / 1e6);
  return create(MoneySchema, { currencyCode, units: BigInt(units), nanos: (rounded - units * 1e6) * 1000 });
}

/** First instant of the UTC month `offset` months after the month of `d`. */
function monthStart(d: Date, offset = 0): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1));
}

/** Whole months from the month of `a` to the month of `b`. */
function monthsBetween(a: Date, b: Date): number {
  return (b.getUTCFullYear() - a.getUTCFullYear()) * 12 + (b.getUTCMonth() - a.getUTCMonth());
}

/** Open deals the CRM holds, with calibrated stage probabilities. */
async function storedDeals(
  deps: ForecastSalesDeps,
  req: ForecastSalesRequest,
  asOf: Date,
  priorStrength: number,
): Promise<ForecastDeal[]> {
  const em = deps.db.fork();
  const rows = await em.find(
    CrmDeal,
    {
      outcome: StageOutcome.OPEN,
      currencyCode: req.currencyCode,
      createdAt: { $lte: asOf },
      ...(req.pipelineId !== "" ? { pipelineId: req.pipelineId } : {}),
    },
    { limit: maxStoredDeals + 1, orderBy: { id: "asc" } },
  );
  if (rows.length > maxStoredDeals) {
    throw new FailedPreconditionError(`more than ${maxStoredDeals} open deals; forecast one pipeline at a time`);
  }
  // Closed deals per (pipeline, stage they passed through, outcome), closed before as_of.
  const counts = (await em.execute(
    `select h.pipeline_id, h.to_stage, d.outcome, count(distinct d.id)::int as n` +
      ` from "${deps.db.schema}"."crm_deal_stage_change" h join "${deps.db.schema}"."crm_deal" d on d.id = h.deal_id` +
      ` where d.outcome in (?, ?) and d.closed_at <= ?${req.pipelineId !== "" ? " and d.pipeline_id = ?" : ""}` +
      ` group by h.pipeline_id, h.to_stage, d.outcome`,
    [StageOutcome.WON, StageOutcome.LOST, asOf, ...(req.pipelineId !== "" ? [req.pipelineId] : [])],
  )) as { pipeline_id: string; to_stage: string; outcome: number; n: number }[];
  const history = new Map<string, { won: number; lost: number }>();
  for (const c of counts) {
    const key = `${c.pipeline_id}/${c.to_stage}`;
    const h = history.get(key) ?? { won: 0, lost: 0 };
    if (c.outcome === StageOutcome.WON) h.won += c.n;
    else h.lost += c.n;
    history.set(key, h);
  }
  const pipelines = new Map<string, Awaited<ReturnType<typeof loadPipeline>>>();
  const multiple = new Set(rows.map((r) => r.pipelineId)).size > 1;
  const out: ForecastDeal[] = [];
  for (const r of rows) {
    if (!pipelines.has(r.pipelineId)) pipelines.set(r.pipelineId, await loadPipeline(em, r.pipelineId));
    const def = pipelines.get(r.pipelineId)?.definition;
    const configured = def === undefined ? 0 : (stageOf(def, r.stage)?.probability ?? 0);
    const h = history.get(`${r.pipelineId}/${r.stage}`) ?? { won: 0, lost: 0 };
    out.push({
      stageKey: multiple ? `${r.pipelineId}/${r.stage}` : r.stage,
      amountMicros: Number(r.amountUnits ?? 0) * 1e6 + (r.amountNanos ?? 0) / 1e3,
      probability: calibratedProbability(configured, h.won, h.lost, priorStrength),
      configured,
      won: h.won,
      lost: h.lost,
      calibrated: true,
      expectedClose: r.expectedClose ?? undefined,
      ageMs: asOf.getTime() - r.createdAt.getTime(),
    });
  }
  return out;
}

/** Fits Holt-Winters to the request's history; undefined without history. */
function holtWinters(req: ForecastSalesRequest): { model: HoltWintersModel; last: Date } | undefined {
  if (req.history.length === 0) return undefined;
  const hw = req.holtWinters;
  const m = hw?.seasonLength || 12;
  const mode = hw?.seasonalMode === SeasonalMode.MULTIPLICATIVE ? "multiplicative" : "additive";
  const months = req.history.map((h) => timestampDate(h.monthStart as NonNullable<typeof h.monthStart>));
  months.forEach((d, i) => {
    if (d.getTime() !== monthStart(d).getTime()) {
      throw new InvalidInputError(`history[${i}].month_start`, "must be midnight UTC on the first day of a month");
    }
    const prev = months[i - 1];
    if (prev !== undefined && monthsBetween(prev, d) !== 1) {
      throw new InvalidInputError(`history[${i}].month_start`, "must be the month after the previous entry's");
    }
  });
  const y = req.history.map((h) => micros(h.amount as Money) / 1e6);
  if (mode === "multiplicative") {
    const i = y.findIndex((v) => v <= 0);
    if (i >= 0) throw new InvalidInputError(`history[${i}].amount`, "must be positive for multiplicative seasonality");
  }
  const model = fitHoltWinters(y, {
    alpha: hw?.alpha || undefined,
    beta: hw?.beta || undefined,
    gamma: hw?.gamma || undefined,
    mode,
    seasonLength: m,
  });
  return { model, last: months.at(-1) as Date };
}

/** Runs the forecast. */
export async function forecastSales(
  deps: ForecastSalesDeps,
  req: ForecastSalesRequest,
): Promise<ForecastSalesResponse> {
  checkContract(ForecastSalesRequestSchema, req);
  const asOf = req.asOf !== undefined ? timestampDate(req.asOf) : deps.now();
  const horizon = req.horizonMonths || 3;
  const requested = req.monteCarloIterations || 10_000;
  const priorStrength = req.priorStrength || defaultPriorStrength;
  const staleFactor = req.staleProbabilityFactor || 0.5;
  const staleAfterMs =
    req.staleAfter !== undefined ? Number(req.staleAfter.seconds) * 1000 + req.staleAfter.nanos / 1e6 : undefined;
  const cur = req.currencyCode;
  const hw = holtWinters(req);

  const deals: ForecastDeal[] =
    req.deals.length > 0
      ? req.deals.map((d) => ({
          stageKey: d.stage,
          amountMicros: micros(d.amount as Money),
          probability: d.stageProbability,
          configured: d.stageProbability,
          won: 0,
          lost: 0,
          calibrated: false,
          expectedClose: d.expectedClose !== undefined ? timestampDate(d.expectedClose) : undefined,
          ageMs: d.age !== undefined ? Number(d.age.seconds) * 1000 + d.age.nanos / 1e6 : 0,
        }))
      : await storedDeals(deps, req, asOf, priorStrength);

  const first = monthStart(asOf);
  const periods = Array.from({ length: horizon }, (_, i) => ({
    start: monthStart(first, i),
    end: monthStart(first, i + 1),
    weighted: 0,
    count: 0,
  }));
  const stages = new Map<string, { count: number; amount: number; weighted: number; d: ForecastDeal }>();
  const sim: SimDeal[] = [];
  // A calibrated stage's Beta(w + k·p, l + k·(1 − p)) posterior, one per stage (calibration.ts);
  // a degenerate one (p of 0 or 1 and no contrary outcome) keeps its probability fixed.
  const posteriors: StagePosterior[] = [];
  const posteriorIndex = new Map<string, number | undefined>();
  const posteriorOf = (d: ForecastDeal): number | undefined => {
    if (!d.calibrated) return undefined;
    if (!posteriorIndex.has(d.stageKey)) {
      const alpha = d.won + priorStrength * d.configured;
      const beta = d.lost + priorStrength * (1 - d.configured);
      posteriorIndex.set(d.stageKey, alpha > 0 && beta > 0 ? posteriors.push({ alpha, beta }) - 1 : undefined);
    }
    return posteriorIndex.get(d.stageKey);
  };
  let total = 0;
  let weighted = 0;
  let slipped = 0;
  for (const d of deals) {
    const p = staleAfterMs !== undefined && d.ageMs > staleAfterMs ? d.probability * staleFactor : d.probability;
    total += d.amountMicros;
    weighted += d.amountMicros * p;
    const s = stages.get(d.stageKey) ?? { count: 0, amount: 0, weighted: 0, d };
    s.count++;
    s.amount += d.amountMicros;
    s.weighted += d.amountMicros * p;
    stages.set(d.stageKey, s);
    if (d.expectedClose === undefined) continue;
    let period = monthsBetween(first, d.expectedClose);
    if (d.expectedClose.getTime() < asOf.getTime()) {
      slipped++;
      period = 0;
    }
    const target = periods[period];
    if (target === undefined) continue;
    target.weighted += d.amountMicros * p;
    target.count++;
    sim.push({ amountMicros: d.amountMicros, probability: p, period, posterior: posteriorOf(d) });
  }
  const iterations = Math.max(1, Math.min(requested, Math.floor(maxDraws / Math.max(1, sim.length))));
  const result = simulate(sim, horizon, iterations, seededRandom(req.seed), posteriors);

  return create(ForecastSalesResponseSchema, {
    currencyCode: cur,
    totalPipeline: money(cur, total),
    weightedPipeline: money(cur, weighted),
    periods: periods.map((p, i) => {
      const dist = result.periods[i] as (typeof result.periods)[number];
      const h = hw === undefined ? 0 : monthsBetween(hw.last, p.start);
      return create(ForecastPeriodSchema, {
        period: create(TimeRangeSchema, { start: timestampFromDate(p.start), end: timestampFromDate(p.end) }),
        weighted: money(cur, p.weighted),
        p10: money(cur, dist.p10),
        p50: money(cur, dist.p50),
        p90: money(cur, dist.p90),
        mean: money(cur, dist.mean),
        ...(hw !== undefined && h >= 1 ? { holtWinters: money(cur, hw.model.forecast(h) * 1e6) } : {}),
        dealCount: p.count,
      });
    }),
    totalP10: money(cur, result.total.p10),
    totalP50: money(cur, result.total.p50),
    totalP90: money(cur, result.total.p90),
    stages: [...stages.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([stage, s]) =>
        create(StageForecastSchema, {
          stage,
          dealCount: s.count,
          amount: money(cur, s.amount),
          weighted: money(cur, s.weighted),
          probability: s.d.probability,
          configuredProbability: s.d.configured,
          wonCount: s.d.won,
          lostCount: s.d.lost,
        }),
      ),
    holtWinters: create(HoltWintersFitSchema, {
      fitted: hw !== undefined,
      ...(hw !== undefined
        ? {
            alpha: hw.model.alpha,
            beta: hw.model.beta,
            gamma: hw.model.gamma,
            seasonalMode: hw.model.mode === "multiplicative" ? SeasonalMode.MULTIPLICATIVE : SeasonalMode.ADDITIVE,
            seasonLength: hw.model.seasonLength,
            rmse: hw.model.rmse,
            mape: hw.model.mape,
          }
        : {}),
    }),
    iterations,
    seed: req.seed,
    slippedDealCount: slipped,
  });
}
