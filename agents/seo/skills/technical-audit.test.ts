import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createContextValues } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AuditTechnicalSeoRequest,
  AuditTechnicalSeoRequestSchema,
  type AuditTechnicalSeoResponse,
  type CrawledPage,
  DuplicateKind,
  FindingSeverity,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import { analyzePage } from "../crawl/audit-page.ts";
import { contentSignature, hammingDistance, NEAR_DUPLICATE_MAX_BITS } from "../crawl/audit-simhash.ts";
import { auditTechnicalSeo, type LighthouseRunner, type TechnicalAuditDeps } from "./technical-audit.ts";

/** The handler context of a call with `deadline` (ms since epoch, or none) and `signal`. */
const callContext = (deadline: number | undefined, signal: AbortSignal): CallContext => ({
  signal,
  timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
  values: createContextValues(),
});

// ---------------------------------------------------------------------------------------------
// Fixture site: a handful of clean pages and pages with one planted problem each.

const vocabulary = (
  "care home senior living community garden meal nurse family visit room suite apartment activity " +
  "music library chapel therapy walk park river hill town city county transport doctor wellness " +
  "dining chef menu breakfast lunch dinner salon laundry housekeeping security staff volunteer " +
  "program class art craft painting reading club movie theatre concert trip shopping market bank " +
  "pharmacy clinic hospital exercise pool fitness yoga balance memory assisted independent respite " +
  "private shared bathroom kitchen balcony view window light quiet friendly warm bright spacious " +
  "modern historic cosy welcoming caring trained licensed certified local nearby central rural " +
  "coastal mountain lake forest meadow spring summer autumn winter morning evening weekend holiday"
).split(" ");

/** Deterministic pseudo-random text: `n` words from the vocabulary, seeded. */
function prose(seed: number, n: number): string {
  let x = seed >>> 0 || 1;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.push(vocabulary[(x >>> 8) % vocabulary.length] as string);
  }
  return out.join(" ");
}

interface PageSpec {
  title?: string;
  description?: string;
  /** Raw HTML of the body's main content. */
  main: string;
  /** Canonical href; undefined means the page's own absolute URL, null means none. */
  canonical?: string | null;
  head?: string;
}

