import { create, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  type KeywordResearchRequest,
  KeywordResearchRequestSchema,
  type KeywordResearchResponse,
  KeywordResearchResponseSchema,
  ResearchService,
} from "../../../gen/mesh/research/v1/research_service_pb.ts";
import {
  type DomainVisibility,
  type KeywordRanking,
  RankObservationSchema,
  SeoService,
  type TrackRankingsRequest,
  TrackRankingsRequestSchema,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createErrorInterceptor, createInProcessClient } from "../../../lib/server/index.ts";
import type { MeshClient } from "../../../lib/transport/index.ts";
import { failure } from "../../../test/support/expect.ts";
import { trackRankings } from "./track-rankings.ts";

type RequestInit = MessageInitShape<typeof TrackRankingsRequestSchema>;

/** A MeshClient fake with only the Research agent's KeywordResearch; records every request. */
function fakeClient(response: KeywordResearchResponse = create(KeywordResearchResponseSchema)) {
  const requests: KeywordResearchRequest[] = [];
  const services: DescService[] = [];
  const fake = {
    agent(service: DescService) {
      services.push(service);
      return {
        async keywordResearch(req: MessageInitShape<typeof KeywordResearchRequestSchema>) {
          requests.push(create(KeywordResearchRequestSchema, req));
          return response;
        },
      };
    },
  };
  return { client: fake as unknown as MeshClient, requests, services };
}

const previousDate = "2025-05-01T00:00:00Z";
const currentDate = "2025-06-01T00:00:00Z";

/** One observation at an ISO time. */
function obs(keyword: string, domain: string, position: number, at: string, url = "") {
  return create(RankObservationSchema, { keyword, domain, position, url, observedAt: timestampFromDate(new Date(at)) });
}

function request(init: RequestInit): TrackRankingsRequest {
  return create(TrackRankingsRequestSchema, {
    ourDomain: "example.com",
    previousDate: timestampFromDate(new Date(previousDate)),
    currentDate: timestampFromDate(new Date(currentDate)),
    ...init,
  });
}

function ranking(rankings: readonly KeywordRanking[], keyword: string): KeywordRanking {
  const found = rankings.find((r) => r.keyword === keyword);
  if (found === undefined) throw new Error(`no ranking for "${keyword}"`);
  return found;
}

function visibilityOf(visibility: readonly DomainVisibility[], domain: string): DomainVisibility {
  const found = visibility.find((v) => v.domain === domain);
  if (found === undefined) throw new Error(`no visibility for "${domain}"`);
  return found;
}

describe("trackRankings snapshots", () => {
  it("assigns observations to the snapshot of their UTC day and keeps the best position per day", async () => {
    const { client } = fakeClient();
    const res = await trackRankings(
      { client },
      request({
        observations: [
          obs("assisted living austin", "example.com", 14, "2025-05-01T06:00:00Z"),
          obs("assisted living austin", "example.com", 12, "2025-05-01T23:59:59Z"),
          // The days either side of the previous snapshot do not count.
          obs("assisted living austin", "example.com", 1, "2025-04-30T23:59:59Z"),
          obs("assisted living austin", "example.com", 2, "2025-05-02T00:00:00Z"),
          obs("assisted living austin", "example.com", 9, "2025-06-01T10:00:00Z", "https://example.com/austin"),
          // Not ranking later that day does not beat position 9.
          obs("assisted living austin", "example.com", 0, "2025-06-01T11:00:00Z"),
          // Between the snapshots: ignored.
          obs("assisted living austin", "example.com", 3, "2025-05-15T12:00:00Z"),
        ],
      }),
    );
    expect(res.rankings).toHaveLength(1);
    const r = ranking(res.rankings, "assisted living austin");
    expect(r.previousPosition).toBe(12);
    expect(r.currentPosition).toBe(9);
    // 12 − 9 = 3, positive = improved.
    expect(r.delta).toBe(3);
    expect(r.url).toBe("https://example.com/austin");
  });

  it("lists a keyword observed only on other days nowhere", async () => {
    const { client } = fakeClient();
    const res = await trackRankings(
      { client },
      request({
        observations: [
          obs("alpha", "example.com", 3, "2025-06-01T08:00:00Z"),
          obs("beta", "example.com", 3, "2025-05-20T08:00:00Z"),
        ],
      }),
    );
    expect(res.rankings.map((r) => r.keyword)).toEqual(["alpha"]);
  });

  it("merges keyword spellings that differ in case or whitespace", async () => {
    const { client } = fakeClient();
    const res = await trackRankings(
      { client },
      request({
        observations: [
          obs("Memory Care Austin", "example.com", 8, "2025-05-01T08:00:00Z"),
          obs("memory  care austin", "example.com", 4, "2025-06-01T08:00:00Z"),
        ],
      }),
    );
    expect(res.rankings).toHaveLength(1);
    expect(res.rankings[0]?.previousPosition).toBe(8);
    expect(res.rankings[0]?.currentPosition).toBe(4);
  });
});

