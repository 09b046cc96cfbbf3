/**
 * Customer lifecycle and retention modelling (`crm.lifecycle_modeling`).
 *
 * Method (agents/crm/lifecycle/ holds the mathematics, each part tested against independent
 * values):
 * 1. Transactions up to `as_of` are summed per customer and UTC day; a day with a positive net
 *    amount is a purchase occasion, refunds count against spend (customers.ts). A transaction id
 *    seen twice is counted once. Transactions and churn events after `as_of` are outside the
 *    observation period and left out.
 * 2. Kaplan–Meier with Greenwood log-log 95% bands (kaplan-meier.ts) on each customer's first
 *    tenure spell: first purchase to the earliest churn event, or to the moment the inactivity
 *    limit ran out after a purchase (a lapse), else censored at `as_of`.
 * 3. BG/NBD by maximum likelihood on (x, t_x, T) in days (bg-nbd.ts), giving each customer's
 *    P(alive) and expected purchases over the horizon.
 * 4. Gamma-Gamma by maximum likelihood on the repeat customers' mean repeat spend (gamma-gamma.ts)
 *    when at least {@link minGammaGammaCustomers} have positive spend and the fit converges with
 *    q > 1; each customer's expected spend per purchase is then the model's posterior mean,
 *    otherwise the customer's own mean.
 * 5. CLV = margin × expected spend per purchase × expected purchases of each horizon month,
 *    discounted at the annual rate to the month's end (clv.ts). A customer whose churn event
 *    follows their last purchase has told us they left: P(alive), expected purchases and CLV 0.
 * 6. Stages (customers.ts): churned (churn event since the last purchase, or inactive past the
 *    limit) → new (first purchase within the window) → reactivated (back after a lapse or churn
 *    event, within the window) → churned / at risk by P(alive) → active.
 * 7. Customers are listed highest CLV first, at most {@link maxListedCustomers} of them.
 *
 * "No transactions" means the purchases the CRM holds, read page by page from a
 * {@link PurchaseSource}; the CRM has no purchase (won deal) store yet, so without one the skill
 * answers FAILED_PRECONDITION.
 *
 * The work is CPU-bound: it checks the call's signal and deadline between steps and inside every
 * long loop, and yields to the event loop between steps so other calls are served meanwhile.
 */
