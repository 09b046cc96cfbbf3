import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  AnalyzeContentPerformanceRequestSchema,
  AnomalyDirection,
  CtrBaseline,
  OptimizationService,
  type PageAnalysis,
  type PagePerformanceSeriesSchema,
  PerformanceMetric,
  PerformancePointSchema,
  ReasonCode,
} from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createInProcessClient } from "../../../lib/server/index.ts";
import { builtinCtrCurve, customCtrCurve, fitCtrCurve } from "../performance/ctr-curve.ts";
import { olsFit, studentTTwoSidedP, trailingZScores } from "../performance/stats.ts";
import { analyzeContentPerformance, maxTotalPoints } from "./analyze-content-performance.ts";

type Init = MessageInitShape<typeof AnalyzeContentPerformanceRequestSchema>;
type PointInit = MessageInitShape<typeof PerformancePointSchema>;
type PageInit = MessageInitShape<typeof PagePerformanceSeriesSchema>;

const dayMs = 86_400_000;
const day0 = Date.UTC(2025, 2, 1);

/** One day's point, `d` days after 2025-03-01. */
function point(
  d: number,
  impressions: number,
  clicks: number,
  position: number,
  more: { sessions?: number; engaged?: number; conversions?: number } = {},
): PointInit {
  return {
    date: timestampFromMs(day0 + d * dayMs),
    impressions: BigInt(impressions),
    clicks: BigInt(clicks),
    averagePosition: position,
    sessions: BigInt(more.sessions ?? 0),
    engagedSessions: BigInt(more.engaged ?? 0),
    conversions: BigInt(more.conversions ?? 0),
  };
}

/** `n` days of the same point. */
function days(n: number, f: (d: number) => PointInit): PointInit[] {
  return Array.from({ length: n }, (_, d) => f(d));
}

function run(init: Init) {
  return analyzeContentPerformance(create(AnalyzeContentPerformanceRequestSchema, init));
}

function pageOf(pages: readonly PageAnalysis[], url: string): PageAnalysis {
  const found = pages.find((p) => p.url === url);
  if (found === undefined) throw new Error(`no page ${url}`);
  return found;
}

/** Rethrows whatever `fn` throws so a test can inspect it; fails when nothing is thrown. */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected an error");
}

