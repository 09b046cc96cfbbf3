/**
 * Image optimisation including alt text (`content.image_optimization`).
 *
 * Method:
 * 1. The image comes as bytes in the request or from its URL (images/fetch-image.ts: one deadline
 *    for redirects and body — at most half the call's time —, a redirect limit, a byte cap). Its header is read with sharp; more
 *    than {@link DEFAULT_MAX_INPUT_PIXELS} pixels (also sharp's `limitInputPixels`) is refused, and
 *    a small oriented thumbnail is decoded in full, so a corrupt or truncated file is refused
 *    before any encoding (sharp fails on decoder warnings too).
 * 2. Widths: the requested ones (default 320, 640, 960, 1280, 1920) no wider than the image after
 *    EXIF orientation — never upscaled; when some were wider, the image's own width takes their
 *    place once, so the largest candidate keeps full resolution.
 * 3. Every width is encoded in every format, one pipeline at a time (the machine's cores are
 *    shared): EXIF orientation applied, resized with Lanczos 3, converted to sRGB and stripped of
 *    EXIF, XMP and IPTC (GPS included) unless `keep_metadata`. AVIF and WebP at their default
 *    quality (50, 75), JPEG with mozjpeg at 80 (transparent pixels flattened onto white), PNG
 *    lossless unless a quality asks for a palette. Formats go in preference order — AVIF, WebP,
 *    then the fallback (JPEG, or PNG first for an image with alpha) — and the default fallback of
 *    an image with alpha is PNG, so transparency survives in browsers without AVIF or WebP.
 *    Each variant's savings are measured against the original file's bytes, and every variant is
 *    read back to confirm it carries no metadata.
 * 4. srcset per format, `sizes`, and a `<picture>` with a `<source>` per format but the last,
 *    whose largest variant is the `<img>` (with width, height, alt, lazy loading, async decoding).
 * 5. BlurHash (images/blurhash.ts) and sharp's dominant colour from a 32-pixel thumbnail.
 * 6. Alt text written from the context and checked, with any existing alt text, against WCAG
 *    1.1.1 practice (images/alt-text.ts).
 *
 * Bounds: input bytes (the contract's 50 MiB, and the same for a fetched body), input pixels,
 * {@link DEFAULT_TIME_LIMIT_MS} for the whole call (or the caller's deadline when sooner, each
 * encode also given sharp's timeout for what is left), and the response within the server's
 * message limit.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import sharp, { type Metadata, type OutputInfo, type Sharp, type SharpOptions } from "sharp";
import {
  type AltTextCheck,
  AltTextCheckSchema,
  ImageFormat,
  ImagePurpose,
  type ImageVariant,
  ImageVariantSchema,
  type OptimizeImageRequest,
  OptimizeImageRequestSchema,
  type OptimizeImageResponse,
  OptimizeImageResponseSchema,
  type SourceSet,
  SourceSetSchema,
} from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { checkContract, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import {
  type AltCheck,
  type AltInput,
  checkAltText,
  DEFAULT_MAX_ALT_LENGTH,
  writeAltText,
} from "../images/alt-text.ts";
import { encodeBlurhash } from "../images/blurhash.ts";
import { fetchImage, ImageFetchError } from "../images/fetch-image.ts";

/** Variant widths when the request gives none. */
export const DEFAULT_WIDTHS: readonly number[] = [320, 640, 960, 1280, 1920];
/** Largest image accepted, in bytes: the contract's limit for `content`, applied to fetched bodies too. */
export const MAX_INPUT_BYTES = 50 * 1024 * 1024;
/** Largest image decoded, in pixels (a 50-megapixel photo; decoding is bounded by it, not by bytes). */
export const DEFAULT_MAX_INPUT_PIXELS = 50_000_000;
/** Time one call may take, fetch and encoding together, in milliseconds. */
export const DEFAULT_TIME_LIMIT_MS = 120_000;
/** Deadline of fetching the image by URL, in milliseconds. */
export const DEFAULT_FETCH_TIMEOUT_MS = 15_000;
/** Redirects followed when fetching by URL. */
export const MAX_REDIRECTS = 5;
/** User-Agent of image requests. */
export const DEFAULT_USER_AGENT = "MarketingMeshImageOptimizer/1.0 (+https://github.com/marketing-mesh)";
/** Response size when the deps give none: the server's default message limit less room for the rest. */
export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024 - 256 * 1024;

