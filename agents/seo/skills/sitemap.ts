/**
 * XML sitemap generation and submission (sitemaps.org 0.9).
 *
 * Method: every `loc` is resolved against the site origin and RFC 3986-encoded; URLs on another
 * origin (sitemaps.org: same scheme and host as the sitemap) and repeats are dropped with a note.
 * Entries are packed in request order into files of at most `max_urls_per_file` URLs and
 * `max_bytes_per_file` uncompressed bytes (header and footer included). One file is published as
 * `<stem>.xml`; more are `<stem>-1.xml`… with a sitemap index at `<stem>.xml`, so robots.txt always
 * names the same URL. Every file is parsed back (fast-xml-parser) and its entry count, size and
 * limits checked before anything is stored. Files are stored for the site, files of an earlier,
 * larger split are removed, and the `Sitemap:` line is added to the stored robots.txt (the ping
 * endpoints are retired). Replays of a request_id are answered by the idempotency interceptor.
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  ChangeFrequency,
  type GenerateSitemapRequest,
  type GenerateSitemapResponse,
  GenerateSitemapResponseSchema,
  type SitemapFile,
  SitemapFileSchema,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import {
  createRobotsMatcher,
  parseRobotsTxt,
  ROBOTS_TXT_MAX_BYTES,
  ROBOTS_TXT_PATH,
  siteOrigin,
  withSitemapLines,
} from "../crawl/robots-rules.ts";
import { type SiteFileStore, sha256Hex } from "../site-files/robots-store.ts";
import {
  checkSitemapXml,
  rfc3986Href,
  SITEMAP_MAX_BYTES,
  SITEMAP_MAX_ENTRIES,
  SITEMAP_MAX_LOC_LENGTH,
  type SitemapEntry,
  sitemapIndexXml,
  URLSET_FOOTER,
  urlEntryXml,
  urlsetHeader,
} from "../site-files/sitemap-xml.ts";

/** Dependencies of the skill. */
export interface GenerateSitemapDeps {
  /** Where the site's sitemap files and robots.txt are kept. */
  files: SiteFileStore;
  /** Clock, to notice lastmod values in the future. */
  now: () => Date;
}

const changefreqs: Record<number, string | undefined> = {
  [ChangeFrequency.UNSPECIFIED]: undefined,
  [ChangeFrequency.ALWAYS]: "always",
  [ChangeFrequency.HOURLY]: "hourly",
  [ChangeFrequency.DAILY]: "daily",
  [ChangeFrequency.WEEKLY]: "weekly",
  [ChangeFrequency.MONTHLY]: "monthly",
  [ChangeFrequency.YEARLY]: "yearly",
  [ChangeFrequency.NEVER]: "never",
};

/** Epoch ms range with four-digit years (W3C Datetime has four). */
/** Files of an earlier split a warning names (the count covers the rest). */
const MAX_NAMED_REMOVALS = 20;
const minLastmodMs = Date.parse("0000-01-01T00:00:00Z");
const maxLastmodMs = Date.parse("9999-12-31T23:59:59.999Z");

/** Collects notes of one kind, keeping the first few and counting the rest. */
function noteCollector(limit = 10) {
  const kinds = new Map<string, { shown: string[]; total: number }>();
  return {
    add(kind: string, note: string) {
      const k = kinds.get(kind) ?? { shown: [], total: 0 };
      kinds.set(kind, k);
      k.total++;
      if (k.shown.length < limit) k.shown.push(note);
    },
    lines(): string[] {
      const out: string[] = [];
      for (const k of kinds.values()) {
        out.push(...k.shown);
        if (k.total > k.shown.length) out.push(`…and ${k.total - k.shown.length} more like the above`);
      }
      return out;
    },
  };
}

