/**
 * A local read cache on every server, kept consistent by events. Entries live in an LRU with a
 * TTL and remember the HLC of the version they hold. Whoever changes cached data enqueues a
 * `CacheInvalidated` event in the transaction of the change (the outbox publishes it after
 * commit); every instance receives it on a core NATS subscription (fan-out: each instance gets
 * each event) and drops the keys, unless it already holds a version at least as new as the
 * change, so a late invalidation never evicts newer data.
 *
 * A core subscription misses what is published while the connection is down, so the cache stops
 * storing while disconnected and starts empty after a reconnect; the TTL bounds staleness in any
 * case (for example a lost event).
 */
import { create } from "@bufbuild/protobuf";
import type { Status } from "@nats-io/transport-node";
import { LRUCache } from "lru-cache";
import { type CacheInvalidated, CacheInvalidatedSchema } from "../../gen/mesh/common/v1/cache_pb.ts";
import { type Bus, decodeEvent, defineEvent, enqueueEvent } from "../bus/index.ts";
import type { Database, EntityManager } from "../db/index.ts";
import type { Logger } from "../log/index.ts";
import { compareHlc, type Hlc, hlcFromProto, hlcToProto, maxHlc } from "./hlc.ts";

/** The invalidation event: `<prefix>.events.cache.invalidated`. */
export const CacheInvalidatedEvent = defineEvent("cache", "invalidated", CacheInvalidatedSchema);

/** Most key bytes in one event; more keys are split over several events (NATS payloads are limited). */
const maxKeyBytesPerEvent = 256 * 1024;

/**
 * Adds invalidations of `keys` of cache `cacheName` to the outbox of `em`'s transaction: they are
 * published if and only if the change commits. `hlc` is the HLC of the change: not earlier than
 * any new version of the keys (the committing node's `clock.now()` is, after it stamped or
 * received them). One event, or several when the keys are very many. Returns the message ids.
 */
export function enqueueInvalidation(
  db: Database,
  em: EntityManager,
  prefix: string,
  cacheName: string,
  keys: readonly string[],
  hlc: Hlc,
  origin: string,
): string[] {
  const ids: string[] = [];
  let chunk: string[] = [];
  let bytes = 0;
  const flush = (): void => {
    if (chunk.length === 0) return;
    const message = create(CacheInvalidatedSchema, {
      cacheName,
      keys: chunk,
      hlc: hlcToProto(hlc),
      originNodeId: origin,
    });
    ids.push(enqueueEvent(db, em, prefix, CacheInvalidatedEvent, message));
    chunk = [];
    bytes = 0;
  };
  for (const key of new Set(keys)) {
    const size = Buffer.byteLength(key) + 4;
    if (bytes + size > maxKeyBytesPerEvent) flush();
    chunk.push(key);
    bytes += size;
  }
  flush();
  return ids;
}

/** What a load returns: the value and the HLC of its version. */
export interface Loaded<V> {
  value: V;
  hlc: Hlc;
}

/** Options of {@link createReplicatedCache}. */
export interface ReplicatedCacheOptions<V> {
  /** Cache name; invalidations name it (for synchronised records, the collection). */
  name: string;
  /** The bus whose connection receives invalidations. */
  bus: Bus;
  /** Longest time an entry is served, ms (bounds staleness when an invalidation is lost). */
  ttlMs: number;
  /** Most entries kept (least recently used go first). */
  maxEntries: number;
  /** Reads the current version of `key` from the source of truth; undefined when absent (not cached). */
  load: (key: string) => Promise<Loaded<V> | undefined>;
  /** Logger. */
  log: Logger;
  /** Called for every invalidation of this cache received (metrics, benchmarks). */
  onInvalidation?: (info: InvalidationInfo) => void;
}

/** One received invalidation of this cache. */
export interface InvalidationInfo {
  /** Keys named. */
  keys: readonly string[];
  /** HLC of the change. */
  hlc: Hlc;
  /** Node that made the change. */
  origin: string;
  /** Keys dropped (or whose in-flight load was marked out of date). */
  applied: number;
  /** Keys kept because the cached version is as new or newer. */
  ignoredStale: number;
  /** Receive time minus the change's HLC wall time, ms. */
  lagMs: number;
}

/** Counters of a replicated cache. */
export interface ReplicatedCacheStats {
  /** Gets answered from the cache. */
  hits: number;
  /** Gets that were not. */
  misses: number;
  /** Loads started (concurrent misses of one key share one). */
  loads: number;
  /** Keys named by invalidations of this cache. */
  invalidationsReceived: number;
  /** Keys dropped, or whose in-flight load was marked out of date. */
  invalidationsApplied: number;
  /** Keys kept because the cached version was equal or newer than the invalidation's. */
  invalidationsIgnoredStale: number;
  /** Entries held now. */
  entries: number;
  /** Times the cache was emptied because the connection dropped or came back. */
  resets: number;
  /** Receive time minus the HLC wall time of the last invalidation, ms (undefined before any). */
  lastInvalidationLagMs: number | undefined;
}

/** A read cache invalidated on every server. */
export interface ReplicatedCache<V> {
  /** The cache name. */
  readonly name: string;
  /** The cached value of `key`, else loads it (undefined when the source has none). */
  get(key: string): Promise<V | undefined>;
  /** The HLC of the cached version of `key`, without loading or touching recency. */
  versionOf(key: string): Hlc | undefined;
  /** Drops every entry (in-flight loads are not stored). */
  clear(): void;
  /** A snapshot of the counters. */
  stats(): ReplicatedCacheStats;
  /** Unsubscribes and stops watching the connection; the cache keeps answering through `load`. */
  close(): Promise<void>;
}

