/**
 * Topic ideation from RSS and Atom feeds.
 *
 * Method: each feed is fetched with a conditional GET (the ETag and Last-Modified stored from its
 * last 200 go back as If-None-Match and If-Modified-Since; a 304 reuses the stored items), parsed
 * with rss-parser, and its items stored in the content schema, deduplicated by guid (else link).
 * The stored items of the lookback — those the feeds have since dropped included — are split into
 * time buckets before `as_of`: the latest is the current window, the others the trailing window.
 * Candidate phrases are the 1–3-word n-grams of titles and summaries between stop words and
 * punctuation, matched on lemmas; a phrase's mentions are the items mentioning it, per bucket. A
 * phrase is a topic when its current mentions reach the minimum and its z-score against the
 * trailing buckets (variance floored at the mean and at 1; trends/burst.ts) is positive; topics are
 * ranked by z, with their counts per bucket and the items and feeds behind them.
 *
 * A feed that cannot be fetched or parsed is reported in its FeedReport and `feed_errors`; the call
 * goes on with the others and with what is stored.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  FeedFetchStatus,
  type FeedReport,
  FeedReportSchema,
  type IdeateTopicsRequest,
  type IdeateTopicsResponse,
  IdeateTopicsResponseSchema,
  type TrendingTopic,
  TrendingTopicSchema,
} from "../../../gen/mesh/research/v1/research_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import type { ResearchFeedItemRow } from "../feeds/entities.ts";
import { defaultFeedHttpOptions, type FeedHttpOptions, fetchFeed } from "../feeds/fetch.ts";
import { type ParsedFeed, parseFeed } from "../feeds/parse.ts";
import { feedIdOf, loadFeeds, readItems, recordFeed } from "../feeds/store.ts";
import { candidatePhrases } from "../text/phrases.ts";
import { rankBursts } from "../trends/burst.ts";

const DAY_MS = 86_400_000;
/** Most stored items one analysis reads (newest first): a bounded read, and seconds of phrase extraction at most. */
export const MAX_ANALYSED_ITEMS = 20_000;
/** Characters of an item's summary mined for phrases: the opening carries the topic. */
const SUMMARY_CHARS_MINED = 1000;
/** Evidence items per topic. */
const MAX_EVIDENCE = 10;
/** Example titles and URLs per topic. */
const MAX_EXAMPLES = 5;

/** Dependencies of the skill (the agent's deps satisfy it). */
export interface IdeateTopicsDeps {
  /** Database of the content schema. */
  readonly db: Database;
  /** Clock: `as_of` defaults to it, and stored items and fetches are stamped with it. */
  readonly now: () => Date;
  /** Limits of feed requests; defaults to {@link defaultFeedHttpOptions}. */
  readonly http?: Partial<FeedHttpOptions>;
  /** Feeds fetched at once; default 8. */
  readonly concurrency?: number;
}

/** The request with defaults applied and checked. */
interface Options {
  feeds: Array<{ url: string; content: string }>;
  asOf: Date;
  bucketMs: number;
  bucketDays: number;
  buckets: number;
  maxTopics: number;
  minMentions: number;
  maxWords: number;
}

