/**
 * String comparators of record linkage: Jaro–Winkler similarity and Double Metaphone codes.
 *
 * Jaro–Winkler is computed here rather than with talisman: talisman halves the transposition count
 * with integer division (as Winkler's strcmp95.c did), so an odd count of out-of-order characters
 * scores higher than Jaro's definition, where t is half the count, a fraction (Jaro 1989; Winkler
 * 1990). Here t is the exact half, the prefix bonus uses p = 0.1 over at most 4 leading characters
 * and applies whatever the Jaro score (boost threshold 0), so the values are those of R's
 * stringdist (`method = "jw", p = 0.1`), against which the tests check them. Double Metaphone
 * (Philips 2000) is the `double-metaphone` package's.
 */
import { doubleMetaphone } from "double-metaphone";

/** Winkler's prefix scale. */
const prefixScale = 0.1;
/** Longest common prefix that earns the bonus. */
const maxPrefix = 4;

/** Scratch flags of matched characters, reused between calls (grown as needed). */
let matchedA = new Uint8Array(64);
let matchedB = new Uint8Array(64);

/**
 * Jaro similarity, 0–1: with m characters matching within a window of ⌊max(|a|, |b|)/2⌋ − 1 and t
 * half the number of matched characters out of order, (m/|a| + m/|b| + (m − t)/m) / 3.
 */
export function jaro(a: string, b: string): number {
  if (a === b) return 1;
  const la = a.length;
  const lb = b.length;
  if (la === 0 || lb === 0) return 0;
  if (matchedA.length < la) matchedA = new Uint8Array(la * 2);
  if (matchedB.length < lb) matchedB = new Uint8Array(lb * 2);
  matchedA.fill(0, 0, la);
  matchedB.fill(0, 0, lb);
  const range = Math.max(0, Math.floor(Math.max(la, lb) / 2) - 1);
  let m = 0;
  for (let i = 0; i < la; i++) {
    const c = a.charCodeAt(i);
    const hi = Math.min(lb - 1, i + range);
    for (let j = Math.max(0, i - range); j <= hi; j++) {
      if (matchedB[j] === 0 && b.charCodeAt(j) === c) {
        matchedA[i] = 1;
        matchedB[j] = 1;
        m++;
        break;
      }
    }
  }
  if (m === 0) return 0;
  let outOfOrder = 0;
  let k = 0;
  for (let i = 0; i < la; i++) {
    if (matchedA[i] === 0) continue;
    while (matchedB[k] === 0) k++;
    if (a.charCodeAt(i) !== b.charCodeAt(k)) outOfOrder++;
    k++;
  }
  return (m / la + m / lb + (m - outOfOrder / 2) / m) / 3;
}

/**
 * Jaro–Winkler similarity of two strings, 0–1: the Jaro score raised by 0.1 × (1 − score) for each
 * of up to 4 leading characters in common. Equal strings (two empty ones too) score 1; an empty
 * string against a non-empty one scores 0.
 */
export function jaroWinkler(a: string, b: string): number {
  if (a === b) return 1;
  const j = jaro(a, b);
  if (j === 0) return 0;
  const limit = Math.min(maxPrefix, a.length, b.length);
  let l = 0;
  while (l < limit && a.charCodeAt(l) === b.charCodeAt(l)) l++;
  return j + l * prefixScale * (1 - j);
}

/** The Double Metaphone primary and alternate codes of `s` (["", ""] for an empty string). */
export function metaphoneCodes(s: string): readonly [string, string] {
  if (s === "") return ["", ""];
  return doubleMetaphone(s);
}
