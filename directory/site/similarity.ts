/**
 * Near-duplicate measurement between pages: the Jaccard similarity of their word 5-shingle sets,
 * estimated over all pairs with MinHash (128 hash functions; standard error ≈ 0.044) and confirmed
 * exactly for the most similar pairs. Only a page's main content counts (not the shared header,
 * footer, form and styles), which is what search engines compare when they look for boilerplate
 * pages.
 */
import { load } from "cheerio";

const HASHES = 128;
const SHINGLE = 5;

/** The visible text of a page's `<main>`, without the enquiry form. */
export function mainText(html: string): string {
  const $ = load(html);
  $("main form, main style, main script").remove();
  return $("main").text().replace(/\s+/g, " ").trim().toLowerCase();
}

/** The set of word `SHINGLE`-grams of `text`, as 32-bit hashes. */
export function shingles(text: string): Set<number> {
  const words = text.split(/[^a-z0-9$%]+/).filter(Boolean);
  const out = new Set<number>();
  for (let i = 0; i + SHINGLE <= words.length; i++) out.add(fnv1a(words.slice(i, i + SHINGLE).join(" ")));
  return out;
}

function fnv1a(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Exact Jaccard similarity of two sets. */
export function jaccard(a: Set<number>, b: Set<number>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let inter = 0;
  for (const x of a) if (b.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}

// Universal hashing h(x) = (a·x + b) mod p over the Mersenne prime 2^31 − 1, fixed coefficients.
const P = 2147483647n;
const coefficients = Array.from({ length: HASHES }, (_, i) => {
  const a = BigInt(fnv1a(`a${i}`) % 2147483646) + 1n;
  const b = BigInt(fnv1a(`b${i}`) % 2147483647);
  return [a, b] as const;
});

/** MinHash signature of a shingle set. */
export function signature(set: Set<number>): Uint32Array {
  const sig = new Uint32Array(HASHES).fill(0xffffffff);
  for (const x of set) {
    const bx = BigInt(x);
    for (let i = 0; i < HASHES; i++) {
      const [a, b] = coefficients[i] as readonly [bigint, bigint];
      const h = Number((a * bx + b) % P);
      if (h < (sig[i] as number)) sig[i] = h;
    }
  }
  return sig;
}

function estimate(x: Uint32Array, y: Uint32Array): number {
  let same = 0;
  for (let i = 0; i < HASHES; i++) if (x[i] === y[i]) same++;
  return same / HASHES;
}

/** Summary of all pairwise similarities. */
export interface SimilarityReport {
  pages: number;
  pairs: number;
  /** Mean estimated Jaccard similarity over all pairs. */
  mean: number;
  /** 99th percentile of the estimates. */
  p99: number;
  /** The most similar pair, with its exact similarity. */
  max: { a: string; b: string; jaccard: number };
  /** Pairs whose exact similarity is at or above `threshold`. */
  above: Array<{ a: string; b: string; jaccard: number }>;
  threshold: number;
}

/** Measures every pair of `pages` (name → HTML); pairs estimated ≥ threshold − 0.15 are checked exactly. */
export function measureSimilarity(pages: Map<string, string>, threshold: number): SimilarityReport {
  const names = [...pages.keys()];
  const sets = names.map((n) => shingles(mainText(pages.get(n) as string)));
  const sigs = sets.map(signature);
  const estimates: number[] = [];
  const candidates: Array<[number, number]> = [];
  let best: [number, number, number] = [0, 1, -1];
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      const e = estimate(sigs[i] as Uint32Array, sigs[j] as Uint32Array);
      estimates.push(e);
      if (e >= threshold - 0.15) candidates.push([i, j]);
      if (e > best[2]) best = [i, j, e];
    }
  }
  const exact = (i: number, j: number) => jaccard(sets[i] as Set<number>, sets[j] as Set<number>);
  const above = candidates
    .map(([i, j]) => ({ a: names[i] as string, b: names[j] as string, jaccard: exact(i, j) }))
    .filter((p) => p.jaccard >= threshold);
  estimates.sort((a, b) => a - b);
  return {
    pages: names.length,
    pairs: estimates.length,
    mean: estimates.reduce((a, b) => a + b, 0) / Math.max(1, estimates.length),
    p99: estimates[Math.floor(estimates.length * 0.99)] ?? 0,
    max: { a: names[best[0]] as string, b: names[best[1]] as string, jaccard: exact(best[0], best[1]) },
    above,
    threshold,
  };
}
