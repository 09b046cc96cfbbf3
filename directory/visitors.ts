/**
 * The directory's visitor loop, on the server hosting the SEO agent: the page beacon's endpoint
 * (`POST /v1/events`), the enquiry form's endpoint (`POST /enquiry`, a plain form POST answered with
 * a redirect to the thank-you page) and the built site itself (`GET`). Inputs are validated,
 * size-limited and rate-limited per client address before anything is stored; events are
 * deduplicated by their event id downstream. A page view becomes a Data conversion event
 * (`page_view`) and an anonymous CRM interaction; an enquiry becomes a CRM contact with its city —
 * stitched to the visitor's earlier page views — and an `enquiry` conversion, through the mesh.
 */
import { randomUUID } from "node:crypto";
import type http from "node:http";
import type http2 from "node:http2";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { CrmService, InteractionType, TouchpointChannel } from "../gen/mesh/crm/v1/crm_service_pb.ts";
import { CountingMethod, DataService, EventType } from "../gen/mesh/data/v1/data_service_pb.ts";
import type { Logger } from "../lib/log/index.ts";
import { createTokenBuckets } from "../lib/server/index.ts";
import type { MeshClient } from "../lib/transport/index.ts";
import { fullJitterDelay, sleep } from "../lib/transport/index.ts";
import { stableUuid } from "../lib/workflow/index.ts";
import { geonamesCredit } from "./data/index.ts";
import { type EnquiryFormValues, type EnquiryRefill, renderFormErrorPage } from "./site/render.ts";
import { createSiteFileRoute, type HttpRoute } from "./site/serve.ts";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** A city the endpoints accept. */
export interface VisitorCity {
  name: string;
  stateCode: string;
}

/** Options of {@link createVisitorRoutes}. */
export interface VisitorRoutesOptions {
  client: MeshClient;
  log: Logger;
  /** City slug → city (the directory's cities). */
  cities: () => Promise<ReadonlyMap<string, VisitorCity>>;
  /** Folder of the built site (served for GET). */
  siteDir: string;
  /** Requests per second and burst per client address (default 20 / 60). */
  rateLimit?: { perSecond: number; burst: number };
  now?: () => Date;
}

/** Largest beacon body. */
export const MAX_BEACON_BYTES = 4096;
/** Largest enquiry form body. */
export const MAX_FORM_BYTES = 16_384;

class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

const tooManyRequests = () => new HttpError(429, "too many requests; retry in a second", { "retry-after": "1" });

/**
 * Runs a mesh call again when it answers ABORTED: the agent lost a race (a deadlock or a
 * concurrent merge of the same identities), rolled everything back and stored no result under the
 * request id, so the same request — same request id, same server time — is safe to repeat. Other
 * failures are thrown at once.
 */
export async function retryAborted<T>(call: () => Promise<T>, attempts = 5, baseDelayMs = 20): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Aborted || attempt >= attempts) throw err;
      await sleep(fullJitterDelay(attempt, baseDelayMs, 500));
    }
  }
}

