/**
 * The directory in PostgreSQL (technical schema): `seedDirectory` makes the stored rows equal to a
 * data set in one transaction, touching only rows whose content hash changed; `loadDirectory`
 * reads the data set back, in the order the generator produces it.
 */
import type { Database, EntityManager } from "../../lib/db/index.ts";
import { transaction } from "../../lib/db/index.ts";
import type { CityRecord } from "./cities.ts";
import type { CapacityUnit, CommunityKind, CommunityRecord } from "./communities.ts";
import { contentHash, createDirectoryData, type DirectoryData } from "./dataset.ts";
import { DirectoryCity, type DirectoryCityRow, DirectoryCommunity, type DirectoryCommunityRow } from "./entities.ts";

/** What seeding did to one table. */
export interface SeedCounts {
  /** Rows created. */
  inserted: number;
  /** Rows whose content changed (their version went up). */
  updated: number;
  /** Rows left as they were. */
  unchanged: number;
  /** Rows deleted because the data set no longer has them. */
  removed: number;
}

/** What seeding did, per table. */
export interface SeedResult {
  cities: SeedCounts;
  communities: SeedCounts;
}

/** Stored columns of a city record (everything but the bookkeeping). */
function cityColumns(c: CityRecord) {
  return {
    geonamesId: c.geonamesId,
    name: c.name,
    stateCode: c.stateCode,
    stateName: c.stateName,
    latitude: c.latitude,
    longitude: c.longitude,
    population: c.population,
    rank: c.rank,
    neighbours: c.neighbours.map((n) => ({ id: n.id, distanceKm: n.distanceKm })),
    contentHash: contentHash(c),
  };
}

/** Stored columns of a community record. */
function communityColumns(c: CommunityRecord) {
  return {
    city: c.cityId,
    sample: c.sample,
    name: c.name,
    kind: c.kind,
    description: c.description,
    streetAddress: c.streetAddress,
    locality: c.locality,
    stateCode: c.stateCode,
    postalCode: c.postalCode,
    latitude: c.latitude,
    longitude: c.longitude,
    phone: c.phone,
    careTypes: [...c.careTypes],
    prices: c.prices.map((p) => ({ ...p })),
    capacity: c.capacity,
    capacityUnit: c.capacityUnit,
    yearOpened: c.yearOpened,
    amenities: [...c.amenities],
    rating: c.rating,
    reviewCount: c.reviewCount,
    contentHash: contentHash(c),
  };
}

/**
 * Makes the stored directory equal to `data` (default: the published data set) in one transaction,
 * joining the call's transaction when there is one: inserts new records, updates those whose content
 * hash differs, deletes those no longer present and leaves the rest alone, so a second run with the
 * same data changes nothing.
 */
export function seedDirectory(db: Database, data: DirectoryData = createDirectoryData()): Promise<SeedResult> {
  return transaction(db, async (em) => {
    const cities: SeedCounts = { inserted: 0, updated: 0, unchanged: 0, removed: 0 };
    const communities: SeedCounts = { inserted: 0, updated: 0, unchanged: 0, removed: 0 };

    const storedCities = new Map((await em.find(DirectoryCity, {})).map((r) => [r.id, r]));
    const storedCommunities = new Map((await em.find(DirectoryCommunity, {})).map((r) => [r.id, r]));

    const wanted = new Set(data.cities.map((c) => c.id));
    for (const c of data.cities) {
      const columns = cityColumns(c);
      const row = storedCities.get(c.id);
      if (row === undefined) {
        em.create(DirectoryCity, { id: c.id, ...columns });
        cities.inserted++;
      } else if (row.contentHash !== columns.contentHash) {
        em.assign(row, columns);
        cities.updated++;
      } else {
        cities.unchanged++;
      }
    }
    for (const c of data.communities) {
      const columns = communityColumns(c);
      const row = storedCommunities.get(c.id);
      if (row === undefined) {
        em.create(DirectoryCommunity, { id: c.id, ...columns });
        communities.inserted++;
      } else if (row.contentHash !== columns.contentHash) {
        em.assign(row, columns);
        communities.updated++;
      } else {
        communities.unchanged++;
      }
    }
    const keepCommunities = new Set(data.communities.map((c) => c.id));
    for (const [id, row] of storedCommunities) {
      if (!keepCommunities.has(id)) {
        em.remove(row);
        communities.removed++;
      }
    }
    for (const [id, row] of storedCities) {
      if (!wanted.has(id)) {
        em.remove(row);
        cities.removed++;
      }
    }
    await em.flush();
    return { cities, communities };
  });
}

/** A stored city as a record. */
function cityRecord(r: DirectoryCityRow): CityRecord {
  return {
    id: r.id,
    geonamesId: r.geonamesId,
    name: r.name,
    stateCode: r.stateCode,
    stateName: r.stateName,
    latitude: Number(r.latitude),
    longitude: Number(r.longitude),
    population: r.population,
    rank: r.rank,
    neighbours: r.neighbours,
  };
}

/** A stored community as a record. */
function communityRecord(r: DirectoryCommunityRow): CommunityRecord {
  return {
    id: r.id,
    sample: true,
    cityId: r.city,
    name: r.name,
    kind: r.kind as CommunityKind,
    description: r.description,
    streetAddress: r.streetAddress,
    locality: r.locality,
    stateCode: r.stateCode,
    postalCode: r.postalCode,
    latitude: Number(r.latitude),
    longitude: Number(r.longitude),
    phone: r.phone,
    careTypes: r.careTypes,
    prices: r.prices,
    capacity: r.capacity,
    capacityUnit: r.capacityUnit as CapacityUnit,
    yearOpened: r.yearOpened,
    amenities: r.amenities,
    rating: r.rating === null || r.rating === undefined ? null : Number(r.rating),
    reviewCount: r.reviewCount,
  };
}

/**
 * The stored directory: cities by rank, communities by city rank and then id (the generator's
 * order, so an unchanged store hashes like the data set it was seeded from).
 */
export async function loadDirectory(em: EntityManager): Promise<DirectoryData> {
  const cityRows = await em.find(DirectoryCity, {}, { orderBy: { rank: "asc" } });
  const communityRows = await em.find(DirectoryCommunity, {}, { orderBy: { id: "asc" } });
  const byCity = new Map<string, CommunityRecord[]>();
  for (const row of communityRows) {
    const list = byCity.get(row.city) ?? [];
    list.push(communityRecord(row));
    byCity.set(row.city, list);
  }
  const cities = cityRows.map(cityRecord);
  return { cities, communities: cities.flatMap((c) => byCity.get(c.id) ?? []) };
}
