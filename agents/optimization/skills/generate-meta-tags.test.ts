import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  type GenerateMetaTagsRequestSchema,
  MetaCandidateSource,
  type MetaTagPageSchema,
  MetaWarning,
  OptimizationService,
  type PageMetaTags,
  GenerateMetaTagsRequestSchema as RequestSchema,
} from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { InvalidInputError, toConnectError } from "../../../lib/errors/index.ts";
import { createInProcessClient } from "../../../lib/server/index.ts";
import { fitToWidth, unitsToPx, widthUnits } from "../meta/measure.ts";
import { findKeyword, sentences } from "../meta/text.ts";
import { generateMetaTags } from "./generate-meta-tags.ts";

type Init = MessageInitShape<typeof GenerateMetaTagsRequestSchema>;
type PageInit = MessageInitShape<typeof MetaTagPageSchema>;

function run(init: Init) {
  return generateMetaTags(create(RequestSchema, init));
}

/** The fields of a page these tests set. */
interface PageFields {
  targetKeyword: string;
  heading: string;
  secondaryKeywords?: string[];
  content?: string;
  currentTitle?: string;
  currentDescription?: string;
}

function page(url: string, fields: PageFields): PageInit {
  return { url: `https://example.com/${url}`, ...fields };
}

function best(p: PageMetaTags | undefined, kind: "title" | "description" = "title") {
  const c = (kind === "title" ? p?.titleCandidates : p?.descriptionCandidates)?.[0];
  if (c === undefined) throw new Error(`no ${kind} candidate`);
  return c;
}

/** Rethrows whatever `fn` throws so a test can inspect it; fails when nothing is thrown. */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected an error");
}

// Arial advance widths from string-pixel-width's table, in hundredths of an em (px at 100 px):
//   A 67, s 50, i 22, t 28, e 56, d 56, L 56, v 50, n 56, g 56, u 56, T 61, X 67, "," 28, space 28,
//   M 83, m 83, o 56, r 33, y 50, c 50, a 56, D 72, C 72, f 28, x 50, l 22, w 72, "-" 33;
//   "…" 100 (Arial's ellipsis is a full em; added to the table, which lacks it).
describe("pixel widths", () => {
  it("sums Arial glyph widths: a title at 20 px and a description at 14 px", () => {
    // "Assisted" 67+50+50+22+50+28+56+56 = 379; "Living" 56+22+50+22+56+56 = 262; "in" 22+56 = 78;
    // "Austin" 67+56+50+28+22+56 = 279; "," 28; "TX" 61+67 = 128; five spaces 5 × 28 = 140.
    // 379 + 262 + 78 + 279 + 28 + 128 + 140 = 1,266 units → 1,266 × 20 / 100 = 253.2 px.
    expect(widthUnits("Assisted Living in Austin, TX")).toBe(1266);
    expect(unitsToPx(1266, 20)).toBe(253.2);
    // "Memory" 83+56+83+56+33+50 = 361; "care" 50+56+33+56 = 195; "in" 78; "Denver" 72+56+56+50+56+33
    // = 323; three spaces 84 → 1,041 units → × 14 / 100 = 145.74 px.
    expect(widthUnits("Memory care in Denver")).toBe(1041);
    expect(unitsToPx(1041, 14)).toBe(145.74);
    // "Austin" alone: 279 units = 55.8 px at 20 px.
    expect(unitsToPx(widthUnits("Austin"), 20)).toBe(55.8);
  });

  it("prices the ellipsis as a full em and accented letters as their base letter", () => {
    expect(widthUnits("\u2026")).toBe(100);
    // "Café" → deburred "Cafe": 72 + 56 + 28 + 56 = 212.
    expect(widthUnits("Café")).toBe(212);
    expect(widthUnits("Cafe")).toBe(212);
  });
});