async function readBody(req: Req, limit: number): Promise<string> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) throw new HttpError(413, `body over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw new HttpError(413, `body over ${limit} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

const idPattern = /^[A-Za-z0-9_-]{8,128}$/;
const slugPattern = /^[a-z0-9][a-z0-9-]{0,99}$/;
const emailPattern = /^[^\s@<>()[\]\\,;:"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$/;

function httpUrl(v: unknown, field: string, required: boolean): string {
  if (v === undefined || v === "") {
    if (required) throw new HttpError(400, `${field}: required`);
    return "";
  }
  if (typeof v !== "string" || v.length > 2048)
    throw new HttpError(400, `${field}: must be a URL of at most 2048 characters`);
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new HttpError(400, `${field}: must be an absolute URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new HttpError(400, `${field}: must be http or https`);
  return u.toString();
}

function optionalId(v: unknown, field: string): string {
  if (v === undefined || v === "") return "";
  if (typeof v !== "string" || !idPattern.test(v))
    throw new HttpError(400, `${field}: must be 8–128 letters, digits, - or _`);
  return v;
}

/** Creates the routes. */
export function createVisitorRoutes(opts: VisitorRoutesOptions): HttpRoute[] {
  const now = opts.now ?? (() => new Date());
  const limit = opts.rateLimit ?? { perSecond: 20, burst: 60 };
  const buckets = createTokenBuckets({ ...limit, maxKeys: 10_000 });
  const allow = (req: Req): boolean => buckets.take(req.socket?.remoteAddress ?? "") === 0;
  /**
   * A repeated event id (a beacon sent twice, a form resubmitted) reuses the request id derived from
   * it with a new server time: the agents answer ALREADY_EXISTS, which means "already recorded".
   */
  const once = async <T>(call: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await retryAborted(call);
    } catch (err) {
      if (ConnectError.from(err).code === Code.AlreadyExists) return undefined;
      throw err;
    }
  };
  const data = () => opts.client.agent(DataService);
  const crm = () => opts.client.agent(CrmService);

  // The two conversions the directory counts; defined once per process (a replay is answered from
  // the stored result, so every instance may do it).
  let defined: Promise<void> | undefined;
  const defineConversions = (): Promise<void> => {
    defined ??= (async () => {
      for (const [name, displayName, eventType, counting] of [
        ["page_view", "Page view", EventType.PAGE_VIEW, CountingMethod.EVERY],
        ["enquiry", "Enquiry", EventType.FORM_SUBMIT, CountingMethod.ONCE_PER_VISITOR],
      ] as const) {
        await data().trackConversion({
          requestId: stableUuid(`directory.define.${name}.v1`),
          action: {
            case: "define",
            value: {
              definition: { name, displayName, eventType, counting, lookbackWindow: { seconds: 30n * 86400n } },
            },
          },
        });
      }
    })().catch((err: unknown) => {
      defined = undefined;
      throw err;
    });
    return defined;
  };

  const location = (slug: string, city: VisitorCity | undefined) =>
    city ? { locationKey: slug, city: city.name, region: city.stateCode, countryCode: "US" } : undefined;

  const send = (
    res: Res,
    status: number,
    body: string,
    type = "application/json",
    headers: Record<string, string> = {},
  ): void => {
    (res as http.ServerResponse).writeHead(status, { ...headers, "content-type": type, "cache-control": "no-store" });
    res.end(body);
  };

  const pageView: HttpRoute = async (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method !== "POST" || path !== "/v1/events") return false;
    if (!allow(req)) throw tooManyRequests();
    const raw = await readBody(req, MAX_BEACON_BYTES);
    let ev: Record<string, unknown>;
    try {
      ev = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      throw new HttpError(400, "body: must be JSON");
    }
    if (typeof ev !== "object" || ev === null || Array.isArray(ev)) throw new HttpError(400, "body: must be an object");
    if (ev.type !== "page_view") throw new HttpError(400, 'type: must be "page_view"');
    const eventId = optionalId(ev.event_id, "event_id");
    const visitorId = optionalId(ev.visitor_id, "visitor_id");
    if (!eventId) throw new HttpError(400, "event_id: required");
    if (!visitorId) throw new HttpError(400, "visitor_id: required");
    const url = httpUrl(ev.url, "url", true);
    const referrer = httpUrl(ev.referrer, "referrer", false);
    const slug = typeof ev.city === "string" ? ev.city : "";
    const cities = await opts.cities();
    if (slug !== "" && (!slugPattern.test(slug) || !cities.has(slug))) throw new HttpError(400, "city: unknown city");
    const city = cities.get(slug);
    const at = timestampFromDate(now());
    await defineConversions();
    await Promise.all([
      once(() =>
        data().trackConversion({
          requestId: stableUuid(`directory.view.${eventId}`),
          action: {
            case: "record",
            value: {
              conversions: [
                {
                  conversionName: "page_view",
                  eventId,
                  occurredAt: at,
                  anonymousId: visitorId,
                  pageUrl: url,
                  location: location(slug, city),
                },
              ],
            },
          },
        }),
      ),
      once(() =>
        crm().trackInteraction({
          requestId: stableUuid(`directory.interaction.${eventId}`),
          interaction: {
            eventId,
            anonymousId: visitorId,
            type: InteractionType.PAGE_VIEW,
            channel: TouchpointChannel.WEB,
            url,
            referrerUrl: referrer,
            city: city?.name ?? "",
            region: city?.stateCode ?? "",
            occurredAt: at,
          },
          skipContactCreation: true,
        }),
      ),
    ]);
    (res as http.ServerResponse).writeHead(204, { "cache-control": "no-store" });
    res.end();
    return true;
  };

  const enquiry: HttpRoute = async (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method !== "POST" || (path !== "/enquiry" && path !== "/enquiry/")) return false;
    if (!allow(req)) throw tooManyRequests();
    const form = new URLSearchParams(await readBody(req, MAX_FORM_BYTES));
    const field = (k: string) => (form.get(k) ?? "").trim();
    const cities = await opts.cities();
    const slug = field("city");
    const city = cities.get(slug);
    if (!slugPattern.test(slug) || city === undefined) throw new HttpError(400, "city: unknown city");
    // What the visitor sent, to show the form again should the enquiry be refused.
    const refill: EnquiryFormValues = {
      name: field("name").slice(0, 120),
      email: field("email").slice(0, 254),
      phone: field("phone").slice(0, 32),
      message: field("message").slice(0, 2000),
      community: field("community").slice(0, 200),
      visitorId: idPattern.test(field("visitor_id")) ? field("visitor_id") : "",
      eventId: idPattern.test(field("event_id")) ? field("event_id") : "",
    };
    posted.set(req, { city: { slug, name: city.name, stateCode: city.stateCode }, values: refill });
    const name = field("name");
    if (name.length < 1 || name.length > 120) throw new HttpError(400, "name: 1–120 characters");
    const email = field("email").toLowerCase();
    if (!emailPattern.test(email)) throw new HttpError(400, "email: not an email address");
    const phoneRaw = field("phone").replace(/[\s().-]/g, "");
    const phone = phoneRaw === "" ? "" : phoneRaw.startsWith("+") ? phoneRaw : `+1${phoneRaw.replace(/^1/, "")}`;
    if (phone !== "" && !/^\+[1-9][0-9]{7,14}$/.test(phone)) throw new HttpError(400, "phone: not a phone number");
    const message = field("message");
    if (message.length > 2000) throw new HttpError(400, "message: at most 2000 characters");
    const community = field("community");
    if (community !== "" && !/^[a-z0-9][a-z0-9-]{0,199}$/.test(community))
      throw new HttpError(400, "community: unknown");
    const visitorId = optionalId(field("visitor_id"), "visitor_id");
    // Without JavaScript the form carries no event id: each POST is then its own enquiry.
    const eventId = optionalId(field("event_id"), "event_id") || randomUUID();
    // Sent again after a failure, the enquiry keeps its event id and is recorded once.
    refill.eventId = eventId;
    const referer = typeof req.headers.referer === "string" ? req.headers.referer : "";
    const pageUrl = httpUrl(referer.length <= 2048 ? referer : "", "referer", false);
    const [given, ...rest] = name.split(/\s+/);
    const at = timestampFromDate(now());
    await defineConversions();
    const tracked = await once(() =>
      crm().trackInteraction({
        requestId: stableUuid(`directory.enquiry.${eventId}`),
        interaction: {
          eventId,
          anonymousId: visitorId,
          email,
          type: InteractionType.ENQUIRY,
          channel: TouchpointChannel.WEB,
          url: pageUrl,
          city: city.name,
          region: city.stateCode,
          occurredAt: at,
          properties: [
            ...(community
              ? [{ key: "community", value: { kind: { case: "stringValue" as const, value: community } } }]
              : []),
            ...(message ? [{ key: "message", value: { kind: { case: "stringValue" as const, value: message } } }] : []),
          ],
        },
        contact: {
          givenName: given ?? "",
          familyName: rest.join(" "),
          email,
          phone,
          city: city.name,
          region: city.stateCode,
          source: "directory",
        },
      }),
    );
    // The conversion is recorded even when CRM had the enquiry already: an enquiry sent again after
    // a failure between the two calls is then still counted for its city (Data keeps one per event
    // id, so a plain repeat adds nothing). CRM's answer to a repeat carries no contact id.
    await once(() =>
      data().trackConversion({
        requestId: stableUuid(`directory.enquiry-conversion.${eventId}`),
        action: {
          case: "record",
          value: {
            conversions: [
              {
                conversionName: "enquiry",
                eventId,
                occurredAt: at,
                anonymousId: visitorId,
                contactId: tracked?.contactId ?? "",
                pageUrl,
                location: location(slug, city),
              },
            ],
          },
        },
      }),
    );
    if (tracked !== undefined && (req.headers.accept ?? "").includes("application/json")) {
      send(res, 200, JSON.stringify({ contactId: tracked.contactId, stitched: tracked.stitchedInteractionCount }));
      return true;
    }
    (res as http.ServerResponse).writeHead(303, {
      location: `/enquiry/thanks/?city=${slug}`,
      "cache-control": "no-store",
    });
    res.end();
    return true;
  };

  /** The enquiry form posted on a request, for the page answered when it is refused. */
  const posted = new WeakMap<Req, EnquiryRefill>();

  /** A refused enquiry, for a browser: the reason in words and the form again with its values. */
  const formErrorPage = (req: Req, status: number, reason: string): string => {
    const [heading, message] =
      status === 400
        ? ["Please check your enquiry", `${reason.charAt(0).toUpperCase()}${reason.slice(1)}.`]
        : status === 413
          ? ["Your enquiry is too long", "Please shorten your question and send it again."]
          : status === 429
            ? ["Too many enquiries at once", "Please wait a moment, then send your enquiry again."]
            : ["We could not send your enquiry", "Nothing was stored. Please send it again in a moment."];
    const form = posted.get(req);
    const invalid = status === 400 ? reason.split(":")[0] : undefined;
    return renderFormErrorPage({
      heading,
      message,
      credit: geonamesCredit,
      ...(form ? { form: { ...form, ...(invalid ? { invalid } : {}) } } : {}),
    });
  };

  /**
   * Answers a refused request: JSON `{error}` naming the field, or — for a browser's form post
   * (`html`, when it accepts text/html) — a page with the form to correct and send again.
   */
  const guard =
    (route: HttpRoute, html = false): HttpRoute =>
    async (req, res) => {
      try {
        return await route(req, res);
      } catch (err) {
        const known = err instanceof HttpError;
        if (!known) opts.log.warn("visitor endpoint failed", { error: String(err) });
        const status = known ? err.status : 503;
        const reason = known ? err.message : "temporarily unavailable; retry";
        const headers = known ? err.headers : { "retry-after": "1" };
        if (html && String(req.headers.accept ?? "").includes("text/html")) {
          send(res, status, formErrorPage(req, status, reason), "text/html; charset=utf-8", headers);
        } else {
          send(res, status, JSON.stringify({ error: reason }), "application/json", headers);
        }
        return true;
      }
    };
  return [guard(pageView), guard(enquiry, true), guard(createSiteFileRoute(opts.siteDir))];
}
