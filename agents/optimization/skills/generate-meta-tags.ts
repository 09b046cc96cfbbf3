/**
 * Title tags and meta descriptions fitted to the search-result width (`content.meta_tags`).
 *
 * Deterministic: no model, the same request always gets the same answer. Widths are Arial advance
 * widths summed without kerning (meta/measure.ts): titles at 20 px against 580 px, descriptions at
 * 14 px against 920 px, as desktop results draw them (both limits and the minimums configurable).
 *
 * Rules, per page:
 * 1. The keyword is found the way a reader would see it (meta/text.ts): its words in order, case,
 *    accents, plural `s` and punctuation ignored, one connecting word (in, near, of, …) allowed
 *    between two of them — "assisted living austin" is in "Assisted Living in Austin, TX".
 * 2. Title candidates: the heading (HEADING); the heading then the secondary keywords it lacks,
 *    as many as fit (HEADING_WITH_TERMS); when the heading does not start with the keyword, the
 *    keyword first (as the heading phrases it, else title-cased) then the rest of the heading
 *    (KEYWORD_LED); the title-cased keyword then the secondary keywords (KEYWORD_WITH_TERMS).
 *    The brand follows after the separator when the whole title still fits, and is dropped
 *    (never cut) otherwise; a separator without spaces gets one on each side. A title that
 *    overflows without the brand is cut after the last whole word that fits with "…", dropping
 *    trailing separators and small words first.
 * 3. Description candidates, from the content's first 5,000 characters split into sentences
 *    (St., Ft., Dr. and initials do not end one): whole leading sentences while they fit
 *    (LEAD_SENTENCES, the first one cut when it overflows alone), the same filled up with the
 *    next sentence cut to the width; the sentences from the first one holding the keyword
 *    (KEYWORD_SENTENCE); the heading as a sentence then the leading sentences, when the first
 *    sentence lacks the keyword (HEADING_AND_LEAD); the keyword then the leading sentences when
 *    no candidate holds it yet (KEYWORD_LED). A page without content gets two fixed sentences
 *    built from its heading and secondary keywords (TEMPLATE).
 * 4. Score, 0 to 1: 0.45 × keyword (0 when absent; 1 − offset/limit for titles and
 *    1 − offset/(2 × limit) for descriptions, the offset measured in pixels before the keyword)
 *    + 0.30 × width use (full credit from 75% of the limit for titles, 65% for descriptions;
 *    0.5 for a current tag over the limit) + 0.15 when neither cut nor over the limit + 0.05 ×
 *    the share of secondary keywords present (full when there are none) + 0.05 when a title
 *    carries the brand (or none was given; always for descriptions). Best first; ties go to the
 *    uncut, then the wider, then the alphabetically first text.
 * 5. Warnings: MISSING_KEYWORD; KEYWORD_LATE past a third of the title width or half of the
 *    description width; TOO_SHORT under the minimum (200 px titles, 400 px descriptions); TOO_LONG
 *    over the limit (current tags only, candidates always fit); TRUNCATED; BRAND_OMITTED (titles);
 *    DUPLICATE on a page's best tag or current tag when another page of the request has the same
 *    text (case and spacing ignored).
 * 6. Across the batch, in request order: a page whose best title (description) is already some
 *    earlier page's best takes its next candidate no earlier page took — keeping the keyword if
 *    the best had it; what stays identical is reported in duplicate_title_urls /
 *    duplicate_description_urls on every page concerned.
 */
import { create } from "@bufbuild/protobuf";
import {
  type GenerateMetaTagsRequest,
  GenerateMetaTagsRequestSchema,
  type GenerateMetaTagsResponse,
  GenerateMetaTagsResponseSchema,
  type MetaCandidate,
  MetaCandidateSchema,
  MetaCandidateSource,
  type MetaTagPage,
  MetaWarning,
} from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { checkContract, InvalidInputError } from "../../../lib/errors/index.ts";
import {
  descriptionFontPx,
  type Fitted,
  fitsUnits,
  fitToWidth,
  titleFontPx,
  unitsToPx,
  widthUnits,
} from "../meta/measure.ts";
import {
  acronyms,
  asSentence,
  capitalised,
  charCount,
  englishList,
  inSentence,
  matchWords,
  normWords,
  sentences,
  squash,
  titleCase,
  tokens,
} from "../meta/text.ts";

