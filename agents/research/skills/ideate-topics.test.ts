import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  FeedFetchStatus,
  type FeedReport,
  type IdeateTopicsRequest,
  IdeateTopicsRequestSchema,
  type IdeateTopicsResponse,
  ResearchService,
  type TrendingTopic,
} from "../../../gen/mesh/research/v1/research_service_pb.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createInProcessClient } from "../../../lib/server/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { failure } from "../../../test/support/expect.ts";
import { ResearchFeed, ResearchFeedItem } from "../feeds/entities.ts";
import { feedIdOf } from "../feeds/store.ts";
import { type IdeateTopicsDeps, ideateTopics } from "./ideate-topics.ts";

const log = createLogger("warn");
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The analysis runs at this time; the clock stands still unless a test moves it. */
const asOf = new Date("2026-06-10T12:00:00Z");
const clock = asOf.getTime();
const now = (): Date => new Date(clock);

// ---------------------------------------------------------------------------------------------
// Feed documents

interface Entry {
  title: string;
  link?: string;
  guid?: string;
  published?: Date;
  summary?: string;
}

const xmlEscape = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function rss(title: string, entries: readonly Entry[]): string {
  const items = entries
    .map(
      (e) =>
        `<item><title>${xmlEscape(e.title)}</title>` +
        (e.link ? `<link>${xmlEscape(e.link)}</link>` : "") +
        (e.guid ? `<guid isPermaLink="false">${xmlEscape(e.guid)}</guid>` : "") +
        (e.published ? `<pubDate>${e.published.toUTCString()}</pubDate>` : "") +
        (e.summary ? `<description>${xmlEscape(e.summary)}</description>` : "") +
        "</item>",
    )
    .join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>${xmlEscape(title)}</title><link>https://news.example/</link><description>d</description>\n${items}\n</channel></rss>`;
}

function atom(title: string, entries: readonly Entry[]): string {
  const items = entries
    .map(
      (e) =>
        `<entry><id>${xmlEscape(e.guid ?? e.link ?? e.title)}</id><title>${xmlEscape(e.title)}</title>` +
        (e.link ? `<link rel="alternate" href="${xmlEscape(e.link)}"/>` : "") +
        (e.published
          ? `<published>${e.published.toISOString()}</published><updated>${e.published.toISOString()}</updated>`
          : "") +
        (e.summary ? `<summary>${xmlEscape(e.summary)}</summary>` : "") +
        "</entry>",
    )
    .join("\n");
  return `<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"><title>${xmlEscape(title)}</title><id>urn:trends</id><updated>${asOf.toISOString()}</updated>\n${items}\n</feed>`;
}

// Every title is "<phrase> — <city>": the dash ends the phrase, and each city appears once, so the
// only phrases mentioned twice or more are the ones a test is about.
const cities = (
  "Abilene Akron Albany Amarillo Anaheim Arlington Athens Atlanta Augusta Austin Bakersfield Baltimore " +
  "Berkeley Billings Boise Boston Boulder Buffalo Burbank Camden Charleston Chicago Cleveland Columbus " +
  "Dallas Dayton Denver Detroit Durham Eugene Fargo Fresno Galveston Hartford Houston Irvine Juneau " +
  "Laredo Lincoln Madison Memphis Miami Nashville Newark Oakland Omaha Orlando Peoria Phoenix " +
  "Pittsburgh Portland Provo Raleigh Reno Richmond Rochester Sacramento Salem Savannah Seattle Spokane"
).split(" ");
let nextCity = 0;
const city = (): string => {
  const c = cities[nextCity++];
  if (c === undefined) throw new Error("out of city names");
  return c;
};

/** `n` items titled "<phrase> — <city>", published `daysBack` days (plus minutes) before as_of. */
function mentions(phrase: string, daysBack: number, n: number, tag: string): Entry[] {
  return Array.from({ length: n }, (_, i) => {
    const c = city();
    return {
      title: `${phrase} — ${c}`,
      link: `https://news.example/${tag}/${c.toLowerCase()}`,
      guid: `${tag}-${c}`,
      published: new Date(asOf.getTime() - daysBack * DAY - 2 * HOUR - i * 60_000 - nextCity * 1000),
    };
  });
}