import { create } from "@bufbuild/protobuf";
import { type Duration, type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type CustomerLifecycle,
  CustomerLifecycleSchema,
  CustomerLifecycleStage,
  type CustomerTransaction,
  type ModelCustomerLifecycleRequest,
  ModelCustomerLifecycleRequestSchema,
  type ModelCustomerLifecycleResponse,
  ModelCustomerLifecycleResponseSchema,
  SurvivalTimeUnit,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { checkContract, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import { fitBgNbd, packHistories, type RepeatHistory } from "../lifecycle/bg-nbd.ts";
import { ClvModel, daysPerMonth } from "../lifecycle/clv.ts";
import {
  type CustomerHistory,
  dayOf,
  explicitlyChurned,
  firstSpell,
  lifecycleStage,
  meanOrderMicros,
  PurchaseLedger,
  repeatMeanMicros,
  repeatSummary,
  type Stage,
  type StageSettings,
} from "../lifecycle/customers.ts";
import { conditionalExpectedSpend, fitGammaGamma, type SpendHistory } from "../lifecycle/gamma-gamma.ts";
import { kaplanMeier, type SurvivalObservation } from "../lifecycle/kaplan-meier.ts";

/** Repeat customers with positive spend needed before the Gamma-Gamma model is fitted. */
export const minGammaGammaCustomers = 10;
/**
 * Most customers listed in a response, highest CLV first: a listed customer takes up to ~120 bytes,
 * so this keeps the answer well inside the 16 MiB message limit (250,000 one-purchase customers
 * would take 20 MB). Stage counts, total CLV and the curve always cover every customer, so
 * `sum(stage_counts) > customers.length` tells a caller the list was cut.
 */
export const maxListedCustomers = 120_000;
/** Purchases read from a {@link PurchaseSource} per page. */
export const sourcePageSize = 10_000;
/** Most purchases read from a {@link PurchaseSource} in one call (memory: one entry per customer-day). */
export const maxSourcePurchases = 2_000_000;

const defaultHorizonMonths = 12;
const defaultInactivityDays = 365;
const defaultNewWindowDays = 90;
const defaultAtRiskBelow = 0.5;
const defaultChurnedBelow = 0.15;
/** Items processed between deadline checks in the long loops. */
const checkEvery = 4096;
const int64Max = 2n ** 63n - 1n;

/** Message-level rules of the contract and the field they are about. */
const ruleFields: Readonly<Record<string, string>> = { "lifecycle_thresholds.order": "churned_below" };

/**
 * The purchases (won deals) the CRM holds, for requests that send none. Pages are bounded; the
 * skill stops reading at {@link maxSourcePurchases}.
 */
export interface PurchaseSource {
  /** Purchases in pages of at most `pageSize`, in any order; stops early when `signal` aborts. */
  pages(opts: { pageSize: number; signal: AbortSignal }): AsyncIterable<readonly CustomerTransaction[]>;
}

/** Dependencies of the skill. */
export interface ModelCustomerLifecycleDeps {
  /** Clock, for an unset `as_of`. */
  readonly now: () => Date;
  /** The CRM's purchases; none yet (the CRM has no deals store), so requests must carry transactions. */
  readonly purchases?: PurchaseSource | undefined;
  /** Most customers listed (default {@link maxListedCustomers}). */
  readonly maxListedCustomers?: number | undefined;
}

/** The request with defaults applied. */
interface Settings {
  asOfMs: number;
  asOfDay: number;
  currencyCode: string;
  margin: number;
  annualDiscountRate: number;
  horizonMonths: number;
  timeUnit: SurvivalTimeUnit;
  daysPerUnit: number;
  stages: StageSettings;
}

/** Runs lifecycle modelling on a request (validated again here for callers that bypass the server). */
export async function modelCustomerLifecycle(
  deps: ModelCustomerLifecycleDeps,
  req: ModelCustomerLifecycleRequest,
  ctx?: CallContext,
): Promise<ModelCustomerLifecycleResponse> {
  const guard = new Guard(ctx);
  checkContract(ModelCustomerLifecycleRequestSchema, req, ruleFields);
  const settings = readSettings(req, deps.now());
  const ledger = new PurchaseLedger();
  if (req.transactions.length > 0) {
    addTransactions(ledger, req.transactions, settings.asOfMs, "transactions", guard);
  } else {
    await readSource(deps.purchases, ledger, settings.asOfMs, guard);
  }
  const customers = [...ledger.histories()];
  if (customers.length === 0) {
    throw new InvalidInputError("transactions", "holds no purchase (positive amount) on or before as_of");
  }
  const churnDays = churnDaysByContact(req, settings, customers);
  await guard.pause();
  return model(customers, churnDays, settings, guard, deps.maxListedCustomers ?? maxListedCustomers);
}

/** Applies the contract's defaults and checks what its rules cannot say. */
function readSettings(req: ModelCustomerLifecycleRequest, now: Date): Settings {
  const asOfMs = req.asOf === undefined ? now.getTime() : timestampMs(req.asOf);
  const inactivityDays =
    req.churnAfterInactivity === undefined ? defaultInactivityDays : durationDays(req.churnAfterInactivity);
  if (inactivityDays <= 0) throw new InvalidInputError("churn_after_inactivity", "must be positive when set");
  const t = req.thresholds;
  const atRiskBelow = t?.atRiskBelow || defaultAtRiskBelow;
  const churnedBelow = t?.churnedBelow || defaultChurnedBelow;
  if (churnedBelow > atRiskBelow) {
    throw new InvalidInputError(
      "thresholds.churned_below",
      `must not exceed at_risk_below (${atRiskBelow}${t?.atRiskBelow ? "" : ", its default"})`,
    );
  }
  const timeUnit = req.timeUnit === SurvivalTimeUnit.UNSPECIFIED ? SurvivalTimeUnit.MONTH : req.timeUnit;
  return {
    asOfMs,
    asOfDay: dayOf(asOfMs),
    currencyCode: req.currencyCode || "USD",
    margin: req.margin || 1,
    annualDiscountRate: req.annualDiscountRate,
    horizonMonths: req.horizonMonths || defaultHorizonMonths,
    timeUnit,
    daysPerUnit: timeUnit === SurvivalTimeUnit.DAY ? 1 : timeUnit === SurvivalTimeUnit.WEEK ? 7 : daysPerMonth,
    stages: {
      newWindowDays: t?.newCustomerWindow === undefined ? defaultNewWindowDays : durationDays(t.newCustomerWindow),
      inactivityDays,
      atRiskBelow,
      churnedBelow,
    },
  };
}

function durationDays(d: Duration): number {
  return (Number(d.seconds) + d.nanos / 1e9) / 86_400;
}

/** Adds transactions up to `asOfMs`, counting a repeated transaction id once (and refusing a conflicting one). */
function addTransactions(
  ledger: PurchaseLedger,
  transactions: readonly CustomerTransaction[],
  asOfMs: number,
  field: string,
  guard: Guard,
  seen: Map<string, { index: number; tx: CustomerTransaction }> = new Map(),
  offset = 0,
): void {
  for (let i = 0; i < transactions.length; i++) {
    if (i % checkEvery === 0) guard.check();
    const tx = transactions[i] as CustomerTransaction;
    if (tx.transactionId !== "") {
      const earlier = seen.get(tx.transactionId);
      if (earlier !== undefined) {
        if (!sameTransaction(earlier.tx, tx)) {
          throw new InvalidInputError(
            `${field}[${offset + i}].transaction_id`,
            `repeats ${field}[${earlier.index}] with another contact, time or amount`,
          );
        }
        continue;
      }
      seen.set(tx.transactionId, { index: offset + i, tx });
    }
    const atMs = timestampMs(tx.occurredAt as Timestamp);
    if (atMs > asOfMs) continue;
    ledger.add(tx.contactId.toLowerCase(), atMs, tx.amountMicros);
  }
}

function sameTransaction(a: CustomerTransaction, b: CustomerTransaction): boolean {
  return (
    a.contactId.toLowerCase() === b.contactId.toLowerCase() &&
    a.amountMicros === b.amountMicros &&
    timestampMs(a.occurredAt as Timestamp) === timestampMs(b.occurredAt as Timestamp)
  );
}

/** Reads the CRM's purchases page by page, or answers FAILED_PRECONDITION without a source. */
async function readSource(
  source: PurchaseSource | undefined,
  ledger: PurchaseLedger,
  asOfMs: number,
  guard: Guard,
): Promise<void> {
  if (source === undefined) {
    throw new FailedPreconditionError("no transactions given and the CRM holds no purchases yet");
  }
  const seen = new Map<string, { index: number; tx: CustomerTransaction }>();
  let read = 0;
  for await (const page of source.pages({ pageSize: sourcePageSize, signal: guard.signal })) {
    if (read + page.length > maxSourcePurchases) {
      throw new FailedPreconditionError(
        `the CRM holds more than ${maxSourcePurchases} purchases; send the transactions to model inline`,
      );
    }
    addTransactions(ledger, page, asOfMs, "purchases", guard, seen, read);
    read += page.length;
    await guard.pause();
  }
  if (read === 0) throw new FailedPreconditionError("no transactions given and the CRM holds no purchases yet");
}

/** Churn days per customer (events after `as_of` left out); a churn before the first purchase is refused. */
function churnDaysByContact(
  req: ModelCustomerLifecycleRequest,
  settings: Settings,
  customers: readonly CustomerHistory[],
): Map<string, number[]> {
  const firstDay = new Map(customers.map((c) => [c.contactId, c.occasionDays[0] as number]));
  const out = new Map<string, number[]>();
  req.churnEvents.forEach((e, i) => {
    const atMs = timestampMs(e.churnedAt as Timestamp);
    if (atMs > settings.asOfMs) return;
    const contactId = e.contactId.toLowerCase();
    const first = firstDay.get(contactId);
    if (first === undefined) return; // not a customer in these transactions
    const day = dayOf(atMs);
    if (day < first) {
      throw new InvalidInputError(`churn_events[${i}].churned_at`, "is before the customer's first purchase");
    }
    const days = out.get(contactId);
    if (days === undefined) out.set(contactId, [day]);
    else days.push(day);
  });
  return out;
}

const stageValues: Record<Stage, CustomerLifecycleStage> = {
  new: CustomerLifecycleStage.NEW,
  active: CustomerLifecycleStage.ACTIVE,
  at_risk: CustomerLifecycleStage.AT_RISK,
  churned: CustomerLifecycleStage.CHURNED,
  reactivated: CustomerLifecycleStage.REACTIVATED,
};

/** Fits the models and builds the response. */
async function model(
  customers: readonly CustomerHistory[],
  churnDays: ReadonlyMap<string, number[]>,
  s: Settings,
  guard: Guard,
  listed: number,
): Promise<ModelCustomerLifecycleResponse> {
  const none: number[] = [];
  // Survival.
  const spells: SurvivalObservation[] = customers.map((c) => {
    const spell = firstSpell(c, churnDays.get(c.contactId) ?? none, s.asOfDay, s.stages.inactivityDays);
    return { time: spell.tenureDays / s.daysPerUnit, event: spell.churned };
  });
  const km = kaplanMeier(spells);
  await guard.pause();

  // Purchases: BG/NBD in days.
  const summaries: RepeatHistory[] = customers.map((c) => repeatSummary(c, s.asOfDay));
  const bg = fitBgNbd(packHistories(summaries), { checkpoint: () => guard.check() });
  await guard.pause();

  // Spend: Gamma-Gamma on repeat customers with positive repeat spend.
  const spend: SpendHistory[] = [];
  for (const c of customers) {
    const m = repeatMeanMicros(c);
    if (m !== undefined && m > 0) spend.push({ x: c.occasionDays.length - 1, m });
  }
  const gg =
    spend.length >= minGammaGammaCustomers ? fitGammaGamma(spend, { checkpoint: () => guard.check() }) : undefined;
  const ggUsable = gg?.usable === true;
  await guard.pause();

  // Per customer.
  const clv = new ClvModel(bg.params, { horizonMonths: s.horizonMonths, annualDiscountRate: s.annualDiscountRate });
  const rows: { out: CustomerLifecycle; clv: number }[] = [];
  const counts: Record<Stage, number> = { new: 0, active: 0, at_risk: 0, churned: 0, reactivated: 0 };
  for (let i = 0; i < customers.length; i++) {
    if (i % checkEvery === 0) {
      guard.check();
      if (i > 0) await guard.pause();
    }
    const c = customers[i] as CustomerHistory;
    const sum = summaries[i] as RepeatHistory;
    const churns = churnDays.get(c.contactId) ?? none;
    const gone = explicitlyChurned(c, churns);
    const forecast = gone
      ? { probabilityAlive: 0, expectedPurchases: 0, discountedPurchases: 0 }
      : clv.forecast(sum.x, sum.tx, sum.T);
    const meanOrder = meanOrderMicros(c);
    const expectedOrder = ggUsable
      ? conditionalExpectedSpend(gg.params, sum.x, Math.max(0, repeatMeanMicros(c) ?? 0))
      : Math.max(0, meanOrder);
    const value = s.margin * expectedOrder * forecast.discountedPurchases;
    const stage = lifecycleStage(c, churns, s.asOfDay, forecast.probabilityAlive, s.stages);
    counts[stage]++;
    rows.push({
      clv: value,
      out: create(CustomerLifecycleSchema, {
        contactId: c.contactId,
        frequency: sum.x,
        recencyDays: sum.tx,
        ageDays: sum.T,
        meanOrderMicros: toMicros(meanOrder),
        expectedOrderMicros: toMicros(expectedOrder),
        expectedPurchases: forecast.expectedPurchases,
        probabilityAlive: forecast.probabilityAlive,
        clvMicros: toMicros(value),
        stage: stageValues[stage],
      }),
    });
  }
  rows.sort((a, b) => b.clv - a.clv || (a.out.contactId < b.out.contactId ? -1 : 1));
  let total = 0n;
  for (const r of rows) total += r.out.clvMicros;

  return create(ModelCustomerLifecycleResponseSchema, {
    survival: {
      timeUnit: s.timeUnit,
      points: km.steps.map((p) => ({
        time: p.time,
        atRisk: p.atRisk,
        events: p.events,
        censored: p.censored,
        survival: p.survival,
        ciLower: p.lower,
        ciUpper: p.upper,
      })),
      ...(km.median === undefined ? {} : { medianSurvival: km.median }),
      customerCount: km.count,
      eventCount: km.eventCount,
    },
    bgNbd: { ...bg.params, logLikelihood: bg.logLikelihood, converged: bg.converged },
    gammaGamma: ggUsable ? { fitted: true, ...gg.params } : { fitted: false },
    customers: rows.slice(0, listed).map((r) => r.out),
    stageCounts: (Object.keys(stageValues) as Stage[])
      .map((k) => ({ stage: stageValues[k], count: counts[k] }))
      .sort((a, b) => a.stage - b.stage),
    totalClvMicros: total > int64Max ? int64Max : total,
    currencyCode: s.currencyCode,
    customerCount: rows.length,
  });
}

/** An amount in micros as int64, rounded, saturating at the int64 range (and 0 for NaN). */
function toMicros(v: number): bigint {
  if (Number.isNaN(v)) return 0n;
  if (v >= 9.2e18) return int64Max;
  if (v <= -9.2e18) return -int64Max;
  return BigInt(Math.round(v));
}

/**
 * The call's cancellation and deadline for CPU-bound work: `check` throws once the caller
 * cancelled or the deadline passed (a synchronous loop never sees the signal's timer fire, so the
 * clock is read too); `pause` yields to the event loop.
 */
class Guard {
  readonly signal: AbortSignal;
  readonly #deadline: number;

  constructor(ctx: CallContext | undefined) {
    this.signal = ctx?.signal ?? new AbortController().signal;
    const left = ctx?.timeoutMs();
    this.#deadline = left === undefined ? Number.POSITIVE_INFINITY : performance.now() + left;
  }

  check(): void {
    this.signal.throwIfAborted();
    if (performance.now() > this.#deadline) {
      throw new ConnectError("lifecycle modelling ran out of the call's time", Code.DeadlineExceeded);
    }
  }

  async pause(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.check();
  }
}