describe("trackRankings per-keyword comparison", () => {
  // Our movement per keyword (previous → current):
  //   up      10 → 4         improved, delta 6
  //   down     3 → 7         declined, delta −4
  //   same     5 → 5         unchanged, delta 0
  //   new      — → 8         improved and new, delta 101 − 8 = 93
  //   lost     6 → 0 (not ranking)  declined and lost, delta 6 − 101 = −95
  //   never    — → —         unchanged (only competitors rank), delta 0
  const observations = [
    obs("up", "example.com", 10, "2025-05-01T08:00:00Z"),
    obs("up", "example.com", 4, "2025-06-01T08:00:00Z"),
    obs("up", "rival.example", 4, "2025-06-01T08:00:00Z"),
    obs("up", "other.example", 2, "2025-06-01T08:00:00Z"),
    obs("down", "example.com", 3, "2025-05-01T08:00:00Z"),
    obs("down", "example.com", 7, "2025-06-01T08:00:00Z"),
    obs("down", "rival.example", 9, "2025-06-01T08:00:00Z"),
    obs("same", "example.com", 5, "2025-05-01T08:00:00Z"),
    obs("same", "example.com", 5, "2025-06-01T08:00:00Z"),
    obs("same", "rival.example", 0, "2025-06-01T08:00:00Z"),
    obs("new", "example.com", 8, "2025-06-01T08:00:00Z"),
    obs("lost", "example.com", 6, "2025-05-01T08:00:00Z"),
    obs("lost", "example.com", 0, "2025-06-01T08:00:00Z"),
    obs("never", "rival.example", 3, "2025-06-01T08:00:00Z"),
    // An untracked domain ranking first is not a competitor.
    obs("down", "stranger.example", 1, "2025-06-01T08:00:00Z"),
  ];
  const run = () =>
    trackRankings(fakeClient(), request({ competitorDomains: ["rival.example", "other.example"], observations }));

  it("computes deltas with not ranking counted as 101", async () => {
    const res = await run();
    const deltas = Object.fromEntries(
      res.rankings.map((r) => [r.keyword, [r.previousPosition, r.currentPosition, r.delta]]),
    );
    expect(deltas).toEqual({
      up: [10, 4, 6],
      down: [3, 7, -4],
      same: [5, 5, 0],
      new: [0, 8, 93],
      lost: [6, 0, -95],
      never: [0, 0, 0],
    });
  });

  it("counts improved, declined, unchanged, new and lost keywords", async () => {
    const res = await run();
    expect({
      improved: res.improvedCount,
      declined: res.declinedCount,
      unchanged: res.unchangedCount,
      new: res.newCount,
      lost: res.lostCount,
    }).toEqual({ improved: 2, declined: 2, unchanged: 2, new: 1, lost: 1 });
  });

  it("finds the best-ranking competitor and our gap to it", async () => {
    const res = await run();
    const up = ranking(res.rankings, "up");
    // other.example at 2 beats rival.example at 4; we are at 4: gap 4 − 2 = 2.
    expect([up.bestCompetitorDomain, up.bestCompetitorPosition, up.gapToBestCompetitor]).toEqual([
      "other.example",
      2,
      2,
    ]);
    const down = ranking(res.rankings, "down");
    // stranger.example (position 1) is not tracked; rival at 9 is below us at 7: gap 7 − 9 = −2.
    expect([down.bestCompetitorDomain, down.bestCompetitorPosition, down.gapToBestCompetitor]).toEqual([
      "rival.example",
      9,
      -2,
    ]);
    const never = ranking(res.rankings, "never");
    // We do not rank (101): gap 101 − 3 = 98.
    expect([never.bestCompetitorDomain, never.bestCompetitorPosition, never.gapToBestCompetitor]).toEqual([
      "rival.example",
      3,
      98,
    ]);
    // rival.example's observation says "not ranking", so no competitor ranks.
    const same = ranking(res.rankings, "same");
    expect([same.bestCompetitorDomain, same.bestCompetitorPosition, same.gapToBestCompetitor]).toEqual(["", 0, 0]);
  });
});