// The keyword "Assisted Living Austin" is 379 + 28 + 262 + 28 + 279 = 976 units; each " xxxx" adds
// 28 + 4 × 50 = 228, eight of them 1,824; " lit" adds 28 + 22 + 22 + 28 = 100 → 2,900 units = 580 px
// at 20 px, exactly the default limit. " li-" instead adds 28 + 22 + 22 + 33 = 105 → 2,905 = 581 px.
const atLimit = `Assisted Living Austin${" xxxx".repeat(8)} lit`;
const onePxOver = `Assisted Living Austin${" xxxx".repeat(8)} li-`;

describe("truncation at the limit", () => {
  it("keeps a title exactly at 580 px and cuts one a pixel wider at a word boundary", () => {
    const res = run({
      pages: [
        page("at", { targetKeyword: "assisted living austin", heading: atLimit }),
        page("over", { targetKeyword: "assisted living austin", heading: onePxOver }),
      ],
    });
    const fits = best(res.pages[0]);
    expect(fits).toMatchObject({ text: atLimit, pixelWidth: 580, truncated: false, exceedsLimit: false });
    expect(fits.untruncatedPixelWidth).toBe(580);
    const cut = best(res.pages[1]);
    // The cut falls before " li-"; the ellipsis (100 units) brings it back to 2,800 + 100 = 2,900.
    expect(cut.text).toBe(`Assisted Living Austin${" xxxx".repeat(8)}\u2026`);
    expect(cut).toMatchObject({ pixelWidth: 580, untruncatedPixelWidth: 581, truncated: true, exceedsLimit: false });
    expect(cut.warnings).toContain(MetaWarning.TRUNCATED);
    expect(cut.characterCount).toBe(63);
  });

  it("never leaves a separator or a small word before the ellipsis", () => {
    // 1,266 units for the first five words + 100 for the ellipsis = 273.2 px, within 275 px; the
    // next word boundary ("… TX and") fits too but would leave "and" dangling.
    const f = fitToWidth("Assisted Living in Austin, TX and more words here", 20, 275);
    expect(f.text).toBe("Assisted Living in Austin, TX\u2026");
    expect(f.units).toBe(1266 + 100);
    const g = fitToWidth("Assisted Living in Austin", 20, 200);
    // "Assisted Living in" fits (379 + 28 + 262 + 28 + 78 = 775 units = 155 px) but "in" dangles.
    expect(g.text).toBe("Assisted Living\u2026");
  });

  it("cuts a first word too wide on its own between characters", () => {
    const f = fitToWidth("Supercalifragilistic", 20, 60);
    expect(f.truncated).toBe(true);
    expect(f.text.endsWith("\u2026")).toBe(true);
    expect(unitsToPx(f.units, 20)).toBeLessThanOrEqual(60);
  });

  it("cuts an overflowing description sentence at a word boundary within 920 px", () => {
    const long = `Memory care in Denver ${"offers secure neighbourhoods, trained staff and daily programmes ".repeat(6)}for families.`;
    const res = run({
      pages: [page("d", { targetKeyword: "memory care denver", heading: "Memory care", content: long })],
    });
    const d = res.pages[0]?.descriptionCandidates.find((c) => c.source === MetaCandidateSource.LEAD_SENTENCES);
    expect(d?.truncated).toBe(true);
    expect(d?.text.endsWith("\u2026")).toBe(true);
    expect(d?.pixelWidth).toBeLessThanOrEqual(920);
    expect(d?.untruncatedPixelWidth).toBeGreaterThan(920);
    expect(d?.maxPixelWidth).toBe(920);
  });
});

