/**
 * Fetching an image by URL, bounded every way a remote server could make it expensive: one
 * deadline for the redirects and the body together, a redirect limit (each hop http or https), a
 * byte cap checked against Content-Length before reading and enforced while reading, and the
 * call's cancellation.
 */

/** How an image is fetched. */
export interface ImageFetchOptions {
  /** Deadline of the whole fetch — every redirect hop and the body — in milliseconds. */
  readonly timeoutMs: number;
  /** Largest body read, in bytes; a larger image is refused. */
  readonly maxBytes: number;
  /** Redirect hops followed before giving up. */
  readonly maxRedirects: number;
  /** User-Agent header. */
  readonly userAgent: string;
  /** The call's cancellation; an aborted call rejects with its reason. */
  readonly signal: AbortSignal;
}

/** A fetched image body. */
export interface FetchedImage {
  readonly bytes: Buffer;
  /** URL the body came from, after redirects. */
  readonly finalUrl: string;
  /** Content-Type, lower case without parameters; "" when none. */
  readonly contentType: string;
}

/**
 * The image could not be fetched. `transient` failures (timeouts, refused connections, 5xx, 429)
 * may succeed later; the others (4xx, too large, not an image, bad redirects) will not.
 */
export class ImageFetchError extends Error {
  override name = "ImageFetchError";
  readonly transient: boolean;
  constructor(message: string, transient: boolean) {
    super(message);
    this.transient = transient;
  }
}

const redirectStatuses = new Set([301, 302, 303, 307, 308]);

/** Reads at most `max` bytes of a body; undefined when it has more (reading stops there). */
async function readAtMost(res: Response, max: number): Promise<Buffer | undefined> {
  const reader = res.body?.getReader();
  if (reader === undefined) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, total);
}

/** Fetches `url` (http or https), following at most `maxRedirects` redirects. */
export async function fetchImage(url: string, opts: ImageFetchOptions): Promise<FetchedImage> {
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = AbortSignal.any([opts.signal, deadline]);
  let current = url;
  try {
    for (let hop = 0; ; hop++) {
      const parsed = new URL(current);
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
        throw new ImageFetchError(`${current} is not an http or https URL`, false);
      }
      const res = await fetch(parsed, {
        redirect: "manual",
        signal,
        headers: { "user-agent": opts.userAgent, accept: "image/avif,image/webp,image/*;q=0.9,*/*;q=0.5" },
      });
      if (redirectStatuses.has(res.status)) {
        await res.body?.cancel().catch(() => undefined);
        const location = res.headers.get("location");
        if (location === null)
          throw new ImageFetchError(`HTTP ${res.status} from ${current} without a Location`, false);
        if (hop >= opts.maxRedirects) throw new ImageFetchError(`more than ${opts.maxRedirects} redirects`, false);
        current = new URL(location, current).href;
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new ImageFetchError(`HTTP ${res.status} from ${current}`, res.status >= 500 || res.status === 429);
      }
      const contentType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
      if (contentType === "text/html" || contentType === "application/xhtml+xml") {
        await res.body?.cancel().catch(() => undefined);
        throw new ImageFetchError(`${current} is an HTML page (${contentType}), not an image`, false);
      }
      const declared = Number(res.headers.get("content-length") ?? Number.NaN);
      if (Number.isFinite(declared) && declared > opts.maxBytes) {
        await res.body?.cancel().catch(() => undefined);
        throw new ImageFetchError(`the image is ${declared} bytes, above the limit of ${opts.maxBytes}`, false);
      }
      const bytes = await readAtMost(res, opts.maxBytes);
      if (bytes === undefined)
        throw new ImageFetchError(`the image is larger than the limit of ${opts.maxBytes} bytes`, false);
      return { bytes, finalUrl: current, contentType };
    }
  } catch (err) {
    if (err instanceof ImageFetchError) throw err;
    if (opts.signal.aborted) throw opts.signal.reason;
    if (deadline.aborted) throw new ImageFetchError(`timed out after ${opts.timeoutMs} ms`, true);
    if (err instanceof TypeError && /Invalid URL/i.test(err.message)) {
      throw new ImageFetchError(`a redirect pointed at an invalid URL`, false);
    }
    const cause = err instanceof Error ? (err as { cause?: unknown }).cause : undefined;
    const message = cause instanceof Error ? cause.message : err instanceof Error ? err.message : String(err);
    throw new ImageFetchError(`could not connect: ${message}`, true);
  }
}
