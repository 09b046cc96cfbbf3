/**
 * Cache invalidation latency: from the commit of a change (the Data agent's database sync, whose
 * transaction carries the CacheInvalidated event in the outbox) through the outbox relay and
 * JetStream to the moment the invalidation is applied by each of three replicated caches, each on
 * its own NATS connection like three servers. One sample is one committed change; its latency is
 * the time until the last of the three caches has dropped the key (consistent everywhere; the
 * design target is 100 ms). Runs on a scratch database and NATS prefix, removed afterwards.
 *
 * `node bench/cache-invalidation.ts [samples]` runs it alone and prints the result.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { SyncedRecord } from "../agents/data/entities.ts";
import { synchronizeDatabase } from "../agents/data/skills/synchronize-database.ts";
import {
  ConflictStrategy,
  SyncFieldValueSchema,
  SynchronizeDatabaseRequestSchema,
  SyncRecordSchema,
} from "../gen/mesh/data/v1/data_service_pb.ts";
import { type Bus, connectBus, startOutboxRelay } from "../lib/bus/index.ts";
import {
  createClock,
  createReplicatedCache,
  decodeHlc,
  type Hlc,
  hlcToProto,
  type ReplicatedCache,
} from "../lib/cache/index.ts";
import { createDatabase, type Database, dropDatabase, openDatabase } from "../lib/db/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { domains } from "../servers/domains.ts";
import { quantile } from "./lib.ts";

/** Options of {@link benchCacheInvalidation}. */
export interface CacheInvalidationOptions {
  /** Committed changes measured (after 20 untimed ones). */
  samples: number;
  /** URL of any database on the PostgreSQL server (default DATABASE_URL, else the local server). */
  databaseUrl?: string;
  /** NATS URL (default NATS_URL, else the local server). */
  natsUrl?: string;
}

/** Latency summary, ms. */
export interface CacheInvalidationResult {
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

const collection = "bench.records";
const keys = Array.from({ length: 16 }, (_, i) => `record-${i}`);
const warmup = 20;
const sampleTimeoutMs = 5_000;

/** Measures commit → invalidation-applied-on-all-three-caches latency. */
export async function benchCacheInvalidation(opts: CacheInvalidationOptions): Promise<CacheInvalidationResult> {
  const log = createLogger("warn");
  const adminUrl = opts.databaseUrl ?? process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const natsUrl = opts.natsUrl ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  const suffix = randomBytes(4).toString("hex");
  const dbName = `mesh_bench_${suffix}`;
  const prefix = `bench${suffix}`;
  const url = await createDatabase(adminUrl, dbName);
  const buses: Bus[] = [];
  const caches: ReplicatedCache<unknown>[] = [];
  let db: Database | undefined;
  let relay: ReturnType<typeof startOutboxRelay> | undefined;
  try {
    for (const name of ["content", "operations", "technical"]) {
      buses.push(await connectBus({ url: natsUrl, prefix, name, log }));
    }
    const technical = buses[2] as Bus;
    const database = await openDatabase({ url, domain: domains.technical, log });
    db = database;
    // The commit instant; registered before the relay, which the same notification wakes.
    let committedAt = 0;
    const off = database.onOutboxCommit(() => {
      committedAt = performance.now();
    });
    relay = startOutboxRelay(database, technical, { log });

    // Each cache reports when it applies an invalidation of the key being measured.
    let pending: { key: string; seen: Set<number>; done: () => void; at: number[] } | undefined;
    for (const [i, bus] of buses.entries()) {
      caches.push(
        await createReplicatedCache<unknown>({
          name: collection,
          bus,
          ttlMs: 600_000,
          maxEntries: 1000,
          log,
          load: async (key) => {
            const row = await database.fork().findOne(SyncedRecord, { collection, key });
            return row === null ? undefined : { value: row.fields, hlc: decodeHlc(row.hlc) };
          },
          onInvalidation: (info) => {
            const p = pending;
            if (p === undefined || info.applied === 0 || !info.keys.includes(p.key) || p.seen.has(i)) return;
            p.seen.add(i);
            p.at.push(performance.now());
            if (p.seen.size === buses.length) p.done();
          },
        }),
      );
    }

    const deps = { db: database, bus: technical, log, clock: createClock(`technical-bench-${process.pid}`) };
    const remote = createClock("operations-bench");
    const versions = new Map<string, Hlc>();
    const change = async (key: string, n: number): Promise<void> => {
      const hlc = remote.now();
      const base = versions.get(key);
      await synchronizeDatabase(
        deps,
        create(SynchronizeDatabaseRequestSchema, {
          requestId: randomUUID(),
          collection,
          strategy: ConflictStrategy.LAST_WRITER_WINS,
          records: [
            create(SyncRecordSchema, {
              key,
              hlc: hlcToProto(hlc),
              ...(base === undefined ? {} : { baseVersion: hlcToProto(base) }),
              fields: [create(SyncFieldValueSchema, { name: "n", value: { case: "int64Value", value: BigInt(n) } })],
            }),
          ],
        }),
      );
      versions.set(key, hlc);
    };

    for (const [n, key] of keys.entries()) await change(key, n);
    await relay.flush();
    const latencies: number[] = [];
    for (let s = 0; s < warmup + opts.samples; s++) {
      const key = keys[s % keys.length] as string;
      // Every cache holds the key, so each has something to drop.
      for (const c of caches) await c.get(key);
      let done = (): void => undefined;
      const seen = new Promise<void>((resolve) => {
        done = resolve;
      });
      const p = { key, seen: new Set<number>(), done, at: [] as number[] };
      pending = p;
      await change(key, s);
      const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), sampleTimeoutMs).unref());
      if ((await Promise.race([seen, timeout])) === "timeout") {
        throw new Error(`invalidation of ${key} not applied by all caches within ${sampleTimeoutMs} ms`);
      }
      pending = undefined;
      if (s >= warmup) latencies.push(Math.max(...p.at) - committedAt);
    }
    off();
    latencies.sort((a, b) => a - b);
    const r = (x: number) => Math.round(x * 1000) / 1000;
    return {
      p50: r(quantile(latencies, 0.5)),
      p99: r(quantile(latencies, 0.99)),
      max: r(latencies[latencies.length - 1] ?? Number.NaN),
      samples: latencies.length,
    };
  } finally {
    for (const c of caches) await c.close();
    await relay?.stop();
    await db?.close();
    const [first] = buses;
    if (first !== undefined) {
      for (const name of Object.values(first.streams)) await first.jsm.streams.delete(name).catch(() => undefined);
    }
    for (const b of buses) await b.close();
    await dropDatabase(adminUrl, dbName);
  }
}

if (import.meta.main) {
  const samples = Number(process.argv[2] ?? 500);
  const result = await benchCacheInvalidation({ samples });
  process.stdout.write(`cache invalidation, commit → applied on 3 caches (ms): ${JSON.stringify(result)}\n`);
  process.exit(0);
}
