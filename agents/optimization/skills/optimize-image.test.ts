import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AltTextRule,
  ImageFormat,
  ImagePurpose,
  type OptimizeImageRequest,
  OptimizeImageRequestSchema,
  type OptimizeImageResponse,
} from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import { type OptimizeImageDeps, optimizeImage, planFormats, planWidths } from "./optimize-image.ts";

type Init = MessageInitShape<typeof OptimizeImageRequestSchema>;

const request = (init: Init): OptimizeImageRequest => create(OptimizeImageRequestSchema, init);

/** EXIF orientation 6: the stored pixels are shown rotated 90° clockwise. */
const ROTATE_90_CW = 6;

/**
 * A photo-like 2400×1600 JPEG: red rises left to right, green top to bottom, blue waves, with
 * pseudo-random grain softened by a slight blur; tagged with EXIF orientation 6, a camera make
 * and a GPS position (the privacy leak the skill must strip).
 */
async function photoJpeg(): Promise<Buffer> {
  const w = 2400;
  const h = 1600;
  const raw = Buffer.alloc(w * h * 3);
  let seed = 1;
  const clamp = (v: number): number => Math.max(0, Math.min(255, Math.round(v)));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const grain = ((seed >> 16) % 25) - 12;
      const i = (y * w + x) * 3;
      raw[i] = clamp((x * 255) / w + grain);
      raw[i + 1] = clamp((y * 255) / h + grain);
      raw[i + 2] = clamp(128 + 40 * Math.sin(x / 60) + grain);
    }
  }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .blur(1.2)
    .withMetadata({ orientation: ROTATE_90_CW })
    .withExif({
      IFD0: { Make: "TestCam", Model: "X1" },
      IFD3: { GPSLatitudeRef: "N", GPSLatitude: "30/1 16/1 0/1", GPSLongitudeRef: "W", GPSLongitude: "97/1 44/1 0/1" },
    })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** Tag ids of the first IFD of an EXIF block as sharp returns it ("Exif\0\0" and a TIFF header). */
function ifd0Tags(exif: Buffer): Set<number> {
  const tiff = exif.subarray(6);
  const le = tiff.toString("latin1", 0, 2) === "II";
  const u16 = (at: number): number => (le ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at: number): number => (le ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  const ifd = u32(4);
  const tags = new Set<number>();
  for (let k = 0; k < u16(ifd); k++) tags.add(u16(ifd + 2 + k * 12));
  return tags;
}
const GPS_IFD_POINTER = 0x8825;

/** RGB of the pixel at (x, y) of an encoded image. */
async function pixel(bytes: Uint8Array, x: number, y: number): Promise<[number, number, number]> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  return [data[i] as number, data[i + 1] as number, data[i + 2] as number];
}

