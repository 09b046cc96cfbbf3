/**
 * Rank tracking with competitor comparison.
 *
 * Method: an observation belongs to a snapshot when it falls on the snapshot's UTC day (the best
 * position wins when a day has several). Per keyword: our previous and current position, the
 * delta (not ranking counts as 101), the best competitor and our gap to it. Per domain:
 * CTR-weighted visibility Σ CTR(pos)·volume / Σ CTR(1)·volume and share of voice (its share of the
 * CTR-weighted clicks of all tracked domains). Opportunities come from the Research agent's
 * KeywordResearch skill, fed with the imported keyword data and our current positions.
 *
 * The request is checked here too (the contract's rules, and the two snapshots falling on different
 * UTC days), so a caller that reaches the skill without the server's validation — in process, or
 * directly — gets INVALID_ARGUMENT naming the field, never an internal error.
 */
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { ResearchService } from "../../../gen/mesh/research/v1/research_service_pb.ts";
import {
  type DomainVisibility,
  DomainVisibilitySchema,
  type KeywordOpportunity,
  KeywordOpportunitySchema,
  type KeywordRanking,
  KeywordRankingSchema,
  type TrackRankingsRequest,
  TrackRankingsRequestSchema,
  type TrackRankingsResponse,
  TrackRankingsResponseSchema,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { checkContract, InvalidInputError } from "../../../lib/errors/index.ts";
import { normalizeKeyword, organicCtr } from "../../../lib/search/index.ts";
import type { MeshClient } from "../../../lib/transport/index.ts";

const notRanking = 101;
const dayMs = 86_400_000;

/** Message-level rules of the contract and the field they are about. */
const ruleFields: Readonly<Record<string, string>> = {
  "track_rankings.dates": "current_date",
  "track_rankings.competitors": "competitor_domains",
};

/**
 * Checks the request against the contract's rules (again, for callers that bypass the server's
 * validation) and what the rules cannot say: the snapshots are UTC days, so they must differ.
 * Returns the two snapshot days.
 */
function checkRequest(req: TrackRankingsRequest): { prevDay: number; currDay: number } {
  checkContract(TrackRankingsRequestSchema, req, ruleFields);
  // Both dates are required by the contract.
  const prevDay = Math.floor(timestampMs(req.previousDate as Timestamp) / dayMs);
  const currDay = Math.floor(timestampMs(req.currentDate as Timestamp) / dayMs);
  if (currDay <= prevDay) {
    throw new InvalidInputError("current_date", "must fall on a later UTC day than previous_date (snapshots are days)");
  }
  return { prevDay, currDay };
}

function normalizeDomain(d: string): string {
  return d
    .toLowerCase()
    .replace(/^www\./, "")
    .replace(/\.$/, "");
}

/** Dependencies of the skill. */
export interface TrackRankingsDeps {
  /** Mesh client, for the Research agent. */
  client: MeshClient;
}

/** Runs rank tracking; bad input is INVALID_ARGUMENT naming the field, whoever calls. */
export async function trackRankings(
  deps: TrackRankingsDeps,
  req: TrackRankingsRequest,
): Promise<TrackRankingsResponse> {
  const { prevDay, currDay } = checkRequest(req);
  const ctr = (p: number): number =>
    p < 1 || p >= notRanking ? 0 : req.ctrCurve.length > 0 ? (req.ctrCurve[p - 1] ?? 0) : organicCtr(p);
  const ours = normalizeDomain(req.ourDomain);
  // Normalising can make a competitor equal to us (www.example.com): it is then not a competitor.
  const competitors = [...new Set(req.competitorDomains.map(normalizeDomain))].filter((d) => d !== ours);
  const domains = [ours, ...competitors];
  const tracked = new Set(domains);

  // snapshot → keyword → domain → best position (and url)
  type Cell = { position: number; url: string };
  const snaps = { prev: new Map<string, Map<string, Cell>>(), curr: new Map<string, Map<string, Cell>>() };
  const display = new Map<string, string>();
  for (const o of req.observations) {
    const domain = normalizeDomain(o.domain);
    if (!tracked.has(domain) || o.observedAt === undefined) continue;
    const day = Math.floor(timestampMs(o.observedAt) / dayMs);
    const snap = day === prevDay ? snaps.prev : day === currDay ? snaps.curr : undefined;
    if (snap === undefined) continue;
    const key = normalizeKeyword(o.keyword);
    if (!display.has(key)) display.set(key, o.keyword);
    const byDomain = snap.get(key) ?? new Map<string, Cell>();
    snap.set(key, byDomain);
    const pos = o.position === 0 ? notRanking : o.position;
    const prev = byDomain.get(domain);
    if (prev === undefined || pos < prev.position) byDomain.set(domain, { position: pos, url: o.url });
  }

  const volume = new Map<string, number>();
  for (const k of req.keywords) volume.set(normalizeKeyword(k.keyword), Number(k.monthlySearchVolume));
  const pos = (snap: Map<string, Map<string, Cell>>, key: string, domain: string): number =>
    snap.get(key)?.get(domain)?.position ?? notRanking;

  const keys = [...display.keys()].sort();
  let improved = 0;
  let declined = 0;
  let unchanged = 0;
  let gained = 0;
  let lost = 0;
  const rankings: KeywordRanking[] = keys.map((key) => {
    const prev = pos(snaps.prev, key, ours);
    const curr = pos(snaps.curr, key, ours);
    const delta = prev - curr;
    if (prev === notRanking && curr !== notRanking) gained++;
    else if (prev !== notRanking && curr === notRanking) lost++;
    if (delta > 0) improved++;
    else if (delta < 0) declined++;
    else unchanged++;
    let best: { domain: string; position: number } | undefined;
    for (const d of competitors) {
      const p = pos(snaps.curr, key, d);
      if (p !== notRanking && (best === undefined || p < best.position)) best = { domain: d, position: p };
    }
    return create(KeywordRankingSchema, {
      keyword: display.get(key) as string,
      previousPosition: prev === notRanking ? 0 : prev,
      currentPosition: curr === notRanking ? 0 : curr,
      delta,
      bestCompetitorDomain: best?.domain ?? "",
      bestCompetitorPosition: best?.position ?? 0,
      gapToBestCompetitor: best ? curr - best.position : 0,
      monthlySearchVolume: BigInt(volume.get(key) ?? 0),
      url: snaps.curr.get(key)?.get(ours)?.url ?? "",
    });
  });
  // Highest search volume first, as the contract promises.
  rankings.sort((a, b) => Number(b.monthlySearchVolume - a.monthlySearchVolume) || a.keyword.localeCompare(b.keyword));

  // With no volume for any keyword, every keyword weighs the same.
  const weight = (key: string): number => (volume.size === 0 ? 1 : (volume.get(key) ?? 0));
  const ideal = keys.reduce((s, k) => s + ctr(1) * weight(k), 0);
  const clicks = (snap: Map<string, Map<string, Cell>>, d: string): number =>
    keys.reduce((s, k) => s + ctr(pos(snap, k, d)) * weight(k), 0);
  const currentClicks = new Map(domains.map((d) => [d, clicks(snaps.curr, d)]));
  const allClicks = [...currentClicks.values()].reduce((a, b) => a + b, 0);
  const visibility: DomainVisibility[] = domains.map((d) =>
    create(DomainVisibilitySchema, {
      domain: d,
      visibility: ideal > 0 ? (currentClicks.get(d) as number) / ideal : 0,
      shareOfVoice: allClicks > 0 ? (currentClicks.get(d) as number) / allClicks : 0,
      previousVisibility: ideal > 0 ? clicks(snaps.prev, d) / ideal : 0,
      keywordsInTop3: keys.filter((k) => pos(snaps.curr, k, d) <= 3).length,
      keywordsInTop10: keys.filter((k) => pos(snaps.curr, k, d) <= 10).length,
      ours: d === ours,
    }),
  );
  visibility.sort((a, b) => b.visibility - a.visibility || a.domain.localeCompare(b.domain));

  let opportunities: KeywordOpportunity[] = [];
  if (req.keywords.length > 0) {
    const research = deps.client.agent(ResearchService);
    const res = await research.keywordResearch({
      keywords: req.keywords.map((k) => {
        const p = pos(snaps.curr, normalizeKeyword(k.keyword), ours);
        return {
          keyword: k.keyword,
          monthlySearchVolume: k.monthlySearchVolume,
          difficulty: k.difficulty,
          cpcMicros: k.cpcMicros,
          currentPosition: p === notRanking ? 0 : p,
        };
      }),
      maxResults: req.maxOpportunities || 20,
      currencyCode: req.currencyCode,
    });
    const heads = new Map(res.clusters.map((c) => [c.clusterId, c.headKeyword]));
    opportunities = res.keywords.map((k) =>
      create(KeywordOpportunitySchema, {
        keyword: k.keyword,
        opportunityScore: k.opportunityScore,
        estimatedClickGain: k.estimatedClickGain,
        clusterHeadKeyword: heads.get(k.clusterId) ?? k.keyword,
        currentPosition: k.currentPosition,
      }),
    );
  }

  return create(TrackRankingsResponseSchema, {
    rankings,
    visibility,
    opportunities,
    improvedCount: improved,
    declinedCount: declined,
    unchangedCount: unchanged,
    newCount: gained,
    lostCount: lost,
  });
}
