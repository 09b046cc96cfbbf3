import { describe, expect, it } from "vitest";
import { LengthCounting, SocialPlatform } from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { composePost, normaliseHashtags } from "./compose.ts";
import { graphemeLength, measurerOf, shortUrlCodeUnitLength, urlRanges, xWeightedLength } from "./length.ts";
import { rulesOf } from "./platforms.ts";
import { splitThread } from "./thread.ts";
import { withUtm } from "./utm.ts";

describe("X weighted length (twitter-text 3 rules)", () => {
  // Each expectation is worked out by hand from the rules: code points in U+0000–U+10FF,
  // U+2000–U+200D, U+2010–U+201F and U+2032–U+2037 weigh 1, everything else 2, an emoji sequence 2,
  // any URL 23, after NFC normalisation.
  it.each([
    ["a".repeat(280), 280],
    ["a".repeat(281), 281],
    ["你".repeat(140), 280],
    ["日本語 text", 11],
    ["Hello world", 11],
    [`https://example.com/${"a".repeat(200)}`, 23],
    ["Read https://example.com/guides/assisted-living-austin?x=1 now", 32],
    ["Check example.com", 29],
    ["😀", 2],
    ["👨‍👩‍👧‍👦", 2],
    ["🇺🇸 flag", 7],
    ["e\u0301", 1],
    ["\u2018quoted\u2019", 8],
    ["wait\u2026", 6],
    ["™", 2],
    ["Ünïcödé", 7],
  ])("%j weighs %i", (text, weight) => {
    expect(xWeightedLength(text)).toBe(weight);
  });
});

describe("other counts", () => {
  it("counts grapheme clusters for Bluesky", () => {
    expect(graphemeLength("👨‍👩‍👧‍👦")).toBe(1);
    expect(graphemeLength("e\u0301")).toBe(1);
    expect(graphemeLength("🇺🇸🇫🇷")).toBe(2);
    expect(graphemeLength("abc")).toBe(3);
  });
  it("counts every URL as 23 for Mastodon, with the rest in code units", () => {
    const url = `https://example.com/${"p".repeat(100)}`;
    expect(shortUrlCodeUnitLength(`see ${url}`)).toBe(4 + 23);
    expect(shortUrlCodeUnitLength("no link")).toBe(7);
    expect(measurerOf(LengthCounting.CODE_UNITS)("😀")).toBe(2);
  });
  it("finds only URLs with a scheme", () => {
    expect(urlRanges("a https://x.org/p b example.com")).toEqual([{ start: 2, end: 17 }]);
  });
});

describe("UTM parameters", () => {
  const utm = { source: "linkedin", medium: "social", campaign: "austin guide" };
  it("adds a query to a link without one", () => {
    expect(withUtm("https://example.com/guide", utm)).toBe(
      "https://example.com/guide?utm_source=linkedin&utm_medium=social&utm_campaign=austin%20guide",
    );
  });
  it("keeps the existing query byte for byte and the fragment last", () => {
    expect(withUtm("https://example.com/g?city=Austin+TX&sort=price%20asc#costs", utm)).toBe(
      "https://example.com/g?city=Austin+TX&sort=price%20asc&utm_source=linkedin&utm_medium=social&utm_campaign=austin%20guide#costs",
    );
  });
  it("replaces campaign parameters already on the link instead of doubling them", () => {
    expect(withUtm("https://example.com/?utm_source=old&a=1&UTM_TERM=x&utm_id=7&", { ...utm, content: "v2" })).toBe(
      "https://example.com/?a=1&utm_id=7&utm_source=linkedin&utm_medium=social&utm_campaign=austin%20guide&utm_content=v2",
    );
  });
  it("handles an empty query and a fragment with a question mark", () => {
    expect(withUtm("https://example.com/p?#a?b", utm)).toBe(
      "https://example.com/p?utm_source=linkedin&utm_medium=social&utm_campaign=austin%20guide#a?b",
    );
  });
});

