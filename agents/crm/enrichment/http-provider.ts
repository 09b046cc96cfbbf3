/**
 * An enrichment provider over HTTP: any service that speaks this small JSON API (an adapter in
 * front of a commercial data vendor, or the vendor itself when it does).
 *
 * Request: `POST <base URL>/enrich` with `Content-Type: application/json`, the API key in the
 * configured header (default `X-Api-Key`), and the normalised query as the body, empty inputs
 * left out:
 *
 *     {"email":"ada@acme.co.uk","domain":"acme.co.uk","phone":"+447400123456","given_name":"ada",
 *      "family_name":"lovelace","company":"acme","city":"london","region":"","postal_code":"",
 *      "country":"GB"}
 *
 * Answer: `200` with `{"fields":[{"field":"company_name","value":"Acme Ltd","confidence":0.92},…]}`;
 * `field` is an `EnrichableField` name in lower case without its prefix; `value` is a string, except
 * `employee_count` (integer), `annual_revenue` (number), `city` (a string `"Austin, TX"` or
 * `{"city":"Austin","region":"TX"}`) and `postal_address` (`{"street_lines":[…],"locality":…,
 * "region":…,"postal_code":…,"country_code":…}`); `confidence` is 0–1. `404` or no fields: the
 * provider knows nothing (a miss, cached like a hit).
 *
 * Failures: `408`, `429` and `5xx` answers, timeouts and connection errors are retried up to
 * `maxAttempts` in all, waiting what `Retry-After` asks (seconds or an HTTP date) or else an
 * exponential backoff with full jitter; a `Retry-After` longer than `maxRetryAfterMs` is not waited
 * for. Other answers, malformed bodies and exhausted retries fail the step, and the waterfall goes
 * on with the next provider. Each attempt has its own timeout; the call's own deadline and
 * cancellation stop everything.
 */
import { create } from "@bufbuild/protobuf";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { AttributeValueSchema, EnrichableField } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { addressText, attributeKeys, type FieldValue, fieldByName, maxChars, placeText, text } from "./fields.ts";
import { normalizePhone } from "./normalize.ts";
import type { EnrichmentProvider, Found, Query, Subject } from "./providers.ts";

/** Settings of one HTTP provider. */
export interface HttpProviderOptions {
  /** Provider name in the waterfall (`^[a-z0-9][a-z0-9_.-]{0,63}$`). */
  readonly name: string;
  /** Base URL (http or https); requests go to `<baseUrl>/enrich`. */
  readonly baseUrl: string;
  /** API key sent in `apiKeyHeader`; none when undefined. */
  readonly apiKey?: string;
  /** Header carrying the API key; default `x-api-key`. */
  readonly apiKeyHeader?: string;
  /** Timeout of one attempt; default 5,000 ms. */
  readonly timeoutMs?: number;
  /** Attempts in all, the first included; default 3. */
  readonly maxAttempts?: number;
  /** First backoff when no `Retry-After` is given (doubling, full jitter); default 250 ms. */
  readonly baseBackoffMs?: number;
  /** Longest backoff; default 5,000 ms. */
  readonly maxBackoffMs?: number;
  /** Longest `Retry-After` waited for; a longer one fails the step at once. Default 30,000 ms. */
  readonly maxRetryAfterMs?: number;
  /** Largest answer body read; default 1 MiB. */
  readonly maxResponseBytes?: number;
  /** Waits between attempts (tests record the waits instead). */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Uniform [0, 1) for the jitter. */
  readonly random?: () => number;
  /** Clock, to read HTTP-date `Retry-After` values. */
  readonly now?: () => Date;
}

/** A step that failed; its message is reported in `ProviderCall.error`. */
export class ProviderError extends Error {
  override name = "ProviderError";
}

