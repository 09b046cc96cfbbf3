import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  AdaptSocialContentRequestSchema,
  LengthCounting,
  SocialPlatform,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { InvalidInputError, toConnectError } from "../../../lib/errors/index.ts";
import { graphemeLength, xWeightedLength } from "../text/length.ts";
import { adaptSocialContent } from "./adapt-social-content.ts";

type Init = MessageInitShape<typeof AdaptSocialContentRequestSchema>;

const all = [
  SocialPlatform.X,
  SocialPlatform.LINKEDIN,
  SocialPlatform.FACEBOOK,
  SocialPlatform.INSTAGRAM,
  SocialPlatform.THREADS,
  SocialPlatform.BLUESKY,
  SocialPlatform.MASTODON,
  SocialPlatform.PINTEREST,
  SocialPlatform.TIKTOK,
];

const content = {
  title: "Choosing Assisted Living in Austin, TX",
  summary: "What assisted living includes, what it costs in Austin and the questions to ask on a tour.",
  url: "https://example.com/guides/assisted-living-austin",
  hashtags: ["AssistedLiving", "#Austin", "SeniorCare", "austin", "Caregiving", "Retirement", "Texas"],
  callToAction: "Read the guide",
};

function request(init: Partial<Init> = {}) {
  const base: Init = {
    content,
    platforms: [SocialPlatform.X, SocialPlatform.LINKEDIN, SocialPlatform.BLUESKY],
    utm: { campaign: "austin-guide-2025" },
  };
  return create(AdaptSocialContentRequestSchema, { ...base, ...init } as Init);
}

