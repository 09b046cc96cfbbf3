import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  FormFactor,
  type ImageCompressionResult,
  ImageFormat,
  OptimizePageSpeedRequestSchema,
  type OptimizePageSpeedResponse,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { FailedPreconditionError, InvalidInputError, toConnectError } from "../../../lib/errors/index.ts";
import {
  createLighthouseRunner,
  findChromium,
  type LighthouseAuditOptions,
  type LighthouseBatchRunner,
  type LighthousePageResult,
  LighthouseRunError,
} from "../crawl/lighthouse.ts";
import { srcsetUrls } from "../crawl/srcset.ts";
import { collectImageUrls, optimizePageSpeed, type PageSpeedDeps } from "./page-speed.ts";

// ---------------------------------------------------------------------------------------------
// Fixture site: real images generated with sharp, served from 127.0.0.1; `localhost` on the same
// port is another origin, for the cross-origin images.

interface Fixture {
  body: Buffer | string;
  type: string;
}

const files = new Map<string, Fixture>();
let server: Server;
let origin: string;
let otherOrigin: string;

/** The test page: every way of referencing an image the skill reads, and every kind it skips. */
const fixturePage = (): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rooms</title></head>
<body><h1>Rooms</h1>
<img src="/img/hero.png" alt="Hero" width="400" height="250">
<img src="${otherOrigin}/cdn/photo-small.jpg" srcset="${otherOrigin}/cdn/photo-small.jpg 1x, /img/photo.jpg 2x" alt="Photo">
<picture><source srcset="/img/gradient,1.png 800w" type="image/png"><img src="/img/tile.png" alt="Tile"></picture>
<div style="background-image: url('/img/bg.png')">Garden</div>
<img src="${otherOrigin}/cdn/logo.svg" alt="Logo">
<img src="/img/pixel.gif" alt="">
<img src="/img/spinner.gif" alt="">
<img src="/img/broken.png" alt="">
<img src="/img/missing.png" alt="">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="">
</body></html>`;

/** A page with only the large image, for Lighthouse (before) and its optimised copy (after). */
const lighthousePage = (image: string): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Rooms</title><link rel="icon" href="data:,"></head>
<body><main><h1>Rooms</h1><img src="${image}" alt="Hero" width="400" height="250"></main></body></html>`;

/** The fixture's image URLs, as the page references them (resolved). */
const imageUrl = {
  hero: () => `${origin}/img/hero.png`,
  photoSmall: () => `${otherOrigin}/cdn/photo-small.jpg`,
  photo: () => `${origin}/img/photo.jpg`,
  gradient: () => `${origin}/img/gradient,1.png`,
  tile: () => `${origin}/img/tile.png`,
  bg: () => `${origin}/img/bg.png`,
  logo: () => `${otherOrigin}/cdn/logo.svg`,
  pixel: () => `${origin}/img/pixel.gif`,
  spinner: () => `${origin}/img/spinner.gif`,
  broken: () => `${origin}/img/broken.png`,
  missing: () => `${origin}/img/missing.png`,
};

const noise = (width: number, height: number) =>
  sharp({
    create: { width, height, channels: 3, background: "#808080", noise: { type: "gaussian", mean: 128, sigma: 40 } },
  });

