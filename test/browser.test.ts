/**
 * The directory site in a real headless Chromium against the three real servers: a visitor with
 * JavaScript browses index → state → city (the inline beacon reports each view under one anonymous
 * visitor id) and sends the enquiry form, which lands on the thank-you page and reaches CRM as a
 * contact with its city and those earlier views stitched to it, and Data as an enquiry conversion
 * for the city; the same form works without JavaScript and then no beacon is sent. At desktop and
 * mobile widths the index, a state page and a city page are screenshotted to
 * artifacts/screenshots/ and checked: no horizontal overflow, the h1 in the first viewport,
 * legible text, and the city page's CSS-only filters and enquiry form visible and usable.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { type Browser, type BrowserContext, chromium, type Page, type Request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InteractionType } from "../gen/mesh/crm/v1/crm_service_pb.ts";
import { DirectoryService } from "../gen/mesh/directory/v1/directory_service_pb.ts";
import { eventually } from "./support/backbone.ts";
import { type Harness, root, startHarness } from "./support/harness.ts";

const chromiumPath = "/usr/bin/chromium";
const screenshotDir = join(root, "artifacts", "screenshots");

/** Runs `expression` in the page and returns its (JSON-serialisable) value. */
const inPage = <T>(page: Page, expression: string): Promise<T> => page.evaluate<T>(expression);

/** Pathname of a request, for telling beacons and form posts apart. */
const pathOf = (r: Request): string => new URL(r.url()).pathname;

