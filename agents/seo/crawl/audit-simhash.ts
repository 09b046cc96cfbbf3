/**
 * Content fingerprints for the technical audit: word shingles, a 64-bit SimHash and grouping of
 * exact and near-duplicate pages.
 *
 * Method: the visible text is lower-cased and split into words; every run of 3 consecutive words
 * is a shingle; each distinct shingle is hashed to 64 bits (two independently seeded 32-bit
 * FNV-1a hashes, each finished with a murmur-style avalanche). SimHash (Charikar 2002, as used for
 * web near-duplicates by Manku et al. 2007) adds +1 per set bit and −1 per clear bit of every
 * shingle hash; the sign of each of the 64 sums is a bit of the fingerprint. Pages whose
 * fingerprints differ in at most 3 bits are near-duplicates (the contract's threshold); with
 * unweighted 3-word shingles that corresponds to a cosine similarity of roughly 0.99 or more,
 * i.e. pages that differ in a sentence or a few words. Candidate pairs are found without comparing
 * every pair: split into 4 blocks of 16 bits, two fingerprints within 3 bits agree exactly on at
 * least one block (pigeonhole). The similarity reported for a group is the lowest pairwise Jaccard
 * similarity of the pages' shingle sets, which reads more naturally than a bit distance.
 */
import { createHash } from "node:crypto";

/** Words per shingle. */
export const SHINGLE_WORDS = 3;
/** Largest Hamming distance between the fingerprints of near-duplicate pages. */
export const NEAR_DUPLICATE_MAX_BITS = 3;
/** Pages with fewer words take no part in near-duplicate detection (too little text to judge). */
export const NEAR_DUPLICATE_MIN_WORDS = 50;

/** A 64-bit fingerprint as two unsigned 32-bit halves. */
export interface Fingerprint {
  /** Bits 63–32. */
  readonly hi: number;
  /** Bits 31–0. */
  readonly lo: number;
}

/** Text reduced for duplicate detection. */
export interface ContentSignature {
  /** Number of words. */
  readonly words: number;
  /** SHA-256 (hex) of the lower-cased words joined by single spaces; exact duplicates share it. */
  readonly textHash: string;
  /** Distinct 32-bit shingle hashes, sorted ascending. */
  readonly shingles: Uint32Array;
  /** SimHash of the shingles. */
  readonly fingerprint: Fingerprint;
}

const wordPattern = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*/gu;

/** Words of a text, lower-cased. */
export function words(text: string): string[] {
  return text.toLowerCase().match(wordPattern) ?? [];
}

