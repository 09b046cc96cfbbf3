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

/**
 * Constraints MikroORM's schema diff cannot introspect, which it therefore always proposes to drop
 * and re-create: PostgreSQL exclusion constraints. Each is declared on its entity (as an index
 * expression) and created by its migration; the diff's statements about exactly these are ignored.
 */
const uncomparable = ["crm_appointment_hold_no_overlap"];

/** The schema diff without the statements about {@link uncomparable} constraints. */
function comparableDiff(sql: string): string {
  return sql
    .split("\n")
    .filter((line) => !uncomparable.some((name) => line.includes(`"${name}"`)))
    .join("\n")
    .trim();
}

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
        comparableDiff(diff.up),
        `entities of the ${server} schema differ from its modules' migrations; run npm run mesh -- db:migration <module>`,
      ).toBe("");
    } finally {
      await orm.close();
    }
  });

  it.each(serverNames)(
    "apply to a %s schema made before the framework and the workflow engine had migrations of their own",
    async (server) => {
      const domain = domains[server];
      const orm = await MikroORM.init(ormOptions(scratch.url, domain, 2));
      try {
        await orm.migrator.up();
        // Such a schema holds these tables already, recorded under its first migration's name.
        const renamed = domain.migrations.map((m) => m.name).filter((n) => /_(framework|workflow)$/.test(n));
        expect(renamed.length).toBeGreaterThan(0);
        const connection = orm.em.getConnection();
        await connection.execute(
          `delete from "${domain.schema}"."mikro_orm_migrations" where name in (${renamed.map(() => "?").join(",")})`,
          renamed,
        );
        expect((await orm.migrator.getPending()).map((m) => m.name)).toEqual(renamed);
        await orm.migrator.up();
        expect(await orm.migrator.getPending()).toEqual([]);
        const diff = await orm.schema.getUpdateSchemaMigrationSQL({ wrap: false, schema: domain.schema });
        expect(comparableDiff(diff.up)).toBe("");
      } finally {
        await orm.close();
      }
    },
  );
});