/** Defaults the contract names for zero values. */
export const metaDefaults = {
  maxTitleWidthPx: 580,
  maxDescriptionWidthPx: 920,
  minTitleWidthPx: 200,
  minDescriptionWidthPx: 400,
  titleSeparator: " | ",
  candidatesPerPage: 3,
} as const;

/** Characters of content read for description candidates (a description is a few hundred at most). */
const contentWindow = 5000;

type Kind = "title" | "description";

interface Settings {
  brand: string;
  separator: string;
  limit: Record<Kind, number>;
  min: Record<Kind, number>;
  perPage: number;
}

interface Scored {
  text: string;
  /** Case- and spacing-insensitive form, for duplicates. */
  key: string;
  fontPx: number;
  limitPx: number;
  units: number;
  untruncatedUnits: number;
  truncated: boolean;
  exceeds: boolean;
  keywordOffset: number;
  score: number;
  source: MetaCandidateSource;
  warnings: MetaWarning[];
}

const fontOf: Record<Kind, number> = { title: titleFontPx, description: descriptionFontPx };
const fullWidthShare: Record<Kind, number> = { title: 0.75, description: 0.65 };
const lateShare: Record<Kind, number> = { title: 1 / 3, description: 1 / 2 };

const keyOf = (text: string): string => squash(text).toLowerCase();
const round4 = (x: number): number => Math.round(x * 10_000) / 10_000;

/** The request's settings with the contract's defaults; checks what protovalidate cannot. */
function settingsOf(req: GenerateMetaTagsRequest): Settings {
  const limit = {
    title: req.maxTitleWidthPx || metaDefaults.maxTitleWidthPx,
    description: req.maxDescriptionWidthPx || metaDefaults.maxDescriptionWidthPx,
  };
  const min = {
    title: req.minTitleWidthPx || metaDefaults.minTitleWidthPx,
    description: req.minDescriptionWidthPx || metaDefaults.minDescriptionWidthPx,
  };
  if (min.title >= limit.title) {
    throw new InvalidInputError("min_title_width_px", `must be below the title limit (${limit.title} px)`);
  }
  if (min.description >= limit.description) {
    throw new InvalidInputError(
      "min_description_width_px",
      `must be below the description limit (${limit.description} px)`,
    );
  }
  const sep = req.titleSeparator === "" ? metaDefaults.titleSeparator : req.titleSeparator;
  const separator = sep.trim() === "" ? " " : /^\s|\s$/u.test(sep) ? sep : ` ${sep} `;
  return {
    brand: squash(req.brandName),
    separator,
    limit,
    min,
    perPage: req.candidatesPerPage || metaDefaults.candidatesPerPage,
  };
}

/** Refuses pages whose text would give nothing to work with, and repeated URLs. */
function checkPages(pages: readonly MetaTagPage[]): void {
  const seen = new Map<string, number>();
  pages.forEach((p, i) => {
    const first = seen.get(p.url);
    if (first !== undefined) throw new InvalidInputError(`pages[${i}].url`, `repeats pages[${first}].url`);
    seen.set(p.url, i);
    if (normWords(p.targetKeyword).length === 0) {
      throw new InvalidInputError(`pages[${i}].target_keyword`, "must contain a letter or digit");
    }
    if (squash(p.heading) === "") throw new InvalidInputError(`pages[${i}].heading`, "must not be blank");
    p.secondaryKeywords.forEach((k, j) => {
      if (normWords(k).length === 0) {
        throw new InvalidInputError(`pages[${i}].secondary_keywords[${j}]`, "must contain a letter or digit");
      }
    });
  });
}