function fnv1a(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Avalanche so every input bit affects every output bit (fixes FNV's weak high bits). */
function avalanche(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function hash64(s: string): Fingerprint {
  return { hi: avalanche(fnv1a(s, 0x811c9dc5)), lo: avalanche(fnv1a(s, 0x9747b28c) ^ 0x5bd1e995) };
}

/** Reduces a text to its words, shingle set and SimHash. */
export function contentSignature(text: string): ContentSignature {
  const w = words(text);
  const hashes = new Map<string, Fingerprint>();
  const add = (shingle: string): void => {
    if (!hashes.has(shingle)) hashes.set(shingle, hash64(shingle));
  };
  if (w.length > 0 && w.length < SHINGLE_WORDS) add(w.join(" "));
  for (let i = 0; i + SHINGLE_WORDS <= w.length; i++) add(w.slice(i, i + SHINGLE_WORDS).join(" "));
  const sums = new Int32Array(64);
  for (const h of hashes.values()) {
    for (let b = 0; b < 32; b++) {
      sums[b] = (sums[b] as number) + ((h.lo >>> b) & 1 ? 1 : -1);
      sums[32 + b] = (sums[32 + b] as number) + ((h.hi >>> b) & 1 ? 1 : -1);
    }
  }
  let lo = 0;
  let hi = 0;
  for (let b = 0; b < 32; b++) {
    if ((sums[b] as number) > 0) lo |= 1 << b;
    if ((sums[32 + b] as number) > 0) hi |= 1 << b;
  }
  // 32 bits per shingle keep memory small; the odd collision does not move a Jaccard estimate.
  const shingles = Uint32Array.from(hashes.values(), (h) => h.hi).sort();
  const textHash = createHash("sha256").update(w.join(" ")).digest("hex");
  return { words: w.length, textHash, shingles, fingerprint: { hi: hi >>> 0, lo: lo >>> 0 } };
}

/** The fingerprint as 16 lower-case hex digits. */
export function fingerprintHex(f: Fingerprint): string {
  return f.hi.toString(16).padStart(8, "0") + f.lo.toString(16).padStart(8, "0");
}

function popcount32(x: number): number {
  let v = x >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

/** Number of differing bits. */
export function hammingDistance(a: Fingerprint, b: Fingerprint): number {
  return popcount32(a.hi ^ b.hi) + popcount32(a.lo ^ b.lo);
}

/** Jaccard similarity of two sorted shingle sets (1 when both are empty). */
export function jaccard(a: Uint32Array, b: Uint32Array): number {
  if (a.length === 0 && b.length === 0) return 1;
  let i = 0;
  let j = 0;
  let common = 0;
  while (i < a.length && j < b.length) {
    const x = a[i] as number;
    const y = b[j] as number;
    if (x === y) {
      common++;
      i++;
      j++;
    } else if (x < y) i++;
    else j++;
  }
  return common / (a.length + b.length - common);
}

/** A group of duplicate items, by index into the input. */
export interface IndexGroup {
  /** Indexes of the members, ascending. */
  readonly members: number[];
  /** Lowest pairwise Jaccard similarity of the members' shingle sets. */
  readonly similarity: number;
}

function lowestSimilarity(members: readonly number[], sigs: readonly ContentSignature[]): number {
  let lowest = 1;
  for (let i = 0; i < members.length; i++) {
    for (let j = i + 1; j < members.length; j++) {
      const a = sigs[members[i] as number] as ContentSignature;
      const b = sigs[members[j] as number] as ContentSignature;
      lowest = Math.min(lowest, a.textHash === b.textHash ? 1 : jaccard(a.shingles, b.shingles));
    }
  }
  return lowest;
}

/** Groups of items with identical normalised text (at least one word). */
export function exactDuplicateGroups(sigs: readonly ContentSignature[]): IndexGroup[] {
  const byText = new Map<string, number[]>();
  sigs.forEach((s, i) => {
    if (s.words === 0) return;
    const list = byText.get(s.textHash) ?? [];
    list.push(i);
    byText.set(s.textHash, list);
  });
  return [...byText.values()].filter((m) => m.length > 1).map((members) => ({ members, similarity: 1 }));
}

/**
 * Groups of near-duplicate items: connected components of the "fingerprints within
 * NEAR_DUPLICATE_MAX_BITS" relation over items with at least NEAR_DUPLICATE_MIN_WORDS words. A group
 * made only of exact duplicates is left to `exactDuplicateGroups`.
 */
export function nearDuplicateGroups(sigs: readonly ContentSignature[]): IndexGroup[] {
  const parent = sigs.map((_, i) => i);
  const find = (i: number): number => {
    let r = i;
    while (parent[r] !== r) r = parent[r] as number;
    let c = i;
    while (parent[c] !== r) {
      const next = parent[c] as number;
      parent[c] = r;
      c = next;
    }
    return r;
  };
  const union = (a: number, b: number): void => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  };
  // Identical fingerprints first, so each bucket below holds distinct fingerprints only.
  const byPrint = new Map<string, number[]>();
  sigs.forEach((s, i) => {
    if (s.words < NEAR_DUPLICATE_MIN_WORDS) return;
    const key = fingerprintHex(s.fingerprint);
    const list = byPrint.get(key) ?? [];
    list.push(i);
    byPrint.set(key, list);
  });
  const reps: number[] = [];
  for (const list of byPrint.values()) {
    for (const i of list.slice(1)) union(list[0] as number, i);
    reps.push(list[0] as number);
  }
  // Four 16-bit blocks: a pair within 3 bits agrees on at least one of them.
  const buckets = new Map<number, number[]>();
  for (const i of reps) {
    const f = (sigs[i] as ContentSignature).fingerprint;
    const blocks = [f.hi >>> 16, f.hi & 0xffff, f.lo >>> 16, f.lo & 0xffff];
    blocks.forEach((value, block) => {
      const key = block * 0x10000 + value;
      const list = buckets.get(key) ?? [];
      list.push(i);
      buckets.set(key, list);
    });
  }
  for (const list of buckets.values()) {
    for (let a = 0; a < list.length; a++) {
      for (let b = a + 1; b < list.length; b++) {
        const x = list[a] as number;
        const y = list[b] as number;
        const fx = (sigs[x] as ContentSignature).fingerprint;
        const fy = (sigs[y] as ContentSignature).fingerprint;
        if (hammingDistance(fx, fy) <= NEAR_DUPLICATE_MAX_BITS) union(x, y);
      }
    }
  }
  const components = new Map<number, number[]>();
  for (const list of byPrint.values()) {
    for (const i of list) {
      const r = find(i);
      const members = components.get(r) ?? [];
      members.push(i);
      components.set(r, members);
    }
  }
  const groups: IndexGroup[] = [];
  for (const members of components.values()) {
    if (members.length < 2) continue;
    members.sort((a, b) => a - b);
    const texts = new Set(members.map((i) => (sigs[i] as ContentSignature).textHash));
    if (texts.size < 2) continue;
    groups.push({ members, similarity: lowestSimilarity(members, sigs) });
  }
  return groups;
}
