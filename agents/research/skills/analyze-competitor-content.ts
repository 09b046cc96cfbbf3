/**
 * Competitor content analysis and gap identification (`content.competitor_gap_analysis`).
 *
 * Method: each page is given as HTML or plain text, or by URL and then fetched robots-aware and
 * within limits (pages/page-fetch.ts: robots.txt once per origin per RFC 9309, a timeout per
 * request, a byte cap, at most five redirects, http and https only; each distinct URL once, four
 * at a time). From each page (pages/page-extract.ts) come its title, its h1–h3 outline, its main
 * text without navigation, header, footer, scripts and styles, and its word count; from the text,
 * its terms (pages/page-terms.ts): content words and their bigrams, stop words removed, stemmed.
 *
 * Over the union corpus of every page analysed, ours and the competitors', each page gets a TF-IDF
 * vector (raw tf × smoothed idf ln((1 + N) / (1 + df)) + 1, scaled to length 1). A term gap is a
 * term some competitor page uses whose mean weight over the competitor pages exceeds its mean
 * weight over our pages (a page without the term counts 0), largest difference first. Each
 * (our page, competitor page) pair gets the Jaccard similarity of the two pages' word sets, the
 * cosine of the two vectors, and the competitor's headings that none of our page's headings
 * matches: two headings match when the Jaccard similarity of their word (stem) sets is at least
 * `heading_similarity` (0.5 unless given). The summary lists the competitor headings none of our
 * pages covers (grouped by the same match), the gap terms none of our pages uses, structure
 * averages and the gaps in plain words.
 *
 * A page that cannot be read (robots.txt disallows it, an HTTP error, a timeout, not HTML) is
 * reported in `pages` and `fetch_errors` and left out of the analysis; it never fails the call.
 * Fetching stops early when the call's deadline is near, and the pages not fetched by then are
 * reported as timed out.
 */
import { create } from "@bufbuild/protobuf";
import {
  type AnalyzeCompetitorContentRequest,
  AnalyzeCompetitorContentRequestSchema,
  type AnalyzeCompetitorContentResponse,
  AnalyzeCompetitorContentResponseSchema,
  type HeadingGap,
  HeadingGapSchema,
  PageFailure,
  type PageInput,
  type PageOverlap,
  PageOverlapSchema,
  PageRole,
  type PageStructure,
  PageStructureSchema,
  type TermGap,
  TermGapSchema,
} from "../../../gen/mesh/research/v1/research_service_pb.ts";
import { checkContract } from "../../../lib/errors/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import { extractHtml, extractText, type PageContent } from "../pages/page-extract.ts";
import {
  createRobotsGate,
  defaultFetchLimits,
  type FetchedPage,
  type FetchFailure,
  type FetchLimits,
  type FetchSignals,
  fetchPage,
} from "../pages/page-fetch.ts";
import {
  cosine,
  type HeadingKey,
  headingKey,
  headingsMatch,
  intersectionSize,
  jaccard,
  type PageTerms,
  pageTerms,
  spellingsOf,
  type TfidfVector,
  tfidfVectors,
} from "../pages/page-terms.ts";

/** What the skill needs besides the request. */
export interface AnalyzeCompetitorContentDeps {
  /** Fetch limits; {@link defaultFetchLimits} unless given. */
  readonly limits?: FetchLimits;
  /** Pages fetched at once; 4 unless given. */
  readonly concurrency?: number;
}

/** Heading-match threshold when the request gives none. */
export const DEFAULT_HEADING_SIMILARITY = 0.5;
/** Gap terms returned when the request gives no number. */
export const DEFAULT_MAX_TERMS = 50;
/** Competitor topics (headings) the summary lists at most. */
const MAX_MISSING_TOPICS = 100;
/** Gap terms unused by any of our pages the summary lists at most. */
const MAX_MISSING_TERMS = 20;
/** Heaviest terms listed per page. */
const TOP_TERMS_PER_PAGE = 10;

const failureOf: Record<FetchFailure, PageFailure> = {
  robots: PageFailure.ROBOTS_DISALLOWED,
  "http-status": PageFailure.HTTP_STATUS,
  timeout: PageFailure.TIMEOUT,
  network: PageFailure.NETWORK,
  redirect: PageFailure.REDIRECT,
  "unsupported-content": PageFailure.UNSUPPORTED_CONTENT,
};

/** One page of the request and, once read, what it holds. */
interface Page {
  /** The URL given, else `our_pages[i]` / `competitor_pages[i]`. */
  readonly id: string;
  readonly role: PageRole;
  readonly input: PageInput;
  fetched?: FetchedPage;
  content?: PageContent | undefined;
  terms?: PageTerms;
  headingKeys?: HeadingKey[];
  vector?: TfidfVector;
}

