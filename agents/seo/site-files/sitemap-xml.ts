/**
 * sitemaps.org 0.9 XML: URL and datetime formatting, `urlset` entries, the sitemap index, and a
 * check that parses a file back (fast-xml-parser) to prove it well-formed and count its entries.
 */
import { XMLParser, XMLValidator } from "fast-xml-parser";

/** Protocol limit of entries per file (urlset or index). */
export const SITEMAP_MAX_ENTRIES = 50_000;
/** Protocol limit of uncompressed bytes per file (50 MiB). */
export const SITEMAP_MAX_BYTES = 52_428_800;
/** Protocol limit on a `loc`: fewer than 2,048 characters. */
export const SITEMAP_MAX_LOC_LENGTH = 2047;
/** Namespace of `urlset` and `sitemapindex`. */
export const SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9";
/** Namespace of Google's image extension. */
export const IMAGE_NS = "http://www.google.com/schemas/sitemap-image/1.1";

/** Escapes the five characters sitemaps.org asks to entity-escape. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>'"]/g, (c) =>
    c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === "'" ? "&apos;" : "&quot;",
  );
}

/**
 * A URL as sitemaps.org wants it: RFC 3986 percent-encoded (WHATWG serialisation already encodes
 * non-ASCII and a few characters; this also encodes the rest RFC 3986 does not allow after the
 * authority, and stray `%`), without user info or fragment.
 */
export function rfc3986Href(url: URL): string {
  const u = new URL(url.href);
  u.username = "";
  u.password = "";
  u.hash = "";
  const href = u.href;
  const rest = href
    .slice(u.origin.length)
    .replace(/%(?![0-9A-Fa-f]{2})/g, "%25")
    .replace(/[^A-Za-z0-9\-._~:/?@!$&'()*+,;=%]/g, (c) => encodeURIComponent(c));
  return `${u.origin}${rest}`;
}

/** W3C Datetime (`2025-05-01T00:00:00Z`; milliseconds only when there are any). */
export function w3cDatetime(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith(".000Z") ? `${iso.slice(0, -5)}Z` : iso;
}

/** A priority as a decimal with at least one fractional digit (`0.8`, `1.0`, `0.25`). */
export function formatPriority(p: number): string {
  const s = String(Math.round(p * 10_000) / 10_000);
  return s.includes(".") ? s : `${s}.0`;
}

/** One `url` entry, already normalised. */
export interface SitemapEntry {
  /** Encoded absolute URL. */
  readonly loc: string;
  /** Last modification, epoch ms. */
  readonly lastmodMs: number | undefined;
  /** `changefreq` value, such as `weekly`. */
  readonly changefreq: string | undefined;
  /** Priority 0–1. */
  readonly priority: number | undefined;
  /** Encoded absolute image URLs. */
  readonly images: readonly string[];
}

/** The XML of one entry, one line with its newline. */
export function urlEntryXml(e: SitemapEntry): string {
  let s = `<url><loc>${escapeXml(e.loc)}</loc>`;
  if (e.lastmodMs !== undefined) s += `<lastmod>${w3cDatetime(e.lastmodMs)}</lastmod>`;
  if (e.changefreq !== undefined) s += `<changefreq>${e.changefreq}</changefreq>`;
  if (e.priority !== undefined) s += `<priority>${formatPriority(e.priority)}</priority>`;
  for (const img of e.images) s += `<image:image><image:loc>${escapeXml(img)}</image:loc></image:image>`;
  return `${s}</url>\n`;
}

const xmlDeclaration = '<?xml version="1.0" encoding="UTF-8"?>\n';

/** Opening of a urlset file; the image namespace is declared when `withImages`. */
export function urlsetHeader(withImages: boolean): string {
  return `${xmlDeclaration}<urlset xmlns="${SITEMAP_NS}"${withImages ? ` xmlns:image="${IMAGE_NS}"` : ""}>\n`;
}

/** Closing of a urlset file. */
export const URLSET_FOOTER = "</urlset>\n";

/** A sitemap index listing files with their latest lastmod. */
export function sitemapIndexXml(files: readonly { loc: string; lastmodMs: number | undefined }[]): string {
  const entries = files.map(
    (f) =>
      `<sitemap><loc>${escapeXml(f.loc)}</loc>${f.lastmodMs === undefined ? "" : `<lastmod>${w3cDatetime(f.lastmodMs)}</lastmod>`}</sitemap>\n`,
  );
  return `${xmlDeclaration}<sitemapindex xmlns="${SITEMAP_NS}">\n${entries.join("")}</sitemapindex>\n`;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  parseTagValue: false,
  isArray: (name) => name === "url" || name === "sitemap" || name === "image:image",
  // Every `&` in a URL is an entity; a 50,000-URL file may hold many more than the default cap.
  processEntities: { maxTotalExpansions: Number.MAX_SAFE_INTEGER, maxExpandedLength: Number.MAX_SAFE_INTEGER },
});

/** What a parsed-back file holds. */
export interface CheckedSitemap {
  /** `loc` of every `url` (urlset) or `sitemap` (index) entry, unescaped, in order. */
  readonly locs: string[];
  /** Size in bytes (UTF-8). */
  readonly bytes: number;
}

/**
 * Parses a sitemap file back and checks it: well-formed XML, the expected root element in the
 * sitemaps.org namespace, a `loc` in every entry, and the protocol's entry, byte and `loc` limits.
 * Throws an Error naming the problem.
 */
export function checkSitemapXml(content: string, root: "urlset" | "sitemapindex"): CheckedSitemap {
  const valid = XMLValidator.validate(content);
  if (valid !== true) {
    throw new Error(`not well-formed XML: ${valid.err.msg} (line ${valid.err.line}, column ${valid.err.col})`);
  }
  const doc = parser.parse(content) as Record<string, unknown>;
  const top = doc[root] as Record<string, unknown> | undefined;
  if (top === undefined || typeof top !== "object") throw new Error(`the root element is not <${root}>`);
  if (top["@_xmlns"] !== SITEMAP_NS) throw new Error(`<${root}> is not in the ${SITEMAP_NS} namespace`);
  const entries = (top[root === "urlset" ? "url" : "sitemap"] ?? []) as Record<string, unknown>[];
  const locs = entries.map((e, i) => {
    const loc = e.loc;
    if (typeof loc !== "string" || loc === "") throw new Error(`entry ${i + 1} has no <loc>`);
    if (loc.length > SITEMAP_MAX_LOC_LENGTH) throw new Error(`entry ${i + 1}'s <loc> is ${loc.length} characters`);
    return loc;
  });
  const bytes = Buffer.byteLength(content, "utf8");
  if (locs.length > SITEMAP_MAX_ENTRIES) throw new Error(`${locs.length} entries, over ${SITEMAP_MAX_ENTRIES}`);
  if (bytes > SITEMAP_MAX_BYTES) throw new Error(`${bytes} bytes, over ${SITEMAP_MAX_BYTES}`);
  return { locs, bytes };
}