async function makeFixtures(): Promise<void> {
  const exif = { IFD0: { Copyright: "Fixture Photo Co", Artist: "Test Photographer" } };
  const frames = await Promise.all(
    [0, 1, 2].map((i) =>
      sharp({ create: { width: 32, height: 32, channels: 4, background: { r: 80 * i, g: 50, b: 200, alpha: 1 } } })
        .png()
        .toBuffer(),
    ),
  );
  const gradient = Buffer.alloc(800 * 400 * 3);
  for (let i = 0; i < gradient.length; i++) gradient[i] = Math.floor(((i / 3) % 800) / 3.2);
  const images: Record<string, Promise<Buffer> | Buffer | string> = {
    "/img/hero.png": noise(1600, 1000).png().toBuffer(),
    "/lh-opt/hero.webp": noise(1600, 1000).resize({ width: 800 }).webp({ quality: 60 }).toBuffer(),
    "/img/photo.jpg": noise(1200, 800).jpeg({ quality: 98 }).withExif(exif).toBuffer(),
    "/cdn/photo-small.jpg": noise(600, 400).jpeg({ quality: 98 }).withExif(exif).toBuffer(),
    "/img/gradient,1.png": sharp(gradient, { raw: { width: 800, height: 400, channels: 3 } })
      .png()
      .toBuffer(),
    "/img/tile.png": sharp({ create: { width: 16, height: 16, channels: 3, background: "#ff0000" } })
      .png()
      .toBuffer(),
    "/img/bg.png": noise(640, 320).png().toBuffer(),
    "/cdn/logo.svg":
      '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    "/img/pixel.gif": sharp({ create: { width: 1, height: 1, channels: 3, background: "#ff0000" } })
      .gif()
      .toBuffer(),
    "/img/spinner.gif": sharp(frames, { join: { animated: true } })
      .gif({ delay: 100 })
      .toBuffer(),
    "/img/broken.png": "this is not a PNG at all, just text served as one",
  };
  const types: Record<string, string> = {
    png: "image/png",
    jpg: "image/jpeg",
    gif: "image/gif",
    svg: "image/svg+xml",
    webp: "image/webp",
  };
  for (const [path, body] of Object.entries(images)) {
    const ext = path.split(".").pop() ?? "";
    files.set(path, { body: await body, type: types[ext] ?? "application/octet-stream" });
  }
}

/** The bytes of a generated fixture image. */
function fixtureBytes(path: string): Buffer {
  const body = files.get(path)?.body;
  if (!(body instanceof Buffer)) throw new Error(`no fixture image ${path}`);
  return body;
}

beforeAll(async () => {
  await makeFixtures();
  server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const html = (body: string): void => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(body);
    };
    if (path === "/") return html(fixturePage());
    if (path === "/lh/") return html(lighthousePage("/img/hero.png"));
    if (path === "/lh-opt/") return html(lighthousePage("/lh-opt/hero.webp"));
    const file = files.get(path);
    if (file === undefined) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": file.type, "cache-control": "no-store" }).end(file.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${port}`;
  otherOrigin = `http://localhost:${port}`;
}, 60_000);

afterAll(() => {
  server?.close();
});

// ---------------------------------------------------------------------------------------------
// A fake Lighthouse (our runner's interface) for the tests that are not about Lighthouse itself.

/** Lighthouse 13's mobile curves and weights of the scored metrics. */
const mobileScoring = (m: { fcp: number; lcp: number; tbt: number; cls: number; si: number }) => [
  { id: "first-contentful-paint", weight: 10, p10: 1800, median: 3000, value: m.fcp },
  { id: "largest-contentful-paint", weight: 25, p10: 2500, median: 4000, value: m.lcp },
  { id: "total-blocking-time", weight: 30, p10: 200, median: 600, value: m.tbt },
  { id: "cumulative-layout-shift", weight: 25, p10: 0.1, median: 0.25, value: m.cls },
  { id: "speed-index", weight: 10, p10: 3387, median: 5800, value: m.si },
];

function fakeResult(url: string, performance: number, extra: Partial<LighthousePageResult> = {}): LighthousePageResult {
  const m = { fcp: 1500, lcp: 6000, tbt: 100, cls: 0.01, si: 3000 };
  return {
    url,
    finalUrl: url,
    formFactor: "mobile",
    scores: { performance, accessibility: 0, bestPractices: 0, seo: 0 },
    metrics: {
      lcpMs: m.lcp,
      cls: m.cls,
      tbtMs: m.tbt,
      fcpMs: m.fcp,
      speedIndexMs: m.si,
      serverResponseTimeMs: 40,
      totalByteWeight: 5_000_000,
    },
    failingAudits: [],
    opportunities: [],
    requests: [],
    metricScoring: mobileScoring(m),
    warnings: [],
    lighthouseVersion: "13.5.0-fake",
    durationMs: 1,
    ...extra,
  };
}

interface FakeCall {
  url: string;
  options: LighthouseAuditOptions | undefined;
}

/** A runner answering from `answer` and recording its calls. */
function fakeLighthouse(answer: (url: string, call: number) => LighthousePageResult | Error): {
  deps: PageSpeedDeps;
  calls: FakeCall[];
} {
  const calls: FakeCall[] = [];
  return {
    calls,
    deps: {
      lighthouse: {
        async audit(url, _signal, options) {
          calls.push({ url, options });
          const r = answer(url, calls.length);
          if (r instanceof Error) throw r;
          return r;
        },
      },
    },
  };
}