describe("threads", () => {
  const sentence = (i: number) => `Sentence number ${i} talks about assisted living costs in Austin, Texas. `;
  const long = Array.from({ length: 40 }, (_, i) => sentence(i + 1)).join("");

  it.each([
    ["X", SocialPlatform.X],
    ["Bluesky", SocialPlatform.BLUESKY],
    ["Threads", SocialPlatform.THREADS],
  ])("never exceeds the %s limit, numbering included, and keeps every word", (_name, platform) => {
    const rules = rulesOf(platform);
    const measure = measurerOf(rules.counting);
    const posts = splitThread(long, { limit: rules.limit, measure, locale: "en" });
    expect(posts.length).toBeGreaterThan(1);
    posts.forEach((p, i) => {
      expect(measure(p)).toBeLessThanOrEqual(rules.limit);
      expect(p.endsWith(` ${i + 1}/${posts.length}`)).toBe(true);
    });
    const words = posts
      .map((p) => p.replace(/ \d+\/\d+$/, ""))
      .join(" ")
      .split(/\s+/);
    expect(words).toEqual(long.trim().split(/\s+/));
  });

  it("splits between sentences when they fit", () => {
    const posts = splitThread(long, { limit: 280, measure: xWeightedLength, locale: "en" });
    for (const p of posts) expect(p.replace(/ \d+\/\d+$/, "")).toMatch(/\.$/);
  });

  it("splits a sentence longer than a post between words, and CJK by weight", () => {
    const words = Array.from({ length: 120 }, (_, i) => `word${i}`).join(" ");
    const posts = splitThread(words, { limit: 100, measure: xWeightedLength, locale: "en" });
    for (const p of posts) {
      expect(xWeightedLength(p)).toBeLessThanOrEqual(100);
      expect(p.replace(/ \d+\/\d+$/, "")).toMatch(/word\d+$/);
    }
    const cjk = "我们为奥斯汀的家庭整理了辅助生活的费用指南。".repeat(30);
    const cjkPosts = splitThread(cjk, { limit: 280, measure: xWeightedLength, locale: "zh" });
    for (const p of cjkPosts) expect(xWeightedLength(p)).toBeLessThanOrEqual(280);
    expect(cjkPosts.map((p) => p.replace(/ \d+\/\d+$/, "")).join("")).toBe(cjk);
  });

  it("widens the numbering when the thread reaches ten posts", () => {
    const text = Array.from({ length: 60 }, (_, i) => `Point ${i}.`).join(" ");
    const posts = splitThread(text, { limit: 20, measure: (t) => t.length, locale: "en" });
    expect(posts.length).toBeGreaterThanOrEqual(10);
    for (const p of posts) expect(p.length).toBeLessThanOrEqual(20);
  });

  it("leaves a text that fits as one post without numbering", () => {
    expect(splitThread("Short one.", { limit: 280, measure: xWeightedLength, locale: "en" })).toEqual(["Short one."]);
  });
});

describe("composing a post", () => {
  const x = rulesOf(SocialPlatform.X);
  const rules = { limit: 280, measure: xWeightedLength, linkClickable: true, linkHint: "", locale: "en-US" };
  const link = "https://example.com/guides/assisted-living-austin?utm_source=x&utm_medium=social";

  it("cuts the summary at a word boundary with an ellipsis and keeps link and hashtags", () => {
    const summary = "Assisted living in Austin costs more than you think, ".repeat(20);
    const post = composePost(
      { title: "Choosing Assisted Living", summary, link, hashtags: ["#Austin", "#SeniorCare"], callToAction: "Read" },
      rules,
      urlRanges,
    );
    expect(x.limit).toBe(280);
    expect(post.truncated).toBe(true);
    expect(post.withinLimit).toBe(true);
    expect(post.length).toBe(xWeightedLength(post.text));
    expect(post.length).toBeLessThanOrEqual(280);
    expect(post.length).toBeGreaterThan(260); // the longest cut, not an arbitrary one
    expect(post.text).toContain(`Read ${link}`);
    expect(post.text.endsWith("#Austin #SeniorCare")).toBe(true);
    expect(post.text).toMatch(/think…|Austin…|costs…|more…|than…|you…|in…|living…|Assisted…/);
  });

  it("never cuts inside a URL in the summary", () => {
    const inner = `https://example.com/${"deep/".repeat(30)}page`;
    const summary = `${"word ".repeat(40)}${inner} ${"tail ".repeat(40)}`;
    const post = composePost(
      { title: "T", summary, link: "", hashtags: [], callToAction: "" },
      { ...rules, limit: 120, measure: (t: string) => t.length },
      urlRanges,
    );
    expect(post.withinLimit).toBe(true);
    expect(post.text).not.toContain("https://example.com/deep");
  });

  it("gives up hashtags before the summary disappears, then the call to action", () => {
    const post = composePost(
      { title: "Title here", summary: "Summary words", link, hashtags: ["#One", "#Two"], callToAction: "Read it" },
      { ...rules, limit: 60 },
      urlRanges,
    );
    expect(post.withinLimit).toBe(true);
    expect(post.text).toContain(link);
  });

  it("leaves the link out of the text where links are not clickable, with a hint in English", () => {
    const post = composePost(
      { title: "T", summary: "S", link, hashtags: [], callToAction: "Read the guide" },
      { ...rules, linkClickable: false, linkHint: "link in bio" },
      urlRanges,
    );
    expect(post.text).toBe("T\n\nS\n\nRead the guide (link in bio)");
  });

  it("normalises hashtags", () => {
    expect(normaliseHashtags(["#Austin", "austin", "2025", "SeniorCare", "#Care_Tips", "x"], 4)).toEqual([
      "#Austin",
      "#SeniorCare",
      "#Care_Tips",
      "#x",
    ]);
  });
});