/** Rethrows what `fn` rejects with so a test can inspect it; fails when it resolves. */
async function rejectionOf(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

async function expectInvalid(deps: OptimizeImageDeps, init: Init, field: string, message?: RegExp): Promise<void> {
  const err = await rejectionOf(() => optimizeImage(deps, request(init)));
  expect(err).toBeInstanceOf(InvalidInputError);
  expect((err as InvalidInputError).field).toBe(field);
  if (message !== undefined) expect((err as Error).message).toMatch(message);
}

let photo: Buffer;
let response: OptimizeImageResponse;

beforeAll(async () => {
  photo = await photoJpeg();
  response = await optimizeImage(
    {},
    request({
      source: { case: "content", value: photo },
      fileName: "austin-dining-room",
      widths: [1280, 320, 640],
      sizes: "(min-width: 768px) 50vw, 100vw",
      baseUrl: "https://cdn.example.com/img/",
      altContext: {
        purpose: ImagePurpose.INFORMATIVE,
        subject: "Image of residents sharing lunch in the sunlit dining room of an Austin assisted living community",
        pageTitle: "Assisted Living in Austin, TX",
        targetKeyword: "assisted living austin",
        existingAltText: "IMG_4032.JPG",
      },
    }),
  );
}, 120_000);

describe("optimizeImage on a 2400×1600 photo with EXIF orientation and GPS", () => {
  it("reads the original: JPEG, oriented 1600×2400, with metadata", async () => {
    const meta = await sharp(photo).metadata();
    expect(meta.orientation).toBe(ROTATE_90_CW);
    expect(ifd0Tags(meta.exif as Buffer).has(GPS_IFD_POINTER)).toBe(true);
    expect(response.original).toMatchObject({
      format: ImageFormat.JPEG,
      width: 1600,
      height: 2400,
      byteSize: BigInt(photo.byteLength),
      hasMetadata: true,
      hasAlpha: false,
    });
  });

  it("encodes every width in AVIF, WebP and JPEG, by format then width, at the aspect ratio after rotation", () => {
    expect(response.variants.map((v) => [v.format, v.width, v.height, v.mimeType])).toEqual([
      [ImageFormat.AVIF, 320, 480, "image/avif"],
      [ImageFormat.AVIF, 640, 960, "image/avif"],
      [ImageFormat.AVIF, 1280, 1920, "image/avif"],
      [ImageFormat.WEBP, 320, 480, "image/webp"],
      [ImageFormat.WEBP, 640, 960, "image/webp"],
      [ImageFormat.WEBP, 1280, 1920, "image/webp"],
      [ImageFormat.JPEG, 320, 480, "image/jpeg"],
      [ImageFormat.JPEG, 640, 960, "image/jpeg"],
      [ImageFormat.JPEG, 1280, 1920, "image/jpeg"],
    ]);
    expect(response.variants[2]?.fileName).toBe("austin-dining-room-1280w.avif");
    expect(response.variants[8]?.url).toBe("https://cdn.example.com/img/austin-dining-room-1280w.jpg");
  });

  it("decodes each variant to the size it reports, in its format, with no EXIF, XMP, IPTC or orientation tag", async () => {
    for (const v of response.variants) {
      const meta = await sharp(v.content).metadata();
      expect([meta.width, meta.height]).toEqual([v.width, v.height]);
      expect(Number(v.byteSize)).toBe(v.content.byteLength);
      expect(meta.format).toBe(
        v.format === ImageFormat.AVIF ? "heif" : v.format === ImageFormat.WEBP ? "webp" : "jpeg",
      );
      expect(meta.exif).toBeUndefined();
      expect(meta.xmp).toBeUndefined();
      expect(meta.iptc).toBeUndefined();
      expect(meta.orientation).toBeUndefined();
    }
    expect(response.metadataStripped).toBe(true);
  });

  it("applies the orientation to the pixels: the stored bottom-left corner is shown top left", async () => {
    // Stored: red grows with x, green with y. Turned 90° clockwise, the stored bottom-left (red 0,
    // green 255) is shown top left, the stored top-left (0, 0) top right, and the stored
    // bottom-right (255, 255) bottom left.
    const jpeg = response.variants.find((v) => v.format === ImageFormat.JPEG && v.width === 320);
    if (jpeg === undefined) throw new Error("no 320w JPEG");
    const [r1, g1] = await pixel(jpeg.content, 4, 4);
    const [r2, g2] = await pixel(jpeg.content, 315, 4);
    const [r3, g3] = await pixel(jpeg.content, 4, 475);
    expect(r1).toBeLessThan(40);
    expect(g1).toBeGreaterThan(215);
    expect(r2).toBeLessThan(40);
    expect(g2).toBeLessThan(40);
    expect(r3).toBeGreaterThan(215);
    expect(g3).toBeGreaterThan(215);
  });

  it("measures the savings: every variant is smaller than the input and AVIF and WebP beat JPEG at each width", () => {
    const table = response.variants.map((v) => ({
      variant: v.fileName,
      bytes: Number(v.byteSize),
      saving: `${(v.savingsRatio * 100).toFixed(1)}%`,
    }));
    console.info(`input ${photo.byteLength} bytes (2400×1600 JPEG q90)`);
    console.table(table);
    for (const v of response.variants) {
      expect(v.savingsRatio).toBeCloseTo(1 - Number(v.byteSize) / photo.byteLength, 12);
      expect(Number(v.byteSize)).toBeLessThan(photo.byteLength);
    }
    for (const width of [320, 640, 1280]) {
      const size = (f: ImageFormat): number =>
        Number(response.variants.find((v) => v.format === f && v.width === width)?.byteSize);
      expect(size(ImageFormat.AVIF)).toBeLessThan(size(ImageFormat.JPEG));
      expect(size(ImageFormat.WEBP)).toBeLessThan(size(ImageFormat.JPEG));
    }
    // At the largest width, the modern formats save most of the original's bytes.
    const largest = response.variants.filter((v) => v.width === 1280 && v.format !== ImageFormat.JPEG);
    for (const v of largest) expect(v.savingsRatio).toBeGreaterThan(0.5);
  });

  it("at the photo's own resolution, AVIF and WebP are still far smaller than the input JPEG", async () => {
    // A width above the photo's (1600 after rotation) encodes the full resolution, not an upscale:
    // a like-for-like comparison of formats at the same pixels.
    const full = await optimizeImage(
      {},
      request({
        source: { case: "content", value: photo },
        widths: [4000],
        formats: [ImageFormat.AVIF, ImageFormat.WEBP],
      }),
    );
    expect(full.variants.map((v) => [v.format, v.width, v.height])).toEqual([
      [ImageFormat.AVIF, 1600, 2400],
      [ImageFormat.WEBP, 1600, 2400],
    ]);
    console.info(
      `1600×2400 from a ${photo.byteLength}-byte JPEG q90: ` +
        full.variants
          .map((v) => `${v.mimeType} ${v.byteSize} bytes (−${(v.savingsRatio * 100).toFixed(1)}%)`)
          .join(", "),
    );
    for (const v of full.variants) expect(v.savingsRatio).toBeGreaterThan(0.5);
  }, 120_000);

  it("builds srcset, sizes and a <picture> with AVIF and WebP sources and a JPEG <img>", () => {
    expect(response.sourceSets.map((s) => [s.format, s.mimeType])).toEqual([
      [ImageFormat.AVIF, "image/avif"],
      [ImageFormat.WEBP, "image/webp"],
      [ImageFormat.JPEG, "image/jpeg"],
    ]);
    const base = "https://cdn.example.com/img/austin-dining-room";
    expect(response.sourceSets[1]?.srcset).toBe(
      `${base}-320w.webp 320w, ${base}-640w.webp 640w, ${base}-1280w.webp 1280w`,
    );
    expect(response.sizes).toBe("(min-width: 768px) 50vw, 100vw");
    expect(response.pictureHtml).toBe(
      [
        "<picture>",
        `  <source type="image/avif" srcset="${base}-320w.avif 320w, ${base}-640w.avif 640w, ${base}-1280w.avif 1280w" sizes="(min-width: 768px) 50vw, 100vw">`,
        `  <source type="image/webp" srcset="${base}-320w.webp 320w, ${base}-640w.webp 640w, ${base}-1280w.webp 1280w" sizes="(min-width: 768px) 50vw, 100vw">`,
        `  <img src="${base}-1280w.jpg" srcset="${base}-320w.jpg 320w, ${base}-640w.jpg 640w, ${base}-1280w.jpg 1280w" sizes="(min-width: 768px) 50vw, 100vw" width="1280" height="1920" alt="Residents sharing lunch in the sunlit dining room of an Austin assisted living community" loading="lazy" decoding="async">`,
        "</picture>",
      ].join("\n"),
    );
  });

  it("gives a BlurHash of 4×3 components and the dominant colour", () => {
    // 1 size digit + 1 maximum digit + 4 DC digits + 2 per AC component (4 × 3 − 1).
    expect(response.blurhash).toHaveLength(28);
    expect(response.blurhash[0]).toBe("L"); // (4 − 1) + (3 − 1) × 9 = 21 = "L"
    expect(response.dominantColor).toMatch(/^#[0-9a-f]{6}$/);
  });

  it("writes the alt text from the subject without 'Image of', and fails the camera file name given as alt", () => {
    expect(response.altText).toBe(
      "Residents sharing lunch in the sunlit dining room of an Austin assisted living community",
    );
    expect(response.altTextPassed).toBe(true);
    expect(response.altTextChecks.every((c) => c.passed)).toBe(true);
    expect(response.existingAltTextPassed).toBe(false);
    const failed = response.existingAltTextChecks.filter((c) => !c.passed).map((c) => c.rule);
    expect(failed).toEqual([AltTextRule.NOT_FILE_NAME]);
  });
});

describe("optimizeImage on small and transparent images", () => {
  it("never upscales: a 200×100 image gets one 200-wide variant per format", async () => {
    const small = await sharp({ create: { width: 200, height: 100, channels: 3, background: "#3366cc" } })
      .png()
      .toBuffer();
    const res = await optimizeImage({}, request({ source: { case: "content", value: small } }));
    expect(res.variants.map((v) => [v.format, v.width, v.height])).toEqual([
      [ImageFormat.AVIF, 200, 100],
      [ImageFormat.WEBP, 200, 100],
      [ImageFormat.JPEG, 200, 100],
    ]);
    expect(res.original).toMatchObject({ format: ImageFormat.PNG, width: 200, height: 100, hasMetadata: false });
    expect(res.variants[0]?.fileName).toBe("image-200w.avif");
    // sharp's dominant colour is the centre of the fullest bin of a 16-level-per-channel histogram:
    // 0x33 = 51 → bin 3 → 3 × 16 + 8 = 56 = 0x38; 0x66 = 102 → bin 6 → 104 = 0x68; 0xcc = 204 → bin 12 → 200 = 0xc8.
    expect(res.dominantColor).toBe("#3868c8");
  });

  it("keeps the requested widths below the original and puts the original width in place of larger ones", () => {
    expect(planWidths([], 1000)).toEqual([320, 640, 960, 1000]);
    expect(planWidths([], 2400)).toEqual([320, 640, 960, 1280, 1920]);
    expect(planWidths([800, 400], 500)).toEqual([400, 500]);
    expect(planWidths([640], 100)).toEqual([100]);
  });

  it("falls back to PNG for an image with alpha, keeping the transparency", async () => {
    expect(planFormats([], true)).toEqual([ImageFormat.AVIF, ImageFormat.WEBP, ImageFormat.PNG]);
    expect(planFormats([ImageFormat.JPEG, ImageFormat.WEBP], false)).toEqual([ImageFormat.WEBP, ImageFormat.JPEG]);
    const logo = await sharp({
      create: { width: 120, height: 60, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
    })
      .composite([
        {
          input: Buffer.from('<svg width="60" height="60"><circle cx="30" cy="30" r="25" fill="#c00"/></svg>'),
          left: 30,
          top: 0,
        },
      ])
      .png()
      .toBuffer();
    const res = await optimizeImage(
      {},
      request({
        source: { case: "content", value: logo },
        fileName: "brand-logo",
        formats: [ImageFormat.PNG, ImageFormat.WEBP],
        altContext: { purpose: ImagePurpose.FUNCTIONAL, linkUrl: "https://example.com/" },
      }),
    );
    expect(res.original?.hasAlpha).toBe(true);
    expect(res.variants.map((v) => [v.format, v.width])).toEqual([
      [ImageFormat.WEBP, 120],
      [ImageFormat.PNG, 120],
    ]);
    const png = res.variants[1];
    const meta = await sharp(png?.content).metadata();
    expect(meta.hasAlpha).toBe(true);
    expect(res.pictureHtml).toContain('<source type="image/webp" srcset="brand-logo-120w.webp 120w"');
    expect(res.pictureHtml).toContain('<img src="brand-logo-120w.png"');
    expect(res.altText).toBe("Example.com home page");
  });

  it("keeps the metadata when asked, and says the variants are not stripped", async () => {
    const tagged = await sharp({ create: { width: 64, height: 48, channels: 3, background: "#808080" } })
      .withExif({ IFD0: { Make: "TestCam" } })
      .jpeg()
      .toBuffer();
    const res = await optimizeImage(
      {},
      request({ source: { case: "content", value: tagged }, formats: [ImageFormat.JPEG], keepMetadata: true }),
    );
    expect(res.metadataStripped).toBe(false);
    const meta = await sharp(res.variants[0]?.content).metadata();
    expect(meta.exif?.toString("latin1")).toContain("TestCam");
  });
});

describe("optimizeImage by URL", () => {
  let server: Server;
  let origin: string;
  let small: Buffer;

  beforeAll(async () => {
    small = await sharp({ create: { width: 300, height: 200, channels: 3, background: "#a0b0c0" } })
      .jpeg()
      .toBuffer();
    server = createServer((req, res) => {
      switch (req.url) {
        case "/photos/Sunny%20Patio.jpg":
          res.writeHead(200, { "content-type": "image/jpeg", "content-length": small.byteLength });
          res.end(small);
          return;
        case "/moved":
          res.writeHead(302, { location: "/photos/Sunny%20Patio.jpg" });
          res.end();
          return;
        case "/loop":
          res.writeHead(302, { location: "/loop" });
          res.end();
          return;
        case "/page":
          res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
          res.end("<!doctype html><title>not an image</title>");
          return;
        case "/broken":
          res.writeHead(503);
          res.end();
          return;
        case "/slow":
          // Answers the headers, then never sends the body: the fetch deadline must end it.
          res.writeHead(200, { "content-type": "image/jpeg" });
          res.write(small.subarray(0, 100));
          return;
        default:
          res.writeHead(404);
          res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("fetches the image through a redirect and names the variants and the alt text after its file", async () => {
    const res = await optimizeImage(
      {},
      request({ source: { case: "url", value: `${origin}/moved` }, widths: [160], formats: [ImageFormat.WEBP] }),
    );
    expect(res.original).toMatchObject({ width: 300, height: 200, byteSize: BigInt(small.byteLength) });
    expect(res.variants.map((v) => [v.fileName, v.width])).toEqual([["sunny-patio-160w.webp", 160]]);
    expect(res.altText).toBe("Sunny patio");
  });

  it("answers INVALID_ARGUMENT on url for a 404, an HTML page, a redirect loop and an image over the byte limit", async () => {
    const init = (path: string): Init => ({
      source: { case: "url", value: `${origin}${path}` },
      formats: [ImageFormat.WEBP],
    });
    await expectInvalid({}, init("/missing.jpg"), "url", /HTTP 404/);
    await expectInvalid({}, init("/page"), "url", /HTML page/);
    await expectInvalid({}, init("/loop"), "url", /more than 5 redirects/);
    await expectInvalid({ maxInputBytes: 100 }, init("/photos/Sunny%20Patio.jpg"), "url", /above the limit of 100$/);
  });

  it("answers FAILED_PRECONDITION naming url when the server fails or the fetch deadline passes", async () => {
    const broken = await rejectionOf(() =>
      optimizeImage({}, request({ source: { case: "url", value: `${origin}/broken` } })),
    );
    expect(broken).toBeInstanceOf(FailedPreconditionError);
    expect((broken as Error).message).toMatch(/^url: could not fetch the image: HTTP 503/);
    const slow = await rejectionOf(() =>
      optimizeImage({ fetchTimeoutMs: 200 }, request({ source: { case: "url", value: `${origin}/slow` } })),
    );
    expect(slow).toBeInstanceOf(FailedPreconditionError);
    expect((slow as Error).message).toMatch(/timed out after 200 ms/);
  });
});

describe("optimizeImage bad input", () => {
  it("answers INVALID_ARGUMENT naming the field for contract violations", async () => {
    const content = { case: "content" as const, value: new Uint8Array([1]) };
    await expectInvalid({}, {}, "source");
    await expectInvalid({}, { source: content, widths: [8] }, "widths[0]");
    await expectInvalid({}, { source: content, formats: [ImageFormat.GIF] }, "formats[0]");
    await expectInvalid({}, { source: content, fileName: "Bad Name" }, "file_name");
    await expectInvalid({}, { source: content, quality: 101 }, "quality");
    await expectInvalid({}, { source: { case: "url", value: "not a url" } }, "url");
  });

  it("refuses empty content, bytes that are not an image and a truncated JPEG", async () => {
    await expectInvalid({}, { source: { case: "content", value: new Uint8Array() } }, "content", /is empty/);
    await expectInvalid(
      {},
      { source: { case: "content", value: new TextEncoder().encode("hello, not an image") } },
      "content",
      /not an image sharp can decode/,
    );
    const truncated = photo.subarray(0, Math.floor(photo.byteLength / 2));
    await expectInvalid({}, { source: { case: "content", value: truncated } }, "content", /corrupt or truncated/);
  });

  it("refuses an image above the pixel limit before decoding it", async () => {
    await expectInvalid(
      { maxInputPixels: 1_000_000 },
      { source: { case: "content", value: photo } },
      "content",
      /1600×2400 = 3840000 pixels, above the limit of 1000000/,
    );
  });

  it("answers DEADLINE_EXCEEDED when the time limit is spent, and INVALID_ARGUMENT on widths past the response limit", async () => {
    const small = await sharp({ create: { width: 400, height: 300, channels: 3, background: "#123456" } })
      .jpeg()
      .toBuffer();
    const late = await rejectionOf(() =>
      optimizeImage({ timeLimitMs: 0 }, request({ source: { case: "content", value: small } })),
    );
    expect(late).toBeInstanceOf(ConnectError);
    expect((late as ConnectError).code).toBe(Code.DeadlineExceeded);
    await expectInvalid(
      { maxResponseBytes: 100 },
      { source: { case: "content", value: small }, formats: [ImageFormat.PNG] },
      "widths",
      /exceed 100 bytes/,
    );
  });
});
