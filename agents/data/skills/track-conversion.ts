/**
 * Conversion tracking with event management (skill `analytics.conversion_tracking`).
 *
 * Method:
 * - **Definitions** are keyed by name and replaced in place (optimistic `version` lock): the event
 *   type and page URL pattern (`*` wildcards) that convert, the value (or the event's own value, in
 *   the definition's currency), the click-through lookback window and the counting method.
 * - **Recording** appends to an immutable log. A conversion is a duplicate when its event id, its
 *   transaction id, or — for once-per-visitor definitions — its visitor (anonymous id or contact id)
 *   was already counted for the definition, earlier or in the same batch; duplicates store nothing.
 *   The visitor identities of once-per-visitor conversions are locked (transaction-level advisory
 *   locks in key order) and the log's unique keys catch any remaining race, so concurrent calls
 *   cannot count one conversion twice. A conversion is credited (last touch) to the visitor's
 *   latest click-through touchpoint — a recorded page view, click, ad click, email click or social
 *   engagement — at most `lookback_window` before it; with none in the window it is recorded
 *   unattributed. Every stored conversion emits `ConversionRecorded` through the outbox.
 * - **Queries** over a half-open time range (its start defaults to 90 days before its end, which
 *   defaults to now; at most 366 days): totals per conversion (count, distinct visitors, value),
 *   per-page and per-location (city) breakdowns capped at `max_rows`, most conversions first; and
 *   ordered funnels: a visitor (anonymous ids and contact ids seen together are one visitor) reaches
 *   step k when, after reaching step k−1, a later event matches step k within the conversion window
 *   from the first step. Each step-1 event is tried as a start and the one reaching furthest
 *   counts. All of it is computed in SQL on indexed columns: only aggregates come back, never the
 *   events.
 *
 * Extension point: collected channel events can be matched to definitions with
 * {@link definitionMatches} (event type + URL pattern) and recorded through {@link trackConversion}.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Duration, durationFromMs, durationMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { InferEntity } from "@mikro-orm/core";
import { OptimisticLockError, UniqueConstraintViolationException } from "@mikro-orm/postgresql";
import { type Money, MoneySchema, TimeRangeSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { AttributedTouchpointSchema, ConversionRecordedSchema } from "../../../gen/mesh/data/v1/data_events_pb.ts";
import {
  type ConversionDefinition,
  ConversionDefinitionSchema,
  type ConversionEvent,
  type ConversionRejection,
  ConversionRejectionSchema,
  ConversionTotalSchema,
  CountingMethod,
  type DefineConversionAction,
  type EventLocation,
  EventLocationSchema,
  EventType,
  type FunnelDefinition,
  type FunnelReport,
  FunnelReportSchema,
  FunnelStepReportSchema,
  type ListConversionDefinitionsAction,
  LocationConversionCountSchema,
  PageConversionCountSchema,
  type QueryConversionsAction,
  type RecordConversionsAction,
  type TrackConversionRequest,
  type TrackConversionResponse,
  TrackConversionResponseSchema,
} from "../../../gen/mesh/data/v1/data_service_pb.ts";
import { type Bus, defineEvent, enqueueEvent } from "../../../lib/bus/index.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { transaction } from "../../../lib/db/index.ts";
import { ConflictError, InvalidInputError } from "../../../lib/errors/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { ConversionDefinitionRow, ConversionEventRow } from "../conversion-entities.ts";

/** A stored conversion was recorded: `<prefix>.events.data.conversion_recorded`. */
export const ConversionRecordedEvent = defineEvent("data", "conversion_recorded", ConversionRecordedSchema);

/** Dependencies of the skill. */
export interface TrackConversionDeps {
  /** The technical database (the Data agent's domain). */
  db: Database;
  /** The bus, for the event subject prefix. */
  bus: Bus;
  /** Logger. */
  log: Logger;
  /** Clock. */
  now: () => Date;
}

type DefinitionRow = InferEntity<typeof ConversionDefinitionRow>;

const DAY_MS = 86_400_000;
/** Default click-through lookback window and funnel conversion window. */
const DEFAULT_WINDOW_MS = 30 * DAY_MS;
const MIN_LOOKBACK_MS = 3_600_000;
const MAX_WINDOW_MS = 90 * DAY_MS;
/** A query's time range: its start defaults to this long before its end, and it may span at most a year. */
const DEFAULT_QUERY_WINDOW_MS = 90 * DAY_MS;
const MAX_QUERY_WINDOW_MS = 366 * DAY_MS;
/** Conversions dated further ahead of the server clock are rejected. */
const MAX_FUTURE_SKEW_MS = 5 * 60_000;
const DEFAULT_PAGE_SIZE = 50;
const DEFAULT_MAX_ROWS = 100;
const INSERT_CHUNK = 500;
const NAME = /^[a-z][a-z0-9_]{0,63}$/;
const LOCATION_KEY = /^([a-z0-9][a-z0-9-]{0,99})?$/;
const COUNTRY = /^([A-Z]{2})?$/;
const CURRENCY = /^[A-Z]{3}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NANOS_PER_UNIT = 1_000_000_000n;

/** Event types that are click-through touchpoints a conversion can be credited to. */
const TOUCHPOINT_TYPES: readonly EventType[] = [
  EventType.PAGE_VIEW,
  EventType.CLICK,
  EventType.AD_CLICK,
  EventType.EMAIL_CLICK,
  EventType.SOCIAL_ENGAGEMENT,
];

const eventTypes = new Set<number>(Object.values(EventType).filter((v) => v !== EventType.UNSPECIFIED));
const countingMethods = new Set<number>([CountingMethod.ONCE_PER_VISITOR, CountingMethod.EVERY]);

