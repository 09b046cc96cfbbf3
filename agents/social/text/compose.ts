/**
 * Writes one post from a piece of content within a platform's length rule.
 *
 * A post is up to four paragraphs — title, summary, call to action with the link, hashtags — and is
 * measured whole, the way the platform counts. When it is too long, the summary is cut at the last
 * word boundary that fits (Intl.Segmenter word segments in the post's locale, so CJK text is cut
 * between words too, never inside a URL or a grapheme cluster) and ends with an ellipsis; hashtags
 * are given up, least relevant first, before the summary disappears altogether; then the call to
 * action; then the title is cut the same way. The link goes last, only when nothing else fits.
 */

/** The content of one post. */
export interface PostParts {
  readonly title: string;
  readonly summary: string;
  /** The link as it should appear (UTM parameters already added); "" for none. */
  readonly link: string;
  /** Hashtags with the leading `#`, most relevant first (already limited to the platform's count). */
  readonly hashtags: readonly string[];
  readonly callToAction: string;
}

/** How to write it. */
export interface ComposeRules {
  /** Longest post, in `measure` units. */
  readonly limit: number;
  /** Length of a text as the platform counts it. */
  readonly measure: (text: string) => number;
  /** The link may go in the text (otherwise only `linkHint` points to it). */
  readonly linkClickable: boolean;
  /** Words standing in for a link that is not clickable, for example "link in bio"; "" for none. */
  readonly linkHint: string;
  /** BCP 47 locale for word boundaries. */
  readonly locale: string;
}

/** The post written. */
export interface ComposedPost {
  readonly text: string;
  readonly length: number;
  /** Something was cut or left out to fit. */
  readonly truncated: boolean;
  readonly withinLimit: boolean;
  /** Hashtags that made it into the text. */
  readonly hashtags: readonly string[];
  /** Everything the post was composed from, uncut (what a thread would carry). */
  readonly full: string;
}

export const ellipsis = "…";

/** Trailing characters that look wrong before an ellipsis. */
const danglingTail = /[\s,;:\-–—(["'“‘/]+$/u;

const segmenters = new Map<string, Intl.Segmenter>();
function wordSegmenter(locale: string): Intl.Segmenter {
  let s = segmenters.get(locale);
  if (s === undefined) {
    try {
      s = new Intl.Segmenter(locale, { granularity: "word" });
    } catch {
      s = new Intl.Segmenter("en", { granularity: "word" });
    }
    segmenters.set(locale, s);
  }
  return s;
}

/**
 * Where `text` may be cut: the end of every word, ascending, leaving out positions inside the
 * `protectedRanges` (URLs).
 */
export function wordEnds(
  text: string,
  locale: string,
  protectedRanges: readonly { start: number; end: number }[] = [],
): number[] {
  const out: number[] = [];
  for (const seg of wordSegmenter(locale).segment(text)) {
    if (!seg.isWordLike) continue;
    const end = seg.index + seg.segment.length;
    if (protectedRanges.some((r) => r.start < end && end < r.end)) continue;
    out.push(end);
  }
  return out;
}

/** `text` cut at `at`, tidied, with an ellipsis. */
export function cutAt(text: string, at: number): string {
  const head = text.slice(0, at).replace(danglingTail, "");
  return head === "" ? "" : `${head}${ellipsis}`;
}

/**
 * The longest cut of `text` (at one of the ascending positions `ends`) for which `fits` holds, or
 * undefined. `fits` must be monotonic over the positions, which holds when no cut splits a URL.
 */
export function longestFittingCut(
  text: string,
  ends: readonly number[],
  fits: (cut: string) => boolean,
): string | undefined {
  let lo = 0;
  let hi = ends.length - 1;
  let best: string | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const cut = cutAt(text, ends[mid] as number);
    if (cut !== "" && fits(cut)) {
      best = cut;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return best;
}

function paragraphs(...parts: string[]): string {
  return parts.filter((p) => p !== "").join("\n\n");
}

function closingOf(parts: PostParts, rules: ComposeRules, withCta: boolean): string {
  const cta = withCta ? parts.callToAction.trim() : "";
  if (parts.link === "") return cta;
  if (rules.linkClickable) return cta === "" ? parts.link : `${cta} ${parts.link}`;
  const hint = rules.linkHint !== "" && rules.locale.toLowerCase().startsWith("en") ? rules.linkHint : "";
  if (hint === "") return cta;
  return cta === "" ? `${hint[0]?.toUpperCase()}${hint.slice(1)}.` : `${cta} (${hint})`;
}

/** Writes the post; see the file comment for what gives way when it does not fit. */
export function composePost(
  parts: PostParts,
  rules: ComposeRules,
  urlRangesOf: (text: string) => { start: number; end: number }[],
): ComposedPost {
  const { measure, limit } = rules;
  const title = parts.title.trim();
  const summary = parts.summary.trim();
  const fits = (text: string) => measure(text) <= limit;
  const done = (text: string, truncated: boolean, hashtags: readonly string[]): ComposedPost => {
    const length = measure(text);
    return { text, length, truncated, withinLimit: length <= limit, hashtags, full };
  };

  const closing = closingOf(parts, rules, true);
  const full = paragraphs(title, summary, closing, parts.hashtags.join(" "));
  if (fits(full)) return done(full, false, parts.hashtags);

  // Cut the summary, giving up hashtags (least relevant first) while no cut of it fits.
  if (summary !== "") {
    const ends = wordEnds(summary, rules.locale, urlRangesOf(summary));
    for (let k = parts.hashtags.length; k >= 0; k--) {
      const tags = parts.hashtags.slice(0, k);
      const tagLine = tags.join(" ");
      if (k < parts.hashtags.length) {
        const whole = paragraphs(title, summary, closing, tagLine);
        if (fits(whole)) return done(whole, true, tags);
      }
      const cut = longestFittingCut(summary, ends, (s) => fits(paragraphs(title, s, closing, tagLine)));
      if (cut !== undefined) return done(paragraphs(title, cut, closing, tagLine), true, tags);
    }
  } else {
    for (let k = parts.hashtags.length - 1; k >= 0; k--) {
      const tags = parts.hashtags.slice(0, k);
      const text = paragraphs(title, closing, tags.join(" "));
      if (fits(text)) return done(text, true, tags);
    }
  }

  // Title and link only, then a cut title with the link, then the title alone.
  const linkOnly = closingOf(parts, rules, false);
  for (const end of [closing, linkOnly]) {
    const text = paragraphs(title, end);
    if (fits(text)) return done(text, true, []);
  }
  const titleEnds = wordEnds(title, rules.locale, urlRangesOf(title));
  for (const end of [linkOnly, ""]) {
    const cut = longestFittingCut(title, titleEnds, (t) => fits(paragraphs(t, end)));
    if (cut !== undefined) return done(paragraphs(cut, end), true, []);
  }
  // Not even one word fits: cut the title between grapheme clusters.
  const graphemeEnds = [...new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(title)].map(
    (g) => g.index + g.segment.length,
  );
  const cut = longestFittingCut(title, graphemeEnds, fits);
  return done(cut ?? "", true, []);
}

/**
 * Hashtags ready to post: the leading `#` added, duplicates (case-insensitive) and all-digit tags
 * (which platforms do not link) left out, at most `max`, in the order given.
 */
export function normaliseHashtags(candidates: readonly string[], max: number): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const raw of candidates) {
    if (out.length >= max) break;
    const tag = raw.trim().replace(/^#/, "");
    if (tag === "" || /^[\p{N}_]+$/u.test(tag)) continue;
    const key = tag.toLocaleLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(`#${tag}`);
  }
  return out;
}
