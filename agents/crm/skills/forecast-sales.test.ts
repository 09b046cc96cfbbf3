import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Money } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  AdvancePipelineStageRequestSchema,
  CreateDealRequestSchema,
  ForecastSalesRequestSchema,
  SeasonalMode,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, openBackboneFixture } from "../../../test/support/backbone.ts";
import { CrmContact } from "../entities.ts";
import { calibratedProbability } from "../forecast/calibration.ts";
import { fitHoltWinters } from "../forecast/holt-winters.ts";
import { quantile } from "../forecast/monte-carlo.ts";
import { seededRandom } from "../forecast/random.ts";
import { createDeal } from "../pipeline/deals.ts";
import { advancePipelineStage } from "./advance-pipeline-stage.ts";
import { forecastSales } from "./forecast-sales.ts";

type Init = MessageInitShape<typeof ForecastSalesRequestSchema>;
const asOf = new Date("2025-01-15T00:00:00Z");
const usd = (units: number) => ({ currencyCode: "USD", units: BigInt(units) });
const value = (m: Money | undefined) => (m === undefined ? Number.NaN : Number(m.units) + m.nanos / 1e9);
const day = 86_400_000;

describe("crm.sales_forecast", () => {
  const noDb = { db: undefined as unknown as Database, now: () => asOf };
  const forecast = (init: Init) =>
    forecastSales(
      noDb,
      create(ForecastSalesRequestSchema, { currencyCode: "USD", asOf: timestampFromDate(asOf), ...init }),
    );

  it("weights inline deals by stage probability per month of expected close (the contract's example)", async () => {
    const res = await forecast({
      deals: [
        {
          dealId: "deal-1001",
          amount: usd(54000),
          stage: "tour-completed",
          stageProbability: 0.45,
          expectedClose: timestampFromDate(new Date("2025-02-28T00:00:00Z")),
        },
        {
          dealId: "deal-1002",
          amount: usd(72000),
          stage: "application",
          stageProbability: 0.7,
          expectedClose: timestampFromDate(new Date("2025-03-15T00:00:00Z")),
        },
      ],
      horizonMonths: 3,
      seed: 42n,
    });
    expect(value(res.totalPipeline)).toBe(126000);
    expect(value(res.weightedPipeline)).toBeCloseTo(54000 * 0.45 + 72000 * 0.7, 6);
    expect(res.periods.map((p) => value(p.weighted))).toEqual([0, 24300, 50400]);
    expect(res.periods.map((p) => p.dealCount)).toEqual([0, 1, 1]);
    expect(res.periods[1]?.period?.start).toEqual(timestampFromDate(new Date("2025-02-01T00:00:00Z")));
    expect(res.stages.map((s) => [s.stage, s.dealCount, value(s.weighted)])).toEqual([
      ["application", 1, 50400],
      ["tour-completed", 1, 24300],
    ]);
    expect(res.holtWinters?.fitted).toBe(false);
  });

  it("simulates hand-computable distributions, reproducibly from the seed", async () => {
    const close = timestampFromDate(new Date("2025-01-31T00:00:00Z"));
    // Two independent coin flips worth 100 and 200: totals 0, 100, 200, 300 with probability ¼ each.
    const init: Init = {
      deals: [
        { dealId: "a", amount: usd(100), stage: "s", stageProbability: 0.5, expectedClose: close },
        { dealId: "b", amount: usd(200), stage: "s", stageProbability: 0.5, expectedClose: close },
        {
          dealId: "sure",
          amount: usd(1000),
          stage: "s",
          stageProbability: 1,
          expectedClose: timestampFromDate(new Date("2025-02-10T00:00:00Z")),
        },
        {
          dealId: "never",
          amount: usd(5000),
          stage: "s",
          stageProbability: 0,
          expectedClose: timestampFromDate(new Date("2025-02-10T00:00:00Z")),
        },
      ],
      horizonMonths: 2,
      monteCarloIterations: 20000,
      seed: 7n,
    };
    const res = await forecast(init);
    const [jan, feb] = res.periods;
    expect([value(jan?.p10), value(jan?.p90)]).toEqual([0, 300]);
    // Mean 150 with standard error √(12500/20000) ≈ 0.79: a 5 σ band.
    expect(Math.abs(value(jan?.mean) - 150)).toBeLessThan(4);
    expect([value(feb?.p10), value(feb?.p50), value(feb?.p90), value(feb?.mean)]).toEqual([1000, 1000, 1000, 1000]);
    expect([value(res.totalP10), value(res.totalP90)]).toEqual([1000, 1300]);
    expect(res.iterations).toBe(20000);
    const again = await forecast(init);
    expect(again).toEqual(res);
    const other = await forecast({ ...init, seed: 8n });
    expect(value(other.periods[0]?.mean)).not.toBe(value(jan?.mean));
  });

  it("ages stale deals and moves slipped ones into the first month", async () => {
    const res = await forecast({
      deals: [
        {
          dealId: "old",
          amount: usd(1000),
          stage: "s",
          stageProbability: 0.6,
          expectedClose: timestampFromDate(new Date("2025-01-05T00:00:00Z")),
          age: durationFromMs(120 * day),
        },
        {
          dealId: "new",
          amount: usd(1000),
          stage: "s",
          stageProbability: 0.6,
          expectedClose: timestampFromDate(new Date("2025-02-05T00:00:00Z")),
          age: durationFromMs(10 * day),
        },
      ],
      staleAfter: durationFromMs(90 * day),
      staleProbabilityFactor: 0.25,
      horizonMonths: 2,
      monteCarloIterations: 100,
    });
    expect(res.slippedDealCount).toBe(1);
    expect(res.periods.map((p) => value(p.weighted))).toEqual([150, 600]);
    expect(value(res.weightedPipeline)).toBe(750);
  });

  it("matches a hand-computed Holt-Winters run and projects it onto the forecast months", async () => {
    // Additive, m = 2, α = β = γ = 0.5 on 10, 20, 13, 21, 14, 25, worked by hand: trend 1, level
    // 15.5 at the end of season 1, indices −4.5 and 4.5; one-step errors 1, −1.75, 0.0625, 1.890625;
    // final level 19.9921875, trend 1.30078125, indices −4.234375 and 4.53515625.
    const y = [10, 20, 13, 21, 14, 25];
    const m = fitHoltWinters(y, { alpha: 0.5, beta: 0.5, gamma: 0.5, mode: "additive", seasonLength: 2 });
    expect(m.forecast(1)).toBeCloseTo(17.05859375, 10);
    expect(m.forecast(2)).toBeCloseTo(27.12890625, 10);
    expect(m.rmse).toBeCloseTo(Math.sqrt(7.640869140625 / 4), 10);
    const months = ["2024-07", "2024-08", "2024-09", "2024-10", "2024-11", "2024-12"];
    const res = await forecast({
      deals: [{ dealId: "x", amount: usd(1), stage: "s", stageProbability: 0, expectedClose: timestampFromDate(asOf) }],
      history: months.map((mo, i) => ({
        monthStart: timestampFromDate(new Date(`${mo}-01T00:00:00Z`)),
        amount: usd(y[i] as number),
      })),
      holtWinters: { alpha: 0.5, beta: 0.5, gamma: 0.5, seasonLength: 2, seasonalMode: SeasonalMode.ADDITIVE },
      horizonMonths: 2,
      monteCarloIterations: 10,
    });
    expect(res.holtWinters).toMatchObject({ fitted: true, alpha: 0.5, seasonLength: 2 });
    expect(res.periods.map((p) => value(p.holtWinters))).toEqual([17.058594, 27.128906]); // to the micro
    const gap = await forecast({
      deals: [],
      history: [...months.slice(0, 3), "2024-11"].map((mo) => ({
        monthStart: timestampFromDate(new Date(`${mo}-01T00:00:00Z`)),
        amount: usd(5),
      })),
      holtWinters: { seasonLength: 2 },
    }).catch((e) => e);
    expect(gap).toBeInstanceOf(InvalidInputError);
    expect(gap.field).toBe("history[3].month_start");
  });

  it("fits smoothing parameters that forecast a noisy trend-plus-season series better than fixed ones", () => {
    const season = [5, -3, 8, 0, -6, 2, 4, -4, 1, -2, 3, -8];
    const truth = (t: number) => 100 + 2 * t + (season[t % 12] as number);
    const noise = seededRandom(3n);
    const y = Array.from({ length: 48 }, (_, t) => truth(t) + (noise() - 0.5) * 2);
    const fitted = fitHoltWinters(y, { mode: "additive", seasonLength: 12 });
    const fixed = fitHoltWinters(y, { alpha: 0.9, beta: 0.9, gamma: 0.9, mode: "additive", seasonLength: 12 });
    expect(fitted.rmse).toBeLessThan(fixed.rmse);
    for (const p of [fitted.alpha, fitted.beta, fitted.gamma]) {
      expect(p).toBeGreaterThan(0);
      expect(p).toBeLessThan(1);
    }
    for (let h = 1; h <= 6; h++) expect(Math.abs(fitted.forecast(h) - truth(47 + h))).toBeLessThan(3);
  });

  it("computes quantiles by linear interpolation and the Beta posterior mean by hand", () => {
    expect(quantile(Float64Array.from([0, 10, 20, 30, 40]), 0.1)).toBe(4);
    expect(quantile(Float64Array.from([0, 10, 20, 30, 40]), 0.5)).toBe(20);
    expect(calibratedProbability(0.6, 0, 0, 10)).toBe(0.6);
    expect(calibratedProbability(0.6, 3, 1, 10)).toBeCloseTo(9 / 14, 12);
    expect(calibratedProbability(0.6, 3, 1, 0)).toBe(0.75);
  });
});

