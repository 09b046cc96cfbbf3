/**
 * The enrichment cache: provider answers keyed by provider and the SHA-256 of the normalised query,
 * read by primary key (one row), written with an upsert, and purged in bounded batches. Each access
 * is its own short statement on a fresh fork: never inside a transaction that waits on the network.
 */
import { createHash } from "node:crypto";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { AttributeValueSchema, type EnrichableField } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import type { StoredJson } from "../entities.ts";
import { CrmEnrichmentCache } from "./entities.ts";
import type { Found, Query } from "./providers.ts";

/** SHA-256 (hex) of a query's canonical JSON (keys sorted). */
export function queryKey(query: Query): string {
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(query).sort(([a], [b]) => (a < b ? -1 : 1))));
  return createHash("sha256").update(canonical).digest("hex");
}

/** SHA-256 (hex) of a normalised email, the cache's erasure handle. */
export function emailKey(email: string): string {
  return createHash("sha256").update(email.trim().toLowerCase()).digest("hex");
}

function toStored(f: Found): StoredJson {
  const out: Record<string, StoredJson> = {
    field: f.field,
    confidence: f.confidence,
    value: toJson(AttributeValueSchema, f.found.value) as StoredJson,
  };
  if (f.found.address !== undefined) out.address = toJson(PostalAddressSchema, f.found.address) as StoredJson;
  if (f.found.place !== undefined) out.place = { city: f.found.place.city, region: f.found.place.region };
  return out;
}

function fromStored(j: StoredJson): Found {
  const o = j as Record<string, StoredJson>;
  const place = o.place as { city: string; region: string } | undefined;
  return {
    field: o.field as EnrichableField,
    confidence: o.confidence as number,
    found: {
      value: fromJson(AttributeValueSchema, o.value as JsonValue),
      ...(o.address === undefined ? {} : { address: fromJson(PostalAddressSchema, o.address as JsonValue) }),
      ...(place === undefined ? {} : { place: { city: place.city, region: place.region } }),
    },
  };
}

/** The cache of one database. */
export interface EnrichmentCache {
  /** The answer stored for `provider` and `key` at or after `notBefore`, or undefined. */
  read(provider: string, key: string, notBefore: Date): Promise<Found[] | undefined>;
  /** Stores (or replaces) an answer. */
  write(entry: {
    provider: string;
    key: string;
    email: string;
    found: readonly Found[];
    fetchedAt: Date;
  }): Promise<void>;
  /** Deletes at most `limit` rows expired at `now`; returns how many it deleted. */
  purgeExpired(now: Date, limit: number): Promise<number>;
}

/** Default time a row is kept: the longest `max_cache_age` it can serve. */
export const defaultRetentionMs = 90 * 86_400_000;

/** The cache on `db`; rows are kept `retentionMs` after they were fetched. */
export function databaseCache(db: Database, retentionMs = defaultRetentionMs): EnrichmentCache {
  return {
    async read(provider, key, notBefore) {
      const row = await db
        .fork()
        .findOne(
          CrmEnrichmentCache,
          { provider, inputKey: key, fetchedAt: { $gte: notBefore } },
          { disableIdentityMap: true },
        );
      return row === null ? undefined : row.fields.map(fromStored);
    },
    async write({ provider, key, email, found, fetchedAt }) {
      await db.fork().upsert(
        CrmEnrichmentCache,
        {
          provider,
          inputKey: key,
          emailKey: email === "" ? null : emailKey(email),
          fields: found.map(toStored),
          fetchedAt,
          expiresAt: new Date(fetchedAt.getTime() + retentionMs),
        },
        { onConflictFields: ["provider", "inputKey"], onConflictAction: "merge", disableIdentityMap: true },
      );
    },
    async purgeExpired(now, limit) {
      const table = `"${db.schema}"."crm_enrichment_cache"`;
      const res = await db
        .fork()
        .getConnection()
        .execute(
          `delete from ${table} where ctid in (select ctid from ${table} where expires_at < ? limit ?)`,
          [now, limit],
          "run",
        );
      return (res as { affectedRows?: number }).affectedRows ?? 0;
    },
  };
}