describe("expected-vs-actual CTR", () => {
  // Worked by hand on the built-in (SISTRIX 2020) curve:
  //   /top: 1,000 impressions, 20 clicks, every day at position 3 (expected 11.0%)
  //     CTR 0.02, residual 0.02 − 0.11 = −0.09
  //     SE = sqrt(0.11 × 0.89 / 1000) = sqrt(0.0000979) = 0.0098944
  //     z  = −0.09 / 0.0098944 = −9.0960
  //     click gap = 0.11 × 1000 − 20 = 90
  //   /mid: 600 impressions at position 6 and 400 at 7 → average (3600 + 2800) / 1000 = 6.4
  //     expected = 5.1% + 0.4 × (4.0% − 5.1%) = 0.0466; 60 clicks → CTR 0.06, residual +0.0134
  //     SE = sqrt(0.0466 × 0.9534 / 1000) = 0.0066655; z = 0.0134 / 0.0066655 = 2.0104
  //     click gap = 46.6 − 60 = −13.4
  // (scipy agrees: (0.02 − 0.11) / sqrt(0.11 * 0.89 / 1000) = −9.096014909391323,
  //  0.0134 / sqrt(0.0466 * 0.9534 / 1000) = 2.010361998269616.)
  const res = run({
    pages: [
      { url: "https://example.com/top", points: [point(0, 500, 12, 3), point(1, 500, 8, 3)] },
      { url: "https://example.com/mid", points: [point(0, 600, 35, 6), point(1, 400, 25, 7)] },
    ],
  });

  it("compares each page's CTR with the curve at its impression-weighted position", () => {
    const top = pageOf(res.pages, "https://example.com/top");
    expect(top.ctr).toBeCloseTo(0.02, 12);
    expect(top.averagePosition).toBe(3);
    expect(top.expectedCtr).toBeCloseTo(0.11, 12);
    expect(top.ctrResidual).toBeCloseTo(-0.09, 12);
    expect(top.ctrStandardError).toBeCloseTo(0.009894442884771228, 12);
    expect(top.ctrZScore).toBeCloseTo(-9.096014909391323, 9);
    expect(top.clickGap).toBeCloseTo(90, 9);
    expect(top.ctrEvaluated).toBe(true);

    const mid = pageOf(res.pages, "https://example.com/mid");
    expect(mid.averagePosition).toBeCloseTo(6.4, 12);
    expect(mid.expectedCtr).toBeCloseTo(0.0466, 12);
    expect(mid.ctrResidual).toBeCloseTo(0.0134, 12);
    expect(mid.ctrStandardError).toBeCloseTo(0.006665466225253865, 12);
    expect(mid.ctrZScore).toBeCloseTo(2.010361998269616, 9);
    expect(mid.clickGap).toBeCloseTo(-13.4, 9);
  });

  it("lists pages by click gap and reports the site CTR and the curve", () => {
    expect(res.pages.map((p) => p.url)).toEqual(["https://example.com/top", "https://example.com/mid"]);
    expect(res.siteCtr).toBeCloseTo(80 / 2000, 12);
    expect(res.ctrBaselineUsed).toBe(CtrBaseline.BUILTIN);
    expect(res.ctrCurve.slice(0, 3).map((c) => [c.position, c.ctr])).toEqual([
      [1, 0.285],
      [2, 0.157],
      [3, 0.11],
    ]);
    expect(res.ctrCurve).toHaveLength(20);
  });

  it("gives no CTR verdict below min_impressions", () => {
    const small = run({ pages: [{ url: "https://example.com/s", points: [point(0, 99, 0, 2)] }] });
    expect(small.pages[0]?.ctrEvaluated).toBe(false);
    expect(small.recommendations).toEqual([]);
  });

  it("interpolates the built-in and custom curves between whole positions", () => {
    expect(builtinCtrCurve(12)).toBeCloseTo(0.009 - 0.005 / 9, 15);
    expect(builtinCtrCurve(20)).toBeCloseTo(0.004, 15);
    expect(builtinCtrCurve(40)).toBe(0.001);
    expect(builtinCtrCurve(0)).toBe(0);
    // (1, 30%) to (10, 3%): at 5.5, 0.30 + 4.5 × (0.03 − 0.30) / 9 = 0.165.
    const custom = customCtrCurve([
      { position: 10, ctr: 0.03 },
      { position: 1, ctr: 0.3 },
    ]);
    expect(custom(5.5)).toBeCloseTo(0.165, 15);
    expect(custom(30)).toBe(0.03);
    const res = run({
      pages: [{ url: "https://example.com/c", points: [point(0, 1000, 100, 5.5)] }],
      ctrBaseline: CtrBaseline.CUSTOM,
      customCtrCurve: [
        { position: 1, ctr: 0.3 },
        { position: 10, ctr: 0.03 },
      ],
    });
    expect(res.ctrBaselineUsed).toBe(CtrBaseline.CUSTOM);
    expect(res.pages[0]?.expectedCtr).toBeCloseTo(0.165, 12);
  });
});

