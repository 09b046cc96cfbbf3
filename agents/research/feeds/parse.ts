/**
 * Parsing RSS 2.0, RSS 1.0 (RDF) and Atom documents with rss-parser into the items the agent
 * stores: a key to deduplicate on (guid or Atom id, else link, else title and date), plain-text
 * title and summary, and the publication time when the feed gives a valid one.
 */
import { createHash } from "node:crypto";
import Parser from "rss-parser";

/** Longest title kept, in characters. */
const MAX_TITLE_CHARS = 1000;
/** Longest summary kept, in characters: enough for the opening of an article, which is what matters. */
const MAX_SUMMARY_CHARS = 4000;
/** Most items kept from one document (feeds list tens; more is a dump, not a feed). */
export const MAX_ITEMS_PER_FEED = 2000;

/** One item of a parsed feed. */
export interface ParsedItem {
  /** What identifies the item within its feed: guid or Atom id, else link, else title and date. */
  readonly key: string;
  /** guid or Atom id; empty when the feed gives none. */
  readonly guid: string;
  /** Absolute http(s) link; empty when the feed gives none. */
  readonly link: string;
  /** Plain-text title. */
  readonly title: string;
  /** Plain-text summary. */
  readonly summary: string;
  /** Publication time; undefined when the feed gives none or an invalid one. */
  readonly publishedAt: Date | undefined;
}

/** A parsed feed document. */
export interface ParsedFeed {
  /** `rss`, `atom` or `rdf`. */
  readonly format: "rss" | "atom" | "rdf";
  /** Feed title, plain text. */
  readonly title: string;
  /** Items, deduplicated by key (the first occurrence wins), at most {@link MAX_ITEMS_PER_FEED}. */
  readonly items: readonly ParsedItem[];
}

type RawItem = Parser.Item & { id?: unknown; "content:encodedSnippet"?: unknown };

const parser = new Parser<Record<string, unknown>, RawItem>();

const named: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: " ",
  ndash: "–",
  mdash: "—",
  lsquo: "‘",
  rsquo: "’",
  ldquo: "“",
  rdquo: "”",
  hellip: "…",
};

/** Decodes the HTML entities titles carry after XML decoding (`&amp;amp;` style double escaping). */
function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === "#") {
      const cp = e[1] === "x" || e[1] === "X" ? Number.parseInt(e.slice(2), 16) : Number.parseInt(e.slice(1), 10);
      return Number.isInteger(cp) && cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
    }
    return named[e.toLowerCase()] ?? m;
  });
}

/** Plain text of a fragment that may hold HTML: tags dropped, entities decoded, whitespace collapsed. */
export function plainText(value: unknown, max: number): string {
  if (typeof value !== "string") return "";
  const text = decodeEntities(value.replace(/<[^>]*>/g, " "))
    .replace(/\s+/g, " ")
    .trim();
  return text.length <= max ? text : text.slice(0, max);
}

/**
 * WordPress and other generators end every excerpt with the same sentence ("The post X appeared
 * first on Y.") — boilerplate that would otherwise count as a mention of the site's name.
 */
function dropBoilerplate(summary: string): string {
  return summary
    .replace(/\bThe post .{0,300}? appeared first on .{0,200}?\.?$/i, "")
    .replace(/\s*(\[(…|\.\.\.)\]|Continue reading.{0,100}|Read more.{0,100})$/i, "")
    .trim();
}

/** An absolute http(s) URL for `link` resolved against the feed URL; empty when there is none. */
function absoluteLink(link: unknown, base: string): string {
  if (typeof link !== "string" || link.trim() === "") return "";
  try {
    const u = new URL(link.trim(), base);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : "";
  } catch {
    return "";
  }
}

function validDate(value: unknown): Date | undefined {
  if (typeof value !== "string" || value.trim() === "") return undefined;
  const d = new Date(value.trim());
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** The root element's format, from the document's first element. */
function formatOf(xml: string): ParsedFeed["format"] {
  const root = /<(?!\?|!)([\w:.-]+)/.exec(xml)?.[1]?.toLowerCase() ?? "";
  if (root === "feed" || root.endsWith(":feed")) return "atom";
  if (root === "rdf:rdf" || root.endsWith(":rdf")) return "rdf";
  return "rss";
}

/** Parses a feed document; rejects with a readable reason when it is not RSS or Atom. */
export async function parseFeed(xml: string, feedUrl: string): Promise<ParsedFeed> {
  let out: Parser.Output<RawItem>;
  try {
    out = await parser.parseString(xml);
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split("\n")[0]?.slice(0, 300);
    throw new Error(`not an RSS or Atom feed: ${reason}`);
  }
  const items: ParsedItem[] = [];
  const keys = new Set<string>();
  for (const raw of out.items ?? []) {
    if (items.length >= MAX_ITEMS_PER_FEED) break;
    const guid = typeof raw.guid === "string" ? raw.guid.trim() : typeof raw.id === "string" ? raw.id.trim() : "";
    const link = absoluteLink(raw.link, feedUrl);
    const title = plainText(raw.title, MAX_TITLE_CHARS);
    const summary = dropBoilerplate(
      [raw.contentSnippet, raw.summary, raw["content:encodedSnippet"]]
        .map((v) => plainText(v, MAX_SUMMARY_CHARS))
        .find((v) => v !== "") ?? "",
    );
    const publishedAt = validDate(raw.isoDate) ?? validDate(raw.pubDate);
    if (title === "" && summary === "") continue;
    const key =
      guid !== ""
        ? `guid:${guid}`
        : link !== ""
          ? `link:${link}`
          : `text:${createHash("sha256")
              .update(`${title}\n${publishedAt?.toISOString() ?? ""}`)
              .digest("hex")}`;
    if (keys.has(key)) continue;
    keys.add(key);
    items.push({ key, guid, link, title, summary, publishedAt });
  }
  return { format: formatOf(xml), title: plainText(out.title, MAX_TITLE_CHARS), items };
}
