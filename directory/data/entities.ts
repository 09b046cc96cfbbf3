/**
 * Tables of the senior-living directory in the `technical` schema (the SEO agent's domain): its
 * cities and its sample communities. Each row carries the SHA-256 of its record's canonical JSON
 * (`contentHash`), so seeding and incremental rebuilds can tell which rows changed.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";
import type { CityNeighbour } from "./cities.ts";
import type { CarePrice, CareType } from "./communities.ts";

/** A directory city (real place from GeoNames). */
export const DirectoryCity = defineEntity({
  name: "DirectoryCity",
  tableName: "directory_city",
  indexes: [{ properties: ["stateCode", "rank"] }],
  properties: {
    /** Slug, `austin-tx`. */
    id: p.string().length(120).primary(),
    geonamesId: p.integer().unique(),
    name: p.string().length(200),
    stateCode: p.string().length(2),
    stateName: p.string().length(64),
    latitude: p.double(),
    longitude: p.double(),
    population: p.integer(),
    /** Position in the selection (population descending); not unique, so a re-ranking can update rows in any order. */
    rank: p.integer().index(),
    /** Nearest directory cities, closest first. */
    neighbours: p.json<CityNeighbour[]>(),
    /** SHA-256 of the record's canonical JSON. */
    contentHash: p.string().length(64),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
    /** Optimistic lock: every update checks and increments it. */
    version: p.integer().version(),
  },
});

/** A sample senior-living community (generated, not a real business). */
export const DirectoryCommunity = defineEntity({
  name: "DirectoryCommunity",
  tableName: "directory_community",
  properties: {
    /** Slug, `<name>-<city id>`. */
    id: p.string().length(200).primary(),
    city: () => p.manyToOne(DirectoryCity).mapToPk().index(),
    /** Always true: generated sample data. */
    sample: p.boolean().default(true),
    name: p.string().length(200),
    kind: p.string().length(32),
    description: p.text(),
    streetAddress: p.string().length(200),
    locality: p.string().length(200),
    stateCode: p.string().length(2).index(),
    postalCode: p.string().length(10),
    latitude: p.double(),
    longitude: p.double(),
    /** E.164. */
    phone: p.string().length(16),
    careTypes: p.json<CareType[]>(),
    prices: p.json<CarePrice[]>(),
    capacity: p.integer(),
    /** `units`, `beds` or `clients`. */
    capacityUnit: p.string().length(16),
    yearOpened: p.integer(),
    amenities: p.json<string[]>(),
    rating: p.double().nullable(),
    reviewCount: p.integer().default(0),
    /** SHA-256 of the record's canonical JSON. */
    contentHash: p.string().length(64),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
    /** Optimistic lock: every update checks and increments it. */
    version: p.integer().version(),
  },
});

/**
 * One built page of the directory site: the hash of everything its HTML is rendered from (data,
 * links, renderer code) and of the HTML itself, so a rebuild renders only pages whose inputs
 * changed and the sitemap's `lastmod` moves only when a page's content did.
 */
export const DirectoryPage = defineEntity({
  name: "DirectoryPage",
  tableName: "directory_page",
  properties: {
    /** File path in the site, `/tx/austin-tx/index.html`. */
    path: p.string().length(300).primary(),
    /** `city`, `state`, `index` or `static`. */
    kind: p.string().length(16),
    /** SHA-256 of the page's render inputs and the renderer's fingerprint. */
    inputHash: p.string().length(64),
    /** SHA-256 of the HTML written. */
    contentHash: p.string().length(64),
    /** Size of the HTML, bytes. */
    bytes: p.integer(),
    /** When the HTML last changed (the sitemap's `lastmod`). */
    modifiedAt: p.datetime(),
    /** When the page was last rendered. */
    renderedAt: p.datetime(),
  },
});

/** A stored city. */
export type DirectoryCityRow = InferEntity<typeof DirectoryCity>;
/** A stored community. */
export type DirectoryCommunityRow = InferEntity<typeof DirectoryCommunity>;

/** The directory's entities (technical schema). */
export const directoryEntities = [DirectoryCity, DirectoryCommunity, DirectoryPage] as const;

/** A stored page. */
export type DirectoryPageRow = InferEntity<typeof DirectoryPage>;
