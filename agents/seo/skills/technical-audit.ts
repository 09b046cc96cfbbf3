/**
 * Technical SEO audit (`seo.technical_audit`).
 *
 * Method: a breadth-first crawl over HTTP(S) from the start URL (see audit-crawl.ts: robots.txt per
 * RFC 9309, page, depth and host limits, bounded concurrency, a timeout per request, redirects
 * followed hop by hop and recorded, HTML bodies only, at most 5 MiB each); then every link and
 * image on the crawled pages is resolved to a status — from the crawl when the target was
 * crawled, otherwise by a HEAD request with a GET fallback (images on the site always, links and
 * images elsewhere only with `check_external_links`; robots.txt obeyed for these too; internal
 * links the crawl did not reach because of its limits are not requested). Rules (audit-rules.ts)
 * turn the facts into prioritised findings with fixes. Duplicates are grouped among indexable
 * pages: equal titles and descriptions (case-insensitive), identical main-content text, and
 * near-duplicate text by 64-bit SimHash over 3-word shingles within 3 bits (audit-simhash.ts).
 *
 * The crawl stops early when the call's deadline is near (keeping a tenth of the remaining time,
 * 0.25–5 s, to finish the report); URLs left unfetched then count as not crawled due to limits.
 * Lighthouse scores come from an injected runner; without one, each sampled page reports that
 * Lighthouse is not available rather than a score.
 */
import { create } from "@bufbuild/protobuf";
import { type Duration, durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import {
  type AuditTechnicalSeoRequest,
  type AuditTechnicalSeoResponse,
  AuditTechnicalSeoResponseSchema,
  type BrokenLink,
  BrokenLinkSchema,
  type CrawledPage,
  CrawledPageSchema,
  type DuplicateGroup,
  DuplicateGroupSchema,
  DuplicateKind,
  type LighthouseCategoryScores,
  LighthouseCategoryScoresSchema,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import { type CrawlResult, crawlSite, type PageRecord } from "../crawl/audit-crawl.ts";
import { checkLink, DEFAULT_USER_AGENT, type HttpOptions, type LinkCheck } from "../crawl/audit-fetch.ts";
import { canonicalsFromLinkHeader, resolveHttpUrl, robotsDirectives } from "../crawl/audit-page.ts";
import { evaluateRules, type FailedReference, isIndexable, type PageGroup } from "../crawl/audit-rules.ts";
import {
  type ContentSignature,
  exactDuplicateGroups,
  fingerprintHex,
  nearDuplicateGroups,
} from "../crawl/audit-simhash.ts";
import { absoluteHttpUrl } from "../crawl/robots-rules.ts";

/** Lighthouse category scores of one page, 0–100. */
export interface LighthouseScores {
  /** Performance. */
  readonly performance: number;
  /** Accessibility. */
  readonly accessibility: number;
  /** Best practices. */
  readonly bestPractices: number;
  /** SEO. */
  readonly seo: number;
}

/** Scores a page with Lighthouse (headless Chromium); the extension point for the audit's sample. */
export interface LighthouseRunner {
  /** Runs Lighthouse on `url`; rejects with a readable error when it cannot. */
  score(url: string, signal: AbortSignal): Promise<LighthouseScores>;
}

/** Dependencies of the skill (the agent's deps satisfy it; a Lighthouse runner is optional). */
export interface TechnicalAuditDeps {
  /** Logger, for crawls cut short by the call's deadline. */
  readonly log: Logger;
  /** Lighthouse runner; without one, sampled pages report that Lighthouse is not available. */
  readonly lighthouse?: LighthouseRunner | undefined;
}

/** The request with defaults applied. */
interface AuditOptions {
  startUrl: string;
  maxPages: number;
  maxDepth: number;
  sameHostOnly: boolean;
  userAgent: string;
  respectRobots: boolean;
  excludePathPrefixes: string[];
  checkExternalLinks: boolean;
  concurrency: number;
  timeoutMs: number;
  lighthouseSampleSize: number;
  maxUrlsPerFinding: number;
}

function intInRange(value: number, field: string, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidInputError(field, `must be between ${min} and ${max}, got ${value}`);
  }
}

/** Checks the request (the contract's rules, again, for direct callers) and applies defaults. */
function auditOptions(req: AuditTechnicalSeoRequest): AuditOptions {
  if (req.startUrl === "") throw new InvalidInputError("start_url", "is required");
  if (req.startUrl.length > 2048) throw new InvalidInputError("start_url", "must be at most 2048 characters");
  const start = absoluteHttpUrl(req.startUrl, "start_url");
  if (start.hostname === "") throw new InvalidInputError("start_url", "must name a host");
  start.hash = "";
  intInRange(req.maxPages, "max_pages", 0, 20_000);
  intInRange(req.maxDepth, "max_depth", 0, 50);
  intInRange(req.concurrency, "concurrency", 0, 32);
  intInRange(req.lighthouseSampleSize, "lighthouse_sample_size", 0, 20);
  intInRange(req.maxUrlsPerFinding, "max_urls_per_finding", 0, 10_000);
  if (req.userAgent.length > 500) throw new InvalidInputError("user_agent", "must be at most 500 characters");
  if (!/^[\x20-\x7e]*$/.test(req.userAgent)) {
    throw new InvalidInputError("user_agent", "must be printable ASCII (it is sent as an HTTP header)");
  }
  if (req.excludePathPrefixes.length > 100) {
    throw new InvalidInputError("exclude_path_prefixes", "must have at most 100 items");
  }
  req.excludePathPrefixes.forEach((p, i) => {
    if (!p.startsWith("/")) throw new InvalidInputError(`exclude_path_prefixes[${i}]`, `"${p}" must start with "/"`);
    if (p.length > 500) throw new InvalidInputError(`exclude_path_prefixes[${i}]`, "must be at most 500 characters");
  });
  let timeoutMs = 15_000;
  if (req.requestTimeout !== undefined) {
    timeoutMs = durationMs(req.requestTimeout as Duration);
    if (!(timeoutMs > 0) || timeoutMs > 120_000) {
      throw new InvalidInputError("request_timeout", "must be more than 0 and at most 120 seconds");
    }
  }
  return {
    startUrl: start.href,
    maxPages: req.maxPages || 500,
    maxDepth: req.maxDepth || 5,
    sameHostOnly: req.sameHostOnly ?? true,
    userAgent: req.userAgent.trim() || DEFAULT_USER_AGENT,
    respectRobots: req.respectRobotsTxt ?? true,
    excludePathPrefixes: req.excludePathPrefixes,
    checkExternalLinks: req.checkExternalLinks,
    concurrency: req.concurrency || 4,
    timeoutMs,
    lighthouseSampleSize: req.lighthouseSampleSize,
    maxUrlsPerFinding: req.maxUrlsPerFinding || 100,
  };
}

/** Runs `fn` over `items` with at most `limit` in flight; stops starting new ones once `stop` aborts. */
async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  stop: AbortSignal,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !stop.aborted) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

