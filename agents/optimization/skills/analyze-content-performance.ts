/**
 * Content performance analysis and recommendations.
 *
 * Method: per page, over the period, the CTR (clicks / impressions) against the expected CTR at its
 * impression-weighted average position on the baseline curve — the published SISTRIX 2020 curve,
 * a caller's curve, or ctr = a + b·ln(position) fitted to the request's own positions by
 * impression-weighted least squares (performance/ctr-curve.ts). The residual's binomial standard
 * error under the expected CTR, sqrt(e(1 − e) / impressions), gives its z-score. Daily clicks,
 * impressions, CTR, position, engagement rate and conversions get ordinary-least-squares trend
 * lines with the slope's standard error and two-sided t-test p-value; daily clicks and impressions
 * get z-scores against a trailing window. Recommendations (performance/recommend.ts) need both
 * significance and size, estimate the monthly clicks at stake, and rank by that estimate.
 *
 * The request is checked here too (the contract's rules, unique URLs and days, UTC-midnight dates,
 * positions for days with impressions, the total number of points), so a caller that reaches the
 * skill without the server's validation gets INVALID_ARGUMENT naming the field.
 */
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { median } from "simple-statistics";
import {
  type AnalyzeContentPerformanceRequest,
  AnalyzeContentPerformanceRequestSchema,
  type AnalyzeContentPerformanceResponse,
  AnalyzeContentPerformanceResponseSchema,
  type Anomaly,
  AnomalyDirection,
  AnomalySchema,
  CtrBaseline,
  CtrCurveFitSchema,
  CtrCurvePointSchema,
  type PageAnalysis,
  PageAnalysisSchema,
  PerformanceMetric,
  RecommendationSchema,
  type TrendFit,
  TrendFitSchema,
} from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { checkContract, InvalidInputError } from "../../../lib/errors/index.ts";
import {
  builtinCtrCurve,
  type CtrCurve,
  type CtrFit,
  customCtrCurve,
  fitCtrCurve,
  maxFittedPosition,
  type PositionBucket,
} from "../performance/ctr-curve.ts";
import {
  findingsFor,
  minEngagementPages,
  minEngagementSessions,
  type PageFacts,
  type RecentAnomaly,
  rankFindings,
  recentAnomalyDays,
  type Trend,
} from "../performance/recommend.ts";
import { olsFit, trailingZScores } from "../performance/stats.ts";

const dayMs = 86_400_000;
/** Most points a request may hold over all its pages: the work is linear in them. */
export const maxTotalPoints = 1_000_000;
/** Anomalies reported per page, newest first. */
export const maxAnomaliesPerPage = 10;

/** Message-level rules of the contract and the field they are about. */
const ruleFields: Readonly<Record<string, string>> = {
  "analyze_content_performance.custom_curve": "custom_ctr_curve",
  "performance_point.clicks": "clicks",
  "performance_point.engaged_sessions": "engaged_sessions",
  "time_range.order": "end",
};

/** One day of one page, with numbers instead of bigints. */
interface Day {
  day: number;
  impressions: number;
  clicks: number;
  position: number;
  sessions: number;
  engaged: number;
  conversions: number;
}

/**
 * Checks the request (again, for callers that bypass the server's validation) and what the
 * contract cannot say; answers each page's days within the period, in date order.
 */
