/**
 * Recommendations from a page's performance: each rule names an action, its evidence and the
 * monthly clicks it is worth, and the list is ranked by that estimate.
 *
 * The rules pair statistical significance with a practical size, because either alone misleads: a
 * page with a million impressions makes a 2% shortfall "significant", and a page with forty makes
 * a halved CTR noise.
 */
import { ReasonCode } from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import type { CtrCurve } from "./ctr-curve.ts";
import type { OlsFit } from "./stats.ts";

/** A CTR this many binomial standard errors below the expected one is significantly low. */
export const lowCtrZ = -2;
/** …and it must also be at most this share of the expected CTR. */
export const lowCtrRatio = 0.8;
/** Snippet rewrites are for page one, where the snippet is seen and CTRs differ by whole points. */
export const lowCtrMaxPosition = 10;
/** Striking distance: ranking here, one push from the top three. */
export const strikingDistance = { from: 4, to: 20, target: 3 } as const;
/** A trend counts when its slope's two-sided p-value is below this… */
export const trendAlpha = 0.05;
/** …it spans at least two weeks of days (weekday cycles make shorter fits unreliable)… */
export const minTrendDays = 14;
/** …and clicks fall by at least this share of their mean a week. */
export const decliningClicksPerWeek = -0.02;
/** Rankings slipped when the fitted position worsened by at least this many places. */
export const decliningPositionPlaces = 1;
/** Fewest sessions for an engagement verdict, and fewest pages having them for a site median. */
export const minEngagementSessions = 30;
export const minEngagementPages = 3;
/** Engagement is low at most this share of the site median and this many standard errors below it. */
export const lowEngagementRatio = 0.8;
export const lowEngagementZ = -2;
/** Anomalies on the last days of the analysis are recent enough to act on. */
export const recentAnomalyDays = 7;
/** A page seen this long with fewer than min_impressions impressions has no visibility. */
export const noVisibilityDays = 28;

/** A trend line with its derived weekly change. */
export interface Trend extends OlsFit {
  relativeChangePerWeek: number;
  /** Day offsets of the first and last point fitted. */
  firstX: number;
  lastX: number;
}

/** An anomaly the rules may act on. */
export interface RecentAnomaly {
  metric: "clicks" | "impressions";
  value: number;
  mean: number;
  stddev: number;
  z: number;
  /** Days before the last day of the analysis (0 = that day). */
  daysAgo: number;
}

/** What the rules know about one page. */
export interface PageFacts {
  url: string;
  targetKeyword: string;
  impressions: number;
  clicks: number;
  ctr: number;
  averagePosition: number;
  expectedCtr: number;
  ctrZScore: number;
  ctrEvaluated: boolean;
  sessions: number;
  engagedSessions: number;
  engagementRate: number;
  daysCovered: number;
  clicksTrend?: Trend | undefined;
  positionTrend?: Trend | undefined;
  /** Newest drop and spike within {@link recentAnomalyDays}. */
  recentDrop?: RecentAnomaly | undefined;
  recentSpike?: RecentAnomaly | undefined;
}

/** What the rules know about the site. */
export interface SiteFacts {
  curve: CtrCurve;
  minImpressions: number;
  /** Median impressions of the pages with a CTR verdict; undefined when none. */
  medianImpressions: number | undefined;
  /** Median engagement rate of pages with enough sessions; undefined with too few such pages. */
  medianEngagementRate: number | undefined;
}

/** One recommendation before ranking. */
export interface Finding {
  url: string;
  reason: ReasonCode;
  estimatedClickGain: number;
  message: string;
  evidence: Record<string, number>;
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });
const fine = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 3 });

function pct(x: number): string {
  return `${decimal.format(100 * x)}%`;
}

function pValue(p: number): string {
  return p < 0.001 ? "p < 0.001" : `p = ${p.toFixed(3)}`;
}

function forKeyword(p: PageFacts): string {
  return p.targetKeyword === "" ? "" : ` for "${p.targetKeyword}"`;
}