/** A fetched page: how the fetch went (without the body) and, when it was read, its content. */
interface Fetched {
  readonly fetched: FetchedPage;
  readonly content: PageContent | undefined;
}

/**
 * Fetches each distinct URL once, `concurrency` at a time, and reads each body as soon as it
 * arrives, so at most `concurrency` bodies are held at once, not every page's.
 */
async function fetchAll(
  urls: readonly string[],
  limits: FetchLimits,
  concurrency: number,
  signals: FetchSignals,
): Promise<Map<string, Fetched>> {
  const gate = createRobotsGate(limits, signals);
  const results = new Map<string, Fetched>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < urls.length) {
      const url = urls[next++] as string;
      const f = await fetchPage(url, limits, gate, signals);
      const content = f.body === undefined ? undefined : f.plainText ? extractText(f.body) : extractHtml(f.body);
      results.set(url, { fetched: { ...f, body: undefined }, content });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, urls.length) }, worker));
  return results;
}

/** Headings with the same normalised text kept once, first occurrence first. */
function distinctHeadings(keys: readonly HeadingKey[]): HeadingKey[] {
  const seen = new Set<string>();
  return keys.filter((k) => {
    if (seen.has(k.normalized)) return false;
    seen.add(k.normalized);
    return true;
  });
}

const mean = (xs: readonly number[]): number => (xs.length === 0 ? 0 : xs.reduce((s, x) => s + x, 0) / xs.length);
const headingCount = (p: Page): number => p.content?.headings.length ?? 0;
const round = (x: number): number => Math.round(x);

/** Runs the competitor analysis on a request (validated against the contract first). */
export async function analyzeCompetitorContent(
  deps: AnalyzeCompetitorContentDeps,
  req: AnalyzeCompetitorContentRequest,
  ctx?: CallContext,
): Promise<AnalyzeCompetitorContentResponse> {
  checkContract(AnalyzeCompetitorContentRequestSchema, req);
  const limits = deps.limits ?? defaultFetchLimits;
  const threshold = req.headingSimilarity || DEFAULT_HEADING_SIMILARITY;
  const maxTerms = req.maxTerms || DEFAULT_MAX_TERMS;

  const pages: Page[] = [
    ...req.ourPages.map((input, i) => ({ id: input.url || `our_pages[${i}]`, role: PageRole.OURS, input })),
    ...req.competitorPages.map((input, i) => ({
      id: input.url || `competitor_pages[${i}]`,
      role: PageRole.COMPETITOR,
      input,
    })),
  ];

  // Fetch the pages given only by URL; stop early when the call's deadline is near, keeping a
  // tenth of the remaining time (0.25–5 s) for the analysis and the answer.
  const toFetch = [...new Set(pages.filter((p) => p.input.html === "" && p.input.text === "").map((p) => p.input.url))];
  const stopper = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const remaining = ctx?.timeoutMs();
  if (remaining !== undefined) {
    const reserve = Math.min(5000, Math.max(250, remaining / 10));
    timer = setTimeout(() => stopper.abort(new Error("the call's deadline is near")), Math.max(0, remaining - reserve));
  }
  let fetched: Map<string, Fetched>;
  try {
    fetched = await fetchAll(toFetch, limits, deps.concurrency ?? 4, {
      call: ctx?.signal ?? new AbortController().signal,
      stop: stopper.signal,
    });
  } finally {
    clearTimeout(timer);
  }

  for (const p of pages) {
    if (p.input.html !== "") p.content = extractHtml(p.input.html);
    else if (p.input.text !== "") p.content = extractText(p.input.text);
    else {
      const f = fetched.get(p.input.url) as Fetched;
      p.fetched = f.fetched;
      p.content = f.content;
    }
    if (p.content !== undefined) {
      p.terms = pageTerms(p.content.blocks);
      p.headingKeys = p.content.headings.map(headingKey);
    }
  }

  const analysed = pages.filter((p) => p.terms !== undefined);
  const vectors = tfidfVectors(analysed.map((p) => (p.terms as PageTerms).counts));
  analysed.forEach((p, i) => {
    p.vector = vectors[i] as TfidfVector;
  });
  const spell = spellingsOf(analysed.map((p) => p.terms as PageTerms));
  const ours = analysed.filter((p) => p.role === PageRole.OURS);
  const theirs = analysed.filter((p) => p.role === PageRole.COMPETITOR);

  const termGaps = findTermGaps(ours, theirs, spell).slice(0, maxTerms);
  const overlaps = pairOverlaps(ours, theirs, threshold);
  const missingTopics = uncoveredHeadings(ours, theirs, threshold);
  const structures = pages.map((p) => pageStructure(p, spell));
  const failed = structures.filter((s) => s.failure !== PageFailure.UNSPECIFIED);
  const missingTerms = termGaps
    .filter((g) => g.ourPageCount === 0)
    .slice(0, MAX_MISSING_TERMS)
    .map((g) => g.term);

  const summary = {
    ourPagesAnalyzed: ours.length,
    competitorPagesAnalyzed: theirs.length,
    pagesFailed: failed.length,
    ourMeanWordCount: mean(ours.map((p) => (p.content as PageContent).wordCount)),
    competitorMeanWordCount: mean(theirs.map((p) => (p.content as PageContent).wordCount)),
    ourMeanHeadingCount: mean(ours.map(headingCount)),
    competitorMeanHeadingCount: mean(theirs.map(headingCount)),
    meanJaccard: mean(overlaps.map((o) => o.jaccard)),
    missingTopics,
    missingTerms,
    findings: [] as string[],
  };
  summary.findings = findings(summary, failed.length);

  return create(AnalyzeCompetitorContentResponseSchema, {
    termGaps,
    overlaps,
    fetchErrors: failed.map((s) => `${s.url}: ${s.error}`),
    pages: structures,
    summary,
  });
}

