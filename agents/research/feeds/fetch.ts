/**
 * Fetching a feed with a conditional GET (RFC 9110 §13): the stored `ETag` goes back as
 * `If-None-Match` and the stored `Last-Modified` as `If-Modified-Since`, so an unchanged feed costs
 * a 304 and no body. Every fetch is bounded: http and https only, redirects followed one hop at a
 * time up to a limit (each hop checked the same way), one timeout for headers and body, and a cap
 * on the decoded bytes (fetch decompresses, so a small gzip bomb stops at the cap too).
 */

/** Limits and identity of feed requests. */
export interface FeedHttpOptions {
  /** User-Agent header. */
  readonly userAgent: string;
  /** Timeout of one feed, all hops, headers and body, in milliseconds. */
  readonly timeoutMs: number;
  /** Largest body read, in bytes (after decompression); a larger feed fails. */
  readonly maxBytes: number;
  /** Redirect hops followed. */
  readonly maxRedirects: number;
}

/** Defaults: a feed is small (a few hundred KiB at most); a slow one should not hold the call. */
export const defaultFeedHttpOptions: FeedHttpOptions = {
  userAgent: "MarketingMeshBot/1.0 (feed reader)",
  timeoutMs: 10_000,
  maxBytes: 5 * 1024 * 1024,
  maxRedirects: 5,
};

/** Validators stored from the feed's last 200. */
export interface Validators {
  /** `ETag` header; empty when the server sent none. */
  readonly etag: string;
  /** `Last-Modified` header; empty when the server sent none. */
  readonly lastModified: string;
}

/** What one fetch of a feed gave. */
export type FeedFetch =
  | {
      readonly kind: "ok";
      /** Status of the final response (2xx). */
      readonly status: number;
      /** Decoded body. */
      readonly body: string;
      /** Validators of this response, to store for the next fetch. */
      readonly validators: Validators;
    }
  | { readonly kind: "not-modified"; readonly status: 304 }
  | { readonly kind: "failed"; readonly status: number; readonly error: string };

const isRedirect = (status: number): boolean => [301, 302, 303, 307, 308].includes(status);

/** Discards a body we do not read, so the connection can be reused. */
async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/** Reads a body; undefined when it has more than `max` bytes (the rest is not read). */
async function readAtMost(res: Response, max: number): Promise<Uint8Array | undefined> {
  const reader = res.body?.getReader();
  if (reader === undefined) return new Uint8Array(0);
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
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Decodes feed bytes: a byte-order mark wins, then the Content-Type charset, then the XML
 * declaration's encoding, else UTF-8 (XML's default); an unknown label falls back to UTF-8.
 */
export function decodeFeed(bytes: Uint8Array, contentType: string): string {
  let charset: string | undefined;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) charset = "utf-8";
  else if (bytes[0] === 0xfe && bytes[1] === 0xff) charset = "utf-16be";
  else if (bytes[0] === 0xff && bytes[1] === 0xfe) charset = "utf-16le";
  charset ??= /charset\s*=\s*"?([\w.:-]+)/i.exec(contentType)?.[1];
  if (charset === undefined) {
    const head = new TextDecoder("latin1").decode(bytes.subarray(0, 200));
    charset = /^\s*<\?xml[^>]*\bencoding\s*=\s*["']([\w.:-]+)["']/i.exec(head)?.[1];
  }
  try {
    return new TextDecoder(charset ?? "utf-8").decode(bytes);
  } catch {
    return new TextDecoder("utf-8").decode(bytes);
  }
}

/** A short reason for a failed request; rethrows when `callSignal` aborted (the call is over). */
function describe(err: unknown, callSignal: AbortSignal, stopSignal: AbortSignal, timeoutMs: number): string {
  if (callSignal.aborted) throw callSignal.reason;
  if (stopSignal.aborted) return "not finished before the call's deadline";
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return `timed out after ${timeoutMs} ms`;
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return typeof code === "string" && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message;
    }
    return err.message;
  }
  return String(err);
}

/**
 * Fetches `url` conditionally. `callSignal` is the call's: when it aborts, so does this (rejecting
 * with its reason). `stopSignal` ends the fetch phase early (the call's deadline is near): the fetch
 * then fails with a reason instead, and the call goes on with what it has.
 */
export async function fetchFeed(
  url: string,
  validators: Validators,
  opts: FeedHttpOptions,
  callSignal: AbortSignal,
  stopSignal: AbortSignal,
): Promise<FeedFetch> {
  const signal = AbortSignal.any([callSignal, stopSignal, AbortSignal.timeout(opts.timeoutMs)]);
  const headers: Record<string, string> = {
    "user-agent": opts.userAgent,
    accept:
      "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
  };
  if (validators.etag !== "") headers["if-none-match"] = validators.etag;
  if (validators.lastModified !== "") headers["if-modified-since"] = validators.lastModified;
  let current = url;
  const seen = new Set([url]);
  for (let hops = 0; ; hops++) {
    let res: Response;
    try {
      res = await fetch(current, { method: "GET", redirect: "manual", signal, headers });
    } catch (err) {
      return { kind: "failed", status: 0, error: describe(err, callSignal, stopSignal, opts.timeoutMs) };
    }
    const location = res.headers.get("location");
    if (isRedirect(res.status) && location !== null) {
      await discard(res);
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        return { kind: "failed", status: res.status, error: `invalid Location header "${location}"` };
      }
      next.hash = "";
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        return { kind: "failed", status: res.status, error: `redirect to a non-HTTP URL ${next.href}` };
      }
      if (seen.has(next.href)) return { kind: "failed", status: res.status, error: `redirect loop at ${next.href}` };
      if (hops + 1 > opts.maxRedirects) {
        return { kind: "failed", status: res.status, error: `more than ${opts.maxRedirects} redirects` };
      }
      seen.add(next.href);
      current = next.href;
      continue;
    }
    if (res.status === 304) {
      await discard(res);
      // Only a conditional request can be answered 304; without validators there is nothing to reuse.
      if (validators.etag === "" && validators.lastModified === "") {
        return { kind: "failed", status: 304, error: "answered 304 Not Modified to a request without validators" };
      }
      return { kind: "not-modified", status: 304 };
    }
    if (res.status < 200 || res.status >= 300) {
      await discard(res);
      return {
        kind: "failed",
        status: res.status,
        error: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`,
      };
    }
    const declared = Number(res.headers.get("content-length") ?? "");
    if (Number.isFinite(declared) && declared > opts.maxBytes) {
      await discard(res);
      return {
        kind: "failed",
        status: res.status,
        error: `feed is ${declared} bytes, more than the ${opts.maxBytes} allowed`,
      };
    }
    let bytes: Uint8Array | undefined;
    try {
      bytes = await readAtMost(res, opts.maxBytes);
    } catch (err) {
      return { kind: "failed", status: res.status, error: describe(err, callSignal, stopSignal, opts.timeoutMs) };
    }
    if (bytes === undefined) {
      return { kind: "failed", status: res.status, error: `feed is larger than the ${opts.maxBytes} bytes allowed` };
    }
    return {
      kind: "ok",
      status: res.status,
      body: decodeFeed(bytes, res.headers.get("content-type") ?? ""),
      validators: { etag: res.headers.get("etag") ?? "", lastModified: res.headers.get("last-modified") ?? "" },
    };
  }
}
