import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase, runInUnitOfWork } from "../../../lib/db/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { createMemorySiteFileStore, LIST_PAGE_SIZE, sha256Hex } from "./robots-store.ts";
import { createDatabaseSiteFileStore } from "./site-file-store.ts";

describe("the durable site file store", () => {
  let handle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  beforeAll(async () => {
    handle = await isolatedDatabase();
    db = await openDatabase({ url: handle.url, domain: domains.technical, log: createLogger("warn") });
  });
  afterAll(async () => {
    await db?.close();
    await handle?.drop();
  });

  it("stores, replaces, lists by prefix and deletes files per origin", async () => {
    const store = createDatabaseSiteFileStore(db);
    await store.put("https://a.example", "/robots.txt", "User-agent: *\nDisallow:\n");
    await store.put("https://a.example", "/sitemap-1.xml", "<urlset/>");
    await store.put("https://a.example", "/sitemap-2.xml", "<urlset/>");
    await store.put("https://b.example", "/sitemap-1.xml", "<urlset/>");
    await store.put("https://a.example", "/robots.txt", "User-agent: *\nDisallow: /x\n");
    expect(await store.get("https://a.example", "/robots.txt")).toEqual({
      content: "User-agent: *\nDisallow: /x\n",
      sha256: sha256Hex("User-agent: *\nDisallow: /x\n"),
    });
    expect(await store.list("https://a.example", "/sitemap")).toEqual(["/sitemap-1.xml", "/sitemap-2.xml"]);
    expect(await store.list("https://a.example", "/sitemap_")).toEqual([]);
    expect(await store.delete("https://a.example", "/sitemap-2.xml")).toBe(true);
    expect(await store.delete("https://a.example", "/sitemap-2.xml")).toBe(false);
    expect(await store.get("https://c.example", "/robots.txt")).toBeUndefined();
  });

  it("lists a page at a time, in code-point order, however many files a site has", async () => {
    const store = createDatabaseSiteFileStore(db);
    const origin = "https://paged.example";
    const paths = ["/s-1.xml", "/s-10.xml", "/s-2.xml", "/s-B.xml", "/s-a.xml", "/s-é.xml", "/s_x.xml"];
    for (const p of paths) await store.put(origin, p, "<urlset/>");
    const memory = createMemorySiteFileStore();
    for (const p of paths) await memory.put(origin, p, "<urlset/>");
    for (const s of [store, memory]) {
      const seen: string[][] = [];
      for (let after: string | undefined; ; ) {
        const page = await s.list(origin, "/s-", { after, limit: 2 });
        if (page.length === 0) break;
        seen.push(page);
        after = page[page.length - 1];
      }
      // "_" is not a wildcard; code-point order (digits, upper, lower, then non-ASCII).
      expect(seen).toEqual([
        ["/s-1.xml", "/s-10.xml"],
        ["/s-2.xml", "/s-B.xml"],
        ["/s-a.xml", "/s-é.xml"],
      ]);
    }
    // Without a page: at most LIST_PAGE_SIZE paths.
    expect(await store.list(origin, "/", { limit: 1_000_000 })).toHaveLength(paths.length);
    for (let i = 0; i < LIST_PAGE_SIZE + 5; i++)
      await memory.put(origin, `/many-${String(i).padStart(5, "0")}.xml`, "");
    expect(await memory.list(origin, "/many-")).toHaveLength(LIST_PAGE_SIZE);
  });

  it("writes in the call's transaction: a rolled-back call leaves no file", async () => {
    const store = createDatabaseSiteFileStore(db);
    await expect(
      db.transaction((em) =>
        runInUnitOfWork(db, em, async () => {
          await store.put("https://rollback.example", "/robots.txt", "User-agent: *\n");
          throw new Error("the skill failed after writing");
        }),
      ),
    ).rejects.toThrow("the skill failed");
    expect(await store.get("https://rollback.example", "/robots.txt")).toBeUndefined();
  });
});