/** Every finding for `page`, unranked. */
export function findingsFor(page: PageFacts, site: SiteFacts): Finding[] {
  const out: Finding[] = [];
  const perMonth = page.daysCovered > 0 ? 30 / page.daysCovered : 0;
  const monthlyImpressions = page.impressions * perMonth;
  const kw = forKeyword(page);

  if (
    page.ctrEvaluated &&
    page.averagePosition <= lowCtrMaxPosition &&
    page.expectedCtr > 0 &&
    page.ctr <= lowCtrRatio * page.expectedCtr &&
    page.ctrZScore <= lowCtrZ
  ) {
    const gain = (page.expectedCtr - page.ctr) * monthlyImpressions;
    out.push({
      url: page.url,
      reason: ReasonCode.LOW_CTR_FOR_POSITION,
      estimatedClickGain: gain,
      message:
        `Rewrite the title tag and meta description of ${page.url}${kw}: its CTR is ${pct(page.ctr)} at average ` +
        `position ${decimal.format(page.averagePosition)} against ${pct(page.expectedCtr)} expected ` +
        `(${integer.format((100 * page.ctr) / page.expectedCtr)}% of it, z = ${decimal.format(page.ctrZScore)} over ` +
        `${integer.format(page.impressions)} impressions); reaching the expected CTR is worth about ` +
        `${integer.format(gain)} more clicks a month.`,
      evidence: {
        ctr: page.ctr,
        expected_ctr: page.expectedCtr,
        ctr_residual: page.ctr - page.expectedCtr,
        ctr_z_score: page.ctrZScore,
        impressions: page.impressions,
        average_position: page.averagePosition,
      },
    });
  }

  if (
    page.ctrEvaluated &&
    page.averagePosition >= strikingDistance.from &&
    page.averagePosition <= strikingDistance.to &&
    site.medianImpressions !== undefined &&
    page.impressions >= site.medianImpressions
  ) {
    const targetCtr = site.curve(strikingDistance.target);
    const currentCtr = site.curve(page.averagePosition);
    // A snippet that earns a quarter of the curve's clicks here will earn a quarter higher up too:
    // the gain keeps the page's CTR relative to the curve (at most 1), so a page whose snippet
    // needs rewriting first does not promise the whole curve.
    const efficiency = page.expectedCtr > 0 ? Math.min(1, page.ctr / page.expectedCtr) : 1;
    const gain = (targetCtr - currentCtr) * efficiency * monthlyImpressions;
    if (gain > 0) {
      out.push({
        url: page.url,
        reason: ReasonCode.STRIKING_DISTANCE,
        estimatedClickGain: gain,
        message:
          `Strengthen the content and internal links of ${page.url}${kw}: it ranks at average position ` +
          `${decimal.format(page.averagePosition)} with ${integer.format(page.impressions)} impressions (site median ` +
          `${integer.format(site.medianImpressions)}); at position ${strikingDistance.target} the expected CTR rises ` +
          `from ${pct(currentCtr)} to ${pct(targetCtr)}, about ${integer.format(gain)} more clicks a month at its ` +
          `present CTR relative to the curve (${integer.format(100 * efficiency)}%).`,
        evidence: {
          average_position: page.averagePosition,
          impressions: page.impressions,
          median_impressions: site.medianImpressions,
          expected_ctr: currentCtr,
          target_position: strikingDistance.target,
          target_ctr: targetCtr,
          ctr_efficiency: efficiency,
        },
      });
    }
  }

  const ct = page.clicksTrend;
  if (
    ct !== undefined &&
    ct.slope < 0 &&
    ct.pValue < trendAlpha &&
    ct.lastX - ct.firstX + 1 >= minTrendDays &&
    ct.relativeChangePerWeek <= decliningClicksPerWeek
  ) {
    const start = ct.intercept + ct.slope * ct.firstX;
    const end = ct.intercept + ct.slope * ct.lastX;
    // Restoring the fitted level of the first day: the daily shortfall, for a month.
    const gain = (start - Math.max(0, end)) * 30;
    out.push({
      url: page.url,
      reason: ReasonCode.DECLINING_CLICKS,
      estimatedClickGain: gain,
      message:
        `Refresh the content of ${page.url}${kw}: clicks fall by ${fine.format(-ct.slope)} a day ` +
        `(${decimal.format(-100 * ct.relativeChangePerWeek)}% of their mean a week, ${pValue(ct.pValue)}, ` +
        `R² = ${ct.rSquared.toFixed(2)}, ${ct.n} days), from about ${decimal.format(start)} to ` +
        `${decimal.format(Math.max(0, end))} a day; restoring the starting level is worth about ` +
        `${integer.format(gain)} clicks a month.`,
      evidence: {
        slope_per_day: ct.slope,
        slope_standard_error: ct.slopeStandardError,
        t_statistic: ct.tStatistic,
        p_value: ct.pValue,
        r_squared: ct.rSquared,
        relative_change_per_week: ct.relativeChangePerWeek,
        point_count: ct.n,
      },
    });
  }

  const pt = page.positionTrend;
  if (pt !== undefined && pt.slope > 0 && pt.pValue < trendAlpha && pt.lastX - pt.firstX + 1 >= minTrendDays) {
    const start = Math.max(1, pt.intercept + pt.slope * pt.firstX);
    const end = Math.max(1, pt.intercept + pt.slope * pt.lastX);
    if (end - start >= decliningPositionPlaces) {
      const gain = Math.max(0, site.curve(start) - site.curve(end)) * monthlyImpressions;
      out.push({
        url: page.url,
        reason: ReasonCode.DECLINING_POSITION,
        estimatedClickGain: gain,
        message:
          `Review the results now outranking ${page.url}${kw} and update the page: its average position slipped ` +
          `from ${decimal.format(start)} to ${decimal.format(end)} (${fine.format(pt.slope)} places a day, ` +
          `${pValue(pt.pValue)}, ${pt.n} days); winning the places back is worth about ${integer.format(gain)} ` +
          "clicks a month.",
        evidence: {
          slope_per_day: pt.slope,
          slope_standard_error: pt.slopeStandardError,
          t_statistic: pt.tStatistic,
          p_value: pt.pValue,
          r_squared: pt.rSquared,
          start_position: start,
          end_position: end,
        },
      });
    }
  }

  const median = site.medianEngagementRate;
  if (median !== undefined && median > 0 && median < 1 && page.sessions >= minEngagementSessions) {
    const se = Math.sqrt((median * (1 - median)) / page.sessions);
    const z = (page.engagementRate - median) / se;
    if (page.engagementRate <= lowEngagementRatio * median && z <= lowEngagementZ) {
      const gain = (median - page.engagementRate) * page.sessions * perMonth;
      out.push({
        url: page.url,
        reason: ReasonCode.LOW_ENGAGEMENT,
        estimatedClickGain: gain,
        message:
          `Improve the content and layout of ${page.url}${kw}: ${pct(page.engagementRate)} of its ` +
          `${integer.format(page.sessions)} sessions are engaged against a site median of ${pct(median)} ` +
          `(z = ${decimal.format(z)}); reaching the median is worth about ${integer.format(gain)} more engaged ` +
          "sessions a month.",
        evidence: {
          engagement_rate: page.engagementRate,
          median_engagement_rate: median,
          sessions: page.sessions,
          engagement_z_score: z,
        },
      });
    }
  }

  for (const [a, reason] of [
    [page.recentDrop, ReasonCode.TRAFFIC_DROP_ANOMALY],
    [page.recentSpike, ReasonCode.TRAFFIC_SPIKE_ANOMALY],
  ] as const) {
    if (a === undefined) continue;
    const drop = reason === ReasonCode.TRAFFIC_DROP_ANOMALY;
    // In clicks: a drop that persists costs its daily shortfall every day of a month; a spike is
    // worth its excess clicks once, more only if promotion sustains it.
    const daily = Math.abs(a.value - a.mean) * (a.metric === "clicks" ? 1 : page.ctr);
    const gain = drop ? daily * 30 : daily;
    const when =
      a.daysAgo === 0 ? "on the last day" : `${a.daysAgo} day${a.daysAgo === 1 ? "" : "s"} before the last day`;
    out.push({
      url: page.url,
      reason,
      estimatedClickGain: gain,
      message: drop
        ? `Check indexing, tracking and outages for ${page.url}: ${a.metric} dropped to ${integer.format(a.value)} ` +
          `${when} against a trailing mean of ${decimal.format(a.mean)} (z = ${decimal.format(a.z)}); if it ` +
          `persists it costs about ${integer.format(gain)} clicks a month.`
        : `Capitalise on the spike of ${page.url}${kw} with internal links and promotion: ${a.metric} reached ` +
          `${integer.format(a.value)} ${when} against a trailing mean of ${decimal.format(a.mean)} ` +
          `(z = ${decimal.format(a.z)}), about ${integer.format(gain)} extra clicks that day.`,
      evidence: {
        value: a.value,
        baseline_mean: a.mean,
        baseline_stddev: a.stddev,
        z_score: a.z,
        days_ago: a.daysAgo,
      },
    });
  }

  if (page.daysCovered >= noVisibilityDays && page.impressions < site.minImpressions) {
    out.push({
      url: page.url,
      reason: ReasonCode.NO_VISIBILITY,
      estimatedClickGain: 0,
      message:
        `Consolidate, retarget or prune ${page.url}${kw}: it earned ${integer.format(page.impressions)} impressions ` +
        `in ${page.daysCovered} days (fewer than ${integer.format(site.minImpressions)}).`,
      evidence: { impressions: page.impressions, days_covered: page.daysCovered },
    });
  }
  return out;
}

/** A finding with its place in the ranking. */
export interface RankedFinding extends Finding {
  rank: number;
  impactScore: number;
}

/**
 * The `max` most impactful findings: by estimated click gain, then by reason (the contract's order,
 * snippet fixes first), then by URL, so equal estimates rank the same way every time. The impact
 * score is the gain as a share of the largest, 0–100 with two decimals.
 */
export function rankFindings(findings: readonly Finding[], max: number): RankedFinding[] {
  const sorted = [...findings].sort(
    (a, b) =>
      b.estimatedClickGain - a.estimatedClickGain ||
      a.reason - b.reason ||
      (a.url < b.url ? -1 : a.url > b.url ? 1 : 0),
  );
  const top = sorted[0]?.estimatedClickGain ?? 0;
  return sorted.slice(0, max).map((f, i) => ({
    ...f,
    rank: i + 1,
    impactScore: top > 0 ? Math.round((10_000 * f.estimatedClickGain) / top) / 100 : 0,
  }));
}
