import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase, runInUnitOfWork } from "../../../lib/db/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { sha256Hex } from "./robots-store.ts";
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
