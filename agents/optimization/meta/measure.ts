/**
 * Rendered width of search-result text and truncation to a width, as Google's desktop results draw
 * titles (Arial 20 px) and descriptions (Arial 14 px).
 *
 * Widths come from string-pixel-width's Arial table: the advance width of each character in
 * hundredths of an em (`a` = 56, `i` = 22, space = 28, `W` = 94), summed with no kerning, after
 * lodash's deburr (`é` → `e`). A string's width at size S px is units × S / 100. Work stays in
 * integer units so a limit is met exactly: 580 px at 20 px is 2,900 units, and a title of 2,900
 * units fits while one of 2,905 (one pixel more) does not. The table covers printable ASCII only
 * and prices anything else as `x` (50), so the typographic punctuation our own output uses (the
 * ellipsis above all, a full em in Arial) is added from Arial's metrics (= Helvetica's AFM).
 */
import { createRequire } from "node:module";

/** Per-character widths by font, each [regular, bold, italic, bold italic] in hundredths of an em. */
type WidthMap = Record<string, Record<string, readonly [number, number, number, number]>>;

// The package is CommonJS without types; its table is read once to extend it.
const require = createRequire(import.meta.url);
const getWidth = require("string-pixel-width") as (
  text: string,
  settings: { font: string; size: number; map: WidthMap },
) => number;
const libraryMap = require("string-pixel-width/lib/widthsMap.js") as WidthMap;

const same = (w: number): readonly [number, number, number, number] => [w, w, w, w];

/** Arial advance widths (hundredths of an em) of characters the library's table lacks. */
export const supplementalWidths: Readonly<Record<string, number>> = {
  "\u2026": 100, // … horizontal ellipsis
  "\u2013": 56, // – en dash
  "\u2014": 100, // — em dash
  "\u2018": 22, // ‘
  "\u2019": 22, // ’
  "\u201c": 33, // “
  "\u201d": 33, // ”
  "\u2022": 35, // • bullet
  "\u00b7": 28, // · middle dot
  "\u00a0": 28, // no-break space
  "\u00d7": 58, // ×
  "\u00a9": 74, // ©
  "\u00ae": 74, // ®
  "\u2122": 100, // ™
  "\u00b0": 40, // °
  "\u20ac": 56, // €
  "\u00a3": 56, // £
};

const arial: WidthMap = {
  arial: {
    ...(libraryMap.arial as WidthMap[string]),
    ...Object.fromEntries(Object.entries(supplementalWidths).map(([c, w]) => [c, same(w)])),
  },
};

/** The ellipsis appended to truncated text. */
export const ellipsis = "\u2026";

/** Font size of titles in desktop results, px. */
export const titleFontPx = 20;
/** Font size of descriptions in desktop results, px. */
export const descriptionFontPx = 14;

const spaceUnits = getWidth(" ", { font: "arial", size: 100, map: arial });

// Widths add up (no kerning), so a text is measured word by word and each word's width kept: a
// batch of city pages repeats most of its words, and the library walks every character anew.
// The memo is bounded by clearing it when full.
const wordMemo = new Map<string, number>();
const wordMemoMax = 50_000;

function wordUnits(word: string): number {
  const known = wordMemo.get(word);
  if (known !== undefined) return known;
  if (wordMemo.size >= wordMemoMax) wordMemo.clear();
  const units = getWidth(word, { font: "arial", size: 100, map: arial });
  wordMemo.set(word, units);
  return units;
}

/** Width of `text` in hundredths of an em of Arial regular (an integer). */
export function widthUnits(text: string): number {
  let units = 0;
  let from = 0;
  for (;;) {
    const at = text.indexOf(" ", from);
    const word = at < 0 ? text.slice(from) : text.slice(from, at);
    if (word !== "") units += wordUnits(word);
    if (at < 0) return units;
    units += spaceUnits;
    from = at + 1;
  }
}

/** Pixels of `units` at `fontPx`, to the hundredth. */
export function unitsToPx(units: number, fontPx: number): number {
  return Math.round(units * fontPx) / 100;
}

/** True when `units` at `fontPx` fits `limitPx` (compared in integers, so exactly at the limit fits). */
export function fitsUnits(units: number, fontPx: number, limitPx: number): boolean {
  return units * fontPx <= limitPx * 100;
}

/** Text fitted to a width. */
export interface Fitted {
  text: string;
  units: number;
  untruncatedUnits: number;
  truncated: boolean;
  /** True only when not even an ellipsis fits the limit. */
  exceeds: boolean;
}

// Words a cut should not leave dangling before the ellipsis ("Assisted living in…").
const danglingWords = new Set([
  "a",
  "an",
  "and",
  "at",
  "by",
  "for",
  "from",
  "in",
  "near",
  "of",
  "on",
  "or",
  "the",
  "to",
  "with",
  "&",
]);
const danglingPunctuation = /[\s,;:|/\\(\u2013\u2014-]+$/u;

/** `prefix` without trailing separators and dangling small words; empty when nothing else is left. */
function tidyCut(prefix: string): string {
  let out = prefix.replace(danglingPunctuation, "");
  for (;;) {
    const m = /\s+(\S+)$/u.exec(out);
    if (m === null || !danglingWords.has((m[1] as string).toLowerCase())) return out;
    out = out.slice(0, m.index).replace(danglingPunctuation, "");
  }
}

/**
 * `text` fitted to `limitPx` at `fontPx`: as it is when it fits; otherwise cut after the last whole
 * word that fits with the ellipsis, dropping trailing separators and small words (and, in, of, …)
 * first; a first word too wide on its own is cut between characters.
 */
export function fitToWidth(text: string, fontPx: number, limitPx: number): Fitted {
  const full = widthUnits(text);
  if (fitsUnits(full, fontPx, limitPx)) {
    return { text, units: full, untruncatedUnits: full, truncated: false, exceeds: false };
  }
  const dots = widthUnits(ellipsis);
  // Word prefixes grow in width: find the longest one that fits raw (widths summed as it grows),
  // then step back until its tidied form fits with the ellipsis — rarely more than a step or two.
  const ends: number[] = [];
  let units = 0;
  let from = 0;
  for (;;) {
    const at = text.indexOf(" ", from);
    if (at < 0) break;
    units += widthUnits(text.slice(from, at));
    if (!fitsUnits(units, fontPx, limitPx)) break;
    if (at > 0) ends.push(at);
    units += widthUnits(" ");
    from = at + 1;
  }
  let best: { text: string; units: number } | undefined;
  for (let k = ends.length - 1; k >= 0 && best === undefined; k--) {
    const tidy = tidyCut(text.slice(0, ends[k]));
    if (tidy === "") continue;
    const w = widthUnits(tidy) + dots;
    if (fitsUnits(w, fontPx, limitPx)) best = { text: `${tidy}${ellipsis}`, units: w };
  }
  if (best === undefined) {
    // No whole word fits: cut between characters (code points).
    const chars = [...text];
    let kept = dots;
    let n = 0;
    while (n < chars.length) {
      const w = widthUnits(chars[n] as string);
      if (!fitsUnits(kept + w, fontPx, limitPx)) break;
      kept += w;
      n++;
    }
    const cut = chars.slice(0, n).join("").trimEnd();
    best = { text: `${cut}${ellipsis}`, units: widthUnits(cut) + dots };
  }
  return {
    text: best.text,
    units: best.units,
    untruncatedUnits: full,
    truncated: true,
    exceeds: !fitsUnits(best.units, fontPx, limitPx),
  };
}