describe("trackRankings visibility", () => {
  // Current snapshot (CTR: 1 → 0.28, 2 → 0.16, 3 → 0.11, 5 → 0.06):
  //                   k1 (vol 1000)   k2 (vol 500)
  //   example.com      1               3
  //   rival.example    2               1
  // Previous snapshot: example.com k1 at 5, k2 not ranking; rival.example not observed.
  const observations = [
    obs("k1", "example.com", 5, "2025-05-01T08:00:00Z"),
    obs("k1", "example.com", 1, "2025-06-01T08:00:00Z"),
    obs("k2", "example.com", 3, "2025-06-01T08:00:00Z"),
    obs("k1", "rival.example", 2, "2025-06-01T08:00:00Z"),
    obs("k2", "rival.example", 1, "2025-06-01T08:00:00Z"),
  ];
  const keywords = [
    { keyword: "k1", monthlySearchVolume: 1000n, difficulty: 30, cpcMicros: 0n },
    { keyword: "k2", monthlySearchVolume: 500n, difficulty: 20, cpcMicros: 0n },
  ];

  it("weights CTR by search volume and splits the share of voice", async () => {
    const res = await trackRankings(
      fakeClient(),
      request({ competitorDomains: ["rival.example"], observations, keywords }),
    );
    // Ideal = 0.28 × 1000 + 0.28 × 500 = 420.
    // Ours = 0.28 × 1000 + 0.11 × 500 = 280 + 55 = 335 → 335 / 420 = 0.797619
    // Rival = 0.16 × 1000 + 0.28 × 500 = 160 + 140 = 300 → 300 / 420 = 0.714286
    // Share of voice: 335 / 635 = 0.527559 and 300 / 635 = 0.472441.
    // Previous: ours = 0.06 × 1000 = 60 → 60 / 420 = 0.142857; rival 0.
    const ours = visibilityOf(res.visibility, "example.com");
    const rival = visibilityOf(res.visibility, "rival.example");
    expect(res.visibility).toHaveLength(2);
    expect(ours.ours).toBe(true);
    expect(rival.ours).toBe(false);
    expect(ours.visibility).toBeCloseTo(335 / 420, 12);
    expect(rival.visibility).toBeCloseTo(300 / 420, 12);
    expect(ours.shareOfVoice).toBeCloseTo(335 / 635, 12);
    expect(rival.shareOfVoice).toBeCloseTo(300 / 635, 12);
    expect(ours.previousVisibility).toBeCloseTo(60 / 420, 12);
    expect(rival.previousVisibility).toBe(0);
    expect([ours.keywordsInTop3, ours.keywordsInTop10]).toEqual([2, 2]);
    expect([rival.keywordsInTop3, rival.keywordsInTop10]).toEqual([2, 2]);
    expect(ranking(res.rankings, "k1").monthlySearchVolume).toBe(1000n);
    expect(ranking(res.rankings, "k2").monthlySearchVolume).toBe(500n);
  });

  it("weights every keyword equally when no volumes are given", async () => {
    const res = await trackRankings(fakeClient(), request({ competitorDomains: ["rival.example"], observations }));
    // Ideal = 0.28 + 0.28 = 0.56; ours (0.28 + 0.11) / 0.56 = 0.696429; rival (0.16 + 0.28) / 0.56 = 0.785714.
    expect(visibilityOf(res.visibility, "example.com").visibility).toBeCloseTo(0.39 / 0.56, 12);
    expect(visibilityOf(res.visibility, "rival.example").visibility).toBeCloseTo(0.44 / 0.56, 12);
    // Share of voice: 0.39 / 0.83 and 0.44 / 0.83.
    expect(visibilityOf(res.visibility, "example.com").shareOfVoice).toBeCloseTo(0.39 / 0.83, 12);
  });

  it("gives keywords without a volume row no weight once any volume is given", async () => {
    const res = await trackRankings(
      fakeClient(),
      request({ competitorDomains: ["rival.example"], observations, keywords: keywords.slice(0, 1) }),
    );
    // Only k1 counts: ideal 0.28 × 1000 = 280; ours 280 / 280 = 1; rival 160 / 280 = 0.571429.
    expect(visibilityOf(res.visibility, "example.com").visibility).toBeCloseTo(1, 12);
    expect(visibilityOf(res.visibility, "rival.example").visibility).toBeCloseTo(160 / 280, 12);
    expect(ranking(res.rankings, "k2").monthlySearchVolume).toBe(0n);
  });

  it("uses a custom CTR curve, with positions past its end worth nothing", async () => {
    const res = await trackRankings(
      fakeClient(),
      request({
        competitorDomains: ["rival.example"],
        observations: [
          ...observations.filter((o) => !(o.keyword === "k2" && o.domain === "example.com")),
          obs("k2", "example.com", 5, "2025-06-01T08:00:00Z"),
        ],
        keywords,
        ctrCurve: [0.5, 0.3, 0.2],
      }),
    );
    // Ideal = 0.5 × 1500 = 750.
    // Ours: k1 at 1 → 0.5 × 1000 = 500; k2 at 5 is past the curve → 0. 500 / 750 = 0.666667
    // Rival: k1 at 2 → 0.3 × 1000 = 300; k2 at 1 → 0.5 × 500 = 250. 550 / 750 = 0.733333
    expect(visibilityOf(res.visibility, "example.com").visibility).toBeCloseTo(500 / 750, 12);
    expect(visibilityOf(res.visibility, "rival.example").visibility).toBeCloseTo(550 / 750, 12);
    expect(visibilityOf(res.visibility, "example.com").shareOfVoice).toBeCloseTo(500 / 1050, 12);
  });

  it("normalises domains: case, a leading www. and a trailing dot", async () => {
    const res = await trackRankings(
      fakeClient(),
      request({
        ourDomain: "Example.COM",
        competitorDomains: ["www.Rival.example"],
        observations: [
          obs("k1", "WWW.EXAMPLE.COM", 1, "2025-06-01T08:00:00Z"),
          obs("k1", "rival.example.", 2, "2025-06-01T08:00:00Z"),
        ],
      }),
    );
    expect(res.visibility.map((v) => v.domain).sort()).toEqual(["example.com", "rival.example"]);
    // One keyword, equal weight: ours 0.28 / 0.28 = 1; rival 0.16 / 0.28.
    expect(visibilityOf(res.visibility, "example.com").visibility).toBeCloseTo(1, 12);
    expect(visibilityOf(res.visibility, "rival.example").visibility).toBeCloseTo(0.16 / 0.28, 12);
    expect(ranking(res.rankings, "k1").currentPosition).toBe(1);
    expect(ranking(res.rankings, "k1").bestCompetitorDomain).toBe("rival.example");
  });
});

