import { create, type MessageInitShape } from "@bufbuild/protobuf";
import robotsParserModule from "robots-parser";
import { describe, expect, it } from "vitest";
import {
  type ManageRobotsTxtRequest,
  ManageRobotsTxtRequestSchema,
  RobotsRuleType,
  type RobotsTxtSpecSchema,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { parseRobotsTxt, withSitemapLines } from "../crawl/robots-rules.ts";
import { createMemorySiteFileStore, type SiteFileStore } from "../site-files/robots-store.ts";
import { manageRobotsTxt } from "./robots-txt.ts";

const robotsParser = robotsParserModule as unknown as typeof robotsParserModule.default;

const requestId = "9b2e4f6a-1c3d-4e5f-8a7b-6c5d4e3f2a1b";
const site = "https://example.com";
const { ALLOW, DISALLOW } = RobotsRuleType;

function request(init: MessageInitShape<typeof ManageRobotsTxtRequestSchema>): ManageRobotsTxtRequest {
  return create(ManageRobotsTxtRequestSchema, { requestId, siteUrl: site, ...init });
}

/** The `spec` case of the request's `source`. */
function spec(value: MessageInitShape<typeof RobotsTxtSpecSchema>) {
  return { case: "spec" as const, value };
}

async function run(init: MessageInitShape<typeof ManageRobotsTxtRequestSchema>, files = createMemorySiteFileStore()) {
  return manageRobotsTxt({ files }, request(init));
}

/** Tests many URL x agent pairs and returns "allowed" per pair. */
async function verdicts(content: string, pairs: [string, string][]): Promise<boolean[]> {
  const res = await run({
    source: { case: "content", value: content },
    dryRun: true,
    tests: pairs.map(([path, userAgent]) => ({ url: `${site}${path}`, userAgent })),
  });
  return res.results.map((r) => r.allowed);
}

async function invalidField(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidInputError);
  return (err as InvalidInputError).field;
}

// RFC 9309 §5.1, verbatim.
const rfcSimpleExample = `User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
`;

