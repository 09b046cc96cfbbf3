/**
 * HTTP for the technical audit: fetching a page while recording its redirect chain, checking a
 * link target (HEAD, then GET when HEAD fails), and robots.txt per origin (RFC 9309 §2.3.1: a 2xx
 * file is obeyed, 4xx means no restrictions, 5xx or an unreachable server means full disallow).
 *
 * Every request carries the crawler's User-Agent and its own timeout, and is aborted with the
 * call. Bodies are read only for HTML responses, and only up to a size cap.
 */
import { createRobotsMatcher, parseRobotsTxt, ROBOTS_TXT_MAX_BYTES } from "./robots-rules.ts";

/** Redirect hops followed before giving up (browsers allow 20; crawlers usually stop near 10). */
export const MAX_REDIRECTS = 10;
/** Bytes of an HTML page read and parsed; the rest is ignored. */
export const MAX_HTML_BYTES = 5 * 1024 * 1024;

/** How requests are made. */
export interface HttpOptions {
  /** User-Agent header. */
  readonly userAgent: string;
  /** Timeout of one request, headers and body, in milliseconds. */
  readonly timeoutMs: number;
  /** Aborts every request; a request aborted by it rejects with its reason. */
  readonly signal: AbortSignal;
}

/** Why following redirects stopped early. */
export type RedirectProblem = "" | "loop" | "too-many" | "blocked" | "invalid-location";

/** One fetched URL. */
export interface FetchedResource {
  /** URL requested. */
  readonly url: string;
  /** Last URL reached. */
  readonly finalUrl: string;
  /** Status of the first response; 0 when it failed. */
  readonly status: number;
  /** Status of the last response; 0 when it failed. */
  readonly finalStatus: number;
  /** Each redirect target, in order (empty when the first response was final). */
  readonly chain: readonly string[];
  /** Why redirects were not followed to the end; "" when they were (or there were none). */
  readonly redirectProblem: RedirectProblem;
  /** Content-Type of the last response. */
  readonly contentType: string;
  /** `X-Robots-Tag` of the last response. */
  readonly xRobotsTag: string;
  /** `Link` header of the last response. */
  readonly linkHeader: string;
  /** Decoded body, for a 2xx HTML response only. */
  readonly body: string | undefined;
  /** Bytes of body read, or the Content-Length of a body not read. */
  readonly byteSize: number;
  /** Milliseconds until the last response was complete. */
  readonly responseTimeMs: number;
  /** Network, timeout or redirect error; "" when none. */
  readonly error: string;
}

/** Rethrows when the call was aborted; otherwise a short description of a request failure. */
function describeFailure(err: unknown, opts: HttpOptions): string {
  if (opts.signal.aborted) throw opts.signal.reason;
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return `timed out after ${opts.timeoutMs} ms`;
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return typeof code === "string" && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message;
    }
    return err.message;
  }
  return String(err);
}

function send(
  url: string,
  method: "GET" | "HEAD",
  opts: HttpOptions,
  redirect: "manual" | "follow",
): Promise<Response> {
  return fetch(url, {
    method,
    redirect,
    signal: AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]),
    headers: { "user-agent": opts.userAgent, accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5" },
  });
}

/** Discards a body we do not read, so the connection can be reused. */
async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/** Reads at most `max` bytes of a body; `truncated` when it had more. */
export async function readCapped(res: Response, max: number): Promise<{ bytes: Uint8Array; truncated: boolean }> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let truncated = false;
  const reader = res.body?.getReader();
  if (reader === undefined) return { bytes: new Uint8Array(0), truncated };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (total + value.byteLength > max) {
      chunks.push(value.subarray(0, max - total));
      total = max;
      truncated = true;
      await reader.cancel().catch(() => undefined);
      break;
    }
    chunks.push(value);
    total += value.byteLength;
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return { bytes, truncated };
}