type Req = MessageInitShape<typeof OptimizePageSpeedRequestSchema>;
const run = (deps: PageSpeedDeps, req: Req): Promise<OptimizePageSpeedResponse> =>
  optimizePageSpeed(deps, create(OptimizePageSpeedRequestSchema, req));

const byUrl = (images: readonly ImageCompressionResult[], url: string): ImageCompressionResult => {
  const found = images.find((i) => i.sourceUrl === url);
  if (found === undefined) throw new Error(`no result for ${url}`);
  return found;
};

const saved = (i: ImageCompressionResult): bigint => i.originalBytes - i.optimizedBytes;

// ---------------------------------------------------------------------------------------------

describe("image discovery", () => {
  it("parses srcset candidates by the HTML rules, commas inside URLs included", () => {
    expect(srcsetUrls("a.jpg 1x, b.jpg 2x")).toEqual(["a.jpg", "b.jpg"]);
    expect(srcsetUrls(" /c/w_100,h_50/x.jpg 100w,/y.jpg 200w ")).toEqual(["/c/w_100,h_50/x.jpg", "/y.jpg"]);
    // A URL runs to the next whitespace, so this is one candidate whose URL contains a comma.
    expect(srcsetUrls("one.png,two.png 2x")).toEqual(["one.png,two.png"]);
    expect(srcsetUrls("a.png, b.png,, c.png")).toEqual(["a.png", "b.png", "c.png"]);
    expect(srcsetUrls("")).toEqual([]);
  });

  it("collects img src/srcset, picture sources and inline CSS url(), resolved against <base>, http(s) only", () => {
    const html = `<html><head><base href="https://cdn.example/assets/"></head><body>
<img src="a.png" srcset="a.png 1x, a2.png 2x"><picture><source srcset="p.webp"><img src="p.jpg"></picture>
<div style='background: url("bg.jpg") no-repeat, url(/root.png)'></div><img src="data:image/png;base64,AA==">
<img src="javascript:void(0)"><source srcset="not-in-picture.png"></body></html>`;
    expect(collectImageUrls(html, "https://www.example/page")).toEqual([
      "https://cdn.example/assets/a.png",
      "https://cdn.example/assets/a2.png",
      "https://cdn.example/assets/p.webp",
      "https://cdn.example/assets/p.jpg",
      "https://cdn.example/assets/bg.jpg",
      "https://cdn.example/root.png",
    ]);
  });
});