function checkRequest(req: AnalyzeContentPerformanceRequest): Day[][] {
  let total = 0;
  for (const p of req.pages) total += p.points.length;
  if (total > maxTotalPoints) {
    throw new InvalidInputError("pages", `hold ${total} points; at most ${maxTotalPoints} over all pages`);
  }
  checkContract(AnalyzeContentPerformanceRequestSchema, req, ruleFields);
  const positions = new Map<number, number>();
  req.customCtrCurve.forEach((c, i) => {
    const first = positions.get(c.position);
    if (first !== undefined) {
      throw new InvalidInputError(`custom_ctr_curve[${i}].position`, `repeats custom_ctr_curve[${first}].position`);
    }
    positions.set(c.position, i);
  });
  const start = req.period?.start === undefined ? Number.NEGATIVE_INFINITY : timestampMs(req.period.start);
  const end = req.period?.end === undefined ? Number.POSITIVE_INFINITY : timestampMs(req.period.end);
  const urls = new Map<string, number>();
  return req.pages.map((page, i) => {
    const first = urls.get(page.url);
    if (first !== undefined) throw new InvalidInputError(`pages[${i}].url`, `repeats pages[${first}].url`);
    urls.set(page.url, i);
    const seen = new Map<number, number>();
    const days: Day[] = [];
    page.points.forEach((pt, j) => {
      const at = `pages[${i}].points[${j}]`;
      // The contract requires the date.
      const ms = timestampMs(pt.date as Timestamp);
      if (ms % dayMs !== 0) throw new InvalidInputError(`${at}.date`, "must be a UTC midnight (the start of the day)");
      const day = ms / dayMs;
      const dup = seen.get(day);
      if (dup !== undefined)
        throw new InvalidInputError(`${at}.date`, `repeats the date of pages[${i}].points[${dup}]`);
      seen.set(day, j);
      const impressions = Number(pt.impressions);
      if (impressions > 0 && pt.averagePosition < 1) {
        throw new InvalidInputError(`${at}.average_position`, "must be at least 1 on a day with impressions");
      }
      if (ms < start || ms >= end) return;
      days.push({
        day,
        impressions,
        clicks: Number(pt.clicks),
        position: pt.averagePosition,
        sessions: Number(pt.sessions),
        engaged: Number(pt.engagedSessions),
        conversions: Number(pt.conversions),
      });
    });
    return days.sort((a, b) => a.day - b.day);
  });
}

/** The baseline curve the request asks for, and the site fit when one was asked for and made. */
function chooseCurve(
  req: AnalyzeContentPerformanceRequest,
  pages: readonly Day[][],
  minImpressions: number,
): { curve: CtrCurve; used: CtrBaseline; fit?: CtrFit } {
  if (req.ctrBaseline === CtrBaseline.CUSTOM) {
    return { curve: customCtrCurve(req.customCtrCurve), used: CtrBaseline.CUSTOM };
  }
  if (req.ctrBaseline === CtrBaseline.SITE_FIT) {
    const buckets = new Map<number, PositionBucket>();
    for (const days of pages) {
      for (const d of days) {
        if (d.impressions === 0) continue;
        const position = Math.round(d.position);
        if (position > maxFittedPosition) continue;
        const b = buckets.get(position) ?? { position, impressions: 0, clicks: 0 };
        b.impressions += d.impressions;
        b.clicks += d.clicks;
        buckets.set(position, b);
      }
    }
    const fit = fitCtrCurve([...buckets.values()], minImpressions);
    if (fit !== undefined) return { curve: fit.curve, used: CtrBaseline.SITE_FIT, fit };
  }
  return { curve: builtinCtrCurve, used: CtrBaseline.BUILTIN };
}

/** The trend of one metric over `points` ([day offset, value]); undefined when it cannot be fitted. */
function trendOf(points: Array<readonly [number, number]>): Trend | undefined {
  const fit = olsFit(points);
  if (fit === undefined) return undefined;
  const mean = points.reduce((s, p) => s + p[1], 0) / points.length;
  return {
    ...fit,
    relativeChangePerWeek: mean !== 0 ? (7 * fit.slope) / mean : 0,
    firstX: (points[0] as readonly [number, number])[0],
    lastX: (points[points.length - 1] as readonly [number, number])[0],
  };
}

function trendMessage(metric: PerformanceMetric, t: Trend): TrendFit {
  return create(TrendFitSchema, {
    metric,
    slopePerDay: t.slope,
    intercept: t.intercept,
    rSquared: t.rSquared,
    relativeChangePerWeek: t.relativeChangePerWeek,
    pointCount: t.n,
    slopeStandardError: t.slopeStandardError,
    tStatistic: t.tStatistic,
    pValue: t.pValue,
    significant: t.pValue < 0.05,
  });
}

interface Analysed {
  message: PageAnalysis;
  facts: PageFacts;
}