// The burst, worked out by hand (lookback 8 days, buckets of 1 day: the current window and 7
// trailing buckets). "Heat safety" per trailing bucket, 1 to 7 days back: 2, 0, 4, 0, 2, 0, 2;
// 6 mentions in the current window (4 in the RSS feed, 2 in the Atom feed).
//   mean     = 10 / 7 = 1.428571
//   variance = (4 + 0 + 16 + 0 + 4 + 0 + 4) / 7 − (10/7)² = 4 − 100/49 = 96/49 = 1.959184
//   floor    = max(96/49, 10/7, 1) = 96/49          (the sample variance wins)
//   z        = (6 − 10/7) / sqrt(96/49) = (32/7) / (sqrt(96)/7) = 32 / sqrt(96) = 3.265986
// "Staffing shortage": 3 current mentions (Atom), never before: mean 0, variance 0, floor 1,
//   z = (3 − 0) / 1 = 3 — ranked second although it is new, because heat safety's burst is larger.
// "Memory care": 2 mentions in every bucket, current included: mean 2, variance 0, floor 2,
//   z = (2 − 2) / sqrt(2) = 0 — frequent but steady, so not a topic.
const heatTrailing = [2, 0, 4, 0, 2, 0, 2];
const heatZ = 32 / Math.sqrt(96);

const rssEntries: Entry[] = [
  ...mentions("Heat safety", 0, 4, "heat"),
  ...heatTrailing.flatMap((n, k) => mentions("Heat safety", k + 1, n, "heat")),
  ...Array.from({ length: 8 }, (_, k) => mentions("Memory care", k, 2, "memory")).flat(),
];
const atomEntries: Entry[] = [
  ...mentions("Heat safety", 0, 2, "heat"),
  ...mentions("Staffing shortage", 0, 3, "staff"),
];

// ---------------------------------------------------------------------------------------------
// The local feed server