describe("site-fitted CTR curve", () => {
  // Pooled CTR at positions 1, 2, 3, 5, 8 with 5000, 4000, 3000, 2000, 1000 impressions:
  // 30%, 16%, 11%, 7%, 4%. Weighted least squares of ctr on ln(position), weights = impressions;
  // numpy: np.polyfit(np.log(pos), ctr, 1, w=np.sqrt(imp)) → b = −0.13887130871840667,
  // a = 0.28190096466651426, weighted R² = 0.9404542230689397.
  const buckets: Array<[number, number, number]> = [
    [1, 5000, 1500],
    [2, 4000, 640],
    [3, 3000, 330],
    [5, 2000, 140],
    [8, 1000, 40],
  ];

  it("fits ctr = a + b·ln(position) weighted by impressions", () => {
    const fit = fitCtrCurve(
      buckets.map(([position, impressions, clicks]) => ({ position, impressions, clicks })),
      100,
    );
    expect(fit?.intercept).toBeCloseTo(0.28190096466651426, 12);
    expect(fit?.slope).toBeCloseTo(-0.13887130871840667, 12);
    expect(fit?.rSquared).toBeCloseTo(0.9404542230689397, 12);
    expect(fit?.curve(4)).toBeCloseTo(0.0893844524688476, 12);
    // a + b·ln 20 is negative; the curve stops at its floor.
    expect(fit?.curve(20)).toBe(0.001);
  });

  it("is used when the request's positions support it, and falls back to the built-in curve otherwise", () => {
    const pages: PageInit[] = buckets.map(([position, impressions, clicks]) => ({
      url: `https://example.com/p${position}`,
      points: [point(0, impressions, clicks, position)],
    }));
    const res = run({ pages, ctrBaseline: CtrBaseline.SITE_FIT });
    expect(res.ctrBaselineUsed).toBe(CtrBaseline.SITE_FIT);
    expect(res.ctrFit?.slope).toBeCloseTo(-0.13887130871840667, 12);
    expect(res.ctrFit?.positionCount).toBe(5);
    expect(res.ctrFit?.impressions).toBe(15000n);
    expect(res.ctrCurve[3]?.ctr).toBeCloseTo(0.0893844524688476, 12);

    const thin = run({ pages: pages.slice(0, 2), ctrBaseline: CtrBaseline.SITE_FIT });
    expect(thin.ctrBaselineUsed).toBe(CtrBaseline.BUILTIN);
    expect(thin.ctrFit).toBeUndefined();
  });
});