/** Limits of the skill; every field is optional. */
export interface OptimizeImageDeps {
  /** Largest input in bytes (default {@link MAX_INPUT_BYTES}). */
  readonly maxInputBytes?: number | undefined;
  /** Largest input in pixels (default {@link DEFAULT_MAX_INPUT_PIXELS}). */
  readonly maxInputPixels?: number | undefined;
  /** Time limit of a call in milliseconds (default {@link DEFAULT_TIME_LIMIT_MS}). */
  readonly timeLimitMs?: number | undefined;
  /** Deadline of a fetch by URL in milliseconds (default {@link DEFAULT_FETCH_TIMEOUT_MS}). */
  readonly fetchTimeoutMs?: number | undefined;
  /** Redirects followed (default {@link MAX_REDIRECTS}). */
  readonly maxRedirects?: number | undefined;
  /** User-Agent of image requests (default {@link DEFAULT_USER_AGENT}). */
  readonly userAgent?: string | undefined;
  /** Largest total of variant bytes returned (default {@link DEFAULT_MAX_RESPONSE_BYTES}). */
  readonly maxResponseBytes?: number | undefined;
}

/** What each output format is. */
const outputFormats = {
  [ImageFormat.AVIF]: { mime: "image/avif", ext: "avif", quality: 50 },
  [ImageFormat.WEBP]: { mime: "image/webp", ext: "webp", quality: 75 },
  [ImageFormat.JPEG]: { mime: "image/jpeg", ext: "jpg", quality: 80 },
  [ImageFormat.PNG]: { mime: "image/png", ext: "png", quality: 100 },
} as const;
type OutputFormat = keyof typeof outputFormats;

const isOutputFormat = (f: ImageFormat): f is OutputFormat => f in outputFormats;