const isBroken = (c: LinkCheck): boolean => c.status === 0 || (c.status >= 400 && c.status !== 429);

/** Statuses of link and image targets: from the crawl, else checked over HTTP. */
async function checkReferences(
  crawl: CrawlResult,
  opts: AuditOptions,
  http: HttpOptions,
  callSignal: AbortSignal,
  stop: AbortSignal,
): Promise<{ brokenLinks: BrokenLink[]; failed: FailedReference[] }> {
  const byUrl = new Map(crawl.pages.map((p) => [p.url, p]));
  const known = new Map<string, LinkCheck>();
  for (const p of crawl.pages) {
    const f = p.fetched;
    if (f === undefined || f.redirectProblem === "blocked") continue;
    // A redirect loop is as broken as an error: the status is the last redirect's.
    const loop = f.redirectProblem !== "";
    known.set(p.url, { status: loop && f.finalStatus < 400 ? 0 : f.finalStatus, error: f.error });
  }
  const toCheck = new Set<string>();
  const internal = (url: string): boolean => crawl.siteHosts.has(new URL(url).host);
  for (const p of crawl.pages) {
    for (const l of p.facts?.links ?? []) {
      if (!known.has(l.url) && !byUrl.has(l.url) && !internal(l.url) && opts.checkExternalLinks) toCheck.add(l.url);
    }
    for (const img of p.facts?.images ?? []) {
      if (!known.has(img.src) && !byUrl.has(img.src) && (internal(img.src) || opts.checkExternalLinks)) {
        toCheck.add(img.src);
      }
    }
  }
  await forEachLimited([...toCheck].sort(), opts.concurrency, stop, async (url) => {
    try {
      if (crawl.robots !== undefined && !(await crawl.robots.allowed(url))) return;
      known.set(url, await checkLink(url, http));
    } catch (err) {
      // Stopped for time: the target stays unchecked. The call itself ending propagates.
      if (callSignal.aborted || !stop.aborted) throw err;
    }
  });

  const brokenLinks: BrokenLink[] = [];
  const failed: FailedReference[] = [];
  for (const p of crawl.pages) {
    const facts = p.facts;
    if (facts === undefined) continue;
    const refs = [
      ...facts.links.map((l) => ({ url: l.url, text: l.text, isLink: true })),
      ...facts.images.map((img) => ({ url: img.src, text: img.alt ?? "", isLink: false })),
    ];
    const reported = new Set<string>();
    for (const r of refs) {
      const check = known.get(r.url);
      const key = `${r.isLink}:${r.url}`;
      if (check === undefined || !isBroken(check) || reported.has(key)) continue;
      reported.add(key);
      const isInternal = internal(r.url);
      brokenLinks.push(
        create(BrokenLinkSchema, {
          sourceUrl: p.url,
          targetUrl: r.url,
          statusCode: check.status,
          error: check.error,
          anchorText: r.text,
          internal: isInternal,
        }),
      );
      failed.push({ sourceUrl: p.url, isLink: r.isLink, internal: isInternal });
    }
  }
  return { brokenLinks, failed };
}