/** Decodes HTML bytes: charset from the Content-Type, else from a meta tag in the first 1 KiB, else UTF-8. */
function decodeHtml(bytes: Uint8Array, contentType: string): string {
  let charset = /charset\s*=\s*"?([\w.:-]+)/i.exec(contentType)?.[1];
  if (charset === undefined) {
    const head = new TextDecoder("latin1").decode(bytes.subarray(0, 1024));
    charset = /<meta[^>]+charset\s*=\s*["']?([\w.:-]+)/i.exec(head)?.[1];
  }
  try {
    return new TextDecoder(charset ?? "utf-8").decode(bytes);
  } catch {
    return new TextDecoder("utf-8").decode(bytes);
  }
}

const isHtmlType = (contentType: string): boolean =>
  contentType === "" || /^\s*(text\/html|application\/xhtml\+xml)\s*(;|$)/i.test(contentType);

const isRedirectStatus = (status: number): boolean => [301, 302, 303, 307, 308].includes(status);

/**
 * Fetches `url` with GET, following redirects one hop at a time so every hop is recorded and
 * allowed by `mayFetch` (robots.txt) before it is requested. A 2xx HTML body is read and decoded.
 */
export async function fetchResource(
  url: string,
  opts: HttpOptions,
  mayFetch: (url: string) => Promise<boolean>,
): Promise<FetchedResource> {
  const started = performance.now();
  const chain: string[] = [];
  let current = url;
  let first = 0;
  const result = (
    last: { status: number; res?: Response },
    rest: Partial<Pick<FetchedResource, "body" | "byteSize" | "error" | "redirectProblem">>,
  ): FetchedResource => ({
    url,
    finalUrl: current,
    status: first,
    finalStatus: last.status,
    chain,
    redirectProblem: rest.redirectProblem ?? "",
    contentType: last.res?.headers.get("content-type") ?? "",
    xRobotsTag: last.res?.headers.get("x-robots-tag") ?? "",
    linkHeader: last.res?.headers.get("link") ?? "",
    body: rest.body,
    byteSize: rest.byteSize ?? 0,
    responseTimeMs: Math.round(performance.now() - started),
    error: rest.error ?? "",
  });
  for (;;) {
    let res: Response;
    try {
      res = await send(current, "GET", opts, "manual");
    } catch (err) {
      return result({ status: 0 }, { error: describeFailure(err, opts) });
    }
    if (first === 0) first = res.status;
    const location = res.headers.get("location");
    if (isRedirectStatus(res.status) && location !== null) {
      await discard(res);
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        return result(
          { status: res.status, res },
          { error: `invalid Location header "${location}"`, redirectProblem: "invalid-location" },
        );
      }
      next.hash = "";
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        return result(
          { status: res.status, res },
          { error: `redirect to a non-HTTP URL ${next.href}`, redirectProblem: "invalid-location" },
        );
      }
      if (next.href === url || chain.includes(next.href)) {
        chain.push(next.href);
        return result(
          { status: res.status, res },
          { error: `redirect loop back to ${next.href}`, redirectProblem: "loop" },
        );
      }
      if (chain.length >= MAX_REDIRECTS) {
        return result(
          { status: res.status, res },
          { error: `more than ${MAX_REDIRECTS} redirects`, redirectProblem: "too-many" },
        );
      }
      chain.push(next.href);
      current = next.href;
      if (!(await mayFetch(current))) {
        return result(
          { status: res.status, res },
          { error: `redirect target ${current} is disallowed by robots.txt`, redirectProblem: "blocked" },
        );
      }
      continue;
    }
    const contentType = res.headers.get("content-type") ?? "";
    if (res.status >= 200 && res.status < 300 && isHtmlType(contentType)) {
      try {
        const { bytes, truncated } = await readCapped(res, MAX_HTML_BYTES);
        return result(
          { status: res.status, res },
          {
            body: decodeHtml(bytes, contentType),
            byteSize: bytes.byteLength,
            error: truncated
              ? `body larger than ${MAX_HTML_BYTES} bytes; only the first ${MAX_HTML_BYTES} were parsed`
              : "",
          },
        );
      } catch (err) {
        return result({ status: res.status, res }, { error: describeFailure(err, opts) });
      }
    }
    await discard(res);
    const length = Number(res.headers.get("content-length") ?? "0");
    return result({ status: res.status, res }, { byteSize: Number.isSafeInteger(length) ? length : 0 });
  }
}

/** The outcome of checking a link or image target. */
export interface LinkCheck {
  /** Final HTTP status; 0 when the request failed. */
  readonly status: number;
  /** Network error; "" when the server answered. */
  readonly error: string;
}

/**
 * Checks a link target, following redirects: HEAD first (no body), then GET when HEAD fails or
 * answers 4xx/5xx, because some servers mishandle HEAD.
 */
export async function checkLink(url: string, opts: HttpOptions): Promise<LinkCheck> {
  let head: LinkCheck;
  try {
    const res = await send(url, "HEAD", opts, "follow");
    await discard(res);
    head = { status: res.status, error: "" };
  } catch (err) {
    head = { status: 0, error: describeFailure(err, opts) };
  }
  if (head.status !== 0 && head.status < 400) return head;
  try {
    const res = await send(url, "GET", opts, "follow");
    await discard(res);
    return { status: res.status, error: "" };
  } catch (err) {
    return { status: 0, error: describeFailure(err, opts) };
  }
}

/** Answers whether robots.txt lets the crawler fetch a URL; files are fetched once per origin. */
export interface RobotsGate {
  /** True when the URL's origin's robots.txt allows the crawler to fetch it. */
  allowed(url: string): Promise<boolean>;
}

/** A gate that fetches each origin's robots.txt on first use and matches with the crawler's User-Agent. */
export function createRobotsGate(opts: HttpOptions): RobotsGate {
  const byOrigin = new Map<string, Promise<(url: string) => boolean>>();
  const load = async (origin: string): Promise<(url: string) => boolean> => {
    let res: Response;
    try {
      // RFC 9309 §2.3.1.2: follow at least five redirects; fetch's limit is twenty.
      res = await send(`${origin}/robots.txt`, "GET", opts, "follow");
    } catch (err) {
      describeFailure(err, opts); // rethrows when the call was aborted
      return () => false; // §2.3.1.4: unreachable means complete disallow.
    }
    if (res.status >= 400 && res.status < 500) {
      await discard(res);
      return () => true; // §2.3.1.3: unavailable means no restrictions.
    }
    if (res.status < 200 || res.status >= 300) {
      await discard(res);
      return () => false;
    }
    let content: string;
    try {
      const { bytes } = await readCapped(res, ROBOTS_TXT_MAX_BYTES);
      content = new TextDecoder("utf-8").decode(bytes);
    } catch (err) {
      describeFailure(err, opts); // rethrows when the call was aborted
      return () => false;
    }
    const matcher = createRobotsMatcher(origin, content, parseRobotsTxt(content));
    return (url) => matcher(url, opts.userAgent)?.allowed ?? true;
  };
  return {
    async allowed(url) {
      const origin = new URL(url).origin;
      let entry = byOrigin.get(origin);
      if (entry === undefined) {
        entry = load(origin);
        byOrigin.set(origin, entry);
      }
      return (await entry)(url);
    },
  };
}

/** Default User-Agent of the crawler. */
export const DEFAULT_USER_AGENT = "MarketingMeshBot/1.0";
