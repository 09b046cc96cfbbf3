import { describe, expect, it } from "vitest";
import {
  type CustomerHistory,
  dayMs,
  firstSpell,
  latestReturnDay,
  lifecycleStage,
  meanOrderMicros,
  PurchaseLedger,
  repeatMeanMicros,
  repeatSummary,
  type StageSettings,
} from "./customers.ts";

/** A history with occasions on the given days, $10 each. */
const history = (...days: number[]): CustomerHistory => ({
  contactId: "c",
  occasionDays: Int32Array.from(days),
  occasionMicros: days.map(() => 10_000_000n),
  netMicros: BigInt(days.length) * 10_000_000n,
});

const settings: StageSettings = { newWindowDays: 90, inactivityDays: 365, atRiskBelow: 0.5, churnedBelow: 0.15 };
const asOf = 1000;

describe("PurchaseLedger", () => {
  it("sums a customer's transactions per UTC day; refund-only days are no occasions", () => {
    const ledger = new PurchaseLedger();
    const day = (d: number, hour = 0) => d * dayMs + hour * 3_600_000;
    ledger.add("a", day(10, 9), 30_000_000n);
    ledger.add("a", day(10, 17), 20_000_000n); // same day: one occasion of $50
    ledger.add("a", day(12), -5_000_000n); // refund on a day without purchases
    ledger.add("a", day(20), 40_000_000n);
    ledger.add("a", day(25), 10_000_000n);
    ledger.add("a", day(25), -10_000_000n); // bought and returned the same day: nothing
    ledger.add("b", day(3), -1_000_000n); // a refund only: not a customer
    const hs = [...ledger.histories()];
    expect(hs.map((h) => h.contactId)).toEqual(["a"]);
    const a = hs[0] as CustomerHistory;
    expect([...a.occasionDays]).toEqual([10, 20]);
    expect(a.occasionMicros).toEqual([50_000_000n, 40_000_000n]);
    expect(a.netMicros).toBe(85_000_000n);
    expect(repeatSummary(a, 30)).toEqual({ x: 1, tx: 10, T: 20 });
    // Repeat mean: net after the first occasion ($85 − $50) over one repeat occasion.
    expect(repeatMeanMicros(a)).toBe(35_000_000);
    expect(meanOrderMicros(a)).toBe(42_500_000);
    expect(repeatMeanMicros(history(5))).toBeUndefined();
  });
});

describe("firstSpell", () => {
  it("censors a customer still within the inactivity limit at as_of", () => {
    expect(firstSpell(history(100, 400, 700, 900), [], asOf, 365)).toEqual({ tenureDays: 900, churned: false });
  });
  it("ends at the first lapse: last occasion before the gap + the limit", () => {
    expect(firstSpell(history(0, 100, 600, 700), [], asOf, 365)).toEqual({ tenureDays: 465, churned: true });
  });
  it("ends when the limit runs out after the last occasion", () => {
    expect(firstSpell(history(100, 200), [], asOf, 365)).toEqual({ tenureDays: 465, churned: true });
  });
  it("ends at an explicit churn event when that comes first", () => {
    expect(firstSpell(history(100, 200, 300), [250], asOf, 365)).toEqual({ tenureDays: 150, churned: true });
    // A churn event after the first inactivity churn does not move it.
    expect(firstSpell(history(100, 200), [900], asOf, 365)).toEqual({ tenureDays: 465, churned: true });
  });
});

describe("lifecycleStage on hand-built customers", () => {
  it("new: first purchase within the window, even with a low P(alive)", () => {
    expect(lifecycleStage(history(950), [], asOf, 1, settings)).toBe("new");
    expect(lifecycleStage(history(910, 915, 920), [], asOf, 0.1, settings)).toBe("new");
    // Exactly at the window's edge is within it; a day more is not.
    expect(lifecycleStage(history(910), [], asOf, 1, settings)).toBe("new");
    expect(lifecycleStage(history(909), [], asOf, 1, settings)).toBe("active");
  });

  it("active, at risk and churned by P(alive) for established customers", () => {
    const h = history(100, 300, 700, 900);
    expect(lifecycleStage(h, [], asOf, 0.8, settings)).toBe("active");
    expect(lifecycleStage(h, [], asOf, 0.5, settings)).toBe("active"); // not below 0.5
    expect(lifecycleStage(h, [], asOf, 0.49, settings)).toBe("at_risk");
    expect(lifecycleStage(h, [], asOf, 0.15, settings)).toBe("at_risk");
    expect(lifecycleStage(h, [], asOf, 0.14, settings)).toBe("churned");
  });

  it("churned: inactive past the limit, or a churn event since the last purchase", () => {
    expect(lifecycleStage(history(100, 634), [], asOf, 0.99, settings)).toBe("churned"); // 366 days
    expect(lifecycleStage(history(100, 635), [], asOf, 0.99, settings)).toBe("active"); // 365 days
    expect(lifecycleStage(history(100, 900), [900], asOf, 0.99, settings)).toBe("churned"); // same day
    expect(lifecycleStage(history(980), [990], asOf, 1, settings)).toBe("churned"); // before "new"
  });

  it("reactivated: back after a lapse or a churn event, within the window", () => {
    // Lapse 100 → 600 (500 days), back on day 600: 400 days ago, not recent.
    expect(lifecycleStage(history(100, 600, 950), [], asOf, 0.9, settings)).toBe("active");
    // Lapse 100 → 950: back 50 days ago.
    expect(latestReturnDay(history(100, 950), [], 365)).toBe(950);
    expect(lifecycleStage(history(100, 950), [], asOf, 0.9, settings)).toBe("reactivated");
    // A churn event on day 500, then purchases on 930 and 960: back on 930.
    expect(latestReturnDay(history(100, 400, 930, 960), [500], 365)).toBe(930);
    expect(lifecycleStage(history(100, 400, 930, 960), [500], asOf, 0.2, settings)).toBe("reactivated");
    // Reactivated long ago and now slipping: the model decides.
    expect(lifecycleStage(history(100, 500, 700), [], asOf, 0.3, settings)).toBe("at_risk");
  });
});
