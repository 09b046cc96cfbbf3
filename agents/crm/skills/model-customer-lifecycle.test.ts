import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  CrmService,
  CustomerLifecycleStage,
  type CustomerTransaction,
  CustomerTransactionSchema,
  type ModelCustomerLifecycleRequest,
  ModelCustomerLifecycleRequestSchema,
  SurvivalTimeUnit,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { FailedPreconditionError, InvalidInputError, toConnectError } from "../../../lib/errors/index.ts";
import { type CallContext, createInProcessClient } from "../../../lib/server/index.ts";
import { type BgNbdParams, conditionalExpectedPurchases, probabilityAlive } from "../lifecycle/bg-nbd.ts";
import { dayMs } from "../lifecycle/customers.ts";
import { seededRandom, simulateBgNbdCustomer, simulateSpend } from "../lifecycle/simulate.ts";
import { modelCustomerLifecycle, type PurchaseSource } from "./model-customer-lifecycle.ts";

type RequestInit = MessageInitShape<typeof ModelCustomerLifecycleRequestSchema>;

const asOfDay = 20_000; // 2024-10-04
const asOfMs = asOfDay * dayMs + 12 * 3_600_000;
const now = () => new Date(asOfMs);
const uuid = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;
const tx = (contact: number, day: number, dollars: number, transactionId = ""): CustomerTransaction =>
  create(CustomerTransactionSchema, {
    contactId: uuid(contact),
    occurredAt: timestampFromMs(day * dayMs + 10 * 3_600_000),
    amountMicros: BigInt(Math.round(dollars * 1e6)),
    transactionId,
  });
const request = (init: RequestInit): ModelCustomerLifecycleRequest =>
  create(ModelCustomerLifecycleRequestSchema, { asOf: timestampFromMs(asOfMs), ...init });
const run = (init: RequestInit, ctx?: CallContext) => modelCustomerLifecycle({ now }, request(init), ctx);

/** The error a call fails with. */
async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail");
}

async function expectInvalid(init: RequestInit, field: string): Promise<void> {
  const err = await failure(run(init));
  expect(err).toBeInstanceOf(InvalidInputError);
  expect((err as InvalidInputError).field).toBe(field);
  expect(toConnectError(err, () => {}).code).toBe(Code.InvalidArgument);
}

/** Customers simulated from BG/NBD (days) with Gamma-Gamma spend, first purchases over the last two years. */
function simulatedTransactions(n: number, seed: number, params: BgNbdParams): CustomerTransaction[] {
  const rand = seededRandom(seed);
  const out: CustomerTransaction[] = [];
  for (let i = 0; i < n; i++) {
    const first = asOfDay - Math.floor(730 * rand());
    const c = simulateBgNbdCustomer(rand, params, asOfDay - first);
    const spend = simulateSpend(rand, { p: 6, q: 4, v: 150 }, c.x + 1);
    // Each purchase's value: the customer's mean is enough here (spend is not the point of this test).
    for (const t of [0, ...c.times]) out.push(tx(i, first + Math.floor(t), spend.m));
  }
  return out;
}