/** Noindex, nofollow and canonical of a page, from its facts or, for non-HTML, from its headers. */
function directives(p: PageRecord, robotsToken: string): { noindex: boolean; nofollow: boolean; canonical: string } {
  if (p.facts !== undefined) {
    return { noindex: p.facts.noindex, nofollow: p.facts.nofollow, canonical: p.facts.canonicals[0] ?? "" };
  }
  const f = p.fetched;
  if (f === undefined) return { noindex: false, nofollow: false, canonical: "" };
  const { noindex, nofollow } = robotsDirectives([], f.xRobotsTag, robotsToken);
  const href = canonicalsFromLinkHeader(f.linkHeader)[0];
  const canonical = href === undefined ? "" : (resolveHttpUrl(href, new URL(f.finalUrl)) ?? "");
  return { noindex, nofollow, canonical };
}

/** Groups of indexable pages with equal titles, descriptions or (near-)identical content. */
function duplicateGroups(pages: readonly PageRecord[]): DuplicateGroup[] {
  const groups: DuplicateGroup[] = [];
  const byValue = (kind: DuplicateKind, value: (p: PageRecord) => string): void => {
    const map = new Map<string, { value: string; urls: string[] }>();
    for (const p of pages) {
      const v = value(p);
      if (v === "") continue;
      const key = v.toLowerCase();
      const entry = map.get(key) ?? { value: v, urls: [] };
      entry.urls.push(p.url);
      map.set(key, entry);
    }
    for (const { value: v, urls } of map.values()) {
      if (urls.length > 1)
        groups.push(create(DuplicateGroupSchema, { kind, value: v, urls: urls.sort(), similarity: 1 }));
    }
  };
  byValue(DuplicateKind.TITLE, (p) => p.facts?.title ?? "");
  byValue(DuplicateKind.META_DESCRIPTION, (p) => p.facts?.metaDescription ?? "");
  const withText = pages.filter((p) => p.signature !== undefined);
  const sigs = withText.map((p) => p.signature as ContentSignature);
  const content = (kind: DuplicateKind, found: { members: number[]; similarity: number }[]): void => {
    for (const g of found) {
      const urls = g.members.map((i) => (withText[i] as PageRecord).url).sort();
      const first = withText[g.members[0] as number] as PageRecord;
      groups.push(
        create(DuplicateGroupSchema, {
          kind,
          value: fingerprintHex((first.signature as ContentSignature).fingerprint),
          urls,
          similarity: Math.round(g.similarity * 1000) / 1000,
        }),
      );
    }
  };
  content(DuplicateKind.EXACT_CONTENT, exactDuplicateGroups(sigs));
  content(DuplicateKind.NEAR_CONTENT, nearDuplicateGroups(sigs));
  return groups;
}