describe("OLS trends", () => {
  // Daily clicks 12, 15, 11, 14, 10, 9, 11, 8, 7, 9 on days 0–9. By hand:
  //   x̄ = 4.5, ȳ = 10.6, Sxx = 82.5, Sxy = −54, SST = 58.4
  //   slope = −54 / 82.5 = −0.654545…, intercept = 10.6 + 0.654545 × 4.5 = 13.545454…
  //   SSE = 23.054545, R² = 1 − 23.054545 / 58.4 = 0.605230
  //   SE(slope) = sqrt(23.054545 / 8 / 82.5) = 0.186899, t = −3.502140, p (8 df, two-sided) = 0.0080538
  // scipy.stats.linregress agrees: slope −0.6545454545454545, intercept 13.545454545454545,
  // rvalue² 0.6052303860523037, stderr 0.1868987144861731, pvalue 0.008053784834315054.
  const clicks = [12, 15, 11, 14, 10, 9, 11, 8, 7, 9];

  it("fits slope, intercept, R², standard error and p-value", () => {
    const fit = olsFit(clicks.map((y, x) => [x, y] as const));
    expect(fit?.slope).toBeCloseTo(-0.6545454545454545, 12);
    expect(fit?.intercept).toBeCloseTo(13.545454545454545, 12);
    expect(fit?.rSquared).toBeCloseTo(0.6052303860523037, 12);
    expect(fit?.slopeStandardError).toBeCloseTo(0.1868987144861731, 12);
    expect(fit?.tStatistic).toBeCloseTo(-3.5021399496778147, 10);
    expect(fit?.pValue).toBeCloseTo(0.008053784834315054, 10);
  });

  it("computes Student t p-values as scipy does", () => {
    // 2 * scipy.stats.t.sf(|t|, df)
    expect(studentTTwoSidedP(2.1, 5)).toBeCloseTo(0.08975324988459879, 10);
    expect(studentTTwoSidedP(-0.5, 30)).toBeCloseTo(0.6207230048851272, 10);
    expect(studentTTwoSidedP(10, 3)).toBeCloseTo(0.0021283990584141503, 10);
    expect(studentTTwoSidedP(1, 1)).toBeCloseTo(0.5, 10);
    expect(studentTTwoSidedP(3.5, 100)).toBeCloseTo(0.0006964277173562688, 10);
  });

  it("reads a flat series as no trend and needs three days", () => {
    const flat = olsFit([
      [0, 5],
      [1, 5],
      [2, 5],
    ]);
    expect(flat).toMatchObject({ slope: 0, rSquared: 0, tStatistic: 0, pValue: 1 });
    expect(
      olsFit([
        [0, 1],
        [1, 2],
      ]),
    ).toBeUndefined();
  });

  it("reports every metric's trend in the page analysis", () => {
    const res = run({
      pages: [
        {
          url: "https://example.com/t",
          points: clicks.map((c, d) => point(d, 200, c, 4, { sessions: c, engaged: Math.floor(c / 2) })),
        },
      ],
    });
    const trends = res.pages[0]?.trends ?? [];
    expect(trends.map((t) => t.metric)).toEqual([
      PerformanceMetric.IMPRESSIONS,
      PerformanceMetric.CLICKS,
      PerformanceMetric.CTR,
      PerformanceMetric.POSITION,
      PerformanceMetric.ENGAGEMENT_RATE,
      PerformanceMetric.CONVERSIONS,
    ]);
    const c = trends.find((t) => t.metric === PerformanceMetric.CLICKS);
    expect(c?.slopePerDay).toBeCloseTo(-0.6545454545454545, 12);
    expect(c?.pValue).toBeCloseTo(0.008053784834315054, 10);
    expect(c?.significant).toBe(true);
    expect(c?.pointCount).toBe(10);
    // 7 × slope / mean clicks = 7 × −0.654545 / 10.6
    expect(c?.relativeChangePerWeek).toBeCloseTo((7 * -0.6545454545454545) / 10.6, 12);
    // CTR is clicks / 200, so its line is the clicks line scaled by 1/200.
    const ctr = trends.find((t) => t.metric === PerformanceMetric.CTR);
    expect(ctr?.slopePerDay).toBeCloseTo(-0.6545454545454545 / 200, 14);
    expect(ctr?.pValue).toBeCloseTo(0.008053784834315054, 10);
    expect(trends.find((t) => t.metric === PerformanceMetric.IMPRESSIONS)?.significant).toBe(false);
  });
});

describe("anomalies", () => {
  it("scores a day against its trailing window with a Poisson floor on the spread", () => {
    // Seven days at 10 then 30: window mean 10, sample SD 0 → floor sqrt(10); z = 20 / 3.1623 = 6.3246.
    const scores = trailingZScores([0, 1, 2, 3, 4, 5, 6, 7], [10, 10, 10, 10, 10, 10, 10, 30], 7);
    expect(scores).toHaveLength(1);
    expect(scores[0]?.mean).toBe(10);
    expect(scores[0]?.stddev).toBeCloseTo(Math.sqrt(10), 12);
    expect(scores[0]?.z).toBeCloseTo(20 / Math.sqrt(10), 12);
    // The window is calendar days: after a two-week gap it is empty.
    expect(trailingZScores([0, 1, 2, 3, 4, 5, 6, 20], [10, 10, 10, 10, 10, 10, 10, 30], 7)).toEqual([]);
    // Sample SD where it exceeds the floor: window 2, 4, 6, 8, 10, 12, 14 → mean 8, SD sqrt(112 / 6).
    const spread = trailingZScores([0, 1, 2, 3, 4, 5, 6, 7], [2, 4, 6, 8, 10, 12, 14, 40], 7);
    expect(spread[0]?.stddev).toBeCloseTo(Math.sqrt(112 / 6), 12);
  });

  it("flags a recent drop and recommends checking indexing", () => {
    // Fourteen days alternating 98 and 102 clicks (mean 100, sample SD sqrt(14 × 4 / 13) = 2.0755;
    // the Poisson floor sqrt(100) = 10 wins), then 20: z = (20 − 100) / 10 = −8.
    const points = [...days(14, (d) => point(d, 1000, d % 2 === 0 ? 98 : 102, 1)), point(14, 1000, 20, 1)];
    const res = run({ pages: [{ url: "https://example.com/d", points }] });
    const a = res.pages[0]?.anomalies[0];
    expect(a?.metric).toBe(PerformanceMetric.CLICKS);
    expect(a?.direction).toBe(AnomalyDirection.DROP);
    expect(a?.baselineMean).toBe(100);
    expect(a?.zScore).toBeCloseTo(-8, 12);
    const rec = res.recommendations.find((r) => r.reason === ReasonCode.TRAFFIC_DROP_ANOMALY);
    // A persisting shortfall of 80 clicks a day: 2,400 a month.
    expect(rec?.estimatedClickGain).toBeCloseTo(2400, 9);
    expect(rec?.message).toContain("dropped to 20 on the last day against a trailing mean of 100.0 (z = -8.0)");
  });
});