/** Runs one conversion-management action. */
export async function trackConversion(
  deps: TrackConversionDeps,
  req: TrackConversionRequest,
): Promise<TrackConversionResponse> {
  if (!UUID.test(req.requestId)) throw new InvalidInputError("request_id", "must be a UUID");
  const { action } = req;
  switch (action.case) {
    case "define":
      return create(TrackConversionResponseSchema, {
        result: { case: "defined", value: await defineConversion(deps, action.value) },
      });
    case "record":
      return create(TrackConversionResponseSchema, {
        result: { case: "recorded", value: await recordConversions(deps, action.value, req.requestId) },
      });
    case "query":
      return create(TrackConversionResponseSchema, {
        result: { case: "queried", value: await queryConversions(deps, action.value) },
      });
    case "list":
      return create(TrackConversionResponseSchema, {
        result: { case: "listed", value: await listDefinitions(deps, action.value) },
      });
    default:
      throw new InvalidInputError("action", "give one of define, record, query or list");
  }
}

// ---------------------------------------------------------------------------------------------
// Money and URLs

/** Money as an exact decimal string with 9 fractional digits (the `numeric(38, 9)` columns). */
export function moneyToAmount(m: Money, field: string): string {
  if (!CURRENCY.test(m.currencyCode)) throw new InvalidInputError(`${field}.currency_code`, "must be an ISO 4217 code");
  if (m.nanos < -999_999_999 || m.nanos > 999_999_999) {
    throw new InvalidInputError(`${field}.nanos`, "must be within ±999,999,999");
  }
  if ((m.units > 0n && m.nanos < 0) || (m.units < 0n && m.nanos > 0)) {
    throw new InvalidInputError(`${field}.nanos`, "must have the sign of units");
  }
  const total = m.units * NANOS_PER_UNIT + BigInt(m.nanos);
  const abs = total < 0n ? -total : total;
  const frac = (abs % NANOS_PER_UNIT).toString().padStart(9, "0");
  return `${total < 0n ? "-" : ""}${abs / NANOS_PER_UNIT}.${frac}`;
}

/** Money from a decimal string such as PostgreSQL returns for `numeric`. */
export function amountToMoney(currencyCode: string, amount: string): Money {
  const negative = amount.startsWith("-");
  const [whole = "0", frac = ""] = (negative ? amount.slice(1) : amount).split(".");
  const abs = BigInt(whole === "" ? "0" : whole) * NANOS_PER_UNIT + BigInt(frac.padEnd(9, "0").slice(0, 9) || "0");
  const total = negative ? -abs : abs;
  return create(MoneySchema, {
    currencyCode,
    units: total / NANOS_PER_UNIT,
    nanos: Number(total % NANOS_PER_UNIT),
  });
}

/** A page URL without query string and fragment; empty stays empty. */
export function normalizePageUrl(url: string, field: string): string {
  if (url === "") return "";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidInputError(field, "must be an absolute URL");
  }
  parsed.search = "";
  parsed.hash = "";
  return parsed.href;
}