describe("keyword placement", () => {
  it("finds a keyword through case, punctuation and one connecting word", () => {
    expect(findKeyword("Assisted Living in Austin, TX", "assisted living austin")).toEqual({ start: 0, end: 25 });
    expect(findKeyword("Senior living in Austin, TX", "senior living austin tx")?.start).toBe(0);
    expect(findKeyword("Assisted care for the living", "assisted living")).toBeUndefined();
  });

  it("front-loads the keyword in the title when the heading holds it late", () => {
    const res = run({
      pages: [page("denver", { targetKeyword: "memory care denver", heading: "Find the Best Memory Care in Denver" })],
    });
    const titles = res.pages[0]?.titleCandidates ?? [];
    expect(titles[0]).toMatchObject({
      text: "Memory Care in Denver: Find the Best",
      keywordOffset: 0,
      source: MetaCandidateSource.KEYWORD_LED,
    });
    // The heading as written holds it at character 14, 124 px in ("Find the Best " = 620 units):
    // score 0.45 × (1 − 124/580) + 0.30 × min(1, 141.4/435) + 0.15 + 0.10 is below the keyword-led one.
    const heading = titles.find((t) => t.source === MetaCandidateSource.HEADING);
    expect(heading?.keywordOffset).toBe(14);
    expect(heading?.warnings).not.toContain(MetaWarning.KEYWORD_LATE);
    expect(heading?.score).toBeLessThan(titles[0]?.score ?? 0);
  });

  it("puts the keyword in the description when the content does not hold it", () => {
    const res = run({
      pages: [
        page("austin", {
          targetKeyword: "assisted living austin",
          heading: "Assisted Living in Austin, TX",
          content: "Compare 42 communities in Texas. See monthly costs, care levels and photos, and schedule a tour.",
        }),
      ],
    });
    const d = best(res.pages[0], "description");
    expect(d.keywordOffset).toBe(0);
    expect(d.text).toBe(
      "Assisted Living in Austin, TX. Compare 42 communities in Texas. See monthly costs, care levels and photos, and schedule a tour.",
    );
    const lead = res.pages[0]?.descriptionCandidates.find((c) => c.source === MetaCandidateSource.LEAD_SENTENCES);
    expect(lead?.warnings).toContain(MetaWarning.MISSING_KEYWORD);
    expect(lead?.keywordOffset).toBe(-1);
  });

  it("flags a keyword late in the title and a current title that is short and keyword-less", () => {
    const res = run({
      brandName: "Example Senior Living",
      pages: [
        page("x", {
          targetKeyword: "assisted living austin",
          heading: "Assisted Living in Austin, TX",
          currentTitle: "Austin",
          currentDescription: `Our friendly team welcomes you to a wonderful place where ${"every day is special ".repeat(6)}and assisted living in Austin is easy.`,
        }),
      ],
    });
    const p = res.pages[0];
    expect(p?.currentTitle).toMatchObject({ text: "Austin", pixelWidth: 55.8, keywordOffset: -1, truncated: false });
    expect(p?.currentTitle?.source).toBe(MetaCandidateSource.CURRENT);
    expect(p?.currentTitle?.warnings).toEqual([
      MetaWarning.MISSING_KEYWORD,
      MetaWarning.TOO_SHORT,
      MetaWarning.BRAND_OMITTED,
    ]);
    expect(p?.currentDescription?.exceedsLimit).toBe(true);
    expect(p?.currentDescription?.warnings).toEqual([MetaWarning.KEYWORD_LATE, MetaWarning.TOO_LONG]);
  });
});