/** The contract's format of what sharp detected. */
function inputFormat(meta: Metadata): ImageFormat {
  switch (meta.format) {
    case "jpeg":
      return ImageFormat.JPEG;
    case "png":
      return ImageFormat.PNG;
    case "webp":
      return ImageFormat.WEBP;
    case "gif":
      return ImageFormat.GIF;
    case "tiff":
      return ImageFormat.TIFF;
    case "heif":
      return meta.compression === "av1" ? ImageFormat.AVIF : ImageFormat.HEIF;
    case "svg":
      return ImageFormat.SVG;
    default:
      return ImageFormat.UNSPECIFIED;
  }
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split("\n")[0] ?? "";

/**
 * The widths to encode, ascending: the requested ones up to `original`, plus `original` itself
 * when a requested width was wider (never upscaled; the largest candidate keeps full resolution).
 */
export function planWidths(requested: readonly number[], original: number): number[] {
  const asked = requested.length > 0 ? requested : DEFAULT_WIDTHS;
  const kept = new Set(asked.filter((w) => w <= original));
  if (asked.some((w) => w > original)) kept.add(original);
  return [...kept].sort((a, b) => a - b);
}

/**
 * Output formats in preference order: AVIF, WebP, then the fallback — JPEG before PNG, or PNG
 * before JPEG for an image with alpha. Empty means AVIF, WebP and JPEG (PNG with alpha).
 */
export function planFormats(requested: readonly ImageFormat[], hasAlpha: boolean): OutputFormat[] {
  const fallback = hasAlpha ? ImageFormat.PNG : ImageFormat.JPEG;
  const asked =
    requested.length > 0 ? requested.filter(isOutputFormat) : [ImageFormat.AVIF, ImageFormat.WEBP, fallback];
  const order: OutputFormat[] = hasAlpha
    ? [ImageFormat.AVIF, ImageFormat.WEBP, ImageFormat.PNG, ImageFormat.JPEG]
    : [ImageFormat.AVIF, ImageFormat.WEBP, ImageFormat.JPEG, ImageFormat.PNG];
  return order.filter((f) => asked.includes(f));
}

/** Lower-case hyphenated words of `text`, at most `maxWords`, within the contract's 100 characters. */
function slug(text: string, maxWords: number): string {
  return text
    .toLowerCase()
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .replace(/[^a-z0-9]+/g, " ")
    .trim()
    .split(" ")
    .filter(Boolean)
    .slice(0, maxWords)
    .join("-")
    .slice(0, 100)
    .replace(/-+$/, "");
}

/** The last path segment of `url` without its extension, or "". */
function urlStem(url: string): string {
  try {
    const last = new URL(url).pathname.split("/").filter(Boolean).pop() ?? "";
    return decodeURIComponent(last).replace(/\.[a-z0-9]{2,5}$/i, "");
  } catch {
    return "";
  }
}

const escapeAttr = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** `base` + `name` for a srcset: one slash between, and commas escaped (they separate candidates). */
function variantUrl(base: string, name: string): string {
  if (base === "") return name;
  return `${base.endsWith("/") ? base : `${base}/`}${name}`.replace(/,/g, "%2C").replace(/\s/g, "%20");
}

/** The encoder step of a pipeline for `format`; `quality` 0 means the format's default. */
function encodeAs(pipeline: Sharp, format: OutputFormat, quality: number, hasAlpha: boolean): Sharp {
  const q = quality > 0 ? quality : outputFormats[format].quality;
  switch (format) {
    case ImageFormat.AVIF:
      return pipeline.avif({ quality: q });
    case ImageFormat.WEBP:
      return pipeline.webp({ quality: q });
    case ImageFormat.PNG:
      // Lossless by default; an explicit quality below 100 asks for a quantised palette.
      return pipeline.png({
        compressionLevel: 9,
        adaptiveFiltering: true,
        palette: quality > 0 && quality < 100,
        quality: q,
      });
    default:
      // JPEG has no alpha channel: transparent pixels become white, as on most pages.
      return (hasAlpha ? pipeline.flatten({ background: "#ffffff" }) : pipeline).jpeg({ quality: q, mozjpeg: true });
  }
}

/** True when encoded `bytes` carry EXIF, XMP or IPTC. */
async function carriesMetadata(bytes: Buffer): Promise<boolean> {
  const meta = await sharp(bytes).metadata();
  return meta.exif !== undefined || meta.xmp !== undefined || meta.iptc !== undefined;
}

const toCheck = (c: AltCheck): AltTextCheck =>
  create(AltTextCheckSchema, { rule: c.rule, passed: c.passed, message: c.message });

/** The image's bytes and the field they came from. */
async function loadSource(
  req: OptimizeImageRequest,
  deps: OptimizeImageDeps,
  signal: AbortSignal,
  maxBytes: number,
  timeLimitMs: number,
): Promise<{ bytes: Buffer; field: "content" | "url"; finalUrl: string }> {
  if (req.source.case === "content") {
    if (req.source.value.byteLength === 0)
      throw new InvalidInputError("content", "is empty; give the image file's bytes");
    if (req.source.value.byteLength > maxBytes) {
      throw new InvalidInputError("content", `is ${req.source.value.byteLength} bytes, above the limit of ${maxBytes}`);
    }
    const v = req.source.value;
    return { bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength), field: "content", finalUrl: "" };
  }
  if (req.source.case !== "url") throw new InvalidInputError("source", "give the image as content or url");
  try {
    const fetched = await fetchImage(req.source.value, {
      // At most half the call's limit: a slow server answers FAILED_PRECONDITION before the caller
      // gives up, and the other half is left for encoding.
      timeoutMs: Math.max(1, Math.min(deps.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS, timeLimitMs / 2)),
      maxBytes,
      maxRedirects: deps.maxRedirects ?? MAX_REDIRECTS,
      userAgent: deps.userAgent ?? DEFAULT_USER_AGENT,
      signal,
    });
    return { bytes: fetched.bytes, field: "url", finalUrl: fetched.finalUrl };
  } catch (err) {
    if (!(err instanceof ImageFetchError)) throw err;
    // A server that is down or slow may answer later; a missing or oversized image will not.
    if (err.transient) throw new FailedPreconditionError(`url: could not fetch the image: ${err.message}`);
    throw new InvalidInputError("url", `could not fetch the image: ${err.message}`);
  }
}