describe("image compression (fake Lighthouse)", () => {
  const lh = () => fakeLighthouse((url) => fakeResult(url, 50));

  it("re-encodes every image to capped-width WebP, strips metadata and reports skips", async () => {
    const res = await run(lh().deps, {
      pages: [{ url: `${origin}/` }],
      imageCompression: { maxWidthPx: 800 },
      includeOptimizedImages: true,
    });
    const page = res.pages[0];
    if (page === undefined) throw new Error("no page");
    expect(page.error).toBe("");
    const images = page.images;
    expect(images.map((i) => i.sourceUrl).sort()).toEqual(
      Object.values(imageUrl)
        .map((u) => u())
        .sort(),
    );

    // The large noisy PNG: smaller, real WebP, width capped without distortion.
    const hero = byUrl(images, imageUrl.hero());
    expect(hero).toMatchObject({
      originalMimeType: "image/png",
      originalWidthPx: 1600,
      originalHeightPx: 1000,
      optimizedFormat: ImageFormat.WEBP,
      optimizedWidthPx: 800,
      optimizedHeightPx: 500,
      keptOriginal: false,
      error: "",
    });
    expect(hero.originalBytes).toBe(BigInt(fixtureBytes("/img/hero.png").byteLength));
    expect(hero.optimizedBytes).toBe(BigInt(hero.optimizedContent.byteLength));
    expect(hero.optimizedBytes).toBeLessThan(hero.originalBytes);
    const heroOut = await sharp(hero.optimizedContent).metadata();
    expect([heroOut.format, heroOut.width, heroOut.height]).toEqual(["webp", 800, 500]);

    // The JPEG with EXIF: the original has it, the output does not.
    const photo = byUrl(images, imageUrl.photo());
    expect((await sharp(fixtureBytes("/img/photo.jpg")).metadata()).exif).toBeDefined();
    const photoOut = await sharp(photo.optimizedContent).metadata();
    expect(photoOut.exif).toBeUndefined();
    expect(photoOut.width).toBe(800);
    expect(photo.optimizedBytes).toBeLessThan(photo.originalBytes);

    // Smaller than the limit: not enlarged.
    const small = byUrl(images, imageUrl.photoSmall());
    expect([small.originalWidthPx, small.optimizedWidthPx, small.originalMimeType]).toEqual([600, 600, "image/jpeg"]);

    // A 43-byte GIF does not get smaller as WebP: the original is kept.
    const pixel = byUrl(images, imageUrl.pixel());
    expect(pixel).toMatchObject({ keptOriginal: true, error: "", optimizedFormat: ImageFormat.UNSPECIFIED });
    expect(pixel.optimizedBytes).toBe(pixel.originalBytes);
    expect(pixel.optimizedContent.byteLength).toBe(0);

    expect(byUrl(images, imageUrl.logo())).toMatchObject({ keptOriginal: true, error: expect.stringMatching(/SVG/) });
    expect(byUrl(images, imageUrl.spinner()).error).toMatch(/animated GIF \(3 frames\)/);
    expect(byUrl(images, imageUrl.broken()).error).toMatch(/^could not decode/);
    expect(byUrl(images, imageUrl.missing())).toMatchObject({ error: "could not fetch: HTTP 404", originalBytes: 0n });
    for (const skipped of [imageUrl.logo(), imageUrl.spinner(), imageUrl.broken(), imageUrl.missing()]) {
      expect(saved(byUrl(images, skipped))).toBe(0n);
    }

    // Largest saving first; the totals add up.
    for (let i = 1; i < images.length; i++) {
      expect(saved(images[i - 1] as ImageCompressionResult)).toBeGreaterThanOrEqual(
        saved(images[i] as ImageCompressionResult),
      );
    }
    expect(images[0]?.sourceUrl).toBe(imageUrl.hero());
    expect(page.imageBytesBefore).toBe(images.reduce((n, i) => n + i.originalBytes, 0n));
    expect(page.imageBytesAfter).toBe(images.reduce((n, i) => n + i.optimizedBytes, 0n));
    expect(res.totalBytesSaved).toBe(page.imageBytesBefore - page.imageBytesAfter);
    expect(res.totalBytesSaved).toBeGreaterThan(0n);
  });

  it("keeps metadata when asked and encodes progressive JPEG at the given quality", async () => {
    const res = await run(lh().deps, {
      pages: [{ url: `${origin}/` }],
      imageCompression: { format: ImageFormat.JPEG, quality: 70, keepMetadata: true },
      includeOptimizedImages: true,
    });
    const photo = byUrl(res.pages[0]?.images ?? [], imageUrl.photo());
    expect(photo.optimizedFormat).toBe(ImageFormat.JPEG);
    const out = await sharp(photo.optimizedContent).metadata();
    expect(out).toMatchObject({ format: "jpeg", isProgressive: true, width: 1200 });
    expect(out.exif?.toString("latin1")).toContain("Fixture Photo Co");
  });

  it.each([
    [ImageFormat.AVIF, "heif"],
    [ImageFormat.PNG, "png"],
  ] as const)("encodes format %i (sharp reports %s)", async (format, sharpFormat) => {
    const res = await run(lh().deps, {
      pages: [{ url: `${origin}/` }],
      imageCompression: { format, maxWidthPx: 400 },
      includeOptimizedImages: true,
      maxImagesPerPage: 1,
    });
    const hero = byUrl(res.pages[0]?.images ?? [], imageUrl.hero());
    expect(hero.optimizedFormat).toBe(format);
    const out = await sharp(hero.optimizedContent).metadata();
    expect([out.format, out.width]).toEqual([sharpFormat, 400]);
    if (format === ImageFormat.AVIF) expect(out.compression).toBe("av1");
    else expect(out.isPalette).toBe(true);
  });

  it("compresses only the largest max_images_per_page images and leaves the bytes out unless asked", async () => {
    const res = await run(lh().deps, { pages: [{ url: `${origin}/` }], maxImagesPerPage: 2 });
    const images = res.pages[0]?.images ?? [];
    expect(images.map((i) => i.sourceUrl).sort()).toEqual([imageUrl.hero(), imageUrl.photo()].sort());
    for (const i of images) {
      expect(i.keptOriginal).toBe(false);
      expect(i.optimizedContent.byteLength).toBe(0);
    }
  });

  it("measures only, without fetching images, when compression is skipped", async () => {
    const res = await run(lh().deps, { pages: [{ url: `${origin}/` }], skipImageCompression: true });
    expect(res.pages[0]?.images).toEqual([]);
    expect(res.pages[0]?.imageBytesBefore).toBe(0n);
    expect(res.totalBytesSaved).toBe(0n);
  });
});