describe("brand suffix", () => {
  it("appends the brand after the separator when it fits and drops it (never cuts it) when not", () => {
    const res = run({
      brandName: "Example Senior Living",
      titleSeparator: "-",
      pages: [
        page("short", { targetKeyword: "assisted living austin", heading: "Assisted Living in Austin, TX" }),
        page("long", {
          targetKeyword: "assisted living austin",
          heading: "Assisted Living in Austin, TX: Costs, Care Levels and Tours",
        }),
      ],
    });
    // "Assisted Living in Austin, TX - Example Senior Living": 1,266 + " - " (28 + 33 + 28) + 998 = 2,353 units.
    const short = res.pages[0]?.titleCandidates.find((t) => t.source === MetaCandidateSource.HEADING);
    expect(short).toMatchObject({ text: "Assisted Living in Austin, TX - Example Senior Living", pixelWidth: 470.6 });
    expect(short?.warnings).toEqual([]);
    const long = res.pages[1]?.titleCandidates.find((t) => t.source === MetaCandidateSource.HEADING);
    expect(long?.text).toBe("Assisted Living in Austin, TX: Costs, Care Levels and Tours");
    expect(long?.truncated).toBe(false);
    expect(long?.warnings).toEqual([MetaWarning.BRAND_OMITTED]);
  });

  it("works secondary keywords into the title, as many as fit with the brand", () => {
    const res = run({
      brandName: "Example Senior Living",
      pages: [
        page("austin", {
          targetKeyword: "assisted living austin",
          secondaryKeywords: ["memory care", "respite care"],
          heading: "Assisted Living in Austin, TX",
        }),
      ],
    });
    const t = best(res.pages[0]);
    expect(t.text).toBe("Assisted Living Austin: Memory Care | Example Senior Living");
    expect(t.source).toBe(MetaCandidateSource.KEYWORD_WITH_TERMS);
    expect(t.pixelWidth).toBeLessThanOrEqual(580);
  });
});

describe("a batch", () => {
  it("gives identical pages different titles while alternatives last, and flags what stays identical", () => {
    const same = {
      targetKeyword: "assisted living austin",
      secondaryKeywords: ["memory care"],
      heading: "Assisted Living in Austin, TX",
    };
    const res = run({ pages: [page("a", same), page("b", same)], candidatesPerPage: 5 });
    expect(best(res.pages[0]).text).not.toBe(best(res.pages[1]).text);
    expect(res.pages[0]?.duplicateTitleUrls).toEqual([]);
    expect(best(res.pages[1]).keywordOffset).toBeGreaterThanOrEqual(0);

    // One possible title each (the heading leads with the keyword, nothing else to add): reported.
    const bare = { targetKeyword: "assisted living austin", heading: "Assisted Living in Austin" };
    const dup = run({
      pages: [page("p1", bare), page("p2", bare), page("p3", { ...bare, heading: "Assisted Living Austin Guide" })],
    });
    expect(dup.pages[0]?.duplicateTitleUrls).toEqual(["https://example.com/p2"]);
    expect(dup.pages[1]?.duplicateTitleUrls).toEqual(["https://example.com/p1"]);
    expect(dup.pages[2]?.duplicateTitleUrls).toEqual([]);
    expect(best(dup.pages[0]).warnings).toContain(MetaWarning.DUPLICATE);
    expect(best(dup.pages[2]).warnings).not.toContain(MetaWarning.DUPLICATE);
    // The two templates differ from each other, so page 2 takes the one page 1 left.
    expect(best(dup.pages[0], "description").text).not.toBe(best(dup.pages[1], "description").text);
    // The third page shares neither.
    expect(dup.pages[2]?.duplicateDescriptionUrls).toEqual([]);
  });

  it("flags duplicate descriptions once the candidates run out, and duplicate current tags", () => {
    const p = {
      targetKeyword: "assisted living austin",
      heading: "Assisted Living in Austin",
      content: "Assisted living in Austin starts at $4,000 a month.",
      currentTitle: "Home",
      currentDescription: "Welcome",
    };
    const res = run({ pages: [page("1", p), page("2", p), page("3", p)] });
    expect(res.pages[2]?.duplicateDescriptionUrls).toEqual(["https://example.com/1", "https://example.com/2"]);
    expect(best(res.pages[2], "description").warnings).toContain(MetaWarning.DUPLICATE);
    expect(res.pages[1]?.currentTitle?.warnings).toContain(MetaWarning.DUPLICATE);
    expect(res.pages[1]?.currentDescription?.warnings).toContain(MetaWarning.DUPLICATE);
  });

  it("answers in request order, deterministically, with the requested number of candidates", () => {
    const pages = Array.from({ length: 50 }, (_, i) =>
      page(`city-${i}`, {
        targetKeyword: `senior living city${i} tx`,
        secondaryKeywords: ["Assisted living", "Memory care"],
        heading: `Senior living in City${i}, TX`,
      }),
    );
    const a = run({ pages, candidatesPerPage: 2, brandName: "Senior Living Directory" });
    const b = run({ pages, candidatesPerPage: 2, brandName: "Senior Living Directory" });
    expect(a).toEqual(b);
    expect(a.pages.map((p) => p.url)).toEqual(pages.map((p) => p.url));
    expect(a.pages.every((p) => p.titleCandidates.length === 2 && p.descriptionCandidates.length === 2)).toBe(true);
    expect(new Set(a.pages.map((p) => best(p).text)).size).toBe(50);
    for (const p of a.pages) {
      for (const c of [...p.titleCandidates, ...p.descriptionCandidates]) {
        expect(c.pixelWidth).toBeLessThanOrEqual(c.maxPixelWidth);
        expect(c.score).toBeGreaterThanOrEqual(0);
        expect(c.score).toBeLessThanOrEqual(1);
      }
    }
  });

  it("splits sentences without breaking on St. or Ft.", () => {
    expect(sentences("Tours in St. Louis and Ft. Worth. Call us today! Open 7 days.")).toEqual([
      "Tours in St. Louis and Ft. Worth.",
      "Call us today!",
      "Open 7 days.",
    ]);
  });
});

