/**
 * A small seeded pseudo-random generator for the sample data: sfc32 (Chris Doty-Humphrey's "small
 * fast counter", 128-bit state) seeded through splitmix32 from a string, so the same seed gives the
 * same sequence on every platform and Node version (only 32-bit integer arithmetic is used).
 */

/** A deterministic source of random numbers. */
export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max] (both inclusive). */
  int(min: number, max: number): number;
  /** A float in [min, max). */
  float(min: number, max: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T;
  /** One element chosen with the given relative weights. */
  weighted<T>(items: readonly (readonly [T, number])[]): T;
  /** `count` distinct elements in their original order. */
  sample<T>(items: readonly T[], count: number): T[];
}

/** FNV-1a of a string's UTF-16 code units: folds a seed string into 32 bits. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** splitmix32: expands one 32-bit seed into well-mixed state words. */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** A generator seeded from `seed`; derive independent streams with seeds such as `"<seed>/city/<id>"`. */
export function createRandom(seed: string): Random {
  const mix = splitmix32(fnv1a(seed));
  let a = mix();
  let b = mix();
  let c = mix();
  let d = mix();
  const next32 = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  // Discard the first outputs: sfc32's state needs a few rounds to mix.
  for (let i = 0; i < 12; i++) next32();
  const next = (): number => next32() / 4294967296;
  const random: Random = {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    float: (min, max) => min + next() * (max - min),
    chance: (p) => next() < p,
    pick(items) {
      if (items.length === 0) throw new Error("pick from an empty list");
      return items[Math.floor(next() * items.length)] as (typeof items)[number];
    },
    weighted(items) {
      const total = items.reduce((s, [, w]) => s + w, 0);
      let r = next() * total;
      for (const [item, w] of items) {
        r -= w;
        if (r < 0) return item;
      }
      const last = items[items.length - 1];
      if (last === undefined) throw new Error("weighted pick from an empty list");
      return last[0];
    },
    sample(items, count) {
      // Selection sampling (Knuth's algorithm S): order-preserving, one pass.
      const out: (typeof items)[number][] = [];
      let needed = Math.min(count, items.length);
      for (let i = 0; i < items.length && needed > 0; i++) {
        if (next() * (items.length - i) < needed) {
          out.push(items[i] as (typeof items)[number]);
          needed--;
        }
      }
      return out;
    },
  };
  return random;
}
