import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AnalyzeCompetitorContentRequest,
  AnalyzeCompetitorContentRequestSchema,
  type AnalyzeCompetitorContentResponse,
  PageFailure,
  PageInputSchema,
  PageRole,
  type PageStructure,
} from "../../../gen/mesh/research/v1/research_service_pb.ts";
import { InvalidInputError, toConnectError } from "../../../lib/errors/index.ts";
import { extractHtml } from "../pages/page-extract.ts";
import { defaultFetchLimits } from "../pages/page-fetch.ts";
import { headingKey, headingsMatch, pageTerms } from "../pages/page-terms.ts";
import { type AnalyzeCompetitorContentDeps, analyzeCompetitorContent } from "./analyze-competitor-content.ts";

type Init = MessageInitShape<typeof AnalyzeCompetitorContentRequestSchema>;

function request(init: Init): AnalyzeCompetitorContentRequest {
  return create(AnalyzeCompetitorContentRequestSchema, init);
}

// ---------------------------------------------------------------------------------------------
// Three local sites: ours (no robots.txt: 404, so everything is allowed), a competitor whose
// robots.txt shuts out every crawler but gives ours its own group, and one whose robots.txt
// answers 503 (RFC 9309: complete disallow).

interface Site {
  server: Server;
  origin: string;
  /** Paths requested, in order. */
  requests: string[];
}

async function startSite(handle: (path: string, res: ServerResponse) => void): Promise<Site> {
  const site = { requests: [] as string[] } as Site;
  site.server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    site.requests.push(path);
    handle(path, res);
  });
  await new Promise<void>((resolve) => site.server.listen(0, "127.0.0.1", resolve));
  site.origin = `http://127.0.0.1:${(site.server.address() as AddressInfo).port}`;
  return site;
}

async function stopSite(site: Site): Promise<void> {
  site.server.closeAllConnections();
  await new Promise((resolve) => site.server.close(resolve));
}

const html = (res: ServerResponse, body: string): void => {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(body);
};

// Main text (20 words): "Assisted Living in Austin" (4), "Assisted living communities in Austin
// offer daily help." (8), "Costs in Austin" (3), "Monthly costs vary by community." (5). The
// title, the style, the script, the header with its menu and the footer are not main text.
const ourAustin = `<!doctype html>
<html><head><title>Assisted Living in Austin | Example Care</title>
<style>body { color: red }</style>
<script>window.tracking = "analytics beacon";</script></head>
<body>
<header><a href="/">Example Care</a><nav><a href="/pricing">Pricing menu</a></nav></header>
<main>
<h1>Assisted Living in Austin</h1>
<p>Assisted living communities in Austin offer daily help.</p>
<h2>Costs in Austin</h2>
<p>Monthly costs vary by community.</p>
</main>
<footer>Copyright Example Care newsletter signup</footer>
</body></html>`;

// Main text (46 words): the article only — 4 + 14 + 5 + 7 + 3 + 5 + 2 + 6.
const rivalAustin = `<!doctype html>
<html><head><title>Austin Assisted Living Guide</title></head>
<body>
<nav>Home Listings Login</nav>
<article>
<h1>Austin assisted living guide</h1>
<p>Compare assisted living and memory care in Austin. Respite care gives families a break.</p>
<h2>Assisted living costs in Austin</h2>
<p>Memory care costs more than assisted living.</p>
<h2>Memory care options</h2>
<p>Memory care units are secured.</p>
<h3>Respite care</h3>
<p>Short respite stays last a week.</p>
</article>
<aside>Sponsored listings</aside>
<footer>Copyright Rival</footer>
</body></html>`;

const rivalGuide = `<!doctype html>
<html><head><title>Memory care guide</title></head>
<body><main>
<h1>Memory care in Austin</h1>
<p>Memory care pricing depends on the level of care.</p>
<h2>Memory care pricing</h2>
<p>Expect higher monthly fees.</p>
</main></body></html>`;

let ours: Site;
let rival: Site;
let down: Site;