/** Lighthouse scores of the most-linked indexable pages. */
async function lighthouseSample(
  deps: TechnicalAuditDeps,
  candidates: readonly PageRecord[],
  inlinks: ReadonlyMap<string, number>,
  size: number,
  signal: AbortSignal,
  stop: AbortSignal,
): Promise<LighthouseCategoryScores[]> {
  const sample = [...candidates]
    .sort(
      (a, b) =>
        (inlinks.get(b.url) ?? 0) - (inlinks.get(a.url) ?? 0) || a.depth - b.depth || a.url.localeCompare(b.url),
    )
    .slice(0, size);
  const out: LighthouseCategoryScores[] = [];
  for (const p of sample) {
    if (deps.lighthouse === undefined) {
      out.push(
        create(LighthouseCategoryScoresSchema, {
          url: p.url,
          error: "Lighthouse is not available on this server (no Lighthouse runner is configured)",
        }),
      );
      continue;
    }
    if (stop.aborted) {
      out.push(create(LighthouseCategoryScoresSchema, { url: p.url, error: "not run: the call's time ran out" }));
      continue;
    }
    try {
      const s = await deps.lighthouse.score(p.url, AbortSignal.any([signal, stop]));
      out.push(create(LighthouseCategoryScoresSchema, { url: p.url, ...s }));
    } catch (err) {
      if (signal.aborted) throw err;
      out.push(
        create(LighthouseCategoryScoresSchema, {
          url: p.url,
          error: err instanceof Error ? err.message : String(err),
        }),
      );
    }
  }
  return out;
}

/** Runs the technical audit on a validated request. */
export async function auditTechnicalSeo(
  deps: TechnicalAuditDeps,
  req: AuditTechnicalSeoRequest,
  ctx?: CallContext,
): Promise<AuditTechnicalSeoResponse> {
  const opts = auditOptions(req);
  const started = performance.now();
  const signal = ctx?.signal ?? new AbortController().signal;
  const stopper = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const remaining = ctx?.timeoutMs();
  if (remaining !== undefined) {
    const reserve = Math.min(5000, Math.max(250, remaining / 10));
    timer = setTimeout(() => stopper.abort(new Error("the call's deadline is near")), Math.max(0, remaining - reserve));
  }
  const stop = stopper.signal;
  try {
    const robotsToken = (/[A-Za-z_-]+/.exec(opts.userAgent)?.[0] ?? "").toLowerCase();
    const http: HttpOptions = { userAgent: opts.userAgent, timeoutMs: opts.timeoutMs, signal };
    const crawl = await crawlSite({
      startUrl: opts.startUrl,
      maxPages: opts.maxPages,
      maxDepth: opts.maxDepth,
      sameHostOnly: opts.sameHostOnly,
      respectRobots: opts.respectRobots,
      excludePathPrefixes: opts.excludePathPrefixes,
      concurrency: opts.concurrency,
      robotsToken,
      http,
      stop,
    });
    if (crawl.stoppedEarly) {
      deps.log.warn("technical audit stopped early: the call's deadline is near; reporting a partial crawl", {
        startUrl: opts.startUrl,
        pagesCrawled: crawl.pages.length,
        notCrawled: crawl.notCrawledDueToLimits,
      });
    }
    const checkHttp: HttpOptions = { ...http, signal: AbortSignal.any([signal, stop]) };
    const { brokenLinks, failed } = await checkReferences(crawl, opts, checkHttp, signal, stop);

    const info = new Map(crawl.pages.map((p) => [p.url, directives(p, robotsToken)]));
    const indexable = crawl.pages.filter((p) => {
      const d = info.get(p.url);
      return d !== undefined && isIndexable(p, d.noindex, d.canonical);
    });
    const duplicates = duplicateGroups(indexable.filter((p) => p.facts !== undefined));
    const { findings, healthScore } = evaluateRules({
      pages: crawl.pages,
      siteHosts: crawl.siteHosts,
      failedReferences: failed,
      duplicates: duplicates.map((g): PageGroup => ({ kind: g.kind, urls: g.urls })),
      maxUrlsPerFinding: opts.maxUrlsPerFinding,
    });

    // Inbound internal links per URL, counted once per linking page.
    const inlinks = new Map<string, number>();
    for (const p of crawl.pages) {
      for (const target of new Set((p.facts?.links ?? []).map((l) => l.url))) {
        if (target !== p.url) inlinks.set(target, (inlinks.get(target) ?? 0) + 1);
      }
    }
    const lighthouse =
      opts.lighthouseSampleSize > 0
        ? await lighthouseSample(
            deps,
            indexable.filter((p) => p.facts !== undefined),
            inlinks,
            opts.lighthouseSampleSize,
            signal,
            stop,
          )
        : [];

    const indexableUrls = new Set(indexable.map((p) => p.url));
    const pages = [...crawl.pages]
      .sort((a, b) => a.depth - b.depth || a.url.localeCompare(b.url))
      .map((p) => crawledPage(p, info.get(p.url), indexableUrls.has(p.url), crawl.siteHosts));
    const statusCounts = new Map<number, number>();
    for (const p of crawl.pages) {
      if (p.fetched !== undefined) statusCounts.set(p.fetched.status, (statusCounts.get(p.fetched.status) ?? 0) + 1);
    }
    const fetchedPages = crawl.pages.filter((p) => p.fetched !== undefined);
    return create(AuditTechnicalSeoResponseSchema, {
      healthScore,
      findings,
      pages,
      brokenLinks,
      duplicates,
      lighthouse,
      summary: {
        pagesCrawled: fetchedPages.length,
        pagesIndexable: indexable.length,
        pagesWithErrors: fetchedPages.filter((p) => {
          const f = p.fetched as NonNullable<PageRecord["fetched"]>;
          return (
            f.finalStatus === 0 ||
            f.finalStatus >= 400 ||
            ["loop", "too-many", "invalid-location"].includes(f.redirectProblem)
          );
        }).length,
        redirects: fetchedPages.filter((p) => (p.fetched?.chain.length ?? 0) > 0).length,
        blockedByRobots: crawl.pages.filter((p) => p.blocked).length,
        notCrawledDueToLimits: crawl.notCrawledDueToLimits,
        brokenLinkCount: brokenLinks.length,
        duration: durationFromMs(Math.round(performance.now() - started)),
        statusCodes: [...statusCounts.entries()]
          .sort((a, b) => a[0] - b[0])
          .map(([statusCode, count]) => ({ statusCode, count })),
      },
    });
  } finally {
    clearTimeout(timer);
  }
}

