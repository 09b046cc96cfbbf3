/**
 * Search-marketing primitives shared by agents: the organic click-through-rate curve and text
 * normalisation (wink-nlp lemmas or stems without stop words).
 */
import { LRUCache } from "lru-cache";
import model from "wink-eng-lite-web-model";
import winkNLP from "wink-nlp";

/**
 * Organic CTR by position 1–10: the shape public CTR studies report (position 1 takes roughly a
 * quarter of clicks, a steep fall to position 3, a long flat tail). Positions 11–20 fall linearly
 * from 1.2% to 0.5%; below 20, 0.1%; not ranking (0), nothing.
 */
const topTen = [0.28, 0.16, 0.11, 0.08, 0.06, 0.045, 0.035, 0.03, 0.025, 0.02];

/** Expected organic click-through rate of a result at `position` (0 = not ranking). */
export function organicCtr(position: number): number {
  if (!Number.isFinite(position) || position < 1) return 0;
  const p = Math.round(position);
  if (p <= 10) return topTen[p - 1] as number;
  if (p <= 20) return 0.012 - ((p - 11) * (0.012 - 0.005)) / 9;
  return 0.001;
}

let nlp: ReturnType<typeof winkNLP> | undefined;
// Keyword sets are re-analysed often (rank tracking feeds the same keywords every run), and
// lemmatising is most of the cost of a small request.
const lemmaCache = new LRUCache<string, readonly string[]>({ max: 100_000 });

/** Lemmas of the content words of `text`, lower-cased, stop words and punctuation removed. */
export function contentLemmas(text: string): readonly string[] {
  let lemmas = lemmaCache.get(text);
  if (lemmas === undefined) {
    lemmas = lemmatize(text);
    lemmaCache.set(text, lemmas);
  }
  return lemmas;
}

function lemmatize(text: string): string[] {
  return contentWords(text, { form: "lemma", numbers: true });
}

/**
 * The content words of `text`, lower-cased, stop words and punctuation removed, as their lemmas
 * ("communities" → "community") or Porter2 stems ("caring" → "care"); numbers only when asked.
 * Uncached: for whole pages, where {@link contentLemmas}' cache would hold too much.
 */
export function contentWords(text: string, opts: { form: "lemma" | "stem"; numbers: boolean }): string[] {
  nlp ??= winkNLP(model);
  const its = nlp.its;
  const form = opts.form === "lemma" ? its.lemma : its.stem;
  const out: string[] = [];
  nlp
    .readDoc(text.toLowerCase())
    .tokens()
    .each((t: { out: (f: unknown) => string | boolean }) => {
      const type = t.out(its.type);
      if ((type === "word" || (opts.numbers && type === "number")) && !t.out(its.stopWordFlag)) {
        out.push(String(t.out(form)));
      }
    });
  return out;
}

/** A content word: its normalised form (lemma or stem) and its spelling, lower-cased. */
export interface ContentWord {
  /** Lemma or stem. */
  readonly term: string;
  /** The word as written, lower-cased. */
  readonly text: string;
}

/**
 * The content words of `text` as {@link contentWords} finds them, in runs of adjacent words: a stop
 * word, punctuation or any other token ends a run, so word pairs taken within a run are phrases
 * the text really contains ("cost of care" gives the runs ["cost"] and ["care"], not "cost care").
 */
export function contentWordRuns(text: string, opts: { form: "lemma" | "stem"; numbers: boolean }): ContentWord[][] {
  nlp ??= winkNLP(model);
  const its = nlp.its;
  const form = opts.form === "lemma" ? its.lemma : its.stem;
  const runs: ContentWord[][] = [];
  let run: ContentWord[] = [];
  nlp
    .readDoc(text.toLowerCase())
    .tokens()
    .each((t: { out: (f?: unknown) => string | boolean }) => {
      const type = t.out(its.type);
      if ((type === "word" || (opts.numbers && type === "number")) && !t.out(its.stopWordFlag)) {
        run.push({ term: String(t.out(form)), text: String(t.out()) });
      } else if (run.length > 0) {
        runs.push(run);
        run = [];
      }
    });
  if (run.length > 0) runs.push(run);
  return runs;
}

/** Collapses case and whitespace, the key two spellings of one query share. */
export function normalizeKeyword(keyword: string): string {
  return keyword.toLowerCase().replace(/\s+/g, " ").trim();
}