/** A `*`-wildcard URL pattern as an anchored regular expression; empty matches any page. */
function patternRegex(pattern: string): RegExp {
  if (pattern === "") return /^/;
  const body = pattern
    .split("*")
    .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${body}$`);
}

/** A `*`-wildcard URL pattern as a LIKE pattern (escape character `\`). */
function patternLike(pattern: string): string {
  return pattern
    .split("*")
    .map((s) => s.replace(/[\\%_]/g, "\\$&"))
    .join("%");
}

/** Whether an event of `eventType` on `pageUrl` matches a definition's type and URL pattern. */
export function definitionMatches(def: ConversionDefinition, eventType: EventType, pageUrl: string): boolean {
  return def.eventType === eventType && patternRegex(def.urlPattern).test(normalizePageUrl(pageUrl, "page_url"));
}

// ---------------------------------------------------------------------------------------------
// Definitions

/** A validated definition, in column form. */
interface DefinitionFields {
  name: string;
  displayName: string;
  eventType: number;
  urlPattern: string;
  currencyCode: string;
  valueAmount: string;
  useEventValue: boolean;
  lookbackSeconds: number;
  counting: number;
  disabled: boolean;
}

function parseDefinition(d: ConversionDefinition | undefined): DefinitionFields {
  const at = "define.definition";
  if (d === undefined) throw new InvalidInputError(at, "is required");
  if (!NAME.test(d.name)) throw new InvalidInputError(`${at}.name`, "must be snake case, 1–64 characters");
  if (d.displayName.length > 200) throw new InvalidInputError(`${at}.display_name`, "must be at most 200 characters");
  if (!eventTypes.has(d.eventType)) throw new InvalidInputError(`${at}.event_type`, "must be a defined event type");
  if (d.urlPattern.length > 2048) throw new InvalidInputError(`${at}.url_pattern`, "must be at most 2048 characters");
  if (!countingMethods.has(d.counting)) {
    throw new InvalidInputError(`${at}.counting`, "must be COUNTING_METHOD_ONCE_PER_VISITOR or COUNTING_METHOD_EVERY");
  }
  if (d.useEventValue && d.value === undefined) {
    throw new InvalidInputError(
      `${at}.value`,
      "is required with use_event_value (it sets the currency and the fallback)",
    );
  }
  let lookbackMs = DEFAULT_WINDOW_MS;
  if (d.lookbackWindow !== undefined) {
    lookbackMs = durationMs(d.lookbackWindow as Duration);
    if (d.lookbackWindow.nanos !== 0 || lookbackMs < MIN_LOOKBACK_MS || lookbackMs > MAX_WINDOW_MS) {
      throw new InvalidInputError(`${at}.lookback_window`, "must be whole seconds from 1 hour to 90 days");
    }
  }
  return {
    name: d.name,
    displayName: d.displayName,
    eventType: d.eventType,
    urlPattern: d.urlPattern,
    currencyCode: d.value?.currencyCode ?? "",
    valueAmount: d.value === undefined ? "0.000000000" : moneyToAmount(d.value, `${at}.value`),
    useEventValue: d.useEventValue,
    lookbackSeconds: lookbackMs / 1000,
    counting: d.counting,
    disabled: d.disabled,
  };
}

function definitionToProto(row: DefinitionRow): ConversionDefinition {
  return create(ConversionDefinitionSchema, {
    name: row.name,
    displayName: row.displayName,
    eventType: row.eventType as EventType,
    urlPattern: row.urlPattern,
    ...(row.currencyCode === "" ? {} : { value: amountToMoney(row.currencyCode, row.valueAmount) }),
    useEventValue: row.useEventValue,
    lookbackWindow: durationFromMs(row.lookbackSeconds * 1000),
    counting: row.counting as CountingMethod,
    disabled: row.disabled,
  });
}

/** Compares two decimal strings numerically (PostgreSQL may return `150.000000000` for `150`). */
function sameAmount(a: string, b: string): boolean {
  const x = amountToMoney("", a);
  const y = amountToMoney("", b);
  return x.units === y.units && x.nanos === y.nanos;
}

async function defineConversion(deps: TrackConversionDeps, action: DefineConversionAction) {
  const fields = parseDefinition(action.definition);
  try {
    return await transaction(deps.db, async (em) => {
      const row = await em.findOne(ConversionDefinitionRow, { name: fields.name });
      if (row === null) {
        const created = em.create(ConversionDefinitionRow, { ...fields, updatedAt: deps.now() });
        await em.flush();
        return { definition: definitionToProto(created), created: true, changed: false };
      }
      if (row.currencyCode !== "" && row.currencyCode !== fields.currencyCode) {
        const recorded = await em.count(ConversionEventRow, { definition: row.id });
        if (recorded > 0) {
          throw new InvalidInputError(
            "define.definition.value.currency_code",
            `cannot change from ${row.currencyCode}: ${recorded} conversions are recorded in it`,
          );
        }
      }
      const changed = (Object.keys(fields) as (keyof DefinitionFields)[]).some((k) =>
        k === "valueAmount" ? !sameAmount(row.valueAmount, fields.valueAmount) : row[k] !== fields[k],
      );
      if (changed) {
        em.assign(row, { ...fields, updatedAt: deps.now() });
        await em.flush();
      }
      return { definition: definitionToProto(row), created: false, changed };
    });
  } catch (err) {
    if (err instanceof OptimisticLockError || err instanceof UniqueConstraintViolationException) {
      throw new ConflictError(`conversion definition "${fields.name}" was changed concurrently; retry`);
    }
    throw err;
  }
}

async function listDefinitions(deps: TrackConversionDeps, action: ListConversionDefinitionsAction) {
  const pageSize = action.pageSize === 0 ? DEFAULT_PAGE_SIZE : action.pageSize;
  if (pageSize < 1 || pageSize > 500) throw new InvalidInputError("list.page_size", "must be from 0 to 500");
  let after = "";
  if (action.pageToken !== "") {
    try {
      const token = JSON.parse(Buffer.from(action.pageToken, "base64url").toString("utf8")) as { after?: unknown };
      if (typeof token.after !== "string") throw new Error("no name");
      after = token.after;
    } catch {
      throw new InvalidInputError("list.page_token", "is not a next_page_token of this list");
    }
  }
  const rows = await deps.db.fork().find(ConversionDefinitionRow, after === "" ? {} : { name: { $gt: after } }, {
    orderBy: { name: "asc" },
    limit: pageSize + 1,
  });
  const page = rows.slice(0, pageSize);
  const last = page.at(-1);
  return {
    definitions: page.map(definitionToProto),
    nextPageToken:
      rows.length > pageSize && last !== undefined
        ? Buffer.from(JSON.stringify({ after: last.name })).toString("base64url")
        : "",
  };
}

// ---------------------------------------------------------------------------------------------
// Recording

/** A structurally valid conversion of the request. */
interface Parsed {
  index: number;
  ev: ConversionEvent;
  occurredAt: Date;
  pageUrl: string;
  location: EventLocation | undefined;
  amount: string | undefined;
}

/** A conversion that passed the business checks, with its dedup key. */
interface Candidate {
  parsed: Parsed;
  def: DefinitionRow;
  /** Visitor identity keys (`a:…`, `c:…`). */
  ids: string[];
  once: boolean;
  dedupKey: string;
  currencyCode: string;
  valueAmount: string;
}

/** A conversion about to be stored. */
interface Pending {
  id: string;
  parsed: Parsed;
  def: DefinitionRow;
  dedupKey: string;
  currencyCode: string;
  valueAmount: string;
  attributedTo: Touchpoint | undefined;
}

/** A recorded event a conversion can be credited to. */
interface Touchpoint {
  id: string;
  definitionId: number;
  eventId: string;
  eventType: number;
  anonymousId: string;
  contactId: string;
  occurredAt: Date;
  pageUrl: string;
}

/** Validates one conversion's shape; throws InvalidInputError naming the field. */
function parseConversion(ev: ConversionEvent, index: number): Parsed {
  const at = `record.conversions[${index}]`;
  if (!NAME.test(ev.conversionName)) throw new InvalidInputError(`${at}.conversion_name`, "must be snake case");
  if (ev.eventId.length < 1 || ev.eventId.length > 128) {
    throw new InvalidInputError(`${at}.event_id`, "must be 1–128 characters");
  }
  if (ev.transactionId.length > 128)
    throw new InvalidInputError(`${at}.transaction_id`, "must be at most 128 characters");
  if (ev.anonymousId === "" && ev.contactId === "") {
    throw new InvalidInputError(`${at}.anonymous_id`, "give anonymous_id or contact_id");
  }
  if (ev.anonymousId.length > 128) throw new InvalidInputError(`${at}.anonymous_id`, "must be at most 128 characters");
  if (ev.contactId.length > 128) throw new InvalidInputError(`${at}.contact_id`, "must be at most 128 characters");
  if (ev.occurredAt === undefined) throw new InvalidInputError(`${at}.occurred_at`, "is required");
  const occurredAt = timestampDate(ev.occurredAt);
  if (Number.isNaN(occurredAt.getTime())) throw new InvalidInputError(`${at}.occurred_at`, "is not a valid time");
  if (ev.pageUrl.length > 2048) throw new InvalidInputError(`${at}.page_url`, "must be at most 2048 characters");
  const loc = ev.location;
  if (loc !== undefined) {
    if (!LOCATION_KEY.test(loc.locationKey)) {
      throw new InvalidInputError(`${at}.location.location_key`, "must be a lowercase slug of up to 100 characters");
    }
    if (loc.city.length > 200) throw new InvalidInputError(`${at}.location.city`, "must be at most 200 characters");
    if (loc.region.length > 100) throw new InvalidInputError(`${at}.location.region`, "must be at most 100 characters");
    if (!COUNTRY.test(loc.countryCode)) {
      throw new InvalidInputError(`${at}.location.country_code`, "must be a two-letter ISO 3166-1 code");
    }
  }
  return {
    index,
    ev,
    occurredAt,
    pageUrl: normalizePageUrl(ev.pageUrl, `${at}.page_url`),
    location: loc,
    amount: ev.value === undefined ? undefined : moneyToAmount(ev.value, `${at}.value`),
  };
}

/** Identity keys of a visitor: `a:<anonymous id>` and `c:<contact id>`, those given. */
function identities(anonymousId: string, contactId: string): string[] {
  const out: string[] = [];
  if (anonymousId !== "") out.push(`a:${anonymousId}`);
  if (contactId !== "") out.push(`c:${contactId}`);
  return out;
}

const sqlList = (n: number): string => Array.from({ length: n }, () => "?").join(", ");

async function recordConversions(deps: TrackConversionDeps, action: RecordConversionsAction, requestId: string) {
  if (action.conversions.length < 1 || action.conversions.length > 10_000) {
    throw new InvalidInputError("record.conversions", "must hold 1 to 10,000 conversions");
  }
  const parsed = action.conversions.map(parseConversion);
  const now = deps.now();
  const { db } = deps;

  return transaction(db, async (em) => {
    const names = [...new Set(parsed.map((c) => c.ev.conversionName))];
    const defs = new Map(
      (await em.find(ConversionDefinitionRow, { name: { $in: names } })).map((d) => [d.name, d] as const),
    );
    const rejections: ConversionRejection[] = [];
    const reject = (c: Parsed, reason: string): void => {
      rejections.push(create(ConversionRejectionSchema, { index: c.index, eventId: c.ev.eventId, reason }));
    };

    // Business checks: rejected conversions are reported, the others go on.
    const candidates: Candidate[] = [];
    for (const c of parsed) {
      const def = defs.get(c.ev.conversionName);
      if (def === undefined) {
        reject(c, "unknown conversion_name");
        continue;
      }
      if (def.disabled) {
        reject(c, "disabled definition");
        continue;
      }
      if (c.occurredAt.getTime() > now.getTime() + MAX_FUTURE_SKEW_MS) {
        reject(c, "occurred_at is in the future");
        continue;
      }
      if (c.pageUrl !== "" && !patternRegex(def.urlPattern).test(c.pageUrl)) {
        reject(c, `page_url does not match the definition's url_pattern ${def.urlPattern}`);
        continue;
      }
      if (c.ev.value !== undefined && c.ev.value.currencyCode !== def.currencyCode) {
        reject(
          c,
          def.currencyCode === ""
            ? "value given but the definition has no value currency"
            : `value currency ${c.ev.value.currencyCode} differs from the definition's ${def.currencyCode}`,
        );
        continue;
      }
      const ids = identities(c.ev.anonymousId, c.ev.contactId);
      const once = def.counting === CountingMethod.ONCE_PER_VISITOR;
      const dedupKey =
        c.ev.transactionId !== "" ? `t:${c.ev.transactionId}` : once ? `v:${ids[0] ?? ""}` : `e:${c.ev.eventId}`;
      candidates.push({
        parsed: c,
        def,
        ids,
        once,
        dedupKey,
        currencyCode: def.currencyCode,
        valueAmount: c.amount ?? def.valueAmount,
      });
    }

    const conn = em.getConnection();
    const tx = em.getTransactionContext();
    // Serialise once-per-visitor checks of the same visitor and definition across calls.
    const lockKeys = [
      ...new Set(candidates.filter((c) => c.once).flatMap((c) => c.ids.map((i) => `${c.def.id}|${i}`))),
    ].sort();
    if (lockKeys.length > 0) {
      await conn.execute(
        "select count(pg_advisory_xact_lock(hashtextextended('conversion:' || k, 0))) as n from jsonb_array_elements_text(?::jsonb) as k",
        [JSON.stringify(lockKeys)],
        "all",
        tx,
      );
    }

    // What is already counted: event ids, dedup keys and once-per-visitor visitors per definition.
    const seenEvent = new Set<string>();
    const seenKey = new Set<string>();
    const seenVisitor = new Set<string>();
    const defIds = [...new Set(candidates.map((c) => c.def.id))];
    if (candidates.length > 0) {
      const keyed = await em.find(
        ConversionEventRow,
        {
          definition: { $in: defIds },
          $or: [
            { eventId: { $in: [...new Set(candidates.map((c) => c.parsed.ev.eventId))] } },
            { dedupKey: { $in: [...new Set(candidates.map((c) => c.dedupKey))] } },
          ],
        },
        { fields: ["definition", "eventId", "dedupKey"] },
      );
      for (const r of keyed) {
        seenEvent.add(`${r.definition}|${r.eventId}`);
        seenKey.add(`${r.definition}|${r.dedupKey}`);
      }
      const onceIds = [...new Set(lockKeys.map((k) => Number(k.slice(0, k.indexOf("|")))))];
      if (onceIds.length > 0) {
        const anons = candidates.map((c) => c.parsed.ev.anonymousId).filter((s) => s !== "");
        const contacts = candidates.map((c) => c.parsed.ev.contactId).filter((s) => s !== "");
        const visitors = await em.find(
          ConversionEventRow,
          {
            definition: { $in: onceIds },
            $or: [
              ...(anons.length > 0 ? [{ anonymousId: { $in: [...new Set(anons)] } }] : []),
              ...(contacts.length > 0 ? [{ contactId: { $in: [...new Set(contacts)] } }] : []),
            ],
          },
          { fields: ["definition", "anonymousId", "contactId"] },
        );
        for (const r of visitors) {
          for (const i of identities(r.anonymousId, r.contactId)) seenVisitor.add(`${r.definition}|${i}`);
        }
      }
    }

    // Each candidate's latest stored touchpoint; touchpoints recorded by this call, by identity.
    const latestStored = await storedTouchpoints(em, `"${db.schema}"."conversion_event"`, candidates);
    const batchTouchpoints = new Map<string, Touchpoint[]>();

    let duplicateCount = 0;
    const pending: Pending[] = [];
    for (const [index, c] of candidates.entries()) {
      const { ev } = c.parsed;
      const { def, ids, once, dedupKey } = c;
      if (
        seenEvent.has(`${def.id}|${ev.eventId}`) ||
        seenKey.has(`${def.id}|${dedupKey}`) ||
        (once && ids.some((i) => seenVisitor.has(`${def.id}|${i}`)))
      ) {
        duplicateCount++;
        continue;
      }
      seenEvent.add(`${def.id}|${ev.eventId}`);
      seenKey.add(`${def.id}|${dedupKey}`);
      if (once) for (const i of ids) seenVisitor.add(`${def.id}|${i}`);
      const id = randomUUID();
      const attributedTo = creditedTouchpoint(
        latestStored.get(index),
        batchTouchpoints,
        id,
        ev,
        c.parsed.occurredAt,
        def.lookbackSeconds * 1000,
      );
      pending.push({
        id,
        parsed: c.parsed,
        def,
        dedupKey,
        currencyCode: c.currencyCode,
        valueAmount: c.valueAmount,
        attributedTo,
      });
      if (TOUCHPOINT_TYPES.includes(def.eventType as EventType)) {
        const t: Touchpoint = {
          id,
          definitionId: def.id,
          eventId: ev.eventId,
          eventType: def.eventType,
          anonymousId: ev.anonymousId,
          contactId: ev.contactId,
          occurredAt: c.parsed.occurredAt,
          pageUrl: c.parsed.pageUrl,
        };
        for (const key of ids) {
          const list = batchTouchpoints.get(key);
          if (list === undefined) batchTouchpoints.set(key, [t]);
          else list.push(t);
        }
      }
    }

    // Append; a concurrent call that stored the same key first makes the row a duplicate.
    const stored = new Set<string>();
    const columns = [
      "id",
      "definition_id",
      "event_type",
      "event_id",
      "transaction_id",
      "dedup_key",
      "anonymous_id",
      "contact_id",
      "occurred_at",
      "currency_code",
      "value_amount",
      "page_url",
      "location_key",
      "city",
      "region",
      "country_code",
      "attributed_to",
      "request_id",
      "recorded_at",
    ];
    for (let i = 0; i < pending.length; i += INSERT_CHUNK) {
      const chunk = pending.slice(i, i + INSERT_CHUNK);
      const params = chunk.flatMap((p) => {
        const { ev } = p.parsed;
        const loc = p.parsed.location;
        return [
          p.id,
          p.def.id,
          p.def.eventType,
          ev.eventId,
          ev.transactionId,
          p.dedupKey,
          ev.anonymousId,
          ev.contactId,
          p.parsed.occurredAt,
          p.currencyCode,
          p.valueAmount,
          p.parsed.pageUrl,
          loc?.locationKey ?? "",
          loc?.city ?? "",
          loc?.region ?? "",
          loc?.countryCode ?? "",
          p.attributedTo?.id ?? null,
          requestId,
          now,
        ];
      });
      const row = `(${sqlList(columns.length)})`;
      const inserted = await conn.execute<Array<{ id: string }>>(
        `insert into "${db.schema}"."conversion_event" (${columns.map((c) => `"${c}"`).join(", ")}) values ${chunk
          .map(() => row)
          .join(", ")} on conflict do nothing returning id`,
        params,
        "all",
        tx,
      );
      for (const r of inserted) stored.add(r.id);
    }
    duplicateCount += pending.length - stored.size;

    // One event per stored conversion, committed with it.
    const touchNames = await definitionNames(em, [
      ...new Set(pending.flatMap((p) => (p.attributedTo === undefined ? [] : [p.attributedTo.definitionId]))),
    ]);
    for (const p of pending) {
      if (!stored.has(p.id)) continue;
      const { ev } = p.parsed;
      const t = p.attributedTo;
      enqueueEvent(
        db,
        em,
        deps.bus.prefix,
        ConversionRecordedEvent,
        create(ConversionRecordedSchema, {
          conversionId: p.id,
          conversionName: p.def.name,
          eventType: p.def.eventType as EventType,
          eventId: ev.eventId,
          transactionId: ev.transactionId,
          anonymousId: ev.anonymousId,
          contactId: ev.contactId,
          occurredAt: timestampFromDate(p.parsed.occurredAt),
          ...(p.currencyCode === "" ? {} : { value: amountToMoney(p.currencyCode, p.valueAmount) }),
          pageUrl: p.parsed.pageUrl,
          ...(p.parsed.location === undefined ? {} : { location: p.parsed.location }),
          ...(t === undefined
            ? {}
            : {
                touchpoint: create(AttributedTouchpointSchema, {
                  conversionId: t.id,
                  conversionName: touchNames.get(t.definitionId) ?? "",
                  eventId: t.eventId,
                  eventType: t.eventType as EventType,
                  occurredAt: timestampFromDate(t.occurredAt),
                  pageUrl: t.pageUrl,
                }),
              }),
          requestId,
        }),
        { msgId: p.id },
      );
    }
    rejections.sort((a, b) => a.index - b.index);
    return { acceptedCount: stored.size, duplicateCount, rejectedCount: rejections.length, rejections };
  });
}