function analysePage(
  url: string,
  targetKeyword: string,
  days: readonly Day[],
  curve: CtrCurve,
  opts: { minImpressions: number; zThreshold: number; windowDays: number; lastDay: number },
): Analysed {
  let impressions = 0;
  let clicks = 0;
  let weightedPosition = 0;
  let sessions = 0;
  let engaged = 0;
  for (const d of days) {
    impressions += d.impressions;
    clicks += d.clicks;
    weightedPosition += d.position * d.impressions;
    sessions += d.sessions;
    engaged += d.engaged;
  }
  const ctr = impressions > 0 ? clicks / impressions : 0;
  const averagePosition = impressions > 0 ? weightedPosition / impressions : 0;
  const expectedCtr = impressions > 0 ? curve(averagePosition) : 0;
  const residual = ctr - expectedCtr;
  const se = impressions > 0 ? Math.sqrt((expectedCtr * (1 - expectedCtr)) / impressions) : 0;
  const z = se > 0 ? residual / se : 0;
  const engagementRate = sessions > 0 ? engaged / sessions : 0;
  const firstDay = days[0]?.day;
  const daysCovered = firstDay === undefined ? 0 : opts.lastDay - firstDay + 1;

  // Trends: x is days since the page's first day, so the intercept is the line's value on it.
  const x = (d: Day): number => d.day - (firstDay as number);
  const series: Array<[PerformanceMetric, Array<readonly [number, number]>]> = [
    [PerformanceMetric.IMPRESSIONS, days.map((d) => [x(d), d.impressions] as const)],
    [PerformanceMetric.CLICKS, days.map((d) => [x(d), d.clicks] as const)],
    [
      PerformanceMetric.CTR,
      days.filter((d) => d.impressions > 0).map((d) => [x(d), d.clicks / d.impressions] as const),
    ],
    [PerformanceMetric.POSITION, days.filter((d) => d.impressions > 0).map((d) => [x(d), d.position] as const)],
    [
      PerformanceMetric.ENGAGEMENT_RATE,
      days.filter((d) => d.sessions > 0).map((d) => [x(d), d.engaged / d.sessions] as const),
    ],
    [PerformanceMetric.CONVERSIONS, days.map((d) => [x(d), d.conversions] as const)],
  ];
  const trends: TrendFit[] = [];
  let clicksTrend: Trend | undefined;
  let positionTrend: Trend | undefined;
  for (const [metric, points] of series) {
    const t = trendOf(points);
    if (t === undefined) continue;
    trends.push(trendMessage(metric, t));
    if (metric === PerformanceMetric.CLICKS) clicksTrend = t;
    if (metric === PerformanceMetric.POSITION) positionTrend = t;
  }

  // Anomalies of clicks and impressions, newest first (clicks before impressions on one day).
  const dayNumbers = days.map((d) => d.day);
  const found: Array<{ metric: "clicks" | "impressions"; day: number; a: Anomaly; recent: RecentAnomaly }> = [];
  for (const metric of ["clicks", "impressions"] as const) {
    const values = days.map((d) => d[metric]);
    for (const s of trailingZScores(dayNumbers, values, opts.windowDays)) {
      if (!(Math.abs(s.z) > opts.zThreshold)) continue;
      const day = dayNumbers[s.index] as number;
      found.push({
        metric,
        day,
        a: create(AnomalySchema, {
          metric: metric === "clicks" ? PerformanceMetric.CLICKS : PerformanceMetric.IMPRESSIONS,
          date: timestampFromMs(day * dayMs),
          value: s.value,
          baselineMean: s.mean,
          baselineStddev: s.stddev,
          zScore: s.z,
          direction: s.z > 0 ? AnomalyDirection.SPIKE : AnomalyDirection.DROP,
        }),
        recent: { metric, value: s.value, mean: s.mean, stddev: s.stddev, z: s.z, daysAgo: opts.lastDay - day },
      });
    }
  }
  found.sort((a, b) => b.day - a.day || (a.metric === b.metric ? 0 : a.metric === "clicks" ? -1 : 1));
  const recent = found.filter((f) => f.recent.daysAgo < recentAnomalyDays);
  const recentDrop = recent.find((f) => f.recent.z < 0)?.recent;
  const recentSpike = recent.find((f) => f.recent.z > 0)?.recent;

  const ctrEvaluated = impressions > 0 && impressions >= opts.minImpressions;
  return {
    message: create(PageAnalysisSchema, {
      url,
      impressions: BigInt(impressions),
      clicks: BigInt(clicks),
      ctr,
      averagePosition,
      expectedCtr,
      ctrResidual: residual,
      clickGap: expectedCtr * impressions - clicks,
      engagementRate,
      ctrEvaluated,
      trends,
      anomalies: found.slice(0, maxAnomaliesPerPage).map((f) => f.a),
      ctrStandardError: se,
      ctrZScore: z,
      daysCovered,
    }),
    facts: {
      url,
      targetKeyword,
      impressions,
      clicks,
      ctr,
      averagePosition,
      expectedCtr,
      ctrZScore: z,
      ctrEvaluated,
      sessions,
      engagedSessions: engaged,
      engagementRate,
      daysCovered,
      clicksTrend,
      positionTrend,
      recentDrop,
      recentSpike,
    },
  };
}