function parseHttpUrl(value: string, base: string | undefined, field: string): URL {
  let url: URL;
  try {
    url = base === undefined ? new URL(value) : new URL(value, base);
  } catch {
    throw new InvalidInputError(field, `"${value}" must be an absolute URL or a path starting with /`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidInputError(field, `"${value}" must be an http or https URL`);
  }
  return url;
}

/** Builds, checks, stores and submits the sitemap files of a site. */
export async function generateSitemap(
  deps: GenerateSitemapDeps,
  req: GenerateSitemapRequest,
): Promise<GenerateSitemapResponse> {
  const origin = siteOrigin(req.baseUrl, "base_url");
  if (!/^([a-z0-9][a-z0-9_-]{0,62})?$/.test(req.filePrefix)) {
    throw new InvalidInputError("file_prefix", "must be lower-case letters, digits, '_' and '-', 63 at most");
  }
  const stem = req.filePrefix === "" ? "sitemap" : req.filePrefix;
  if (req.maxUrlsPerFile < 0 || req.maxUrlsPerFile > SITEMAP_MAX_ENTRIES) {
    throw new InvalidInputError("max_urls_per_file", `must be 0 (the protocol's limit) to ${SITEMAP_MAX_ENTRIES}`);
  }
  const maxUrls = req.maxUrlsPerFile === 0 ? SITEMAP_MAX_ENTRIES : req.maxUrlsPerFile;
  if (req.maxBytesPerFile < 0n || req.maxBytesPerFile > BigInt(SITEMAP_MAX_BYTES)) {
    throw new InvalidInputError("max_bytes_per_file", `must be 0 (the protocol's limit) to ${SITEMAP_MAX_BYTES}`);
  }
  const maxBytes = req.maxBytesPerFile === 0n ? SITEMAP_MAX_BYTES : Number(req.maxBytesPerFile);
  if (req.urls.length === 0) throw new InvalidInputError("urls", "needs at least one URL");

  const nowMs = deps.now().getTime();
  const notes = noteCollector();
  const seen = new Set<string>();
  const entries: { entry: SitemapEntry; index: number }[] = [];
  let dropped = 0;
  req.urls.forEach((u, i) => {
    const at = `urls[${i}]`;
    const url = parseHttpUrl(u.loc, u.loc.startsWith("/") ? `${origin}/` : undefined, `${at}.loc`);
    if (url.origin !== origin) {
      dropped++;
      notes.add("off-host", `${at}.loc: ${url.href} is not on ${origin}; dropped`);
      return;
    }
    const loc = rfc3986Href(url);
    if (loc.length > SITEMAP_MAX_LOC_LENGTH) {
      throw new InvalidInputError(
        `${at}.loc`,
        `is ${loc.length} characters once encoded; sitemaps allow ${SITEMAP_MAX_LOC_LENGTH}`,
      );
    }
    if (seen.has(loc)) {
      dropped++;
      notes.add("duplicate", `${at}.loc: ${loc} is listed before; dropped`);
      return;
    }
    seen.add(loc);
    let lastmodMs: number | undefined;
    if (u.lastmod !== undefined) {
      lastmodMs = timestampMs(u.lastmod);
      if (!Number.isFinite(lastmodMs) || lastmodMs < minLastmodMs || lastmodMs > maxLastmodMs) {
        throw new InvalidInputError(`${at}.lastmod`, "must fall in the years 0000–9999");
      }
      if (lastmodMs > nowMs) notes.add("future", `${at}.lastmod is in the future; search engines may ignore it`);
    }
    if (!(u.changefreq in changefreqs)) {
      throw new InvalidInputError(`${at}.changefreq`, `${u.changefreq} is not a ChangeFrequency value`);
    }
    if (u.priority !== undefined && !(u.priority >= 0 && u.priority <= 1)) {
      throw new InvalidInputError(`${at}.priority`, "must be between 0.0 and 1.0");
    }
    if (u.images.length > 1000) throw new InvalidInputError(`${at}.images`, "at most 1,000 images per URL");
    const images = [
      ...new Set(
        u.images.map((img, j) => {
          const href = rfc3986Href(parseHttpUrl(img.loc, undefined, `${at}.images[${j}].loc`));
          if (href.length > SITEMAP_MAX_LOC_LENGTH) {
            throw new InvalidInputError(`${at}.images[${j}].loc`, `is ${href.length} characters once encoded`);
          }
          return href;
        }),
      ),
    ];
    entries.push({
      index: i,
      entry: { loc, lastmodMs, changefreq: changefreqs[u.changefreq], priority: u.priority, images },
    });
  });
  if (entries.length === 0) throw new InvalidInputError("urls", `none of the URLs is on ${origin}`);

  // Pack in request order.
  const header = urlsetHeader(entries.some((e) => e.entry.images.length > 0));
  const frame = Buffer.byteLength(header) + Buffer.byteLength(URLSET_FOOTER);
  type Chunk = { xml: string[]; bytes: number; lastmodMs: number | undefined };
  const chunks: Chunk[] = [];
  let chunk: Chunk | undefined;
  for (const { entry, index } of entries) {
    const xml = urlEntryXml(entry);
    const bytes = Buffer.byteLength(xml, "utf8");
    if (frame + bytes > maxBytes) {
      throw new InvalidInputError(
        "max_bytes_per_file",
        `${maxBytes} bytes cannot hold urls[${index}] (${frame + bytes} bytes with the file's header and footer)`,
      );
    }
    if (chunk === undefined || chunk.xml.length >= maxUrls || frame + chunk.bytes + bytes > maxBytes) {
      chunk = { xml: [], bytes: 0, lastmodMs: undefined };
      chunks.push(chunk);
    }
    chunk.xml.push(xml);
    chunk.bytes += bytes;
    if (entry.lastmodMs !== undefined && (chunk.lastmodMs === undefined || entry.lastmodMs > chunk.lastmodMs)) {
      chunk.lastmodMs = entry.lastmodMs;
    }
  }
  if (chunks.length > SITEMAP_MAX_ENTRIES) {
    throw new InvalidInputError(
      maxUrls * SITEMAP_MAX_ENTRIES < entries.length ? "max_urls_per_file" : "max_bytes_per_file",
      `the URLs need ${chunks.length} files, more than the ${SITEMAP_MAX_ENTRIES} a sitemap index may list`,
    );
  }

  const split = chunks.length > 1;
  const indexName = `${stem}.xml`;
  const built = chunks.map((c, i) => {
    const name = split ? `${stem}-${i + 1}.xml` : indexName;
    return { name, content: header + c.xml.join("") + URLSET_FOOTER, count: c.xml.length, lastmodMs: c.lastmodMs };
  });
  // Parse every file back before storing anything: a file that does not read back is a bug here.
  for (const f of built) {
    const checked = checkSitemapXml(f.content, "urlset");
    if (checked.locs.length !== f.count || checked.bytes > maxBytes || f.count > maxUrls) {
      throw new Error(
        `sitemap ${f.name} reads back as ${checked.locs.length} URLs in ${checked.bytes} bytes, expected ${f.count} within ${maxUrls} / ${maxBytes}`,
      );
    }
  }
  let index: { name: string; content: string; count: number } | undefined;
  if (split) {
    const content = sitemapIndexXml(built.map((f) => ({ loc: `${origin}/${f.name}`, lastmodMs: f.lastmodMs })));
    const checked = checkSitemapXml(content, "sitemapindex");
    if (checked.locs.length !== built.length) {
      throw new Error(`sitemap index reads back as ${checked.locs.length} entries, expected ${built.length}`);
    }
    // max_bytes_per_file shapes the urlset files; the index only has the protocol's limit, which
    // checkSitemapXml enforces (50,000 files of at most 2,047-character URLs fit in it).
    index = { name: indexName, content, count: built.length };
  }

  // Store the files; remove files of an earlier, larger split under the same stem.
  const store = async (f: { name: string; content: string; count: number }): Promise<SitemapFile> => {
    const sha256 = sha256Hex(f.content);
    const before = await deps.files.get(origin, `/${f.name}`);
    const changed = before?.sha256 !== sha256;
    if (changed) await deps.files.put(origin, `/${f.name}`, f.content);
    return create(SitemapFileSchema, {
      name: f.name,
      url: `${origin}/${f.name}`,
      content: f.content,
      urlCount: f.count,
      byteSize: BigInt(Buffer.byteLength(f.content, "utf8")),
      sha256,
      changed,
    });
  };
  const files: SitemapFile[] = [];
  for (const f of built) files.push(await store(f));
  const indexFile = index === undefined ? undefined : await store(index);
  const current = new Set([...built.map((f) => `/${f.name}`), `/${indexName}`]);
  const ours = new RegExp(`^/${stem}(-[1-9][0-9]*)?\\.xml$`);
  // Page by page (however many files the site has), deleting as it goes; the warning names a few.
  let removed = 0;
  const removedNames: string[] = [];
  for (let after: string | undefined; ; ) {
    const page = await deps.files.list(origin, `/${stem}`, { after });
    if (page.length === 0) break;
    for (const p of page) {
      if (!ours.test(p) || current.has(p)) continue;
      await deps.files.delete(origin, p);
      removed++;
      if (removedNames.length < MAX_NAMED_REMOVALS) removedNames.push(p);
    }
    after = page[page.length - 1];
  }
  const warnings = notes.lines();
  if (removed > 0) {
    const more = removed > removedNames.length ? ` and ${removed - removedNames.length} more` : "";
    warnings.push(`removed ${removed} file(s) of an earlier split: ${removedNames.join(", ")}${more}`);
  }

  // Submit through robots.txt, and say when it keeps crawlers from the sitemap or its URLs.
  const sitemapUrl = `${origin}/${indexName}`;
  const robotsTxtLines = [`Sitemap: ${sitemapUrl}`];
  let robotsTxtUpdated = false;
  let robots = (await deps.files.get(origin, ROBOTS_TXT_PATH))?.content;
  if (req.submitViaRobotsTxt) {
    const merged = withSitemapLines(robots ?? "", [sitemapUrl]);
    if (merged.added.length > 0) {
      if (Buffer.byteLength(merged.content, "utf8") > ROBOTS_TXT_MAX_BYTES) {
        warnings.push(`robots.txt would exceed ${ROBOTS_TXT_MAX_BYTES} bytes with the Sitemap line; not updated`);
      } else {
        await deps.files.put(origin, ROBOTS_TXT_PATH, merged.content);
        robots = merged.content;
        robotsTxtUpdated = true;
      }
    }
  }
  if (robots !== undefined) {
    const parsed = parseRobotsTxt(robots);
    const matcher = createRobotsMatcher(origin, robots, parsed);
    const blocked = noteCollector(5);
    for (const { entry } of entries) {
      const v = matcher(entry.loc, "*");
      if (v !== undefined && !v.allowed) {
        blocked.add("blocked", `${entry.loc} is disallowed for user-agent * by robots.txt line ${v.matchedLine}`);
      }
    }
    warnings.push(...blocked.lines());
    const v = matcher(sitemapUrl, "*");
    if (v !== undefined && !v.allowed) {
      warnings.push(`${sitemapUrl} itself is disallowed for user-agent * by robots.txt line ${v.matchedLine}`);
    }
  }

  return create(GenerateSitemapResponseSchema, {
    files,
    ...(indexFile === undefined ? {} : { index: indexFile }),
    robotsTxtLines,
    robotsTxtUpdated,
    totalUrlCount: entries.length,
    droppedUrlCount: dropped,
    warnings,
  });
}