describe("AdaptSocialContent", () => {
  it("writes the worked example: one post per platform, in order, with UTM links and hashtags", () => {
    const { posts } = adaptSocialContent(request());
    expect(posts.map((p) => p.platform)).toEqual([SocialPlatform.X, SocialPlatform.LINKEDIN, SocialPlatform.BLUESKY]);
    const [x, linkedin, bluesky] = posts;
    expect(x?.linkUrl).toBe(
      "https://example.com/guides/assisted-living-austin?utm_source=x&utm_medium=social&utm_campaign=austin-guide-2025",
    );
    expect(x?.text).toBe(
      [
        "Choosing Assisted Living in Austin, TX",
        "What assisted living includes, what it costs in Austin and the questions to ask on a tour.",
        `Read the guide ${x?.linkUrl}`,
        "#AssistedLiving #Austin",
      ].join("\n\n"),
    );
    // 38 + 2 + 90 + 2 + 15 + 23 (the link) + 2 + 23 = 195
    expect(x?.weightedLength).toBe(195);
    expect(x?.counting).toBe(LengthCounting.X_WEIGHTED);
    expect(x?.characterLimit).toBe(280);
    expect(x?.truncated).toBe(false);
    expect(x?.withinLimit).toBe(true);
    expect(linkedin?.hashtags).toEqual(["#AssistedLiving", "#Austin", "#SeniorCare"]);
    expect(linkedin?.linkUrl).toContain("utm_source=linkedin&");
    expect(linkedin?.weightedLength).toBe(linkedin?.text.length);
    expect(bluesky?.counting).toBe(LengthCounting.GRAPHEMES);
    expect(bluesky?.weightedLength).toBe(graphemeLength(bluesky?.text ?? ""));
    expect(bluesky?.withinLimit).toBe(true);
  });

  it("keeps every platform within its limit on long, CJK and emoji content", () => {
    const summary = `${"我们整理了奥斯汀辅助生活的费用和参观时要问的问题。".repeat(60)} 🏡👨‍👩‍👧 ${"Long English sentences about care. ".repeat(200)}`;
    const { posts } = adaptSocialContent(
      request({
        content: { ...content, summary, title: "奥斯汀辅助生活指南 🏡" },
        platforms: all,
        locale: "zh-CN",
      }),
    );
    const limits = [280, 3000, 63_206, 2200, 500, 300, 500, 500, 2200];
    posts.forEach((p, i) => {
      expect(p.characterLimit).toBe(limits[i]);
      expect(p.withinLimit, p.text).toBe(true);
      expect(p.weightedLength).toBeLessThanOrEqual(p.characterLimit);
    });
    const x = posts[0];
    expect(x?.truncated).toBe(true);
    expect(x?.weightedLength).toBe(xWeightedLength(x?.text ?? ""));
    expect(x?.weightedLength).toBeGreaterThan(270);
    expect(x?.text).toContain("…");
    expect(posts[2]?.truncated).toBe(false); // Facebook takes it all
  });

  it("splits content that does not fit into a numbered thread on platforms with threads, when asked", () => {
    const summary = "Long English sentences about care in Austin. ".repeat(40).trim();
    const { posts } = adaptSocialContent(
      request({
        content: { ...content, summary },
        platforms: [SocialPlatform.X, SocialPlatform.BLUESKY, SocialPlatform.LINKEDIN],
        splitIntoThread: true,
      }),
    );
    const [x, bluesky, linkedin] = posts;
    for (const [post, measure, limit] of [
      [x, xWeightedLength, 280],
      [bluesky, graphemeLength, 300],
    ] as const) {
      expect(post?.truncated).toBe(true); // the single post is still cut to fit
      const n = post?.thread.length ?? 0;
      expect(n).toBeGreaterThan(1);
      post?.thread.forEach((t, i) => {
        expect(measure(t), t).toBeLessThanOrEqual(limit);
        expect(t.endsWith(` ${i + 1}/${n}`)).toBe(true);
      });
      // Nothing is lost: every sentence of the summary is in the thread.
      const words = post?.thread.map((t) => t.replace(/ \d+\/\d+$/, "")).join(" ") ?? "";
      expect(words.split("Long English sentences about care in Austin.").length - 1).toBe(40);
    }
    expect(linkedin?.truncated).toBe(false);
    expect(linkedin?.thread).toEqual([]); // fits, and LinkedIn has no threads anyway
    // Without the option, no thread.
    expect(adaptSocialContent(request({ content: { ...content, summary } })).posts[0]?.thread).toEqual([]);
  });

  it("leaves links out of Instagram, Pinterest and TikTok text but still returns them tagged", () => {
    const { posts } = adaptSocialContent(
      request({ platforms: [SocialPlatform.INSTAGRAM, SocialPlatform.PINTEREST, SocialPlatform.TIKTOK] }),
    );
    for (const p of posts) {
      expect(p.linkClickable).toBe(false);
      expect(p.text).not.toContain("https://");
      expect(p.linkUrl).toMatch(/utm_medium=social/);
    }
    expect(posts[0]?.text).toContain("Read the guide (link in bio)");
    expect(posts[0]?.hashtags).toHaveLength(5);
  });

  it("applies overrides: a larger X limit and a hashtag count", () => {
    const long = "Plenty to say about senior living. ".repeat(100);
    const { posts } = adaptSocialContent(
      request({
        content: { ...content, summary: long },
        platforms: [SocialPlatform.X, SocialPlatform.THREADS],
        overrides: [
          { platform: SocialPlatform.X, characterLimit: 25_000, maxHashtags: 4 },
          { platform: SocialPlatform.THREADS, maxHashtags: 5 },
        ],
        utm: { campaign: "c", source: "newsletter-x", medium: "organic", content: "v1" },
      }),
    );
    expect(posts[0]?.characterLimit).toBe(25_000);
    expect(posts[0]?.truncated).toBe(false);
    expect(posts[0]?.hashtags).toHaveLength(4);
    expect(posts[0]?.linkUrl).toBe(
      "https://example.com/guides/assisted-living-austin?utm_source=newsletter-x&utm_medium=organic&utm_campaign=c&utm_content=v1",
    );
    expect(posts[1]?.hashtags).toHaveLength(1); // Threads takes one topic tag
  });

  it("leaves the link as given without UTM parameters", () => {
    const { posts } = adaptSocialContent(request({ utm: undefined }));
    expect(posts[0]?.linkUrl).toBe("https://example.com/guides/assisted-living-austin");
  });

  it.each<[string, Partial<Init>]>([
    ["platforms", { platforms: [] }],
    ["platforms[0]", { platforms: [SocialPlatform.UNSPECIFIED] }],
    ["content", { content: undefined }],
    ["content.url", { content: { title: "T", url: "not a url" } }],
    ["content.hashtags[0]", { content: { title: "T", hashtags: ["two words"] } }],
    ["overrides", { overrides: [{ platform: SocialPlatform.FACEBOOK }] }],
    ["locale", { locale: "English" }],
  ])("refuses a bad %s with INVALID_ARGUMENT naming it", (field, init) => {
    let err: unknown;
    try {
      adaptSocialContent(request(init));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(field);
    expect(toConnectError(err, () => undefined).code).toBe(Code.InvalidArgument);
  });
});
