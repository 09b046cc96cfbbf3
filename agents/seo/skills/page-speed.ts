/**
 * Page speed with image compression (`seo.page_speed`).
 *
 * Method, per page in request order:
 * 1. Lighthouse (performance only, injected runner, one Chromium at a time) audits the page
 *    `runs` times for the form factor; the run with the median performance score is reported
 *    (the lower of the two middle runs for an even count), with its opportunities — failing
 *    performance audits that estimate time or byte savings — largest time saving first. When the
 *    first run fails the page is not retried: it carries the error and the next page runs.
 * 2. Unless `skip_image_compression`, the page's HTML is fetched (audit-fetch.ts: redirects, 5 MiB
 *    cap) and its images collected: `<img src>` and `srcset`, `<picture><source srcset>` and CSS
 *    `url()` in `style` attributes, resolved against the page (and `<base href>`), http(s) only, any
 *    origin. Each is sized ({@link FETCH_CONCURRENCY} requests at a time, timeout,
 *    {@link MAX_IMAGE_BYTES} cap: a larger declared length is not read, a longer body stops being
 *    read); the largest `max_images_per_page` are decoded with sharp, auto-oriented, resized down to `max_width_px`
 *    (never up), stripped of metadata unless `keep_metadata`, and encoded to the chosen format. An
 *    encoding that is not smaller keeps the original. SVGs (vector already), animated GIF/WebP
 *    (re-encoding would drop frames) and undecodable files are reported with the reason and kept.
 *    `include_optimized_images` returns the bytes of re-encoded images only (a kept original is
 *    at its source URL).
 * 3. "After": with an `optimized_url`, Lighthouse measures it the same way. Otherwise it is
 *    estimated from the audited savings: Lighthouse's image-delivery savings for LCP and FCP,
 *    scaled by the share of its estimated image bytes the re-encoding actually saved on images the
 *    page loaded (in full when compression is skipped), bytes reduced by those savings, and the
 *    score moved by what Lighthouse's own metric curves and weights give for the new values.
 *    Speed Index, TBT, CLS and server response time are left as measured (no audited estimate).
 *
 * Bytes: page bytes are Lighthouse's transfer sizes (total byte weight); image bytes are the
 * bodies of the reported images; `total_bytes_saved` adds up the image savings of every page.
 *
 * Memory: the image bodies a call holds at once — kept for encoding or being read — never exceed
 * {@link MAX_HELD_IMAGE_BYTES} (each read reserves its bytes first). While sizing, a body is kept
 * only if its image is among the largest so far and it fits; the others are dropped and read again
 * for encoding, two at a time.
 *
 * Within a call, Lighthouse runs and image encoding never overlap, so encoding does not load the
 * CPU whose task timings Lighthouse's simulation uses.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { load } from "cheerio";
import sharp, { type Metadata, type OutputInfo } from "sharp";
import {
  FormFactor,
  type ImageCompressionResult,
  ImageCompressionResultSchema,
  ImageFormat,
  type LighthouseMetrics,
  LighthouseMetricsSchema,
  type OptimizePageSpeedRequest,
  type OptimizePageSpeedResponse,
  OptimizePageSpeedResponseSchema,
  type PageSpeedResult,
  PageSpeedResultSchema,
  type SpeedOpportunity,
  SpeedOpportunitySchema,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import { DEFAULT_USER_AGENT, fetchResource, type HttpOptions, readCapped } from "../crawl/audit-fetch.ts";
import { resolveHttpUrl } from "../crawl/audit-page.ts";
import {
  ChromiumNotFoundError,
  type LighthouseBatchRunner,
  type LighthouseFormFactor,
  type LighthousePageResult,
  performanceScoreFor,
} from "../crawl/lighthouse.ts";
import { absoluteHttpUrl } from "../crawl/robots-rules.ts";
import { srcsetUrls } from "../crawl/srcset.ts";

/** Images compressed per page when the request says 0. */
export const DEFAULT_MAX_IMAGES_PER_PAGE = 50;
/** Largest image fetched and decoded, in bytes; a larger one is reported, not compressed. */
export const MAX_IMAGE_BYTES = 25 * 1024 * 1024;
/**
 * Most image bytes a call holds at once (bodies kept for encoding plus bodies being read); raised
 * to the per-image limit when that is larger, so the largest image still fits.
 */
