/**
 * Keyword research with search-volume analysis.
 *
 * Method: for each imported keyword, the monthly click gain of moving from its current position to
 * the target position on the organic CTR curve; weighted by commercial value (1 + ln(1 + CPC)) and
 * by ease (110 / (difficulty + 10)); normalised to 0–100 within the request. Keywords in striking
 * distance (positions 4–20) are quick wins. Intent comes from query modifiers. Clusters follow the
 * leader algorithm keyword tools use: keywords in descending volume join the first cluster whose
 * head keyword's lemma set has Jaccard similarity ≥ the threshold, otherwise start a new cluster.
 */
import { create } from "@bufbuild/protobuf";
import { parse } from "csv-parse/sync";
import {
  type KeywordCandidate,
  type KeywordCluster,
  KeywordClusterSchema,
  type KeywordResearchRequest,
  type KeywordResearchResponse,
  KeywordResearchResponseSchema,
  type RankedKeyword,
  RankedKeywordSchema,
  SearchIntent,
} from "../../../gen/mesh/research/v1/research_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { contentLemmas, normalizeKeyword, organicCtr } from "../../../lib/search/index.ts";

interface Row {
  keyword: string;
  volume: number;
  difficulty: number;
  cpcMicros: number;
  position: number;
}

const columnAliases: Record<keyof Row, string[]> = {
  keyword: ["keyword", "keywords", "query", "search term"],
  volume: ["volume", "search volume", "monthly search volume", "avg. monthly searches", "avg monthly searches"],
  difficulty: ["difficulty", "kd", "keyword difficulty", "kd %", "kd%"],
  cpcMicros: ["cpc", "cpc (usd)", "cost per click", "top of page bid (high range)"],
  position: ["position", "current position", "rank", "our position"],
};

/** Parses keyword CSV (RFC 4180, header row) into rows; errors name the row and column. */
export function parseKeywordCsv(csv: string): Row[] {
  let parsed: Array<{ record: string[]; info: { lines: number } }>;
  try {
    parsed = parse(csv, {
      skip_empty_lines: true,
      trim: true,
      relax_column_count: true,
      bom: true,
      info: true,
    }) as unknown as typeof parsed;
  } catch (err) {
    throw new InvalidInputError("csv", `not valid CSV: ${(err as Error).message}`);
  }
  const records = parsed.map((p) => p.record);
  // Errors name the line of the file (blank lines count), not the record number.
  const lineOf = (r: number): number => parsed[r]?.info.lines ?? r + 1;
  const header = (records[0] ?? []).map((h) => h.toLowerCase());
  const col = (k: keyof Row): number => header.findIndex((h) => columnAliases[k].includes(h));
  const idx = {
    keyword: col("keyword"),
    volume: col("volume"),
    difficulty: col("difficulty"),
    cpc: col("cpcMicros"),
    position: col("position"),
  };
  for (const [name, i] of [
    ["keyword", idx.keyword],
    ["volume", idx.volume],
    ["difficulty", idx.difficulty],
  ] as const) {
    if (i < 0)
      throw new InvalidInputError(
        "csv",
        `header row has no "${name}" column (found: ${header.join(", ") || "nothing"})`,
      );
  }
  const rows: Row[] = [];
  for (let r = 1; r < records.length; r++) {
    const rec = records[r] as string[];
    const num = (i: number, name: string, min: number, max: number, required: boolean): number => {
      const raw = (i >= 0 ? rec[i] : undefined)?.replace(/[$,%]/g, "").trim() ?? "";
      if (raw === "") {
        if (required) throw new InvalidInputError(`csv[row ${lineOf(r)}].${name}`, "is empty");
        return 0;
      }
      const n = Number(raw);
      if (!Number.isFinite(n) || n < min || n > max) {
        throw new InvalidInputError(
          `csv[row ${lineOf(r)}].${name}`,
          `"${raw}" is not a number between ${min} and ${max}`,
        );
      }
      return n;
    };
    const keyword = rec[idx.keyword]?.trim() ?? "";
    if (keyword === "" || keyword.length > 200) {
      throw new InvalidInputError(`csv[row ${lineOf(r)}].keyword`, "must be 1–200 characters");
    }
    rows.push({
      keyword,
      volume: Math.round(num(idx.volume, "volume", 0, 1e12, true)),
      difficulty: num(idx.difficulty, "difficulty", 0, 100, true),
      cpcMicros: Math.round(num(idx.cpc, "cpc", 0, 1e6, false) * 1_000_000),
      position: Math.round(num(idx.position, "position", 0, 100, false)),
    });
  }
  if (rows.length === 0) throw new InvalidInputError("csv", "has a header row but no keyword rows");
  if (rows.length > 50_000) throw new InvalidInputError("csv", "has more than 50,000 keyword rows");
  return rows;
}

