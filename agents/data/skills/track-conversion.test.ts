import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MoneySchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import type { ConversionRecorded } from "../../../gen/mesh/data/v1/data_events_pb.ts";
import {
  type ConversionEvent,
  ConversionEventSchema,
  CountingMethod,
  EventType,
  type TrackConversionRequest,
  TrackConversionRequestSchema,
  type TrackConversionResponse,
} from "../../../gen/mesh/data/v1/data_service_pb.ts";
import type { Bus, startOutboxRelay } from "../../../lib/bus/index.ts";
import { decodeEvent } from "../../../lib/bus/index.ts";
import type { Database } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, openBackboneFixture } from "../../../test/support/backbone.ts";
import { ConversionDefinitionRow, ConversionEventRow } from "../conversion-entities.ts";
import { amountToMoney, ConversionRecordedEvent, moneyToAmount, trackConversion } from "./track-conversion.ts";

const log = createLogger("warn");

/** A database whose query results are counted: `rows` gets the length of each result set (SQL or `find`). */
function countingRows(db: Database, rows: number[]): Database {
  const bind = <T extends object>(t: T, k: string | symbol) => {
    const v = Reflect.get(t, k, t);
    return typeof v === "function" ? v.bind(t) : v;
  };
  return new Proxy(db, {
    get(t, k) {
      if (k !== "transaction") return bind(t, k);
      return (fn: Parameters<Database["transaction"]>[0]) =>
        t.transaction((em) =>
          fn(
            new Proxy(em, {
              get(e, ek) {
                if (ek === "find") {
                  return async (...args: Parameters<typeof e.find>) => {
                    const r = await e.find(...args);
                    rows.push(r.length);
                    return r;
                  };
                }
                if (ek !== "getConnection") return bind(e, ek);
                return () =>
                  new Proxy(e.getConnection(), {
                    get(c, ck) {
                      if (ck !== "execute") return bind(c, ck);
                      return async (...args: Parameters<typeof c.execute>) => {
                        const r = await c.execute(...args);
                        if (Array.isArray(r)) rows.push(r.length);
                        return r;
                      };
                    },
                  });
              },
            }),
          ),
        );
    },
  });
}
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const SITE = "https://seniors.example.org";

type Action = TrackConversionRequest["action"];
type EventInit = MessageInitShape<typeof ConversionEventSchema>;