export const MAX_HELD_IMAGE_BYTES = 64 * 1024 * 1024;
/** Distinct image URLs of a page that are fetched to find the largest ones; the rest are ignored. */
export const MAX_IMAGE_CANDIDATES = 500;
/** Timeout of one HTML or image request, in milliseconds. */
export const DEFAULT_FETCH_TIMEOUT_MS = 15_000;
/** Lighthouse audits whose savings come from image bytes (the first is Lighthouse 13's; the rest older names). */
export const IMAGE_AUDIT_IDS: ReadonlySet<string> = new Set([
  "image-delivery-insight",
  "uses-optimized-images",
  "modern-image-formats",
  "uses-responsive-images",
]);

/** Image requests fetched at once. */
const FETCH_CONCURRENCY = 4;
/** Images encoded at once (sharp also uses its own threads per image). */
const ENCODE_CONCURRENCY = 2;

/** The part of the Lighthouse runner the skill uses (lighthouse.ts's runner, or a fake in tests). */
export type PageSpeedLighthouse = Pick<LighthouseBatchRunner, "audit">;

/** Dependencies of the skill. */
export interface PageSpeedDeps {
  /** Lighthouse runner; without one the skill answers FAILED_PRECONDITION. */
  readonly lighthouse?: PageSpeedLighthouse | undefined;
  /** User-Agent of the HTML and image requests (default {@link DEFAULT_USER_AGENT}). */
  readonly userAgent?: string | undefined;
  /** Timeout of one HTML or image request, ms (default {@link DEFAULT_FETCH_TIMEOUT_MS}). */
  readonly fetchTimeoutMs?: number | undefined;
  /** Largest image compressed, bytes (default {@link MAX_IMAGE_BYTES}). */
  readonly maxImageBytes?: number | undefined;
  /** Most image bytes held at once, bytes (default {@link MAX_HELD_IMAGE_BYTES}). */
  readonly maxHeldImageBytes?: number | undefined;
  /** Told the image bytes the call holds after every change (for metrics and tests). */
  readonly onImageBytesHeld?: ((bytes: number) => void) | undefined;
}

/** How images are re-encoded, defaults applied. */
interface Encoding {
  /** Output format, never UNSPECIFIED. */
  format: ImageFormat;
  /** Encoder quality; undefined means the format's default. */
  quality: number | undefined;
  /** Width limit in pixels; 0 keeps the size. */
  maxWidth: number;
  keepMetadata: boolean;
}

/** The request with defaults applied. */
interface PageSpeedOptions {
  pages: { url: string; optimizedUrl: string }[];
  formFactor: LighthouseFormFactor;
  runs: number;
  encoding: Encoding;
  compress: boolean;
  includeImages: boolean;
  maxImages: number;
}

function intInRange(value: number, field: string, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidInputError(field, `must be between ${min} and ${max}, got ${value}`);
  }
}

/** An absolute http(s) URL with a host, at most 2048 characters, without fragment. */
function pageUrl(value: string, field: string): string {
  if (value.length > 2048) throw new InvalidInputError(field, "must be at most 2048 characters");
  const url = absoluteHttpUrl(value, field);
  if (url.hostname === "") throw new InvalidInputError(field, "must name a host");
  url.hash = "";
  return url.href;
}

/** Checks the request (the contract's rules, again, for direct callers) and applies defaults. */
function pageSpeedOptions(req: OptimizePageSpeedRequest): PageSpeedOptions {
  if (req.pages.length === 0) throw new InvalidInputError("pages", "must list at least one page");
  if (req.pages.length > 20)
    throw new InvalidInputError("pages", `must list at most 20 pages, got ${req.pages.length}`);
  const pages = req.pages.map((p, i) => {
    if (p.url === "") throw new InvalidInputError(`pages[${i}].url`, "is required");
    return {
      url: pageUrl(p.url, `pages[${i}].url`),
      optimizedUrl: p.optimizedUrl === "" ? "" : pageUrl(p.optimizedUrl, `pages[${i}].optimized_url`),
    };
  });
  if (!(Object.values(FormFactor) as number[]).includes(req.formFactor)) {
    throw new InvalidInputError("form_factor", `unknown value ${req.formFactor}`);
  }
  intInRange(req.runs, "runs", 0, 5);
  intInRange(req.maxImagesPerPage, "max_images_per_page", 0, 200);
  const ic = req.imageCompression;
  if (ic !== undefined) {
    if (!(Object.values(ImageFormat) as number[]).includes(ic.format)) {
      throw new InvalidInputError("image_compression.format", `unknown value ${ic.format}`);
    }
    intInRange(ic.quality, "image_compression.quality", 0, 100);
    intInRange(ic.maxWidthPx, "image_compression.max_width_px", 0, 8192);
  }
  return {
    pages,
    formFactor: req.formFactor === FormFactor.DESKTOP ? "desktop" : "mobile",
    runs: req.runs || 1,
    encoding: {
      format: ic === undefined || ic.format === ImageFormat.UNSPECIFIED ? ImageFormat.WEBP : ic.format,
      quality: ic === undefined || ic.quality === 0 ? undefined : ic.quality,
      maxWidth: ic?.maxWidthPx ?? 0,
      keepMetadata: ic?.keepMetadata ?? false,
    },
    compress: !req.skipImageCompression,
    includeImages: req.includeOptimizedImages,
    maxImages: req.maxImagesPerPage || DEFAULT_MAX_IMAGES_PER_PAGE,
  };
}

