import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { jaro, jaroWinkler, metaphoneCodes } from "./strings.ts";

/**
 * Reference values from R's stringdist 0.9 (Debian r-cran-stringdist), similarity = 1 − distance:
 *
 *   library(stringdist)
 *   x <- c("MARTHA", "DWAYNE", "DIXON", "SHACKLEFORD", "CUNNINGHAM", "JONES", "MASSEY", "ABROMS",
 *          "HARDIN", "ITMAN", "JELLYFISH", "bcaccba", "dedbab", "jon")
 *   y <- c("MARHTA", "DUANE", "DICKSONX", "SHACKELFORD", "CUNNIGHAM", "JOHNSON", "MASSIE", "ABRAMS",
 *          "MARTINEZ", "SMITH", "SMELLYFISH", "cabcbab", "dcaebedde", "john")
 *   sprintf("%.12f", 1 - stringdist(x, y, method = "jw", p = 0.1))
 *   sprintf("%.12f", 1 - stringdist(x, y, method = "jw"))          # Jaro (p = 0)
 */
const jaroWinklerReference: Array<[string, string, number]> = [
  ["MARTHA", "MARHTA", 0.961111111111],
  ["DWAYNE", "DUANE", 0.84],
  ["DIXON", "DICKSONX", 0.813333333333],
  ["SHACKLEFORD", "SHACKELFORD", 0.981818181818],
  ["CUNNINGHAM", "CUNNIGHAM", 0.98],
  ["JONES", "JOHNSON", 0.832380952381],
  ["MASSEY", "MASSIE", 0.933333333333],
  ["ABROMS", "ABRAMS", 0.922222222222],
  ["HARDIN", "MARTINEZ", 0.722222222222],
  ["ITMAN", "SMITH", 0.466666666667],
  ["JELLYFISH", "SMELLYFISH", 0.896296296296],
  // Odd numbers of out-of-order characters: t is a fraction (talisman's integer halving gives
  // 0.849206349206 and 0.658333333333 here).
  ["bcaccba", "cabcbab", 0.821428571429],
  ["dedbab", "dcaebedde", 0.620833333333],
  ["jon", "john", 0.933333333333],
];
const jaroReference: Array<[string, string, number]> = [
  ["MARTHA", "MARHTA", 0.944444444444],
  ["DWAYNE", "DUANE", 0.822222222222],
  ["DIXON", "DICKSONX", 0.766666666667],
];

describe("Jaro–Winkler", () => {
  it.each(jaroWinklerReference)("jw(%s, %s) = %f as in R stringdist (p = 0.1)", (a, b, expected) => {
    expect(jaroWinkler(a, b)).toBeCloseTo(expected, 10);
    expect(jaroWinkler(b, a)).toBeCloseTo(expected, 10);
  });

  it.each(jaroReference)("jaro(%s, %s) = %f as in R stringdist (p = 0)", (a, b, expected) => {
    expect(jaro(a, b)).toBeCloseTo(expected, 10);
  });

  it("differs from talisman exactly where talisman halves transpositions with integer division", () => {
    const talisman = createRequire(import.meta.url)("talisman/metrics/jaro-winkler") as {
      custom: (o: { boostThreshold: number }, a: string, b: string) => number;
    };
    // Two mismatched positions (one transposition): both agree.
    expect(talisman.custom({ boostThreshold: 0 }, "MARTHA", "MARHTA")).toBeCloseTo(jaroWinkler("MARTHA", "MARHTA"), 12);
    // Three mismatched positions: talisman's t = 1, Jaro's t = 1.5; R agrees with us (table above).
    expect(talisman.custom({ boostThreshold: 0 }, "bcaccba", "cabcbab")).toBeCloseTo(0.849206349206, 10);
    expect(jaroWinkler("bcaccba", "cabcbab")).toBeCloseTo(0.821428571429, 10);
  });

  it("scores equal strings 1 and an empty string against another 0", () => {
    expect(jaroWinkler("", "")).toBe(1);
    expect(jaroWinkler("ann", "ann")).toBe(1);
    expect(jaroWinkler("", "ann")).toBe(0);
    expect(jaroWinkler("abc", "xyz")).toBe(0);
  });
});

describe("Double Metaphone", () => {
  it("gives Philips' primary and alternate codes", () => {
    expect(metaphoneCodes("smith")).toEqual(["SM0", "XMT"]);
    expect(metaphoneCodes("schmidt")).toEqual(["XMT", "SMT"]);
    expect(metaphoneCodes("jones")).toEqual(["JNS", "ANS"]);
    expect(metaphoneCodes("")).toEqual(["", ""]);
  });
  it("codes spelling variants of one surname alike", () => {
    expect(metaphoneCodes("smyth")[0]).toBe(metaphoneCodes("smith")[0]);
    expect(metaphoneCodes("meier")[0]).toBe(metaphoneCodes("meyer")[0]);
    expect(metaphoneCodes("catherine")[0]).toBe(metaphoneCodes("kathryn")[0]);
  });
});
