/**
 * Terms, TF-IDF, Jaccard and heading matching for the competitor analysis.
 *
 * Terms are a page's content words (lib/search's wink-nlp tokenisation: lower-cased, stop words,
 * punctuation and numbers removed) and the bigrams of adjacent content words within one text block
 * ("memory care"; "cost of care" gives no bigram, because the stop word "of" sits between). Words
 * are reduced to their Porter2 stems, not their lemmas: wink-nlp's lemma depends on the part of
 * speech it tags, so "living" is "living" in "assisted living costs" but "live" in the title
 * "Assisted Living in Austin", which would split one term in two; a stem is the same wherever the
 * word stands ("communities" and "community" are both "communiti"). A term is shown in its most
 * frequent spelling across the pages ("assisted living", not the stems "assist live").
 *
 * TF-IDF over the N pages analysed (ours and the competitors' together): weight = tf × idf with tf
 * the raw count of the term on the page and the smoothed idf(t) = ln((1 + N) / (1 + df(t))) + 1,
 * df(t) the number of pages using t — scikit-learn's TfidfVectorizer default, so a term on every
 * page still weighs a little and a two-page corpus works — then each page's vector is scaled to
 * length 1, so long and short pages compare.
 */
import { contentWordRuns, contentWords } from "../../../lib/search/index.ts";
import { collapse, type Heading } from "./page-extract.ts";

/** The terms of one page. */
export interface PageTerms {
  /** Term (stem, or two stems joined by a space) → occurrences. */
  readonly counts: ReadonlyMap<string, number>;
  /** The unigram terms: the page's term set for Jaccard similarity. */
  readonly unigrams: ReadonlySet<string>;
  /** Term → spelling (lower-cased words as written) → occurrences. */
  readonly spellings: ReadonlyMap<string, ReadonlyMap<string, number>>;
}

/** Terms of the text blocks of one page; bigrams never span two blocks. */
export function pageTerms(blocks: readonly string[]): PageTerms {
  const counts = new Map<string, number>();
  const unigrams = new Set<string>();
  const spellings = new Map<string, Map<string, number>>();
  const add = (term: string, spelling: string): void => {
    counts.set(term, (counts.get(term) ?? 0) + 1);
    let s = spellings.get(term);
    if (s === undefined) {
      s = new Map();
      spellings.set(term, s);
    }
    s.set(spelling, (s.get(spelling) ?? 0) + 1);
  };
  for (const block of blocks) {
    for (const run of contentWordRuns(block, { form: "stem", numbers: false })) {
      for (let i = 0; i < run.length; i++) {
        const w = run[i] as (typeof run)[number];
        add(w.term, w.text);
        unigrams.add(w.term);
        const next = run[i + 1];
        if (next !== undefined) add(`${w.term} ${next.term}`, `${w.text} ${next.text}`);
      }
    }
  }
  return { counts, unigrams, spellings };
}

/** A term → spelling function: each term's most frequent spelling over `pages` (ties: alphabetical). */
export function spellingsOf(pages: readonly PageTerms[]): (term: string) => string {
  const totals = new Map<string, Map<string, number>>();
  for (const p of pages) {
    for (const [term, s] of p.spellings) {
      let t = totals.get(term);
      if (t === undefined) {
        t = new Map();
        totals.set(term, t);
      }
      for (const [spelling, n] of s) t.set(spelling, (t.get(spelling) ?? 0) + n);
    }
  }
  const cache = new Map<string, string>();
  return (term) => {
    let best = cache.get(term);
    if (best !== undefined) return best;
    let bestCount = -1;
    for (const [spelling, n] of totals.get(term) ?? []) {
      if (n > bestCount || (n === bestCount && spelling < (best as string))) {
        best = spelling;
        bestCount = n;
      }
    }
    best ??= term;
    cache.set(term, best);
    return best;
  };
}

/** A sparse TF-IDF vector of length 1: term → weight. */
export type TfidfVector = ReadonlyMap<string, number>;

/** TF-IDF vectors of term counts, with idf over exactly these documents (see the file comment). */
export function tfidfVectors(documents: readonly ReadonlyMap<string, number>[]): TfidfVector[] {
  const df = new Map<string, number>();
  for (const doc of documents) for (const t of doc.keys()) df.set(t, (df.get(t) ?? 0) + 1);
  const n = documents.length;
  return documents.map((doc) => {
    const v = new Map<string, number>();
    let norm = 0;
    for (const [t, tf] of doc) {
      const w = tf * (Math.log((1 + n) / (1 + (df.get(t) ?? 0))) + 1);
      v.set(t, w);
      norm += w * w;
    }
    norm = Math.sqrt(norm);
    if (norm > 0) for (const [t, w] of v) v.set(t, w / norm);
    return v;
  });
}

/** Cosine similarity of two length-1 vectors, 0–1 (0 when either is empty). */
export function cosine(a: TfidfVector, b: TfidfVector): number {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let dot = 0;
  for (const [t, w] of small) dot += w * (large.get(t) ?? 0);
  // Rounding can push the dot product of identical vectors a hair past 1.
  return Math.min(1, Math.max(0, dot));
}

/** |a ∩ b|. */
export function intersectionSize(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let n = 0;
  for (const x of small) if (large.has(x)) n++;
  return n;
}

/** Jaccard similarity |a ∩ b| / |a ∪ b|; 0 when both are empty (two empty pages share nothing). */
export function jaccard(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  const inter = intersectionSize(a, b);
  const union = a.size + b.size - inter;
  return union === 0 ? 0 : inter / union;
}

/** A heading prepared for matching. */
export interface HeadingKey {
  /** The heading. */
  readonly heading: Heading;
  /** Stems of its content words, numbers included ("Top 10 costs" → {top, 10, cost}). */
  readonly stems: ReadonlySet<string>;
  /** Lower-cased text, whitespace collapsed: compared when a heading has no content words. */
  readonly normalized: string;
}

/** Prepares a heading for {@link headingsMatch}. */
export function headingKey(heading: Heading): HeadingKey {
  return {
    heading,
    stems: new Set(contentWords(heading.text, { form: "stem", numbers: true })),
    normalized: collapse(heading.text.toLowerCase()),
  };
}

/**
 * Two headings are a close match when the Jaccard similarity of their stem sets reaches
 * `threshold` ("Assisted Living Costs in Austin" and "Austin assisted living cost": 1.0;
 * "Memory care" and "Memory care pricing": 0.67); headings made only of stop words ("What to
 * do?") match only when their texts are equal.
 */
export function headingsMatch(a: HeadingKey, b: HeadingKey, threshold: number): boolean {
  if (a.stems.size === 0 || b.stems.size === 0) return a.normalized === b.normalized;
  return jaccard(a.stems, b.stems) >= threshold;
}
