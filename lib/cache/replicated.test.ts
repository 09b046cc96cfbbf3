import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { domains } from "../../servers/domains.ts";
import { eventually, isolatedBus, isolatedDatabase, natsUrl } from "../../test/support/backbone.ts";
import { type Bus, connectBus, startOutboxRelay } from "../bus/index.ts";
import { type Database, type EntityManager, openDatabase } from "../db/index.ts";
import { createLogger } from "../log/index.ts";
import { compareHlc, createClock, decodeHlc, encodeHlc, type Hlc } from "./hlc.ts";
import { createReplicatedCache, enqueueInvalidation, type ReplicatedCache } from "./replicated.ts";

const log = createLogger("warn");
const clock = createClock("technical-cache-test");
const table = `"technical"."cache_probe"`;

/** A gate a test opens by hand. */
function gate(): { wait: Promise<void>; open(): void } {
  let open = (): void => undefined;
  const wait = new Promise<void>((r) => {
    open = r;
  });
  return { wait, open };
}

describe("replicated cache", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let busHandle: Awaited<ReturnType<typeof isolatedBus>>;
  let db: Database;
  /** Three "servers": one NATS connection each, on the same prefix. */
  const buses: Bus[] = [];
  let relay: ReturnType<typeof startOutboxRelay>;
  const caches: ReplicatedCache<string>[] = [];
  let loads = 0;

  const execute = (sql: string, params: unknown[] = [], em?: EntityManager) =>
    (em ?? db.fork())
      .getConnection()
      .execute<Record<string, string>[]>(sql, params, "all", em?.getTransactionContext());

  const read = async (key: string): Promise<{ value: string; hlc: Hlc } | undefined> => {
    loads++;
    const [row] = await execute(`select value, hlc from ${table} where key = ?`, [key]);
    return row === undefined ? undefined : { value: row.value as string, hlc: decodeHlc(row.hlc as string) };
  };

  /** Commits a new value of `key` and its invalidation in one transaction; returns the version's HLC. */
  const write = (key: string, value: string): Promise<Hlc> =>
    db.transaction(async (em) => {
      const h = clock.now();
      await execute(
        `insert into ${table} (key, value, hlc) values (?, ?, ?) on conflict (key) do update set value = excluded.value, hlc = excluded.hlc`,
        [key, value, encodeHlc(h)],
        em,
      );
      enqueueInvalidation(db, em, busHandle.prefix, "probe", [key], h, clock.nodeId);
      return h;
    });

  const cacheOn = (bus: Bus, overrides: { ttlMs?: number; load?: (k: string) => ReturnType<typeof read> } = {}) =>
    createReplicatedCache<string>({
      name: "probe",
      bus,
      ttlMs: overrides.ttlMs ?? 60_000,
      maxEntries: 1000,
      log,
      load: overrides.load ?? read,
    }).then((c) => {
      caches.push(c);
      return c;
    });

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    busHandle = await isolatedBus("technical");
    buses.push(busHandle.bus);
    for (const name of ["content", "operations"]) {
      buses.push(await connectBus({ url: natsUrl, prefix: busHandle.prefix, name, log }));
    }
    db = await openDatabase({ url: dbHandle.url, domain: domains.technical, log });
    await execute(`create table ${table} (key text primary key, value text not null, hlc text not null)`);
    relay = startOutboxRelay(db, busHandle.bus, { log, pollMs: 100 });
  });
  afterAll(async () => {
    for (const c of caches) await c.close();
    await relay?.stop();
    await db?.close();
    for (const b of buses.slice(1)) await b.close();
    await busHandle?.dispose();
    await dbHandle?.drop();
  });

  it("drops a changed key on all three servers; the next get loads the new value", async () => {
    const three = await Promise.all(buses.map((b) => cacheOn(b)));
    await write("k1", "v1");
    await relay.flush();
    await new Promise((r) => setTimeout(r, 150));
    for (const c of three) expect(await c.get("k1")).toBe("v1");
    for (const c of three) expect(await c.get("k1")).toBe("v1");
    expect(three.map((c) => c.stats().hits)).toEqual([1, 1, 1]);
    const h2 = await write("k1", "v2");
    await eventually(() => (three.every((c) => c.versionOf("k1") === undefined) ? true : undefined));
    for (const c of three) {
      expect(await c.get("k1")).toBe("v2");
      expect(c.versionOf("k1")).toEqual(h2);
      const s = c.stats();
      expect(s.loads).toBe(2);
      expect(s.invalidationsApplied).toBe(1);
      expect(s.lastInvalidationLagMs).toBeGreaterThanOrEqual(0);
      expect(s.lastInvalidationLagMs).toBeLessThan(5000);
      expect(s.entries).toBe(1);
    }
  });

  it("keeps a newer cached version when an older invalidation arrives late", async () => {
    const three = await Promise.all(buses.map((b) => cacheOn(b)));
    const h1 = await write("k2", "old");
    await write("k2", "new");
    await relay.flush();
    // Let the invalidations of those writes pass before the caches load.
    await new Promise((r) => setTimeout(r, 200));
    for (const c of three) expect(await c.get("k2")).toBe("new");
    const before = three.map((c) => c.stats());
    // A late invalidation stamped with the older version.
    await db.transaction(async (em) => {
      enqueueInvalidation(db, em, busHandle.prefix, "probe", ["k2"], h1, "operations-late");
    });
    await eventually(() =>
      three.every((c, i) => c.stats().invalidationsReceived > (before[i]?.invalidationsReceived ?? 0))
        ? true
        : undefined,
    );
    for (const [i, c] of three.entries()) {
      const s = c.stats();
      expect(s.invalidationsIgnoredStale).toBe((before[i]?.invalidationsIgnoredStale ?? 0) + 1);
      expect(s.invalidationsApplied).toBe(before[i]?.invalidationsApplied);
      expect(await c.get("k2")).toBe("new");
      expect(c.stats().loads).toBe(before[i]?.loads);
    }
  });

  it("ignores invalidations of other caches", async () => {
    const c = await cacheOn(buses[1] as Bus);
    await write("k3", "v");
    await relay.flush();
    await new Promise((r) => setTimeout(r, 150));
    expect(await c.get("k3")).toBe("v");
    const received = c.stats().invalidationsReceived;
    await db.transaction(async (em) => {
      enqueueInvalidation(db, em, busHandle.prefix, "other", ["k3"], clock.now(), clock.nodeId);
    });
    await relay.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(c.versionOf("k3")).toBeDefined();
    expect(c.stats().invalidationsReceived).toBe(received);
  });

  it("reloads after the TTL, which bounds staleness when no invalidation comes", async () => {
    const c = await cacheOn(buses[2] as Bus, { ttlMs: 150 });
    await write("k4", "v1");
    await relay.flush();
    await new Promise((r) => setTimeout(r, 150));
    expect(await c.get("k4")).toBe("v1");
    // Changed behind the cache's back: no event.
    await execute(`update ${table} set value = 'v2', hlc = ? where key = 'k4'`, [encodeHlc(clock.now())]);
    expect(await c.get("k4")).toBe("v1");
    await new Promise((r) => setTimeout(r, 250));
    expect(await c.get("k4")).toBe("v2");
    expect(c.stats().loads).toBe(2);
  });

  it("shares one load between concurrent misses of a key", async () => {
    const g = gate();
    let started = 0;
    const c = await cacheOn(buses[0] as Bus, {
      load: async (k) => {
        started++;
        await g.wait;
        return read(k);
      },
    });
    await write("k5", "v");
    const gets = Array.from({ length: 10 }, () => c.get("k5"));
    g.open();
    expect(await Promise.all(gets)).toEqual(Array(10).fill("v"));
    expect(started).toBe(1);
    expect(c.stats()).toMatchObject({ loads: 1, misses: 10, hits: 0, entries: 1 });
    expect(await c.get("k5")).toBe("v");
    expect(c.stats().hits).toBe(1);
  });

  it("does not store a load that an invalidation overtook", async () => {
    let hold: ReturnType<typeof gate> | undefined;
    let readDone: (() => void) | undefined;
    const c = await cacheOn(buses[1] as Bus, {
      load: async (k) => {
        const r = await read(k);
        readDone?.();
        if (hold) await hold.wait;
        return r;
      },
    });
    await write("k6", "v1");
    await relay.flush();
    await new Promise((r) => setTimeout(r, 150));
    hold = gate();
    const read1 = new Promise<void>((r) => {
      readDone = r;
    });
    const slow = c.get("k6");
    await read1;
    // The change commits and its invalidation arrives while the old value is on its way.
    await write("k6", "v2");
    await eventually(() => (c.stats().invalidationsApplied > 0 ? true : undefined));
    // A get after the invalidation does not join the outdated load.
    hold.open();
    hold = undefined;
    expect(await slow).toBe("v1");
    expect(c.versionOf("k6")).toBeUndefined();
    expect(await c.get("k6")).toBe("v2");
    expect(compareHlc(c.versionOf("k6") as Hlc, { wallTimeMs: 0, logical: 0, nodeId: "a" })).toBe(1);
  });

  it("empties itself when the NATS connection drops and comes back", async () => {
    const c = await cacheOn(buses[2] as Bus);
    await write("k7", "v");
    await relay.flush();
    await new Promise((r) => setTimeout(r, 150));
    expect(await c.get("k7")).toBe("v");
    expect(c.stats().entries).toBe(1);
    await (buses[2] as Bus).nc.reconnect();
    await eventually(() => (c.stats().resets >= 2 ? true : undefined));
    expect(c.stats().entries).toBe(0);
    expect(await c.get("k7")).toBe("v");
    expect(c.stats().entries).toBe(1);
    // The subscription survived the reconnect.
    await write("k7", "v2");
    await eventually(() => (c.versionOf("k7") === undefined ? true : undefined));
    expect(await c.get("k7")).toBe("v2");
  });

  it("stops receiving invalidations once closed", async () => {
    const c = await createReplicatedCache<string>({
      name: "probe",
      bus: buses[0] as Bus,
      ttlMs: 60_000,
      maxEntries: 10,
      log,
      load: read,
    });
    await write("k8", "v");
    await relay.flush();
    await new Promise((r) => setTimeout(r, 150));
    const received = c.stats().invalidationsReceived;
    await c.close();
    await write("k8", "v2");
    await relay.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(c.stats().invalidationsReceived).toBe(received);
    expect(loads).toBeGreaterThan(0);
  });
});