/** Analyses a request's pages and recommends actions. */
export function analyzeContentPerformance(req: AnalyzeContentPerformanceRequest): AnalyzeContentPerformanceResponse {
  const pages = checkRequest(req);
  const minImpressions = Number(req.minImpressions) || 100;
  const zThreshold = req.anomalyZThreshold || 3;
  const windowDays = req.baselineWindowDays || 28;
  const maxRecommendations = req.maxRecommendations || 50;
  const { curve, used, fit } = chooseCurve(req, pages, minImpressions);

  // The last day of the analysis: the newest day with data, which recent anomalies and the days a
  // page covers count back from (search consoles omit days without impressions, so a page's own
  // last point may be older).
  let lastDay = Number.NEGATIVE_INFINITY;
  for (const days of pages) for (const d of days) if (d.day > lastDay) lastDay = d.day;

  const analysed = req.pages.map((p, i) =>
    analysePage(p.url, p.targetKeyword, pages[i] as Day[], curve, { minImpressions, zThreshold, windowDays, lastDay }),
  );

  const evaluated = analysed.filter((a) => a.facts.ctrEvaluated).map((a) => a.facts.impressions);
  const engagementRates = analysed
    .filter((a) => a.facts.sessions >= minEngagementSessions)
    .map((a) => a.facts.engagementRate);
  const site = {
    curve,
    minImpressions,
    medianImpressions: evaluated.length > 0 ? median(evaluated) : undefined,
    medianEngagementRate: engagementRates.length >= minEngagementPages ? median(engagementRates) : undefined,
  };
  const ranked = rankFindings(
    analysed.flatMap((a) => findingsFor(a.facts, site)),
    maxRecommendations,
  );

  let impressions = 0;
  let clicks = 0;
  let sessions = 0;
  let engaged = 0;
  for (const a of analysed) {
    impressions += a.facts.impressions;
    clicks += a.facts.clicks;
    sessions += a.facts.sessions;
    engaged += a.facts.engagedSessions;
  }
  return create(AnalyzeContentPerformanceResponseSchema, {
    pages: analysed
      .map((a) => a.message)
      .sort((a, b) => b.clickGap - a.clickGap || (a.url < b.url ? -1 : a.url > b.url ? 1 : 0)),
    recommendations: ranked.map((r) =>
      create(RecommendationSchema, {
        rank: r.rank,
        url: r.url,
        reason: r.reason,
        impactScore: r.impactScore,
        estimatedClickGain: r.estimatedClickGain,
        message: r.message,
        evidence: r.evidence,
      }),
    ),
    ctrCurve: Array.from({ length: 20 }, (_, i) => create(CtrCurvePointSchema, { position: i + 1, ctr: curve(i + 1) })),
    siteCtr: impressions > 0 ? clicks / impressions : 0,
    siteEngagementRate: sessions > 0 ? engaged / sessions : 0,
    ctrBaselineUsed: used,
    ...(fit === undefined
      ? {}
      : {
          ctrFit: create(CtrCurveFitSchema, {
            intercept: fit.intercept,
            slope: fit.slope,
            rSquared: fit.rSquared,
            positionCount: fit.positionCount,
            impressions: BigInt(fit.impressions),
          }),
        }),
  });
}
