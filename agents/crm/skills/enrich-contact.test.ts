import { randomUUID } from "node:crypto";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  ContactSchema,
  EnrichableField,
  EnrichableFieldSchema,
  type EnrichContactRequestSchema,
  ProviderOutcome,
  EnrichContactRequestSchema as RequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Database, type DataDomain, openDatabase } from "../../../lib/db/index.ts";
import { InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import {
  CrmEnrichmentCache,
  createEnrichment,
  databaseCache,
  type Enrichment,
  emailKey,
  enrichmentEntities,
} from "../enrichment/index.ts";
import { CrmContact } from "../entities.ts";
import { Migration20261203144500_enrichment_cache } from "../migrations/Migration20261203144500_enrichment_cache.ts";
import { enrichContact } from "./enrich-contact.ts";

const log = createLogger("warn");
const start = Date.parse("2026-06-01T12:00:00Z");
let clock = start;
const now = (): Date => new Date(clock);
const day = 86_400_000;

/** The operations schema with the enrichment cache (added here until agents/crm/index.ts lists it). */
function operationsWithCache(): DataDomain {
  const d = domains.operations;
  const name = "Migration20261203144500_enrichment_cache";
  if (d.migrations.some((m) => m.name === name)) return d;
  return {
    schema: d.schema,
    entities: [...d.entities, ...(enrichmentEntities as unknown as DataDomain["entities"])],
    migrations: [...d.migrations, { name, class: Migration20261203144500_enrichment_cache }].sort((a, b) =>
      a.name < b.name ? -1 : 1,
    ),
  };
}

/** The local vendor: answers are queued per test; every request is recorded. */
let vendor: Server;
let vendorUrl: string;
let requests: unknown[] = [];
let answers: Array<(res: ServerResponse) => void> = [];
const answer = (status: number, body: unknown) => (res: ServerResponse) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

describe("crm.contact_enrichment on PostgreSQL", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let enrichment: Enrichment;

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: operationsWithCache(), log });
    vendor = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        requests.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        (answers.shift() ?? answer(500, {}))(res);
      });
    });
    await new Promise<void>((r) => vendor.listen(0, "127.0.0.1", r));
    vendorUrl = `http://127.0.0.1:${(vendor.address() as AddressInfo).port}`;
    const sleep = async () => {};
    enrichment = createEnrichment({
      http: [
        { name: "vendor", baseUrl: vendorUrl, apiKey: "k", maxAttempts: 2, sleep },
        { name: "backup", baseUrl: `${vendorUrl}/backup`, apiKey: "k", maxAttempts: 2, sleep },
      ],
      cache: databaseCache(db),
    });
  });
  afterAll(async () => {
    await new Promise((r) => vendor?.close(r));
    await db?.close();
    await dbHandle?.drop();
  });
  beforeEach(() => {
    requests = [];
    answers = [];
    clock = start;
  });

  const deps = () => ({ db, now, enrichment });
  /** A request; `contactId` or `contact` become the subject. */
  type Init = Omit<MessageInitShape<typeof EnrichContactRequestSchema>, "subject" | "$typeName"> & {
    contactId?: string;
    contact?: MessageInitShape<typeof ContactSchema>;
  };
  const enrich = ({ contactId, contact, ...rest }: Init) => {
    const req = create(RequestSchema, { requestId: randomUUID(), ...rest });
    if (contactId !== undefined) req.subject = { case: "contactId", value: contactId };
    else if (contact !== undefined) req.subject = { case: "contact", value: create(ContactSchema, contact) };
    return enrichContact(deps(), req);
  };

  async function storedContact(
    fields: Partial<{ email: string; phone: string; company: string; city: string; region: string }>,
  ) {
    const id = randomUUID();
    const em = db.fork();
    em.create(CrmContact, { id, attributes: [], createdAt: now(), updatedAt: now(), ...fields });
    await em.flush();
    return id;
  }

  it("normalises and fills from the built-in providers, and stores what it accepted", async () => {
    const id = await storedContact({ email: "Ada@Mail.Acme.co.uk", city: "Austin", region: "TX" });
    const res = await enrich({
      contactId: id,
      providers: ["company-domain", "phone", "geography"],
      rawPhone: "(512) 555-0143",
      fieldsWanted: [
        EnrichableField.COMPANY_DOMAIN,
        EnrichableField.COMPANY_NAME,
        EnrichableField.PHONE,
        EnrichableField.TIME_ZONE,
      ],
    });
    expect(res.emailDomain).toBe("acme.co.uk");
    expect(res.freeMail).toBe(false);
    expect(res.phoneE164).toBe("+15125550143");
    expect(res.phoneValid).toBe(true);
    expect(res.phoneCountryCode).toBe("US");
    expect(res.companyDomain).toBe("acme.co.uk");
    expect(
      res.fields.map((f) => [
        EnrichableFieldSchema.value[f.field]?.localName,
        f.value?.kind.value,
        f.source,
        f.confidence,
        f.applied,
      ]),
    ).toEqual([
      ["COMPANY_DOMAIN", "acme.co.uk", "company-domain", 0.9, true],
      // A guess below the default minimum confidence of 0.5: reported, not applied.
      ["COMPANY_NAME", "Acme", "company-domain", 0.3, false],
      ["PHONE", "+15125550143", "phone", 1, true],
      ["CITY", "Austin, TX", "geography", 0.95, false],
      ["TIME_ZONE", "America/Chicago", "geography", 0.95, true],
    ]);
    const row = await db.fork().findOneOrFail(CrmContact, { id });
    expect(row.phone).toBe("+15125550143");
    expect(row.company).toBe("");
    expect(row.attributes).toEqual([
      { key: "company_domain", value: { stringValue: "acme.co.uk" } },
      { key: "time_zone", value: { stringValue: "America/Chicago" } },
    ]);
    expect(res.contact?.phone).toBe("+15125550143");
  });

  it("flags free mail and takes no organisation from it", async () => {
    const res = await enrich({ contact: { email: "someone@gmail.com" }, providers: ["company-domain"] });
    expect(res.freeMail).toBe(true);
    expect(res.emailDomain).toBe("gmail.com");
    expect(res.fields).toEqual([]);
    expect(res.providerCalls.map((c) => c.outcome)).toEqual([ProviderOutcome.MISS]);
  });

  it("caches the HTTP provider's answer: a second call asks nothing, an expired one asks again", async () => {
    const vendorAnswer = { fields: [{ field: "job_title", value: "CTO", confidence: 0.9 }] };
    answers.push(answer(200, vendorAnswer));
    const contact = { email: "grace@navy.example", givenName: "Grace" };
    const first = await enrich({ contact, providers: ["vendor"] });
    expect(requests).toEqual([
      { email: "grace@navy.example", domain: "navy.example", given_name: "grace", country: "US" },
    ]);
    expect(first.providerCalls.map((c) => [c.outcome, c.cached])).toEqual([[ProviderOutcome.HIT, false]]);
    expect(first.contact?.title).toBe("CTO");

    clock = start + 10 * day;
    // The same person written differently normalises to the same query: a cache hit, no request.
    const second = await enrich({
      contact: { email: "GRACE@Navy.Example", givenName: " Grace" },
      providers: ["vendor"],
    });
    expect(requests).toHaveLength(1);
    expect(second.providerCalls.map((c) => [c.outcome, c.cached, c.latency])).toEqual([
      [ProviderOutcome.HIT, true, undefined],
    ]);
    expect(second.contact?.title).toBe("CTO");

    // Older than the allowed age: asked again, and the fresh answer replaces the cached one.
    answers.push(answer(200, { fields: [{ field: "job_title", value: "Rear Admiral", confidence: 0.9 }] }));
    const third = await enrich({ contact, providers: ["vendor"], maxCacheAge: durationFromMs(5 * day) });
    expect(requests).toHaveLength(2);
    expect(third.providerCalls[0]?.cached).toBe(false);
    expect(third.contact?.title).toBe("Rear Admiral");

    // Zero bypasses the cache.
    answers.push(answer(404, {}));
    const fourth = await enrich({ contact, providers: ["vendor"], maxCacheAge: durationFromMs(0) });
    expect(requests).toHaveLength(3);
    expect(fourth.providerCalls.map((c) => c.outcome)).toEqual([ProviderOutcome.MISS]);
    const rows = await db.fork().find(CrmEnrichmentCache, { provider: "vendor" });
    expect(rows).toHaveLength(1);
    expect(rows[0]?.fields).toEqual([]);
    expect(rows[0]?.emailKey).toMatch(/^[0-9a-f]{64}$/);
  });

  it("goes on to the next provider when one keeps failing, and caches no failure", async () => {
    answers.push(answer(500, {}), answer(500, {}));
    answers.push(answer(200, { fields: [{ field: "industry", value: "Healthcare", confidence: 0.8 }] }));
    const res = await enrich({
      contact: { email: "lin@care.example" },
      providers: ["vendor", "backup"],
      fieldsWanted: [EnrichableField.INDUSTRY],
    });
    expect(requests).toHaveLength(3);
    expect(res.providerCalls.map((c) => [c.provider, c.outcome, c.error])).toEqual([
      ["vendor", ProviderOutcome.ERROR, "HTTP 500 after 2 attempts"],
      ["backup", ProviderOutcome.HIT, ""],
    ]);
    expect(res.fields.map((f) => [f.source, f.applied])).toEqual([["backup", true]]);
    expect(
      await db.fork().count(CrmEnrichmentCache, { provider: "vendor", emailKey: emailKey("lin@care.example") }),
    ).toBe(0);
    expect(
      await db.fork().count(CrmEnrichmentCache, { provider: "backup", emailKey: emailKey("lin@care.example") }),
    ).toBe(1);
  });

  it("fills only empty fields unless asked to overwrite, and reports the previous value", async () => {
    const id = await storedContact({ email: "max@acme.example", company: "ACME Inc" });
    answers.push(answer(200, { fields: [{ field: "company_name", value: "Acme Incorporated", confidence: 0.95 }] }));
    const kept = await enrich({ contactId: id, providers: ["vendor"], fieldsWanted: [EnrichableField.COMPANY_NAME] });
    // The field already had a value: nothing is wanted, so the vendor is not even asked.
    expect(requests).toHaveLength(0);
    expect(kept.providerCalls.map((c) => c.outcome)).toEqual([ProviderOutcome.SKIPPED]);
    const replaced = await enrich({
      contactId: id,
      providers: ["vendor"],
      fieldsWanted: [EnrichableField.COMPANY_NAME],
      overwriteExisting: true,
    });
    expect(replaced.fields.map((f) => [f.value?.kind.value, f.previousValue?.kind.value, f.applied])).toEqual([
      ["Acme Incorporated", "ACME Inc", true],
    ]);
    expect((await db.fork().findOneOrFail(CrmContact, { id })).company).toBe("Acme Incorporated");
  });

  it("refuses bad input naming the field, and writes nothing", async () => {
    const id = await storedContact({ email: "bad@input.example" });
    const cases: Array<[Init, string]> = [
      [{ contactId: id, providers: ["vendor", "nope"] }, "providers[1]"],
      [{ contactId: id, defaultCountryCode: "ZZ" }, "default_country_code"],
      [{ contactId: id, minConfidence: 1.5 }, "min_confidence"],
      [{ contact: { email: "not an email" } }, "contact.email"],
      [{ contactId: "not-a-uuid" }, "contact_id"],
      [{}, "subject"],
    ];
    for (const [init, field] of cases) {
      const err = await enrich(init).catch((e: unknown) => e);
      expect(err, field).toBeInstanceOf(Error);
      expect(String((err as Error).message), field).toContain(field);
    }
    const invalid = await enrich({ contactId: id, providers: ["nope"] }).catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(InvalidInputError);
    expect((invalid as InvalidInputError).field).toBe("providers[0]");
    await expect(enrich({ contactId: randomUUID() })).rejects.toBeInstanceOf(NotFoundError);
    expect(requests).toHaveLength(0);
    const row = await db.fork().findOneOrFail(CrmContact, { id });
    expect(row.attributes).toEqual([]);
    expect(row.updatedAt.getTime()).toBe(start);
  });
});