describe("trackRankings opportunities", () => {
  const observations = [
    obs("assisted living austin", "example.com", 14, "2025-06-01T08:00:00Z"),
    obs("Memory Care Austin", "example.com", 0, "2025-06-01T08:00:00Z"),
    obs("assisted living austin", "example.com", 3, "2025-05-01T08:00:00Z"),
  ];
  const keywords = [
    { keyword: "assisted living austin", monthlySearchVolume: 2400n, difficulty: 38, cpcMicros: 4_200_000n },
    { keyword: "memory care austin", monthlySearchVolume: 880n, difficulty: 25, cpcMicros: 5_100_000n },
    { keyword: "assisted living austin tx", monthlySearchVolume: 320n, difficulty: 20, cpcMicros: 0n },
  ];

  it("asks Research with the imported keyword data and our current positions", async () => {
    const fake = fakeClient();
    await trackRankings(fake, request({ observations, keywords, maxOpportunities: 5, currencyCode: "EUR" }));
    expect(fake.services).toEqual([ResearchService]);
    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0];
    expect(sent?.maxResults).toBe(5);
    expect(sent?.currencyCode).toBe("EUR");
    expect(
      sent?.keywords.map((k) => [k.keyword, k.monthlySearchVolume, k.difficulty, k.cpcMicros, k.currentPosition]),
    ).toEqual([
      // Current position 14 (the previous snapshot's 3 is not used).
      ["assisted living austin", 2400n, 38, 4_200_000n, 14],
      // Observed as not ranking: 0.
      ["memory care austin", 880n, 25, 5_100_000n, 0],
      // Never observed: 0.
      ["assisted living austin tx", 320n, 20, 0n, 0],
    ]);
  });

  it("asks for 20 opportunities when max_opportunities is 0", async () => {
    const fake = fakeClient();
    await trackRankings(fake, request({ observations, keywords }));
    expect(fake.requests[0]?.maxResults).toBe(20);
  });

  it("does not call Research without keyword data", async () => {
    const fake = fakeClient();
    const res = await trackRankings(fake, request({ observations }));
    expect(fake.services).toHaveLength(0);
    expect(fake.requests).toHaveLength(0);
    expect(res.opportunities).toHaveLength(0);
  });

  it("maps Research's ranked keywords to opportunities with their cluster head", async () => {
    const response = create(KeywordResearchResponseSchema, {
      keywords: [
        {
          keyword: "assisted living austin tx",
          opportunityScore: 100,
          estimatedClickGain: 89.6,
          clusterId: 1,
          currentPosition: 0,
        },
        { keyword: "memory care austin", opportunityScore: 61.5, estimatedClickGain: 246.4, clusterId: 2 },
        {
          keyword: "assisted living austin",
          opportunityScore: 40.25,
          estimatedClickGain: 648.8,
          clusterId: 1,
          currentPosition: 14,
        },
        // A cluster id missing from the clusters list falls back to the keyword itself.
        { keyword: "orphan keyword", opportunityScore: 1, estimatedClickGain: 2, clusterId: 9 },
      ],
      clusters: [
        { clusterId: 1, headKeyword: "assisted living austin" },
        { clusterId: 2, headKeyword: "memory care austin" },
      ],
    });
    const res = await trackRankings(fakeClient(response), request({ observations, keywords }));
    expect(
      res.opportunities.map((o) => [
        o.keyword,
        o.opportunityScore,
        o.estimatedClickGain,
        o.clusterHeadKeyword,
        o.currentPosition,
      ]),
    ).toEqual([
      ["assisted living austin tx", 100, 89.6, "assisted living austin", 0],
      ["memory care austin", 61.5, 246.4, "memory care austin", 0],
      ["assisted living austin", 40.25, 648.8, "assisted living austin", 14],
      ["orphan keyword", 1, 2, "orphan keyword", 0],
    ]);
  });
});

