import { describe, expect, it } from "vitest";
import { AltTextRule, ImagePurpose } from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import {
  type AltInput,
  checkAltText,
  DEFAULT_MAX_ALT_LENGTH,
  fileNameWords,
  looksLikeFileName,
  shorten,
  writeAltText,
} from "./alt-text.ts";
import { encode83, encodeBlurhash } from "./blurhash.ts";

function input(fields: Partial<AltInput> = {}): AltInput {
  return {
    purpose: ImagePurpose.INFORMATIVE,
    subject: "",
    pageTitle: "",
    caption: "",
    targetKeyword: "",
    linkUrl: "",
    visibleText: "",
    fileStem: "",
    maxLength: DEFAULT_MAX_ALT_LENGTH,
    ...fields,
  };
}

/** The rules `text` fails, in rule order. */
const failed = (text: string, fields: Partial<AltInput> = {}): AltTextRule[] =>
  checkAltText(text, input(fields))
    .filter((c) => !c.passed)
    .map((c) => c.rule);

describe("checkAltText (WCAG 1.1.1 practice) on hand-picked alt texts", () => {
  it("passes a brief, specific description", () => {
    expect(failed("Residents sharing lunch in a sunlit dining room")).toEqual([]);
  });

  it("fails empty alt text on an informative image, and explains why", () => {
    const checks = checkAltText("  ", input());
    expect(checks.filter((c) => !c.passed).map((c) => c.rule)).toEqual([AltTextRule.PRESENT]);
    expect(checks[0]?.message).toMatch(/screen-reader users miss/);
  });

  it("fails redundant openings such as 'Image of' and 'Photo:'", () => {
    expect(failed("Image of a nurse helping a resident")).toEqual([AltTextRule.NO_REDUNDANT_PREFIX]);
    expect(failed("A picture showing the garden")).toEqual([AltTextRule.NO_REDUNDANT_PREFIX]);
    expect(failed("Photo: the garden in spring")).toEqual([AltTextRule.NO_REDUNDANT_PREFIX]);
    // "Imagery" and a photographer's credit are not the redundant opening.
    expect(failed("Imagery from the spring open house")).toEqual([]);
  });

  it("fails file names and URLs but not hyphenated words", () => {
    expect(failed("IMG_4032.JPG")).toEqual([AltTextRule.NOT_FILE_NAME]);
    expect(failed("DSC01234")).toEqual([AltTextRule.NOT_FILE_NAME]);
    expect(failed("austin-dining-room")).toEqual([AltTextRule.NOT_FILE_NAME]);
    expect(failed("hero_banner")).toEqual([AltTextRule.NOT_FILE_NAME]);
    expect(failed("https://cdn.example.com/a.png")).toEqual([AltTextRule.NOT_FILE_NAME]);
    expect(looksLikeFileName("Wi-Fi")).toBe(false);
    expect(looksLikeFileName("Residents playing chess in the lounge")).toBe(false);
  });

  it("fails placeholders", () => {
    expect(failed("photo")).toEqual([AltTextRule.NOT_PLACEHOLDER]);
    expect(failed("Untitled image")).toEqual([AltTextRule.NOT_PLACEHOLDER]);
    expect(failed("Logo")).toEqual([AltTextRule.NOT_PLACEHOLDER]);
  });

  it("fails text over the length limit, counting characters", () => {
    const long = "A".repeat(40) + " b".repeat(43); // 40 + 86 = 126 characters
    expect(long).toHaveLength(126);
    expect(failed(long)).toEqual([AltTextRule.LENGTH]);
    expect(failed(long.slice(0, 125))).toEqual([]);
    expect(failed("Twelve chars", { maxLength: 11 })).toEqual([AltTextRule.LENGTH]);
  });

  it("fails alt text that repeats the visible caption", () => {
    const caption = "The new garden, opened in May.";
    expect(failed("The new garden opened in May", { caption })).toEqual([AltTextRule.NOT_CAPTION_DUPLICATE]);
    expect(failed("Raised flower beds beside a paved path", { caption })).toEqual([]);
  });

  it("fails keyword stuffing: the keyword twice, or any word three times", () => {
    const targetKeyword = "assisted living austin";
    expect(failed("Assisted living Austin dining room, assisted living Austin TX", { targetKeyword })).toEqual([
      AltTextRule.NO_KEYWORD_STUFFING,
    ]);
    expect(failed("Care care care for seniors")).toEqual([AltTextRule.NO_KEYWORD_STUFFING]);
    expect(failed("Dining room of an assisted living community in Austin", { targetKeyword })).toEqual([]);
  });

  it("wants empty alt text on decorative images, and only that", () => {
    expect(checkAltText("", input({ purpose: ImagePurpose.DECORATIVE }))).toEqual([
      { rule: AltTextRule.EMPTY_WHEN_DECORATIVE, passed: true, message: "" },
    ]);
    expect(failed("Decorative swirl", { purpose: ImagePurpose.DECORATIVE })).toEqual([
      AltTextRule.EMPTY_WHEN_DECORATIVE,
    ]);
  });

  it("wants functional images to name the action and text images to repeat their text", () => {
    const functional = { purpose: ImagePurpose.FUNCTIONAL, linkUrl: "https://example.com/contact-us" };
    expect(failed("Click here", functional)).toEqual([AltTextRule.DESCRIBES_FUNCTION]);
    expect(failed("Contact us", functional)).toEqual([]);
    const text = { purpose: ImagePurpose.TEXT, visibleText: "Open House Saturday 10–2" };
    expect(failed("Flyer", text)).toEqual([AltTextRule.MATCHES_VISIBLE_TEXT]);
    expect(failed("Open house Saturday 10-2", text)).toEqual([]);
  });
});

