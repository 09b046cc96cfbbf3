import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  type KeywordCandidateSchema,
  type KeywordResearchRequest,
  KeywordResearchRequestSchema,
  type RankedKeyword,
  SearchIntent,
} from "../../../gen/mesh/research/v1/research_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { classifyIntent, keywordResearch, parseKeywordCsv } from "./keyword-research.ts";

type Init = MessageInitShape<typeof KeywordResearchRequestSchema>;

/** One keyword row; CPC in whole currency units for readability. */
function kw(
  keyword: string,
  volume: number,
  difficulty: number,
  position = 0,
  cpc = 0,
): MessageInitShape<typeof KeywordCandidateSchema> {
  return {
    keyword,
    monthlySearchVolume: BigInt(volume),
    difficulty,
    cpcMicros: BigInt(Math.round(cpc * 1_000_000)),
    currentPosition: position,
  };
}

function request(init: Init): KeywordResearchRequest {
  return create(KeywordResearchRequestSchema, init);
}

function byKeyword(keywords: readonly RankedKeyword[], keyword: string): RankedKeyword {
  const found = keywords.find((k) => k.keyword === keyword);
  if (found === undefined) throw new Error(`no ranked keyword "${keyword}"`);
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

// A small set worked out by hand (target position 1, CTR(1) = 0.28):
//   A "assisted living austin"    vol 1000, KD 30, CPC $3, pos 5  (CTR 0.06)
//     gain = 1000 × (0.28 − 0.06) = 220
//     raw  = 220 × (1 + ln(1 + 3)) × 110 / (30 + 10) = 220 × 2.386294 × 2.75 = 1443.708
//   B "memory care austin"        vol 500,  KD 0,  CPC $0, pos 0  (CTR 0)
//     gain = 500 × 0.28 = 140
//     raw  = 140 × 1 × 110 / 10 = 1540  ← the maximum, scores 100
//   C "assisted living austin tx" vol 200,  KD 90, CPC $0, pos 15 (CTR 0.012 − 4 × 0.007 / 9 = 0.0088889)
//     gain = 200 × (0.28 − 0.0088889) = 54.2222
//     raw  = 54.2222 × 1 × 110 / 100 = 59.6444
// Scores: A = 1443.708 / 1540 = 0.937473 → 93.75; C = 59.6444 / 1540 = 0.038730 → 3.87.
const handSet = [
  kw("assisted living austin", 1000, 30, 5, 3),
  kw("memory care austin", 500, 0, 0, 0),
  kw("assisted living austin tx", 200, 90, 15, 0),
];

describe("keywordResearch scoring", () => {
  it("orders keywords by opportunity and normalises the best to 100", () => {
    const res = keywordResearch(request({ keywords: handSet }));
    expect(res.keywords.map((k) => [k.rank, k.keyword])).toEqual([
      [1, "memory care austin"],
      [2, "assisted living austin"],
      [3, "assisted living austin tx"],
    ]);
    expect(res.keywords.map((k) => k.opportunityScore)).toEqual([100, 93.75, 3.87]);
  });

  it("reports the click gain and its value at the keyword's CPC", () => {
    const res = keywordResearch(request({ keywords: handSet }));
    const a = byKeyword(res.keywords, "assisted living austin");
    // 220 clicks × 3,000,000 micros = 660,000,000 micros.
    expect(a.estimatedClickGain).toBe(220);
    expect(a.estimatedValueMicros).toBe(660_000_000n);
    const b = byKeyword(res.keywords, "memory care austin");
    expect(b.estimatedClickGain).toBe(140);
    // No CPC, no value.
    expect(b.estimatedValueMicros).toBe(0n);
    // 54.2222 rounded to cents.
    expect(byKeyword(res.keywords, "assisted living austin tx").estimatedClickGain).toBe(54.22);
  });

  it("echoes the imported data and defaults the currency to USD", () => {
    const res = keywordResearch(request({ keywords: handSet }));
    const a = byKeyword(res.keywords, "assisted living austin");
    expect(a.monthlySearchVolume).toBe(1000n);
    expect(a.difficulty).toBe(30);
    expect(a.currentPosition).toBe(5);
    expect(res.currencyCode).toBe("USD");
    expect(keywordResearch(request({ keywords: handSet, currencyCode: "EUR" })).currencyCode).toBe("EUR");
  });

  it("flags striking-distance keywords (positions 4–20) as quick wins", () => {
    const positions = [0, 1, 3, 4, 12, 20, 21, 50];
    const res = keywordResearch(
      request({ keywords: positions.map((p) => kw(`alpha${p} beta${p}`, 100, 10, p)), clusterSimilarity: 1 }),
    );
    const quick = Object.fromEntries(res.keywords.map((k) => [k.currentPosition, k.quickWin]));
    expect(quick).toEqual({ 0: false, 1: false, 3: false, 4: true, 12: true, 20: true, 21: false, 50: false });
  });

  it("measures the gain towards target_position and never counts a loss", () => {
    // Target 3 (CTR 0.11):
    //   pos 5 (0.06), vol 1000 → 1000 × 0.05 = 50 clicks
    //   pos 0 (0),    vol 100  → 100 × 0.11 = 11 clicks
    //   pos 2 (0.16), vol 1000 → already above target → 0 clicks, score 0
    const res = keywordResearch(
      request({
        keywords: [kw("alpha one", 1000, 0, 5), kw("beta two", 100, 0, 0), kw("gamma three", 1000, 0, 2)],
        targetPosition: 3,
      }),
    );
    expect(byKeyword(res.keywords, "alpha one").estimatedClickGain).toBe(50);
    expect(byKeyword(res.keywords, "beta two").estimatedClickGain).toBe(11);
    const above = byKeyword(res.keywords, "gamma three");
    expect(above.estimatedClickGain).toBe(0);
    expect(above.opportunityScore).toBe(0);
    expect(above.rank).toBe(3);
  });

  it("limits the result to max_results but keeps every keyword in the summary", () => {
    const res = keywordResearch(request({ keywords: handSet, maxResults: 2 }));
    expect(res.keywords.map((k) => k.keyword)).toEqual(["memory care austin", "assisted living austin"]);
    expect(res.summary?.keywordCount).toBe(3);
  });

  it("breaks score ties by volume, then alphabetically", () => {
    // All three have zero gain (already at position 1), so raw = 0 for each.
    const res = keywordResearch(
      request({ keywords: [kw("zeta", 10, 0, 1), kw("beta", 10, 0, 1), kw("alpha", 5, 0, 1)], clusterSimilarity: 1 }),
    );
    expect(res.keywords.map((k) => k.keyword)).toEqual(["beta", "zeta", "alpha"]);
  });
});

describe("keywordResearch filters and de-duplication", () => {
  it("drops keywords below min_search_volume and keeps the boundary", () => {
    const res = keywordResearch(
      request({ keywords: [kw("alpha", 99, 10), kw("beta", 100, 10), kw("gamma", 500, 10)], minSearchVolume: 100n }),
    );
    expect(res.keywords.map((k) => k.keyword).sort()).toEqual(["beta", "gamma"]);
    expect(res.summary?.droppedCount).toBe(1);
  });

  it("drops keywords above max_difficulty, keeps the boundary, and 0 means no limit", () => {
    const rows = [kw("alpha", 100, 40), kw("beta", 100, 40.5), kw("gamma", 100, 100)];
    const limited = keywordResearch(request({ keywords: rows, maxDifficulty: 40 }));
    expect(limited.keywords.map((k) => k.keyword)).toEqual(["alpha"]);
    expect(limited.summary?.droppedCount).toBe(2);
    const unlimited = keywordResearch(request({ keywords: rows, maxDifficulty: 0 }));
    expect(unlimited.keywords).toHaveLength(3);
  });

  it("keeps only keywords sharing a lemma with a seed term", () => {
    // "homes" and "home" share the lemma "home"; "communities" and "community" share "community".
    const res = keywordResearch(
      request({
        keywords: [kw("nursing homes", 100, 10), kw("senior community austin", 100, 10), kw("memory care", 100, 10)],
        seedTerms: ["home", "communities"],
      }),
    );
    expect(res.keywords.map((k) => k.keyword).sort()).toEqual(["nursing homes", "senior community austin"]);
    expect(res.summary?.droppedCount).toBe(1);
  });

  it("merges spellings that differ in case or whitespace, keeping the highest-volume row", () => {
    const res = keywordResearch(
      request({
        keywords: [
          kw("Assisted  Living Austin", 300, 10),
          kw("assisted living austin", 1000, 20),
          kw(" ASSISTED living austin ", 50, 30),
        ],
      }),
    );
    expect(res.keywords).toHaveLength(1);
    expect(res.keywords[0]?.keyword).toBe("assisted living austin");
    expect(res.keywords[0]?.monthlySearchVolume).toBe(1000n);
    expect(res.summary?.droppedCount).toBe(2);
  });
});

describe("keywordResearch clustering", () => {
  it("groups keywords whose lemma sets overlap with a cluster head", () => {
    // Lemmas: A {assist, living, austin}, C {assist, living, austin, tx}, B {memory, care, austin}.
    // In volume order: A starts cluster 1; B vs A: Jaccard 1/5 = 0.2 < 0.5 → cluster 2;
    // C vs A: 3/4 = 0.75 ≥ 0.5 → joins cluster 1.
    const res = keywordResearch(request({ keywords: handSet }));
    expect(res.clusters).toHaveLength(2);
    const [first, second] = res.clusters;
    expect(first?.clusterId).toBe(1);
    expect(first?.headKeyword).toBe("assisted living austin");
    expect(first?.keywords).toEqual(["assisted living austin", "assisted living austin tx"]);
    expect([...(first?.sharedTerms ?? [])].sort()).toEqual(["assist", "austin", "living"]);
    // 1000 + 200 = 1200.
    expect(first?.totalSearchVolume).toBe(1200n);
    // (30 × 1000 + 90 × 200) / 1200 = 48,000 / 1200 = 40.
    expect(first?.weightedDifficulty).toBe(40);
    // 220 + 54.2222 = 274.22.
    expect(first?.estimatedClickGain).toBe(274.22);
    expect(second?.clusterId).toBe(2);
    expect(second?.headKeyword).toBe("memory care austin");
    expect(second?.keywords).toEqual(["memory care austin"]);
    expect([...(second?.sharedTerms ?? [])].sort()).toEqual(["austin", "care", "memory"]);
    expect(second?.totalSearchVolume).toBe(500n);
    expect(second?.estimatedClickGain).toBe(140);
    expect(Object.fromEntries(res.keywords.map((k) => [k.keyword, k.clusterId]))).toEqual({
      "assisted living austin": 1,
      "memory care austin": 2,
      "assisted living austin tx": 1,
    });
  });

  it("orders clusters by estimated click gain", () => {
    // Cluster ids follow volume: "alpha beta" (10) → 1, "gamma delta" (5) → 2, "epsilon zeta" (1) → 3.
    // Gains: cluster 1 is already at position 1 → 0; cluster 2: 5 × 0.28 = 1.4; cluster 3: 1 × 0.28 = 0.28.
    const res = keywordResearch(
      request({ keywords: [kw("alpha beta", 10, 0, 1), kw("gamma delta", 5, 0, 0), kw("epsilon zeta", 1, 0, 0)] }),
    );
    expect(res.clusters.map((c) => [c.clusterId, c.headKeyword, c.estimatedClickGain])).toEqual([
      [2, "gamma delta", 1.4],
      [3, "epsilon zeta", 0.28],
      [1, "alpha beta", 0],
    ]);
  });

  it("honours a stricter cluster_similarity", () => {
    // A vs C Jaccard is 0.75; a threshold of 0.8 splits them.
    const res = keywordResearch(request({ keywords: handSet, clusterSimilarity: 0.8 }));
    expect(res.clusters).toHaveLength(3);
    expect(new Set(res.keywords.map((k) => k.clusterId)).size).toBe(3);
  });
});

describe("keywordResearch summary", () => {
  it("describes the volume distribution of the kept keywords", () => {
    const res = keywordResearch(
      request({
        keywords: [
          kw("alpha", 10, 10),
          kw("beta gamma", 40, 10),
          kw("delta epsilon zeta", 100, 10),
          kw("eta theta", 1000, 10),
          kw("ETA  theta", 5, 10), // duplicate spelling, dropped
          kw("iota", 3, 10), // below min volume, dropped
        ],
        minSearchVolume: 5n,
      }),
    );
    // "iota" has volume 3 < 5; the duplicate has the lower volume.
    expect(res.summary?.keywordCount).toBe(4);
    // 10 + 40 + 100 + 1000 = 1150.
    expect(res.summary?.totalSearchVolume).toBe(1150n);
    // Sorted [10, 40, 100, 1000]: (40 + 100) / 2 = 70.
    expect(res.summary?.medianSearchVolume).toBe(70);
    // Top 10% of 4 keywords rounds up to 1 keyword: 1000 / 1150 = 0.869565…
    expect(res.summary?.headShare).toBeCloseTo(1000 / 1150, 12);
    // One of four keywords has three or more words.
    expect(res.summary?.longTailRatio).toBe(0.25);
    expect(res.summary?.droppedCount).toBe(2);
  });

  it("takes the middle volume for an odd count", () => {
    const res = keywordResearch(request({ keywords: handSet }));
    // Sorted [200, 500, 1000] → 500; head share 1000 / 1700; all three have ≥ 3 words.
    expect(res.summary?.medianSearchVolume).toBe(500);
    expect(res.summary?.headShare).toBeCloseTo(1000 / 1700, 12);
    expect(res.summary?.longTailRatio).toBe(1);
    expect(res.summary?.droppedCount).toBe(0);
  });

  it("returns an empty analysis when filters drop everything", () => {
    const res = keywordResearch(request({ keywords: handSet, minSearchVolume: 1_000_000n }));
    expect(res.keywords).toHaveLength(0);
    expect(res.clusters).toHaveLength(0);
    expect(res.summary?.keywordCount).toBe(0);
    expect(res.summary?.medianSearchVolume).toBe(0);
    expect(res.summary?.headShare).toBe(0);
    expect(res.summary?.droppedCount).toBe(3);
  });
});

describe("classifyIntent", () => {
  it.each([
    ["sunrise senior living login", SearchIntent.NAVIGATIONAL],
    ["assisted living cost austin", SearchIntent.TRANSACTIONAL],
    ["memory care near me", SearchIntent.TRANSACTIONAL],
    ["schedule a tour", SearchIntent.TRANSACTIONAL],
    ["best memory care austin", SearchIntent.COMMERCIAL],
    ["assisted living vs nursing home", SearchIntent.COMMERCIAL],
    ["how to choose assisted living", SearchIntent.INFORMATIONAL],
    ["what is memory care", SearchIntent.INFORMATIONAL],
    ["memory care austin", SearchIntent.UNSPECIFIED],
  ])("classifies %j", (keyword, intent) => {
    expect(classifyIntent(keyword)).toBe(intent);
  });

  it("prefers navigational over transactional over commercial over informational", () => {
    expect(classifyIntent("best pricing portal")).toBe(SearchIntent.NAVIGATIONAL);
    expect(classifyIntent("best price for assisted living")).toBe(SearchIntent.TRANSACTIONAL);
    expect(classifyIntent("how to find the best memory care")).toBe(SearchIntent.COMMERCIAL);
  });

  it("ignores case and extra whitespace, and matches whole words only", () => {
    expect(classifyIntent("BEST   Memory Care")).toBe(SearchIntent.COMMERCIAL);
    // "bestow" and "topical" contain modifiers but are not modifiers.
    expect(classifyIntent("bestow topical")).toBe(SearchIntent.UNSPECIFIED);
  });

  it("sets the intent on ranked keywords", () => {
    const res = keywordResearch(
      request({ keywords: [kw("best memory care", 100, 10), kw("memory care cost", 100, 10)] }),
    );
    expect(byKeyword(res.keywords, "best memory care").intent).toBe(SearchIntent.COMMERCIAL);
    expect(byKeyword(res.keywords, "memory care cost").intent).toBe(SearchIntent.TRANSACTIONAL);
  });
});

describe("parseKeywordCsv", () => {
  it("reads the canonical header", () => {
    const rows = parseKeywordCsv("keyword,volume,difficulty,cpc,position\nassisted living austin,2400,38,4.2,14\n");
    expect(rows).toEqual([
      { keyword: "assisted living austin", volume: 2400, difficulty: 38, cpcMicros: 4_200_000, position: 14 },
    ]);
  });

  it("maps the header aliases keyword tools export, in any order and case", () => {
    const rows = parseKeywordCsv("Position,KD,Keyword,CPC,Search Volume\n7,25,memory care austin,5.10,880\n");
    expect(rows).toEqual([
      { keyword: "memory care austin", volume: 880, difficulty: 25, cpcMicros: 5_100_000, position: 7 },
    ]);
  });

  it("reads quoted fields with commas, currency and percent signs, and a BOM", () => {
    const csv = '\uFEFFKeyword,Search Volume,KD,CPC,Position\n"assisted living, austin tx","2,400",45%,$3.50,12\n';
    expect(parseKeywordCsv(csv)).toEqual([
      { keyword: "assisted living, austin tx", volume: 2400, difficulty: 45, cpcMicros: 3_500_000, position: 12 },
    ]);
  });

  it("treats missing optional columns and empty optional cells as 0", () => {
    const rows = parseKeywordCsv("keyword,volume,difficulty\nalpha,10,5\n\nbeta,20,6\n");
    expect(rows).toEqual([
      { keyword: "alpha", volume: 10, difficulty: 5, cpcMicros: 0, position: 0 },
      { keyword: "beta", volume: 20, difficulty: 6, cpcMicros: 0, position: 0 },
    ]);
    const withEmpty = parseKeywordCsv("keyword,volume,difficulty,cpc,position\ngamma,30,7,,\n");
    expect(withEmpty).toEqual([{ keyword: "gamma", volume: 30, difficulty: 7, cpcMicros: 0, position: 0 }]);
  });

  it("names the missing required column", () => {
    const err = thrownBy(() => parseKeywordCsv("keyword,difficulty\nalpha,5\n"));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe("csv");
    expect((err as InvalidInputError).message).toContain('"volume"');
  });

  it("names the row and column of a value out of range", () => {
    // Row 1 is the header, so the second data row is row 3.
    const err = thrownBy(() => parseKeywordCsv("keyword,volume,difficulty\nalpha,10,5\nbeta,20,150\n"));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe("csv[row 3].difficulty");
    expect((err as InvalidInputError).message).toContain('"150"');
  });

  it("names the row and column of a value that is not a number", () => {
    const err = thrownBy(() => parseKeywordCsv("keyword,volume,difficulty,position\nalpha,lots,5,3\n"));
    expect((err as InvalidInputError).field).toBe("csv[row 2].volume");
  });

  it("names the row and column of an empty required value", () => {
    const err = thrownBy(() => parseKeywordCsv("keyword,volume,difficulty\nalpha,,5\n"));
    expect((err as InvalidInputError).field).toBe("csv[row 2].volume");
    expect((err as InvalidInputError).message).toContain("is empty");
    const short = thrownBy(() => parseKeywordCsv("keyword,volume,difficulty\nalpha,10\n"));
    expect((short as InvalidInputError).field).toBe("csv[row 2].difficulty");
  });

  it("names the row of an empty keyword", () => {
    const err = thrownBy(() => parseKeywordCsv('keyword,volume,difficulty\nalpha,1,1\n"",10,5\n'));
    expect((err as InvalidInputError).field).toBe("csv[row 3].keyword");
  });

  it("rejects a header without rows and malformed CSV", () => {
    const empty = thrownBy(() => parseKeywordCsv("keyword,volume,difficulty\n"));
    expect(empty).toBeInstanceOf(InvalidInputError);
    expect((empty as InvalidInputError).field).toBe("csv");
    const malformed = thrownBy(() => parseKeywordCsv('keyword,volume,difficulty\n"alpha,10,5\n'));
    expect(malformed).toBeInstanceOf(InvalidInputError);
    expect((malformed as InvalidInputError).field).toBe("csv");
  });

  it("feeds keywordResearch when the request carries csv", () => {
    const csv = [
      "Keyword,Search Volume,KD,CPC,Position",
      "assisted living austin,1000,30,3,5",
      "memory care austin,500,0,0,",
      "assisted living austin tx,200,90,,15",
    ].join("\n");
    const res = keywordResearch(request({ csv }));
    // Same rows as the hand-computed set, so the same scores.
    expect(res.keywords.map((k) => [k.keyword, k.opportunityScore])).toEqual([
      ["memory care austin", 100],
      ["assisted living austin", 93.75],
      ["assisted living austin tx", 3.87],
    ]);
    expect(byKeyword(res.keywords, "assisted living austin").estimatedValueMicros).toBe(660_000_000n);
  });
});