// ---------------------------------------------------------------------------------------------
// Image discovery and fetching.

/** URLs in a CSS declaration list's `url()` functions. */
function cssUrls(style: string): string[] {
  return [...style.matchAll(/url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))\s*\)/gi)].map((m) => m[1] ?? m[2] ?? m[3] ?? "");
}

/**
 * The distinct http(s) image URLs of an HTML page, resolved, in document order: `<img src>` and
 * `srcset`, `<picture><source srcset>`, and `url()` in `style` attributes.
 */
export function collectImageUrls(html: string, pageUrl: string): string[] {
  const $ = load(html);
  let base = new URL(pageUrl);
  const baseHref = $("base[href]").first().attr("href");
  if (baseHref !== undefined) {
    try {
      base = new URL(baseHref, base);
    } catch {
      // An unusable <base> is ignored, as browsers do.
    }
  }
  const found = new Set<string>();
  const add = (raw: string | undefined): void => {
    const url = raw === undefined ? undefined : resolveHttpUrl(raw, base);
    if (url !== undefined) found.add(url);
  };
  $("img, picture > source, [style]").each((_, el) => {
    const $el = $(el);
    if (el.tagName === "img") add($el.attr("src"));
    if (el.tagName === "img" || el.tagName === "source") for (const u of srcsetUrls($el.attr("srcset") ?? "")) add(u);
    for (const u of cssUrls($el.attr("style") ?? "")) add(u);
  });
  return [...found];
}

/**
 * The image bytes a call holds at once: bodies kept for encoding and bodies being read. Reading
 * reserves before it reads, so the total never exceeds the limit; a reservation that does not fit
 * waits until others are released (FIFO).
 */
export class ImageMemory {
  #held = 0;
  readonly #waiters: Array<{ bytes: number; resolve: () => void }> = [];

  /** Most bytes held at once. */
  readonly limit: number;
  readonly #observe: (held: number) => void;