function html(origin: string, path: string, spec: PageSpec): string {
  const canonical =
    spec.canonical === null ? "" : `<link rel="canonical" href="${spec.canonical ?? `${origin}${path}`}">`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
${spec.title === undefined ? "" : `<title>${spec.title}</title>`}
${spec.description === undefined ? "" : `<meta name="description" content="${spec.description}">`}
${canonical}${spec.head ?? ""}</head>
<body><header><nav><a href="/about">About</a></nav></header>
<main>${spec.main}</main>
<footer>Fixture site footer text shared by every page.</footer></body></html>`;
}

const describe70 = (what: string): string =>
  `A clear summary of the ${what} page that is long enough to be useful in a search result snippet.`;

/** A clean page: unique title, description, one h1, an image with alt, self canonical. */
function clean(name: string, seed: number, next: string): PageSpec {
  return {
    title: `${name} | Fixture Site`,
    description: describe70(name.toLowerCase()),
    main: `<h1>${name}</h1><h2>Overview</h2><p>${prose(seed, 120)}</p>
<img src="/img/ok.png" alt="${name} photo"><p><a href="${next}">Next page</a></p>`,
  };
}

const cleanPaths = ["/about", "/services", "/contact", "/new"];
/** Placeholder for the fixture's own origin under another host name (`localhost`), which counts as external. */
const EXTERNAL = "EXTERNAL-ORIGIN";

function sitePages(): Record<string, PageSpec> {
  const near = prose(7, 800);
  const nearWords = near.split(" ");
  nearWords[400] = nearWords[400] === "garden" ? "meadow" : "garden";
  const exact = prose(11, 150);
  return {
    "/": {
      title: "Home of the Fixture Site",
      description: describe70("home"),
      main: `<h1>Welcome</h1><p>${prose(1, 100)}</p><img src="/img/ok.png" alt="Logo">
<ul>${[
        "/about",
        "/missing",
        "/old",
        "/noindex",
        "/x-robots",
        "/dup-a",
        "/dup-b",
        "/near-1",
        "/near-2",
        "/exact-1",
        "/exact-2",
        "/private/secret",
        "/no-alt",
        "/canon-elsewhere",
        "/broken-img",
        "/messy",
        "/doc.pdf",
        "mailto:hello@example.com",
        "#top",
      ]
        .map((h) => `<li><a href="${h}">Link to ${h}</a></li>`)
        .join("")}</ul>`,
    },
    "/about": clean("About", 2, "/services"),
    "/services": clean("Services", 3, "/contact"),
    "/contact": {
      ...clean("Contact", 4, "/new"),
      main: `<h1>Contact</h1><p>${prose(4, 120)}</p><img src="/img/no-head.png" alt="Map"><a href="/new">Next</a>`,
    },
    "/new": clean("New Location", 5, "/about"),
    "/noindex": {
      ...clean("Hidden Page", 6, "/about"),
      head: '<meta name="robots" content="noindex, follow">',
    },
    "/x-robots": clean("Header Hidden Page", 16, "/about"),
    "/dup-a": { ...clean("Dup A", 8, "/about"), title: "Duplicate Title For Two Pages" },
    "/dup-b": { ...clean("Dup B", 9, "/about"), title: "Duplicate Title For Two Pages" },
    "/near-1": { ...clean("Near One", 0, "/about"), main: `<h1>Near one</h1><p>${near}</p>` },
    "/near-2": { ...clean("Near Two", 0, "/about"), main: `<h1>Near two</h1><p>${nearWords.join(" ")}</p>` },
    "/exact-1": { ...clean("Exact One", 0, "/about"), main: `<h1>Same</h1><p>${exact}</p>` },
    "/exact-2": { ...clean("Exact Two", 0, "/about"), main: `<h1>Same</h1><p>${exact}</p>` },
    "/private/secret": clean("Secret", 12, "/about"),
    "/no-alt": {
      ...clean("No Alt", 13, "/about"),
      main: `<h1>No alt</h1><p>${prose(13, 80)}</p><img src="/img/ok.png"><img src="/img/ok.png" alt="">`,
    },
    "/canon-elsewhere": { ...clean("Canonical Elsewhere", 14, "/about"), canonical: "https://other.example/page" },
    "/broken-img": {
      ...clean("Broken Image", 15, "/about"),
      main: `<h1>Broken image</h1><p>${prose(15, 80)}</p><img src="/img/missing.png" alt="Missing picture">`,
    },
    "/messy": {
      title: "A title that goes on and on well beyond the sixty characters search results show",
      canonical: "/messy",
      main: `<h1>One</h1><h1>Two</h1><h2>Section</h2><h4>Skipped a level</h4><p>${prose(17, 90)}</p>`,
    },
    "/external-links": {
      ...clean("External Links", 19, "/about"),
      main: `<h1>Elsewhere</h1><p>${prose(19, 80)}</p><a href="${EXTERNAL}/missing">Gone</a> <a href="${EXTERNAL}/about">Fine</a>`,
    },
    "/slow-hub": {
      ...clean("Slow Hub", 18, "/slow/1"),
      main: `<h1>Slow hub</h1>${[1, 2, 3, 4, 5, 6].map((i) => `<a href="/slow/${i}">slow ${i}</a>`).join(" ")}`,
    },
  };
}

interface Fixture {
  origin: string;
  requests: { method: string; path: string; host: string }[];
  /** Delay added to every response, in milliseconds. */
  delayMs: number;
  maxInFlight: number;
  server: Server;
}

async function startFixture(): Promise<Fixture> {
  const fixture: Fixture = { origin: "", requests: [], delayMs: 0, maxInFlight: 0, server: undefined as never };
  let inFlight = 0;
  const png = Buffer.from("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489", "hex");
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? "/", fixture.origin).pathname;
    fixture.requests.push({ method: req.method ?? "", path, host: req.headers.host ?? "" });
    const pages = sitePages();
    const redirect = (to: string, status = 301): void => {
      res.writeHead(status, { location: to }).end();
    };
    if (path === "/robots.txt") {
      res.writeHead(200, { "content-type": "text/plain" }).end("User-agent: *\nDisallow: /private/\n");
    } else if (path === "/old") redirect("/older");
    else if (path === "/older") redirect(`${fixture.origin}/new`);
    else if (path === "/loop-a") redirect("/loop-b", 302);
    else if (path === "/loop-b") redirect("/loop-a", 302);
    else if (path === "/img/ok.png") res.writeHead(200, { "content-type": "image/png" }).end(png);
    else if (path === "/img/no-head.png") {
      // A server that mishandles HEAD: the checker must fall back to GET.
      if (req.method === "HEAD") res.writeHead(405).end();
      else res.writeHead(200, { "content-type": "image/png" }).end(png);
    } else if (path === "/doc.pdf") res.writeHead(200, { "content-type": "application/pdf" }).end("%PDF-1.4 not html");
    else if (path.startsWith("/slow")) {
      const spec = pages["/slow-hub"] as PageSpec;
      const ms = path === "/slow-hub" ? 0 : 1000;
      setTimeout(() => {
        if (!res.destroyed) res.writeHead(200, { "content-type": "text/html" }).end(html(fixture.origin, path, spec));
      }, ms);
    } else {
      const spec = pages[path];
      if (spec === undefined) {
        res
          .writeHead(404, { "content-type": "text/html" })
          .end("<!doctype html><title>Not found</title><h1>Not found</h1>");
        return;
      }
      const headers: Record<string, string> = { "content-type": "text/html; charset=utf-8" };
      if (path === "/x-robots") headers["x-robots-tag"] = "noindex, otherbot: nofollow";
      const body = html(fixture.origin, path, spec).replaceAll(
        EXTERNAL,
        fixture.origin.replace("127.0.0.1", "localhost"),
      );
      res.writeHead(200, headers).end(body);
    }
  };
  fixture.server = createServer((req, res) => {
    inFlight++;
    fixture.maxInFlight = Math.max(fixture.maxInFlight, inFlight);
    res.on("close", () => {
      inFlight--;
    });
    if (fixture.delayMs > 0) setTimeout(() => handle(req, res), fixture.delayMs);
    else handle(req, res);
  });
  await new Promise<void>((resolve) => fixture.server.listen(0, "127.0.0.1", resolve));
  fixture.origin = `http://127.0.0.1:${(fixture.server.address() as AddressInfo).port}`;
  return fixture;
}