/** Terms whose mean competitor weight exceeds our mean weight, largest difference first. */
function findTermGaps(ours: readonly Page[], theirs: readonly Page[], spell: (t: string) => string): TermGap[] {
  const sums = new Map<string, { theirs: number; theirPages: number; ours: number; ourPages: number }>();
  for (const p of theirs) {
    for (const [t, w] of p.vector as TfidfVector) {
      const s = sums.get(t) ?? { theirs: 0, theirPages: 0, ours: 0, ourPages: 0 };
      s.theirs += w;
      s.theirPages++;
      sums.set(t, s);
    }
  }
  for (const p of ours) {
    for (const [t, w] of p.vector as TfidfVector) {
      const s = sums.get(t);
      if (s === undefined) continue; // no competitor uses it: not a gap
      s.ours += w;
      s.ourPages++;
    }
  }
  const gaps: TermGap[] = [];
  for (const [t, s] of sums) {
    const competitorWeight = s.theirs / theirs.length;
    const ourWeight = ours.length === 0 ? 0 : s.ours / ours.length;
    const gap = competitorWeight - ourWeight;
    if (gap <= 0) continue;
    gaps.push(
      create(TermGapSchema, {
        term: spell(t),
        competitorWeight,
        ourWeight,
        competitorPageCount: s.theirPages,
        ourPageCount: s.ourPages,
        gap,
      }),
    );
  }
  return gaps.sort(
    (a, b) => b.gap - a.gap || b.competitorPageCount - a.competitorPageCount || (a.term < b.term ? -1 : 1),
  );
}

/** Overlap of every (our page, competitor page) pair, our pages in request order, then theirs. */
function pairOverlaps(ours: readonly Page[], theirs: readonly Page[], threshold: number): PageOverlap[] {
  const out: PageOverlap[] = [];
  for (const o of ours) {
    const ot = o.terms as PageTerms;
    const oh = o.headingKeys as HeadingKey[];
    for (const c of theirs) {
      const ct = c.terms as PageTerms;
      const ch = distinctHeadings(c.headingKeys as HeadingKey[]);
      const missing = ch.filter((h) => !oh.some((k) => headingsMatch(h, k, threshold)));
      out.push(
        create(PageOverlapSchema, {
          ourUrl: o.id,
          competitorUrl: c.id,
          jaccard: jaccard(ot.unigrams, ct.unigrams),
          missingHeadings: missing.map((h) => h.heading.text),
          cosine: cosine(o.vector as TfidfVector, c.vector as TfidfVector),
          sharedTermCount: intersectionSize(ot.unigrams, ct.unigrams),
          headingCoverage: ch.length === 0 ? 1 : (ch.length - missing.length) / ch.length,
        }),
      );
    }
  }
  return out;
}

/**
 * Competitor headings no heading of any of our pages matches, grouped: a heading joins the first
 * group whose first heading it matches. Most competitor pages first, then first appearance.
 */
function uncoveredHeadings(ours: readonly Page[], theirs: readonly Page[], threshold: number): HeadingGap[] {
  const ourKeys = ours.flatMap((p) => p.headingKeys as HeadingKey[]);
  const groups: Array<{ lead: HeadingKey; urls: string[] }> = [];
  for (const c of theirs) {
    for (const h of distinctHeadings(c.headingKeys as HeadingKey[])) {
      if (ourKeys.some((k) => headingsMatch(h, k, threshold))) continue;
      const group = groups.find((g) => headingsMatch(h, g.lead, threshold));
      if (group === undefined) groups.push({ lead: h, urls: [c.id] });
      else if (!group.urls.includes(c.id)) group.urls.push(c.id);
    }
  }
  return groups
    .map((g, i) => ({ g, i }))
    .sort((a, b) => b.g.urls.length - a.g.urls.length || a.i - b.i)
    .slice(0, MAX_MISSING_TOPICS)
    .map(({ g }) =>
      create(HeadingGapSchema, {
        heading: g.lead.heading.text,
        level: g.lead.heading.level,
        competitorPageCount: g.urls.length,
        competitorUrls: g.urls,
      }),
    );
}