  /**
   * @param limit most bytes held at once; at least one image's worth
   * @param observe told the new total after every change (metrics, tests)
   */
  constructor(limit: number, observe: (held: number) => void = () => undefined) {
    this.limit = limit;
    this.#observe = observe;
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /** Reserves `bytes` if they fit now (and nobody waits before us). */
  tryReserve(bytes: number): boolean {
    if (this.#waiters.length > 0 || this.#held + bytes > this.limit) return false;
    this.#held += bytes;
    this.#observe(this.#held);
    return true;
  }

  /** Reserves `bytes` (at most the limit), waiting for releases; rejects when `signal` aborts. */
  async reserve(bytes: number, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.tryReserve(bytes)) return;
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        bytes,
        resolve: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Gives back `bytes` and wakes the waiters that now fit, in order. */
  release(bytes: number): void {
    if (bytes <= 0) return;
    this.#held -= bytes;
    for (;;) {
      const next = this.#waiters[0];
      if (next === undefined || this.#held + next.bytes > this.limit) break;
      this.#waiters.shift();
      this.#held += next.bytes;
      next.resolve();
    }
    this.#observe(this.#held);
  }
}

/** One image of the page: its size, and its body while it is held for encoding. */
interface FetchedImage {
  url: string;
  /** The body, while held (its bytes are reserved in the call's {@link ImageMemory}). */
  bytes: Buffer | undefined;
  /** Bytes of the body (or its declared length when it was not read); 0 when unknown. */
  size: number;
  /** Content-Type without parameters, lower case. */
  mimeType: string;
  /** Why it cannot be compressed; "" when it can. */
  error: string;
}

/** Rethrows when the call was aborted; otherwise a short description of a request failure. */
function describeFetchFailure(err: unknown, http: HttpOptions): string {
  if (http.signal.aborted) throw http.signal.reason;
  if (err instanceof Error && err.name === "TimeoutError") return `timed out after ${http.timeoutMs} ms`;
  const cause = err instanceof Error ? (err as { cause?: unknown }).cause : undefined;
  if (cause instanceof Error) return cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** Requests an image, following redirects; the body is left unread. */
function requestImage(url: string, http: HttpOptions): Promise<Response> {
  return fetch(url, {
    redirect: "follow",
    signal: AbortSignal.any([http.signal, AbortSignal.timeout(http.timeoutMs)]),
    headers: { "user-agent": http.userAgent, accept: "image/avif,image/webp,image/apng,image/*,*/*;q=0.8" },
  });
}

/** Bytes of a body, read and dropped chunk by chunk, stopping past `max` (then `max + 1`). */
async function countBody(res: Response, max: number): Promise<number> {
  const reader = res.body?.getReader();
  if (reader === undefined) return 0;
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return total;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      return max + 1;
    }
  }
}

/**
 * Sizes an image, and reads its body when `keep` says it is worth holding and its declared size
 * can be reserved now; otherwise the body is counted (or, with a declared length, not read at all)
 * and dropped, to be fetched again if it is among the largest.
 */
async function sizeImage(
  url: string,
  http: HttpOptions,
  maxBytes: number,
  memory: ImageMemory,
  keep: (size: number) => boolean,
): Promise<FetchedImage> {
  const out: FetchedImage = { url, bytes: undefined, size: 0, mimeType: "", error: "" };
  const tooLarge = `larger than ${maxBytes} bytes; not compressed`;
  try {
    const res = await requestImage(url, http);
    out.mimeType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    const header = res.headers.get("content-length");
    const declared = header === null ? Number.NaN : Number(header);
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      return { ...out, error: `could not fetch: HTTP ${res.status}` };
    }
    if (Number.isSafeInteger(declared)) {
      out.size = declared;
      if (declared > maxBytes) {
        await res.body?.cancel().catch(() => undefined);
        return { ...out, error: tooLarge };
      }
      if (!keep(declared) || !memory.tryReserve(declared)) {
        await res.body?.cancel().catch(() => undefined);
        return out;
      }
      try {
        const { bytes } = await readCapped(res, declared);
        memory.release(declared - bytes.byteLength);
        return { ...out, bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), size: bytes.byteLength };
      } catch (err) {
        memory.release(declared);
        throw err;
      }
    }
    const counted = await countBody(res, maxBytes);
    return counted > maxBytes ? { ...out, size: counted, error: tooLarge } : { ...out, size: counted };
  } catch (err) {
    return { ...out, size: 0, error: `could not fetch: ${describeFetchFailure(err, http)}` };
  }
}

/**
 * Reads an image's body again (it was sized but not held), reserving its size first so the held
 * total stays within the limit. The caller releases `bytes.byteLength` when done.
 */
