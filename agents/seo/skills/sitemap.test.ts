import { Readable } from "node:stream";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import robotsParserModule from "robots-parser";
import { parseSitemap, parseSitemapIndex } from "sitemap";
import { describe, expect, it } from "vitest";
import {
  ChangeFrequency,
  type GenerateSitemapRequest,
  GenerateSitemapRequestSchema,
  ManageRobotsTxtRequestSchema,
  RobotsRuleType,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createMemorySiteFileStore, type SiteFileStore, sha256Hex } from "../site-files/robots-store.ts";
import { checkSitemapXml, escapeXml, formatPriority, rfc3986Href, w3cDatetime } from "../site-files/sitemap-xml.ts";
import { manageRobotsTxt } from "./robots-txt.ts";
import { generateSitemap } from "./sitemap.ts";

const robotsParser = robotsParserModule as unknown as typeof robotsParserModule.default;

const requestId = "3f6c1d2e-8a4b-4c5d-9e7f-0a1b2c3d4e5f";
const site = "https://example.com";
const now = new Date("2025-06-01T00:00:00Z");

type Init = MessageInitShape<typeof GenerateSitemapRequestSchema>;

function request(init: Init): GenerateSitemapRequest {
  return create(GenerateSitemapRequestSchema, { requestId, baseUrl: site, ...init });
}

async function run(init: Init, files: SiteFileStore = createMemorySiteFileStore()) {
  return generateSitemap({ files, now: () => now }, request(init));
}

async function invalidField(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidInputError);
  return (err as InvalidInputError).field;
}

/** The urls of a file as an independent reader (the `sitemap` package) sees them. */
async function readUrls(content: string): Promise<string[]> {
  return (await parseSitemap(Readable.from([content]))).map((i) => i.url);
}