/** Optimises one image into responsive variants, with placeholders and checked alt text. */
export async function optimizeImage(
  deps: OptimizeImageDeps,
  req: OptimizeImageRequest,
  ctx?: Pick<CallContext, "signal" | "timeoutMs">,
): Promise<OptimizeImageResponse> {
  checkContract(OptimizeImageRequestSchema, req);
  const started = performance.now();
  const signal = ctx?.signal ?? new AbortController().signal;
  const timeLimitMs = Math.min(deps.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS, ctx?.timeoutMs() ?? Number.POSITIVE_INFINITY);
  const maxPixels = deps.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  const maxBytes = Math.min(deps.maxInputBytes ?? MAX_INPUT_BYTES, MAX_INPUT_BYTES);
  const maxResponseBytes = deps.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;

  const { bytes, field, finalUrl } = await loadSource(req, deps, signal, maxBytes, timeLimitMs);
  // failOn "warning": a truncated or damaged file is refused rather than encoded half grey.
  const input: SharpOptions = { limitInputPixels: maxPixels, failOn: "warning" };

  let meta: Metadata;
  try {
    // The header only, so the pixel limit is checked here with the size in the message.
    meta = await sharp(bytes, { ...input, limitInputPixels: false }).metadata();
  } catch (err) {
    throw new InvalidInputError(field, `is not an image sharp can decode (${errorText(err)})`);
  }
  const width = meta.autoOrient?.width ?? meta.width ?? 0;
  const height = meta.autoOrient?.height ?? meta.height ?? 0;
  if (width <= 0 || height <= 0) throw new InvalidInputError(field, "the image has no size");
  if (width * height > maxPixels) {
    throw new InvalidInputError(
      field,
      `the image is ${width}×${height} = ${width * height} pixels, above the limit of ${maxPixels}`,
    );
  }
  const hasAlpha = meta.hasAlpha === true;

  // Decoding a thumbnail reads the whole file, so a corrupt one fails here, before any encoding;
  // the thumbnail also gives the placeholders.
  const bx = req.blurhashXComponents || 4;
  const by = req.blurhashYComponents || 3;
  let blurhash: string;
  let dominantColor: string;
  try {
    const thumb = await sharp(bytes, input)
      .autoOrient()
      .resize(32, 32, { fit: "inside" })
      .flatten({ background: "#ffffff" })
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    blurhash = encodeBlurhash(thumb.data, thumb.info.width, thumb.info.height, thumb.info.channels, bx, by);
    const { dominant } = await sharp(thumb.data, {
      raw: { width: thumb.info.width, height: thumb.info.height, channels: thumb.info.channels },
    }).stats();
    dominantColor = `#${[dominant.r, dominant.g, dominant.b].map((c) => c.toString(16).padStart(2, "0")).join("")}`;
  } catch (err) {
    throw new InvalidInputError(field, `the image is corrupt or truncated and cannot be decoded (${errorText(err)})`);
  }

  const ctxAlt = req.altContext;
  // After redirects: a short link or a CDN's resizer path says less than the file it lands on.
  const sourceStem = req.fileName || urlStem(finalUrl);
  const alt: AltInput = {
    purpose: ctxAlt?.purpose || ImagePurpose.INFORMATIVE,
    subject: ctxAlt?.subject ?? "",
    pageTitle: ctxAlt?.pageTitle ?? "",
    caption: ctxAlt?.caption ?? "",
    targetKeyword: ctxAlt?.targetKeyword ?? "",
    linkUrl: ctxAlt?.linkUrl ?? "",
    visibleText: ctxAlt?.visibleText ?? "",
    fileStem: sourceStem,
    maxLength: ctxAlt?.maxAltLength || DEFAULT_MAX_ALT_LENGTH,
  };
  const altText = writeAltText(alt);
  const altChecks = checkAltText(altText, alt);
  const existing = ctxAlt?.existingAltText ?? "";
  const existingChecks = existing.trim() === "" ? [] : checkAltText(existing, alt);

  const stem = req.fileName || slug(sourceStem, 8) || slug(altText, 6) || "image";
  const widths = planWidths(req.widths, width);
  const formats = planFormats(req.formats, hasAlpha);
  const originalBytes = bytes.byteLength;

  const variants: ImageVariant[] = [];
  let totalBytes = 0;
  let metadataStripped = !req.keepMetadata;
  for (const format of formats) {
    for (const w of widths) {
      signal.throwIfAborted();
      const leftMs = timeLimitMs - (performance.now() - started);
      if (leftMs <= 0) {
        throw new ConnectError(
          `optimising the image took longer than ${Math.round(timeLimitMs / 1000)} s; request fewer widths or formats`,
          Code.DeadlineExceeded,
        );
      }
      let pipeline = sharp(bytes, input)
        .autoOrient()
        .resize({ width: w, withoutEnlargement: true, kernel: "lanczos3" })
        .timeout({ seconds: Math.max(1, Math.ceil(leftMs / 1000)) });
      if (req.keepMetadata) pipeline = pipeline.keepMetadata();
      let out: { data: Buffer; info: OutputInfo };
      try {
        out = await encodeAs(pipeline, format, req.quality, hasAlpha).toBuffer({ resolveWithObject: true });
      } catch (err) {
        if (/timeout/i.test(errorText(err))) {
          throw new ConnectError(
            `optimising the image took longer than ${Math.round(timeLimitMs / 1000)} s; request fewer widths or formats`,
            Code.DeadlineExceeded,
          );
        }
        throw err;
      }
      totalBytes += out.data.byteLength;
      if (totalBytes > maxResponseBytes) {
        throw new InvalidInputError(
          "widths",
          `the variants exceed ${maxResponseBytes} bytes, the most one response carries; request fewer widths or formats, or a lower quality`,
        );
      }
      if (metadataStripped && (await carriesMetadata(out.data))) metadataStripped = false;
      const fileName = `${stem}-${out.info.width}w.${outputFormats[format].ext}`;
      variants.push(
        create(ImageVariantSchema, {
          format,
          mimeType: outputFormats[format].mime,
          width: out.info.width,
          height: out.info.height,
          content: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength),
          byteSize: BigInt(out.data.byteLength),
          savingsRatio: 1 - out.data.byteLength / originalBytes,
          fileName,
          url: variantUrl(req.baseUrl, fileName),
        }),
      );
    }
  }

  const sizes = req.sizes.trim() || "100vw";
  const sourceSets: SourceSet[] = formats.map((format) =>
    create(SourceSetSchema, {
      format,
      mimeType: outputFormats[format].mime,
      srcset: variants
        .filter((v) => v.format === format)
        .map((v) => `${v.url} ${v.width}w`)
        .join(", "),
    }),
  );
  const fallback = formats[formats.length - 1] as OutputFormat;
  const largest = variants.filter((v) => v.format === fallback).pop() as ImageVariant;
  const sources = sourceSets
    .slice(0, -1)
    .map((s) => `  <source type="${s.mimeType}" srcset="${escapeAttr(s.srcset)}" sizes="${escapeAttr(sizes)}">`);
  const fallbackSet = sourceSets[sourceSets.length - 1] as SourceSet;
  const img =
    `  <img src="${escapeAttr(largest.url)}" srcset="${escapeAttr(fallbackSet.srcset)}" sizes="${escapeAttr(sizes)}"` +
    ` width="${largest.width}" height="${largest.height}" alt="${escapeAttr(altText)}" loading="lazy" decoding="async">`;

  return create(OptimizeImageResponseSchema, {
    original: {
      format: inputFormat(meta),
      width,
      height,
      byteSize: BigInt(originalBytes),
      hasMetadata: meta.exif !== undefined || meta.xmp !== undefined || meta.iptc !== undefined,
      hasAlpha,
    },
    variants,
    sourceSets,
    sizes,
    pictureHtml: ["<picture>", ...sources, img, "</picture>"].join("\n"),
    metadataStripped,
    blurhash,
    dominantColor,
    altText,
    altTextPassed: altChecks.every((c) => c.passed),
    altTextChecks: altChecks.map(toCheck),
    existingAltTextPassed: existingChecks.length > 0 && existingChecks.every((c) => c.passed),
    existingAltTextChecks: existingChecks.map(toCheck),
  });
}