describe("crm.sales_forecast on the CRM's stored pipeline", () => {
  let fx: BackboneFixture;
  let db: Database;
  let clock = Date.parse("2024-06-01T00:00:00Z");
  const now = () => new Date(clock);

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-forecast");
    db = fx.db;
  });
  afterAll(async () => {
    await fx?.dispose();
  });

  it("calibrates stage probabilities from closed deals with a Beta prior on the configured ones", async () => {
    const deps = { db, bus: fx.bus, now };
    const em = db.fork();
    const contactId = randomUUID();
    em.create(CrmContact, {
      id: contactId,
      email: "forecast@example.com",
      phone: "+15125550100",
      attributes: [],
      createdAt: now(),
      updatedAt: now(),
    });
    await em.flush();
    const open = async (amount: number, expectedClose?: string) => {
      const req = create(CreateDealRequestSchema, { requestId: randomUUID(), contactId, amount: usd(amount) });
      if (expectedClose !== undefined) req.expectedClose = timestampFromDate(new Date(expectedClose));
      return (await createDeal(deps, req)).deal?.id as string;
    };
    const move = (dealId: string, to: string) =>
      advancePipelineStage(
        deps,
        create(AdvancePipelineStageRequestSchema, {
          requestId: randomUUID(),
          dealId,
          target: { case: "targetStage", value: to },
        }),
      );
    // History: 3 deals won and 1 lost after a tour; 1 lost straight from enquiry.
    for (const outcome of ["move-in", "move-in", "move-in", "lost"]) {
      const id = await open(4000, "2024-09-01T00:00:00Z");
      await move(id, "qualified");
      await move(id, "tour-booked");
      await move(id, outcome);
    }
    await move(await open(4000), "lost");
    // Open pipeline: one deal on tour (Feb), one qualified (March), one enquiry without a date.
    clock = Date.parse("2025-01-10T00:00:00Z");
    const tour = await open(6000, "2025-02-15T00:00:00Z");
    await move(tour, "qualified");
    await move(tour, "tour-booked");
    const qualified = await open(5000, "2025-03-20T00:00:00Z");
    await move(qualified, "qualified");
    await open(3000);

    const res = await forecastSales(
      { db, now },
      create(ForecastSalesRequestSchema, {
        currencyCode: "USD",
        asOf: timestampFromDate(asOf),
        horizonMonths: 3,
        seed: 1n,
      }),
    );
    const stages = Object.fromEntries(res.stages.map((s) => [s.stage, s]));
    // tour-booked: prior 0.6 × 10 pseudo-deals, 3 won, 1 lost → 9/14.
    expect(stages["tour-booked"]).toMatchObject({
      dealCount: 1,
      configuredProbability: 0.6,
      wonCount: 3,
      lostCount: 1,
    });
    expect(stages["tour-booked"]?.probability).toBeCloseTo(9 / 14, 12);
    // qualified: prior 0.3 → (3 + 3) / 14; enquiry: prior 0.1, 3 won, 2 lost → (3 + 1) / 15.
    expect(stages.qualified?.probability).toBeCloseTo(6 / 14, 12);
    expect(stages.enquiry?.probability).toBeCloseTo(4 / 15, 12);
    expect(value(res.totalPipeline)).toBe(14000);
    expect(value(res.weightedPipeline)).toBeCloseTo(6000 * (9 / 14) + 5000 * (6 / 14) + 3000 * (4 / 15), 5);
    expect(res.periods.map((p) => value(p.weighted))).toEqual([
      0,
      Math.round(6000 * (9 / 14) * 1e6) / 1e6,
      Math.round(5000 * (6 / 14) * 1e6) / 1e6,
    ]);
  });
});