beforeAll(async () => {
  ours = await startSite((path, res) => {
    if (path === "/austin") html(res, ourAustin);
    else res.writeHead(404, { "content-type": "text/plain" }).end("not found");
  });
  rival = await startSite((path, res) => {
    switch (path) {
      case "/robots.txt":
        res
          .writeHead(200, { "content-type": "text/plain" })
          .end(
            "User-agent: *\nDisallow: /\n\nUser-agent: MarketingMeshBot\nDisallow: /private/\nAllow: /private/open-guide\n",
          );
        return;
      case "/rival/austin":
        return html(res, rivalAustin);
      case "/old-guide":
        res.writeHead(301, { location: "/rival/guide" }).end();
        return;
      case "/rival/guide":
        return html(res, rivalGuide);
      case "/private/open-guide":
        return html(res, "<title>Open</title><main><p>Open guide.</p></main>");
      case "/private/members":
        return html(res, "<title>Members</title><main><p>Members only.</p></main>");
      case "/old-private":
        res.writeHead(302, { location: "/private/members" }).end();
        return;
      case "/brochure.pdf":
        res.writeHead(200, { "content-type": "application/pdf" }).end("%PDF-1.4");
        return;
      case "/slow":
        return; // never answers: the request times out
      default:
        res.writeHead(404, { "content-type": "text/html" }).end("<h1>Not found</h1>");
    }
  });
  down = await startSite((path, res) => {
    if (path === "/robots.txt") res.writeHead(503).end();
    else html(res, "<p>Should never be requested.</p>");
  });
});

afterAll(async () => {
  await Promise.all([stopSite(ours), stopSite(rival), stopSite(down)]);
});

// Short timeout so the hanging page fails fast; otherwise the server's limits.
const deps: AnalyzeCompetitorContentDeps = { limits: { ...defaultFetchLimits, timeoutMs: 500 } };

function page(res: AnalyzeCompetitorContentResponse, url: string): PageStructure {
  const found = res.pages.find((p) => p.url === url);
  if (found === undefined) throw new Error(`no page ${url}`);
  return found;
}

