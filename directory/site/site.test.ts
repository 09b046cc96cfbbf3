import { load } from "cheerio";
import robotsParserModule from "robots-parser";
import { beforeAll, describe, expect, it } from "vitest";
import { checkSitemapXml } from "../../agents/seo/site-files/sitemap-xml.ts";
import { offlineSeoClient } from "../../servers/offline.ts";
import { createDirectoryData } from "../data/index.ts";
import { measureSimilarity } from "./similarity.ts";
import { type BuiltSite, buildSite } from "./site.ts";

const origin = "https://seniorliving.example";
// robots-parser is CommonJS: its default export is the function itself.
const robotsParser = robotsParserModule as unknown as typeof robotsParserModule.default;

describe("the directory site", () => {
  let site: BuiltSite;
  beforeAll(async () => {
    site = await buildSite(createDirectoryData(), { origin, skills: offlineSeoClient() });
  });

  it("has exactly 977 city pages covering 51 jurisdictions and an anchor for each of the 4,757 communities", () => {
    expect(site.cityPages).toHaveLength(977);
    expect(new Set(site.cityPages.map((p) => p.split("/")[1])).size).toBe(51);
    let anchors = 0;
    for (const p of site.cityPages)
      anchors += load(site.files.get(`${p}index.html`) as string)(".list > li[id]").length;
    expect(anchors).toBe(4757);
    expect(site.files.has("/index.html")).toBe(true);
    expect([...site.files.keys()].filter((k) => /^\/[a-z]{2}\/index\.html$/.test(k))).toHaveLength(51);
  });

  it("has a sitemap of every page that validates against the protocol, submitted through robots.txt", async () => {
    const { XMLParser } = await import("fast-xml-parser");
    const sitemap = site.files.get("/sitemap.xml") as string;
    expect(checkSitemapXml(sitemap, "urlset").locs).toHaveLength(1 + 51 + 977);
    const locs = (new XMLParser().parse(sitemap).urlset.url as Array<{ loc: string }>).map((u) => u.loc);
    for (const loc of locs) expect(site.files.has(`${loc.slice(origin.length)}index.html`)).toBe(true);
    const robots = robotsParser(`${origin}/robots.txt`, site.files.get("/robots.txt") as string);
    expect(robots.getSitemaps()).toEqual([`${origin}/sitemap.xml`]);
    expect(robots.isAllowed(`${origin}/tx/austin-tx/`, "Googlebot")).toBe(true);
    expect(robots.isAllowed(`${origin}/enquiry/thanks/`, "Googlebot")).toBe(false);
  });

  it("gives every page JSON-LD that passes our schema checks", () => {
    expect(Object.fromEntries(site.jsonLdErrors)).toEqual({});
  });

  it("shows every community with a responsive, compressed image that is part of the site", async () => {
    const sharp = (await import("sharp")).default;
    const html = site.files.get("/tx/austin-tx/index.html") as string;
    const $ = load(html);
    const cards = $(".list > li");
    expect(cards.length).toBeGreaterThan(2);
    cards.each((_, li) => {
      const img = $(li).find("img");
      expect(img.length).toBe(1);
      expect(img.attr("alt")).toMatch(/^Sample illustration: a (one|two|three)-storey /);
      expect(Number(img.attr("width")) / Number(img.attr("height"))).toBeCloseTo(1.6, 1);
      expect(img.attr("sizes")).toBe("(max-width: 479px) 96px, 128px");
      expect(img.attr("loading")).toBe("lazy");
      const srcset = (img.attr("srcset") ?? "").split(", ").map((c) => c.split(" "));
      expect(srcset.map(([, w]) => w)).toEqual(["160w", "320w", "480w"]);
      for (const [path] of srcset) expect(site.files.has(path as string)).toBe(true);
      expect(img.attr("src")).toBe(srcset[0]?.[0]);
    });
    // Each LocalBusiness names its image by an absolute URL of a file of the site.
    const graph = JSON.parse($('script[type="application/ld+json"]').first().text())["@graph"] as Array<
      Record<string, unknown>
    >;
    const businesses = graph.filter((n) => n["@type"] === "LocalBusiness");
    expect(businesses).toHaveLength(cards.length);
    for (const b of businesses) {
      expect(site.files.has(String(b.image).slice(origin.length))).toBe(true);
    }
    // The variants are WebP at their nominal width, without metadata, and small.
    const images = [...site.files].filter(([path]) => path.startsWith("/img/"));
    expect(images).toHaveLength(36);
    for (const [path, bytes] of images) {
      const meta = await sharp(bytes as Buffer).metadata();
      expect(meta.format).toBe("webp");
      expect(`-${meta.width}.webp`).toBe(path.slice(path.lastIndexOf("-")));
      expect(meta.exif).toBeUndefined();
      expect((bytes as Buffer).length).toBeLessThan(8_000);
    }
  });

  it("has no broken internal link or anchor (crawl of every page)", () => {
    const ids = new Map<string, Set<string>>();
    const docs = new Map<string, ReturnType<typeof load>>();
    for (const [file, html] of site.files) {
      if (!file.endsWith(".html")) continue;
      const $ = load(html as string);
      const path = file.replace(/index\.html$/, "");
      docs.set(path, $);
      ids.set(
        path,
        new Set(
          $("[id]")
            .map((_, e) => $(e).attr("id"))
            .get(),
        ),
      );
    }
    const broken: string[] = [];
    for (const [path, $] of docs) {
      $("a[href]").each((_, a) => {
        const href = $(a).attr("href") as string;
        if (href.startsWith("tel:") || href.startsWith("http")) return;
        const [target = "", anchor] = href.split("#");
        const page = target === "" ? path : target;
        if (!ids.has(page)) broken.push(`${path} → ${href}`);
        else if (anchor && !ids.get(page)?.has(anchor)) broken.push(`${path} → ${href} (anchor)`);
      });
      $("img").each((_, img) => {
        for (const src of [
          $(img).attr("src") ?? "",
          ...($(img).attr("srcset") ?? "").split(", ").map((c) => c.split(" ")[0]),
        ]) {
          if (!site.files.has(src as string)) broken.push(`${path}: image ${src}`);
        }
      });
      const canonical = $('link[rel="canonical"]').attr("href") ?? "";
      if (!canonical.startsWith(origin) || !ids.has(canonical.slice(origin.length))) {
        if (!path.startsWith("/enquiry/")) broken.push(`${path}: canonical ${canonical}`);
      }
    }
    expect(broken.slice(0, 10)).toEqual([]);
  });

  it("keeps every pair of city pages far from near-duplicates (all 476,776 pairs)", () => {
    const pages = new Map(site.cityPages.map((p) => [p, site.files.get(`${p}index.html`) as string]));
    const report = measureSimilarity(pages, 0.5);
    expect(report.pairs).toBe((977 * 976) / 2);
    expect(report.above).toEqual([]);
    expect(report.max.jaccard).toBeLessThan(0.5);
  }, 120_000);
});