/** What scoring needs to know about a page. */
interface PageContext {
  keyword: string;
  keywordWords: string[];
  secondary: string[];
  secondaryWords: string[][];
  brand: string;
}

/** Measures, scores and flags one candidate. */
function evaluate(
  kind: Kind,
  fitted: Fitted,
  source: MetaCandidateSource,
  page: PageContext,
  s: Settings,
  current = false,
): Scored {
  const fontPx = fontOf[kind];
  const limitPx = s.limit[kind];
  const px = unitsToPx(fitted.units, fontPx);
  const exceeds = current ? !fitsUnits(fitted.units, fontPx, limitPx) : fitted.exceeds;
  const words = tokens(fitted.text);
  const match = matchWords(words, page.keywordWords);
  const warnings: MetaWarning[] = [];
  let keywordScore = 0;
  let keywordOffset = -1;
  if (match === undefined) warnings.push(MetaWarning.MISSING_KEYWORD);
  else {
    const before = fitted.text.slice(0, match.start);
    keywordOffset = charCount(before);
    const offsetPx = unitsToPx(widthUnits(before), fontPx);
    keywordScore = Math.max(0, 1 - (kind === "title" ? offsetPx / limitPx : offsetPx / (2 * limitPx)));
    if (offsetPx > limitPx * lateShare[kind]) warnings.push(MetaWarning.KEYWORD_LATE);
  }
  if (px < s.min[kind]) warnings.push(MetaWarning.TOO_SHORT);
  if (exceeds) warnings.push(MetaWarning.TOO_LONG);
  if (fitted.truncated) warnings.push(MetaWarning.TRUNCATED);
  if (kind === "title" && page.brand !== "" && !fitted.text.toLowerCase().includes(page.brand.toLowerCase())) {
    warnings.push(MetaWarning.BRAND_OMITTED);
  }
  const widthScore = exceeds ? 0.5 : Math.min(1, px / (fullWidthShare[kind] * limitPx));
  const clean = fitted.truncated || exceeds ? 0 : 1;
  const terms =
    page.secondary.length === 0
      ? 1
      : page.secondaryWords.filter((t) => matchWords(words, t) !== undefined).length / page.secondary.length;
  const branded = kind === "description" || !warnings.includes(MetaWarning.BRAND_OMITTED) ? 1 : 0;
  return {
    text: fitted.text,
    key: keyOf(fitted.text),
    fontPx,
    limitPx,
    units: fitted.units,
    untruncatedUnits: fitted.untruncatedUnits,
    truncated: fitted.truncated,
    exceeds,
    keywordOffset,
    score: round4(0.45 * keywordScore + 0.3 * widthScore + 0.15 * clean + 0.05 * terms + 0.05 * branded),
    source,
    warnings,
  };
}

/** Best first: score, then uncut, then wider, then text. */
function byRank(a: Scored, b: Scored): number {
  return (
    b.score - a.score ||
    Number(a.truncated) - Number(b.truncated) ||
    b.units - a.units ||
    (a.text < b.text ? -1 : a.text > b.text ? 1 : 0)
  );
}

/** Candidates of one page, best first, each text once. */
interface PageResult {
  url: string;
  titles: Scored[];
  descriptions: Scored[];
  currentTitle: Scored | undefined;
  currentDescription: Scored | undefined;
}

