/**
 * Candidate phrases of a text: the n-grams (1 to `maxWords` words) of its runs of content words.
 * A run ends at punctuation and at stop words, so a phrase never spans "heat safety. Memory care"
 * nor "cost of care" (the RAKE idea: stop words and punctuation delimit candidate keywords).
 *
 * Words are matched on their lemmas — the same wink-nlp lemmas and stop words the agent's keyword
 * research clusters on (lib/search) — so "community" and "communities" are one phrase; each phrase
 * also keeps the spelling it was written in, for display.
 */
import { contentLemmas } from "../../../lib/search/index.ts";

/** Words of feed prose that wink-nlp does not count as stop words but that never make a topic. */
const feedStopLemmas = new Set(["say", "new", "news", "amp", "nbsp", "quot", "http", "https", "www", "com", "html"]);

/** A word: letters or digits, with inner apostrophes, hyphens, periods or ampersands ("u.s.", "long-term", "at&t"). */
const wordPattern = /[\p{L}\p{N}]+(?:['’.&-][\p{L}\p{N}]+)*/gu;
const urlPattern = /\bhttps?:\/\/\S+|\bwww\.\S+/gi;
const numeric = /^[\p{N}.,-]+$/u;

/** One phrase of a text: its key (lemmas joined by spaces) and the spelling it had. */
export interface Phrase {
  /** Lemmas of its words, lower-cased, joined by single spaces. */
  readonly key: string;
  /** Its words as written, lower-cased, joined by single spaces. */
  readonly surface: string;
  /** Number of words. */
  readonly words: number;
}

interface Unit {
  key: string;
  surface: string;
  numeric: boolean;
}

/** The runs of content words of `text`, each word with its lemma key. */
function runsOf(text: string): Unit[][] {
  const clean = text.normalize("NFKC").replace(urlPattern, " . ").replace(/’/g, "'");
  const runs: Unit[][] = [];
  let run: Unit[] = [];
  let end = 0;
  const close = (): void => {
    if (run.length > 0) runs.push(run);
    run = [];
  };
  for (const m of clean.matchAll(wordPattern)) {
    const at = m.index ?? 0;
    // Anything but whitespace between two words (punctuation, a dash, a symbol) ends the run.
    if (/\S/.test(clean.slice(end, at))) close();
    end = at + m[0].length;
    const surface = m[0].toLowerCase().replace(/'s$/, "");
    const lemmas = contentLemmas(surface).filter((l) => !feedStopLemmas.has(l));
    if (lemmas.length === 0 || surface.length < 2) {
      close();
      continue;
    }
    run.push({ key: lemmas.join(" "), surface, numeric: numeric.test(surface) });
  }
  close();
  return runs;
}

/**
 * The distinct phrases of `text` with 1 to `maxWords` words, in order of first appearance. A phrase
 * made of numbers only ("2026", "10 000") is not a candidate.
 */
export function candidatePhrases(text: string, maxWords: number): Phrase[] {
  const out = new Map<string, Phrase>();
  for (const run of runsOf(text)) {
    for (let i = 0; i < run.length; i++) {
      for (let n = 1; n <= maxWords && i + n <= run.length; n++) {
        const units = run.slice(i, i + n);
        if (units.every((u) => u.numeric)) continue;
        const key = units.map((u) => u.key).join(" ");
        if (!out.has(key)) out.set(key, { key, surface: units.map((u) => u.surface).join(" "), words: n });
      }
    }
  }
  return [...out.values()];
}
