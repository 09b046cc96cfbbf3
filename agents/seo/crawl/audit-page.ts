/**
 * What the technical audit reads from one HTML page: title, meta description, heading outline,
 * canonical (link element and `Link` header), robots directives (meta tags and `X-Robots-Tag`),
 * links, images, insecure sub-resources on https pages and the visible main-content text.
 *
 * Parsing is cheerio's (parse5, the HTML standard's tree construction), so the result matches
 * what a browser, and a search engine's renderer, builds from the same bytes.
 */
import { load } from "cheerio";
import { srcsetUrls } from "./srcset.ts";

/** One link found on a page. */
export interface PageLink {
  /** Absolute http(s) target without fragment. */
  readonly url: string;
  /** Anchor text with whitespace collapsed (the alt text of an image link when there is none). */
  readonly text: string;
}

/** One image found on a page. */
export interface PageImage {
  /** Absolute http(s) source without fragment. */
  readonly src: string;
  /** The alt attribute; undefined when the attribute is absent. */
  readonly alt: string | undefined;
}

/** The facts the audit rules need from one page. */
export interface PageFacts {
  /** Text of the first `<title>`, whitespace collapsed. */
  readonly title: string;
  /** Number of `<title>` elements outside SVG. */
  readonly titleCount: number;
  /** Content of the first meta description, whitespace collapsed. */
  readonly metaDescription: string;
  /** Number of meta description elements. */
  readonly metaDescriptionCount: number;
  /** Headings in document order. */
  readonly headings: readonly { level: number; text: string }[];
  /** Distinct canonical targets, resolved, in order of appearance (link elements first, then the header). */
  readonly canonicals: readonly string[];
  /** True when a canonical link element's href is not an absolute URL. */
  readonly canonicalRelative: boolean;
  /** True when a robots meta tag or `X-Robots-Tag` for us says noindex (or none). */
  readonly noindex: boolean;
  /** True when a robots meta tag or `X-Robots-Tag` for us says nofollow (or none). */
  readonly nofollow: boolean;
  /** Links to http(s) URLs, in document order (repeats kept). */
  readonly links: readonly PageLink[];
  /** Images with an http(s) source, in document order. */
  readonly images: readonly PageImage[];
  /** Sub-resources loaded over plain http by an https page. */
  readonly insecureResources: readonly string[];
  /** Visible text of the main content. */
  readonly text: string;
}

