/**
 * A seeded pseudo-random generator, so a forecast is reproducible from its seed: xoshiro128**
 * (Blackman & Vigna) with its 128-bit state expanded from the 64-bit seed by SplitMix64, as its
 * authors recommend.
 */

/** Uniform numbers in [0, 1) from a seed. */
export type Random = () => number;

const mask64 = (1n << 64n) - 1n;

/** SplitMix64 step: the next state and its 64-bit output. */
function splitMix64(state: bigint): [bigint, bigint] {
  const s = (state + 0x9e3779b97f4a7c15n) & mask64;
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask64;
  return [s, z ^ (z >> 31n)];
}

/** A xoshiro128** generator seeded with `seed` (any int64). */
export function seededRandom(seed: bigint): Random {
  const [st, a] = splitMix64(BigInt.asUintN(64, seed));
  const [, b] = splitMix64(st);
  const s = new Uint32Array([Number(a & 0xffffffffn), Number(a >> 32n), Number(b & 0xffffffffn), Number(b >> 32n)]);
  if (s[0] === 0 && s[1] === 0 && s[2] === 0 && s[3] === 0) s[0] = 1;
  const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));
  return () => {
    const s0 = s[0] as number;
    const s1 = s[1] as number;
    const s2 = s[2] as number;
    const s3 = s[3] as number;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s[2] = s2 ^ s0;
    s[3] = s3 ^ s1;
    s[1] = s1 ^ (s[2] as number);
    s[0] = s0 ^ (s[3] as number);
    s[2] = (s[2] as number) ^ t;
    s[3] = rotl(s[3] as number, 11);
    return result / 4294967296;
  };
}