/**
 * Per candidate (by index), the visitor's latest stored touchpoint at most its definition's lookback
 * window before it (last touch; the later recorded on a tie), other than an event with its own id.
 * One indexed lookup per candidate and identity, one row back at most: a visitor's history is never
 * loaded.
 */
async function storedTouchpoints(
  em: EntityManager,
  table: string,
  candidates: readonly Candidate[],
): Promise<Map<number, Touchpoint>> {
  const found = new Map<number, Touchpoint>();
  if (candidates.length === 0) return found;
  const spec = candidates.map((c, i) => ({
    i,
    anon: c.parsed.ev.anonymousId,
    contact: c.parsed.ev.contactId,
    at: c.parsed.occurredAt.toISOString(),
    since: new Date(c.parsed.occurredAt.getTime() - c.def.lookbackSeconds * 1000).toISOString(),
    event: c.parsed.ev.eventId,
  }));
  const columns =
    "id, definition_id, event_id, event_type, anonymous_id, contact_id, occurred_at, page_url, recorded_at";
  // Both identities in turn, each on its (identity, occurred_at) index; the enum values are inlined.
  const latest = (column: string, key: string) =>
    `(select ${columns} from ${table}
      where ${column} = c.${key} and c.${key} <> '' and event_type in (${TOUCHPOINT_TYPES.map(Number).join(", ")})
        and occurred_at <= c.at and occurred_at >= c.since and event_id <> c.event
      order by occurred_at desc, recorded_at desc limit 1)`;
  const rows = await em.getConnection().execute<
    Array<{
      i: number;
      id: string;
      definition_id: string;
      event_id: string;
      event_type: number;
      anonymous_id: string;
      contact_id: string;
      occurred_at: Date;
      page_url: string;
    }>
  >(
    `select c.i, t.* from jsonb_to_recordset(?::jsonb)
       as c(i int, anon text, contact text, at timestamptz, since timestamptz, event text)
     cross join lateral (
       select * from (${latest("anonymous_id", "anon")} union all ${latest("contact_id", "contact")}) u
       order by occurred_at desc, recorded_at desc limit 1
     ) t`,
    [JSON.stringify(spec)],
    "all",
    em.getTransactionContext(),
  );
  for (const r of rows) {
    found.set(r.i, {
      id: r.id,
      definitionId: Number(r.definition_id),
      eventId: r.event_id,
      eventType: r.event_type,
      anonymousId: r.anonymous_id,
      contactId: r.contact_id,
      occurredAt: new Date(r.occurred_at),
      pageUrl: r.page_url,
    });
  }
  return found;
}