describe("bad input", () => {
  const client = createInProcessClient(OptimizationService, {
    generateMetaTags: (req: never) => generateMetaTags(req),
  });
  const ok = page("ok", { targetKeyword: "assisted living austin", heading: "Assisted Living in Austin" });

  async function field(init: Init): Promise<string> {
    const err = await client.generateMetaTags(init).then(
      () => {
        throw new Error("expected INVALID_ARGUMENT");
      },
      (e: unknown) => ConnectError.from(e),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    return err.rawMessage.split(":")[0] ?? "";
  }

  it("answers INVALID_ARGUMENT naming the field", async () => {
    expect(await field({ pages: [] })).toBe("pages");
    expect(await field({ pages: [{ ...ok, targetKeyword: "" }] })).toBe("pages[0].target_keyword");
    expect(await field({ pages: [ok, { ...ok, heading: "" }] })).toBe("pages[1].heading");
    expect(await field({ pages: [ok], maxTitleWidthPx: -1 })).toBe("max_title_width_px");
    // Rules the skill checks itself.
    expect(await field({ pages: [ok, ok] })).toBe("pages[1].url");
    expect(await field({ pages: [{ ...ok, heading: "   " }] })).toBe("pages[0].heading");
    expect(await field({ pages: [{ ...ok, targetKeyword: " -- " }] })).toBe("pages[0].target_keyword");
    expect(await field({ pages: [{ ...ok, secondaryKeywords: ["memory care", "!!"] }] })).toBe(
      "pages[0].secondary_keywords[1]",
    );
    expect(await field({ pages: [ok], minTitleWidthPx: 600 })).toBe("min_title_width_px");
  });

  it("refuses the same way when called in process without the interceptor", () => {
    const err = thrownBy(() => run({ pages: [ok, ok] }));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe("pages[1].url");
    expect(toConnectError(err, () => undefined).code).toBe(Code.InvalidArgument);
    const contract = thrownBy(() => run({ pages: [{ ...ok, url: "not a url" }] }));
    expect((contract as InvalidInputError).field).toBe("pages[0].url");
  });

  it("answers a valid request through the client", async () => {
    const res = await client.generateMetaTags({ pages: [ok] });
    expect(res.pages[0]?.titleCandidates[0]?.text).toBe("Assisted Living in Austin");
  });
});