function titleCandidates(page: MetaTagPage, ctx: PageContext, cased: Map<string, string>, s: Settings): Scored[] {
  const limit = s.limit.title;
  const fits = (t: string): boolean => fitsUnits(widthUnits(t), titleFontPx, limit);
  const brand = ctx.brand;
  const hasBrand = (t: string): boolean => brand === "" || t.toLowerCase().includes(brand.toLowerCase());
  // The brand follows when the whole title still fits; otherwise it is dropped rather than cut.
  const branded = (base: string): string => {
    if (hasBrand(base)) return base;
    const full = `${base}${s.separator}${brand}`;
    return fits(full) ? full : base;
  };
  // `lead: term, term` with as many terms as fit — with the brand if at least one fits with it.
  const withTerms = (lead: string, terms: readonly string[]): string | undefined => {
    for (const withBrand of hasBrand(lead) ? [false] : [true, false]) {
      const tail = withBrand ? `${s.separator}${brand}` : "";
      let kept: string[] = [];
      for (const t of terms) {
        if (fits(`${lead}: ${[...kept, t].join(", ")}${tail}`)) kept = [...kept, t];
      }
      if (kept.length > 0) return `${lead}: ${kept.join(", ")}${tail}`;
    }
    return undefined;
  };

  const heading = squash(page.heading);
  const headingWords = tokens(heading);
  const match = matchWords(headingWords, ctx.keywordWords);
  const keywordTitle = titleCase(ctx.keyword, cased);
  // Secondary keywords a text lacks (the text tokenised once for all of them).
  const missingFrom = (words: ReturnType<typeof tokens>): string[] =>
    ctx.secondary.filter((_, i) => matchWords(words, ctx.secondaryWords[i] as string[]) === undefined);
  const bases: Array<[string, MetaCandidateSource]> = [[branded(heading), MetaCandidateSource.HEADING]];
  const headingTerms = withTerms(heading, missingFrom(headingWords).map(capitalised));
  if (headingTerms !== undefined) bases.push([headingTerms, MetaCandidateSource.HEADING_WITH_TERMS]);
  if (match === undefined || match.start > 0) {
    const lead = match === undefined ? keywordTitle : capitalised(heading.slice(match.start, match.end));
    const rest =
      match === undefined
        ? heading
        : `${heading.slice(0, match.start)} ${heading.slice(match.end)}`
            .replace(/\s+/gu, " ")
            .replace(/^[\s,;:|\u2013\u2014-]+|[\s,;:|\u2013\u2014-]+$/gu, "");
    if (normWords(rest).length > 0)
      bases.push([branded(`${lead}: ${capitalised(rest)}`), MetaCandidateSource.KEYWORD_LED]);
  }
  const keywordTerms = withTerms(
    keywordTitle,
    missingFrom(tokens(keywordTitle)).map((t) => titleCase(t, cased)),
  );
  if (keywordTerms !== undefined) bases.push([keywordTerms, MetaCandidateSource.KEYWORD_WITH_TERMS]);
  return unique(bases.map(([t, src]) => evaluate("title", fitToWidth(t, titleFontPx, limit), src, ctx, s)));
}