describe("image memory (fake Lighthouse)", () => {
  const lh = () => fakeLighthouse((url) => fakeResult(url, 50));
  const KIB = 1024;

  /**
   * A page of `count` images of about 200 KiB each (not decodable: memory is the point, not
   * encoding), every other one sent chunked without a Content-Length; counts the image responses
   * in flight at once.
   */
  async function manyImages(count: number) {
    const bodies = Array.from({ length: count }, (_, i) => randomBytes(200 * KIB + i * KIB));
    let inFlight = 0;
    let maxInFlight = 0;
    let requests = 0;
    const site = createServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      if (path === "/") {
        const imgs = bodies.map((_, i) => `<img src="/i/${i}.png" alt="">`).join("");
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(`<!doctype html><body>${imgs}</body>`);
        return;
      }
      const body = bodies[Number(/^\/i\/(\d+)\.png$/.exec(path)?.[1] ?? "-1")];
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      requests++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      res.once("close", () => inFlight--);
      const chunked = bodies.indexOf(body) % 2 === 1;
      res.writeHead(200, {
        "content-type": "image/png",
        ...(chunked ? {} : { "content-length": String(body.length) }),
      });
      // In pieces, so a slow reader holds the response open.
      for (let at = 0; at < body.length; at += 64 * KIB) res.write(body.subarray(at, at + 64 * KIB));
      res.end();
    });
    await new Promise<void>((r) => site.listen(0, "127.0.0.1", r));
    return {
      url: `http://127.0.0.1:${(site.address() as AddressInfo).port}/`,
      bodies,
      stats: () => ({ maxInFlight, requests }),
      close: () => new Promise<void>((r) => site.close(() => r())),
    };
  }

  it("holds at most the bound of image bytes and a few downloads at once on a page of many large images", async () => {
    const site = await manyImages(40);
    try {
      let maxHeld = 0;
      let last = -1;
      const bound = 1024 * KIB;
      const res = await run(
        {
          ...lh().deps,
          maxImageBytes: 512 * KIB,
          maxHeldImageBytes: bound,
          onImageBytesHeld: (bytes) => {
            maxHeld = Math.max(maxHeld, bytes);
            last = bytes;
          },
        },
        { pages: [{ url: site.url }], maxImagesPerPage: 30 },
      );
      const images = res.pages[0]?.images ?? [];
      // The 30 largest, each read whole (then found not to be an image).
      expect(images).toHaveLength(30);
      const largest = [...site.bodies].sort((a, b) => b.length - a.length).slice(0, 30);
      expect(images.map((i) => Number(i.originalBytes)).sort((a, b) => b - a)).toEqual(largest.map((b) => b.length));
      for (const i of images) expect(i.error).toMatch(/^could not decode/);
      // 30 images of 200+ KiB (over 6 MiB) went through; never more than the bound was held.
      expect(maxHeld).toBeGreaterThan(0);
      expect(maxHeld).toBeLessThanOrEqual(bound);
      expect(last).toBe(0);
      expect(site.stats().maxInFlight).toBeLessThanOrEqual(4);
    } finally {
      await site.close();
    }
  });

  it("compresses the same under a tight bound as with room to spare", async () => {
    const req: Req = { pages: [{ url: `${origin}/` }], imageCompression: { maxWidthPx: 800 } };
    const roomy = await run(lh().deps, req);
    let maxHeld = 0;
    const maxImageBytes = fixtureBytes("/img/hero.png").byteLength;
    const tight = await run(
      { ...lh().deps, maxImageBytes, maxHeldImageBytes: 1, onImageBytesHeld: (b) => (maxHeld = Math.max(maxHeld, b)) },
      req,
    );
    const view = (r: OptimizePageSpeedResponse) =>
      (r.pages[0]?.images ?? []).map((i) => [i.sourceUrl, i.originalBytes, i.optimizedBytes, i.error]);
    expect(view(tight)).toEqual(view(roomy));
    expect(maxHeld).toBeLessThanOrEqual(maxImageBytes);
    expect(tight.totalBytesSaved).toBe(roomy.totalBytesSaved);
  });
});

