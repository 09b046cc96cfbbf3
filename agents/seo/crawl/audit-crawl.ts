/**
 * The technical audit's crawler: breadth-first from the start URL, a bounded number of requests
 * in flight, within the page and depth limits, obeying robots.txt before every request (redirect
 * hops included), skipping excluded path prefixes, and stopping early when the call's time runs
 * out so the report can still be sent.
 *
 * A URL that redirects is recorded with its chain; the URL it lands on is recorded as a page of
 * its own (when it is in scope and not seen yet), reusing the response already fetched, so every
 * parsed document belongs to exactly one record whose `url` is the address that served it. Links
 * are followed from 2xx HTML pages unless they say nofollow; canonical targets are followed too.
 */
import {
  createRobotsGate,
  type FetchedResource,
  fetchResource,
  type HttpOptions,
  type RobotsGate,
} from "./audit-fetch.ts";
import { analyzePage, type PageFacts } from "./audit-page.ts";
import { type ContentSignature, contentSignature } from "./audit-simhash.ts";

/** Scope and limits of a crawl. */
export interface CrawlOptions {
  /** Where to start (normalised, no fragment). */
  readonly startUrl: string;
  /** Most pages to fetch. */
  readonly maxPages: number;
  /** Deepest link depth to fetch (the start URL is 0). */
  readonly maxDepth: number;
  /** Only fetch pages on the site's host(s). */
  readonly sameHostOnly: boolean;
  /** Obey robots.txt. */
  readonly respectRobots: boolean;
  /** Path prefixes never fetched. */
  readonly excludePathPrefixes: readonly string[];
  /** Requests in flight at most. */
  readonly concurrency: number;
  /** Lower-cased robots product token, for robots meta tags. */
  readonly robotsToken: string;
  /** User-Agent, timeout and the call's abort signal. */
  readonly http: HttpOptions;
  /** Aborted when the crawl must stop and report what it has (the call's time is nearly up). */
  readonly stop: AbortSignal;
}

/** One URL the crawler recorded. */
export interface PageRecord {
  /** URL as discovered (or as redirected to). */
  readonly url: string;
  /** Link depth. */
  readonly depth: number;
  /** True when robots.txt forbade fetching it (nothing was fetched). */
  readonly blocked: boolean;
  /** The response (its body dropped once parsed); undefined when blocked. */
  fetched: FetchedResource | undefined;
  /** What the page says; set for 2xx HTML documents served at `url`. */
  facts: Omit<PageFacts, "text"> | undefined;
  /** Fingerprint of the page's main-content text; set with `facts`. */
  signature: ContentSignature | undefined;
}

/** What a crawl found. */
export interface CrawlResult {
  /** Recorded URLs in the order they were recorded. */
  readonly pages: PageRecord[];
  /** Hosts that count as the site: the start URL's host and any host it redirected to. */
  readonly siteHosts: ReadonlySet<string>;
  /** URLs discovered in scope but not fetched because of the page, depth or time limit. */
  readonly notCrawledDueToLimits: number;
  /** True when the crawl stopped early because the call's time was nearly up. */
  readonly stoppedEarly: boolean;
  /** The robots.txt gate, for link checks after the crawl. */
  readonly robots: RobotsGate | undefined;
}

