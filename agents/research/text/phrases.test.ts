import { describe, expect, it } from "vitest";
import { candidatePhrases } from "./phrases.ts";

const keys = (text: string, maxWords = 3): string[] => candidatePhrases(text, maxWords).map((p) => p.key);

describe("candidatePhrases", () => {
  it("takes the n-grams of each run of content words, never across stop words or punctuation", () => {
    expect(keys("The cost of memory care, explained")).toEqual(["cost", "memory", "memory care", "care", "explain"]);
    expect(keys("Heat safety — Austin")).toEqual(["heat", "heat safety", "safety", "austin"]);
  });

  it("keys phrases on lemmas and keeps the spelling for display", () => {
    const [communities] = candidatePhrases("Communities", 1);
    expect(communities).toEqual({ key: "community", surface: "communities", words: 1 });
    expect(keys("senior communities")).toEqual(keys("Senior Community"));
  });

  it("stops at maxWords and leaves out phrases of numbers only", () => {
    expect(keys("2026 assisted living rates", 2)).toEqual([
      "2026 assist",
      "assist",
      "assist live",
      "live",
      "live rate",
      "rate",
    ]);
  });

  it("drops URLs, possessives and the filler words of news prose", () => {
    expect(keys("Texas's new rules, says https://news.example/a?b=c")).toEqual(["texas", "rule"]);
  });
});
