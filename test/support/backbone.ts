/**
 * Isolation for tests on the real PostgreSQL and NATS: each test file gets its own database and
 * its own NATS prefix (so its own streams), removed afterwards.
 */
import { randomBytes } from "node:crypto";
import { type Bus, connectBus } from "../../lib/bus/index.ts";
import { createDatabase, dropDatabase } from "../../lib/db/index.ts";
import { createLogger } from "../../lib/log/index.ts";

/** The PostgreSQL server tests use (a URL of any database on it). */
export const adminUrl = process.env.MESH_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
/** The NATS server tests use. */
export const natsUrl = process.env.MESH_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

/** A unique lowercase name such as `t3f9a0c1d`. */
export function uniqueName(prefix = "t"): string {
  return `${prefix}${randomBytes(5).toString("hex")}`;
}

/** A fresh database; `drop()` removes it. */
export async function isolatedDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = uniqueName("mesh_test_");
  const url = await createDatabase(adminUrl, name);
  return { url, name, drop: () => dropDatabase(adminUrl, name) };
}

/** Deletes every stream of `prefix`. */
export async function deleteStreams(bus: Bus): Promise<void> {
  for (const name of Object.values(bus.streams)) {
    await bus.jsm.streams.delete(name).catch(() => undefined);
  }
}

/** A bus on its own prefix; `dispose()` deletes its streams and closes it. */
export async function isolatedBus(name = "test"): Promise<{ bus: Bus; prefix: string; dispose(): Promise<void> }> {
  const prefix = uniqueName("t");
  const bus = await connectBus({ url: natsUrl, prefix, name, log: createLogger("warn") });
  return {
    bus,
    prefix,
    async dispose() {
      await deleteStreams(bus);
      await bus.close();
    },
  };
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A domain's database and a bus with its outbox relay running, each isolated; `dispose()` removes them. */
export interface BackboneFixture {
  db: import("../../lib/db/index.ts").Database;
  bus: Bus;
  relay: ReturnType<typeof import("../../lib/bus/outbox.ts").startOutboxRelay>;
  dispose(): Promise<void>;
}

/** Opens an isolated database of `domain` and an isolated bus, and starts the relay between them. */
export async function openBackboneFixture(
  domain: import("../../lib/db/index.ts").DataDomain,
  name = "test",
): Promise<BackboneFixture> {
  const { openDatabase } = await import("../../lib/db/index.ts");
  const { startOutboxRelay } = await import("../../lib/bus/outbox.ts");
  const log = createLogger("warn");
  const dbHandle = await isolatedDatabase();
  const busHandle = await isolatedBus(name);
  const db = await openDatabase({ url: dbHandle.url, domain, log });
  const relay = startOutboxRelay(db, busHandle.bus, { log, pollMs: 100 });
  return {
    db,
    bus: busHandle.bus,
    relay,
    async dispose() {
      await relay.stop();
      await db.close();
      await busHandle.dispose();
      await dbHandle.drop();
    },
  };
}