/** Crawls a site; rejects only when the call is aborted. */
export async function crawlSite(opts: CrawlOptions): Promise<CrawlResult> {
  // The crawl uses its own signal so stopping early aborts requests in flight, not the call.
  const http: HttpOptions = { ...opts.http, signal: AbortSignal.any([opts.http.signal, opts.stop]) };
  const robots = opts.respectRobots ? createRobotsGate(http) : undefined;
  const mayFetch = async (url: string): Promise<boolean> => (robots === undefined ? true : robots.allowed(url));
  const siteHosts = new Set([new URL(opts.startUrl).host]);
  const pages: PageRecord[] = [];
  const seen = new Set<string>();
  const fetched = new Set<string>();
  const limited = new Set<string>();
  const queue: { url: string; depth: number }[] = [];
  let slots = 0;

  const inScope = (url: URL): boolean => !opts.sameHostOnly || siteHosts.has(url.host);
  const excluded = (url: URL): boolean => opts.excludePathPrefixes.some((p) => url.pathname.startsWith(p));
  const enqueue = (href: string, depth: number): void => {
    if (seen.has(href)) return;
    const url = new URL(href);
    if (!inScope(url) || excluded(url)) return;
    if (depth > opts.maxDepth) {
      limited.add(href);
      return;
    }
    seen.add(href);
    queue.push({ url: href, depth });
  };

  const visit = async (item: { url: string; depth: number }): Promise<void> => {
    if (!(await mayFetch(item.url))) {
      slots--;
      pages.push({
        url: item.url,
        depth: item.depth,
        blocked: true,
        fetched: undefined,
        facts: undefined,
        signature: undefined,
      });
      return;
    }
    const res = await fetchResource(item.url, http, mayFetch);
    const { body, ...head } = res;
    const record: PageRecord = {
      url: item.url,
      depth: item.depth,
      blocked: false,
      fetched: { ...head, body: undefined },
      facts: undefined,
      signature: undefined,
    };
    pages.push(record);
    fetched.add(item.url);
    let owner: PageRecord | undefined = record;
    if (res.chain.length > 0) {
      owner = undefined;
      // The start URL may move the site (http → https, example.com → www.example.com).
      if (item.depth === 0 && res.redirectProblem === "") siteHosts.add(new URL(res.finalUrl).host);
      const final = new URL(res.finalUrl);
      if (res.redirectProblem === "" && inScope(final) && !excluded(final) && !seen.has(res.finalUrl)) {
        seen.add(res.finalUrl);
        if (slots < opts.maxPages) {
          slots++;
          owner = {
            url: res.finalUrl,
            depth: item.depth,
            blocked: false,
            fetched: { ...head, body: undefined, url: res.finalUrl, status: res.finalStatus, chain: [] },
            facts: undefined,
            signature: undefined,
          };
          pages.push(owner);
          fetched.add(res.finalUrl);
        } else {
          limited.add(res.finalUrl);
        }
      }
    }
    if (owner === undefined || body === undefined) return;
    const { text, ...facts } = analyzePage(body, owner.url, {
      robotsToken: opts.robotsToken,
      xRobotsTag: res.xRobotsTag,
      linkHeader: res.linkHeader,
    });
    owner.facts = facts;
    owner.signature = contentSignature(text);
    if (!facts.nofollow) for (const link of facts.links) enqueue(link.url, item.depth + 1);
    for (const c of facts.canonicals) enqueue(c, item.depth + 1);
  };

  enqueue(opts.startUrl, 0);
  await new Promise<void>((resolve, reject) => {
    let active = 0;
    let failed = false;
    const pump = (): void => {
      if (failed) return;
      while (active < opts.concurrency && queue.length > 0 && slots < opts.maxPages && !opts.stop.aborted) {
        const item = queue.shift() as { url: string; depth: number };
        slots++;
        active++;
        visit(item).then(
          () => {
            active--;
            pump();
          },
          (err: unknown) => {
            active--;
            if (opts.stop.aborted && !opts.http.signal.aborted) {
              // Stopped for time: the URL was not crawled.
              limited.add(item.url);
              pump();
              return;
            }
            failed = true;
            reject(err);
          },
        );
      }
      if (active === 0) resolve();
    };
    pump();
  });
  for (const item of queue) limited.add(item.url);
  let notCrawled = 0;
  for (const url of limited) if (!fetched.has(url)) notCrawled++;
  return {
    pages,
    siteHosts,
    notCrawledDueToLimits: notCrawled,
    stoppedEarly: opts.stop.aborted,
    robots,
  };
}