describe("spikes", () => {
  it("recommends capitalising on a recent spike, worth its excess clicks", () => {
    // Fourteen days at 100 clicks, then 200: z = (200 − 100) / sqrt(100) = 10.
    const points = [...days(14, (d) => point(d, 1000, 100, 1)), point(14, 1000, 200, 1)];
    const res = run({ pages: [{ url: "https://example.com/s", points }] });
    expect(res.pages[0]?.anomalies[0]?.direction).toBe(AnomalyDirection.SPIKE);
    expect(res.pages[0]?.anomalies[0]?.zScore).toBeCloseTo(10, 12);
    const rec = res.recommendations.find((r) => r.reason === ReasonCode.TRAFFIC_SPIKE_ANOMALY);
    expect(rec?.estimatedClickGain).toBeCloseTo(100, 9);
  });
});

describe("recommendations", () => {
  // A crafted site, 28 days (2025-03-01 to 03-28), so monthly figures are ×30/28:
  //   /snippet: position 2, 1,000 impressions and 50 clicks a day → CTR 5% against 15.7%
  //     gain = (0.157 − 0.05) × 28,000 × 30/28 = 3,210 (LOW_CTR_FOR_POSITION)
  //   /page-two: position 12, 2,000 impressions and 16 clicks a day → 56,000 impressions, above the
  //     median 28,000 of the evaluated pages; at position 3 the expected CTR is 11% against 0.8444%,
  //     and the page earns 0.8% / 0.8444% = 94.74% of the curve
  //     gain = (0.11 − 0.0084444) × 0.947368 × 56,000 × 30/28 = 5,772.63 (STRIKING_DISTANCE)
  //   /fading: position 5, 500 impressions a day, clicks 60 − 2d + (1, −1, 2, −2) repeating
  //     OLS (scipy): slope −2.0114942528735633, intercept 60.1551724137931, p 6.48e−28
  //     gain = (60.155172 − (60.155172 − 27 × 2.011494)) × 30 = 1,629.31 (DECLINING_CLICKS)
  //     engagement 9 of 30 sessions a day = 30% against the median of 60%, 62.5%, 30% = 60%
  //     gain = (0.6 − 0.3) × 840 × 30/28 = 270 (LOW_ENGAGEMENT)
  //   /hidden: 2 impressions a day, 56 in 28 days < 100 (NO_VISIBILITY, gain 0)
  const noise = [1, -1, 2, -2];
  const site: PageInit[] = [
    {
      url: "https://example.com/hidden",
      points: days(28, (d) => point(d, 2, 0, 35)),
    },
    {
      url: "https://example.com/fading",
      targetKeyword: "memory care austin",
      points: days(28, (d) => point(d, 500, 60 - 2 * d + (noise[d % 4] as number), 5, { sessions: 30, engaged: 9 })),
    },
    {
      url: "https://example.com/snippet",
      targetKeyword: "assisted living austin",
      points: days(28, (d) => point(d, 1000, 50, 2, { sessions: 50, engaged: 30 })),
    },
    {
      url: "https://example.com/page-two",
      points: days(28, (d) => point(d, 2000, 16, 12, { sessions: 16, engaged: 10 })),
    },
  ];

  it("ranks by estimated monthly clicks with the evidence", () => {
    const res = run({ pages: site });
    expect(res.recommendations.map((r) => [r.rank, r.url.slice("https://example.com".length), r.reason])).toEqual([
      [1, "/page-two", ReasonCode.STRIKING_DISTANCE],
      [2, "/snippet", ReasonCode.LOW_CTR_FOR_POSITION],
      [3, "/fading", ReasonCode.DECLINING_CLICKS],
      [4, "/fading", ReasonCode.LOW_ENGAGEMENT],
      [5, "/hidden", ReasonCode.NO_VISIBILITY],
    ]);
    const [striking, lowCtr, declining, engagement, hidden] = res.recommendations;
    const ctr12 = 0.009 - 0.005 / 9;
    expect(striking?.estimatedClickGain).toBeCloseTo((0.11 - ctr12) * (0.008 / ctr12) * 60_000, 8);
    expect(striking?.estimatedClickGain).toBeCloseTo(5772.63, 2);
    expect(lowCtr?.estimatedClickGain).toBeCloseTo(3210, 8);
    expect(declining?.estimatedClickGain).toBeCloseTo(1629.3103448275863, 8);
    expect(engagement?.estimatedClickGain).toBeCloseTo(270, 8);
    expect(hidden?.estimatedClickGain).toBe(0);
    expect(res.recommendations.map((r) => r.impactScore)).toEqual([100, 55.61, 28.22, 4.68, 0]);

    expect(lowCtr?.evidence).toMatchObject({ ctr: 0.05, expected_ctr: 0.157, impressions: 28000, average_position: 2 });
    expect(lowCtr?.evidence.ctr_z_score).toBeCloseTo(-0.107 / Math.sqrt((0.157 * 0.843) / 28000), 9);
    expect(lowCtr?.message).toBe(
      'Rewrite the title tag and meta description of https://example.com/snippet for "assisted living austin": ' +
        "its CTR is 5.0% at average position 2.0 against 15.7% expected (32% of it, z = -49.2 over 28,000 " +
        "impressions); reaching the expected CTR is worth about 3,210 more clicks a month.",
    );
    expect(declining?.evidence.p_value).toBeLessThan(1e-20);
    expect(declining?.evidence.slope_per_day).toBeCloseTo(-2.0114942528735633, 12);
    expect(declining?.message).toContain("Refresh the content of https://example.com/fading");
    expect(declining?.message).toContain("from about 60.2 to 5.8 a day");
    expect(striking?.message).toContain("at position 3 the expected CTR rises from 0.8% to 11.0%");
  });

  it("keeps max_recommendations", () => {
    const res = run({ pages: site, maxRecommendations: 2 });
    expect(res.recommendations.map((r) => r.reason)).toEqual([
      ReasonCode.STRIKING_DISTANCE,
      ReasonCode.LOW_CTR_FOR_POSITION,
    ]);
  });

  it("analyses only the period asked for", () => {
    // The last week: /fading's 7 days are too few for a trend verdict and /hidden too short-lived.
    const res = run({
      pages: site,
      period: { start: timestampFromMs(day0 + 21 * dayMs), end: timestampFromMs(day0 + 28 * dayMs) },
    });
    expect(pageOf(res.pages, "https://example.com/snippet").impressions).toBe(7000n);
    expect(pageOf(res.pages, "https://example.com/fading").daysCovered).toBe(7);
    expect(res.recommendations.map((r) => r.reason)).not.toContain(ReasonCode.DECLINING_CLICKS);
    expect(res.recommendations.map((r) => r.reason)).not.toContain(ReasonCode.NO_VISIBILITY);
  });

  it("recommends winning back slipping rankings", () => {
    // Position 3.0 + 0.1 a day for 20 days (to 4.9), 1,000 impressions and an on-curve CTR a day.
    const points = days(20, (d) => {
      const pos = 3 + 0.1 * d;
      return point(d, 1000, Math.round(1000 * builtinCtrCurve(pos)), pos);
    });
    const res = run({ pages: [{ url: "https://example.com/slip", points }] });
    const rec = res.recommendations.find((r) => r.reason === ReasonCode.DECLINING_POSITION);
    expect(rec?.evidence.start_position).toBeCloseTo(3, 9);
    expect(rec?.evidence.end_position).toBeCloseTo(4.9, 9);
    // (CTR(3) − CTR(4.9)) × 20,000 × 30/20 = (0.11 − 0.0728) × 30,000 = 1,116
    expect(rec?.estimatedClickGain).toBeCloseTo(1116, 6);
  });
});

