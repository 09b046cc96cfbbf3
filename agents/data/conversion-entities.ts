/**
 * Tables of the Data agent's conversion tracking, in the technical schema: the conversion
 * definitions, and the append-only log of recorded conversions (every counted event, including
 * the page views and clicks that funnels and attribution read).
 *
 * Amounts are `numeric(38, 9)` — exact, and Money's units + nanos fit it — so sums in SQL are exact.
 */
import { defineEntity, p } from "@mikro-orm/postgresql";

/** One conversion definition, keyed by its snake-case name; replaced in place under a version lock. */
export const ConversionDefinitionRow = defineEntity({
  name: "ConversionDefinitionRow",
  tableName: "conversion_definition",
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    /** Stable snake-case name, the key of the definition. */
    name: p.string().length(64).unique(),
    displayName: p.string().length(200).default(""),
    /** `mesh.data.v1.EventType` number. */
    eventType: p.smallint(),
    /** Page URL pattern with `*` wildcards; empty matches any page. */
    urlPattern: p.string().length(2048).default(""),
    /** ISO 4217 code of `value`; empty when the definition has no value. */
    currencyCode: p.string().length(3).default(""),
    /** Value of one conversion, in `currency_code` units. */
    valueAmount: p.decimal("string").precision(38).scale(9).default("0"),
    useEventValue: p.boolean().default(false),
    /** Click-through lookback window in seconds. */
    lookbackSeconds: p.integer(),
    /** `mesh.data.v1.CountingMethod` number. */
    counting: p.smallint(),
    disabled: p.boolean().default(false),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()),
    version: p.integer().version(),
  },
});

/**
 * One recorded conversion (append-only). `dedup_key` is `t:<transaction id>` when the conversion
 * carries one, `v:<visitor>` for once-per-visitor definitions, else `e:<event id>`; together with
 * the unique event id it makes a replayed or concurrent duplicate insert nothing.
 *
 * The indexes serve the queries: time range per definition (totals), per page and per location
 * (city) within a time range, a visitor's earlier touchpoints (attribution, once-per-visitor
 * checks) and event types within a time range (funnels).
 */
export const ConversionEventRow = defineEntity({
  name: "ConversionEventRow",
  tableName: "conversion_event",
  uniques: [
    { name: "conversion_event_definition_dedup_key_unique", properties: ["definition", "dedupKey"] },
    { name: "conversion_event_definition_event_id_unique", properties: ["definition", "eventId"] },
  ],
  indexes: [
    { name: "conversion_event_definition_occurred_at_index", properties: ["definition", "occurredAt"] },
    { name: "conversion_event_page_url_occurred_at_index", properties: ["pageUrl", "occurredAt"] },
    { name: "conversion_event_location_key_occurred_at_index", properties: ["locationKey", "occurredAt"] },
    { name: "conversion_event_city_occurred_at_index", properties: ["countryCode", "region", "city", "occurredAt"] },
    { name: "conversion_event_anonymous_id_occurred_at_index", properties: ["anonymousId", "occurredAt"] },
    { name: "conversion_event_contact_id_occurred_at_index", properties: ["contactId", "occurredAt"] },
    { name: "conversion_event_event_type_occurred_at_index", properties: ["eventType", "occurredAt"] },
  ],
  properties: {
    id: p.uuid().primary(),
    definition: () => p.manyToOne(ConversionDefinitionRow).mapToPk(),
    /** `mesh.data.v1.EventType` number of the definition when recorded. */
    eventType: p.smallint(),
    eventId: p.string().length(128),
    transactionId: p.string().length(128).default(""),
    dedupKey: p.string().length(300),
    anonymousId: p.string().length(128).default(""),
    contactId: p.string().length(128).default(""),
    occurredAt: p.datetime(),
    currencyCode: p.string().length(3).default(""),
    valueAmount: p.decimal("string").precision(38).scale(9).default("0"),
    /** Page URL without query string or fragment; empty when unknown. */
    pageUrl: p.string().length(2048).default(""),
    /** Place: stable key (for example the city slug `austin-tx`), city, region, country. */
    locationKey: p.string().length(100).default(""),
    city: p.string().length(200).default(""),
    region: p.string().length(100).default(""),
    countryCode: p.string().length(2).default(""),
    /** The touchpoint (another recorded event) the conversion is credited to; null when none fell in the lookback window. */
    attributedTo: p.uuid().nullable(),
    /** The TrackConversion call that recorded it. */
    requestId: p.string().length(64),
    recordedAt: p.datetime().onCreate(() => new Date()),
  },
});

/** Entities of conversion tracking (technical schema). */
export const conversionEntities = [ConversionDefinitionRow, ConversionEventRow] as const;