async function refetchImage(
  img: FetchedImage,
  http: HttpOptions,
  maxBytes: number,
  memory: ImageMemory,
): Promise<FetchedImage> {
  const reserved = Math.min(maxBytes, img.size > 0 ? img.size : maxBytes);
  await memory.reserve(reserved, http.signal);
  try {
    const res = await requestImage(img.url, http);
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      memory.release(reserved);
      return { ...img, error: `could not fetch: HTTP ${res.status}` };
    }
    const { bytes, truncated } = await readCapped(res, reserved);
    if (truncated) {
      memory.release(reserved);
      return {
        ...img,
        error:
          reserved < maxBytes
            ? "the image grew between two reads; not compressed"
            : `larger than ${maxBytes} bytes; not compressed`,
      };
    }
    memory.release(reserved - bytes.byteLength);
    return { ...img, bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), size: bytes.byteLength };
  } catch (err) {
    memory.release(reserved);
    return { ...img, error: `could not fetch: ${describeFetchFailure(err, http)}` };
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Sizes the page's images, {@link FETCH_CONCURRENCY} at a time, and keeps the `limit` largest
 * (unreadable ones count as size 0 or their declared size), largest first. A body is held only
 * while its image is among the largest so far and it fits in `memory`; the others are dropped as
 * soon as they are out, and read again for encoding.
 */
async function largestImages(
  urls: readonly string[],
  limit: number,
  http: HttpOptions,
  maxBytes: number,
  memory: ImageMemory,
): Promise<FetchedImage[]> {
  const kept: FetchedImage[] = [];
  const bySize = (a: FetchedImage, b: FetchedImage): number => b.size - a.size || a.url.localeCompare(b.url);
  const ranks = (size: number): boolean => kept.length < limit || size > (kept[kept.length - 1]?.size ?? 0);
  await forEachLimited(urls.slice(0, MAX_IMAGE_CANDIDATES), FETCH_CONCURRENCY, async (url) => {
    kept.push(await sizeImage(url, http, maxBytes, memory, ranks));
    kept.sort(bySize);
    for (const dropped of kept.splice(limit)) {
      if (dropped.bytes !== undefined) memory.release(dropped.bytes.byteLength);
      dropped.bytes = undefined;
    }
  });
  return kept;
}
// ---------------------------------------------------------------------------------------------
// Re-encoding.

/** MIME type of a format sharp detected. */
function mimeOf(format: string | undefined, compression: string | undefined): string {
  switch (format) {
    case undefined:
      return "";
    case "jpeg":
    case "png":
    case "webp":
    case "gif":
    case "tiff":
    case "avif":
      return `image/${format}`;
    case "heif":
      return compression === "av1" ? "image/avif" : "image/heif";
    case "svg":
      return "image/svg+xml";
    default:
      return `image/${format}`;
  }
}

/** The contract's format of an image sharp detected; UNSPECIFIED for formats it cannot encode to. */
function imageFormatOf(mimeType: string): ImageFormat {
  const formats: Record<string, ImageFormat> = {
    "image/webp": ImageFormat.WEBP,
    "image/avif": ImageFormat.AVIF,
    "image/jpeg": ImageFormat.JPEG,
    "image/png": ImageFormat.PNG,
  };
  return formats[mimeType] ?? ImageFormat.UNSPECIFIED;
}

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Re-encodes one fetched image (its bytes were read) per `enc`. */
async function compressImage(
  img: FetchedImage & { bytes: Buffer },
  enc: Encoding,
  includeContent: boolean,
): Promise<ImageCompressionResult> {
  const original = img.bytes;
  const kept = (fields: MessageInitShape<typeof ImageCompressionResultSchema>): ImageCompressionResult =>
    create(ImageCompressionResultSchema, {
      sourceUrl: img.url,
      originalMimeType: img.mimeType,
      originalBytes: BigInt(original.byteLength),
      optimizedBytes: BigInt(original.byteLength),
      keptOriginal: true,
      ...fields,
    });
  const looksSvg = img.mimeType === "image/svg+xml" || /\.svgz?$/i.test(new URL(img.url).pathname);
  if (looksSvg) return kept({ error: "skipped: SVG is a vector image, it is not re-encoded" });

  let meta: Metadata;
  try {
    meta = await sharp(original).metadata();
  } catch (err) {
    return kept({ error: `could not decode: ${errorMessage(err)}` });
  }
  const mimeType = img.mimeType.startsWith("image/") ? img.mimeType : mimeOf(meta.format, meta.compression);
  const width = meta.autoOrient?.width ?? meta.width ?? 0;
  const height = meta.autoOrient?.height ?? meta.height ?? 0;
  const dims = {
    originalMimeType: mimeType,
    originalWidthPx: width,
    originalHeightPx: height,
    optimizedWidthPx: width,
    optimizedHeightPx: height,
    optimizedFormat: imageFormatOf(mimeOf(meta.format, meta.compression)),
  };
  if (meta.format === "svg") return kept({ ...dims, error: "skipped: SVG is a vector image, it is not re-encoded" });
  if ((meta.pages ?? 1) > 1 && (meta.format === "gif" || meta.format === "webp")) {
    return kept({
      ...dims,
      error: `skipped: animated ${meta.format.toUpperCase()} (${meta.pages} frames); re-encoding would keep only the first frame`,
    });
  }

  let pipeline = sharp(original).autoOrient();
  if (enc.maxWidth > 0) pipeline = pipeline.resize({ width: enc.maxWidth, withoutEnlargement: true });
  if (enc.keepMetadata) pipeline = pipeline.keepMetadata();
  switch (enc.format) {
    case ImageFormat.AVIF:
      pipeline = pipeline.avif({ quality: enc.quality ?? 50 });
      break;
    case ImageFormat.JPEG:
      // JPEG has no alpha channel: transparent pixels become white, as on most pages.
      if (meta.hasAlpha) pipeline = pipeline.flatten({ background: "#ffffff" });
      pipeline = pipeline.jpeg({ quality: enc.quality ?? 80, mozjpeg: true, progressive: true });
      break;
    case ImageFormat.PNG:
      pipeline = pipeline.png({ palette: true, quality: enc.quality ?? 100, compressionLevel: 9 });
      break;
    default:
      pipeline = pipeline.webp({ quality: enc.quality ?? 80 });
  }
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await pipeline.toBuffer({ resolveWithObject: true });
  } catch (err) {
    return kept({ ...dims, error: `could not decode: ${errorMessage(err)}` });
  }
  if (out.data.byteLength >= original.byteLength) return kept(dims);
  return create(ImageCompressionResultSchema, {
    ...dims,
    sourceUrl: img.url,
    originalBytes: BigInt(original.byteLength),
    optimizedFormat: enc.format,
    optimizedBytes: BigInt(out.data.byteLength),
    optimizedWidthPx: out.info.width,
    optimizedHeightPx: out.info.height,
    keptOriginal: false,
    optimizedContent: includeContent ? new Uint8Array(out.data) : new Uint8Array(0),
  });
}