describe("bad input", () => {
  const ok: PageInit = { url: "https://example.com/a", points: [point(0, 10, 1, 3)] };

  it.each<[string, Init, string]>([
    ["no pages", { pages: [] }, "pages"],
    ["a repeated URL", { pages: [ok, ok] }, "pages[1].url"],
    [
      "more clicks than impressions",
      { pages: [{ url: "https://example.com/a", points: [point(0, 1, 2, 3)] }] },
      "pages[0].points[0].clicks",
    ],
    [
      "a date that is not a UTC midnight",
      {
        pages: [
          {
            url: "https://example.com/a",
            points: [point(0, 1, 0, 3), { ...point(1, 1, 0, 3), date: timestampFromMs(day0 + dayMs + 3_600_000) }],
          },
        ],
      },
      "pages[0].points[1].date",
    ],
    [
      "a repeated date",
      { pages: [{ url: "https://example.com/a", points: [point(0, 1, 0, 3), point(0, 2, 0, 3)] }] },
      "pages[0].points[1].date",
    ],
    [
      "impressions without a position",
      { pages: [{ url: "https://example.com/a", points: [point(0, 5, 0, 0)] }] },
      "pages[0].points[0].average_position",
    ],
    [
      "a custom curve without CTR_BASELINE_CUSTOM",
      { pages: [ok], customCtrCurve: [{ position: 1, ctr: 0.3 }] },
      "custom_ctr_curve",
    ],
    ["CTR_BASELINE_CUSTOM without a curve", { pages: [ok], ctrBaseline: CtrBaseline.CUSTOM }, "custom_ctr_curve"],
    [
      "a repeated custom position",
      {
        pages: [ok],
        ctrBaseline: CtrBaseline.CUSTOM,
        customCtrCurve: [
          { position: 1, ctr: 0.3 },
          { position: 1, ctr: 0.2 },
        ],
      },
      "custom_ctr_curve[1].position",
    ],
    ["a threshold out of range", { pages: [ok], anomalyZThreshold: 11 }, "anomaly_z_threshold"],
    [
      "a period ending before it starts",
      { pages: [ok], period: { start: timestampFromMs(day0 + dayMs), end: timestampFromMs(day0) } },
      "period.end",
    ],
  ])("rejects %s naming the field", (_, init, field) => {
    const err = thrownBy(() => run(init));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(field);
  });

  it("bounds the points of a request", () => {
    // 910 pages of 1,100 points share one point message, so the request is cheap to build.
    const shared = create(PerformancePointSchema, point(0, 1, 0, 3));
    const pages = Array.from({ length: 910 }, (_, i) => ({
      url: `https://example.com/${i}`,
      points: Array.from({ length: 1100 }, () => shared),
    }));
    expect(910 * 1100).toBeGreaterThan(maxTotalPoints);
    const err = thrownBy(() => run({ pages }));
    expect((err as InvalidInputError).field).toBe("pages");
  });

  it("answers INVALID_ARGUMENT naming the field through the service", async () => {
    const client = createInProcessClient(OptimizationService, {
      analyzeContentPerformance: (req: never) => analyzeContentPerformance(req),
    });
    const err = await client.analyzeContentPerformance({ pages: [ok, ok] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(/^pages\[1\]\.url: repeats pages\[0\]\.url/);
  });
});