describe("analytics.conversion_tracking", () => {
  let fixture: BackboneFixture;
  let db: Database;
  let bus: Bus;
  let relay: ReturnType<typeof startOutboxRelay>;
  const events: ConversionRecorded[] = [];
  const now = new Date("2026-03-10T12:00:00Z");
  const at = (ms: number): Date => new Date(now.getTime() - ms);
  let call: (action: Action) => Promise<TrackConversionResponse>;

  beforeAll(async () => {
    fixture = await openBackboneFixture(domains.technical, "technical");
    ({ db, bus, relay } = fixture);
    bus.fanout(bus.eventSubject(ConversionRecordedEvent), (d) => {
      events.push(decodeEvent(ConversionRecordedEvent, d));
    });
    await bus.nc.flush();
    const deps = { db, bus, log, now: () => now };
    call = (action) => trackConversion(deps, create(TrackConversionRequestSchema, { requestId: randomUUID(), action }));
  });
  afterAll(async () => {
    await fixture?.dispose();
  });

  /** Waits until the relay has published what committed, plus a margin for late duplicates. */
  const settle = async (): Promise<void> => {
    await relay.flush();
    await bus.nc.flush();
    await new Promise((r) => setTimeout(r, 150));
  };

  const define = async (
    name: string,
    eventType: EventType,
    counting: CountingMethod,
    extra: Record<string, unknown> = {},
  ) => {
    const res = await call({
      case: "define",
      value: { definition: { name, displayName: name, eventType, counting, ...extra } },
    } as Action);
    if (res.result.case !== "defined") throw new Error("expected defined");
    return res.result.value;
  };

  const conversion = (init: EventInit): ConversionEvent => create(ConversionEventSchema, init);
  const record = async (conversions: ConversionEvent[]) => {
    const res = await call({ case: "record", value: { conversions } } as Action);
    if (res.result.case !== "recorded") throw new Error("expected recorded");
    return res.result.value;
  };
  const query = async (value: Record<string, unknown>) => {
    const res = await call({ case: "query", value } as Action);
    if (res.result.case !== "queried") throw new Error("expected queried");
    return res.result.value;
  };
  const view = (id: string, visitor: string, when: Date, page: string, city?: [string, string, string]) =>
    conversion({
      conversionName: "page_view",
      eventId: id,
      anonymousId: visitor,
      occurredAt: timestampFromDate(when),
      pageUrl: `${SITE}${page}?utm_source=test#top`,
      ...(city === undefined
        ? {}
        : { location: { locationKey: city[0], city: city[1], region: city[2], countryCode: "US" } }),
    });
  const enquiry = (
    id: string,
    visitor: string,
    when: Date,
    page: string,
    city?: [string, string, string],
    contactId = "",
  ) =>
    conversion({
      conversionName: "enquiry",
      eventId: id,
      anonymousId: visitor,
      contactId,
      occurredAt: timestampFromDate(when),
      pageUrl: `${SITE}${page}`,
      ...(city === undefined
        ? {}
        : { location: { locationKey: city[0], city: city[1], region: city[2], countryCode: "US" } }),
    });
  const austin: [string, string, string] = ["austin-tx", "Austin", "TX"];
  const boise: [string, string, string] = ["boise-id", "Boise", "ID"];

  it("converts Money to exact decimal amounts and back", () => {
    const m = amountToMoney(
      "USD",
      moneyToAmount(create(MoneySchema, { currencyCode: "USD", units: 150n, nanos: 500_000_000 }), "v"),
    );
    expect(m.units).toBe(150n);
    expect(m.nanos).toBe(500_000_000);
    expect(moneyToAmount(create(MoneySchema, { currencyCode: "USD", units: -2n, nanos: -250_000_000 }), "v")).toBe(
      "-2.250000000",
    );
    expect(amountToMoney("USD", "-2.250000000")).toMatchObject({ units: -2n, nanos: -250_000_000 });
  });

  it("defines, replaces and lists conversion definitions", async () => {
    const first = await define("enquiry", EventType.FORM_SUBMIT, CountingMethod.ONCE_PER_VISITOR, {
      urlPattern: `${SITE}/senior-living/*`,
      value: { currencyCode: "USD", units: 150n },
      lookbackWindow: durationFromMs(DAY),
    });
    expect(first).toMatchObject({ created: true, changed: false });
    expect(first.definition?.lookbackWindow?.seconds).toBe(86_400n);
    const again = await define("enquiry", EventType.FORM_SUBMIT, CountingMethod.ONCE_PER_VISITOR, {
      urlPattern: `${SITE}/senior-living/*`,
      value: { currencyCode: "USD", units: 150n },
      lookbackWindow: durationFromMs(DAY),
    });
    expect(again).toMatchObject({ created: false, changed: false });
    const replaced = await define("enquiry", EventType.FORM_SUBMIT, CountingMethod.ONCE_PER_VISITOR, {
      displayName: "Enquiry",
      urlPattern: `${SITE}/senior-living/*`,
      value: { currencyCode: "USD", units: 200n },
      lookbackWindow: durationFromMs(DAY),
    });
    expect(replaced).toMatchObject({ created: false, changed: true });
    expect(replaced.definition?.value).toMatchObject({ currencyCode: "USD", units: 200n, nanos: 0 });
    const row = await db.fork().findOneOrFail(ConversionDefinitionRow, { name: "enquiry" });
    expect(row.version).toBe(2);

    const pv = await define("page_view", EventType.PAGE_VIEW, CountingMethod.EVERY, { urlPattern: `${SITE}/*` });
    expect(pv.definition?.lookbackWindow?.seconds).toBe(30n * 86_400n);
    await define("ad_click", EventType.AD_CLICK, CountingMethod.EVERY);
    await define("purchase", EventType.PURCHASE, CountingMethod.EVERY, {
      value: { currencyCode: "USD", units: 10n },
      useEventValue: true,
    });

    const page1 = await call({ case: "list", value: { pageSize: 2 } } as Action);
    if (page1.result.case !== "listed") throw new Error("expected listed");
    expect(page1.result.value.definitions.map((d) => d.name)).toEqual(["ad_click", "enquiry"]);
    const page2 = await call({
      case: "list",
      value: { pageSize: 2, pageToken: page1.result.value.nextPageToken },
    } as Action);
    if (page2.result.case !== "listed") throw new Error("expected listed");
    expect(page2.result.value.definitions.map((d) => d.name)).toEqual(["page_view", "purchase"]);
    expect(page2.result.value.nextPageToken).toBe("");
  });

  it("records a conversion once per event id and transaction id, and publishes one event per new conversion", async () => {
    events.length = 0;
    const buy = (eventId: string, transactionId: string, units: bigint) =>
      conversion({
        conversionName: "purchase",
        eventId,
        transactionId,
        contactId: "contact-7",
        occurredAt: timestampFromDate(at(HOUR)),
        value: { currencyCode: "USD", units },
      });
    const first = await record([buy("p-1", "order-1", 99n), buy("p-1", "order-1", 99n)]);
    expect(first).toMatchObject({ acceptedCount: 1, duplicateCount: 1, rejectedCount: 0 });
    const replay = await record([buy("p-1", "order-1", 99n)]);
    expect(replay).toMatchObject({ acceptedCount: 0, duplicateCount: 1 });
    const sameOrder = await record([buy("p-2", "order-1", 99n), buy("p-3", "order-2", 5n)]);
    expect(sameOrder).toMatchObject({ acceptedCount: 1, duplicateCount: 1 });
    const rejected = await record([
      conversion({ conversionName: "nope", eventId: "x-1", anonymousId: "v", occurredAt: timestampFromDate(now) }),
      buy("p-4", "order-4", 1n),
    ]);
    expect(rejected.rejections.map((r) => [r.index, r.reason])).toEqual([[0, "unknown conversion_name"]]);
    const euro = await record([
      conversion({
        conversionName: "purchase",
        eventId: "p-5",
        contactId: "c",
        occurredAt: timestampFromDate(now),
        value: { currencyCode: "EUR", units: 1n },
      }),
    ]);
    expect(euro.rejections[0]?.reason).toBe("value currency EUR differs from the definition's USD");

    const rows = await db.fork().find(ConversionEventRow, { eventId: { $in: ["p-1", "p-2", "p-3", "p-4"] } });
    expect(rows.map((r) => r.eventId).sort()).toEqual(["p-1", "p-3", "p-4"]);
    await settle();
    expect(events.map((e) => e.eventId).sort()).toEqual(["p-1", "p-3", "p-4"]);
    const p1 = events.find((e) => e.eventId === "p-1");
    expect(p1).toMatchObject({ conversionName: "purchase", transactionId: "order-1", contactId: "contact-7" });
    expect(p1?.value).toMatchObject({ currencyCode: "USD", units: 99n });
    expect(p1?.conversionId).toBe(rows.find((r) => r.eventId === "p-1")?.id);
  });

  it("counts a once-per-visitor conversion once per visitor, also when the visitor comes back as a contact", async () => {
    const res = await record([
      enquiry("e-1", "visitor-a", at(2 * HOUR), "/senior-living/tx/austin", austin),
      enquiry("e-2", "visitor-a", at(HOUR), "/senior-living/tx/austin", austin),
    ]);
    expect(res).toMatchObject({ acceptedCount: 1, duplicateCount: 1 });
    const later = await record([
      enquiry("e-3", "visitor-a", at(HOUR / 2), "/senior-living/tx/austin", austin, "contact-a"),
    ]);
    expect(later).toMatchObject({ acceptedCount: 0, duplicateCount: 1 });
    const byContact = await record([
      conversion({
        conversionName: "enquiry",
        eventId: "e-4",
        contactId: "contact-a",
        anonymousId: "other-device",
        occurredAt: timestampFromDate(at(HOUR / 4)),
      }),
    ]);
    expect(byContact).toMatchObject({ acceptedCount: 1 });
    const repeat = await record([
      conversion({
        conversionName: "enquiry",
        eventId: "e-5",
        contactId: "contact-a",
        occurredAt: timestampFromDate(at(1000)),
      }),
    ]);
    expect(repeat).toMatchObject({ acceptedCount: 0, duplicateCount: 1 });
  });

  it("counts one conversion when the same visitor's enquiries arrive concurrently", async () => {
    const results = await Promise.all(
      [1, 2, 3, 4].map((n) =>
        record([enquiry(`race-${n}`, "visitor-race", at(2 * DAY + n * 60_000), "/senior-living/tx/austin", austin)]),
      ),
    );
    expect(results.reduce((sum, r) => sum + r.acceptedCount, 0)).toBe(1);
    expect(results.reduce((sum, r) => sum + r.duplicateCount, 0)).toBe(3);
    expect(await db.fork().count(ConversionEventRow, { anonymousId: "visitor-race" })).toBe(1);
  });

  it("credits a conversion only to a click inside the definition's lookback window", async () => {
    events.length = 0;
    const click = (id: string, visitor: string, when: Date) =>
      conversion({
        conversionName: "ad_click",
        eventId: id,
        anonymousId: visitor,
        occurredAt: timestampFromDate(when),
      });
    // The enquiry definition looks back one day.
    await record([click("c-old", "visitor-b", at(3 * DAY)), click("c-new", "visitor-c", at(5 * HOUR))]);
    const res = await record([
      enquiry("e-b", "visitor-b", at(HOUR), "/senior-living/id/boise", boise),
      enquiry("e-c", "visitor-c", at(HOUR), "/senior-living/id/boise", boise),
    ]);
    expect(res.acceptedCount).toBe(2);
    await settle();
    const b = events.find((e) => e.eventId === "e-b");
    const c = events.find((e) => e.eventId === "e-c");
    expect(b?.touchpoint).toBeUndefined();
    expect(c?.touchpoint).toMatchObject({
      eventId: "c-new",
      conversionName: "ad_click",
      eventType: EventType.AD_CLICK,
    });
    const stored = await db.fork().find(ConversionEventRow, { eventId: { $in: ["e-b", "e-c", "c-new"] } });
    const byId = new Map(stored.map((r) => [r.eventId, r]));
    expect(byId.get("e-b")?.attributedTo).toBeNull();
    expect(byId.get("e-c")?.attributedTo).toBe(byId.get("c-new")?.id);
  });

  it("answers per-conversion, per-page and per-location counts and values for a time range", async () => {
    await record([
      view("v-1", "visitor-d", at(3 * HOUR), "/senior-living/tx/austin", austin),
      view("v-2", "visitor-e", at(3 * HOUR), "/senior-living/tx/austin", austin),
      view("v-3", "visitor-e", at(2 * HOUR), "/senior-living/id/boise", boise),
      view("v-4", "visitor-f", at(10 * DAY), "/senior-living/id/boise", boise),
    ]);
    const result = await query({
      timeRange: { start: timestampFromDate(at(DAY)), end: timestampFromDate(now) },
      conversionNames: ["page_view", "enquiry"],
    });
    const totals = Object.fromEntries(result.totals.map((t) => [t.conversionName, t]));
    // Enquiries: e-1 (visitor-a), e-4 (contact-a), e-b, e-c; values at 200 USD each.
    expect(totals.enquiry).toMatchObject({ conversions: 4n, uniqueVisitors: 4n });
    expect(totals.enquiry?.value).toMatchObject({ currencyCode: "USD", units: 800n });
    expect(totals.page_view).toMatchObject({ conversions: 3n, uniqueVisitors: 2n });
    expect(totals.page_view?.value).toBeUndefined();

    const pages = result.pages.map((p) => [p.pageUrl, p.conversionName, p.conversions]);
    expect(pages).toEqual([
      [`${SITE}/senior-living/id/boise`, "enquiry", 2n],
      [`${SITE}/senior-living/tx/austin`, "page_view", 2n],
      [`${SITE}/senior-living/id/boise`, "page_view", 1n],
      [`${SITE}/senior-living/tx/austin`, "enquiry", 1n],
    ]);
    const locations = result.locations.map((l) => [
      l.location?.locationKey,
      l.location?.city,
      l.conversionName,
      l.conversions,
    ]);
    expect(locations).toEqual([
      ["austin-tx", "Austin", "page_view", 2n],
      ["boise-id", "Boise", "enquiry", 2n],
      ["austin-tx", "Austin", "enquiry", 1n],
      ["boise-id", "Boise", "page_view", 1n],
    ]);
    // Ties are ordered by location key.
    expect(result.locations[1]?.value).toMatchObject({ currencyCode: "USD", units: 400n });

    const limited = await query({
      timeRange: { start: timestampFromDate(at(DAY)) },
      conversionNames: ["page_view"],
      maxRows: 1,
    });
    expect(limited.pages).toHaveLength(1);
    expect(limited.timeRange?.end).toEqual(timestampFromDate(now));
  });

  it("computes an ordered view → enquiry funnel within the conversion window", async () => {
    await define("funnel_enquiry", EventType.FORM_SUBMIT, CountingMethod.ONCE_PER_VISITOR, {
      urlPattern: `${SITE}/f/*`,
    });
    await define("funnel_view", EventType.PAGE_VIEW, CountingMethod.EVERY, { urlPattern: `${SITE}/f/*` });
    const fv = (id: string, v: string, when: Date) =>
      conversion({
        conversionName: "funnel_view",
        eventId: id,
        anonymousId: v,
        occurredAt: timestampFromDate(when),
        pageUrl: `${SITE}/f/city`,
      });
    const fe = (id: string, v: string, when: Date, contactId = "") =>
      conversion({
        conversionName: "funnel_enquiry",
        eventId: id,
        anonymousId: v,
        contactId,
        occurredAt: timestampFromDate(when),
        pageUrl: `${SITE}/f/city`,
      });
    const base = now.getTime() - 5 * DAY;
    await record([
      // f1: view then enquiry 10 minutes later → converts.
      fv("f1-v", "f1", new Date(base)),
      fe("f1-e", "f1", new Date(base + 10 * 60_000)),
      // f2: view then enquiry 3 hours later → outside a 1-hour window.
      fv("f2-v", "f2", new Date(base)),
      fe("f2-e", "f2", new Date(base + 3 * HOUR)),
      // f3: enquiry before the view → not in order.
      fe("f3-e", "f3", new Date(base)),
      fv("f3-v", "f3", new Date(base + 60_000)),
      // f4: view, then (anonymous id and contact together) an enquiry 20 minutes later.
      fv("f4-v", "f4", new Date(base)),
      fe("f4-e", "f4", new Date(base + 20 * 60_000), "contact-f4"),
      // f5: view only.
      fv("f5-v", "f5", new Date(base)),
    ]);
    const result = await query({
      timeRange: { start: timestampFromDate(new Date(base - HOUR)), end: timestampFromDate(new Date(base + DAY)) },
      conversionNames: ["funnel_view"],
      funnels: [
        {
          name: "city view to enquiry",
          steps: [
            { label: "view", eventType: EventType.PAGE_VIEW, urlPattern: `${SITE}/f/*` },
            { label: "enquiry", eventType: EventType.FORM_SUBMIT, urlPattern: `${SITE}/f/*` },
          ],
          conversionWindow: durationFromMs(HOUR),
        },
      ],
    });
    const funnel = result.funnels[0];
    expect(funnel?.steps.map((s) => s.visitors)).toEqual([5n, 2n]);
    expect(funnel?.steps[1]?.rateFromPrevious).toBeCloseTo(0.4);
    expect(funnel?.overallConversionRate).toBeCloseTo(0.4);
    // Median of 10 and 20 minutes.
    expect(funnel?.steps[1]?.medianTimeFromPrevious?.seconds).toBe(15n * 60n);
  });

  it("refuses invalid input naming the field, and writes nothing", async () => {
    const before = await db.fork().count(ConversionEventRow, {});
    const attempt = record([
      view("ok-1", "visitor-z", at(HOUR), "/senior-living/tx/austin"),
      conversion({ conversionName: "page_view", eventId: "bad-1", occurredAt: timestampFromDate(at(HOUR)) }),
    ]);
    await expect(attempt).rejects.toBeInstanceOf(InvalidInputError);
    await expect(attempt).rejects.toMatchObject({ field: "record.conversions[1].anonymous_id" });
    await expect(
      record([
        conversion({
          conversionName: "page_view",
          eventId: "bad-2",
          anonymousId: "v",
          pageUrl: "not a url",
          occurredAt: timestampFromDate(now),
        }),
      ]),
    ).rejects.toMatchObject({ field: "record.conversions[0].page_url" });
    await expect(
      define("bad", EventType.FORM_SUBMIT, CountingMethod.EVERY, { lookbackWindow: durationFromMs(60_000) }),
    ).rejects.toMatchObject({ field: "define.definition.lookback_window" });
    await expect(define("Bad-Name", EventType.FORM_SUBMIT, CountingMethod.EVERY)).rejects.toMatchObject({
      field: "define.definition.name",
    });
    await expect(
      query({ timeRange: { start: timestampFromDate(now), end: timestampFromDate(at(HOUR)) } }),
    ).rejects.toMatchObject({ field: "query.time_range" });
    await expect(query({ timeRange: {}, conversionNames: ["missing"] })).rejects.toMatchObject({
      field: "query.conversion_names[0]",
    });
    expect(await db.fork().count(ConversionEventRow, {})).toBe(before);
    expect(await db.fork().count(ConversionDefinitionRow, { name: { $in: ["bad", "Bad-Name"] } })).toBe(0);
  });
  it("computes funnels in SQL within a bounded window: hand-counted steps, stitched visitors, medians", async () => {
    await define("g_view", EventType.PAGE_VIEW, CountingMethod.EVERY, { urlPattern: `${SITE}/g/*` });
    await define("g_click", EventType.CLICK, CountingMethod.EVERY, { urlPattern: `${SITE}/g/*` });
    await define("g_form", EventType.FORM_SUBMIT, CountingMethod.EVERY, { urlPattern: `${SITE}/g/*` });
    const base = now.getTime() - 10 * DAY;
    const MIN = 60_000;
    let n = 0;
    const ev = (name: string, anonymousId: string, offsetMs: number, contactId = "") =>
      conversion({
        conversionName: name,
        eventId: `g-${n++}`,
        anonymousId,
        contactId,
        occurredAt: timestampFromDate(new Date(base + offsetMs)),
        pageUrl: `${SITE}/g/city`,
      });
    await record([
      // A: view → click (10 min) → form (20 min more): all three steps.
      ev("g_view", "ga", 0),
      ev("g_click", "ga", 10 * MIN),
      ev("g_form", "ga", 30 * MIN),
      // B: the click 3 hours after the first view is outside the 2-hour window; a later view, then a
      // click 5 minutes after it, reaches step 2 (the start reaching furthest counts).
      ev("g_view", "gb", 0),
      ev("g_click", "gb", 3 * HOUR),
      ev("g_view", "gb", 4 * HOUR),
      ev("g_click", "gb", 4 * HOUR + 5 * MIN),
      // C: one visitor under two ids: the click carries only the contact id, the form both ids.
      ev("g_view", "gc", 0),
      ev("g_click", "", 15 * MIN, "contact-gc"),
      ev("g_form", "gc", 40 * MIN, "contact-gc"),
      // D: click before the view: only the view counts.
      ev("g_click", "gd", 0),
      ev("g_view", "gd", 5 * MIN),
      // E: view then form, no click: step 1 only.
      ev("g_view", "ge", 0),
      ev("g_form", "ge", 10 * MIN),
      // F: view two days before the queried range; click and form inside it do not start a funnel.
      ev("g_view", "gf", -2 * DAY),
      ev("g_click", "gf", 10 * MIN),
      ev("g_form", "gf", 20 * MIN),
      // H: two views, both reaching the end; the first start counts (20 and 30 minutes).
      ev("g_view", "gh", 0),
      ev("g_view", "gh", MIN),
      ev("g_click", "gh", 20 * MIN),
      ev("g_form", "gh", 50 * MIN),
      // Old: a view 100 days ago, outside the default window.
      ev("g_view", "gold", 10 * DAY - 100 * DAY),
    ]);
    const funnel = {
      name: "view, click, form",
      steps: [
        { label: "view", eventType: EventType.PAGE_VIEW, urlPattern: `${SITE}/g/*` },
        { label: "click", eventType: EventType.CLICK, urlPattern: `${SITE}/g/*` },
        { label: "form", eventType: EventType.FORM_SUBMIT, urlPattern: `${SITE}/g/*` },
      ],
      conversionWindow: durationFromMs(2 * HOUR),
    };
    // Rows the skill's SQL hands back: the funnel arrives aggregated, not as events.
    const rows: number[] = [];
    const counted = countingRows(db, rows);
    const q = async (timeRange: Record<string, unknown>) => {
      const res = await trackConversion(
        { db: counted, bus, log, now: () => now },
        create(TrackConversionRequestSchema, {
          requestId: randomUUID(),
          action: { case: "query", value: { timeRange, conversionNames: ["g_view"], funnels: [funnel] } },
        }),
      );
      if (res.result.case !== "queried") throw new Error("expected queried");
      return res.result.value;
    };

    const result = await q({
      start: timestampFromDate(new Date(base - DAY)),
      end: timestampFromDate(new Date(base + DAY)),
    });
    const steps = result.funnels[0]?.steps ?? [];
    // view: A B C D E H; click: A B C H; form: A C H.
    expect(steps.map((s) => s.visitors)).toEqual([6n, 4n, 3n]);
    expect(steps[1]?.rateFromPrevious).toBeCloseTo(4 / 6);
    expect(steps[2]?.rateFromPrevious).toBeCloseTo(3 / 4);
    expect(steps[2]?.rateFromStart).toBeCloseTo(0.5);
    expect(result.funnels[0]?.overallConversionRate).toBeCloseTo(0.5);
    // view → click: 5, 10, 15, 20 minutes → 12.5; click → form: 20, 25, 30 → 25.
    expect(steps[0]?.medianTimeFromPrevious).toBeUndefined();
    expect(steps[1]?.medianTimeFromPrevious?.seconds).toBe(750n);
    expect(steps[2]?.medianTimeFromPrevious?.seconds).toBe(1500n);
    expect(Math.max(...rows)).toBeLessThanOrEqual(3);
    expect(rows.length).toBeGreaterThan(0);

    // No start: the last 90 days (F's early view now counts, the 100-day-old one does not).
    const recent = await q({});
    expect(recent.timeRange?.start).toEqual(timestampFromDate(new Date(now.getTime() - 90 * DAY)));
    expect(recent.timeRange?.end).toEqual(timestampFromDate(now));
    expect(recent.funnels[0]?.steps.map((s) => s.visitors)).toEqual([7n, 4n, 3n]);
    expect(recent.totals[0]).toMatchObject({ conversionName: "g_view", conversions: 9n, uniqueVisitors: 7n });

    // A window longer than a year is refused, naming the field.
    await expect(q({ start: timestampFromDate(new Date(now.getTime() - 400 * DAY)) })).rejects.toMatchObject({
      field: "query.time_range",
    });
  });
  it("credits a conversion from the visitor's latest touchpoint without loading the visitor's history", async () => {
    await define("t_view", EventType.PAGE_VIEW, CountingMethod.EVERY, { urlPattern: `${SITE}/t/*` });
    await define("t_lead", EventType.FORM_SUBMIT, CountingMethod.EVERY, { lookbackWindow: durationFromMs(DAY) });
    const tview = (id: string, visitor: string, when: Date) =>
      conversion({
        conversionName: "t_view",
        eventId: id,
        anonymousId: visitor,
        occurredAt: timestampFromDate(when),
        pageUrl: `${SITE}/t/page`,
      });
    const lead = (id: string, visitor: string, when: Date) =>
      conversion({ conversionName: "t_lead", eventId: id, anonymousId: visitor, occurredAt: timestampFromDate(when) });
    // 300 views every 5 minutes from 2 hours ago back over 25 hours; one old view of another visitor.
    await record([
      ...Array.from({ length: 300 }, (_, i) => tview(`tv-${i}`, "heavy", at(2 * HOUR + i * 5 * 60_000))),
      tview("tv-light", "light", at(3 * DAY)),
    ]);
    const rows: number[] = [];
    const counted = countingRows(db, rows);
    const recordCounted = async (conversions: ConversionEvent[]) => {
      const res = await trackConversion(
        { db: counted, bus, log, now: () => now },
        create(TrackConversionRequestSchema, {
          requestId: randomUUID(),
          action: { case: "record", value: { conversions } },
        }),
      );
      if (res.result.case !== "recorded") throw new Error("expected recorded");
      return res.result.value;
    };
    expect(
      (
        await recordCounted([
          tview("tv-new", "heavy", at(90 * 60_000)),
          lead("tl-1", "heavy", at(HOUR)),
          lead("tl-2", "light", at(HOUR)),
        ])
      ).acceptedCount,
    ).toBe(3);
    expect((await recordCounted([lead("tl-3", "heavy", at(2 * HOUR + 60_000))])).acceptedCount).toBe(1);

    const stored = await db
      .fork()
      .find(ConversionEventRow, { eventId: { $in: ["tv-new", "tv-1", "tl-1", "tl-2", "tl-3"] } });
    const byId = new Map(stored.map((r) => [r.eventId, r]));
    // tl-1: the view earlier in the same call; tl-2: the only view is older than the 1-day lookback;
    // tl-3: the latest view before it (tv-0, 2 hours ago, came after it).
    expect(byId.get("tl-1")?.attributedTo).toBe(byId.get("tv-new")?.id);
    expect(byId.get("tl-2")?.attributedTo).toBeNull();
    expect(byId.get("tl-3")?.attributedTo).toBe(byId.get("tv-1")?.id);
    // At most one touchpoint per conversion came back, never the visitor's 300 views.
    expect(Math.max(...rows)).toBeLessThanOrEqual(3);
  });
});
