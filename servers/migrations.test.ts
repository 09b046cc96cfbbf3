/**
 * The committed migrations are the schema: after applying every module's migrations of a schema to
 * an empty database, the entities must need no further change. A field added to an entity without
 * `mesh db:migration <module>` fails here.
 */
import { MikroORM } from "@mikro-orm/postgresql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serverNames } from "../lib/config/index.ts";
import { ormOptions } from "../lib/db/index.ts";
import { isolatedDatabase } from "../test/support/backbone.ts";
import { domains } from "./domains.ts";

describe("committed migrations", () => {
  let scratch: Awaited<ReturnType<typeof isolatedDatabase>>;
  beforeAll(async () => {
    scratch = await isolatedDatabase();
  });
  afterAll(async () => {
    await scratch?.drop();
  });

  it.each(serverNames)("create exactly the %s schema its entities describe", async (server) => {
    const domain = domains[server];
    const orm = await MikroORM.init(ormOptions(scratch.url, domain, 2));
    try {
      await orm.em.getConnection().execute(`create schema if not exists "${domain.schema}"`);
      await orm.migrator.up();
      expect(await orm.migrator.getPending()).toEqual([]);
      const diff = await orm.schema.getUpdateSchemaMigrationSQL({ wrap: false, schema: domain.schema });
      expect(
        diff.up.trim(),
        `entities of the ${server} schema differ from its modules' migrations; run npm run mesh -- db:migration <module>`,
      ).toBe("");
    } finally {
      await orm.close();
    }
  });
});