const providerNamePattern = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** Checks the settings (at start, so a bad configuration fails loudly rather than per call). */
export function checkHttpProviderOptions(o: HttpProviderOptions): void {
  if (!providerNamePattern.test(o.name))
    throw new Error(`enrichment provider name ${JSON.stringify(o.name)} must match ${providerNamePattern}`);
  let url: URL;
  try {
    url = new URL(o.baseUrl);
  } catch {
    throw new Error(`enrichment provider ${o.name}: base URL ${JSON.stringify(o.baseUrl)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`enrichment provider ${o.name}: base URL must be http or https, got ${url.protocol}`);
  }
  for (const [k, v] of Object.entries({ timeoutMs: o.timeoutMs, maxAttempts: o.maxAttempts })) {
    if (v !== undefined && (!Number.isInteger(v) || v < 1))
      throw new Error(`enrichment provider ${o.name}: ${k} must be a positive integer`);
  }
}

/** Waits `ms`, or rejects when `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Milliseconds a `Retry-After` header asks to wait (RFC 9110 §10.2.3), or undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now: Date): number | undefined {
  if (header === null) return undefined;
  const v = header.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now.getTime());
}

/** The query an HTTP provider sends: every input it may use. */
function httpQuery(s: Subject): Query | undefined {
  const q: Record<string, string> = {
    email: s.email,
    domain: s.companyDomain || (s.freeMail ? "" : s.emailDomain),
    phone: s.phone.valid ? s.phone.e164 : "",
    given_name: s.givenName.normalize("NFKC").trim().toLowerCase(),
    family_name: s.familyName.normalize("NFKC").trim().toLowerCase(),
    company: s.company.normalize("NFKC").trim().toLowerCase(),
    city: s.city.normalize("NFKC").trim().toLowerCase(),
    region: s.region.trim().toUpperCase(),
    postal_code: s.postalCode.trim().toUpperCase(),
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(q)) if (v !== "") out[k] = v;
  // Without one identifying input there is nothing to look up (a country alone is not a person).
  if (Object.keys(out).length === 0) return undefined;
  if (s.countryCode !== "") out.country = s.countryCode;
  return out;
}

function malformed(what: string): ProviderError {
  return new ProviderError(`malformed answer: ${what}`);
}

function str(v: unknown, what: string, max: number): string {
  if (typeof v !== "string") throw malformed(`${what} must be a string`);
  const s = v.trim();
  if (s.length > max) throw malformed(`${what} is longer than ${max} characters`);
  return s;
}

/** Reads one answered field into its typed value; undefined for values that are empty. */
function readValue(field: EnrichableField, raw: unknown, country: string): FieldValue | undefined {
  const what = "value";
  switch (field) {
    case EnrichableField.EMPLOYEE_COUNT: {
      if (typeof raw !== "number" || !Number.isSafeInteger(raw) || raw < 0)
        throw malformed("employee_count must be a whole number ≥ 0");
      return { value: create(AttributeValueSchema, { kind: { case: "intValue", value: BigInt(raw) } }) };
    }
    case EnrichableField.ANNUAL_REVENUE: {
      if (typeof raw !== "number" || !Number.isFinite(raw) || raw < 0)
        throw malformed("annual_revenue must be a number ≥ 0");
      return { value: create(AttributeValueSchema, { kind: { case: "numberValue", value: raw } }) };
    }
    case EnrichableField.PHONE: {
      const p = normalizePhone(str(raw, what, 50), country || "US");
      return p.valid ? { value: text(p.e164) } : undefined;
    }
    case EnrichableField.TIME_ZONE: {
      const tz = str(raw, what, 64);
      try {
        new Intl.DateTimeFormat("en", { timeZone: tz });
      } catch {
        throw malformed(`time_zone ${JSON.stringify(tz)} is not an IANA time zone`);
      }
      return tz === "" ? undefined : { value: text(tz) };
    }
    case EnrichableField.CITY: {
      let city: string;
      let region: string;
      if (typeof raw === "string") {
        const i = raw.lastIndexOf(",");
        city = (i < 0 ? raw : raw.slice(0, i)).trim();
        region = i < 0 ? "" : raw.slice(i + 1).trim();
      } else if (typeof raw === "object" && raw !== null) {
        const o = raw as Record<string, unknown>;
        city = str(o.city ?? "", "city.city", 200);
        region = str(o.region ?? "", "city.region", 100);
      } else throw malformed("city must be a string or an object");
      if (city.length > 200 || region.length > 100) throw malformed("city is too long");
      return city === "" ? undefined : { value: text(placeText(city, region)), place: { city, region } };
    }
    case EnrichableField.POSTAL_ADDRESS: {
      if (typeof raw !== "object" || raw === null) throw malformed("postal_address must be an object");
      const o = raw as Record<string, unknown>;
      const lines = o.street_lines ?? [];
      if (!Array.isArray(lines) || lines.length > 4)
        throw malformed("postal_address.street_lines must be a list of at most 4");
      const address = create(PostalAddressSchema, {
        streetLines: lines.map((l, i) => str(l, `postal_address.street_lines[${i}]`, 200)).filter((l) => l !== ""),
        locality: str(o.locality ?? "", "postal_address.locality", 200),
        region: str(o.region ?? "", "postal_address.region", 100),
        postalCode: str(o.postal_code ?? "", "postal_address.postal_code", 20),
        countryCode: str(o.country_code ?? "", "postal_address.country_code", 2).toUpperCase(),
      });
      if (address.countryCode !== "" && !/^[A-Z]{2}$/.test(address.countryCode))
        throw malformed("postal_address.country_code must be ISO 3166-1 alpha-2");
      const line = addressText(address);
      return line === "" ? undefined : { value: text(line), address };
    }
    default: {
      const max = maxChars.get(field) ?? (attributeKeys.has(field) ? 2000 : 200);
      const s = str(raw, what, max);
      return s === "" ? undefined : { value: text(s) };
    }
  }
}

/** Reads an answer body; unknown field names are ignored (a provider may know more than we store). */
export function parseAnswer(body: unknown, country: string): Found[] {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw malformed("body must be a JSON object");
  const fields = (body as Record<string, unknown>).fields ?? [];
  if (!Array.isArray(fields)) throw malformed("fields must be a list");
  if (fields.length > 100) throw malformed("more than 100 fields");
  const out: Found[] = [];
  for (const [i, item] of fields.entries()) {
    if (typeof item !== "object" || item === null) throw malformed(`fields[${i}] must be an object`);
    const o = item as Record<string, unknown>;
    if (typeof o.field !== "string") throw malformed(`fields[${i}].field must be a string`);
    const field = fieldByName(o.field);
    if (field === undefined) continue;
    const confidence = o.confidence;
    if (typeof confidence !== "number" || !(confidence >= 0 && confidence <= 1)) {
      throw malformed(`fields[${i}].confidence must be a number from 0 to 1`);
    }
    const found = readValue(field, o.value, country);
    if (found !== undefined) out.push({ field, found, confidence });
  }
  return out;
}

/** Reads at most `max` bytes of a body, failing past it. */
async function readCapped(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? "NaN");
  if (declared > max) throw new ProviderError(`answer of ${declared} bytes exceeds ${max}`);
  if (res.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > max) throw new ProviderError(`answer exceeds ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

const retryableStatus = (s: number) => s === 408 || s === 429 || s >= 500;

/** The provider. */
export function httpProvider(options: HttpProviderOptions): EnrichmentProvider {
  checkHttpProviderOptions(options);
  const url = new URL("enrich", options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`);
  const timeoutMs = options.timeoutMs ?? 5000;
  const maxAttempts = options.maxAttempts ?? 3;
  const base = options.baseBackoffMs ?? 250;
  const cap = options.maxBackoffMs ?? 5000;
  const maxRetryAfter = options.maxRetryAfterMs ?? 30_000;
  const maxBytes = options.maxResponseBytes ?? 1 << 20;
  const sleep = options.sleep ?? abortableSleep;
  const random = options.random ?? Math.random;
  const now = options.now ?? (() => new Date());
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
  if (options.apiKey !== undefined) headers[(options.apiKeyHeader ?? "x-api-key").toLowerCase()] = options.apiKey;

  /** One attempt: the parsed answer, or what to do next. */
  async function attempt(
    body: string,
    country: string,
    signal: AbortSignal,
  ): Promise<{ found: Found[] } | { retry: string; waitMs?: number }> {
    const timeout = AbortSignal.timeout(timeoutMs);
    let res: Response;
    try {
      res = await fetch(url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.any([signal, timeout]),
        redirect: "error",
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      return { retry: timeout.aborted ? `no answer within ${timeoutMs} ms` : `unreachable: ${(err as Error).message}` };
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return { found: [] };
    }
    if (retryableStatus(res.status)) {
      await res.body?.cancel();
      const waitMs = retryAfterMs(res.headers.get("retry-after"), now());
      return waitMs === undefined ? { retry: `HTTP ${res.status}` } : { retry: `HTTP ${res.status}`, waitMs };
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new ProviderError(`HTTP ${res.status}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readCapped(res, maxBytes));
    } catch (err) {
      if (err instanceof ProviderError) throw err;
      if (signal.aborted) throw signal.reason;
      if (timeout.aborted) return { retry: `no answer within ${timeoutMs} ms` };
      throw malformed("not JSON");
    }
    return { found: parseAnswer(parsed, country) };
  }

  return {
    name: options.name,
    cached: true,
    query: httpQuery,
    async lookup(query, signal) {
      const body = JSON.stringify(query);
      const country = query.country ?? "";
      for (let n = 1; ; n++) {
        const r = await attempt(body, country, signal);
        if ("found" in r) return r.found;
        if (n >= maxAttempts) throw new ProviderError(`${r.retry} after ${n} attempts`);
        if (r.waitMs !== undefined && r.waitMs > maxRetryAfter) {
          throw new ProviderError(
            `${r.retry}: asked to retry after ${Math.ceil(r.waitMs / 1000)} s, longer than the ${maxRetryAfter / 1000} s allowed`,
          );
        }
        await sleep(r.waitMs ?? Math.floor(random() * Math.min(cap, base * 2 ** (n - 1))), signal);
      }
    },
  };
}