// ---------------------------------------------------------------------------------------------

let site: Fixture;
beforeAll(async () => {
  site = await startFixture();
});
afterAll(async () => {
  site.server.closeAllConnections();
  await new Promise((resolve) => site.server.close(resolve));
});

const logLines: string[] = [];
const deps: TechnicalAuditDeps = { log: createLogger("warn", (line) => logLines.push(line)) };

function request(init: MessageInitShape<typeof AuditTechnicalSeoRequestSchema>): AuditTechnicalSeoRequest {
  return create(AuditTechnicalSeoRequestSchema, init);
}

const u = (path: string): string => `${site.origin}${path}`;

function page(res: AuditTechnicalSeoResponse, path: string): CrawledPage {
  const found = res.pages.find((p) => p.url === u(path));
  if (found === undefined) throw new Error(`no page ${path}`);
  return found;
}

function findingUrls(res: AuditTechnicalSeoResponse): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of res.findings) out[f.ruleId] = f.affectedUrls.map((x) => x.slice(site.origin.length));
  return out;
}

describe("auditTechnicalSeo", () => {
  it("finds every planted problem at the right URL and flags nothing on the clean pages", async () => {
    site.requests.length = 0;
    const res = await auditTechnicalSeo(deps, request({ startUrl: u("/") }));

    expect(findingUrls(res)).toEqual({
      "status.client-error": ["/missing"],
      "links.broken-internal": ["/"],
      "images.broken": ["/broken-img"],
      "redirect.chain": ["/old"],
      "redirect.internal-link": ["/"],
      "indexing.noindex": ["/noindex", "/x-robots"],
      "robots.blocked": ["/private/secret"],
      "canonical.other-host": ["/canon-elsewhere"],
      "images.missing-alt": ["/no-alt"],
      "title.duplicate": ["/dup-a", "/dup-b"],
      "content.exact-duplicate": ["/exact-1", "/exact-2"],
      "content.near-duplicate": ["/near-1", "/near-2"],
      "title.too-long": ["/messy"],
      "meta-description.missing": ["/messy"],
      "h1.multiple": ["/messy"],
      "headings.skipped-level": ["/messy"],
      "canonical.relative": ["/messy"],
    });
    for (const f of res.findings) {
      for (const p of cleanPaths) expect(f.affectedUrls).not.toContain(u(p));
      expect(f.affectedCount).toBe(f.affectedUrls.length);
      expect(f.recommendation).not.toBe("");
    }

    // Prioritised: ranks in order, score = weight × share, critical first here.
    expect(res.findings.map((f) => f.priorityRank)).toEqual(res.findings.map((_, i) => i + 1));
    for (let i = 1; i < res.findings.length; i++) {
      expect(res.findings[i - 1]?.priorityScore).toBeGreaterThanOrEqual(res.findings[i]?.priorityScore ?? 0);
    }
    expect(res.findings[0]?.severity).toBe(FindingSeverity.CRITICAL);
    const penalty = res.findings.reduce((s, f) => s + f.priorityScore, 0);
    expect(res.healthScore).toBeCloseTo(100 - penalty, 1);

    // The robots.txt-disallowed page was never requested, only recorded.
    expect(site.requests.some((r) => r.path.startsWith("/private"))).toBe(false);
    expect(page(res, "/private/secret")).toMatchObject({ blockedByRobots: true, statusCode: 0 });

    // The redirect chain is recorded hop by hop, and the final page is crawled once as itself.
    expect(page(res, "/old")).toMatchObject({
      statusCode: 301,
      finalUrl: u("/new"),
      redirectChain: [u("/older"), u("/new")],
    });
    expect(page(res, "/new")).toMatchObject({ statusCode: 200, indexable: true, title: "New Location | Fixture Site" });
    expect(site.requests.filter((r) => r.path === "/new" && r.method === "GET")).toHaveLength(1);

    // Broken references name source, target and status.
    expect(res.brokenLinks.map((b) => [b.sourceUrl, b.targetUrl, b.statusCode, b.internal])).toEqual(
      expect.arrayContaining([
        [u("/"), u("/missing"), 404, true],
        [u("/broken-img"), u("/img/missing.png"), 404, true],
      ]),
    );
    expect(res.brokenLinks).toHaveLength(2);
    expect(res.brokenLinks.find((b) => b.targetUrl === u("/missing"))?.anchorText).toBe("Link to /missing");

    // Duplicate groups among indexable pages.
    const groups = res.duplicates.map((g) => [g.kind, g.urls.map((x) => x.slice(site.origin.length))]);
    expect(groups).toEqual(
      expect.arrayContaining([
        [DuplicateKind.TITLE, ["/dup-a", "/dup-b"]],
        [DuplicateKind.EXACT_CONTENT, ["/exact-1", "/exact-2"]],
        [DuplicateKind.NEAR_CONTENT, ["/near-1", "/near-2"]],
      ]),
    );
    expect(res.duplicates).toHaveLength(3);
    const near = res.duplicates.find((g) => g.kind === DuplicateKind.NEAR_CONTENT);
    expect(near?.similarity).toBeGreaterThan(0.98);
    expect(near?.similarity).toBeLessThan(1);

    // Page facts.
    expect(page(res, "/messy")).toMatchObject({
      canonicalUrl: u("/messy"),
      indexable: true,
      headings: [
        { level: 1, text: "One" },
        { level: 1, text: "Two" },
        { level: 2, text: "Section" },
        { level: 4, text: "Skipped a level" },
      ],
    });
    expect(page(res, "/no-alt").imagesMissingAlt).toEqual([u("/img/ok.png")]);
    expect(page(res, "/x-robots")).toMatchObject({ noindex: true, nofollow: false, indexable: false });
    expect(page(res, "/canon-elsewhere")).toMatchObject({
      canonicalUrl: "https://other.example/page",
      indexable: false,
    });
    expect(page(res, "/doc.pdf")).toMatchObject({ statusCode: 200, contentType: "application/pdf", title: "" });
    expect(page(res, "/about").contentSimhash).toMatch(/^[0-9a-f]{16}$/);
    expect(page(res, "/about").wordCount).toBeGreaterThan(100);
    expect(page(res, "/")).toMatchObject({ depth: 0, internalLinkCount: 19, externalLinkCount: 0 });

    const summary = res.summary;
    expect(summary).toMatchObject({
      blockedByRobots: 1,
      redirects: 1,
      pagesWithErrors: 1,
      brokenLinkCount: 2,
      notCrawledDueToLimits: 0,
    });
    expect(summary?.pagesCrawled).toBe(res.pages.length - 1);
    expect(summary?.statusCodes.find((s) => s.statusCode === 301)?.count).toBe(1);
    expect(summary?.statusCodes.find((s) => s.statusCode === 404)?.count).toBe(1);
  });

  it("scores a clean site 100 with no findings", async () => {
    const res = await auditTechnicalSeo(deps, request({ startUrl: u("/about") }));
    expect(res.findings).toEqual([]);
    expect(res.healthScore).toBe(100);
    expect(res.pages.map((p) => p.url).sort()).toEqual(cleanPaths.map(u).sort());
    expect(res.pages.every((p) => p.indexable)).toBe(true);
  });

  it("falls back to GET when HEAD fails, and checks external links only when asked", async () => {
    site.requests.length = 0;
    const clean = await auditTechnicalSeo(deps, request({ startUrl: u("/about") }));
    expect(clean.brokenLinks).toEqual([]);
    expect(site.requests.filter((r) => r.path === "/img/no-head.png").map((r) => r.method)).toEqual(["HEAD", "GET"]);

    site.requests.length = 0;
    const unchecked = await auditTechnicalSeo(deps, request({ startUrl: u("/external-links"), maxDepth: 1 }));
    expect(unchecked.brokenLinks).toEqual([]);
    expect(site.requests.some((r) => r.host.startsWith("localhost"))).toBe(false);
    expect(page(unchecked, "/external-links")).toMatchObject({ internalLinkCount: 1, externalLinkCount: 2 });

    const checked = await auditTechnicalSeo(
      deps,
      request({ startUrl: u("/external-links"), maxDepth: 1, checkExternalLinks: true }),
    );
    const external = site.origin.replace("127.0.0.1", "localhost");
    expect(checked.brokenLinks.map((b) => [b.sourceUrl, b.targetUrl, b.statusCode, b.internal, b.anchorText])).toEqual([
      [u("/external-links"), `${external}/missing`, 404, false, "Gone"],
    ]);
    expect(findingUrls(checked)["links.broken-external"]).toEqual(["/external-links"]);
    // Not crawled: only checked.
    expect(checked.pages.map((p) => p.url)).not.toContain(`${external}/about`);
  });

  it("stops at the page and depth limits and counts what it left", async () => {
    const byPages = await auditTechnicalSeo(deps, request({ startUrl: u("/"), maxPages: 3 }));
    expect(byPages.summary?.pagesCrawled).toBe(3);
    expect(byPages.summary?.notCrawledDueToLimits).toBeGreaterThan(0);

    const byDepth = await auditTechnicalSeo(deps, request({ startUrl: u("/about"), maxDepth: 1 }));
    expect(byDepth.pages.map((p) => [p.url, p.depth])).toEqual([
      [u("/about"), 0],
      [u("/services"), 1],
    ]);
    expect(byDepth.summary?.notCrawledDueToLimits).toBe(1);
  });

  it("skips excluded path prefixes and can ignore robots.txt", async () => {
    site.requests.length = 0;
    const excluded = await auditTechnicalSeo(
      deps,
      request({ startUrl: u("/about"), excludePathPrefixes: ["/contact"] }),
    );
    expect(excluded.pages.map((p) => p.url)).toEqual([u("/about"), u("/services")]);
    expect(site.requests.some((r) => r.path === "/contact")).toBe(false);

    const ignoring = await auditTechnicalSeo(deps, request({ startUrl: u("/"), respectRobotsTxt: false }));
    expect(page(ignoring, "/private/secret")).toMatchObject({ statusCode: 200, blockedByRobots: false });
  });

  it("keeps at most `concurrency` requests in flight", async () => {
    site.delayMs = 30;
    site.maxInFlight = 0;
    try {
      const res = await auditTechnicalSeo(deps, request({ startUrl: u("/"), concurrency: 2 }));
      expect(res.summary?.pagesCrawled).toBeGreaterThan(10);
      expect(site.maxInFlight).toBe(2);
    } finally {
      site.delayMs = 0;
    }
  });

  it("reports a timed-out page and a redirect loop as failures", async () => {
    const slow = await auditTechnicalSeo(
      deps,
      request({ startUrl: u("/slow/1"), requestTimeout: durationFromMs(200) }),
    );
    expect(page(slow, "/slow/1")).toMatchObject({ statusCode: 0, error: "timed out after 200 ms" });
    expect(findingUrls(slow)).toEqual({ "status.fetch-failed": ["/slow/1"] });

    const loop = await auditTechnicalSeo(deps, request({ startUrl: u("/loop-a") }));
    expect(page(loop, "/loop-a")).toMatchObject({ statusCode: 302, redirectChain: [u("/loop-b"), u("/loop-a")] });
    expect(findingUrls(loop)).toMatchObject({ "redirect.loop": ["/loop-a"], "redirect.temporary": ["/loop-a"] });
    expect(loop.summary?.pagesWithErrors).toBe(1);
  });

  it("returns what it has before the call's deadline, and stops when the call is cancelled", async () => {
    logLines.length = 0;
    const started = Date.now();
    const controller = new AbortController();
    const res = await auditTechnicalSeo(
      deps,
      request({ startUrl: u("/slow-hub"), concurrency: 1 }),
      callContext(Date.now() + 1500, controller.signal),
    );
    expect(Date.now() - started).toBeLessThan(1500);
    expect(res.summary?.notCrawledDueToLimits).toBeGreaterThan(0);
    // Requests cut short by the deadline are not reported as failures of the site.
    expect(res.findings.filter((f) => f.ruleId === "status.fetch-failed")).toEqual([]);
    expect(logLines.some((l) => l.startsWith("warn  technical audit stopped early"))).toBe(true);

    const cancelled = new AbortController();
    const call = auditTechnicalSeo(
      deps,
      request({ startUrl: u("/slow-hub"), concurrency: 1 }),
      callContext(undefined, cancelled.signal),
    );
    setTimeout(() => cancelled.abort(new DOMException("cancelled", "AbortError")), 300);
    await expect(call).rejects.toMatchObject({ name: "AbortError" });
  });

  it("scores a Lighthouse sample through the injected runner, and says so when there is none", async () => {
    const none = await auditTechnicalSeo(deps, request({ startUrl: u("/about"), lighthouseSampleSize: 2 }));
    expect(none.lighthouse).toHaveLength(2);
    expect(none.lighthouse[0]?.error).toMatch(/Lighthouse is not available/);
    expect(none.lighthouse[0]?.performance).toBe(0);

    const scored: string[] = [];
    const runner: LighthouseRunner = {
      async score(url) {
        scored.push(url);
        if (url.endsWith("/services")) throw new Error("Chrome crashed");
        return { performance: 97, accessibility: 100, bestPractices: 96, seo: 100 };
      },
    };
    const res = await auditTechnicalSeo(
      { ...deps, lighthouse: runner },
      request({ startUrl: u("/about"), lighthouseSampleSize: 20 }),
    );
    expect(scored).toHaveLength(4);
    expect(res.lighthouse.find((l) => l.url === u("/about"))).toMatchObject({ performance: 97, seo: 100, error: "" });
    expect(res.lighthouse.find((l) => l.url === u("/services"))).toMatchObject({
      performance: 0,
      error: "Chrome crashed",
    });
  });

  it("rejects invalid input, naming the field", async () => {
    const cases: [string, MessageInitShape<typeof AuditTechnicalSeoRequestSchema>][] = [
      ["start_url", { startUrl: "" }],
      ["start_url", { startUrl: "not a url" }],
      ["start_url", { startUrl: "ftp://example.com/" }],
      ["max_pages", { startUrl: u("/"), maxPages: 20_001 }],
      ["max_pages", { startUrl: u("/"), maxPages: -1 }],
      ["max_depth", { startUrl: u("/"), maxDepth: 51 }],
      ["concurrency", { startUrl: u("/"), concurrency: 33 }],
      ["lighthouse_sample_size", { startUrl: u("/"), lighthouseSampleSize: 21 }],
      ["max_urls_per_finding", { startUrl: u("/"), maxUrlsPerFinding: 10_001 }],
      ["request_timeout", { startUrl: u("/"), requestTimeout: durationFromMs(0) }],
      ["request_timeout", { startUrl: u("/"), requestTimeout: durationFromMs(121_000) }],
      ["user_agent", { startUrl: u("/"), userAgent: "bot\r\nx-injected: 1" }],
      ["exclude_path_prefixes[1]", { startUrl: u("/"), excludePathPrefixes: ["/ok", "no-slash"] }],
    ];
    for (const [field, init] of cases) {
      const err = await auditTechnicalSeo(deps, request(init)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, field).toBeInstanceOf(InvalidInputError);
      expect((err as InvalidInputError).field).toBe(field);
    }
  });
});