/**
 * The visitor's latest touchpoint at most `lookbackMs` before the conversion (last touch): the
 * stored one found for it, or one recorded earlier in the same call (which wins a tie, being later).
 */
function creditedTouchpoint(
  stored: Touchpoint | undefined,
  batch: ReadonlyMap<string, readonly Touchpoint[]>,
  selfId: string,
  ev: ConversionEvent,
  at: Date,
  lookbackMs: number,
): Touchpoint | undefined {
  let best = stored;
  for (const key of identities(ev.anonymousId, ev.contactId)) {
    for (const t of batch.get(key) ?? []) {
      if (t.id === selfId || t.eventId === ev.eventId) continue;
      const age = at.getTime() - t.occurredAt.getTime();
      if (age < 0 || age > lookbackMs) continue;
      if (best === undefined || t.occurredAt.getTime() >= best.occurredAt.getTime()) best = t;
    }
  }
  return best;
}

async function definitionNames(em: EntityManager, ids: number[]): Promise<Map<number, string>> {
  if (ids.length === 0) return new Map();
  const rows = await em.find(ConversionDefinitionRow, { id: { $in: ids } }, { fields: ["id", "name"] });
  return new Map(rows.map((r) => [r.id, r.name] as const));
}

// ---------------------------------------------------------------------------------------------
// Queries