/** The structure (or failure) of one page. */
function pageStructure(p: Page, spell: (t: string) => string): PageStructure {
  const f = p.fetched;
  const base = {
    url: p.id,
    role: p.role,
    httpStatus: f?.status ?? 0,
    finalUrl: f?.finalUrl ?? "",
  };
  if (p.content === undefined) {
    const failure = f?.failure ?? "network";
    return create(PageStructureSchema, { ...base, failure: failureOf[failure], error: f?.error ?? "" });
  }
  const c = p.content;
  const atLevel = (l: number): number => c.headings.filter((h) => h.level === l).length;
  const top = [...(p.vector as TfidfVector)]
    .map(([t, weight]) => ({ term: spell(t), weight }))
    .sort((a, b) => b.weight - a.weight || (a.term < b.term ? -1 : 1))
    .slice(0, TOP_TERMS_PER_PAGE);
  return create(PageStructureSchema, {
    ...base,
    truncated: (f?.truncated ?? false) || c.truncated,
    title: c.title,
    headings: c.headings.map((h) => ({ level: h.level, text: h.text })),
    wordCount: c.wordCount,
    h1Count: atLevel(1),
    h2Count: atLevel(2),
    h3Count: atLevel(3),
    distinctTerms: (p.terms as PageTerms).counts.size,
    topTerms: top,
  });
}

/** The gaps in plain words, most important first. */
function findings(
  s: {
    ourPagesAnalyzed: number;
    competitorPagesAnalyzed: number;
    ourMeanWordCount: number;
    competitorMeanWordCount: number;
    ourMeanHeadingCount: number;
    competitorMeanHeadingCount: number;
    meanJaccard: number;
    missingTopics: readonly HeadingGap[];
    missingTerms: readonly string[];
  },
  failedCount: number,
): string[] {
  const out: string[] = [];
  const failedNote =
    failedCount > 0
      ? `${failedCount} page${failedCount === 1 ? "" : "s"} could not be analysed (see fetch_errors).`
      : "";
  if (s.ourPagesAnalyzed === 0 || s.competitorPagesAnalyzed === 0) {
    out.push(
      `No ${s.ourPagesAnalyzed === 0 ? "page of ours" : "competitor page"} could be analysed, so there is nothing to compare.`,
    );
    if (failedNote !== "") out.push(failedNote);
    return out;
  }
  if (s.missingTopics.length > 0) {
    const shown = s.missingTopics.slice(0, 5).map((t) => `"${t.heading}"`);
    const more = s.missingTopics.length > 5 ? ` and ${s.missingTopics.length - 5} more` : "";
    out.push(
      `Competitors cover ${s.missingTopics.length} topic${s.missingTopics.length === 1 ? "" : "s"} none of our pages has a heading for: ${shown.join(", ")}${more}.`,
    );
  }
  if (s.missingTerms.length > 0) {
    out.push(`Terms competitors use that none of our pages does: ${s.missingTerms.slice(0, 10).join(", ")}.`);
  }
  const ourWords = round(s.ourMeanWordCount);
  const theirWords = round(s.competitorMeanWordCount);
  if (theirWords > ourWords * 1.2) {
    out.push(
      `Competitor pages are longer: ${theirWords} words on average against our ${ourWords} (${theirWords - ourWords} more).`,
    );
  } else if (ourWords > theirWords * 1.2) {
    out.push(`Our pages are longer: ${ourWords} words on average against the competitors' ${theirWords}.`);
  } else {
    out.push(`Our pages are about as long as the competitors' (${ourWords} against ${theirWords} words on average).`);
  }
  const ourHeadings = s.ourMeanHeadingCount.toFixed(1);
  const theirHeadings = s.competitorMeanHeadingCount.toFixed(1);
  if (s.competitorMeanHeadingCount > s.ourMeanHeadingCount) {
    out.push(
      `Competitor pages have more structure: ${theirHeadings} headings (h1–h3) on average against our ${ourHeadings}.`,
    );
  } else {
    out.push(`Our pages have ${ourHeadings} headings (h1–h3) on average against the competitors' ${theirHeadings}.`);
  }
  out.push(`Mean term overlap (Jaccard) between our pages and competitor pages: ${s.meanJaccard.toFixed(2)}.`);
  if (failedNote !== "") out.push(failedNote);
  return out;
}
