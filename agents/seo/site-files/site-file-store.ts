/**
 * The durable {@link SiteFileStore}: published files in `technical.seo_site_file`, written in the
 * call's transaction (so a file commits with the call's idempotency record, and a rolled-back call
 * leaves nothing), and robots.txt updates serialised by a row lock.
 */
import { LockMode } from "@mikro-orm/core";
import type { Database } from "../../../lib/db/index.ts";
import { transaction } from "../../../lib/db/index.ts";
import { SeoSiteFile } from "../entities.ts";
import { pageLimit, type SiteFileStore, sha256Hex } from "./robots-store.ts";

/** A store on `db` (the SEO agent's database). */
export function createDatabaseSiteFileStore(db: Database): SiteFileStore {
  return {
    get: (origin, path) =>
      transaction(db, async (em) => {
        // Locked: a read-modify-write of robots.txt by two calls at once must not lose an update.
        const row = await em.findOne(SeoSiteFile, { origin, path }, { lockMode: LockMode.PESSIMISTIC_WRITE });
        return row ? { content: row.content, sha256: row.sha256 } : undefined;
      }),
    put: (origin, path, content) =>
      transaction(db, async (em) => {
        const row = await em.findOne(SeoSiteFile, { origin, path });
        if (row) {
          row.content = content;
          row.sha256 = sha256Hex(content);
        } else {
          em.create(SeoSiteFile, { origin, path, content, sha256: sha256Hex(content) });
        }
        await em.flush();
      }),
    delete: (origin, path) => transaction(db, async (em) => (await em.nativeDelete(SeoSiteFile, { origin, path })) > 0),
    list: (origin, prefix, page) =>
      transaction(db, async (em) => {
        const after = page?.after;
        const rows = await em.execute<Array<{ path: string }>>(
          `select "path" from "${db.schema}"."seo_site_file"
            where "origin" = ? and "path" like ? escape '\\'${after === undefined ? "" : ` and "path" collate "C" > ?`}
            order by "path" collate "C" limit ?`,
          [origin, `${prefix.replace(/[\\%_]/g, "\\$&")}%`, ...(after === undefined ? [] : [after]), pageLimit(page)],
        );
        return rows.map((r) => r.path);
      }),
  };
}