describe("trackRankings ordering and domains", () => {
  it("orders rankings by search volume and visibility by visibility, as the contract says", async () => {
    const { client } = fakeClient();
    const at = "2025-06-01T06:00:00Z";
    const res = await trackRankings(
      { client },
      request({
        competitorDomains: ["competitor.example"],
        observations: [
          obs("small keyword", "example.com", 5, at),
          obs("big keyword", "example.com", 8, at),
          obs("big keyword", "competitor.example", 1, at),
        ],
        keywords: [
          { keyword: "small keyword", monthlySearchVolume: 10n },
          { keyword: "big keyword", monthlySearchVolume: 1000n },
        ],
      }),
    );
    expect(res.rankings.map((r) => r.keyword)).toEqual(["big keyword", "small keyword"]);
    // competitor: 0.28·1000 = 280 clicks; us: 0.03·1000 + 0.06·10 = 30.6 → competitor first.
    expect(res.visibility.map((v) => v.domain)).toEqual(["competitor.example", "example.com"]);
  });

  it("never treats our own domain as a competitor, even spelled with www.", async () => {
    const { client } = fakeClient();
    const res = await trackRankings(
      { client },
      request({
        competitorDomains: ["www.Example.com", "competitor.example"],
        observations: [obs("k", "example.com", 2, "2025-06-01T06:00:00Z")],
      }),
    );
    expect(res.visibility.filter((v) => v.ours)).toHaveLength(1);
    expect(res.visibility.map((v) => v.domain).sort()).toEqual(["competitor.example", "example.com"]);
    expect(ranking(res.rankings, "k").bestCompetitorDomain).toBe("");
  });
});

