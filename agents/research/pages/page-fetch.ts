/**
 * Fetching the pages of a competitor analysis: robots.txt first, then the page, within limits.
 *
 * robots.txt follows RFC 9309: each origin's file is requested once per analysis (§2.4 lets a
 * crawler reuse it), a 2xx file is obeyed with robots-parser's matching (longest matching rule
 * wins, allow wins ties, `*` and `$` patterns), a 4xx answer means no restrictions (§2.3.1.3) and
 * a 5xx answer or an unreachable server means complete disallow (§2.3.1.4). Only the first
 * 500 KiB of a file is read (§2.5). A disallowed URL is never requested.
 *
 * Pages are requested with GET, one redirect hop at a time so every hop passes robots.txt before
 * it is requested, at most `maxRedirects` hops, http and https only. Every request has its own
 * timeout, covering headers and body; only 2xx HTML or plain-text bodies are read, and only their
 * first `maxBytes`. The SEO agent's crawler (agents/seo/crawl) works the same way; agents do not
 * import each other, so this is the Research agent's own, smaller copy.
 */
import robotsParserModule from "robots-parser";

// The package is CommonJS: Node's default import is its `module.exports` (the function), while its
// typings describe an ES default export.
const robotsParser = robotsParserModule as unknown as typeof robotsParserModule.default;

/** How pages are fetched. */
export interface FetchLimits {
  /** User-Agent header sent with every request. */
  readonly userAgent: string;
  /** Product token the robots.txt groups are matched against (RFC 9309 §2.2.1). */
  readonly robotsToken: string;
  /** Timeout of one request, headers and body, in milliseconds. */
  readonly timeoutMs: number;
  /** Bytes of a page body read; the rest is ignored. */
  readonly maxBytes: number;
  /** Redirect hops followed before giving up. */
  readonly maxRedirects: number;
}

/** The limits a server uses. */
export const defaultFetchLimits: FetchLimits = {
  userAgent: "MarketingMeshBot/1.0",
  robotsToken: "MarketingMeshBot",
  timeoutMs: 10_000,
  maxBytes: 2 * 1024 * 1024,
  maxRedirects: 5,
};

/** RFC 9309 §2.5: crawlers must parse at least 500 kibibytes of robots.txt; the rest may be ignored. */
const ROBOTS_TXT_MAX_BYTES = 500 * 1024;

/** Why a page could not be read. */
export type FetchFailure = "robots" | "http-status" | "timeout" | "network" | "redirect" | "unsupported-content";

/** One page fetched, or why not. */
export interface FetchedPage {
  /** URL after redirects (the URL asked for when nothing was requested). */
  readonly finalUrl: string;
  /** Status of the last response; 0 when nothing was answered. */
  readonly status: number;
  /** Decoded body of a 2xx HTML or plain-text answer. */
  readonly body: string | undefined;
  /** True when the body is plain text rather than HTML. */
  readonly plainText: boolean;
  /** True when the body had more than `maxBytes` and only its start was read. */
  readonly truncated: boolean;
  /** Why the page could not be read; undefined when `body` is set. */
  readonly failure: FetchFailure | undefined;
  /** The failure in words; "" when none. */
  readonly error: string;
}

/** Signals a fetch runs under. */
export interface FetchSignals {
  /** The caller's cancellation: a fetch aborted by it rejects with its reason. */
  readonly call: AbortSignal;
  /** Stops outstanding fetches early (the call's deadline is near); they report a timeout. */
  readonly stop: AbortSignal;
}

/** Rethrows when the call was cancelled; otherwise classifies a request failure. */
function describeFailure(
  err: unknown,
  limits: FetchLimits,
  signals: FetchSignals,
): { failure: "timeout" | "network"; error: string } {
  if (signals.call.aborted) throw signals.call.reason;
  if (signals.stop.aborted) return { failure: "timeout", error: "not fetched before the call's deadline" };
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return { failure: "timeout", error: `timed out after ${limits.timeoutMs} ms` };
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      const message =
        typeof code === "string" && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message;
      return { failure: "network", error: message };
    }
    return { failure: "network", error: err.message };
  }
  return { failure: "network", error: String(err) };
}

