/**
 * The directory end to end on the three real servers: the technical server serves the built site,
 * takes page-view beacons and enquiry forms, and an enquiry reaches CRM (on the operations server)
 * as a contact with its city and the visitor's earlier page views stitched to it, and Data as
 * conversions per location. Bad beacons are refused and store nothing.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { load } from "cheerio";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildPhase, type BuildSiteResponse, DirectoryService } from "../gen/mesh/directory/v1/directory_service_pb.ts";
import { stableUuid } from "../lib/workflow/engine.ts";
import { type Harness, startHarness } from "./support/harness.ts";

describe("directory site and visitor loop", () => {
  const siteDir = join(mkdtempSync(join(tmpdir(), "mesh-site-")), "site");
  let h: Harness;
  let db: pg.Client;
  let base = "";
  const progress: BuildSiteResponse[] = [];

  beforeAll(async () => {
    h = await startHarness({ env: { MESH_SITE_DIR: siteDir } });
    base = h.urls.technical;
    for await (const p of h.client("technical", DirectoryService).buildSite({ origin: base }, { timeoutMs: 120_000 })) {
      progress.push(p);
    }
    db = new pg.Client({ connectionString: h.databaseUrl });
    await db.connect();
  }, 120_000);
  afterAll(async () => {
    await db?.end();
    await h?.close();
    rmSync(join(siteDir, ".."), { recursive: true, force: true });
  });

  const build = async () => {
    const updates: BuildSiteResponse[] = [];
    for await (const p of h.client("technical", DirectoryService).buildSite({ origin: base }, { timeoutMs: 120_000 })) {
      updates.push(p);
    }
    return updates.at(-1)?.summary;
  };
  /** loc → lastmod of a sitemap. */
  const lastmods = (xml: string): Map<string, string> =>
    new Map(
      [...xml.matchAll(/<loc>([^<]+)<\/loc>(?:<lastmod>([^<]+)<\/lastmod>)?/g)].map((m) => [m[1] ?? "", m[2] ?? ""]),
    );
  const count = async (sql: string, params: unknown[] = []): Promise<number> =>
    Number((await db.query<{ n: string }>(sql, params)).rows[0]?.n);
  const beacon = (body: unknown, raw?: string) =>
    fetch(`${base}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: raw ?? JSON.stringify(body),
    });
  const view = (visitor: string, eventId = randomUUID()) => ({
    type: "page_view",
    event_id: eventId,
    visitor_id: visitor,
    url: `${base}/tx/austin-tx/`,
    page: "city",
    city: "austin-tx",
    referrer: "",
  });

  it("builds the site through DirectoryService, streaming its progress", () => {
    expect(progress[0]?.phase).toBe(BuildPhase.SEEDING);
    expect(progress.some((p) => p.phase === BuildPhase.WRITING && p.done === p.total)).toBe(true);
    const last = progress.at(-1);
    expect(last?.phase).toBe(BuildPhase.DONE);
    expect(last?.summary).toMatchObject({
      cityPages: 977,
      statePages: 51,
      communities: 4757,
      jsonLdErrors: 0,
      filesRemoved: 0,
      pagesRendered: 1030,
      pagesReused: 0,
      copySource: "content.meta_tags",
      sitemapFilesChanged: 1,
    });
    // 1,030 pages, sitemap.xml, robots.txt and 36 community images (12 illustrations × 3 widths).
    expect((last?.summary?.filesWritten ?? 0) + (last?.summary?.filesUnchanged ?? 0)).toBe(1068);
  });

  it("rebuilds only the pages a changed community affects", async () => {
    const community = await db.query<{ id: string; city_id: string }>(
      "select id, city_id from technical.directory_community where city_id = 'austin-tx' order by id limit 1",
    );
    const { id } = community.rows[0] ?? { id: "" };
    await db.query("update technical.directory_community set name = 'Renamed Gardens (sample)' where id = $1", [id]);
    const sitemapBefore = lastmods(await (await fetch(`${base}/sitemap.xml`)).text());
    const summary = await build();
    // A name appears on its city page only (anchors and JSON-LD included); counts did not change,
    // so no state hub, neighbour or index page is rendered; the sitemap moves that page's lastmod.
    expect(summary).toMatchObject({ pagesRendered: 1, pagesReused: 1029, sitemapFilesChanged: 1 });
    expect(summary?.writtenPaths).toEqual(["/tx/austin-tx/index.html", "/sitemap.xml"]);
    expect(summary?.filesUnchanged).toBe(1066);
    const page = await (await fetch(`${base}/tx/austin-tx/`)).text();
    expect(page).toContain("Renamed Gardens (sample)");
    const sitemapAfter = lastmods(await (await fetch(`${base}/sitemap.xml`)).text());
    const moved = [...sitemapAfter].filter(([loc, at]) => sitemapBefore.get(loc) !== at).map(([loc]) => loc);
    expect(moved).toEqual([`${base}/tx/austin-tx/`]);

    // Nothing changed: nothing is rendered or written.
    expect(await build()).toMatchObject({ pagesRendered: 0, filesWritten: 0, filesRemoved: 0 });
  });

  it("rebuilds the city, its state hub, the index and the neighbours that link to it when a community goes", async () => {
    // City pages compare prices with the state's median; pick a community whose removal keeps it,
    // so the other Texas pages are not affected.
    const tx = await db.query<{ id: string; city_id: string; lowest: number }>(
      "select id, city_id, (select min((p->>'minMonthlyUsd')::int) from jsonb_array_elements(prices) p) as lowest from technical.directory_community where state_code = 'TX'",
    );
    const median = (xs: number[]): number => {
      const s = [...xs].sort((a, b) => a - b);
      const m = s.length >> 1;
      return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
    };
    const all = tx.rows.map((r) => r.lowest);
    const gone = tx.rows.find(
      (r, i) => r.city_id === "austin-tx" && median(all.filter((_, j) => j !== i)) === median(all),
    );
    expect(gone).toBeDefined();
    await db.query("delete from technical.directory_community where id = $1", [gone?.id]);
    // Cities listing Austin among their nearby cities show its community count.
    const linking = await db.query<{ id: string }>(
      'select id from technical.directory_city where neighbours @> \'[{"id":"austin-tx"}]\'::jsonb',
    );
    expect(linking.rows.length).toBeGreaterThan(0);
    const summary = await build();
    const expected = [
      "/tx/austin-tx/index.html",
      ...linking.rows.map((r) => `/${r.id.slice(-2)}/${r.id}/index.html`),
      "/tx/index.html",
      "/index.html",
      "/sitemap.xml",
    ];
    expect(new Set(summary?.writtenPaths)).toEqual(new Set(expected));
    expect(summary?.pagesRendered).toBe(expected.length - 1);
    expect(summary?.communities).toBe(4756);
  });

  it("reports engagement per location and lists locations that underperform", async () => {
    const now = Date.now();
    const range = {
      start: timestampFromDate(new Date(now - 3600_000)),
      end: timestampFromDate(new Date(now + 60_000)),
    };
    // El Paso gets 40 views and no enquiry while the directory converts well elsewhere.
    for (let i = 0; i < 40; i++)
      await beacon({ ...view(`v-elpaso-${i}-xxxx`), city: "el-paso-tx", url: `${base}/tx/el-paso-tx/` });
    for (let i = 0; i < 6; i++) {
      const visitor = `v-dallas-${i}-xxxx`;
      await beacon({ ...view(visitor), city: "dallas-tx", url: `${base}/tx/dallas-tx/` });
      await fetch(`${base}/enquiry`, {
        method: "POST",
        body: new URLSearchParams({
          city: "dallas-tx",
          name: `D ${i}`,
          email: `d${i}@example.com`,
          visitor_id: visitor,
        }),
        redirect: "manual",
      });
    }
    const res = await h.client("technical", DirectoryService).getLocationEngagement({ timeRange: range, minViews: 20 });
    const elPaso = res.locations.find((l) => l.locationKey === "el-paso-tx");
    expect(elPaso).toMatchObject({ views: 40n, enquiries: 0n, city: "El Paso", region: "TX", underperforming: true });
    expect(res.locations.find((l) => l.locationKey === "dallas-tx")).toMatchObject({
      views: 6n,
      enquiries: 6n,
      underperforming: false,
    });
    expect(res.underperforming.map((l) => l.locationKey)).toContain("el-paso-tx");
    expect(res.overallRate).toBeGreaterThan(0);
  });

  it("serves the built site: pages, sitemap and robots.txt, and nothing outside it", async () => {
    const page = await fetch(`${base}/tx/austin-tx/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-encoding")).toBe("gzip");
    const $ = load(await page.text());
    expect($("h1").text()).toBe("Senior living in Austin, TX");
    expect($('link[rel="canonical"]').attr("href")).toBe(`${base}/tx/austin-tx/`);
    expect((await fetch(`${base}/sitemap.xml`)).headers.get("content-type")).toBe("application/xml; charset=utf-8");
    expect(await (await fetch(`${base}/robots.txt`)).text()).toContain(`Sitemap: ${base}/sitemap.xml`);
    expect((await fetch(`${base}/tx/nowhere-tx/`)).status).toBe(404);
    const bare = await fetch(`${base}/tx/austin-tx?from=ad`, { redirect: "manual" });
    expect([bare.status, bare.headers.get("location")]).toEqual([301, "/tx/austin-tx/?from=ad"]);
    const identity = await fetch(`${base}/tx/austin-tx/`, { headers: { "accept-encoding": "gzip;q=0, br" } });
    expect(identity.headers.get("content-encoding")).toBeNull();
    expect((await fetch(`${base}/%2e%2e/%2e%2e/etc/passwd`)).status).toBe(404);
    const etag = page.headers.get("etag") ?? "";
    expect((await fetch(`${base}/tx/austin-tx/`, { headers: { "if-none-match": etag } })).status).toBe(304);
    // Card images: WebP, not gzipped again, cacheable for good (their names are content hashes).
    const src = $(".list img").first().attr("src") ?? "";
    expect(src).toMatch(/^\/img\/[0-9a-f]{16}-160\.webp$/);
    const image = await fetch(`${base}${src}`);
    expect(image.status).toBe(200);
    expect(image.headers.get("content-type")).toBe("image/webp");
    expect(image.headers.get("content-encoding")).toBeNull();
    expect(image.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(
      Buffer.from(await image.arrayBuffer())
        .subarray(8, 12)
        .toString("latin1"),
    ).toBe("WEBP");
  });

  it("turns an enquiry into a CRM contact with its city and the visitor's earlier page views", async () => {
    const visitor = `v-${randomUUID()}`;
    const first = view(visitor);
    expect((await beacon(first)).status).toBe(204);
    expect((await beacon(view(visitor))).status).toBe(204);
    expect((await beacon(first)).status).toBe(204); // a repeated beacon is stored once
    const form = new URLSearchParams({
      city: "austin-tx",
      name: "Mary Jones",
      email: "Mary.Jones@example.com",
      phone: "(512) 555-0143",
      community: "",
      message: "Memory care in spring?",
      visitor_id: visitor,
      event_id: randomUUID(),
    });
    const res = await fetch(`${base}/enquiry`, {
      method: "POST",
      body: form,
      redirect: "manual",
      headers: { referer: `${base}/tx/austin-tx/` },
    });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/enquiry/thanks/?city=austin-tx");
    const contact = await db.query<{ id: string; city: string; region: string; phone: string }>(
      "select id, city, region, phone from operations.crm_contact where email = $1",
      ["mary.jones@example.com"],
    );
    expect(contact.rows[0]).toMatchObject({ city: "Austin", region: "TX", phone: "+15125550143" });
    const id = contact.rows[0]?.id;
    expect(
      await count("select count(*) as n from operations.crm_interaction where anonymous_id = $1 and contact_id = $2", [
        visitor,
        id,
      ]),
    ).toBe(3); // two page views and the enquiry
    const byName = async (name: string) =>
      count(
        `select count(*) as n from technical.conversion_event e join technical.conversion_definition d on d.id = e.definition_id
         where d.name = $1 and e.location_key = 'austin-tx' and (e.anonymous_id = $2 or e.contact_id = $3)`,
        [name, visitor, id],
      );
    expect(await byName("page_view")).toBe(2);
    expect(await byName("enquiry")).toBe(1);
  });

  it("records an enquiry sent again once, and still counts it when only CRM had taken it", async () => {
    const visitor = `v-${randomUUID()}`;
    const eventId = randomUUID();
    const send = () =>
      fetch(`${base}/enquiry`, {
        method: "POST",
        body: new URLSearchParams({
          city: "plano-tx",
          name: "Ida Wells",
          email: "ida.wells@example.org",
          visitor_id: visitor,
          event_id: eventId,
        }),
        redirect: "manual",
      });
    const interactions = () =>
      count("select count(*) as n from operations.crm_interaction where event_id = $1", [eventId]);
    const enquiries = () =>
      count(
        `select count(*) as n from technical.conversion_event e join technical.conversion_definition d on d.id = e.definition_id
         where d.name = 'enquiry' and e.event_id = $1 and e.location_key = 'plano-tx'`,
        [eventId],
      );
    expect((await send()).status).toBe(303);
    expect((await send()).status).toBe(303);
    expect([await interactions(), await enquiries()]).toEqual([1, 1]);
    // As if the first post had failed after CRM took the enquiry and before Data recorded it.
    await db.query("delete from technical.conversion_event where event_id = $1", [eventId]);
    await db.query("delete from technical.idempotency_record where id like $1", [
      `%:${stableUuid(`directory.enquiry-conversion.${eventId}`)}`,
    ]);
    expect(await enquiries()).toBe(0);
    const again = await send();
    expect(again.status).toBe(303);
    expect(again.headers.get("location")).toBe("/enquiry/thanks/?city=plano-tx");
    expect([await interactions(), await enquiries()]).toEqual([1, 1]);
  });

  it("takes an enquiry posted without JavaScript (no visitor or event id)", async () => {
    const res = await fetch(`${base}/enquiry`, {
      method: "POST",
      body: new URLSearchParams({ city: "waco-tx", name: "Ann Lee", email: "ann.lee@example.org" }),
      redirect: "manual",
    });
    expect(res.status).toBe(303);
    expect(
      await count(
        "select count(*) as n from operations.crm_contact where email = 'ann.lee@example.org' and city = 'Waco'",
      ),
    ).toBe(1);
    const thanks = await fetch(`${base}/enquiry/thanks/`);
    expect(load(await thanks.text())("h1").text()).toBe("Thank you");
  });

  it("refuses malformed or oversized beacons and bad forms, storing nothing", async () => {
    const views = () => count("select count(*) as n from operations.crm_interaction");
    const conversions = () => count("select count(*) as n from technical.conversion_event");
    const before = [await views(), await conversions()];
    const bad = await beacon(undefined, "{not json");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: "body: must be JSON" });
    expect((await beacon({ ...view("v-12345678"), event_id: "" })).status).toBe(400);
    expect((await beacon({ ...view("v-12345678"), city: "atlantis-xx" })).status).toBe(400);
    expect((await beacon({ ...view("v-12345678"), url: "javascript:alert(1)" })).status).toBe(400);
    expect((await beacon({ ...view("v-12345678"), padding: "x".repeat(5000) })).status).toBe(413);
    const form = await fetch(`${base}/enquiry`, {
      method: "POST",
      body: new URLSearchParams({ city: "austin-tx", name: "X", email: "not-an-email" }),
      redirect: "manual",
    });
    expect(form.status).toBe(400);
    expect(await form.json()).toEqual({ error: "email: not an email address" });
    expect([await views(), await conversions()]).toEqual(before);
  });

  it("answers a browser's refused enquiry with the form again, its values kept, and stores nothing", async () => {
    const contacts = () => count("select count(*) as n from operations.crm_contact");
    const before = await contacts();
    const post = (fields: Record<string, string>) =>
      fetch(`${base}/enquiry`, {
        method: "POST",
        headers: { accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8" },
        body: new URLSearchParams(fields),
        redirect: "manual",
      });
    const res = await post({
      city: "austin-tx",
      name: "Mia <Hale>",
      email: "not-an-email",
      message: 'Rooms "with" a view?',
      community: "any-community",
      visitor_id: "v-refused-1",
      event_id: "bad id!",
    });
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const $ = load(await res.text());
    expect($("h1").text()).toBe("Please check your enquiry");
    expect($("[role=alert]").text()).toBe("Email: not an email address.");
    expect($('meta[name="robots"]').attr("content")).toBe("noindex");
    expect($('link[rel="canonical"]')).toHaveLength(0);
    expect($("script")).toHaveLength(0); // no beacon: this is not a page view
    // The values come back escaped, the invalid event id does not, the email is marked.
    const form = $("form[data-enquiry]");
    expect(form.attr("action")).toBe("/enquiry");
    const value = (name: string) => form.find(`[name="${name}"]`).val();
    expect([value("city"), value("name"), value("email"), value("community"), value("visitor_id")]).toEqual([
      "austin-tx",
      "Mia <Hale>",
      "not-an-email",
      "any-community",
      "v-refused-1",
    ]);
    expect(value("event_id")).toBe("");
    expect(form.find("textarea").text()).toBe('Rooms "with" a view?');
    expect(form.find("#enq-email").attr("aria-invalid")).toBe("true");
    expect(form.find("[aria-invalid]")).toHaveLength(1);
    expect($('a[href="/tx/austin-tx/"]').text()).toBe("Back to Austin");

    // An unknown city has no form to show again: the page says so and links home.
    const unknown = await post({ city: "atlantis-xx", name: "X", email: "x@example.org" });
    expect(unknown.status).toBe(400);
    const u = load(await unknown.text());
    expect(u("[role=alert]").text()).toBe("City: unknown city.");
    expect(u("form")).toHaveLength(0);
    expect(u('a[href="/"]').last().text()).toBe("Home");
    expect(await contacts()).toBe(before);
  });
});