const intentPatterns: ReadonlyArray<[SearchIntent, RegExp]> = [
  [SearchIntent.NAVIGATIONAL, /\b(login|log in|sign in|website|official site|portal|app)\b/],
  [
    SearchIntent.TRANSACTIONAL,
    /\b(buy|price|prices|pricing|cost|costs|cheap|affordable|near me|book|schedule|tour|quote|deal|discount|coupon|order|apply|availability|openings|hire)\b/,
  ],
  [
    SearchIntent.COMMERCIAL,
    /\b(best|top|vs|versus|review|reviews|compare|comparison|alternative|alternatives|rated|ranking)\b/,
  ],
  [
    SearchIntent.INFORMATIONAL,
    /\b(how|what|why|when|where|who|which|guide|tips|ideas|definition|meaning|checklist|tutorial|learn|difference|is|does|can|should)\b/,
  ],
];

/** Search intent from query modifiers, navigational first, then transactional, commercial, informational. */
export function classifyIntent(keyword: string): SearchIntent {
  const k = normalizeKeyword(keyword);
  for (const [intent, re] of intentPatterns) if (re.test(k)) return intent;
  return SearchIntent.UNSPECIFIED;
}

function jaccard(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  let inter = 0;
  for (const x of a) if (b.has(x)) inter++;
  const union = a.size + b.size - inter;
  return union === 0 ? 1 : inter / union;
}

interface Scored extends Row {
  lemmas: Set<string>;
  gain: number;
  valueMicros: number;
  raw: number;
  cluster: number;
}