/** The contract's view of one recorded URL. */
function crawledPage(
  p: PageRecord,
  d: { noindex: boolean; nofollow: boolean; canonical: string } | undefined,
  indexable: boolean,
  siteHosts: ReadonlySet<string>,
): CrawledPage {
  const f = p.fetched;
  const facts = p.facts;
  const links = facts?.links ?? [];
  const internalLinks = links.filter((l) => siteHosts.has(new URL(l.url).host)).length;
  return create(CrawledPageSchema, {
    url: p.url,
    finalUrl: f?.finalUrl ?? p.url,
    statusCode: f?.status ?? 0,
    redirectChain: [...(f?.chain ?? [])],
    depth: p.depth,
    contentType: f?.contentType ?? "",
    responseTimeMs: f?.responseTimeMs ?? 0,
    byteSize: BigInt(f?.byteSize ?? 0),
    title: facts?.title ?? "",
    metaDescription: facts?.metaDescription ?? "",
    headings: (facts?.headings ?? []).map((h) => ({ level: h.level, text: h.text })),
    canonicalUrl: d?.canonical ?? "",
    noindex: d?.noindex ?? false,
    nofollow: d?.nofollow ?? false,
    indexable,
    wordCount: p.signature?.words ?? 0,
    internalLinkCount: internalLinks,
    externalLinkCount: links.length - internalLinks,
    imageCount: facts?.images.length ?? 0,
    imagesMissingAlt: [...new Set((facts?.images ?? []).filter((i) => i.alt === undefined).map((i) => i.src))],
    contentSimhash: p.signature === undefined ? "" : fingerprintHex(p.signature.fingerprint),
    blockedByRobots: p.blocked,
    error: f?.error ?? "",
  });
}