/** Collapses runs of whitespace and trims. */
export function collapse(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

/** Absolute http(s) URL without fragment, or undefined when `href` is not one. */
export function resolveHttpUrl(href: string, base: URL): string | undefined {
  const trimmed = href.trim();
  if (trimmed === "") return undefined;
  let url: URL;
  try {
    url = new URL(trimmed, base);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  url.hash = "";
  return url.href;
}

/**
 * Robots directives that apply to `token` (a lower-cased product token such as
 * `marketingmeshbot`): from `robots` meta tags, meta tags named after the token, and the
 * `X-Robots-Tag` header, whose directives may be scoped with a `token:` prefix.
 */
export function robotsDirectives(metas: readonly { name: string; content: string }[], header: string, token: string) {
  const directives = new Set<string>();
  for (const m of metas) {
    if (m.name !== "robots" && m.name !== token) continue;
    for (const d of m.content.toLowerCase().split(",")) directives.add(d.trim());
  }
  // `X-Robots-Tag: noindex, otherbot: nofollow, none`: a `name:` prefix scopes what follows it.
  let scope = "";
  for (const part of header.toLowerCase().split(",")) {
    let d = part.trim();
    const m = /^([a-z0-9_-]+)\s*:\s*(.*)$/.exec(d);
    if (m !== null && !/^(unavailable_after|max-snippet|max-image-preview|max-video-preview)$/.test(m[1] as string)) {
      scope = m[1] as string;
      d = (m[2] as string).trim();
    }
    if (scope === "" || scope === token || scope === "robots") directives.add(d);
  }
  const none = directives.has("none");
  return { noindex: none || directives.has("noindex"), nofollow: none || directives.has("nofollow") };
}

/** Canonical targets named by `Link` headers (`<url>; rel="canonical"`), as written. */
export function canonicalsFromLinkHeader(header: string): string[] {
  const out: string[] = [];
  for (const m of header.matchAll(/<([^>]*)>([^,<]*)/g)) {
    const params = m[2] as string;
    const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.exec(params);
    const value = (rel?.[1] ?? rel?.[2] ?? "").toLowerCase().split(/\s+/);
    if (value.includes("canonical")) out.push(m[1] as string);
  }
  return out;
}

/** Minimal view of a parsed node, enough to walk text. */
interface DomNode {
  type: string;
  name?: string;
  data?: string;
  children?: DomNode[];
}

const hiddenTags = new Set([
  "script",
  "style",
  "noscript",
  "template",
  "svg",
  "math",
  "iframe",
  "object",
  "canvas",
  "head",
  "select",
  "textarea",
]);
const boilerplateTags = new Set(["nav", "header", "footer", "aside"]);

/** Text of nodes, one space between text nodes, skipping hidden (and optionally boilerplate) elements. */
function visibleText(nodes: readonly DomNode[], skipBoilerplate: boolean): string {
  const parts: string[] = [];
  const walk = (n: DomNode): void => {
    if (n.type === "text") {
      parts.push(n.data ?? "");
      return;
    }
    if (n.type !== "tag" && n.type !== "root") return;
    const name = n.name ?? "";
    if (hiddenTags.has(name) || (skipBoilerplate && boilerplateTags.has(name))) return;
    for (const c of n.children ?? []) walk(c);
  };
  for (const n of nodes) walk(n);
  return collapse(parts.join(" "));
}

/** Options of `analyzePage`. */
export interface AnalyzeOptions {
  /** Lower-cased robots product token of the crawler, for `<meta name="token">` and scoped headers. */
  readonly robotsToken: string;
  /** `X-Robots-Tag` header value ("" when absent). */
  readonly xRobotsTag: string;
  /** `Link` header value ("" when absent). */
  readonly linkHeader: string;
}

const resourceSelectors: readonly [string, string][] = [
  ["img", "src"],
  ["script", "src"],
  ["iframe", "src"],
  ["audio", "src"],
  ["video", "src"],
  ["video", "poster"],
  ["source", "src"],
  ["track", "src"],
  ["embed", "src"],
  ["object", "data"],
];
const resourceLinkRels = new Set(["stylesheet", "icon", "preload", "modulepreload", "manifest", "apple-touch-icon"]);

/** Reads the audit facts from an HTML document fetched from `pageUrl` (after redirects). */
export function analyzePage(html: string, pageUrl: string, options: AnalyzeOptions): PageFacts {
  const $ = load(html);
  const pageBase = new URL(pageUrl);
  let base = pageBase;
  const baseHref = $("base[href]").first().attr("href");
  if (baseHref !== undefined) {
    try {
      base = new URL(baseHref, pageBase);
    } catch {
      // An unusable <base> is ignored, as browsers do.
    }
  }

  const titles = $("title").filter((_, el) => $(el).closest("svg").length === 0);
  const metas = $("meta[name]")
    .toArray()
    .map((el) => ({ name: ($(el).attr("name") ?? "").trim().toLowerCase(), content: $(el).attr("content") ?? "" }));
  const descriptions = metas.filter((m) => m.name === "description");

  const headings = $("h1, h2, h3, h4, h5, h6")
    .toArray()
    .map((el) => ({ level: Number(el.tagName.slice(1)), text: collapse($(el).text()) }));

  const canonicals: string[] = [];
  let canonicalRelative = false;
  const addCanonical = (href: string): void => {
    const resolved = resolveHttpUrl(href, base);
    if (resolved !== undefined && !canonicals.includes(resolved)) canonicals.push(resolved);
  };
  $("link[rel][href]").each((_, el) => {
    const rel = ($(el).attr("rel") ?? "").toLowerCase().split(/\s+/);
    if (!rel.includes("canonical")) return;
    const href = ($(el).attr("href") ?? "").trim();
    if (!/^[a-z][a-z0-9+.-]*:/i.test(href)) canonicalRelative = true;
    addCanonical(href);
  });
  // Link header targets resolve against the request URL, not <base>.
  for (const href of canonicalsFromLinkHeader(options.linkHeader)) {
    const resolved = resolveHttpUrl(href, pageBase);
    if (resolved !== undefined && !canonicals.includes(resolved)) canonicals.push(resolved);
  }

  const { noindex, nofollow } = robotsDirectives(metas, options.xRobotsTag, options.robotsToken);

  const links: PageLink[] = [];
  $("a[href], area[href]").each((_, el) => {
    const url = resolveHttpUrl($(el).attr("href") ?? "", base);
    if (url === undefined) return;
    const text = collapse($(el).text()) || collapse($(el).find("img[alt]").first().attr("alt") ?? "");
    links.push({ url, text });
  });

  const images: PageImage[] = [];
  $("img").each((_, el) => {
    const raw = $(el).attr("src") ?? srcsetUrls($(el).attr("srcset") ?? "")[0] ?? "";
    const src = resolveHttpUrl(raw, base);
    if (src === undefined) return;
    images.push({ src, alt: $(el).attr("alt") });
  });

  const insecure = new Set<string>();
  if (pageBase.protocol === "https:") {
    const check = (raw: string | undefined): void => {
      if (raw === undefined) return;
      const url = resolveHttpUrl(raw, base);
      if (url?.startsWith("http:")) insecure.add(url);
    };
    for (const [tag, attr] of resourceSelectors) $(`${tag}[${attr}]`).each((_, el) => check($(el).attr(attr)));
    $("img[srcset], source[srcset]").each((_, el) => {
      for (const u of srcsetUrls($(el).attr("srcset") ?? "")) check(u);
    });
    $("link[rel][href]").each((_, el) => {
      const rel = ($(el).attr("rel") ?? "").toLowerCase().split(/\s+/);
      if (rel.some((r) => resourceLinkRels.has(r))) check($(el).attr("href"));
    });
  }

  // Main content: <main> when the page marks it, else the body without navigation and chrome, so
  // a shared header and footer do not make every page of a site look alike.
  const main = $("main");
  const text =
    main.length > 0
      ? visibleText(main.toArray() as unknown as DomNode[], false)
      : visibleText($("body").toArray() as unknown as DomNode[], true);

  return {
    title: collapse(titles.first().text()),
    titleCount: titles.length,
    metaDescription: collapse(descriptions[0]?.content ?? ""),
    metaDescriptionCount: descriptions.length,
    headings,
    canonicals,
    canonicalRelative,
    noindex,
    nofollow,
    links,
    images,
    insecureResources: [...insecure],
    text,
  };
}