interface CountRow {
  conversions: string;
  value: string;
}

async function queryConversions(deps: TrackConversionDeps, action: QueryConversionsAction) {
  const range = action.timeRange;
  if (range === undefined) throw new InvalidInputError("query.time_range", "is required");
  const end = range.end === undefined ? deps.now() : timestampDate(range.end);
  const start =
    range.start === undefined ? new Date(end.getTime() - DEFAULT_QUERY_WINDOW_MS) : timestampDate(range.start);
  if (!(start.getTime() < end.getTime())) throw new InvalidInputError("query.time_range", "start must be before end");
  if (end.getTime() - start.getTime() > MAX_QUERY_WINDOW_MS) {
    throw new InvalidInputError("query.time_range", "must span at most 366 days");
  }
  const maxRows = action.maxRows === 0 ? DEFAULT_MAX_ROWS : action.maxRows;
  if (maxRows < 1 || maxRows > 10_000) throw new InvalidInputError("query.max_rows", "must be from 0 to 10,000");
  const funnels = action.funnels.map((f, i) => parseFunnel(f, `query.funnels[${i}]`));
  action.conversionNames.forEach((n, i) => {
    if (!NAME.test(n)) throw new InvalidInputError(`query.conversion_names[${i}]`, "must be snake case");
  });

  return transaction(deps.db, async (em) => {
    const requested = [...new Set(action.conversionNames)];
    const defs = await em.find(ConversionDefinitionRow, requested.length > 0 ? { name: { $in: requested } } : {}, {
      orderBy: { name: "asc" },
    });
    const known = new Set(defs.map((d) => d.name));
    action.conversionNames.forEach((n, i) => {
      if (!known.has(n)) throw new InvalidInputError(`query.conversion_names[${i}]`, `no conversion named "${n}"`);
    });
    const byId = new Map(defs.map((d) => [d.id, d] as const));
    const conn = em.getConnection();
    const tx = em.getTransactionContext();
    const table = `"${deps.db.schema}"."conversion_event"`;
    const ids = defs.map((d) => d.id);
    const scope = `definition_id in (${sqlList(ids.length)}) and occurred_at >= ? and occurred_at < ?`;
    const scopeParams = [...ids, start, end];
    const money = (defId: number, amount: string): { value?: Money } => {
      const currency = byId.get(defId)?.currencyCode ?? "";
      return currency === "" ? {} : { value: amountToMoney(currency, amount) };
    };

    const totals = [];
    const pages = [];
    const locations = [];
    if (ids.length > 0) {
      const totalRows = await conn.execute<Array<CountRow & { definition_id: string; visitors: string }>>(
        `select definition_id, count(*) as conversions,
           count(distinct case when anonymous_id <> '' then 'a:' || anonymous_id else 'c:' || contact_id end) as visitors,
           coalesce(sum(value_amount), 0)::text as value
         from ${table} where ${scope} group by definition_id`,
        scopeParams,
        "all",
        tx,
      );
      const totalsById = new Map(totalRows.map((r) => [Number(r.definition_id), r] as const));
      for (const d of defs) {
        const r = totalsById.get(d.id);
        totals.push(
          create(ConversionTotalSchema, {
            conversionName: d.name,
            conversions: BigInt(r?.conversions ?? 0),
            uniqueVisitors: BigInt(r?.visitors ?? 0),
            ...money(d.id, r?.value ?? "0"),
          }),
        );
      }

      const pageRows = await conn.execute<Array<CountRow & { definition_id: string; page_url: string }>>(
        `select page_url, definition_id, count(*) as conversions, coalesce(sum(value_amount), 0)::text as value
         from ${table} where ${scope} and page_url <> ''
         group by page_url, definition_id order by count(*) desc, page_url, definition_id limit ?`,
        [...scopeParams, maxRows],
        "all",
        tx,
      );
      for (const r of pageRows) {
        const defId = Number(r.definition_id);
        pages.push(
          create(PageConversionCountSchema, {
            pageUrl: r.page_url,
            conversionName: byId.get(defId)?.name ?? "",
            conversions: BigInt(r.conversions),
            ...money(defId, r.value),
          }),
        );
      }

      const locationRows = await conn.execute<
        Array<
          CountRow & { definition_id: string; location_key: string; city: string; region: string; country_code: string }
        >
      >(
        `select location_key, city, region, country_code, definition_id, count(*) as conversions,
           coalesce(sum(value_amount), 0)::text as value
         from ${table} where ${scope} and (location_key <> '' or city <> '' or region <> '' or country_code <> '')
         group by location_key, city, region, country_code, definition_id
         order by count(*) desc, location_key, country_code, region, city, definition_id limit ?`,
        [...scopeParams, maxRows],
        "all",
        tx,
      );
      for (const r of locationRows) {
        const defId = Number(r.definition_id);
        locations.push(
          create(LocationConversionCountSchema, {
            location: create(EventLocationSchema, {
              locationKey: r.location_key,
              city: r.city,
              region: r.region,
              countryCode: r.country_code,
            }),
            conversionName: byId.get(defId)?.name ?? "",
            conversions: BigInt(r.conversions),
            ...money(defId, r.value),
          }),
        );
      }
    }

    const funnelReports: FunnelReport[] = [];
    for (const f of funnels) funnelReports.push(await runFunnel(em, table, f, start, end));

    return {
      timeRange: create(TimeRangeSchema, { start: timestampFromDate(start), end: timestampFromDate(end) }),
      totals,
      funnels: funnelReports,
      pages,
      locations,
    };
  });
}