describe("manageRobotsTxt", () => {
  it("renders the contract's example spec into the hand-checked file and answers its tests", async () => {
    const files = createMemorySiteFileStore();
    const res = await run(
      {
        source: spec({
          groups: [
            {
              userAgents: ["*"],
              rules: [
                { type: DISALLOW, path: "/search" },
                { type: ALLOW, path: "/search/help" },
              ],
            },
            { userAgents: ["GPTBot"], rules: [{ type: DISALLOW, path: "/" }] },
          ],
          sitemaps: ["https://example.com/sitemap.xml"],
        }),
        tests: [
          { url: "https://example.com/search?q=austin", userAgent: "Googlebot" },
          { url: "https://example.com/search/help", userAgent: "Googlebot" },
          { url: "https://example.com/assisted-living/austin-tx", userAgent: "GPTBot" },
          { url: "https://example.com/assisted-living/austin-tx", userAgent: "Googlebot" },
        ],
        keepStoredSitemaps: true,
      },
      files,
    );
    expect(res.content).toBe(
      [
        "User-agent: *",
        "Disallow: /search",
        "Allow: /search/help",
        "",
        "User-agent: GPTBot",
        "Disallow: /",
        "",
        "Sitemap: https://example.com/sitemap.xml",
        "",
      ].join("\n"),
    );
    expect(res.robotsUrl).toBe("https://example.com/robots.txt");
    expect(res.byteSize).toBe(BigInt(res.content.length));
    expect(res.stored).toBe(true);
    expect(res.changed).toBe(true);
    expect((await files.get(site, "/robots.txt"))?.content).toBe(res.content);
    expect(res.warnings).toEqual([]);
    const [search, help, gpt, google] = res.results;
    expect(search).toMatchObject({ allowed: false, matchedUserAgent: "*", matchedLine: 2 });
    expect(search?.matchedRule).toMatchObject({ type: DISALLOW, path: "/search" });
    expect(help).toMatchObject({ allowed: true, matchedUserAgent: "*", matchedLine: 3 });
    expect(gpt).toMatchObject({ allowed: false, matchedUserAgent: "GPTBot", matchedLine: 6 });
    expect(google).toMatchObject({ allowed: true, matchedUserAgent: "*", matchedLine: 0 });
    expect(google?.matchedRule).toBeUndefined();
    expect(res.effective?.groups.map((g) => g.userAgents)).toEqual([["*"], ["GPTBot"]]);
    expect(res.effective?.sitemaps).toEqual(["https://example.com/sitemap.xml"]);
  });

  it("writes files that robots-parser reads as the spec says (* and $ patterns, longest match, ties)", async () => {
    const res = await run({
      source: spec({
        groups: [
          {
            userAgents: ["*"],
            crawlDelaySeconds: 2.5,
            rules: [
              { type: DISALLOW, path: "/" },
              { type: ALLOW, path: "/$" },
              { type: ALLOW, path: "/assisted-living/" },
              { type: DISALLOW, path: "/*.pdf$" },
              { type: DISALLOW, path: "/assisted-living/*/print" },
              { type: ALLOW, path: "/same" },
              { type: DISALLOW, path: "/same" },
            ],
          },
          { userAgents: ["Bingbot", "Slurp"], rules: [] },
          { userAgents: ["Googlebot-Image"], rules: [{ type: DISALLOW, path: "" }] },
        ],
      }),
      dryRun: true,
    });
    expect(res.content).toBe(
      [
        "User-agent: *",
        "Crawl-delay: 2.5",
        "Disallow: /",
        "Allow: /$",
        "Allow: /assisted-living/",
        "Disallow: /*.pdf$",
        "Disallow: /assisted-living/*/print",
        "Allow: /same",
        "Disallow: /same",
        "",
        "User-agent: Bingbot",
        "User-agent: Slurp",
        "Disallow:",
        "",
        "User-agent: Googlebot-Image",
        "Disallow:",
        "",
      ].join("\n"),
    );
    const robots = robotsParser(`${site}/robots.txt`, res.content);
    const cases: [string, string, boolean][] = [
      ["/", "Googlebot", true],
      ["/?utm=1", "Googlebot", false],
      ["/about", "Googlebot", false],
      ["/assisted-living/austin-tx", "Googlebot", true],
      // "/assisted-living/" (17 octets) outmatches "/*.pdf$" (7): the longest pattern wins.
      ["/assisted-living/brochure.pdf", "Googlebot", true],
      ["/docs/brochure.pdf", "Googlebot", false],
      ["/docs/brochure.pdf?x=1", "Googlebot", false],
      ["/assisted-living/austin-tx/print", "Googlebot", false],
      ["/same", "Googlebot", true],
      ["/about", "Bingbot", true],
      ["/about", "Slurp", true],
      ["/about", "Googlebot-Image", true],
    ];
    for (const [path, ua, allowed] of cases) {
      expect([path, ua, robots.isAllowed(`${site}${path}`, ua)]).toEqual([path, ua, allowed]);
    }
    expect(robots.getCrawlDelay("Googlebot")).toBe(2.5);
    // Our own answers agree with the parser's.
    expect(
      await verdicts(
        res.content,
        cases.map(([p, ua]) => [p, ua]),
      ),
    ).toEqual(cases.map(([, , a]) => a));
    // Parsing the file back gives the spec again (an empty rule list is written as "Disallow:").
    const back = parseRobotsTxt(res.content);
    expect(back.warnings).toEqual([]);
    expect(back.spec.groups[0]?.rules).toHaveLength(7);
    expect(back.spec.groups[0]?.crawlDelaySeconds).toBe(2.5);
    expect(back.spec.groups[1]?.userAgents).toEqual(["Bingbot", "Slurp"]);
  });

  it("answers RFC 9309's simple example (§5.1), as robots-parser does where it follows the RFC", async () => {
    const robots = robotsParser(`${site}/robots.txt`, rfcSimpleExample);
    const cases: [string, string, boolean][] = [
      // foobot: only /example/page.html and /example/allowed.gif.
      ["/example/page.html", "foobot", true],
      ["/example/allowed.gif", "foobot", true],
      ["/example/other.html", "foobot", false],
      ["/publications/", "foobot", false],
      // barbot and bazbot share a group: everything but /example/page.html.
      ["/example/page.html", "barbot", false],
      ["/example/page.html", "bazbot", false],
      ["/example/other.gif", "barbot", true],
      // Everybody else: /publications/ but not /example/ nor .gif files.
      ["/publications/", "otherbot", true],
      ["/example/x", "otherbot", false],
      ["/images/a.gif", "otherbot", false],
      ["/images/a.gif?v=2", "otherbot", true],
    ];
    for (const [path, ua, allowed] of cases) {
      expect([path, ua, robots.isAllowed(`${site}${path}`, ua)]).toEqual([path, ua, allowed]);
    }
    expect(
      await verdicts(
        rfcSimpleExample,
        cases.map(([p, ua]) => [p, ua]),
      ),
    ).toEqual(cases.map(([, , a]) => a));
    // quxbot's group is empty, so it may fetch everything (RFC 9309 §2.2.1: the matching group's
    // rules apply, and there are none); robots-parser instead falls back to the `*` group.
    const qux = await run({
      source: { case: "content", value: rfcSimpleExample },
      dryRun: true,
      tests: [{ url: `${site}/example/x.gif`, userAgent: "quxbot" }],
    });
    expect(qux.results[0]).toMatchObject({ allowed: true, matchedUserAgent: "quxbot", matchedLine: 0 });
    expect(robots.isAllowed(`${site}/example/x.gif`, "quxbot")).toBe(false);
    // "EOF" is not a directive.
    expect(qux.warnings).toContain('line 17: "EOF" has no ":"; ignored');
  });

  it("applies the longest match (RFC 9309 §5.2) and reports the deciding line", async () => {
    const content = "User-Agent: foobot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n";
    const res = await run({
      source: { case: "content", value: content },
      dryRun: true,
      tests: [
        { url: `${site}/example/page/`, userAgent: "foobot" },
        { url: `${site}/example/page/disallowed.gif`, userAgent: "foobot" },
      ],
    });
    expect(res.results.map((r) => [r.allowed, r.matchedLine])).toEqual([
      [true, 2],
      [false, 3],
    ]);
    const robots = robotsParser(`${site}/robots.txt`, content);
    expect(robots.isAllowed(`${site}/example/page/disallowed.gif`, "foobot")).toBe(false);
  });

  it("matches RFC 9309's special characters and percent-encoding examples (§2.2.2, §2.2.3)", async () => {
    const content = [
      "User-agent: *",
      "Disallow: /this/path/exactly$ # comment",
      "Disallow: /this/*/wild",
      "Disallow: /foo/bar?baz=https://foo.bar",
      "Disallow: /foo/bar/ツ",
      "Disallow: /enc/%E3%83%84",
      "",
    ].join("\n");
    expect(
      await verdicts(content, [
        ["/this/path/exactly", "a"],
        ["/this/path/exactly/more", "a"],
        ["/this/is/wild", "a"],
        ["/this/is/wild/too", "a"],
        ["/this/wild", "a"],
        ["/foo/bar?baz=https://foo.bar", "a"],
        ["/foo/bar/%E3%83%84", "a"],
        ["/foo/bar/ツ", "a"],
        ["/enc/ツ", "a"],
        ["/enc/%e3%83%84", "a"],
      ]),
    ).toEqual([false, true, false, false, true, false, false, false, false, false]);
  });

  it("picks the most specific group for a product token or a full User-Agent string, case-insensitively", async () => {
    const content = [
      "User-agent: *",
      "Disallow: /",
      "",
      "User-agent: googlebot",
      "Disallow: /private",
      "",
      "User-agent: Googlebot-News",
      "Disallow: /archive",
      "",
    ].join("\n");
    const res = await run({
      source: { case: "content", value: content },
      dryRun: true,
      tests: [
        { url: `${site}/x`, userAgent: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)" },
        { url: `${site}/archive`, userAgent: "Googlebot-News" },
        { url: `${site}/private`, userAgent: "GOOGLEBOT" },
        { url: `${site}/x`, userAgent: "Mozilla/5.0 (Windows NT 10.0) Firefox/120.0" },
      ],
    });
    expect(res.results.map((r) => [r.allowed, r.matchedUserAgent])).toEqual([
      [true, "googlebot"],
      [false, "Googlebot-News"],
      [false, "googlebot"],
      [false, "*"],
    ]);
  });

  it("stores, reports unchanged replays of the same file, and keeps stored Sitemap lines on request", async () => {
    const files = createMemorySiteFileStore();
    await files.put(site, "/robots.txt", "User-agent: *\nDisallow: /old\n\nSitemap: https://example.com/sitemap.xml\n");
    const source = spec({ groups: [{ userAgents: ["*"], rules: [{ type: DISALLOW, path: "/tmp" }] }] });
    const kept = await run({ source, keepStoredSitemaps: true }, files);
    expect(kept.content).toBe("User-agent: *\nDisallow: /tmp\n\nSitemap: https://example.com/sitemap.xml\n");
    expect(kept).toMatchObject({ stored: true, changed: true });
    expect(kept.warnings).toEqual(["kept 1 Sitemap line(s) of the stored file: https://example.com/sitemap.xml"]);
    const again = await run({ source, keepStoredSitemaps: true }, files);
    expect(again).toMatchObject({ stored: true, changed: false, content: kept.content });

    const dropped = await run({ source, dryRun: true }, files);
    expect(dropped.content).toBe("User-agent: *\nDisallow: /tmp\n");
    expect(dropped).toMatchObject({ stored: false, changed: false });
    expect(dropped.warnings).toEqual(["dry run: not stored; storing it would change the stored robots.txt"]);
    expect((await files.get(site, "/robots.txt"))?.content).toBe(kept.content);

    const asText = await run(
      { source: { case: "content", value: "User-agent: *\nDisallow:" }, keepStoredSitemaps: true },
      files,
    );
    expect(asText.content).toBe("User-agent: *\nDisallow:\n\nSitemap: https://example.com/sitemap.xml\n");

    // Without a new file, the stored one is tested.
    const tested = await run({ tests: [{ url: `${site}/tmp/x`, userAgent: "a" }] }, files);
    expect(tested).toMatchObject({ stored: false, changed: false, content: asText.content });
    expect(tested.results[0]?.allowed).toBe(true);
  });

  it("allows everything when no file is stored, and says so", async () => {
    const res = await run({ tests: [{ url: `${site}/anything`, userAgent: "Googlebot" }] });
    expect(res.content).toBe("");
    expect(res.results[0]).toMatchObject({ allowed: true, matchedUserAgent: "", matchedLine: 0 });
    expect(res.warnings).toEqual([
      "no robots.txt is stored for https://example.com; crawlers treat a missing file as allowing everything",
    ]);
  });

  it("notes ignored lines, a blocked home page and blocked sitemaps", async () => {
    const content = [
      "\uFEFFDisallow: /orphan",
      "User-agent: *",
      "Noindex: /x",
      "Disallow /missing-colon",
      "Disallow: relative",
      "Crawl-delay: soon",
      "Disallow: /",
      "Sitemap: https://example.com/sitemap.xml",
      "Sitemap: /relative.xml",
    ].join("\r\n");
    const res = await run({ source: { case: "content", value: content }, dryRun: true });
    expect(res.warnings).toEqual([
      "removed the byte order mark at the start of the file",
      "line 1: disallow outside any user-agent group; ignored",
      'line 3: "noindex" is not an RFC 9309 directive; ignored',
      'line 4: "Disallow /missing-colon" has no ":"; ignored',
      'line 5: path "relative" does not start with "/" or "*", so it matches no URL',
      'line 6: crawl-delay "soon" is not a number of seconds; ignored',
      'line 9: sitemap "/relative.xml" should be an absolute http(s) URL',
      "user-agent * may not fetch the home page (line 7: disallow /)",
      "sitemap https://example.com/sitemap.xml is disallowed for user-agent * by line 7",
      "dry run: not stored; storing it would make it the first robots.txt stored for https://example.com",
    ]);
  });

  it("warns about files over the 500 KiB crawlers must read, and refuses to render one", async () => {
    const big = `User-agent: *\n${"Disallow: /a-rather-long-path-segment-to-fill-the-file\n".repeat(11_000)}`;
    const res = await run({ source: { case: "content", value: big }, dryRun: true });
    expect(res.byteSize).toBeGreaterThan(512_000n);
    const whole = big.slice(0, 512_000).split("\n").length - 1;
    expect(res.warnings).toContain(
      `the file is ${big.length} bytes; crawlers need read only 512000 (500 KiB, RFC 9309 §2.5), so lines after ${whole} may be ignored`,
    );
    const rules = Array.from({ length: 1000 }, (_, i) => ({ type: DISALLOW, path: `/${"x".repeat(600)}/${i}` }));
    expect(await invalidField(run({ source: spec({ groups: [{ userAgents: ["*"], rules }] }) }))).toBe("spec");
  });

  it("rejects invalid input, naming the field", async () => {
    expect(await invalidField(run({ siteUrl: "https://example.com/blog" }))).toBe("site_url");
    expect(await invalidField(run({ siteUrl: "ftp://example.com" }))).toBe("site_url");
    expect(await invalidField(run({ tests: [{ url: "https://other.example/", userAgent: "a" }] }))).toBe(
      "tests[0].url",
    );
    expect(await invalidField(run({ tests: [{ url: "http://example.com/", userAgent: "a" }] }))).toBe("tests[0].url");
    expect(await invalidField(run({ tests: [{ url: `${site}/`, userAgent: " " }] }))).toBe("tests[0].user_agent");
    const group = (init: object) => ({ source: spec({ groups: [{ userAgents: ["*"], ...init }] }) });
    expect(await invalidField(run(group({ userAgents: ["Google bot"] })))).toBe("spec.groups[0].user_agents[0]");
    expect(await invalidField(run(group({ userAgents: [] })))).toBe("spec.groups[0].user_agents");
    expect(await invalidField(run(group({ rules: [{ type: ALLOW, path: "/a\nUser-agent: x" }] })))).toBe(
      "spec.groups[0].rules[0].path",
    );
    expect(await invalidField(run(group({ rules: [{ type: ALLOW, path: "nope" }] })))).toBe(
      "spec.groups[0].rules[0].path",
    );
    expect(await invalidField(run(group({ rules: [{ path: "/a" }] })))).toBe("spec.groups[0].rules[0].type");
    expect(await invalidField(run(group({ crawlDelaySeconds: -1 })))).toBe("spec.groups[0].crawl_delay_seconds");
    expect(await invalidField(run({ source: spec({ sitemaps: ["/sitemap.xml"] }) }))).toBe("spec.sitemaps[0]");
  });
});