describe("analyzePage", () => {
  it("finds mixed content on https pages and reads robots and canonical headers", () => {
    const facts = analyzePage(
      `<html><head><title>T</title><link rel="stylesheet" href="http://cdn.example/a.css"></head>
<body><img src="http://cdn.example/i.png" alt="i"><img srcset="/ok.png 1x, http://cdn.example/2x.png 2x" alt="">
<script src="//cdn.example/s.js"></script><a href="http://other.example/">plain link</a></body></html>`,
      "https://site.example/p",
      {
        robotsToken: "marketingmeshbot",
        xRobotsTag: "marketingmeshbot: nofollow, otherbot: noindex",
        linkHeader: '<https://site.example/other>; rel="preload", <https://site.example/p>; rel="canonical"',
      },
    );
    expect([...facts.insecureResources].sort()).toEqual([
      "http://cdn.example/2x.png",
      "http://cdn.example/a.css",
      "http://cdn.example/i.png",
    ]);
    expect(facts).toMatchObject({ noindex: false, nofollow: true, canonicals: ["https://site.example/p"] });
    expect(
      analyzePage("<p>x</p>", "http://site.example/", { robotsToken: "x", xRobotsTag: "", linkHeader: "" }),
    ).toMatchObject({ insecureResources: [], titleCount: 0, canonicals: [] });
  });
});

describe("SimHash", () => {
  it("puts near-duplicates within the threshold and different texts far apart", () => {
    const base = prose(21, 600).split(" ");
    const edited = [...base];
    edited[300] = edited[300] === "pool" ? "yoga" : "pool";
    const a = contentSignature(base.join(" "));
    const b = contentSignature(edited.join(" "));
    const c = contentSignature(prose(22, 600));
    expect(hammingDistance(a.fingerprint, b.fingerprint)).toBeLessThanOrEqual(NEAR_DUPLICATE_MAX_BITS);
    expect(hammingDistance(a.fingerprint, c.fingerprint)).toBeGreaterThan(10);
    expect(contentSignature(base.join("  \n ").toUpperCase()).textHash).toBe(a.textHash);
  });
});