function intIn(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidInputError(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** Checks what the contract's rules check (for callers that bypass them) and what they cannot. */
function optionsOf(req: IdeateTopicsRequest, now: Date): Options {
  if (req.feeds.length === 0) throw new InvalidInputError("feeds", "must list at least one feed");
  if (req.feeds.length > 200) throw new InvalidInputError("feeds", "must list at most 200 feeds");
  const seen = new Map<string, number>();
  const feeds = req.feeds.map((f, i) => {
    const field = `feeds[${i}].url`;
    let url: URL;
    try {
      url = new URL(f.url);
    } catch {
      throw new InvalidInputError(field, f.url === "" ? "is required" : `"${f.url.slice(0, 100)}" is not a URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new InvalidInputError(field, `must be an http or https URL, not ${url.protocol}`);
    }
    if (f.url.length > 2048) throw new InvalidInputError(field, "must be at most 2048 characters");
    const earlier = seen.get(f.url);
    if (earlier !== undefined) throw new InvalidInputError(field, `repeats feeds[${earlier}].url`);
    seen.set(f.url, i);
    if (f.content.length > 10_000_000) {
      throw new InvalidInputError(`feeds[${i}].content`, "must be at most 10,000,000 characters");
    }
    return { url: f.url, content: f.content };
  });
  const lookbackDays = intIn("lookback_days", req.lookbackDays, 0, 365) || 30;
  const bucketDays = intIn("bucket_days", req.bucketDays, 0, 182) || 1;
  if (bucketDays * 2 > lookbackDays) {
    throw new InvalidInputError(
      "bucket_days",
      `${bucketDays} days leaves no trailing window in a lookback of ${lookbackDays} days; use at most ${Math.floor(lookbackDays / 2)}`,
    );
  }
  let asOf = now;
  if (req.asOf !== undefined) {
    asOf = timestampDate(req.asOf);
    if (Number.isNaN(asOf.getTime())) throw new InvalidInputError("as_of", "is not a valid time");
    if (asOf.getTime() > now.getTime() + DAY_MS)
      throw new InvalidInputError("as_of", "is more than a day in the future");
  }
  return {
    feeds,
    asOf,
    bucketMs: bucketDays * DAY_MS,
    bucketDays,
    buckets: Math.floor(lookbackDays / bucketDays),
    maxTopics: intIn("max_topics", req.maxTopics, 0, 500) || 20,
    minMentions: intIn("min_mentions", req.minMentions, 0, 10_000) || 2,
    maxWords: intIn("max_phrase_words", req.maxPhraseWords, 0, 5) || 3,
  };
}

/** Runs `fn` over `items`, at most `limit` at a time; results in input order. */
async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Reads one feed (inline, or fetched conditionally), records the outcome and reports it. */
async function readFeed(
  deps: IdeateTopicsDeps,
  feed: { url: string; content: string },
  inline: ParsedFeed | undefined,
  validators: { etag: string; lastModified: string },
  storedTitle: string,
  http: FeedHttpOptions,
  signals: { call: AbortSignal; stop: AbortSignal },
): Promise<FeedReport> {
  const report = create(FeedReportSchema, { url: feed.url, title: storedTitle });
  const parsed = (p: ParsedFeed, newItems: number): void => {
    report.format = p.format;
    report.title = p.title || storedTitle;
    report.itemsInFeed = p.items.length;
    report.newItems = newItems;
  };
  if (inline !== undefined) {
    report.status = FeedFetchStatus.PROVIDED;
    parsed(inline, await recordFeed(deps.db, feed.url, deps.now(), { kind: "parsed", feed: inline, status: 0 }));
    return report;
  }
  const fetched = await fetchFeed(feed.url, validators, http, signals.call, signals.stop);
  report.httpStatus = fetched.status;
  if (fetched.kind === "not-modified") {
    report.status = FeedFetchStatus.NOT_MODIFIED;
    await recordFeed(deps.db, feed.url, deps.now(), { kind: "not-modified" });
    return report;
  }
  let failure = fetched.kind === "failed" ? fetched.error : "";
  if (fetched.kind === "ok") {
    try {
      const p = await parseFeed(fetched.body, feed.url);
      report.status = FeedFetchStatus.FETCHED;
      const outcome = { kind: "parsed", feed: p, status: fetched.status, validators: fetched.validators } as const;
      parsed(p, await recordFeed(deps.db, feed.url, deps.now(), outcome));
      return report;
    } catch (err) {
      failure = (err as Error).message;
    }
  }
  report.status = FeedFetchStatus.FAILED;
  report.error = failure;
  await recordFeed(deps.db, feed.url, deps.now(), { kind: "failed", status: fetched.status, error: failure });
  return report;
}

/** One stored item in the analysis. */
interface Analysed {
  row: ResearchFeedItemRow;
  bucket: number;
}

/** Counts of one candidate phrase. */
interface Candidate {
  counts: number[];
  spellings: Map<string, number>;
  /** Indexes (into the analysed items) of its current-window mentions, newest first. */
  mentions: number[];
}

/** Runs topic ideation on a validated request. */
export async function ideateTopics(
  deps: IdeateTopicsDeps,
  req: IdeateTopicsRequest,
  ctx?: CallContext,
): Promise<IdeateTopicsResponse> {
  const opts = optionsOf(req, deps.now());
  // Inline documents are input: one that does not parse is the caller's error, found before any write.
  const inline = await Promise.all(
    opts.feeds.map(async (f, i) => {
      if (f.content === "") return undefined;
      try {
        return await parseFeed(f.content, f.url);
      } catch (err) {
        throw new InvalidInputError(`feeds[${i}].content`, (err as Error).message);
      }
    }),
  );
  const http: FeedHttpOptions = { ...defaultFeedHttpOptions, ...deps.http };
  const call = ctx?.signal ?? new AbortController().signal;
  // Fetching stops early enough to leave the analysis time before the call's deadline; feeds not
  // fetched by then are reported as failed and their stored items still count.
  const stopper = new AbortController();
  const remaining = ctx?.timeoutMs();
  const timer =
    remaining === undefined
      ? undefined
      : setTimeout(
          () => stopper.abort(new Error("the call's deadline is near")),
          Math.max(0, remaining - Math.min(10_000, Math.max(500, remaining / 5))),
        );
  let reports: FeedReport[];
  try {
    const stored = await loadFeeds(
      deps.db,
      opts.feeds.map((f) => f.url),
    );
    reports = await mapLimit(opts.feeds, deps.concurrency ?? 8, (f, i) => {
      const row = stored.get(feedIdOf(f.url));
      const validators = { etag: row?.etag ?? "", lastModified: row?.lastModified ?? "" };
      return readFeed(deps, f, inline[i], validators, row?.title ?? "", http, { call, stop: stopper.signal });
    });
  } finally {
    clearTimeout(timer);
  }

  // Analysis over what is stored: the buckets before as_of, the current one first.
  const { asOf, bucketMs, buckets } = opts;
  const rows = await readItems(
    deps.db,
    opts.feeds.map((f) => f.url),
    new Date(asOf.getTime() - buckets * bucketMs),
    asOf,
    MAX_ANALYSED_ITEMS,
  );
  const urlOf = new Map(opts.feeds.map((f) => [feedIdOf(f.url), f.url] as const));
  const perFeed = new Map<string, number>();
  const items: Analysed[] = [];
  const links = new Set<string>();
  for (const row of rows) {
    perFeed.set(row.feedId, (perFeed.get(row.feedId) ?? 0) + 1);
    // The same story syndicated in two feeds is one mention.
    if (row.link !== "") {
      if (links.has(row.link)) continue;
      links.add(row.link);
    }
    const bucket = Math.floor((asOf.getTime() - row.publishedAt.getTime()) / bucketMs);
    if (bucket >= 0 && bucket < buckets) items.push({ row, bucket });
  }
  for (const r of reports) r.itemsInLookback = perFeed.get(feedIdOf(r.url)) ?? 0;

  const phrasesOf = (a: Analysed) =>
    candidatePhrases(`${a.row.title}.\n${a.row.summary.slice(0, SUMMARY_CHARS_MINED)}`, opts.maxWords);
  // Only a phrase mentioned often enough in the current window can burst: count those first, then
  // count only them in the trailing window.
  const candidates = new Map<string, Candidate>();
  items.forEach((a, i) => {
    if (a.bucket !== 0) return;
    for (const p of phrasesOf(a)) {
      let c = candidates.get(p.key);
      if (c === undefined) {
        c = { counts: new Array<number>(buckets).fill(0), spellings: new Map(), mentions: [] };
        candidates.set(p.key, c);
      }
      c.counts[0] = (c.counts[0] ?? 0) + 1;
      c.spellings.set(p.surface, (c.spellings.get(p.surface) ?? 0) + 1);
      c.mentions.push(i);
    }
  });
  for (const [key, c] of candidates) if ((c.counts[0] ?? 0) < opts.minMentions) candidates.delete(key);
  for (const a of items) {
    if (a.bucket === 0 || candidates.size === 0) continue;
    for (const p of phrasesOf(a)) {
      const c = candidates.get(p.key);
      if (c !== undefined) c.counts[a.bucket] = (c.counts[a.bucket] ?? 0) + 1;
    }
  }

  const bursts = rankBursts(
    [...candidates].map(([key, c]) => ({ key, counts: c.counts })),
    opts.minMentions,
  ).slice(0, opts.maxTopics);
  const topics: TrendingTopic[] = bursts.map((b, rank) => {
    const c = candidates.get(b.key) as Candidate;
    const phrase = [...c.spellings].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1))[0]?.[0] ?? b.key;
    const mentioned = c.mentions.map((i) => (items[i] as Analysed).row);
    const feedIds = new Set(mentioned.map((r) => r.feedId));
    return create(TrendingTopicSchema, {
      phrase,
      rank: rank + 1,
      burstScore: b.z,
      recentMentions: b.current,
      baselineMentions: b.mean,
      baselineStddev: b.stddev,
      bucketMentions: [...b.counts].reverse(),
      feedCount: feedIds.size,
      feedUrls: opts.feeds.map((f) => f.url).filter((u) => feedIds.has(feedIdOf(u))),
      exampleTitles: mentioned.slice(0, MAX_EXAMPLES).map((r) => r.title),
      exampleUrls: mentioned.slice(0, MAX_EXAMPLES).map((r) => r.link),
      evidence: mentioned.slice(0, MAX_EVIDENCE).map((r) => ({
        title: r.title,
        url: r.link,
        feedUrl: urlOf.get(r.feedId) ?? "",
        publishedAt: timestampFromDate(r.publishedAt),
      })),
    });
  });

  return create(IdeateTopicsResponseSchema, {
    topics,
    itemsRead: items.length,
    feedErrors: reports.filter((r) => r.status === FeedFetchStatus.FAILED).map((r) => `${r.url}: ${r.error}`),
    feeds: reports,
    asOf: timestampFromDate(asOf),
    bucketDays: opts.bucketDays,
    trailingBuckets: buckets - 1,
  });
}