/** A validated funnel. */
interface Funnel {
  name: string;
  steps: Array<{ label: string; eventType: number; urlPattern: string }>;
  windowMs: number;
}

function parseFunnel(f: FunnelDefinition, at: string): Funnel {
  if (f.name.length < 1 || f.name.length > 100) throw new InvalidInputError(`${at}.name`, "must be 1–100 characters");
  if (f.steps.length < 2 || f.steps.length > 20) throw new InvalidInputError(`${at}.steps`, "must hold 2 to 20 steps");
  const steps = f.steps.map((s, i) => {
    if (s.label.length < 1 || s.label.length > 100) {
      throw new InvalidInputError(`${at}.steps[${i}].label`, "must be 1–100 characters");
    }
    if (!eventTypes.has(s.eventType)) {
      throw new InvalidInputError(`${at}.steps[${i}].event_type`, "must be a defined event type");
    }
    if (s.urlPattern.length > 2048) {
      throw new InvalidInputError(`${at}.steps[${i}].url_pattern`, "must be at most 2048 characters");
    }
    return { label: s.label, eventType: s.eventType, urlPattern: s.urlPattern };
  });
  let windowMs = DEFAULT_WINDOW_MS;
  if (f.conversionWindow !== undefined) {
    windowMs = durationMs(f.conversionWindow as Duration);
    if (!(windowMs > 0) || windowMs > MAX_WINDOW_MS) {
      throw new InvalidInputError(`${at}.conversion_window`, "must be more than 0 and at most 90 days");
    }
  }
  return { name: f.name, steps, windowMs };
}

/**
 * Stitches the visitors of a funnel's events into the temporary table `funnel_visitor` (identity →
 * label, the smallest identity of its group): anonymous ids and contact ids seen together on an
 * event are one visitor, transitively. Labels spread one link per round, in SQL, until none moves;
 * identities never seen together need no row. The tables live until the transaction ends.
 */
