/**
 * Text helpers of the meta-tag rules: finding a keyword the way a reader would (case, accents and
 * punctuation ignored, one connecting word allowed between its words), title casing, sentences.
 */

/** A word of a text with its UTF-16 span. */
export interface Token {
  norm: string;
  start: number;
  end: number;
}

const wordPattern = /[\p{L}\p{N}]+(?:['\u2019][\p{L}]+)?/gu;

// Words repeat across a batch's pages (the same headings and keywords with another city), so
// their normal forms are kept; the memo is bounded by clearing it when full.
const normMemo = new Map<string, string>();
const normMemoMax = 50_000;

/** Lower case, accents dropped, a plural `s` / `ies` folded, so "Communities" meets "community". */
function normWord(word: string): string {
  const known = normMemo.get(word);
  if (known !== undefined) return known;
  if (normMemo.size >= normMemoMax) normMemo.clear();
  const norm = foldWord(word);
  normMemo.set(word, norm);
  return norm;
}

function foldWord(word: string): string {
  const w = word
    .normalize("NFD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .replace(/['\u2019]s$/u, "");
  if (w.length > 4 && w.endsWith("ies")) return `${w.slice(0, -3)}y`;
  if (w.length > 3 && w.endsWith("s") && !w.endsWith("ss")) return w.slice(0, -1);
  return w;
}

/** The words of `text` with their spans, for {@link matchWords}. */
export function tokens(text: string): Token[] {
  const out: Token[] = [];
  wordPattern.lastIndex = 0;
  for (let m = wordPattern.exec(text); m !== null; m = wordPattern.exec(text)) {
    out.push({ norm: normWord(m[0]), start: m.index, end: m.index + m[0].length });
  }
  return out;
}

// Words a natural phrasing puts between a keyword's words: "assisted living austin" is found in
// "Assisted Living in Austin, TX".
const connectors = new Set(["in", "near", "of", "for", "the", "at", "and", "around", "to", "on", "a", "an"]);

/** Where a keyword occurs in a text, in UTF-16 offsets of the text. */
export interface KeywordMatch {
  start: number;
  end: number;
}

/** Normalised words of `text`, for comparisons. */
export function normWords(text: string): string[] {
  return tokens(text).map((t) => t.norm);
}

/**
 * The first occurrence of `keyword` in `text`: its words in order, case, accents, plural `s` and
 * punctuation ignored, with at most one connecting word (in, near, of, for, …) between two of them.
 */
export function findKeyword(text: string, keyword: string): KeywordMatch | undefined {
  return matchWords(tokens(text), normWords(keyword));
}

/** {@link findKeyword} on a text's {@link tokens} and a keyword's {@link normWords}. */
export function matchWords(have: readonly Token[], want: readonly string[]): KeywordMatch | undefined {
  if (want.length === 0) return undefined;
  for (let i = 0; i < have.length; i++) {
    if ((have[i] as Token).norm !== want[0]) continue;
    let j = i;
    let ok = true;
    for (let k = 1; k < want.length && ok; k++) {
      if (have[j + 1]?.norm === want[k]) j += 1;
      else if (connectors.has(have[j + 1]?.norm ?? "") && have[j + 2]?.norm === want[k]) j += 2;
      else ok = false;
    }
    if (ok) return { start: (have[i] as Token).start, end: (have[j] as Token).end };
  }
  return undefined;
}

/** Code points in `text` (what the contract calls characters). */
export function charCount(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

const smallWords = new Set([
  "a",
  "an",
  "and",
  "as",
  "at",
  "by",
  "for",
  "in",
  "near",
  "of",
  "on",
  "or",
  "the",
  "to",
  "vs",
  "with",
]);

/**
 * `phrase` in title case: each word capitalised except small words after the first; a word the
 * page writes in capitals (`TX` in the heading) keeps that spelling, and a word already holding a
 * capital (`iPhone`) is left alone.
 */
export function titleCase(phrase: string, casedForms: ReadonlyMap<string, string>): string {
  return phrase
    .trim()
    .split(/\s+/u)
    .map((w, i) => {
      if (/\p{Lu}/u.test(w)) return w;
      const known = casedForms.get(w.toLowerCase());
      if (known !== undefined) return known;
      if (i > 0 && smallWords.has(w.toLowerCase())) return w.toLowerCase();
      return w.charAt(0).toUpperCase() + w.slice(1);
    })
    .join(" ");
}

/** All-capital words (two letters or more) of `text`, by lower-case spelling: `tx` → `TX`. */
export function acronyms(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/\b\p{Lu}{2,}\b/gu)) out.set(m[0].toLowerCase(), m[0]);
  return out;
}

/** `term` to sit inside a sentence: a leading capital lowered unless the word is an acronym. */
export function inSentence(term: string): string {
  return /^\p{Lu}\p{Ll}/u.test(term) ? term.charAt(0).toLowerCase() + term.slice(1) : term;
}

/** `term` to start a title segment: first letter capitalised. */
export function capitalised(term: string): string {
  return term.charAt(0).toUpperCase() + term.slice(1);
}

/** Whitespace collapsed and trimmed. */
export function squash(text: string): string {
  return text.replace(/\s+/gu, " ").trim();
}

// A period after these does not end a sentence ("St. Louis", "Ft. Worth", "Dr. Lee").
const abbreviation =
  /(?:^|[\s(])(?:St|Ste|Mt|Ft|Pt|Dr|Mr|Mrs|Ms|Jr|Sr|No|vs|Inc|Co|Ave|Blvd|Rd|approx|e\.g|i\.e|U\.S|\p{Lu})\.$/u;

/** The sentences of `text` (already squashed), in order. */
export function sentences(text: string): string[] {
  const parts = text.split(/(?<=[.!?]["\u201d\u2019)]?)\s+(?=["\u201c(]?[\p{Lu}\p{N}])/u);
  const out: string[] = [];
  for (const p of parts) {
    const prev = out.at(-1);
    if (prev !== undefined && abbreviation.test(prev)) out[out.length - 1] = `${prev} ${p}`;
    else if (p !== "") out.push(p);
  }
  return out;
}

/** `items` as an English list: "a", "a and b", "a, b and c". */
export function englishList(items: readonly string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/** `text` ending in sentence punctuation. */
export function asSentence(text: string): string {
  const t = text.trim();
  return /[.!?]["\u201d\u2019)]?$/u.test(t) ? t : `${t.replace(/[,;:\s]+$/u, "")}.`;
}