describe("writeAltText", () => {
  it("uses the subject, without a redundant opening, capitalised and without trailing punctuation", () => {
    expect(writeAltText(input({ subject: "  image of   a nurse helping a resident stand up, " }))).toBe(
      "A nurse helping a resident stand up",
    );
  });

  it("falls back to a meaningful file name, then the page title; camera names say nothing", () => {
    expect(writeAltText(input({ fileStem: "austin-dining-room" }))).toBe("Austin dining room");
    expect(writeAltText(input({ fileStem: "IMG_4032", pageTitle: "Assisted Living in Austin, TX" }))).toBe(
      "Assisted Living in Austin, TX",
    );
    expect(writeAltText(input({ fileStem: "IMG_4032" }))).toBe("");
    expect(fileNameWords("PXL_20240512_101112")).toBe("");
    expect(fileNameWords("3f9a1c0d7e2b")).toBe("");
    expect(fileNameWords("garden-path-1280w")).toBe("garden path");
  });

  it("writes empty alt text for decorative images whatever the context", () => {
    expect(writeAltText(input({ purpose: ImagePurpose.DECORATIVE, subject: "A swirl" }))).toBe("");
  });

  it("names the destination of a functional image, from the link when there is no subject", () => {
    const functional = { purpose: ImagePurpose.FUNCTIONAL };
    expect(writeAltText(input({ ...functional, linkUrl: "https://example.com/schedule-a-tour/" }))).toBe(
      "Schedule a tour",
    );
    expect(writeAltText(input({ ...functional, subject: "Call us", linkUrl: "tel:+15125550100" }))).toBe("Call us");
  });

  it("repeats the text of a text image verbatim, and summarises a complex image in its first sentence", () => {
    expect(writeAltText(input({ purpose: ImagePurpose.TEXT, visibleText: " Open House  Saturday " }))).toBe(
      "Open House Saturday",
    );
    expect(
      writeAltText(
        input({
          purpose: ImagePurpose.COMPLEX,
          subject: "Bar chart of monthly costs by care level in Austin. Memory care costs most at $7,100.",
        }),
      ),
    ).toBe("Bar chart of monthly costs by care level in Austin");
  });

  it("shortens to the limit at a clause or word boundary, never mid-word and without an ellipsis", () => {
    const subject =
      "Residents and staff gathered around a long oak table in the sunlit dining room, sharing a Sunday lunch of roast chicken and vegetables";
    const alt = writeAltText(input({ subject, maxLength: 100 }));
    expect(alt).toBe("Residents and staff gathered around a long oak table in the sunlit dining room");
    expect(shorten("Residents gathered around the table in the dining room", 40)).toBe(
      "Residents gathered around the table",
    );
    expect(failed(alt, { maxLength: 100 })).toEqual([]);
  });
});

describe("encodeBlurhash", () => {
  it("encodes base 83 most significant digit first", () => {
    expect(encode83(0, 1)).toBe("0");
    expect(encode83(82, 1)).toBe("~");
    expect(encode83(83, 2)).toBe("10");
  });

  it("hashes a solid colour with one component as worked out by hand", () => {
    // 1×1 components: size digit 0; no AC, so the maximum digit is 0; the DC is the colour itself
    // (sRGB → linear → sRGB round-trips): 0x3366cc = 3368652 = 5·83³ + 73·83² + 82·83 + 14 → "5?~E".
    const blue = new Uint8Array(6 * 4 * 3);
    for (let p = 0; p < 24; p++) blue.set([0x33, 0x66, 0xcc], p * 3);
    expect(encodeBlurhash(blue, 6, 4, 3, 1, 1)).toBe("005?~E");
  });

  it("hashes a white and a black pixel with two horizontal components as worked out by hand", () => {
    // Size digit (2 − 1) + 0 × 9 = 1. Linear values 1 and 0.
    // DC: mean 0.5 linear → sRGB 1.055 × 0.5^(1/2.4) − 0.055 = 0.735356 → ⌊187.516 + 0.5⌋ = 188 = 0xbc;
    //   0xbcbcbc = 12369084 = 21·83³ + 52·83² + 40·83 + 9 → "Lqe9".
    // AC (1,0): 2 × (cos 0 × 1 + cos(π/2) × 0) / 2 = 1 per channel; maximum digit min(82, ⌊166 − 0.5⌋) = 82 → "~",
    //   so the maximum is 83/166 = 0.5; each channel ⌊√(1/0.5) × 9 + 9.5⌋ = 22 → capped at 18;
    //   18·361 + 18·19 + 18 = 6858 = 82·83 + 52 → "~q".
    const pixels = new Uint8Array([255, 255, 255, 0, 0, 0]);
    expect(encodeBlurhash(pixels, 2, 1, 3, 2, 1)).toBe("1~Lqe9~q");
  });

  it("rejects components outside 1 to 9", () => {
    expect(() => encodeBlurhash(new Uint8Array(3), 1, 1, 3, 0, 3)).toThrow(RangeError);
  });
});