describe("crm.lifecycle_modeling", () => {
  it("fits all models on simulated customers and answers a consistent response", async () => {
    const truth: BgNbdParams = { r: 0.6, alpha: 40, a: 0.8, b: 2.5 };
    const transactions = simulatedTransactions(3000, 11, truth);
    const res = await run({ transactions, margin: 0.3, annualDiscountRate: 0.1, horizonMonths: 24 });
    expect(res.currencyCode).toBe("USD");
    expect(res.bgNbd?.converged).toBe(true);
    // 3,000 customers pin r and α down to a few tens of percent (same-day purchases merge slightly).
    expect(res.bgNbd?.r).toBeGreaterThan(0.4);
    expect(res.bgNbd?.r).toBeLessThan(0.9);
    expect(res.gammaGamma?.fitted).toBe(true);
    expect(res.customers).toHaveLength(3000);
    // Highest CLV first; the total is their sum; every stage counted once.
    const clvs = res.customers.map((c) => c.clvMicros);
    expect(clvs).toEqual([...clvs].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)));
    expect(res.totalClvMicros).toBe(clvs.reduce((s, v) => s + v, 0n));
    expect(res.stageCounts.map((s) => s.stage)).toEqual([1, 2, 3, 4, 5]);
    expect(res.stageCounts.reduce((s, c) => s + c.count, 0)).toBe(3000);
    // Each customer's numbers are the fitted model's.
    const p = res.bgNbd as BgNbdParams;
    for (const c of res.customers.slice(0, 50)) {
      expect(c.probabilityAlive).toBeCloseTo(probabilityAlive(p, c.frequency, c.recencyDays, c.ageDays), 12);
      expect(c.expectedPurchases).toBeCloseTo(
        conditionalExpectedPurchases(p, c.frequency, c.recencyDays, c.ageDays, 24 * 30.4375),
        9,
      );
      expect(c.clvMicros).toBeGreaterThan(0n);
    }
    // The survival curve: months by default, one observation per customer, decreasing.
    const km = res.survival;
    expect(km?.timeUnit).toBe(SurvivalTimeUnit.MONTH);
    expect(km?.customerCount).toBe(3000);
    const points = km?.points ?? [];
    expect(points.reduce((s, q) => s + q.events + q.censored, 0)).toBe(3000);
    expect(km?.eventCount).toBe(points.reduce((s, q) => s + q.events, 0));
    for (let i = 1; i < points.length; i++) {
      expect(points[i]?.time).toBeGreaterThan(points[i - 1]?.time as number);
      expect(points[i]?.survival).toBeLessThanOrEqual(points[i - 1]?.survival as number);
      expect(points[i]?.ciLower).toBeLessThanOrEqual(points[i]?.survival as number);
      expect(points[i]?.ciUpper).toBeGreaterThanOrEqual(points[i]?.survival as number);
    }
  });

  it("models hand-built customers: fields, stages, churn events and refunds", async () => {
    const loyal = [0, 60, 120, 180, 240, 300, 360].map((d) => tx(1, asOfDay - 400 + d, 100));
    const res = await run({
      transactions: [
        ...loyal, // contact 1: seven purchases, the last 40 days ago
        tx(2, asOfDay - 30, 50), // contact 2: first purchase 30 days ago → new
        tx(3, asOfDay - 700, 80),
        tx(3, asOfDay - 600, 80), // contact 3: silent for 600 days → churned
        tx(4, asOfDay - 500, 70),
        tx(4, asOfDay - 20, 70), // contact 4: back after 480 days → reactivated
        tx(5, asOfDay - 300, 200),
        tx(5, asOfDay - 200, 200),
        tx(5, asOfDay - 190, -50), // contact 5: a refund
        tx(6, asOfDay - 5, 999), // after as_of: left out
        tx(6, asOfDay + 5, 999),
      ],
      churnEvents: [{ contactId: uuid(5), churnedAt: timestampFromMs((asOfDay - 100) * dayMs) }],
      currencyCode: "EUR",
      margin: 0.5,
      timeUnit: SurvivalTimeUnit.DAY,
    });
    expect(res.currencyCode).toBe("EUR");
    const byId = new Map(res.customers.map((c) => [c.contactId, c]));
    const c1 = byId.get(uuid(1));
    expect({ x: c1?.frequency, tx: c1?.recencyDays, T: c1?.ageDays }).toEqual({ x: 6, tx: 360, T: 400 });
    expect(c1?.meanOrderMicros).toBe(100_000_000n);
    expect(c1?.stage).toBe(CustomerLifecycleStage.ACTIVE);
    expect(byId.get(uuid(2))?.stage).toBe(CustomerLifecycleStage.NEW);
    expect(byId.get(uuid(3))?.stage).toBe(CustomerLifecycleStage.CHURNED);
    expect(byId.get(uuid(4))?.stage).toBe(CustomerLifecycleStage.REACTIVATED);
    const c5 = byId.get(uuid(5));
    // Churned by its event after the last purchase: nothing more expected from it.
    expect(c5?.stage).toBe(CustomerLifecycleStage.CHURNED);
    expect(c5?.probabilityAlive).toBe(0);
    expect(c5?.clvMicros).toBe(0n);
    expect(c5?.meanOrderMicros).toBe(175_000_000n); // ($400 − $50) / 2 occasions
    // Contact 6's only purchase on or before as_of is the one 5 days ago.
    expect(byId.get(uuid(6))?.ageDays).toBe(5);
    expect(byId.get(uuid(6))?.frequency).toBe(0);
    // Too few repeat customers for Gamma-Gamma: own mean spend.
    expect(res.gammaGamma?.fitted).toBe(false);
    expect(c1?.expectedOrderMicros).toBe(100_000_000n);
    // Survival in days: contact 3 churned 365 days after its last purchase (tenure 100 + 365),
    // contact 4 at its lapse (0 + 365), contact 5 at its churn event (200 days).
    const events = (res.survival?.points ?? []).filter((p) => p.events > 0).map((p) => p.time);
    expect(events).toEqual([200, 365, 465]);
    expect(res.survival?.customerCount).toBe(6);
    expect(res.stageCounts.find((s) => s.stage === CustomerLifecycleStage.CHURNED)?.count).toBe(2);
  });

  it("lists the customers with the highest CLV when there are more than fit a response", async () => {
    const transactions = simulatedTransactions(50, 3, { r: 0.6, alpha: 40, a: 0.8, b: 2.5 });
    const all = await run({ transactions });
    const cut = await modelCustomerLifecycle({ now, maxListedCustomers: 5 }, request({ transactions }));
    expect(cut.customers).toEqual(all.customers.slice(0, 5));
    // Counts and the total still cover everyone.
    expect(cut.stageCounts).toEqual(all.stageCounts);
    expect(cut.totalClvMicros).toBe(all.totalClvMicros);
    expect(cut.stageCounts.reduce((s, c) => s + c.count, 0)).toBe(50);
    expect(cut.customerCount).toBe(50);
  });

  it("counts a repeated transaction id once and refuses one that differs", async () => {
    const base = [tx(1, asOfDay - 50, 10, "t-1"), tx(1, asOfDay - 20, 10, "t-2")];
    const res = await run({ transactions: [...base, tx(1, asOfDay - 20, 10, "t-2")] });
    expect(res.customers[0]?.frequency).toBe(1);
    await expectInvalid({ transactions: [...base, tx(1, asOfDay - 20, 11, "t-2")] }, "transactions[2].transaction_id");
  });

  it("answers the contract's example", async () => {
    const res = await modelCustomerLifecycle(
      { now },
      create(ModelCustomerLifecycleRequestSchema, {
        transactions: [
          {
            contactId: "3f1c2a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70",
            occurredAt: timestampFromMs(Date.parse("2024-02-01T00:00:00Z")),
            amountMicros: 4_500_000_000n,
          },
          {
            contactId: "3f1c2a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70",
            occurredAt: timestampFromMs(Date.parse("2024-03-01T00:00:00Z")),
            amountMicros: 4_500_000_000n,
          },
          {
            contactId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            occurredAt: timestampFromMs(Date.parse("2024-06-10T00:00:00Z")),
            amountMicros: 5_200_000_000n,
          },
        ],
        currencyCode: "USD",
        asOf: timestampFromMs(Date.parse("2025-01-15T00:00:00Z")),
        margin: 0.35,
        annualDiscountRate: 0.1,
        horizonMonths: 24,
      }),
    );
    expect(res.customers).toHaveLength(2);
    expect(res.survival?.customerCount).toBe(2);
    for (const c of res.customers) expect(c.probabilityAlive).toBeGreaterThanOrEqual(0);
  });

  describe("bad input → INVALID_ARGUMENT naming the field", () => {
    const ok = [tx(1, asOfDay - 10, 10)];
    it.each<[string, RequestInit, string]>([
      [
        "a contact id that is no UUID",
        { transactions: [{ contactId: "nope", occurredAt: timestampFromMs(asOfMs), amountMicros: 1n }] },
        "transactions[0].contact_id",
      ],
      [
        "a transaction without a time",
        { transactions: [{ contactId: uuid(1), amountMicros: 1n }] },
        "transactions[0].occurred_at",
      ],
      ["a margin above 1", { transactions: ok, margin: 1.5 }, "margin"],
      ["a negative discount rate", { transactions: ok, annualDiscountRate: -0.1 }, "annual_discount_rate"],
      ["a horizon over 120 months", { transactions: ok, horizonMonths: 121 }, "horizon_months"],
      ["a lower-case currency", { transactions: ok, currencyCode: "usd" }, "currency_code"],
      ["an undefined time unit", { transactions: ok, timeUnit: 9 as SurvivalTimeUnit }, "time_unit"],
      [
        "churned_below above at_risk_below",
        { transactions: ok, thresholds: { atRiskBelow: 0.3, churnedBelow: 0.4 } },
        "thresholds.churned_below",
      ],
      [
        "churned_below above the default at_risk_below",
        { transactions: ok, thresholds: { churnedBelow: 0.6 } },
        "thresholds.churned_below",
      ],
      [
        "a zero inactivity limit",
        { transactions: ok, churnAfterInactivity: durationFromMs(0) },
        "churn_after_inactivity",
      ],
      [
        "a churn event before the first purchase",
        { transactions: ok, churnEvents: [{ contactId: uuid(1), churnedAt: timestampFromMs((asOfDay - 20) * dayMs) }] },
        "churn_events[0].churned_at",
      ],
      ["only refunds", { transactions: [tx(1, asOfDay - 10, -10)] }, "transactions"],
      ["only purchases after as_of", { transactions: [tx(1, asOfDay + 1, 10)] }, "transactions"],
    ])("%s", async (_what, init, field) => {
      await expectInvalid(init, field);
    });
  });

  describe("no transactions: the CRM's purchases", () => {
    it("answers FAILED_PRECONDITION while the CRM holds no purchases", async () => {
      const err = await failure(run({}));
      expect(err).toBeInstanceOf(FailedPreconditionError);
      expect((err as Error).message).toBe("no transactions given and the CRM holds no purchases yet");
      expect(toConnectError(err, () => {}).code).toBe(Code.FailedPrecondition);
      const empty: PurchaseSource = { async *pages() {} };
      expect(await failure(modelCustomerLifecycle({ now, purchases: empty }, request({})))).toBeInstanceOf(
        FailedPreconditionError,
      );
    });

    it("reads a purchase source page by page", async () => {
      const all = simulatedTransactions(200, 5, { r: 0.6, alpha: 40, a: 0.8, b: 2.5 });
      const sizes: number[] = [];
      const source: PurchaseSource = {
        async *pages({ pageSize }) {
          sizes.push(pageSize);
          for (let i = 0; i < all.length; i += 100) yield all.slice(i, i + 100);
        },
      };
      const fromSource = await modelCustomerLifecycle({ now, purchases: source }, request({}));
      const inline = await run({ transactions: all });
      expect(sizes).toHaveLength(1);
      expect(sizes[0]).toBeGreaterThan(0);
      expect(fromSource.customers).toEqual(inline.customers);
    });
  });

  describe("cancellation and deadline", () => {
    const transactions = simulatedTransactions(300, 9, { r: 0.6, alpha: 40, a: 0.8, b: 2.5 });
    const context = (signal: AbortSignal, timeoutMs: number | undefined): CallContext =>
      ({ signal, timeoutMs: () => timeoutMs, values: undefined }) as unknown as CallContext;

    it("stops when the call is cancelled", async () => {
      const ac = new AbortController();
      ac.abort(new Error("client went away"));
      const err = await failure(run({ transactions }, context(ac.signal, undefined)));
      expect((err as Error).message).toBe("client went away");
    });

    it("answers DEADLINE_EXCEEDED once the deadline passed", async () => {
      const err = await failure(run({ transactions }, context(new AbortController().signal, 0)));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.DeadlineExceeded);
    });
  });

  it("answers through a Connect transport with validation: codes and field names as callers see them", async () => {
    const client = createInProcessClient(CrmService, {
      modelCustomerLifecycle: (req: ModelCustomerLifecycleRequest, ctx: CallContext) =>
        modelCustomerLifecycle({ now }, req, ctx),
    });
    const ok = await client.modelCustomerLifecycle(request({ transactions: [tx(1, asOfDay - 10, 10)] }));
    expect(ok.customers).toHaveLength(1);
    const bad = await failure(
      client.modelCustomerLifecycle(request({ transactions: [tx(1, asOfDay - 10, 10)], margin: 2 })),
    );
    expect(ConnectError.from(bad).code).toBe(Code.InvalidArgument);
    expect(ConnectError.from(bad).rawMessage).toMatch(/^margin: /);
    const none = await failure(client.modelCustomerLifecycle(request({})));
    expect(ConnectError.from(none).code).toBe(Code.FailedPrecondition);
    expect(ConnectError.from(none).rawMessage).toBe("no transactions given and the CRM holds no purchases yet");
  });
});