describe("Lighthouse results (fake Lighthouse)", () => {
  it("reports the median run by performance score, for the requested form factor, performance only", async () => {
    const scores = [40, 90, 60];
    const { deps, calls } = fakeLighthouse((url, n) =>
      fakeResult(url, scores[n - 1] ?? 0, { metrics: { ...fakeResult(url, 0).metrics, lcpMs: 1000 * n } }),
    );
    const res = await run(deps, {
      pages: [{ url: `${origin}/` }],
      formFactor: FormFactor.DESKTOP,
      runs: 3,
      skipImageCompression: true,
    });
    expect(calls).toHaveLength(3);
    for (const c of calls) expect(c.options).toEqual({ formFactor: "desktop", categories: ["performance"] });
    expect(res.formFactor).toBe(FormFactor.DESKTOP);
    expect(res.pages[0]?.before?.performanceScore).toBe(60);
    // The metrics are the median run's own (the third run's LCP), not a mix of runs.
    expect(res.pages[0]?.before?.largestContentfulPaintMs).toBe(3000);
    expect(res.lighthouseVersion).toBe("13.5.0-fake");
  });

  it("estimates the after metrics from the audited image savings and the bytes actually saved", async () => {
    const audited = 4_000_000;
    const { deps } = fakeLighthouse((url) =>
      fakeResult(url, 55, {
        opportunities: [
          {
            id: "image-delivery-insight",
            title: "Improve image delivery",
            description: "Smaller images load faster. [Learn more](https://developer.chrome.com/docs/x)",
            savingsMs: 3000,
            savingsBytes: audited,
            metricSavings: { FCP: 0, LCP: 3000 },
            urls: [imageUrl.hero()],
          },
          {
            id: "render-blocking-insight",
            title: "Render blocking requests",
            description: "Inline critical CSS.",
            savingsMs: 300,
            savingsBytes: 0,
            metricSavings: { FCP: 300, LCP: 300 },
            urls: [`${origin}/style.css`],
          },
        ],
        // The page loaded the hero and the 1x photo; the 2x candidate was never downloaded.
        requests: [
          { url: `${origin}/`, resourceType: "Document", transferBytes: 2000 },
          { url: imageUrl.hero(), resourceType: "Image", transferBytes: 4_800_000 },
          { url: imageUrl.photoSmall(), resourceType: "Image", transferBytes: 300_000 },
        ],
      }),
    );
    const res = await run(deps, { pages: [{ url: `${origin}/` }], imageCompression: { maxWidthPx: 800 } });
    const page = res.pages[0];
    if (page?.before === undefined || page.after === undefined) throw new Error("no metrics");
    const images = page.images;
    const loadedSaving = Number(saved(byUrl(images, imageUrl.hero())) + saved(byUrl(images, imageUrl.photoSmall())));
    expect(saved(byUrl(images, imageUrl.photo()))).toBeGreaterThan(0n);

    expect(page.before).toMatchObject({ performanceScore: 55, largestContentfulPaintMs: 6000, estimated: false });
    expect(page.after.estimated).toBe(true);
    expect(page.after.totalByteWeight).toBe(BigInt(5_000_000 - loadedSaving));
    expect(page.pageBytesBefore).toBe(5_000_000n);
    expect(page.pageBytesAfter).toBe(page.after.totalByteWeight);
    const share = Math.min(1, loadedSaving / audited);
    expect(page.after.largestContentfulPaintMs).toBe(Math.round(6000 - 3000 * share));
    expect(page.after.firstContentfulPaintMs).toBe(1500);
    expect(page.after.performanceScore).toBeGreaterThan(55);
    expect(page.after.performanceScore).toBeLessThanOrEqual(100);
    expect([page.after.totalBlockingTimeMs, page.after.cumulativeLayoutShift]).toEqual([100, 0.01]);
    expect(res.medianPerformanceAfter).toBe(page.after.performanceScore);

    expect(page.opportunities.map((o) => o.auditId)).toEqual(["image-delivery-insight", "render-blocking-insight"]);
    expect(page.opportunities[0]).toMatchObject({
      estimatedSavingsMs: 3000,
      estimatedSavingsBytes: BigInt(audited),
      resourceUrls: [imageUrl.hero()],
      recommendation: "Smaller images load faster. Learn more (https://developer.chrome.com/docs/x)",
    });
  });

  it("measures the after metrics on the optimised URL when given", async () => {
    const optimized = `${origin}/lh-opt/`;
    const { deps, calls } = fakeLighthouse((url) =>
      url === optimized
        ? fakeResult(url, 97, { metrics: { ...fakeResult(url, 0).metrics, totalByteWeight: 80_000 } })
        : fakeResult(url, 41),
    );
    const res = await run(deps, { pages: [{ url: `${origin}/lh/`, optimizedUrl: optimized }] });
    expect(calls.map((c) => c.url)).toEqual([`${origin}/lh/`, optimized]);
    const page = res.pages[0];
    expect(page?.after).toMatchObject({ performanceScore: 97, totalByteWeight: 80_000n, estimated: false });
    expect(page?.pageBytesAfter).toBe(80_000n);
    expect([res.medianPerformanceBefore, res.medianPerformanceAfter]).toEqual([41, 97]);
  });

  it("reports a page Lighthouse cannot load with its error and still runs the others", async () => {
    const broken = `${origin}/gone/`;
    const { deps, calls } = fakeLighthouse((url) =>
      url === broken
        ? new LighthouseRunError("ERRORED_DOCUMENT_REQUEST", `Lighthouse could not audit ${url}: status 404`)
        : fakeResult(url, 70),
    );
    const res = await run(deps, { pages: [{ url: broken }, { url: `${origin}/lh/` }], runs: 3 });
    // The broken page is tried once, the good one three times.
    expect(calls.filter((c) => c.url === broken)).toHaveLength(1);
    const [bad, good] = res.pages;
    expect(bad?.error).toMatch(/^Lighthouse could not audit .*status 404; fetching the page: HTTP 404$/);
    expect(bad?.before).toBeUndefined();
    expect(bad?.after).toBeUndefined();
    expect(good?.error).toBe("");
    expect(good?.before?.performanceScore).toBe(70);
    expect(good?.images.map((i) => i.sourceUrl)).toEqual([imageUrl.hero()]);
    expect(res.medianPerformanceBefore).toBe(70);
  });
});

