/**
 * What a competitor analysis reads from one page: title, the h1–h3 outline, the main text in
 * blocks (a paragraph, a heading, a list item…) and its word count.
 *
 * Parsing is cheerio's (parse5, the HTML standard's tree construction). The main content is the
 * page's `<main>` (or `role="main"`), else its single `<article>`, else its body; from it, scripts,
 * styles, embedded objects, hidden elements and the page chrome — `nav`, `footer`, `aside` and
 * their ARIA roles, and outside an article a `header` without an h1 — are left out, so a site's
 * shared navigation and footer neither count as words nor make all its pages look alike.
 */
import { load } from "cheerio";

/** One heading of the outline. */
export interface Heading {
  /** 1–3. */
  readonly level: number;
  /** Text, whitespace collapsed. */
  readonly text: string;
}

/** The content of one page. */
export interface PageContent {
  /** `<title>`, else `og:title`, else the first h1; "" when none. */
  readonly title: string;
  /** h1–h3 of the main content in document order (empty headings left out). */
  readonly headings: readonly Heading[];
  /** Text blocks of the main content, whitespace collapsed; terms never span two blocks. */
  readonly blocks: readonly string[];
  /** Words of the main content. */
  readonly wordCount: number;
  /** True when the text was longer than {@link MAX_TEXT_CHARS} and only its start is analysed. */
  readonly truncated: boolean;
}

/** Characters of main text analysed per page: bounds the tokeniser's work on huge inputs. */
export const MAX_TEXT_CHARS = 500_000;
/** Headings kept per page. */
export const MAX_HEADINGS = 500;

/**
 * A word: letters or digits, with inner apostrophes, hyphens or dots ("don't", "24-hour", "u.s")
 * counted once, as word processors count them.
 */
const wordPattern = /[\p{L}\p{N}]+(?:['’.-][\p{L}\p{N}]+)*/gu;

/** Number of words in `text`. */
export function countWords(text: string): number {
  let n = 0;
  for (const _ of text.matchAll(wordPattern)) n++;
  return n;
}

/** Collapses runs of whitespace and trims. */
export function collapse(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

/** Keeps blocks up to {@link MAX_TEXT_CHARS} characters in all. */
function capBlocks(blocks: readonly string[]): { blocks: string[]; truncated: boolean } {
  const kept: string[] = [];
  let total = 0;
  for (const b of blocks) {
    if (total + b.length > MAX_TEXT_CHARS) {
      const rest = MAX_TEXT_CHARS - total;
      if (rest > 0) kept.push(b.slice(0, rest));
      return { blocks: kept, truncated: true };
    }
    kept.push(b);
    total += b.length;
  }
  return { blocks: kept, truncated: false };
}

/** The content of a plain-text page: one block per non-empty line, no title, no headings. */
export function extractText(text: string): PageContent {
  const { blocks, truncated } = capBlocks(
    text
      .split(/\r\n|\r|\n/)
      .map(collapse)
      .filter((l) => l !== ""),
  );
  return { title: "", headings: [], blocks, wordCount: blocks.reduce((s, b) => s + countWords(b), 0), truncated };
}

/** Minimal view of a parsed node, enough to walk text. */
interface DomNode {
  type: string;
  name?: string;
  data?: string;
  children?: DomNode[];
}

const removedSelector = [
  "script",
  "style",
  "noscript",
  "template",
  "svg",
  "math",
  "iframe",
  "object",
  "embed",
  "canvas",
  "select",
  "textarea",
  "button",
  "nav",
  "footer",
  "aside",
  "[hidden]",
  '[aria-hidden="true"]',
  '[role="navigation"]',
  '[role="contentinfo"]',
  '[role="complementary"]',
  '[role="search"]',
].join(", ");

/** Elements that start and end a text block (everything else is inline and joins its neighbours). */
const blockTags = new Set([
  "address",
  "article",
  "blockquote",
  "body",
  "br",
  "caption",
  "dd",
  "details",
  "div",
  "dl",
  "dt",
  "fieldset",
  "figcaption",
  "figure",
  "form",
  "h1",
  "h2",
  "h3",
  "h4",
  "h5",
  "h6",
  "header",
  "hr",
  "legend",
  "li",
  "main",
  "ol",
  "p",
  "pre",
  "section",
  "summary",
  "table",
  "td",
  "th",
  "tr",
  "ul",
]);

/** Text blocks under `nodes`, whitespace collapsed, empty ones dropped. */
function textBlocks(nodes: readonly DomNode[]): string[] {
  const blocks: string[] = [];
  let current: string[] = [];
  const flush = (): void => {
    const b = collapse(current.join(""));
    if (b !== "") blocks.push(b);
    current = [];
  };
  const walk = (n: DomNode): void => {
    if (n.type === "text") {
      current.push(n.data ?? "");
      return;
    }
    if (n.type !== "tag" && n.type !== "root") return;
    const block = blockTags.has(n.name ?? "");
    if (block) flush();
    for (const c of n.children ?? []) walk(c);
    if (block) flush();
  };
  for (const n of nodes) walk(n);
  flush();
  return blocks;
}

/** Reads the content of an HTML page. */
export function extractHtml(html: string): PageContent {
  const $ = load(html);
  const title =
    collapse(
      $("title")
        .filter((_, el) => $(el).closest("svg").length === 0)
        .first()
        .text(),
    ) || collapse($('meta[property="og:title"]').first().attr("content") ?? "");

  let root = $('main, [role="main"]').first();
  if (root.length === 0) {
    const articles = $("article");
    // parse5 always builds a body, even for a fragment.
    root = articles.length === 1 ? articles : $("body");
  }
  root.find(removedSelector).remove();
  // A page header outside any article is the site banner (logo, menu), unless it holds the page's h1.
  root
    .find('header, [role="banner"]')
    .filter((_, el) => $(el).closest("article").length === 0 && $(el).find("h1").length === 0)
    .remove();

  const headings: Heading[] = [];
  root.find("h1, h2, h3").each((_, el) => {
    if (headings.length >= MAX_HEADINGS) return false;
    const text = collapse($(el).text());
    if (text !== "") headings.push({ level: Number(el.tagName.slice(1)), text });
    return undefined;
  });
  const { blocks, truncated } = capBlocks(textBlocks(root.toArray() as unknown as DomNode[]));
  return {
    title: title || (headings.find((h) => h.level === 1)?.text ?? ""),
    headings,
    blocks,
    wordCount: blocks.reduce((s, b) => s + countWords(b), 0),
    truncated,
  };
}