/**
 * Fetches and compresses a page's images; results largest saving first. Images whose bodies are
 * held are encoded first, then the others are read again one reservation at a time, so a read
 * never waits on bodies that only a busy encoder could release.
 */
async function compressPageImages(
  html: string,
  finalUrl: string,
  opts: PageSpeedOptions,
  http: HttpOptions,
  maxBytes: number,
  memory: ImageMemory,
): Promise<ImageCompressionResult[]> {
  const fetched = await largestImages(collectImageUrls(html, finalUrl), opts.maxImages, http, maxBytes, memory);
  const results: ImageCompressionResult[] = [];
  const unread = (img: FetchedImage): ImageCompressionResult =>
    create(ImageCompressionResultSchema, {
      sourceUrl: img.url,
      originalMimeType: img.mimeType,
      originalBytes: BigInt(img.size),
      optimizedBytes: BigInt(img.size),
      keptOriginal: true,
      error: img.error,
    });
  const ordered = [...fetched.filter((i) => i.bytes !== undefined), ...fetched.filter((i) => i.bytes === undefined)];
  try {
    await forEachLimited(ordered, ENCODE_CONCURRENCY, async (candidate) => {
      http.signal.throwIfAborted();
      const img =
        candidate.bytes === undefined && candidate.error === ""
          ? await refetchImage(candidate, http, maxBytes, memory)
          : candidate;
      const bytes = img.bytes;
      if (bytes === undefined) {
        results.push(unread(img));
        return;
      }
      try {
        results.push(await compressImage({ ...img, bytes }, opts.encoding, opts.includeImages));
      } finally {
        candidate.bytes = undefined;
        memory.release(bytes.byteLength);
      }
    });
  } finally {
    // An aborted call gives back what its images still hold.
    for (const img of fetched) {
      if (img.bytes !== undefined) memory.release(img.bytes.byteLength);
      img.bytes = undefined;
    }
  }
  const saved = (r: ImageCompressionResult): bigint => r.originalBytes - r.optimizedBytes;
  return results.sort((a, b) => {
    const bySaving = saved(b) - saved(a);
    if (bySaving !== 0n) return bySaving > 0n ? 1 : -1;
    const bySize = b.originalBytes - a.originalBytes;
    if (bySize !== 0n) return bySize > 0n ? 1 : -1;
    return a.sourceUrl.localeCompare(b.sourceUrl);
  });
}

// ---------------------------------------------------------------------------------------------
// Lighthouse.

/** The median run of `runs` audits of `url`, or the error of its first run. */
async function medianAudit(
  lighthouse: PageSpeedLighthouse,
  url: string,
  opts: PageSpeedOptions,
  signal: AbortSignal,
): Promise<LighthousePageResult | { error: string }> {
  const ok: LighthousePageResult[] = [];
  for (let i = 0; i < opts.runs; i++) {
    try {
      ok.push(await lighthouse.audit(url, signal, { formFactor: opts.formFactor, categories: ["performance"] }));
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof ChromiumNotFoundError) {
        throw new FailedPreconditionError(`Lighthouse cannot run on this server: ${err.message}`);
      }
      // A page that does not load once will not load on a second try; a later flaky run is left out.
      if (ok.length === 0) {
        const message = errorMessage(err);
        return { error: message.startsWith("Lighthouse") ? message : `Lighthouse: ${message}` };
      }
    }
  }
  ok.sort((a, b) => a.scores.performance - b.scores.performance);
  return ok[Math.floor((ok.length - 1) / 2)] as LighthousePageResult;
}