describe("trackRankings input checks of its own", () => {
  const day = (iso: string) => timestampFromDate(new Date(iso));
  const good = { observations: [obs("k", "example.com", 2, "2025-06-01T06:00:00Z")] };
  /** Bad requests and the field each must name; none reaches Research. */
  const bad: Array<[string, RequestInit, string]> = [
    ["no previous_date", { ...good, previousDate: undefined }, "previous_date"],
    ["no current_date", { ...good, currentDate: undefined }, "current_date"],
    [
      "dates in the wrong order",
      { ...good, previousDate: day(currentDate), currentDate: day(previousDate) },
      "current_date",
    ],
    [
      "both dates on one UTC day",
      { ...good, previousDate: day("2025-06-01T01:00:00Z"), currentDate: day("2025-06-01T20:00:00Z") },
      "current_date",
    ],
    ["no observations", { observations: [] }, "observations"],
    [
      "an observation without a time",
      { observations: [{ keyword: "k", domain: "example.com", position: 2 }] },
      "observations[0].observed_at",
    ],
    [
      "a position past 100",
      { observations: [obs("k", "example.com", 101, "2025-06-01T06:00:00Z")] },
      "observations[0].position",
    ],
    ["our domain as a competitor", { ...good, competitorDomains: ["example.com"] }, "competitor_domains"],
    ["a CTR above 1", { ...good, ctrCurve: [0.3, 1.5] }, "ctr_curve[1]"],
    ["a bad currency", { ...good, currencyCode: "usd" }, "currency_code"],
  ];

  it.each(bad)("called directly: %s is InvalidInputError naming the field", async (_, init, field) => {
    const { client, requests } = fakeClient();
    const err = await failure(trackRankings({ client }, request(init)));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(field);
    expect(requests).toHaveLength(0);
  });

  it.each(bad)(
    "in process without the validation interceptor: %s is INVALID_ARGUMENT naming the field",
    async (_, init, field) => {
      const { client, requests } = fakeClient();
      // Error mapping only, as a caller that bypasses the server's validation sees the skill.
      const seo = createInProcessClient(
        SeoService,
        { trackRankings: (req: TrackRankingsRequest) => trackRankings({ client }, req) },
        { interceptors: [createErrorInterceptor(createLogger("error"))] },
      );
      const err = ConnectError.from(await failure(seo.trackRankings(request(init))));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage.startsWith(`${field}: `)).toBe(true);
      expect(requests).toHaveLength(0);
    },
  );
});