function descriptionCandidates(page: MetaTagPage, ctx: PageContext, cased: Map<string, string>, s: Settings): Scored[] {
  const limit = s.limit.description;
  const fits = (t: string): boolean => fitsUnits(widthUnits(t), descriptionFontPx, limit);
  const toWidth = (t: string): Fitted => fitToWidth(t, descriptionFontPx, limit);
  const heading = squash(page.heading);
  const windowed = page.content.length > contentWindow;
  let sents = sentences(squash(windowed ? page.content.slice(0, contentWindow) : page.content));
  // A window that cut the content mid-sentence leaves that sentence out.
  if (windowed && sents.length > 1) sents = sents.slice(0, -1);

  const out: Scored[] = [];
  const add = (f: Fitted, src: MetaCandidateSource): void => {
    out.push(evaluate("description", f, src, ctx, s));
  };
  // `prefix` then whole sentences from `from` while they fit; the first cut to the width when
  // not even it fits.
  const pack = (prefix: string, from: number): { fitted: Fitted; next: number } | undefined => {
    const first = sents[from];
    if (first === undefined) return undefined;
    let text = prefix === "" ? first : `${prefix} ${first}`;
    if (!fits(text)) return { fitted: toWidth(text), next: from + 1 };
    let next = from + 1;
    while (next < sents.length && fits(`${text} ${sents[next]}`)) text = `${text} ${sents[next++]}`;
    const units = widthUnits(text);
    return { fitted: { text, units, untruncatedUnits: units, truncated: false, exceeds: false }, next };
  };

  if (sents.length > 0) {
    const lead = pack("", 0);
    if (lead !== undefined) {
      add(lead.fitted, MetaCandidateSource.LEAD_SENTENCES);
      const following = sents[lead.next];
      if (!lead.fitted.truncated && following !== undefined) {
        const filled = toWidth(`${lead.fitted.text} ${following}`);
        // Only when at least a word of the next sentence made it.
        if (filled.text.length > lead.fitted.text.length + 2) add(filled, MetaCandidateSource.LEAD_SENTENCES);
      }
    }
    const k = sents.findIndex((x) => matchWords(tokens(x), ctx.keywordWords) !== undefined);
    const fromKeyword = k > 0 ? pack("", k) : undefined;
    if (fromKeyword !== undefined) add(fromKeyword.fitted, MetaCandidateSource.KEYWORD_SENTENCE);
    if (k !== 0) {
      const headed = pack(asSentence(heading), 0);
      if (headed !== undefined) add(headed.fitted, MetaCandidateSource.HEADING_AND_LEAD);
    }
    if (!out.some((c) => c.keywordOffset >= 0)) {
      const led = pack(`${titleCase(ctx.keyword, cased)}:`, 0);
      if (led !== undefined) add(led.fitted, MetaCandidateSource.KEYWORD_LED);
    }
  } else {
    // No content: two fixed sentences from the heading and the secondary keywords, with as many
    // of the terms as fit.
    const headingWords = tokens(heading);
    const match = matchWords(headingWords, ctx.keywordWords);
    const phrase = match === undefined ? ctx.keyword : inSentence(heading.slice(match.start, match.end));
    const terms = ctx.secondary
      .filter((_, i) => matchWords(headingWords, ctx.secondaryWords[i] as string[]) === undefined)
      .map(inSentence);
    const withTerms = (make: (list: readonly string[]) => string, bare: string): string => {
      let best = bare;
      for (let n = 1; n <= terms.length; n++) {
        const t = make(terms.slice(0, n));
        if (!fits(t)) break;
        best = t;
      }
      return best;
    };
    const h = asSentence(heading);
    add(toWidth(withTerms((l) => `${h} Compare ${l.join(", ")} and more.`, h)), MetaCandidateSource.TEMPLATE);
    add(
      toWidth(
        withTerms(
          (l) => `Looking for ${phrase}? Compare ${englishList(l)} and find the right fit.`,
          `Looking for ${phrase}? Find the right fit.`,
        ),
      ),
      MetaCandidateSource.TEMPLATE,
    );
  }
  return unique(out);
}

/** `list` best first with each text (case and spacing ignored) once. */
function unique(list: Scored[]): Scored[] {
  const seen = new Set<string>();
  return list.sort(byRank).filter((c) => {
    if (seen.has(c.key)) return false;
    seen.add(c.key);
    return true;
  });
}

/** The page's current tag measured as it is, or undefined when it has none. */
function current(kind: Kind, text: string, ctx: PageContext, s: Settings): Scored | undefined {
  const t = squash(text);
  if (t === "") return undefined;
  const units = widthUnits(t);
  return evaluate(
    kind,
    { text: t, units, untruncatedUnits: units, truncated: false, exceeds: false },
    MetaCandidateSource.CURRENT,
    ctx,
    s,
    true,
  );
}

/**
 * Rule 6: in request order, a page whose best is an earlier page's best takes its next candidate
 * nobody took (keeping the keyword when the best had it). Returns the page indexes by best text.
 */
function spreadBest(lists: Scored[][]): Map<string, number[]> {
  const holders = new Map<string, number[]>();
  lists.forEach((list, i) => {
    const best = list[0];
    if (best === undefined) return;
    if (holders.has(best.key)) {
      const alt = list.findIndex((c) => !holders.has(c.key) && (best.keywordOffset < 0 || c.keywordOffset >= 0));
      if (alt > 0) list.unshift(...list.splice(alt, 1));
    }
    const key = (list[0] as Scored).key;
    holders.set(key, [...(holders.get(key) ?? []), i]);
  });
  return holders;
}