interface Recorded {
  path: string;
  ifNoneMatch: string | undefined;
  ifModifiedSince: string | undefined;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const routes = new Map<string, Handler>();
let recorded: Recorded[] = [];
let server: Server;
let base: string;

/** Serves `body()` with an ETag and answers 304 when If-None-Match carries it. */
function withEtag(body: () => string, etag: () => string, type = "application/rss+xml; charset=utf-8"): Handler {
  return (req, res) => {
    if (req.headers["if-none-match"] === etag()) {
      res.writeHead(304, { etag: etag() });
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": type, etag: etag() });
    res.end(body());
  };
}

/** Serves `body` with a Last-Modified date and answers 304 when If-Modified-Since is not older. */
function withLastModified(body: string, lastModified: Date): Handler {
  return (req, res) => {
    const since = req.headers["if-modified-since"];
    if (since !== undefined && Date.parse(since) >= lastModified.getTime()) {
      res.writeHead(304);
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": "application/atom+xml", "last-modified": lastModified.toUTCString() });
    res.end(body);
  };
}

const rssBody = rss("Senior Living News", rssEntries);
const atomBody = atom("Care Trends", atomEntries);
const atomModified = new Date("2026-06-10T09:30:00Z");

let dedupVersion = 1;
const dedupBase: Entry[] = [
  {
    title: "Respite care grants — Tacoma",
    guid: "dd-1",
    link: "https://news.example/dd/1",
    published: new Date(asOf.getTime() - 3 * HOUR),
  },
  // No guid: deduplicated by its link.
  {
    title: "Adult day programs — Tampa",
    link: "https://news.example/dd/2",
    published: new Date(asOf.getTime() - 4 * HOUR),
  },
];
const dedupAdded: Entry = {
  title: "Caregiver tax credit — Toledo",
  guid: "dd-3",
  link: "https://news.example/dd/3",
  published: new Date(asOf.getTime() - HOUR),
};

beforeAll(async () => {
  routes.set(
    "/senior.rss",
    withEtag(
      () => rssBody,
      () => '"senior-v1"',
    ),
  );
  routes.set("/trends.atom", withLastModified(atomBody, atomModified));
  routes.set(
    "/dedup.rss",
    withEtag(
      () => rss("Dedup", dedupVersion === 1 ? dedupBase : [dedupAdded, ...dedupBase]),
      () => `"dedup-v${dedupVersion}"`,
    ),
  );
  // A server without validators: 200 with the whole document every time.
  routes.set("/plain.rss", (_req, res) => {
    res.writeHead(200, { "content-type": "text/xml" });
    res.end(rss("Plain", dedupBase));
  });
  routes.set("/broken.xml", (_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><html><body><p>Moved to our new site</p></body></html>");
  });
  // 256 KiB, streamed without a Content-Length, so only the read cap can stop it.
  routes.set("/huge.xml", (_req, res) => {
    res.writeHead(200, { "content-type": "application/rss+xml" });
    const chunk = `<!-- ${"x".repeat(16 * 1024)} -->\n`;
    const write = (left: number): void => {
      if (left === 0) {
        res.end("</channel></rss>");
        return;
      }
      if (res.write(chunk)) write(left - 1);
      else res.once("drain", () => write(left - 1));
    };
    res.write('<?xml version="1.0"?><rss version="2.0"><channel><title>Huge</title>');
    write(16);
  });
  // Headers never come.
  routes.set("/slow.xml", () => {});
  routes.set("/loop.xml", (_req, res) => {
    res.writeHead(302, { location: "/loop.xml" });
    res.end();
  });
  routes.set("/moved.rss", (_req, res) => {
    res.writeHead(301, { location: "/trends.atom" });
    res.end();
  });

  server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const header = (n: string): string | undefined => {
      const v = req.headers[n];
      return Array.isArray(v) ? v.join(", ") : v;
    };
    recorded.push({ path, ifNoneMatch: header("if-none-match"), ifModifiedSince: header("if-modified-since") });
    const route = routes.get(path);
    if (route === undefined) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
      return;
    }
    route(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

// ---------------------------------------------------------------------------------------------
// Helpers

type Init = MessageInitShape<typeof IdeateTopicsRequestSchema>;

/** A request for the feeds at `paths` over 8 days of 1-day buckets before as_of. */
function request(paths: readonly string[]): IdeateTopicsRequest {
  return create(IdeateTopicsRequestSchema, {
    feeds: paths.map((p) => ({ url: `${base}${p}` })),
    lookbackDays: 8,
    asOf: timestampFromDate(asOf),
  });
}

/** The recorded requests' path and validators, by path (feeds are fetched concurrently). */
function sortedRequests(): Array<[string, string | undefined, string | undefined]> {
  return recorded
    .map((r): [string, string | undefined, string | undefined] => [r.path, r.ifNoneMatch, r.ifModifiedSince])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function report(res: IdeateTopicsResponse, path: string): FeedReport {
  const found = res.feeds.find((f) => f.url === `${base}${path}`);
  if (found === undefined) throw new Error(`no report for ${path}`);
  return found;
}

function topic(res: IdeateTopicsResponse, phrase: string): TrendingTopic {
  const found = res.topics.find((t) => t.phrase === phrase);
  if (found === undefined) throw new Error(`no topic "${phrase}" in ${res.topics.map((t) => t.phrase).join(", ")}`);
  return found;
}

describe("content.topic_ideation on real feeds over HTTP", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let deps: IdeateTopicsDeps;

  const storedItems = async (path: string): Promise<number> =>
    db.fork().count(ResearchFeedItem, { feedId: feedIdOf(`${base}${path}`) });

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.content, log });
    deps = { db, now, http: { timeoutMs: 2000, maxBytes: 64 * 1024 } };
  });
  afterAll(async () => {
    await db?.close();
    await dbHandle?.drop();
  });

  let first: IdeateTopicsResponse;

  it("parses an RSS 2.0 and an Atom feed and stores their items with their validators", async () => {
    recorded = [];
    first = await ideateTopics(deps, request(["/senior.rss", "/trends.atom"]));
    expect(sortedRequests()).toEqual([
      ["/senior.rss", undefined, undefined],
      ["/trends.atom", undefined, undefined],
    ]);
    const rssReport = report(first, "/senior.rss");
    expect(rssReport).toMatchObject({
      status: FeedFetchStatus.FETCHED,
      httpStatus: 200,
      format: "rss",
      title: "Senior Living News",
      itemsInFeed: 30,
      newItems: 30,
      itemsInLookback: 30,
      error: "",
    });
    expect(report(first, "/trends.atom")).toMatchObject({
      status: FeedFetchStatus.FETCHED,
      format: "atom",
      title: "Care Trends",
      itemsInFeed: 5,
      newItems: 5,
      itemsInLookback: 5,
    });
    expect(first.itemsRead).toBe(35);
    expect(first.feedErrors).toEqual([]);
    expect(timestampDate(first.asOf as NonNullable<typeof first.asOf>)).toEqual(asOf);
    expect([first.bucketDays, first.trailingBuckets]).toEqual([1, 7]);

    const feeds = await db.fork().find(ResearchFeed, {}, { orderBy: { url: "asc" } });
    expect(feeds.map((f) => [f.url, f.format, f.etag, f.lastModified, f.lastStatus])).toEqual([
      [`${base}/senior.rss`, "rss", '"senior-v1"', "", 200],
      [`${base}/trends.atom`, "atom", "", atomModified.toUTCString(), 200],
    ]);
    const atomItem = await db.fork().findOneOrFail(ResearchFeedItem, { guid: (atomEntries[0] as Entry).guid ?? "" });
    expect(atomItem).toMatchObject({
      title: (atomEntries[0] as Entry).title,
      link: (atomEntries[0] as Entry).link,
      dated: true,
      publishedAt: (atomEntries[0] as Entry).published,
    });
  });

  it("ranks the bursting phrase first with its hand-computed z-score and its evidence", () => {
    expect(first.topics.map((t) => [t.rank, t.phrase])).toEqual([
      [1, "heat safety"],
      [2, "staffing shortage"],
    ]);
    const heat = topic(first, "heat safety");
    expect(heat.burstScore).toBeCloseTo(heatZ, 10);
    expect(heat.burstScore).toBeCloseTo(3.265986, 6);
    expect(heat.recentMentions).toBe(6);
    expect(heat.baselineMentions).toBeCloseTo(10 / 7, 10);
    expect(heat.baselineStddev).toBeCloseTo(Math.sqrt(96) / 7, 10);
    // Oldest bucket first, the current window last.
    expect(heat.bucketMentions).toEqual([...heatTrailing].reverse().concat(6));
    expect(heat.feedCount).toBe(2);
    expect(heat.feedUrls).toEqual([`${base}/senior.rss`, `${base}/trends.atom`]);
    expect(heat.evidence).toHaveLength(6);
    const times = heat.evidence.map((e) => timestampDate(e.publishedAt as NonNullable<typeof e.publishedAt>).getTime());
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(times.every((t) => t >= asOf.getTime() - DAY && t < asOf.getTime())).toBe(true);
    expect(heat.evidence.every((e) => e.title.startsWith("Heat safety — "))).toBe(true);
    expect(new Set(heat.evidence.map((e) => e.feedUrl))).toEqual(new Set(heat.feedUrls));
    expect(heat.exampleTitles).toEqual(heat.evidence.slice(0, 5).map((e) => e.title));
    expect(heat.exampleUrls).toEqual(heat.evidence.slice(0, 5).map((e) => e.url));

    const staff = topic(first, "staffing shortage");
    expect(staff.burstScore).toBe(3);
    expect([staff.recentMentions, staff.baselineMentions, staff.baselineStddev]).toEqual([3, 0, 0]);
    expect(staff.feedUrls).toEqual([`${base}/trends.atom`]);
    // Steady "memory care", and the single words of "heat safety" (subsumed by it), are not topics.
    expect(first.topics.some((t) => ["memory care", "memory", "care", "heat", "safety"].includes(t.phrase))).toBe(
      false,
    );
  });

  it("fetches again conditionally: the validators go back, 304 reuses the stored items", async () => {
    recorded = [];
    const again = await ideateTopics(deps, request(["/senior.rss", "/trends.atom"]));
    expect(sortedRequests()).toEqual([
      ["/senior.rss", '"senior-v1"', undefined],
      ["/trends.atom", undefined, atomModified.toUTCString()],
    ]);
    for (const path of ["/senior.rss", "/trends.atom"]) {
      expect(report(again, path)).toMatchObject({
        status: FeedFetchStatus.NOT_MODIFIED,
        httpStatus: 304,
        itemsInFeed: 0,
        newItems: 0,
        itemsInLookback: report(first, path).itemsInLookback,
      });
      // Titles come from the stored feed when nothing was parsed.
      expect(report(again, path).title).toBe(report(first, path).title);
    }
    expect(again.itemsRead).toBe(first.itemsRead);
    expect(again.topics).toEqual(first.topics);
    expect(await storedItems("/senior.rss")).toBe(30);
    expect(await storedItems("/trends.atom")).toBe(5);
  });

  it("follows a redirect and stores under the URL as requested", async () => {
    const res = await ideateTopics(deps, request(["/moved.rss"]));
    expect(report(res, "/moved.rss")).toMatchObject({
      status: FeedFetchStatus.FETCHED,
      format: "atom",
      itemsInFeed: 5,
    });
    expect(await storedItems("/moved.rss")).toBe(5);
  });

  it("stores each item once across fetches, by guid or else by link", async () => {
    dedupVersion = 1;
    const one = await ideateTopics(deps, request(["/dedup.rss", "/plain.rss"]));
    expect([report(one, "/dedup.rss").newItems, report(one, "/plain.rss").newItems]).toEqual([2, 2]);
    // The same two stories in two feeds under the same links are read once.
    expect(one.itemsRead).toBe(2);

    dedupVersion = 2; // a new document: one item added at the top, the two others unchanged
    recorded = [];
    const two = await ideateTopics(deps, request(["/dedup.rss", "/plain.rss"]));
    expect(recorded.find((r) => r.path === "/dedup.rss")?.ifNoneMatch).toBe('"dedup-v1"');
    expect(report(two, "/dedup.rss")).toMatchObject({ status: FeedFetchStatus.FETCHED, itemsInFeed: 3, newItems: 1 });
    // No validators from this server: the whole document again, nothing new in it.
    expect(report(two, "/plain.rss")).toMatchObject({ status: FeedFetchStatus.FETCHED, itemsInFeed: 2, newItems: 0 });
    expect(await storedItems("/dedup.rss")).toBe(3);
    expect(await storedItems("/plain.rss")).toBe(2);
    expect(two.itemsRead).toBe(3);
    const stored = await db.fork().findOneOrFail(ResearchFeed, { feedId: feedIdOf(`${base}/dedup.rss`) });
    expect(stored.etag).toBe('"dedup-v2"');
  });

  it("reports a broken, an oversized, a slow, a missing and a looping feed without failing the call", async () => {
    const slowDeps: IdeateTopicsDeps = { ...deps, http: { timeoutMs: 300, maxBytes: 64 * 1024 } };
    const paths = ["/senior.rss", "/broken.xml", "/huge.xml", "/slow.xml", "/missing.xml", "/loop.xml"];
    const res = await ideateTopics(slowDeps, request(paths));
    expect(res.feeds.map((f) => f.url)).toEqual(paths.map((p) => `${base}${p}`));
    expect(report(res, "/senior.rss").status).toBe(FeedFetchStatus.NOT_MODIFIED);
    const failed: Array<[string, number, RegExp]> = [
      ["/broken.xml", 200, /^not an RSS or Atom feed: /],
      ["/huge.xml", 200, /larger than the 65536 bytes allowed/],
      ["/slow.xml", 0, /^timed out after 300 ms$/],
      ["/missing.xml", 404, /^HTTP 404/],
      ["/loop.xml", 302, /^redirect loop at /],
    ];
    for (const [path, status, error] of failed) {
      const r = report(res, path);
      expect(r.status, path).toBe(FeedFetchStatus.FAILED);
      expect(r.httpStatus, path).toBe(status);
      expect(r.error, path).toMatch(error);
      expect(res.feedErrors).toContain(`${base}${path}: ${r.error}`);
    }
    expect(res.feedErrors).toHaveLength(5);
    // The good feed's burst is still found.
    expect(res.topics[0]?.phrase).toBe("heat safety");
    expect(res.topics[0]?.recentMentions).toBe(4);
    const broken = await db.fork().findOneOrFail(ResearchFeed, { feedId: feedIdOf(`${base}/broken.xml`) });
    expect([broken.lastStatus, broken.etag, broken.lastError]).toEqual([200, "", report(res, "/broken.xml").error]);
  });

  it("reads a feed given inline without fetching it", async () => {
    recorded = [];
    const url = `${base}/inline.atom`;
    const res = await ideateTopics(
      deps,
      create(IdeateTopicsRequestSchema, {
        feeds: [{ url, content: atom("Inline", mentions("Hospice volunteers", 0, 2, "inline")) }],
        lookbackDays: 8,
      }),
    );
    expect(recorded).toEqual([]);
    expect(report(res, "/inline.atom")).toMatchObject({
      status: FeedFetchStatus.PROVIDED,
      httpStatus: 0,
      itemsInFeed: 2,
      newItems: 2,
    });
    // as_of unset: now, which the injected clock holds at the test's as_of.
    expect(timestampDate(res.asOf as NonNullable<typeof res.asOf>)).toEqual(asOf);
    expect(res.topics.map((t) => [t.phrase, t.burstScore])).toEqual([["hospice volunteers", 2]]);
  });
});

describe("content.topic_ideation input", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let deps: IdeateTopicsDeps;
  const rows = async (): Promise<number[]> => [
    await db.fork().count(ResearchFeed, {}),
    await db.fork().count(ResearchFeedItem, {}),
  ];

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.content, log });
    deps = { db, now };
  });
  afterAll(async () => {
    await db?.close();
    await dbHandle?.drop();
  });

  const feed = (path: string): { url: string } => ({ url: `${base}${path}` });
  // Thunks: the local server's URL is known only once it listens.
  const bad: Array<[string, () => Init, string]> = [
    ["no feeds", () => ({ feeds: [] }), "feeds"],
    ["an ftp URL", () => ({ feeds: [{ url: "ftp://files.example/feed.xml" }] }), "feeds[0].url"],
    ["a repeated URL", () => ({ feeds: [feed("/senior.rss"), feed("/senior.rss")] }), "feeds[1].url"],
    [
      "buckets longer than half the lookback",
      () => ({ feeds: [feed("/senior.rss")], lookbackDays: 30, bucketDays: 20 }),
      "bucket_days",
    ],
    ["a lookback over a year", () => ({ feeds: [feed("/senior.rss")], lookbackDays: 400 }), "lookback_days"],
    ["phrases of 9 words", () => ({ feeds: [feed("/senior.rss")], maxPhraseWords: 9 }), "max_phrase_words"],
    [
      "inline content that is not a feed",
      () => ({ feeds: [{ url: `${base}/x.rss`, content: "<html></html>" }] }),
      "feeds[0].content",
    ],
    [
      "as_of next month",
      () => ({ feeds: [feed("/senior.rss")], asOf: timestampFromDate(new Date(asOf.getTime() + 30 * DAY)) }),
      "as_of",
    ],
  ];

  it.each(bad)("%s: the skill refuses it naming the field, before any fetch or write", async (_, init, field) => {
    recorded = [];
    const err = await failure(ideateTopics(deps, create(IdeateTopicsRequestSchema, init())));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(field);
    expect(recorded).toEqual([]);
    expect(await rows()).toEqual([0, 0]);
  });

  it.each(bad)("%s: INVALID_ARGUMENT naming the field through the contract", async (_, init, field) => {
    recorded = [];
    const research = createInProcessClient(ResearchService, {
      ideateTopics: (req: IdeateTopicsRequest) => ideateTopics(deps, req),
    });
    const err = ConnectError.from(await failure(research.ideateTopics(init())));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage.startsWith(`${field}: `), err.rawMessage).toBe(true);
    expect(recorded).toEqual([]);
    expect(await rows()).toEqual([0, 0]);
  });
});
