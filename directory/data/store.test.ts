import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase } from "../../lib/db/index.ts";
import { createLogger } from "../../lib/log/index.ts";
import { domains } from "../../servers/domains.ts";
import { isolatedDatabase } from "../../test/support/backbone.ts";
import { createDirectoryData, type DirectoryData, hashDirectory } from "./dataset.ts";
import { DirectoryCity, DirectoryCommunity } from "./entities.ts";
import { loadDirectory, seedDirectory } from "./store.ts";

const log = createLogger("warn");

let isolated: Awaited<ReturnType<typeof isolatedDatabase>>;
let db: Database;
let data: DirectoryData;

beforeAll(async () => {
  isolated = await isolatedDatabase();
  db = await openDatabase({ url: isolated.url, domain: domains.technical, log });
  data = createDirectoryData();
});

afterAll(async () => {
  await db?.close();
  await isolated?.drop();
});

describe("seedDirectory", () => {
  it("stores every city and community once, and a second run changes nothing", async () => {
    const first = await seedDirectory(db, data);
    expect(first).toEqual({
      cities: { inserted: 977, updated: 0, unchanged: 0, removed: 0 },
      communities: { inserted: 4757, updated: 0, unchanged: 0, removed: 0 },
    });
    const em = db.fork();
    expect(await em.count(DirectoryCity, {})).toBe(977);
    expect(await em.count(DirectoryCommunity, {})).toBe(4757);
    expect(await em.count(DirectoryCommunity, { sample: true })).toBe(4757);
    const [{ states } = { states: 0 }] = await em
      .getConnection()
      .execute<{ states: number }[]>(
        `select count(distinct state_code)::int as states from "technical"."directory_city"`,
      );
    expect(states).toBe(51);

    const stamp = await em
      .getConnection()
      .execute<{ max: Date }[]>(`select max(updated_at) as max from "technical"."directory_community"`);
    const second = await seedDirectory(db, data);
    expect(second).toEqual({
      cities: { inserted: 0, updated: 0, unchanged: 977, removed: 0 },
      communities: { inserted: 0, updated: 0, unchanged: 4757, removed: 0 },
    });
    const after = await em
      .getConnection()
      .execute<{ max: Date; versions: number }[]>(
        `select max(updated_at) as max, max(version)::int as versions from "technical"."directory_community"`,
      );
    expect(after[0]?.max).toEqual(stamp[0]?.max);
    expect(after[0]?.versions).toBe(1);
  });

  it("reads back exactly the data it stored", async () => {
    const loaded = await loadDirectory(db.fork());
    expect(loaded.cities).toHaveLength(977);
    expect(loaded.communities).toHaveLength(4757);
    expect(loaded.cities[0]).toEqual(data.cities[0]);
    expect(loaded.communities[123]).toEqual(data.communities[123]);
    expect(hashDirectory(loaded)).toBe(hashDirectory(data));
  });

  it("updates only changed rows (bumping their version) and removes rows that left the data", async () => {
    const [changed, gone, ...rest] = data.communities;
    if (changed === undefined || gone === undefined) throw new Error("no communities");
    const edited: DirectoryData = {
      cities: data.cities,
      communities: [{ ...changed, capacity: changed.capacity + 1 }, ...rest],
    };
    const result = await seedDirectory(db, edited);
    expect(result).toEqual({
      cities: { inserted: 0, updated: 0, unchanged: 977, removed: 0 },
      communities: { inserted: 0, updated: 1, unchanged: 4755, removed: 1 },
    });
    const row = await db.fork().findOneOrFail(DirectoryCommunity, { id: changed.id });
    expect(row.capacity).toBe(changed.capacity + 1);
    expect(row.version).toBe(2);

    // Seeding the original data again restores both rows.
    const restored = await seedDirectory(db, data);
    expect(restored.communities).toEqual({ inserted: 1, updated: 1, unchanged: 4755, removed: 0 });
    expect(hashDirectory(await loadDirectory(db.fork()))).toBe(hashDirectory(data));
  });
});