describe("analyzeCompetitorContent over HTTP", () => {
  let res: AnalyzeCompetitorContentResponse;
  const r = (path: string): string => `${rival.origin}${path}`;
  beforeAll(async () => {
    res = await analyzeCompetitorContent(
      deps,
      request({
        ourPages: [{ url: `${ours.origin}/austin` }],
        competitorPages: [
          { url: r("/rival/austin") },
          { url: r("/old-guide") },
          { url: r("/private/members") },
          { url: r("/private/open-guide") },
          { url: r("/old-private") },
          { url: r("/missing") },
          { url: r("/slow") },
          { url: r("/brochure.pdf") },
          { url: `${down.origin}/page` },
        ],
      }),
    );
  });

  it("reports a page robots.txt disallows and never requests it", () => {
    const members = page(res, r("/private/members"));
    expect(members.failure).toBe(PageFailure.ROBOTS_DISALLOWED);
    expect(members.httpStatus).toBe(0);
    expect(members.error).toContain("line 5");
    // Nor through a redirect: the hop is checked before it is requested.
    const viaRedirect = page(res, r("/old-private"));
    expect(viaRedirect.failure).toBe(PageFailure.ROBOTS_DISALLOWED);
    expect(viaRedirect.error).toContain(r("/private/members"));
    expect(rival.requests).toContain("/old-private");
    expect(rival.requests).not.toContain("/private/members");
  });

  it("matches our own robots.txt group by longest match, not the * group", () => {
    // `Allow: /private/open-guide` is longer than `Disallow: /private/`; the `*` group's
    // `Disallow: /` does not apply to a crawler with a group of its own.
    const open = page(res, r("/private/open-guide"));
    expect(open.failure).toBe(PageFailure.UNSPECIFIED);
    expect(open.title).toBe("Open");
    expect(page(res, r("/rival/austin")).failure).toBe(PageFailure.UNSPECIFIED);
  });

  it("fetches each origin's robots.txt once", () => {
    expect(rival.requests.filter((p) => p === "/robots.txt")).toHaveLength(1);
    expect(ours.requests.filter((p) => p === "/robots.txt")).toHaveLength(1);
    expect(down.requests).toEqual(["/robots.txt"]);
  });

  it("treats an unreachable robots.txt (5xx) as disallowing the whole site", () => {
    const p = page(res, `${down.origin}/page`);
    expect(p.failure).toBe(PageFailure.ROBOTS_DISALLOWED);
    expect(p.error).toContain("HTTP 503");
  });

  it("reports 404s, timeouts and non-HTML answers per page without failing the call", () => {
    const missing = page(res, r("/missing"));
    expect([missing.failure, missing.httpStatus]).toEqual([PageFailure.HTTP_STATUS, 404]);
    expect(page(res, r("/slow")).failure).toBe(PageFailure.TIMEOUT);
    expect(page(res, r("/slow")).error).toBe("timed out after 500 ms");
    expect(page(res, r("/brochure.pdf")).failure).toBe(PageFailure.UNSUPPORTED_CONTENT);
    expect(res.fetchErrors).toHaveLength(6);
    expect(res.fetchErrors).toContain(`${r("/missing")}: HTTP 404`);
    expect(res.summary?.pagesFailed).toBe(6);
    expect(res.summary?.competitorPagesAnalyzed).toBe(3);
  });

  it("follows redirects and records where they end", () => {
    const guide = page(res, r("/old-guide"));
    expect(guide.failure).toBe(PageFailure.UNSPECIFIED);
    expect(guide.finalUrl).toBe(r("/rival/guide"));
    expect(guide.httpStatus).toBe(200);
    expect(guide.title).toBe("Memory care guide");
  });

  it("reads title, outline and word count from the main content only", () => {
    const o = page(res, `${ours.origin}/austin`);
    expect(o.role).toBe(PageRole.OURS);
    expect(o.title).toBe("Assisted Living in Austin | Example Care");
    expect(o.headings.map((h) => [h.level, h.text])).toEqual([
      [1, "Assisted Living in Austin"],
      [2, "Costs in Austin"],
    ]);
    expect([o.wordCount, o.h1Count, o.h2Count, o.h3Count]).toEqual([20, 1, 1, 0]);
    const terms = o.topTerms.map((t) => t.term);
    for (const chrome of ["menu", "copyright", "newsletter", "tracking", "analytics", "color"]) {
      expect(terms).not.toContain(chrome);
    }
    const c = page(res, r("/rival/austin"));
    expect([c.wordCount, c.h1Count, c.h2Count, c.h3Count]).toEqual([46, 1, 2, 1]);
    expect(c.role).toBe(PageRole.COMPETITOR);
  });

  it("lists the competitor headings our page does not cover", () => {
    const o = res.overlaps.find((x) => x.competitorUrl === r("/rival/austin"));
    // "Austin assisted living guide" and "Assisted living costs in Austin" both share 3 of 4 stems
    // with our "Assisted Living in Austin" (Jaccard 0.75 ≥ 0.5); the other two share none.
    expect(o?.missingHeadings).toEqual(["Memory care options", "Respite care"]);
    expect(o?.headingCoverage).toBe(0.5);
    expect(res.overlaps).toHaveLength(3); // 1 of ours × 3 competitor pages analysed
  });

  it("sums up the gaps: topics, terms and structure", () => {
    const s = res.summary;
    // "Memory care in Austin" and "Memory care pricing" each share 2 of 4 stems with
    // "Memory care options", so the three are one topic on two competitor pages.
    expect(s?.missingTopics.map((t) => [t.heading, t.competitorPageCount])).toEqual([
      ["Memory care options", 2],
      ["Respite care", 1],
    ]);
    expect(s?.missingTopics[0]?.competitorUrls).toEqual([r("/rival/austin"), r("/old-guide")]);
    expect(s?.missingTerms).toContain("memory care");
    expect(s?.missingTerms).toContain("respite");
    expect(s?.ourMeanWordCount).toBe(20);
    expect(s?.ourMeanHeadingCount).toBe(2);
    expect(s?.findings[0]).toBe(
      'Competitors cover 2 topics none of our pages has a heading for: "Memory care options", "Respite care".',
    );
    const gap = res.termGaps.find((g) => g.term === "memory care");
    expect(gap?.competitorPageCount).toBe(2);
    expect(gap?.ourPageCount).toBe(0);
    expect(gap?.ourWeight).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// A corpus small enough to work out by hand (terms by spelling; their keys are stems). Pages given
// as text (no fetch), N = 3:
//   O  (ours)        "memory care"                → memory 1, care 1, "memory care" 1
//   C1 (competitor)  "memory care, respite"       → memory 1, care 1, "memory care" 1, respite 1
//                                                   (the comma ends the run: no "care respite")
//   C2 (competitor)  "pricing. pricing, respite"  → pricing 2, respite 1 (no bigrams)
// Smooth idf(t) = ln((1 + N) / (1 + df(t))) + 1:
//   df 2 (memory, care, memory care, respite): ln(4/3) + 1 = 1.2876821
//   df 1 (pricing):                            ln(4/2) + 1 = 1.6931472
// Weights = tf × idf, then each page's vector scaled to length 1:
//   O:  three equal weights → 1/√3 = 0.5773503 each
//   C1: four equal weights  → 1/2 = 0.5 each
//   C2: pricing 2 × 1.6931472 = 3.3862944, respite 1.2876821; length √(3.3862944² + 1.2876821²)
//       = 3.6228600 → pricing 0.9347020, respite 0.3554325
// Term gaps (competitor mean − our mean; absent = 0):
//   pricing (0 + 0.9347020) / 2 = 0.4673510 − 0 → gap 0.4673510, 1 competitor page
//   respite (0.5 + 0.3554325) / 2 = 0.4277162 − 0 → gap 0.4277162, 2 competitor pages
//   memory, care, memory care: (0.5 + 0) / 2 = 0.25 − 0.5773503 < 0 → not gaps
// Jaccard of unigram sets: O/C1 {memory, care} / {memory, care, respite} = 2/3; O/C2 = 0/4 = 0.
// Cosine O·C1 = 3 × 0.5773503 × 0.5 = 0.8660254; O·C2 = 0.

describe("analyzeCompetitorContent arithmetic", () => {
  let res: AnalyzeCompetitorContentResponse;
  beforeAll(async () => {
    res = await analyzeCompetitorContent(
      {},
      request({
        ourPages: [{ url: "https://example.com/o", text: "memory care" }],
        competitorPages: [
          { url: "https://rival.example/c1", text: "memory care, respite" },
          { text: "pricing. pricing, respite" },
        ],
      }),
    );
  });

  it("weights terms by smoothed TF-IDF with unit-length page vectors", () => {
    const weights = (url: string) =>
      Object.fromEntries(page(res, url).topTerms.map((t) => [t.term, Number(t.weight.toFixed(7))]));
    expect(weights("https://example.com/o")).toEqual({ care: 0.5773503, memory: 0.5773503, "memory care": 0.5773503 });
    expect(weights("https://rival.example/c1")).toEqual({ care: 0.5, memory: 0.5, "memory care": 0.5, respite: 0.5 });
    expect(weights("competitor_pages[1]")).toEqual({ pricing: 0.934702, respite: 0.3554325 });
  });

  it("ranks the term gaps by mean competitor weight less ours", () => {
    expect(
      res.termGaps.map((g) => [
        g.term,
        Number(g.competitorWeight.toFixed(7)),
        g.ourWeight,
        g.competitorPageCount,
        g.ourPageCount,
        Number(g.gap.toFixed(7)),
      ]),
    ).toEqual([
      ["pricing", 0.467351, 0, 1, 0, 0.467351],
      ["respite", 0.4277162, 0, 2, 0, 0.4277162],
    ]);
    expect(res.summary?.missingTerms).toEqual(["pricing", "respite"]);
  });

  it("computes Jaccard and cosine per page pair", () => {
    expect(
      res.overlaps.map((o) => [
        o.ourUrl,
        o.competitorUrl,
        Number(o.jaccard.toFixed(7)),
        Number(o.cosine.toFixed(7)),
        o.sharedTermCount,
      ]),
    ).toEqual([
      ["https://example.com/o", "https://rival.example/c1", 0.6666667, 0.8660254, 2],
      ["https://example.com/o", "competitor_pages[1]", 0, 0, 0],
    ]);
    expect(res.summary?.meanJaccard).toBeCloseTo(1 / 3, 12);
  });

  it("keeps max_terms gap terms", async () => {
    const one = await analyzeCompetitorContent(
      {},
      request({
        ourPages: [{ text: "memory care" }],
        competitorPages: [{ text: "memory care, respite" }, { text: "pricing. pricing, respite" }],
        maxTerms: 1,
      }),
    );
    expect(one.termGaps.map((g) => g.term)).toEqual(["pricing"]);
  });
});

describe("terms and headings", () => {
  it("forms bigrams only from adjacent content words within one block", () => {
    // No "cost memori" (a stop word between) and no "care respit" (two blocks).
    const t = pageTerms(["The cost of memory care", "Respite stays"]);
    expect([...t.counts.keys()].sort()).toEqual([
      "care",
      "cost",
      "memori",
      "memori care",
      "respit",
      "respit stay",
      "stay",
    ]);
    expect([...t.unigrams].sort()).toEqual(["care", "cost", "memori", "respit", "stay"]);
  });

  it("shows a term in its most frequent spelling", async () => {
    const res = await analyzeCompetitorContent(
      {},
      request({ ourPages: [{ text: "care" }], competitorPages: [{ text: "Assisted living communities" }] }),
    );
    expect(res.termGaps.map((g) => g.term)).toContain("assisted living");
    expect(res.termGaps.map((g) => g.term)).toContain("communities");
  });

  it("matches headings by word-set (stem) Jaccard against the threshold", () => {
    const h = (text: string) => headingKey({ level: 2, text });
    // {memory, care} against {memory, care, pricing}: 2/3.
    expect(headingsMatch(h("Memory care"), h("Memory care pricing"), 0.5)).toBe(true);
    expect(headingsMatch(h("Memory care"), h("Memory care pricing"), 0.7)).toBe(false);
    // The same stems in another order and inflection: 1.
    expect(headingsMatch(h("Assisted Living Costs in Austin"), h("Austin assisted living cost"), 1)).toBe(true);
    // Only stop words: equal text or nothing.
    expect(headingsMatch(h("What to do?"), h("what  to do?"), 0.5)).toBe(true);
    expect(headingsMatch(h("What to do?"), h("Where to go?"), 0.5)).toBe(false);
  });

  it("applies heading_similarity to the missing headings", async () => {
    const run = (headingSimilarity: number) =>
      analyzeCompetitorContent(
        {},
        request({
          ourPages: [{ html: "<h2>Memory care</h2><p>Secure units.</p>" }],
          competitorPages: [{ html: "<h2>Memory care pricing</h2><h2>Respite care</h2><p>Fees.</p>" }],
          headingSimilarity,
        }),
      );
    expect((await run(0)).overlaps[0]?.missingHeadings).toEqual(["Respite care"]);
    expect((await run(0.7)).overlaps[0]?.missingHeadings).toEqual(["Memory care pricing", "Respite care"]);
  });

  it("uses the single article as main content and keeps a header that holds the h1", () => {
    const c = extractHtml(
      "<body><header><h1>Title here</h1><nav>Menu</nav></header><div>Side</div><article><p>Body text.</p></article></body>",
    );
    expect(c.headings).toEqual([]);
    expect(c.blocks).toEqual(["Body text."]);
    const b = extractHtml("<body><header><h1>Title here</h1><nav>Menu</nav></header><p>Body text.</p></body>");
    expect(b.headings).toEqual([{ level: 1, text: "Title here" }]);
    expect(b.blocks).toEqual(["Title here", "Body text."]);
    expect(b.title).toBe("Title here");
  });
});

describe("analyzeCompetitorContent input checks", () => {
  it.each<[string, Init]>([
    ["our_pages", { ourPages: [], competitorPages: [{ text: "x" }] }],
    ["competitor_pages", { ourPages: [{ text: "x" }], competitorPages: [] }],
    ["our_pages[0]", { ourPages: [{}], competitorPages: [{ text: "x" }] }],
    ["competitor_pages[0]", { ourPages: [{ text: "x" }], competitorPages: [{ html: "<p>x</p>", text: "x" }] }],
    [
      "competitor_pages[1].url",
      { ourPages: [{ text: "x" }], competitorPages: [{ text: "x" }, { url: "ftp://a.example/b" }] },
    ],
    ["our_pages[0].url", { ourPages: [{ url: "not a url", text: "x" }], competitorPages: [{ text: "x" }] }],
    ["max_terms", { ourPages: [{ text: "x" }], competitorPages: [{ text: "x" }], maxTerms: 5000 }],
    ["heading_similarity", { ourPages: [{ text: "x" }], competitorPages: [{ text: "x" }], headingSimilarity: 1.5 }],
  ])("refuses a bad %s with INVALID_ARGUMENT naming it, before any request", async (field, init) => {
    const before = rival.requests.length;
    // A fetchable page alongside the bad field: nothing may be requested for it.
    const req = request(init);
    if (req.ourPages.length > 0) req.ourPages.push(create(PageInputSchema, { url: `${rival.origin}/rival/austin` }));
    let err: unknown;
    try {
      await analyzeCompetitorContent(deps, req);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(field);
    expect(toConnectError(err, () => undefined).code).toBe(Code.InvalidArgument);
    expect(rival.requests.length).toBe(before);
  });
});