/** The signal one request runs under: the call, the early stop and the request's own timeout. */
function requestSignal(limits: FetchLimits, signals: FetchSignals): AbortSignal {
  return AbortSignal.any([signals.call, signals.stop, AbortSignal.timeout(limits.timeoutMs)]);
}

/** Discards a body we do not read, so the connection can be reused. */
async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/** Reads at most `max` bytes of a body; `truncated` when it had more. */
async function readCapped(res: Response, max: number): Promise<{ bytes: Uint8Array; truncated: boolean }> {
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

/** Decodes a body: charset from the Content-Type, else (HTML) from a meta tag in the first 1 KiB, else UTF-8. */
function decode(bytes: Uint8Array, contentType: string, html: boolean): string {
  let charset = /charset\s*=\s*"?([\w.:-]+)/i.exec(contentType)?.[1];
  if (charset === undefined && html) {
    const head = new TextDecoder("latin1").decode(bytes.subarray(0, 1024));
    charset = /<meta[^>]+charset\s*=\s*["']?([\w.:-]+)/i.exec(head)?.[1];
  }
  try {
    return new TextDecoder(charset ?? "utf-8").decode(bytes);
  } catch {
    return new TextDecoder("utf-8").decode(bytes);
  }
}

/** The verdict of robots.txt on one URL. */
export interface RobotsVerdict {
  /** True when we may fetch the URL. */
  readonly allowed: boolean;
  /** Why not, in words; "" when allowed. */
  readonly reason: string;
}

/** Answers whether robots.txt lets us fetch a URL; each origin's file is fetched once. */
export interface RobotsGate {
  /** The verdict for an absolute http(s) URL. */
  check(url: string): Promise<RobotsVerdict>;
  /** Origins whose robots.txt was requested, in order (for tests and logs). */
  readonly origins: readonly string[];
}

/** A gate that fetches each origin's robots.txt on first use and matches `limits.robotsToken`. */
export function createRobotsGate(limits: FetchLimits, signals: FetchSignals): RobotsGate {
  const byOrigin = new Map<string, Promise<(url: string) => RobotsVerdict>>();
  const origins: string[] = [];
  const everything =
    (allowed: boolean, reason: string): ((url: string) => RobotsVerdict) =>
    () => ({ allowed, reason });
  const load = async (origin: string): Promise<(url: string) => RobotsVerdict> => {
    const robotsUrl = `${origin}/robots.txt`;
    let res: Response;
    try {
      // RFC 9309 §2.3.1.2: follow at least five redirects; fetch follows up to twenty.
      res = await fetch(robotsUrl, {
        redirect: "follow",
        signal: requestSignal(limits, signals),
        headers: { "user-agent": limits.userAgent, accept: "text/plain,*/*;q=0.5" },
      });
    } catch (err) {
      const { error } = describeFailure(err, limits, signals);
      return everything(false, `${robotsUrl} could not be read (${error}), which disallows the whole site`);
    }
    if (res.status >= 400 && res.status < 500) {
      await discard(res);
      return everything(true, "");
    }
    if (res.status < 200 || res.status >= 300) {
      await discard(res);
      return everything(false, `${robotsUrl} answered HTTP ${res.status}, which disallows the whole site`);
    }
    let content: string;
    try {
      const { bytes } = await readCapped(res, ROBOTS_TXT_MAX_BYTES);
      content = new TextDecoder("utf-8").decode(bytes);
    } catch (err) {
      const { error } = describeFailure(err, limits, signals);
      return everything(false, `${robotsUrl} could not be read (${error}), which disallows the whole site`);
    }
    const robots = robotsParser(robotsUrl, content);
    return (url) => {
      // undefined only for a URL of another origin, which this file does not govern.
      if (robots.isAllowed(url, limits.robotsToken) !== false) return { allowed: true, reason: "" };
      const line = robots.getMatchingLineNumber(url, limits.robotsToken);
      return { allowed: false, reason: `disallowed by ${robotsUrl} (line ${line}) for ${limits.robotsToken}` };
    };
  };
  return {
    origins,
    async check(url) {
      const origin = new URL(url).origin;
      let entry = byOrigin.get(origin);
      if (entry === undefined) {
        origins.push(origin);
        entry = load(origin);
        byOrigin.set(origin, entry);
      }
      return (await entry)(url);
    },
  };
}

const isRedirectStatus = (status: number): boolean => [301, 302, 303, 307, 308].includes(status);

/** "html", "text" or undefined (unsupported) for a Content-Type; a missing type is sniffed as HTML. */
function bodyKind(contentType: string): "html" | "text" | undefined {
  if (contentType.trim() === "" || /^\s*(text\/html|application\/xhtml\+xml)\s*(;|$)/i.test(contentType)) return "html";
  if (/^\s*text\/plain\s*(;|$)/i.test(contentType)) return "text";
  return undefined;
}

/**
 * Fetches `url` (absolute http or https) with GET, asking `gate` before every hop, following at
 * most `limits.maxRedirects` redirects. Failures are returned, not thrown; only the call's
 * cancellation throws.
 */
export async function fetchPage(
  url: string,
  limits: FetchLimits,
  gate: RobotsGate,
  signals: FetchSignals,
): Promise<FetchedPage> {
  let current = url;
  let status = 0;
  const hops = new Set<string>([url]);
  const failed = (failure: FetchFailure, error: string): FetchedPage => ({
    finalUrl: current,
    status,
    body: undefined,
    plainText: false,
    truncated: false,
    failure,
    error,
  });
  for (;;) {
    const verdict = await gate.check(current);
    // A robots.txt cut short by the deadline reads as "disallow everything": say what really happened.
    if (signals.stop.aborted) return failed("timeout", "not fetched before the call's deadline");
    if (!verdict.allowed) {
      return failed("robots", current === url ? verdict.reason : `redirect target ${current} ${verdict.reason}`);
    }
    let res: Response;
    try {
      res = await fetch(current, {
        redirect: "manual",
        signal: requestSignal(limits, signals),
        headers: {
          "user-agent": limits.userAgent,
          accept: "text/html,application/xhtml+xml;q=0.9,text/plain;q=0.8,*/*;q=0.1",
        },
      });
    } catch (err) {
      const { failure, error } = describeFailure(err, limits, signals);
      return failed(failure, error);
    }
    status = res.status;
    const location = res.headers.get("location");
    if (isRedirectStatus(res.status) && location !== null) {
      await discard(res);
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        return failed("redirect", `invalid Location header "${location}"`);
      }
      next.hash = "";
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        return failed("redirect", `redirect to a non-HTTP URL ${next.href}`);
      }
      if (hops.has(next.href)) return failed("redirect", `redirect loop back to ${next.href}`);
      if (hops.size > limits.maxRedirects) return failed("redirect", `more than ${limits.maxRedirects} redirects`);
      hops.add(next.href);
      current = next.href;
      continue;
    }
    if (res.status < 200 || res.status >= 300) {
      await discard(res);
      return failed("http-status", `HTTP ${res.status}`);
    }
    const contentType = res.headers.get("content-type") ?? "";
    const kind = bodyKind(contentType);
    if (kind === undefined) {
      await discard(res);
      return failed("unsupported-content", `content type ${contentType} is neither HTML nor plain text`);
    }
    try {
      const { bytes, truncated } = await readCapped(res, limits.maxBytes);
      return {
        finalUrl: current,
        status,
        body: decode(bytes, contentType, kind === "html"),
        plainText: kind === "text",
        truncated,
        failure: undefined,
        error: "",
      };
    } catch (err) {
      const { failure, error } = describeFailure(err, limits, signals);
      return failed(failure, error);
    }
  }
}
