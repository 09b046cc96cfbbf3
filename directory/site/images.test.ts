import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { encodeResponsive, SAMPLE_IMAGE_COUNT, sampleIllustration, sampleImageIndex, siteImage } from "./images.ts";

describe("community images", () => {
  it("draws the same sample illustration for the same index, and says what it shows", () => {
    const a = sampleIllustration(3);
    expect(sampleIllustration(3)).toEqual(a);
    expect(sampleIllustration(4).svg).not.toBe(a.svg);
    expect(a.alt).toMatch(
      /^Sample illustration: a (one|two|three)-storey [a-z-]+ residence with a [a-z]+ (gabled|flat) roof and (a tree|two trees|three trees), [a-z]+ sky$/,
    );
    const alts = new Set(Array.from({ length: SAMPLE_IMAGE_COUNT }, (_, i) => sampleIllustration(i).alt));
    expect(alts.size).toBeGreaterThan(SAMPLE_IMAGE_COUNT / 2);
  });

  it("picks an illustration per community deterministically, using all of them", () => {
    expect(sampleImageIndex("sunrise-gardens-austin-tx")).toBe(sampleImageIndex("sunrise-gardens-austin-tx"));
    const used = new Set(Array.from({ length: 500 }, (_, i) => sampleImageIndex(`community-${i}`)));
    expect(used.size).toBe(SAMPLE_IMAGE_COUNT);
  });

  it("encodes WebP at each width without enlarging, strips metadata and names files by content", async () => {
    // A 400×250 JPEG photo with EXIF metadata, rotated by its orientation tag.
    const photo = await sharp({ create: { width: 250, height: 400, channels: 3, background: "#8ab" } })
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6, exif: { IFD0: { Copyright: "Camera owner" } } })
      .toBuffer();
    const variants = await encodeResponsive(photo, [160, 320, 480]);
    // 480 would enlarge the 400 px source: the widths stop at the source's own width.
    expect(variants.map((v) => [v.width, v.height])).toEqual([
      [160, 100],
      [320, 200],
      [400, 250],
    ]);
    for (const v of variants) {
      const meta = await sharp(v.bytes).metadata();
      expect(meta.format).toBe("webp");
      expect(meta.exif).toBeUndefined();
      expect(v.path).toMatch(new RegExp(`^/img/[0-9a-f]{16}-${v.width}\\.webp$`));
    }
    expect((await encodeResponsive(photo, [160]))[0]?.path).toBe(variants[0]?.path);
    const other = await sharp(photo).negate().jpeg().toBuffer();
    expect((await encodeResponsive(other, [160]))[0]?.path).not.toBe(variants[0]?.path);

    const image = siteImage(variants, "A blue wall");
    expect(image).toMatchObject({ src: variants[0]?.path, largest: variants[2]?.path, width: 160, height: 100 });
    expect(image.srcset).toBe(variants.map((v) => `${v.path} ${v.width}w`).join(", "));
  });
});