/** Page indexes by text of the given tags (one per page, undefined skipped). */
function holdersOf(tags: ReadonlyArray<Scored | undefined>): Map<string, number[]> {
  const out = new Map<string, number[]>();
  tags.forEach((t, i) => {
    if (t !== undefined) out.set(t.key, [...(out.get(t.key) ?? []), i]);
  });
  return out;
}

/** Other pages holding the same text as page `i`'s `tag`; flags the tag DUPLICATE when there are any. */
function othersWith(tag: Scored | undefined, i: number, holders: Map<string, number[]>): number[] {
  if (tag === undefined) return [];
  const others = (holders.get(tag.key) ?? []).filter((j) => j !== i);
  if (others.length > 0 && !tag.warnings.includes(MetaWarning.DUPLICATE)) tag.warnings.push(MetaWarning.DUPLICATE);
  return others;
}

function toMessage(c: Scored): MetaCandidate {
  return create(MetaCandidateSchema, {
    text: c.text,
    pixelWidth: unitsToPx(c.units, c.fontPx),
    maxPixelWidth: c.limitPx,
    untruncatedPixelWidth: unitsToPx(c.untruncatedUnits, c.fontPx),
    truncated: c.truncated,
    exceedsLimit: c.exceeds,
    characterCount: charCount(c.text),
    keywordOffset: c.keywordOffset,
    score: c.score,
    source: c.source,
    warnings: c.warnings,
  });
}

/** Generates title and description candidates for every page of the request (see the rules above). */
export function generateMetaTags(req: GenerateMetaTagsRequest): GenerateMetaTagsResponse {
  // Callers in the same process may come without the server's validation interceptor.
  checkContract(GenerateMetaTagsRequestSchema, req);
  const s = settingsOf(req);
  checkPages(req.pages);

  const results: PageResult[] = req.pages.map((page) => {
    const secondary = [...new Map(page.secondaryKeywords.map((k) => [normWords(k).join(" "), squash(k)])).values()];
    const ctx: PageContext = {
      keyword: squash(page.targetKeyword),
      keywordWords: normWords(page.targetKeyword),
      secondary,
      secondaryWords: secondary.map(normWords),
      brand: s.brand,
    };
    // Acronyms as the page writes them ("TX"), for title-casing the keyword.
    const cased = acronyms(`${page.heading} ${page.content.slice(0, contentWindow)}`);
    return {
      url: page.url,
      titles: titleCandidates(page, ctx, cased, s),
      descriptions: descriptionCandidates(page, ctx, cased, s),
      currentTitle: current("title", page.currentTitle, ctx, s),
      currentDescription: current("description", page.currentDescription, ctx, s),
    };
  });

  const titleHolders = spreadBest(results.map((r) => r.titles));
  const descriptionHolders = spreadBest(results.map((r) => r.descriptions));
  const currentTitleHolders = holdersOf(results.map((r) => r.currentTitle));
  const currentDescriptionHolders = holdersOf(results.map((r) => r.currentDescription));
  const urls = (idx: number[]): string[] => idx.map((j) => (results[j] as PageResult).url);

  return create(GenerateMetaTagsResponseSchema, {
    pages: results.map((r, i) => {
      const duplicateTitles = urls(othersWith(r.titles[0], i, titleHolders));
      const duplicateDescriptions = urls(othersWith(r.descriptions[0], i, descriptionHolders));
      othersWith(r.currentTitle, i, currentTitleHolders);
      othersWith(r.currentDescription, i, currentDescriptionHolders);
      return {
        url: r.url,
        titleCandidates: r.titles.slice(0, s.perPage).map(toMessage),
        descriptionCandidates: r.descriptions.slice(0, s.perPage).map(toMessage),
        ...(r.currentTitle === undefined ? {} : { currentTitle: toMessage(r.currentTitle) }),
        ...(r.currentDescription === undefined ? {} : { currentDescription: toMessage(r.currentDescription) }),
        duplicateTitleUrls: duplicateTitles,
        duplicateDescriptionUrls: duplicateDescriptions,
      };
    }),
  });
}