/** The contract's metrics of a measured run. */
function measuredMetrics(r: LighthousePageResult): LighthouseMetrics {
  const m = r.metrics;
  return create(LighthouseMetricsSchema, {
    performanceScore: r.scores.performance,
    largestContentfulPaintMs: m.lcpMs,
    cumulativeLayoutShift: m.cls,
    totalBlockingTimeMs: m.tbtMs,
    firstContentfulPaintMs: m.fcpMs,
    speedIndexMs: m.speedIndexMs,
    serverResponseTimeMs: m.serverResponseTimeMs,
    totalByteWeight: BigInt(m.totalByteWeight),
    estimated: false,
  });
}

/** Markdown links (`[text](url)`) as `text (url)`. */
const plainText = (markdown: string): string => markdown.replace(/\[([^\]]*)\]\(([^)\s]*)\)/g, "$1 ($2)");

/** The contract's opportunities of a measured run (already largest time saving first). */
function opportunities(r: LighthousePageResult): SpeedOpportunity[] {
  return r.opportunities.map((o) =>
    create(SpeedOpportunitySchema, {
      auditId: o.id,
      title: o.title,
      estimatedSavingsMs: o.savingsMs,
      estimatedSavingsBytes: BigInt(o.savingsBytes),
      resourceUrls: [...o.urls],
      recommendation: plainText(o.description),
    }),
  );
}

/**
 * The "after" metrics estimated from the audited image savings. `savedBytes` is what the
 * re-encoding saved on images the page loaded; undefined when images were not compressed, and
 * then Lighthouse's own estimate of the image savings is taken in full.
 */
export function estimateAfter(before: LighthousePageResult, savedBytes: number | undefined): LighthouseMetrics {
  const image = before.opportunities.filter((o) => IMAGE_AUDIT_IDS.has(o.id));
  // The image audits overlap (older Lighthouse versions split one saving over three audits): take the largest.
  const auditedBytes = Math.max(0, ...image.map((o) => o.savingsBytes));
  const saving = (metric: string): number => Math.max(0, ...image.map((o) => o.metricSavings[metric] ?? 0));
  const bytes = savedBytes ?? auditedBytes;
  const share = auditedBytes > 0 ? Math.min(1, bytes / auditedBytes) : 0;
  const m = before.metrics;
  const fcp = Math.round(Math.max(0, m.fcpMs - saving("FCP") * share));
  const lcp = Math.round(Math.max(fcp, m.lcpMs - saving("LCP") * share));
  // Moved by the difference the curves give, so the estimate starts from the measured score exactly.
  const modelBefore = performanceScoreFor(before.metricScoring);
  const modelAfter = performanceScoreFor(before.metricScoring, {
    "first-contentful-paint": fcp,
    "largest-contentful-paint": lcp,
  });
  const delta = modelBefore === undefined || modelAfter === undefined ? 0 : modelAfter - modelBefore;
  const score = Math.round(Math.min(100, Math.max(0, before.scores.performance + delta)) * 10) / 10;
  return create(LighthouseMetricsSchema, {
    performanceScore: score,
    largestContentfulPaintMs: lcp,
    cumulativeLayoutShift: m.cls,
    totalBlockingTimeMs: m.tbtMs,
    firstContentfulPaintMs: fcp,
    speedIndexMs: m.speedIndexMs,
    serverResponseTimeMs: m.serverResponseTimeMs,
    totalByteWeight: BigInt(Math.max(0, m.totalByteWeight - bytes)),
    estimated: true,
  });
}