async function stitchVisitors(em: EntityManager, table: string, events: { sql: string; params: unknown[] }) {
  const conn = em.getConnection();
  const tx = em.getTransactionContext();
  await conn.execute("drop table if exists pg_temp.funnel_edge, pg_temp.funnel_visitor", [], "run", tx);
  await conn.execute(
    `create temporary table funnel_edge on commit drop as
       select distinct 'a:' || anonymous_id as a, 'c:' || contact_id as c from ${table}
       where ${events.sql} and anonymous_id <> '' and contact_id <> ''`,
    events.params,
    "run",
    tx,
  );
  await conn.execute(
    `create temporary table funnel_visitor (id text primary key, label text not null) on commit drop;
     insert into funnel_visitor select a, a from funnel_edge union select c, c from funnel_edge;
     create index on funnel_edge (a); create index on funnel_edge (c); analyze funnel_edge, funnel_visitor`,
    [],
    "run",
    tx,
  );
  for (;;) {
    const moved = await conn.execute<{ affectedRows: number }>(
      `update funnel_visitor v set label = m.label from (
         select e.a as id, min(w.label) as label from funnel_edge e join funnel_visitor w on w.id = e.c group by e.a
         union all
         select e.c, min(w.label) from funnel_edge e join funnel_visitor w on w.id = e.a group by e.c
       ) m where m.id = v.id and m.label < v.label`,
      [],
      "run",
      tx,
    );
    if (moved.affectedRows === 0) return;
  }
}

/**
 * One funnel, computed in SQL; only the per-step counts and medians come back. A visitor's events
 * in the range that match some step are numbered in time order; for each event, a window function
 * finds the next later event of the same visitor matching each step. Every step-1 event starts a
 * chain that follows those links step by step (one join per step) while the step falls within the
 * conversion window from the start; per visitor, the chain reaching furthest (the earliest on a
 * tie) counts.
 */
async function runFunnel(em: EntityManager, table: string, f: Funnel, start: Date, end: Date): Promise<FunnelReport> {
  const n = f.steps.length;
  const stepSql = f.steps.map((s) =>
    s.urlPattern === "" ? "(event_type = ?)" : "(event_type = ? and page_url like ?)",
  );
  const stepParams = f.steps.flatMap((s) =>
    s.urlPattern === "" ? [s.eventType] : [s.eventType, patternLike(s.urlPattern)],
  );
  const types = [...new Set(f.steps.map((s) => s.eventType))];
  // Events of the range that match a step: served by the (event_type, occurred_at) index.
  const events = {
    sql: `occurred_at >= ? and occurred_at < ? and event_type in (${sqlList(types.length)}) and (${stepSql.join(" or ")})`,
    params: [start, end, ...types, ...stepParams],
  };
  await stitchVisitors(em, table, events);

  const k = [...Array(n).keys()];
  const later = k.slice(1);
  const sql = `
    with ev as (
      select coalesce(v.label, e.ident) as visitor, e.at,
        row_number() over (order by e.at, e.recorded_at, e.id) as pos, array[${k.map((i) => `e.s${i}`).join(", ")}] as hit
      from (
        select case when anonymous_id <> '' then 'a:' || anonymous_id else 'c:' || contact_id end as ident,
          occurred_at as at, recorded_at, id, ${stepSql.map((q, i) => `${q} as s${i}`).join(", ")}
        from ${table} where ${events.sql}
      ) e left join pg_temp.funnel_visitor v on v.id = e.ident
    ),
    nx as (
      select pos, visitor, at, hit[1] as starts,
        array[${later.map((i) => `min(case when hit[${i + 1}] then pos end) over later`).join(", ")}] as next
      from ev
      window later as (partition by visitor order by pos desc rows between unbounded preceding and 1 preceding)
    ),
    chains as (
      select c0.visitor, c0.pos as start_pos, ${k.map((i) => `c${i}.at as t${i}`).join(", ")},
        1 ${later.map((i) => `+ (c${i}.pos is not null)::int`).join(" ")} as reached
      from nx c0
      ${later
        .map(
          (i) => `left join nx c${i} on c${i}.pos = c${i - 1}.next[${i}]
        and c${i}.at - c0.at <= ? * interval '1 millisecond'`,
        )
        .join("\n      ")}
      where c0.starts
    ),
    best as (
      select distinct on (visitor) * from chains order by visitor, reached desc, start_pos
    )
    select ${k.map((i) => `count(t${i}) as v${i}`).join(", ")}${later
      .map(
        (i) =>
          `, percentile_cont(0.5) within group (order by (extract(epoch from t${i} - t${i - 1}) * 1000)::float8) as m${i}`,
      )
      .join("")}
    from best`;
  const params = [...stepParams, ...events.params, ...later.map(() => f.windowMs)];
  const [row] = await em
    .getConnection()
    .execute<Array<Record<string, string | number | null>>>(sql, params, "all", em.getTransactionContext());
  await em
    .getConnection()
    .execute("drop table pg_temp.funnel_edge, pg_temp.funnel_visitor", [], "run", em.getTransactionContext());

  const reached = k.map((i) => Number(row?.[`v${i}`] ?? 0));
  const startCount = reached[0] ?? 0;
  const steps = f.steps.map((s, i) => {
    const v = reached[i] ?? 0;
    const prev = i === 0 ? v : (reached[i - 1] ?? 0);
    const m = i === 0 ? null : (row?.[`m${i}`] ?? null);
    return create(FunnelStepReportSchema, {
      label: s.label,
      visitors: BigInt(v),
      rateFromPrevious: prev === 0 ? 0 : v / prev,
      rateFromStart: startCount === 0 ? 0 : v / startCount,
      ...(m === null ? {} : { medianTimeFromPrevious: durationFromMs(Math.round(Number(m))) }),
    });
  });
  const lastCount = reached.at(-1) ?? 0;
  return create(FunnelReportSchema, {
    name: f.name,
    steps,
    overallConversionRate: startCount === 0 ? 0 : lastCount / startCount,
  });
}