describe("generateSitemap", () => {
  it("writes the contract's example as the hand-checked file and submits it through robots.txt", async () => {
    const files = createMemorySiteFileStore();
    const res = await run(
      {
        urls: [
          {
            loc: "https://example.com/assisted-living/austin-tx",
            lastmod: timestampFromDate(new Date("2025-05-01T00:00:00Z")),
            changefreq: ChangeFrequency.WEEKLY,
            priority: 0.8,
            images: [{ loc: "https://example.com/images/austin-tx.webp" }],
          },
          { loc: "/assisted-living/dallas-tx", changefreq: ChangeFrequency.WEEKLY },
        ],
        submitViaRobotsTxt: true,
      },
      files,
    );
    const expected = [
      '<?xml version="1.0" encoding="UTF-8"?>',
      '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">',
      "<url><loc>https://example.com/assisted-living/austin-tx</loc><lastmod>2025-05-01T00:00:00Z</lastmod><changefreq>weekly</changefreq><priority>0.8</priority><image:image><image:loc>https://example.com/images/austin-tx.webp</image:loc></image:image></url>",
      "<url><loc>https://example.com/assisted-living/dallas-tx</loc><changefreq>weekly</changefreq></url>",
      "</urlset>",
      "",
    ].join("\n");
    expect(res.files).toHaveLength(1);
    const [file] = res.files;
    expect(file).toMatchObject({
      name: "sitemap.xml",
      url: "https://example.com/sitemap.xml",
      content: expected,
      urlCount: 2,
      byteSize: BigInt(Buffer.byteLength(expected)),
      sha256: sha256Hex(expected),
      changed: true,
    });
    expect(res.index).toBeUndefined();
    expect(res).toMatchObject({ totalUrlCount: 2, droppedUrlCount: 0, robotsTxtUpdated: true, warnings: [] });
    expect(res.robotsTxtLines).toEqual(["Sitemap: https://example.com/sitemap.xml"]);
    expect((await files.get(site, "/sitemap.xml"))?.content).toBe(expected);
    const robots = (await files.get(site, "/robots.txt"))?.content ?? "";
    expect(robots).toBe("Sitemap: https://example.com/sitemap.xml\n");
    expect(robotsParser(`${site}/robots.txt`, robots).getSitemaps()).toEqual(["https://example.com/sitemap.xml"]);

    // The sitemap package reads the same entries back.
    const items = await parseSitemap(Readable.from([expected]));
    expect(items.map((i) => [i.url, i.lastmod, i.changefreq, i.priority, i.img.map((m) => m.url)])).toEqual([
      [
        "https://example.com/assisted-living/austin-tx",
        "2025-05-01T00:00:00Z",
        "weekly",
        0.8,
        ["https://example.com/images/austin-tx.webp"],
      ],
      ["https://example.com/assisted-living/dallas-tx", undefined, "weekly", undefined, []],
    ]);

    // The same request again changes nothing.
    const again = await run(
      {
        urls: [
          {
            loc: "https://example.com/assisted-living/austin-tx",
            lastmod: timestampFromDate(new Date("2025-05-01T00:00:00Z")),
            changefreq: ChangeFrequency.WEEKLY,
            priority: 0.8,
            images: [{ loc: "https://example.com/images/austin-tx.webp" }],
          },
          { loc: "/assisted-living/dallas-tx", changefreq: ChangeFrequency.WEEKLY },
        ],
        submitViaRobotsTxt: true,
      },
      files,
    );
    expect(again.files[0]?.changed).toBe(false);
    expect(again.robotsTxtUpdated).toBe(false);
  });

  it("splits 120,000 URLs into 50,000 + 50,000 + 20,000 with an index at sitemap.xml", async () => {
    const files = createMemorySiteFileStore();
    const day = Date.UTC(2025, 0, 1);
    const urls = Array.from({ length: 120_000 }, (_, i) => ({
      loc: `/community/${i}?ref=a&x=<'">`,
      lastmod: timestampFromMs(day + i * 1000),
    }));
    const res = await run({ urls, submitViaRobotsTxt: true }, files);
    expect(res.files.map((f) => [f.name, f.urlCount])).toEqual([
      ["sitemap-1.xml", 50_000],
      ["sitemap-2.xml", 50_000],
      ["sitemap-3.xml", 20_000],
    ]);
    expect(res.totalUrlCount).toBe(120_000);
    expect(res.index).toMatchObject({ name: "sitemap.xml", url: "https://example.com/sitemap.xml", urlCount: 3 });
    expect(res.robotsTxtLines).toEqual(["Sitemap: https://example.com/sitemap.xml"]);

    // Parse every file back with fast-xml-parser: well-formed, counts, limits, every URL once, in order.
    const all: string[] = [];
    for (const f of res.files) {
      const checked = checkSitemapXml(f.content, "urlset");
      expect(checked.locs).toHaveLength(f.urlCount);
      expect(checked.bytes).toBe(Number(f.byteSize));
      expect(checked.bytes).toBeLessThanOrEqual(52_428_800);
      all.push(...checked.locs);
    }
    expect(all).toHaveLength(120_000);
    expect(new Set(all).size).toBe(120_000);
    expect(all[0]).toBe("https://example.com/community/0?ref=a&x=%3C%27%22%3E");
    expect(all[119_999]).toBe("https://example.com/community/119999?ref=a&x=%3C%27%22%3E");
    // The sitemap package reads the index the same way.
    const index = await parseSitemapIndex(Readable.from([res.index?.content ?? ""]));
    expect(index.map((i) => [i.url, i.lastmod])).toEqual([
      ["https://example.com/sitemap-1.xml", w3cDatetime(day + 49_999_000)],
      ["https://example.com/sitemap-2.xml", w3cDatetime(day + 99_999_000)],
      ["https://example.com/sitemap-3.xml", w3cDatetime(day + 119_999_000)],
    ]);
    expect(await files.list(site, "/")).toEqual([
      "/robots.txt",
      "/sitemap-1.xml",
      "/sitemap-2.xml",
      "/sitemap-3.xml",
      "/sitemap.xml",
    ]);

    // A smaller site later: one file at sitemap.xml, and the earlier split's files are removed.
    const smaller = await run({ urls: urls.slice(0, 10) }, files);
    expect(smaller.files.map((f) => [f.name, f.urlCount, f.changed])).toEqual([["sitemap.xml", 10, true]]);
    expect(smaller.warnings).toEqual([
      "removed 3 file(s) of an earlier split: /sitemap-1.xml, /sitemap-2.xml, /sitemap-3.xml",
    ]);
    expect(await files.list(site, "/")).toEqual(["/robots.txt", "/sitemap.xml"]);
  }, 60_000);

  it("removes an earlier split however many files it had, reading the store a page at a time", async () => {
    const memory = createMemorySiteFileStore();
    // A store whose pages hold 2 paths: the skill must page to find every stale file.
    const pages: Array<string | undefined> = [];
    const files: SiteFileStore = {
      ...memory,
      list: (origin, prefix, page) => {
        pages.push(page?.after);
        return memory.list(origin, prefix, { ...page, limit: 2 });
      },
    };
    const urls = Array.from({ length: 30 }, (_, i) => ({ loc: `/page/${String(i).padStart(3, "0")}` }));
    const split = await run({ urls, maxBytesPerFile: 330n, filePrefix: "pages" }, files);
    expect(split.files).toHaveLength(8);
    const smaller = await run({ urls: urls.slice(0, 2), filePrefix: "pages" }, files);
    expect(smaller.files.map((f) => f.name)).toEqual(["pages.xml"]);
    expect(smaller.warnings).toEqual([
      "removed 8 file(s) of an earlier split: /pages-1.xml, /pages-2.xml, /pages-3.xml, /pages-4.xml, /pages-5.xml, /pages-6.xml, /pages-7.xml, /pages-8.xml",
    ]);
    expect(await memory.list(site, "/pages")).toEqual(["/pages.xml"]);
    expect(pages.length).toBeGreaterThan(4);
  });

  it("splits by uncompressed bytes, header and footer included", async () => {
    const urls = Array.from({ length: 30 }, (_, i) => ({ loc: `/page/${String(i).padStart(3, "0")}` }));
    // Header 100 + footer 10 bytes; each entry is 51 bytes: 4 entries (314 bytes) fit in 330, 5 do not.
    const res = await run({ urls, maxBytesPerFile: 330n, filePrefix: "pages" });
    expect(res.files.map((f) => f.urlCount)).toEqual([4, 4, 4, 4, 4, 4, 4, 2]);
    for (const f of res.files) expect(Number(f.byteSize)).toBeLessThanOrEqual(330);
    expect(res.files[0]?.byteSize).toBe(314n);
    expect(res.files.map((f) => f.name)[7]).toBe("pages-8.xml");
    expect(res.index?.name).toBe("pages.xml");
    const byCount = await run({ urls, maxUrlsPerFile: 7 });
    expect(byCount.files.map((f) => f.urlCount)).toEqual([7, 7, 7, 7, 2]);
  });

  it("entity-escapes & < > ' \" and percent-encodes what RFC 3986 does not allow", async () => {
    expect(escapeXml(`&<>'"`)).toBe("&amp;&lt;&gt;&apos;&quot;");
    expect(rfc3986Href(new URL("https://user:pw@Example.com/a b/ü|^`{}[]?q=<x>&y='1'#frag"))).toBe(
      "https://example.com/a%20b/%C3%BC%7C%5E%60%7B%7D%5B%5D?q=%3Cx%3E&y=%271%27",
    );
    expect(rfc3986Href(new URL("https://example.com/100%/ok%20"))).toBe("https://example.com/100%25/ok%20");
    const res = await run({
      urls: [{ loc: "/search?city=Austin&care=memory's" }, { loc: "https://example.com/o'brien&sons" }],
    });
    const content = res.files[0]?.content ?? "";
    expect(content).toContain("<loc>https://example.com/search?city=Austin&amp;care=memory%27s</loc>");
    expect(content).toContain("<loc>https://example.com/o&apos;brien&amp;sons</loc>");
    expect(content).not.toMatch(/&(?!amp;|apos;|quot;|lt;|gt;)/);
    expect(checkSitemapXml(content, "urlset").locs).toEqual([
      "https://example.com/search?city=Austin&care=memory%27s",
      "https://example.com/o'brien&sons",
    ]);
    expect(await readUrls(content)).toEqual([
      "https://example.com/search?city=Austin&care=memory%27s",
      "https://example.com/o'brien&sons",
    ]);
  });

  it("drops duplicate and off-host URLs, notes future lastmods and URLs robots.txt blocks", async () => {
    const files = createMemorySiteFileStore();
    await manageRobotsTxt(
      { files },
      create(ManageRobotsTxtRequestSchema, {
        requestId,
        siteUrl: site,
        source: {
          case: "spec",
          value: { groups: [{ userAgents: ["*"], rules: [{ type: RobotsRuleType.DISALLOW, path: "/private/" }] }] },
        },
      }),
    );
    const res = await run(
      {
        urls: [
          { loc: "/a" },
          { loc: "https://EXAMPLE.com/a#top" },
          { loc: "http://example.com/b" },
          { loc: "https://other.example/c" },
          { loc: "//other.example/d" },
          { loc: "/private/e", lastmod: timestampFromDate(new Date("2026-01-01T00:00:00Z")) },
        ],
        submitViaRobotsTxt: true,
      },
      files,
    );
    expect(res.totalUrlCount).toBe(2);
    expect(res.droppedUrlCount).toBe(4);
    expect(res.warnings).toEqual([
      "urls[1].loc: https://example.com/a is listed before; dropped",
      "urls[2].loc: http://example.com/b is not on https://example.com; dropped",
      "urls[3].loc: https://other.example/c is not on https://example.com; dropped",
      "urls[4].loc: https://other.example/d is not on https://example.com; dropped",
      "urls[5].lastmod is in the future; search engines may ignore it",
      "https://example.com/private/e is disallowed for user-agent * by robots.txt line 2",
    ]);
    // The Sitemap line joins the stored rules, which stay as they were.
    const robots = (await files.get(site, "/robots.txt"))?.content;
    expect(robots).toBe("User-agent: *\nDisallow: /private/\n\nSitemap: https://example.com/sitemap.xml\n");
    // ManageRobotsTxt keeps that line when the rules are replaced.
    const replaced = await manageRobotsTxt(
      { files },
      create(ManageRobotsTxtRequestSchema, {
        requestId,
        siteUrl: site,
        source: { case: "spec", value: { groups: [{ userAgents: ["*"], rules: [] }] } },
        keepStoredSitemaps: true,
      }),
    );
    expect(replaced.content).toBe("User-agent: *\nDisallow:\n\nSitemap: https://example.com/sitemap.xml\n");
  });

  it("formats W3C datetimes and priorities", () => {
    expect(w3cDatetime(Date.UTC(2025, 4, 1))).toBe("2025-05-01T00:00:00Z");
    expect(w3cDatetime(Date.UTC(2025, 4, 1, 12, 30, 5, 250))).toBe("2025-05-01T12:30:05.250Z");
    expect([0, 0.5, 1, 0.25, 0.123456].map(formatPriority)).toEqual(["0.0", "0.5", "1.0", "0.25", "0.1235"]);
  });

  it("refuses files that are not sitemaps when checking", () => {
    expect(() => checkSitemapXml("<urlset><url>", "urlset")).toThrow(/not well-formed/);
    expect(() => checkSitemapXml('<urlset xmlns="x"></urlset>', "urlset")).toThrow(/namespace/);
    expect(() =>
      checkSitemapXml('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url></url></urlset>', "urlset"),
    ).toThrow(/no <loc>/);
  });

  it("rejects invalid input, naming the field", async () => {
    const urls = [{ loc: "/a" }];
    expect(await invalidField(run({ urls, baseUrl: "https://example.com/blog/" }))).toBe("base_url");
    expect(await invalidField(run({ urls, baseUrl: "example.com" }))).toBe("base_url");
    expect(await invalidField(run({ urls: [] }))).toBe("urls");
    expect(await invalidField(run({ urls: [{ loc: "/a" }, { loc: "not a url" }] }))).toBe("urls[1].loc");
    expect(await invalidField(run({ urls: [{ loc: "mailto:a@example.com" }] }))).toBe("urls[0].loc");
    expect(await invalidField(run({ urls: [{ loc: `/${"x".repeat(2100)}` }] }))).toBe("urls[0].loc");
    expect(await invalidField(run({ urls: [{ loc: "/a", priority: 1.5 }] }))).toBe("urls[0].priority");
    expect(await invalidField(run({ urls: [{ loc: "/a", changefreq: 42 as ChangeFrequency }] }))).toBe(
      "urls[0].changefreq",
    );
    expect(
      await invalidField(
        run({ urls: [{ loc: "/a", lastmod: timestampFromDate(new Date("+010000-01-01T00:00:00Z")) }] }),
      ),
    ).toBe("urls[0].lastmod");
    expect(await invalidField(run({ urls: [{ loc: "/a", images: [{ loc: "/relative.png" }] }] }))).toBe(
      "urls[0].images[0].loc",
    );
    expect(await invalidField(run({ urls: [{ loc: "https://other.example/" }] }))).toBe("urls");
    expect(await invalidField(run({ urls, filePrefix: "Bad Name" }))).toBe("file_prefix");
    expect(await invalidField(run({ urls, maxUrlsPerFile: 50_001 }))).toBe("max_urls_per_file");
    expect(await invalidField(run({ urls, maxBytesPerFile: 52_428_801n }))).toBe("max_bytes_per_file");
    expect(await invalidField(run({ urls, maxBytesPerFile: 100n }))).toBe("max_bytes_per_file");
  });
});