describe("withSitemapLines", () => {
  it("appends only the missing lines and keeps every other byte", () => {
    const base = "User-agent: *\r\nDisallow: /x";
    const once = withSitemapLines(base, ["https://example.com/sitemap.xml"]);
    expect(once.content).toBe(`${base}\n\nSitemap: https://example.com/sitemap.xml\n`);
    expect(withSitemapLines(once.content, ["https://example.com/sitemap.xml"])).toEqual({
      content: once.content,
      added: [],
    });
    expect(withSitemapLines("", ["https://example.com/a.xml"]).content).toBe("Sitemap: https://example.com/a.xml\n");
    const robots = robotsParser(`${site}/robots.txt`, once.content);
    expect(robots.getSitemaps()).toEqual(["https://example.com/sitemap.xml"]);
    expect(robots.isAllowed(`${site}/x`, "a")).toBe(false);
  });
});

describe("createMemorySiteFileStore", () => {
  it("keeps files per origin, lists them by prefix and deletes them", async () => {
    const store: SiteFileStore = createMemorySiteFileStore();
    await store.put(site, "/sitemap-2.xml", "b");
    await store.put(site, "/sitemap-1.xml", "a");
    await store.put("https://other.example", "/sitemap-1.xml", "c");
    expect(await store.list(site, "/sitemap")).toEqual(["/sitemap-1.xml", "/sitemap-2.xml"]);
    expect((await store.get(site, "/sitemap-1.xml"))?.sha256).toBe(
      "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
    );
    expect(await store.delete(site, "/sitemap-1.xml")).toBe(true);
    expect(await store.delete(site, "/sitemap-1.xml")).toBe(false);
    expect((await store.get("https://other.example", "/sitemap-1.xml"))?.content).toBe("c");
  });
});