describe.skipIf(!existsSync(chromiumPath))("directory site in headless Chromium", () => {
  const siteDir = join(mkdtempSync(join(tmpdir(), "mesh-site-")), "site");
  let h: Harness;
  let db: pg.Client;
  let browser: Browser;
  let base = "";

  beforeAll(async () => {
    h = await startHarness({ env: { MESH_SITE_DIR: siteDir } });
    base = h.urls.technical;
    try {
      for await (const _ of h
        .client("technical", DirectoryService)
        .buildSite({ origin: base }, { timeoutMs: 120_000 })) {
        // progress is checked by directory.test.ts
      }
    } catch (err) {
      throw new Error(`BuildSite failed: ${String(err)}\n${h.logs.technical}`);
    }
    db = new pg.Client({ connectionString: h.databaseUrl });
    await db.connect();
    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
    mkdirSync(screenshotDir, { recursive: true });
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
    await db?.end();
    await h?.close();
    rmSync(join(siteDir, ".."), { recursive: true, force: true });
  });

  const count = async (sql: string, params: unknown[] = []): Promise<number> =>
    Number((await db.query<{ n: string }>(sql, params)).rows[0]?.n);
  const contactOf = async (email: string) =>
    (
      await db.query<{ id: string; city: string; region: string; phone: string; source: string }>(
        "select id, city, region, phone, source from operations.crm_contact where email = $1",
        [email],
      )
    ).rows;
  const interactionsOf = async (visitor: string) =>
    (
      await db.query<{ type: number; url: string; contact_id: string | null }>(
        "select type, url, contact_id from operations.crm_interaction where anonymous_id = $1 order by occurred_at",
        [visitor],
      )
    ).rows;
  const conversions = (name: string, where: string, params: unknown[]) =>
    count(
      `select count(*) as n from technical.conversion_event e join technical.conversion_definition d on d.id = e.definition_id
       where d.name = $1 and ${where}`,
      [name, ...params],
    );
  /** Records the requests a context makes. */
  const recordRequests = (context: BrowserContext): Request[] => {
    const seen: Request[] = [];
    context.on("request", (r) => seen.push(r));
    return seen;
  };

  it("follows index → state → city with JavaScript and turns the enquiry into a stitched CRM contact", async () => {
    const context = await browser.newContext();
    try {
      const requests = recordRequests(context);
      const page = await context.newPage();
      await page.goto(`${base}/`);
      expect(await page.locator("h1").textContent()).toBe("Senior living across the United States");
      await page.getByRole("link", { name: "Texas", exact: true }).click();
      await page.waitForURL(`${base}/tx/`);
      expect(await page.locator("h1").textContent()).toBe("Senior living in Texas");
      await page.getByRole("link", { name: "Austin", exact: true }).click();
      await page.waitForURL(`${base}/tx/austin-tx/`);
      expect(await page.locator("h1").textContent()).toBe("Senior living in Austin, TX");

      // One anonymous visitor id, kept in localStorage across the three pages.
      const visitor = await inPage<string | null>(page, `localStorage.getItem("mesh_vid")`);
      expect(visitor).toMatch(/^[A-Za-z0-9_-]{8,128}$/);
      const urls = [`${base}/`, `${base}/tx/`, `${base}/tx/austin-tx/`];
      // The beacons reach the server asynchronously (sendBeacon): wait until all three views are stored.
      const before = await eventually(async () => {
        const rows = await interactionsOf(visitor as string);
        return rows.length >= 3 ? rows : undefined;
      });
      expect([...before].sort((a, b) => a.url.localeCompare(b.url))).toEqual(
        urls.map((url) => ({ type: InteractionType.PAGE_VIEW, url, contact_id: null })),
      );
      expect(requests.filter((r) => r.method() === "POST" && pathOf(r) === "/v1/events")).toHaveLength(3);

      await page.getByLabel("Your name").fill("Rose Alvarez");
      await page.getByLabel("Email").fill("Rose.Alvarez@Example.com");
      await page.getByLabel("Phone (optional)").fill("(512) 555-0199");
      const community = await page.locator("#enq-community option").nth(1).getAttribute("value");
      await page.getByLabel("Community").selectOption(community ?? "");
      await page.getByLabel("Question (optional)").fill("Is there a waiting list for assisted living?");
      await page.getByRole("button", { name: "Send enquiry" }).click();
      await page.waitForURL(`${base}/enquiry/thanks/?city=austin-tx`);
      expect(await page.locator("h1").textContent()).toBe("Thank you");

      // The beacon filled the form's hidden ids on submit.
      const post = requests.find((r) => r.method() === "POST" && pathOf(r) === "/enquiry");
      const sent = new URLSearchParams(post?.postData() ?? "");
      expect(sent.get("visitor_id")).toBe(visitor);
      expect(sent.get("event_id")).toMatch(/^[A-Za-z0-9_-]{8,128}$/);
      expect(sent.get("city")).toBe("austin-tx");

      const contacts = await contactOf("rose.alvarez@example.com");
      expect(contacts).toHaveLength(1);
      expect(contacts[0]).toMatchObject({ city: "Austin", region: "TX", phone: "+15125550199", source: "directory" });
      const id = contacts[0]?.id;
      const after = await interactionsOf(visitor as string);
      for (const url of urls) {
        expect(after).toContainEqual({ type: InteractionType.PAGE_VIEW, url, contact_id: id });
      }
      expect(after.filter((r) => r.type === InteractionType.ENQUIRY)).toEqual([
        { type: InteractionType.ENQUIRY, url: `${base}/tx/austin-tx/`, contact_id: id },
      ]);
      expect(
        await conversions("enquiry", "e.location_key = 'austin-tx' and e.anonymous_id = $2 and e.contact_id = $3", [
          visitor,
          id,
        ]),
      ).toBe(1);
      expect(await conversions("page_view", "e.anonymous_id = $2 and e.page_url = any($3)", [visitor, urls])).toBe(3);
      expect(
        await conversions("page_view", "e.anonymous_id = $2 and e.location_key = 'austin-tx'", [visitor]),
      ).toBeGreaterThanOrEqual(1);
    } finally {
      await context.close();
    }
  });

  it("takes the enquiry as a plain form POST without JavaScript, and sends no beacon", async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    try {
      const requests = recordRequests(context);
      const page = await context.newPage();
      await page.goto(`${base}/tx/waco-tx/`);
      expect(await page.locator("h1").textContent()).toBe("Senior living in Waco, TX");
      await page.getByLabel("Your name").fill("Walter Brooks");
      await page.getByLabel("Email").fill("walter.brooks@example.org");
      await page.getByRole("button", { name: "Send enquiry" }).click();
      await page.waitForURL(`${base}/enquiry/thanks/?city=waco-tx`);
      expect(await page.locator("h1").textContent()).toBe("Thank you");

      // What the browser sent: the documents and the form post (besides the cards' images), no
      // beacon; the hidden ids stay empty.
      expect(requests.filter((r) => pathOf(r) === "/v1/events")).toEqual([]);
      const images = requests.filter((r) => r.resourceType() === "image").map(pathOf);
      expect(images.length).toBeGreaterThan(0);
      for (const path of images) expect(path).toMatch(/^\/img\/[0-9a-f]{16}-\d+\.webp$/);
      const documents = requests.filter((r) => r.resourceType() !== "image");
      expect(documents.map((r) => `${r.method()} ${pathOf(r)}`)).toEqual([
        "GET /tx/waco-tx/",
        "POST /enquiry",
        "GET /enquiry/thanks/",
      ]);
      const sent = new URLSearchParams(documents[1]?.postData() ?? "");
      expect([sent.get("visitor_id"), sent.get("event_id"), sent.get("city")]).toEqual(["", "", "waco-tx"]);

      const contacts = await contactOf("walter.brooks@example.org");
      expect(contacts).toHaveLength(1);
      expect(contacts[0]).toMatchObject({ city: "Waco", region: "TX", source: "directory" });
      const id = contacts[0]?.id;
      const rows = await db.query<{ type: number; anonymous_id: string | null }>(
        "select type, anonymous_id from operations.crm_interaction where contact_id = $1",
        [id],
      );
      // Only the enquiry itself: no anonymous id, so no page views to stitch.
      expect(rows.rows).toHaveLength(1);
      expect(rows.rows[0]?.type).toBe(InteractionType.ENQUIRY);
      expect(rows.rows[0]?.anonymous_id ?? "").toBe("");
      expect(
        await conversions("enquiry", "e.location_key = 'waco-tx' and e.contact_id = $2 and e.anonymous_id = ''", [id]),
      ).toBe(1);
    } finally {
      await context.close();
    }
  });

  it("without JavaScript, a refused enquiry comes back as the form with the visitor's values and the field at fault", async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    try {
      const page = await context.newPage();
      await page.goto(`${base}/tx/tyler-tx/`);
      await page.getByLabel("Your name").fill("Rosa Ortiz");
      await page.getByLabel("Email").fill("rosa.ortiz@example.org");
      // A telephone field has no format the browser checks: the server is the one to refuse it.
      await page.getByLabel("Phone (optional)").fill("call me");
      await page.getByLabel("Question (optional)").fill("Is there a garden?");
      const community = await page.locator("#enq-community option").nth(1).getAttribute("value");
      await page.getByLabel("Community").selectOption(community ?? "");
      const [refused] = await Promise.all([
        page.waitForResponse((r) => pathOf(r.request()) === "/enquiry"),
        page.getByRole("button", { name: "Send enquiry" }).click(),
      ]);
      expect(refused.status()).toBe(400);
      expect(await page.locator("h1").textContent()).toBe("Please check your enquiry");
      expect(await page.getByRole("alert").textContent()).toBe("Phone: not a phone number.");
      // Nothing typed is lost, the field at fault is marked and focused, and the page is not indexed.
      expect(await page.getByLabel("Your name").inputValue()).toBe("Rosa Ortiz");
      expect(await page.getByLabel("Email").inputValue()).toBe("rosa.ortiz@example.org");
      expect(await page.getByLabel("Question (optional)").inputValue()).toBe("Is there a garden?");
      expect(await page.getByLabel("Phone (optional)").getAttribute("aria-invalid")).toBe("true");
      expect(await page.getByLabel("Phone (optional)").getAttribute("aria-describedby")).toBe("enq-error");
      expect(await inPage<string>(page, "document.activeElement.id")).toBe("enq-phone");
      expect(await page.locator('meta[name="robots"]').getAttribute("content")).toBe("noindex");
      expect(await page.locator('a[href="/tx/tyler-tx/"]').textContent()).toBe("Back to Tyler");
      expect(await contactOf("rosa.ortiz@example.org")).toHaveLength(0);

      await page.getByLabel("Phone (optional)").fill("(903) 555-0142");
      await page.getByRole("button", { name: "Send enquiry" }).click();
      await page.waitForURL(`${base}/enquiry/thanks/?city=tyler-tx`);
      const contacts = await contactOf("rosa.ortiz@example.org");
      expect(contacts).toHaveLength(1);
      expect(contacts[0]).toMatchObject({ city: "Tyler", region: "TX", phone: "+19035550142" });
      const rows = await db.query<{ properties: unknown }>(
        "select properties from operations.crm_interaction where contact_id = $1",
        [contacts[0]?.id],
      );
      expect(JSON.stringify(rows.rows[0]?.properties)).toContain(community ?? "?");
    } finally {
      await context.close();
    }
  });

  const viewports = [
    { label: "desktop", width: 1366, height: 900, mobile: false },
    { label: "mobile", width: 390, height: 844, mobile: true },
  ];
  const pages = [
    { name: "index", path: "/", h1: "Senior living across the United States" },
    { name: "state", path: "/tx/", h1: "Senior living in Texas" },
    { name: "city", path: "/tx/austin-tx/", h1: "Senior living in Austin, TX" },
  ];

  describe.each(viewports)("at $label width ($width px)", (vp) => {
    let context: BrowserContext;
    let page: Page;
    beforeAll(async () => {
      context = await browser.newContext({
        viewport: { width: vp.width, height: vp.height },
        ...(vp.mobile ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}),
      });
      page = await context.newPage();
    });
    afterAll(async () => {
      await context?.close();
    });
    /** A tap on mobile, a click on desktop. */
    const press = (selector: string) => (vp.mobile ? page.tap(selector) : page.click(selector));
    const cards = () =>
      inPage<Array<{ classes: string[]; visible: boolean }>>(
        page,
        `[...document.querySelectorAll(".list > li.c")].map((el) => ({ classes: [...el.classList], visible: el.checkVisibility() }))`,
      );

    it.each(pages)(
      "$name page: screenshot, no horizontal overflow, h1 in the first viewport, legible text",
      async (p) => {
        await page.goto(`${base}${p.path}`);
        // Cards off screen are skipped by `content-visibility: auto` until a reader scrolls to them;
        // a full-page screenshot does not scroll, so render them all for it (and for the checks).
        // Likewise lazy images would stay placeholders: load them before the screenshot.
        await page.addStyleTag({ content: ".list>li{content-visibility:visible}" });
        await inPage(page, `document.querySelectorAll("img[loading=lazy]").forEach((i) => { i.loading = "eager"; })`);
        await expect.poll(() => inPage<boolean>(page, `[...document.images].every((i) => i.complete)`)).toBe(true);
        await page.screenshot({ path: join(screenshotDir, `${p.name}-${vp.width}.png`), fullPage: true });
        // Against the configured width: a mobile browser widens its layout viewport (and zooms out)
        // to fit content that overflows, so innerWidth alone would follow the overflow.
        const size = await inPage<{ scrollWidth: number; innerWidth: number; wider: string[] }>(
          page,
          `({
          scrollWidth: document.documentElement.scrollWidth,
          innerWidth: window.innerWidth,
          wider: [...document.querySelectorAll("body *")]
            .filter((el) => el.getBoundingClientRect().right > ${vp.width} + 0.5)
            .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " right=" + el.getBoundingClientRect().right + " width=" + el.getBoundingClientRect().width),
        })`,
        );
        expect(size.wider, "elements past the right edge").toEqual([]);
        expect(size.scrollWidth, "horizontal overflow").toBeLessThanOrEqual(vp.width);
        expect(size.innerWidth).toBe(vp.width);

        const h1 = page.locator("h1");
        expect(await h1.textContent()).toBe(p.h1);
        expect(await h1.isVisible()).toBe(true);
        const box = await h1.boundingBox();
        expect(box).not.toBeNull();
        if (box) {
          expect(box.x).toBeGreaterThanOrEqual(0);
          expect(box.y).toBeGreaterThanOrEqual(0);
          expect(box.x + box.width).toBeLessThanOrEqual(vp.width);
          expect(box.y + box.height, "h1 below the first viewport").toBeLessThanOrEqual(vp.height);
        }

        if (vp.mobile) {
          // Body text and paragraphs at 16 px or more; form fields too (smaller makes iOS zoom in on focus).
          const small = await inPage<Array<{ el: string; px: number }>>(
            page,
            `[document.body, ...document.querySelectorAll("main p, .enquiry input:not([type=hidden]), .enquiry select, .enquiry textarea, .enquiry label, .enquiry button")]
            .map((el) => ({ el: el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + (el.id ? "#" + el.id : ""), px: parseFloat(getComputedStyle(el).fontSize) }))
            .filter((x) => x.px < 16)
            .filter((x, i, all) => all.findIndex((y) => y.el === x.el && y.px === x.px) === i)`,
          );
          expect(small, "text under 16px").toEqual([]);
        }
      },
    );

    it("city page: each card's image loads the variant its size and pixel density need", async () => {
      await page.goto(`${base}/tx/austin-tx/`);
      const img = page.locator(".list img").first();
      await img.scrollIntoViewIfNeeded();
      const first = `document.querySelector(".list img")`;
      await expect.poll(() => inPage<boolean>(page, `${first}.complete`)).toBe(true);
      const shown = await inPage<{ width: number; height: number; natural: number; src: string }>(
        page,
        `(() => { const i = ${first}; const r = i.getBoundingClientRect();
          return { width: r.width, height: r.height, natural: i.naturalWidth, src: i.currentSrc }; })()`,
      );
      // 128 px wide on desktop (1×: the 160 px file), 96 px on a phone (2×: the 320 px file).
      expect(shown.width).toBe(vp.mobile ? 96 : 128);
      expect(shown.height).toBeCloseTo(shown.width / 1.6, 0);
      expect(shown.src).toMatch(vp.mobile ? /-320\.webp$/ : /-160\.webp$/);
      // naturalWidth is density-corrected: the chosen file's width over its density, i.e. `sizes`.
      expect(shown.natural).toBe(shown.width);
    });

    it("city page: care-type and price filters are visible, at least 24×24 px, and filter the communities", async () => {
      await page.goto(`${base}/tx/austin-tx/`);
      const labels = page.locator(".filters label");
      const n = await labels.count();
      expect(n).toBeGreaterThan(2);
      for (let i = 0; i < n; i++) {
        const label = labels.nth(i);
        const text = await label.textContent();
        expect(await label.isVisible(), `filter "${text}" visible`).toBe(true);
        const box = await label.boundingBox();
        expect(box, `filter "${text}" has a box`).not.toBeNull();
        expect(box?.width ?? 0, `filter "${text}" width`).toBeGreaterThanOrEqual(24);
        expect(box?.height ?? 0, `filter "${text}" height`).toBeGreaterThanOrEqual(24);
        expect((box?.x ?? -1) >= 0 && (box?.x ?? 0) + (box?.width ?? 0) <= vp.width, `filter "${text}" inside`).toBe(
          true,
        );
      }

      const all = await cards();
      expect(all.length).toBeGreaterThan(1);
      expect(all.every((c) => c.visible)).toBe(true);

      // The rarest care type (the labels follow the care mix, most common first) hides some cards.
      const careFor = (await page.locator(".filters label[for^='care-t-']").last().getAttribute("for")) ?? "";
      const careClass = careFor.replace(/^care-/, "");
      await press(`label[for='${careFor}']`);
      expect(await page.locator(`#${careFor}`).isChecked()).toBe(true);
      let now = await cards();
      expect(now.filter((c) => c.visible).length).toBeGreaterThan(0);
      expect(now.filter((c) => !c.visible).length).toBeGreaterThan(0);
      for (const c of now) expect(c.visible, c.classes.join(" ")).toBe(c.classes.includes(careClass));

      await press("label[for='care-all']");
      expect((await cards()).every((c) => c.visible)).toBe(true);

      // A price band that some but not all communities start in.
      const band = ["p1", "p2", "p3", "p4"].find((b) => {
        const k = all.filter((c) => c.classes.includes(b)).length;
        return k > 0 && k < all.length;
      });
      expect(band).toBeDefined();
      await press(`label[for='price-${band}']`);
      now = await cards();
      for (const c of now) expect(c.visible, c.classes.join(" ")).toBe(c.classes.includes(band ?? ""));
      await press("label[for='price-all']");
      expect((await cards()).every((c) => c.visible)).toBe(true);

      if (!vp.mobile) {
        // The radios stay keyboard operable: arrow keys move the choice and the label shows focus.
        const first = (await page.locator(".filters label[for^='care-t-']").first().getAttribute("for")) ?? "";
        await page.focus("#care-all");
        await page.keyboard.press("ArrowRight");
        expect(await page.locator(`#${first}`).isChecked()).toBe(true);
        const cls = first.replace(/^care-/, "");
        for (const c of await cards()) expect(c.visible).toBe(c.classes.includes(cls));
        expect(
          await inPage<string>(page, `getComputedStyle(document.querySelector("label[for='${first}']")).outlineStyle`),
        ).toBe("solid");
      }
    });

    it("city page: the enquiry form is visible, fits the width and can be filled", async () => {
      await page.goto(`${base}/tx/austin-tx/`);
      // "Ask about …" on a card brings the form into view.
      await press(".list .cta");
      const heading = await page.locator("#enq-h").boundingBox();
      expect(heading).not.toBeNull();
      expect(heading?.y ?? -2).toBeGreaterThanOrEqual(-1); // at the top edge, give or take sub-pixel rounding
      expect((heading?.y ?? 0) + (heading?.height ?? 0)).toBeLessThanOrEqual(vp.height);

      const fields = ["#enq-name", "#enq-email", "#enq-phone", "#enq-community", "#enq-msg", ".enquiry button"];
      for (const f of fields) {
        const el = page.locator(f);
        expect(await el.isVisible(), `${f} visible`).toBe(true);
        const box = await el.boundingBox();
        expect(box, `${f} has a box`).not.toBeNull();
        expect(box?.x ?? -1, `${f} left edge`).toBeGreaterThanOrEqual(0);
        expect((box?.x ?? 0) + (box?.width ?? 0), `${f} right edge`).toBeLessThanOrEqual(vp.width);
        expect(box?.height ?? 0, `${f} height`).toBeGreaterThanOrEqual(24);
        expect(box?.width ?? 0, `${f} width`).toBeGreaterThanOrEqual(24);
      }
      await page.locator("#enq-name").fill("Sam Ortiz");
      expect(await page.locator("#enq-name").inputValue()).toBe("Sam Ortiz");
      await page.locator("#enq-community").selectOption({ index: 1 });
      expect(await page.locator("#enq-community").inputValue()).not.toBe("");
    });
  });
});