interface Entry<V> {
  value: V;
  hlc: Hlc;
}

interface InFlight<V> {
  promise: Promise<V | undefined>;
  /** The latest invalidation received while loading: a result older than it is not stored. */
  invalidatedBy: Hlc | undefined;
}

/**
 * Creates a replicated cache and subscribes it to invalidations; resolves once the subscription
 * is registered with the NATS server (an event published afterwards reaches it).
 */
export async function createReplicatedCache<V>(opts: ReplicatedCacheOptions<V>): Promise<ReplicatedCache<V>> {
  const { name, bus, log } = opts;
  const lru = new LRUCache<string, Entry<V>>({ max: opts.maxEntries, ttl: opts.ttlMs, updateAgeOnGet: false });
  const inFlight = new Map<string, InFlight<V>>();
  const counters = {
    hits: 0,
    misses: 0,
    loads: 0,
    invalidationsReceived: 0,
    invalidationsApplied: 0,
    invalidationsIgnoredStale: 0,
    resets: 0,
  };
  let lastLag: number | undefined;
  // Bumped by every reset: a load that started before it may have missed invalidations.
  let epoch = 0;
  let connected = !bus.nc.isClosed();
  let closed = false;

  const reset = (): void => {
    epoch++;
    counters.resets++;
    lru.clear();
    inFlight.clear();
  };

  const apply = (event: CacheInvalidated): void => {
    if (event.cacheName !== name || event.hlc === undefined) return;
    const hlc = hlcFromProto(event.hlc);
    const lagMs = Date.now() - hlc.wallTimeMs;
    lastLag = lagMs;
    let applied = 0;
    let ignoredStale = 0;
    for (const key of event.keys) {
      counters.invalidationsReceived++;
      let dropped = false;
      const loading = inFlight.get(key);
      if (loading !== undefined) {
        loading.invalidatedBy = loading.invalidatedBy === undefined ? hlc : maxHlc(loading.invalidatedBy, hlc);
        // Later gets must not join a load that may return the old version.
        inFlight.delete(key);
        dropped = true;
      }
      const held = lru.peek(key);
      if (held !== undefined) {
        if (compareHlc(held.hlc, hlc) >= 0) {
          ignoredStale++;
          continue;
        }
        lru.delete(key);
        dropped = true;
      }
      if (dropped) applied++;
    }
    counters.invalidationsApplied += applied;
    counters.invalidationsIgnoredStale += ignoredStale;
    opts.onInvalidation?.({ keys: event.keys, hlc, origin: event.originNodeId, applied, ignoredStale, lagMs });
  };

  const sub = bus.fanout(bus.eventSubject(CacheInvalidatedEvent), (d) => {
    let event: CacheInvalidated;
    try {
      event = decodeEvent(CacheInvalidatedEvent, d);
    } catch (err) {
      log.warn("undecodable cache invalidation", { cache: name, error: String(err) });
      return;
    }
    apply(event);
  });

  // Watch the connection: while it is down invalidations are lost, so nothing is stored, and what
  // was cached before may have missed some by the time it is back.
  // status() is a QueuedIterator: stop() ends it at once, whereas return() would wait for an event.
  const status = bus.nc.status() as AsyncIterable<Status> & { stop?: () => void };
  const watching = (async () => {
    for await (const s of status) {
      if (closed) return;
      if (s.type === "disconnect") {
        connected = false;
        reset();
        log.warn("cache emptied: NATS connection lost", { cache: name });
      } else if (s.type === "reconnect") {
        connected = true;
        reset();
        log.info("cache emptied: NATS connection back", { cache: name });
      }
    }
  })().catch((err: unknown) => log.warn("cache stopped watching the connection", { cache: name, error: String(err) }));

  await bus.nc.flush();

  const load = (key: string): Promise<V | undefined> => {
    counters.loads++;
    const startedIn = epoch;
    const flight: InFlight<V> = { promise: Promise.resolve(undefined), invalidatedBy: undefined };
    flight.promise = (async () => {
      try {
        const loaded = await opts.load(key);
        if (loaded === undefined) return undefined;
        const current =
          connected &&
          !closed &&
          epoch === startedIn &&
          (flight.invalidatedBy === undefined || compareHlc(loaded.hlc, flight.invalidatedBy) >= 0);
        const held = lru.peek(key);
        if (current && (held === undefined || compareHlc(loaded.hlc, held.hlc) >= 0)) {
          lru.set(key, { value: loaded.value, hlc: loaded.hlc });
        }
        return loaded.value;
      } finally {
        if (inFlight.get(key) === flight) inFlight.delete(key);
      }
    })();
    inFlight.set(key, flight);
    return flight.promise;
  };

  return {
    name,
    async get(key) {
      const held = connected ? lru.get(key) : undefined;
      if (held !== undefined) {
        counters.hits++;
        return held.value;
      }
      counters.misses++;
      return inFlight.get(key)?.promise ?? load(key);
    },
    versionOf: (key) => lru.peek(key)?.hlc,
    clear() {
      epoch++;
      lru.clear();
      inFlight.clear();
    },
    stats: () => ({ ...counters, entries: lru.size, lastInvalidationLagMs: lastLag }),
    async close() {
      if (closed) return;
      closed = true;
      sub.unsubscribe();
      status.stop?.();
      await watching;
      lru.clear();
    },
  };
}