/** Median of numbers (the mean of the two middle values for an even count); 0 for none. */
function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Measures, compresses and reports one page. */
async function optimizePage(
  lighthouse: PageSpeedLighthouse,
  target: PageSpeedOptions["pages"][number],
  opts: PageSpeedOptions,
  http: HttpOptions,
  maxImageBytes: number,
  memory: ImageMemory,
): Promise<{ result: PageSpeedResult; lighthouseVersion: string }> {
  const errors: string[] = [];
  const audited = await medianAudit(lighthouse, target.url, opts, http.signal);
  const before = "error" in audited ? undefined : audited;
  if ("error" in audited) errors.push(audited.error);

  let finalUrl = before?.finalUrl ?? target.url;
  let images: ImageCompressionResult[] = [];
  if (opts.compress) {
    const page = await fetchResource(target.url, http, async () => true);
    if (before === undefined) finalUrl = page.finalUrl;
    if (page.error !== "" && page.body === undefined) errors.push(`fetching the page: ${page.error}`);
    else if (page.finalStatus < 200 || page.finalStatus >= 300)
      errors.push(`fetching the page: HTTP ${page.finalStatus}`);
    else if (page.body === undefined) errors.push(`fetching the page: not HTML (${page.contentType})`);
    else images = await compressPageImages(page.body, page.finalUrl, opts, http, maxImageBytes, memory);
  }
  const imageBytesBefore = images.reduce((n, i) => n + i.originalBytes, 0n);
  const imageBytesAfter = images.reduce((n, i) => n + i.optimizedBytes, 0n);

  let after: LighthouseMetrics | undefined;
  let pageBytesAfter = 0n;
  let measuredAfter: LighthousePageResult | undefined;
  if (target.optimizedUrl !== "") {
    const r = await medianAudit(lighthouse, target.optimizedUrl, opts, http.signal);
    if ("error" in r) errors.push(`optimized_url ${target.optimizedUrl}: ${r.error}; the after metrics are estimated`);
    else measuredAfter = r;
  }
  if (measuredAfter !== undefined) {
    after = measuredMetrics(measuredAfter);
    pageBytesAfter = after.totalByteWeight;
  } else if (before !== undefined) {
    // Only images the page actually loaded (not every srcset candidate) make it lighter.
    const loaded = new Set(before.requests.map((r) => r.url));
    const saved = images
      .filter((i) => loaded.has(i.sourceUrl))
      .reduce((n, i) => n + Number(i.originalBytes - i.optimizedBytes), 0);
    after = estimateAfter(before, opts.compress ? saved : undefined);
    pageBytesAfter = after.totalByteWeight;
  }

  return {
    lighthouseVersion: before?.lighthouseVersion ?? measuredAfter?.lighthouseVersion ?? "",
    result: create(PageSpeedResultSchema, {
      url: target.url,
      finalUrl,
      ...(before === undefined ? {} : { before: measuredMetrics(before), opportunities: opportunities(before) }),
      ...(after === undefined ? {} : { after }),
      images,
      pageBytesBefore: BigInt(before?.metrics.totalByteWeight ?? 0),
      pageBytesAfter,
      imageBytesBefore,
      imageBytesAfter,
      error: errors.join("; "),
    }),
  };
}

/**
 * Runs the page speed skill: Lighthouse before (and after, on an optimised URL), image
 * re-encoding, and the gains. FAILED_PRECONDITION when Lighthouse cannot run on this server.
 */
export async function optimizePageSpeed(
  deps: PageSpeedDeps,
  req: OptimizePageSpeedRequest,
  ctx?: CallContext,
): Promise<OptimizePageSpeedResponse> {
  const opts = pageSpeedOptions(req);
  const lighthouse = deps.lighthouse;
  if (lighthouse === undefined) {
    throw new FailedPreconditionError(
      "Lighthouse is not available on this server (no Lighthouse runner is configured): install Chromium or set CHROME_PATH",
    );
  }
  const signal = ctx?.signal ?? new AbortController().signal;
  const http: HttpOptions = {
    userAgent: deps.userAgent ?? DEFAULT_USER_AGENT,
    timeoutMs: deps.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS,
    signal,
  };
  const maxImageBytes = deps.maxImageBytes ?? MAX_IMAGE_BYTES;
  const memory = new ImageMemory(
    Math.max(maxImageBytes, deps.maxHeldImageBytes ?? MAX_HELD_IMAGE_BYTES),
    deps.onImageBytesHeld,
  );
  const pages: PageSpeedResult[] = [];
  let lighthouseVersion = "";
  for (const target of opts.pages) {
    signal.throwIfAborted();
    const page = await optimizePage(lighthouse, target, opts, http, maxImageBytes, memory);
    pages.push(page.result);
    lighthouseVersion ||= page.lighthouseVersion;
  }
  return create(OptimizePageSpeedResponseSchema, {
    pages,
    formFactor: opts.formFactor === "desktop" ? FormFactor.DESKTOP : FormFactor.MOBILE,
    lighthouseVersion,
    totalBytesSaved: pages.reduce((n, p) => n + p.imageBytesBefore - p.imageBytesAfter, 0n),
    medianPerformanceBefore: median(pages.flatMap((p) => (p.before === undefined ? [] : [p.before.performanceScore]))),
    medianPerformanceAfter: median(pages.flatMap((p) => (p.after === undefined ? [] : [p.after.performanceScore]))),
  });
}