/** Runs keyword research on a validated request. */
export function keywordResearch(req: KeywordResearchRequest): KeywordResearchResponse {
  const rows: Row[] =
    req.csv !== ""
      ? parseKeywordCsv(req.csv)
      : req.keywords.map((k: KeywordCandidate) => ({
          keyword: k.keyword,
          volume: Number(k.monthlySearchVolume),
          difficulty: k.difficulty,
          cpcMicros: Number(k.cpcMicros),
          position: k.currentPosition,
        }));
  const target = req.targetPosition || 1;
  const maxResults = req.maxResults || 100;
  const threshold = req.clusterSimilarity || 0.5;
  const seeds = new Set(req.seedTerms.flatMap((t) => contentLemmas(t)));

  // Deduplicate spellings (keep the highest-volume row), then filter.
  const byKey = new Map<string, Row>();
  for (const r of rows) {
    const key = normalizeKeyword(r.keyword);
    const prev = byKey.get(key);
    if (prev === undefined || r.volume > prev.volume) byKey.set(key, r);
  }
  let dropped = rows.length - byKey.size;
  const kept: Scored[] = [];
  for (const r of byKey.values()) {
    const lemmas = new Set(contentLemmas(r.keyword));
    const pass =
      r.volume >= Number(req.minSearchVolume) &&
      (req.maxDifficulty === 0 || r.difficulty <= req.maxDifficulty) &&
      (seeds.size === 0 || [...lemmas].some((l) => seeds.has(l)));
    if (!pass) {
      dropped++;
      continue;
    }
    const gain = r.volume * Math.max(0, organicCtr(target) - organicCtr(r.position));
    const cpcUnits = r.cpcMicros / 1_000_000;
    const raw = gain * (1 + Math.log1p(cpcUnits)) * (110 / (r.difficulty + 10));
    kept.push({ ...r, lemmas, gain, valueMicros: Math.round(gain * r.cpcMicros), raw, cluster: 0 });
  }

  // Leader clustering in descending volume (ties by keyword for determinism).
  const byVolume = [...kept].sort((a, b) => b.volume - a.volume || a.keyword.localeCompare(b.keyword));
  const clusters: Array<{ id: number; head: Scored; members: Scored[] }> = [];
  const clustersByLemma = new Map<string, number[]>();
  for (const k of byVolume) {
    const candidates = new Set<number>();
    for (const l of k.lemmas) for (const c of clustersByLemma.get(l) ?? []) candidates.add(c);
    let joined: (typeof clusters)[number] | undefined;
    for (const c of [...candidates].sort((a, b) => a - b)) {
      const cl = clusters[c - 1] as (typeof clusters)[number];
      if (jaccard(k.lemmas, cl.head.lemmas) >= threshold) {
        joined = cl;
        break;
      }
    }
    if (joined === undefined) {
      joined = { id: clusters.length + 1, head: k, members: [] };
      clusters.push(joined);
      for (const l of k.lemmas) clustersByLemma.set(l, [...(clustersByLemma.get(l) ?? []), joined.id]);
    }
    joined.members.push(k);
    k.cluster = joined.id;
  }

  const maxRaw = Math.max(0, ...kept.map((k) => k.raw));
  const ranked = [...kept].sort((a, b) => b.raw - a.raw || b.volume - a.volume || a.keyword.localeCompare(b.keyword));
  const keywords: RankedKeyword[] = ranked.slice(0, maxResults).map((k, i) =>
    create(RankedKeywordSchema, {
      keyword: k.keyword,
      rank: i + 1,
      opportunityScore: maxRaw > 0 ? Math.round((10000 * k.raw) / maxRaw) / 100 : 0,
      estimatedClickGain: Math.round(k.gain * 100) / 100,
      estimatedValueMicros: BigInt(k.valueMicros),
      monthlySearchVolume: BigInt(k.volume),
      difficulty: k.difficulty,
      currentPosition: k.position,
      quickWin: k.position >= 4 && k.position <= 20,
      intent: classifyIntent(k.keyword),
      clusterId: k.cluster,
    }),
  );

  const clusterOut: KeywordCluster[] = clusters
    .map((c) => {
      const vol = c.members.reduce((s, m) => s + m.volume, 0);
      const shared = [...c.head.lemmas].filter((l) => c.members.every((m) => m.lemmas.has(l)));
      return create(KeywordClusterSchema, {
        clusterId: c.id,
        headKeyword: c.head.keyword,
        keywords: c.members.map((m) => m.keyword),
        totalSearchVolume: BigInt(vol),
        weightedDifficulty:
          vol > 0
            ? c.members.reduce((s, m) => s + m.difficulty * m.volume, 0) / vol
            : c.members.reduce((s, m) => s + m.difficulty, 0) / c.members.length,
        estimatedClickGain: Math.round(c.members.reduce((s, m) => s + m.gain, 0) * 100) / 100,
        sharedTerms: shared,
      });
    })
    .sort((a, b) => b.estimatedClickGain - a.estimatedClickGain || a.clusterId - b.clusterId);

  const volumes = kept.map((k) => k.volume).sort((a, b) => a - b);
  const total = volumes.reduce((s, v) => s + v, 0);
  const mid = Math.floor(volumes.length / 2);
  const median =
    volumes.length === 0
      ? 0
      : volumes.length % 2
        ? (volumes[mid] as number)
        : ((volumes[mid - 1] as number) + (volumes[mid] as number)) / 2;
  const topCount = Math.max(1, Math.ceil(volumes.length * 0.1));
  const headVolume = volumes.slice(-topCount).reduce((s, v) => s + v, 0);

  return create(KeywordResearchResponseSchema, {
    keywords,
    clusters: clusterOut,
    summary: {
      keywordCount: kept.length,
      totalSearchVolume: BigInt(total),
      medianSearchVolume: median,
      headShare: total > 0 ? headVolume / total : 0,
      longTailRatio:
        kept.length > 0 ? kept.filter((k) => k.keyword.trim().split(/\s+/).length >= 3).length / kept.length : 0,
      droppedCount: dropped,
    },
    currencyCode: req.currencyCode || "USD",
  });
}