describe("errors", () => {
  const code = (err: unknown): Code => toConnectError(err, () => undefined).code;

  it("answers FAILED_PRECONDITION without a Lighthouse runner or without Chromium", async () => {
    const none = await run({}, { pages: [{ url: `${origin}/` }] }).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(FailedPreconditionError);
    expect(code(none)).toBe(Code.FailedPrecondition);

    const runner = createLighthouseRunner({ chromePath: "/nonexistent/chromium" });
    try {
      const err = await run({ lighthouse: runner }, { pages: [{ url: `${origin}/` }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FailedPreconditionError);
      expect(code(err)).toBe(Code.FailedPrecondition);
      expect((err as Error).message).toMatch(/chromePath=\/nonexistent\/chromium is not an executable/);
    } finally {
      await runner.close();
    }
  });

  it("rejects invalid input with INVALID_ARGUMENT naming the field", async () => {
    const { deps, calls } = fakeLighthouse((url) => fakeResult(url, 50));
    const field = async (req: Req): Promise<string> => {
      const err = await run(deps, req).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect(code(err)).toBe(Code.InvalidArgument);
      return (err as InvalidInputError).field;
    };
    const ok = { url: "https://example.com/" };
    expect(await field({ pages: [] })).toBe("pages");
    expect(await field({ pages: Array.from({ length: 21 }, () => ok) })).toBe("pages");
    expect(await field({ pages: [{ url: "" }] })).toBe("pages[0].url");
    expect(await field({ pages: [{ url: "ftp://example.com/a" }] })).toBe("pages[0].url");
    expect(await field({ pages: [{ url: "/relative" }] })).toBe("pages[0].url");
    expect(await field({ pages: [{ url: `https://example.com/${"x".repeat(2100)}` }] })).toBe("pages[0].url");
    expect(await field({ pages: [ok, { url: "https://example.com/", optimizedUrl: "javascript:alert(1)" }] })).toBe(
      "pages[1].optimized_url",
    );
    expect(await field({ pages: [ok], runs: 6 })).toBe("runs");
    expect(await field({ pages: [ok], formFactor: 7 as FormFactor })).toBe("form_factor");
    expect(await field({ pages: [ok], maxImagesPerPage: 201 })).toBe("max_images_per_page");
    expect(await field({ pages: [ok], imageCompression: { quality: 101 } })).toBe("image_compression.quality");
    expect(await field({ pages: [ok], imageCompression: { maxWidthPx: -1 } })).toBe("image_compression.max_width_px");
    expect(await field({ pages: [ok], imageCompression: { format: 9 as ImageFormat } })).toBe(
      "image_compression.format",
    );
    expect(calls).toEqual([]);
  });
});

const chromium = findChromium({ env: process.env });

describe.skipIf(chromium === undefined)("with Lighthouse in Chromium (skipped: no Chromium binary found)", () => {
  let runner: LighthouseBatchRunner;

  beforeAll(() => {
    runner = createLighthouseRunner({ chromePath: chromium, idleCloseMs: 0 });
  });

  afterAll(async () => {
    await runner?.close();
  });

  it("measures before and after on mobile and compresses the page's image", { timeout: 120_000 }, async () => {
    const res = await run(
      { lighthouse: runner },
      {
        pages: [{ url: `${origin}/lh/`, optimizedUrl: `${origin}/lh-opt/` }],
        formFactor: FormFactor.MOBILE,
        runs: 1,
        imageCompression: { maxWidthPx: 800 },
      },
    );
    expect(res.lighthouseVersion).toBe("13.5.0");
    expect(res.formFactor).toBe(FormFactor.MOBILE);
    const page = res.pages[0];
    if (page?.before === undefined || page.after === undefined) throw new Error(`no metrics: ${page?.error}`);
    expect(page.error).toBe("");
    expect(page.finalUrl).toBe(`${origin}/lh/`);
    for (const m of [page.before, page.after]) {
      expect(m.performanceScore).toBeGreaterThanOrEqual(0);
      expect(m.performanceScore).toBeLessThanOrEqual(100);
      expect(m.largestContentfulPaintMs).toBeGreaterThan(0);
      expect(m.firstContentfulPaintMs).toBeGreaterThan(0);
      expect(m.speedIndexMs).toBeGreaterThan(0);
      expect(m.totalByteWeight).toBeGreaterThan(0n);
      expect(m.estimated).toBe(false);
    }
    // The optimised copy serves an 800 px WebP instead of the 1600 px PNG.
    const heroBytes = BigInt(fixtureBytes("/img/hero.png").byteLength);
    expect(page.before.totalByteWeight).toBeGreaterThan(heroBytes);
    expect(page.after.totalByteWeight).toBeLessThan(page.before.totalByteWeight / 2n);
    expect(page.pageBytesAfter).toBeLessThan(page.pageBytesBefore);
    expect(page.after.largestContentfulPaintMs).toBeLessThan(page.before.largestContentfulPaintMs);

    // Lighthouse flags the oversized image, and the list is largest time saving first.
    const delivery = page.opportunities.find((o) => o.auditId === "image-delivery-insight");
    expect(delivery?.resourceUrls).toContain(imageUrl.hero());
    expect(delivery?.estimatedSavingsBytes).toBeGreaterThan(0n);
    const ms = page.opportunities.map((o) => o.estimatedSavingsMs);
    expect(ms).toEqual([...ms].sort((a, b) => b - a));

    const hero = byUrl(page.images, imageUrl.hero());
    expect(hero.optimizedWidthPx).toBe(800);
    expect(hero.optimizedBytes).toBeLessThan(hero.originalBytes);
  });
});
