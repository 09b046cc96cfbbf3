import { PhoneNumberUtil } from "google-libphonenumber";
import { beforeAll, describe, expect, it } from "vitest";
import { type CityRecord, selectCities } from "./cities.ts";
import {
  allocateCommunities,
  type CommunityRecord,
  careTypes,
  defaultDirectorySeed,
  directoryCommunityCount,
  generateCommunities,
  maxCommunityDistanceKm,
} from "./communities.ts";
import { hashDirectory } from "./dataset.ts";
import { haversineKm } from "./geo.ts";
import { stateByCode } from "./states.ts";

/** SHA-256 of the published sample data (seed `marketing-mesh/directory/v1`); change it only on purpose. */
const publishedHash = "767becca0494dd0ee4e8acb981e25944feb57b04ac81f91e4430dbe791bccc69";

let cities: CityRecord[];
let communities: CommunityRecord[];

beforeAll(() => {
  cities = selectCities();
  communities = generateCommunities(cities);
});

describe("generateCommunities", () => {
  it("generates exactly 4,757 communities, at least one per city, more for bigger cities", () => {
    expect(directoryCommunityCount).toBe(4757);
    expect(communities).toHaveLength(4757);
    const perCity = new Map<string, number>();
    for (const c of communities) perCity.set(c.cityId, (perCity.get(c.cityId) ?? 0) + 1);
    expect(perCity.size).toBe(cities.length);
    const counts = cities.map((c) => perCity.get(c.id) ?? 0);
    expect(counts).toEqual(allocateCommunities(cities, 4757));
    expect(Math.min(...counts)).toBeGreaterThanOrEqual(1);
    // Cities are in population order, so the counts never increase along the list.
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeLessThanOrEqual(counts[i - 1] ?? 0);
    expect(counts[0]).toBeGreaterThan(counts[counts.length - 1] ?? 0);
  });

  it("lists communities in city order, by id within a city, with unique slug ids", () => {
    const rank = new Map(cities.map((c) => [c.id, c.rank]));
    for (let i = 1; i < communities.length; i++) {
      const a = communities[i - 1];
      const b = communities[i];
      if (a === undefined || b === undefined) continue;
      const ra = rank.get(a.cityId) ?? 0;
      const rb = rank.get(b.cityId) ?? 0;
      expect(ra < rb || (ra === rb && a.id < b.id)).toBe(true);
    }
    expect(new Set(communities.map((c) => c.id)).size).toBe(communities.length);
    for (const c of communities) {
      expect(c.id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(c.id.endsWith(`-${c.cityId}`)).toBe(true);
    }
  });

  it("labels every record as sample data", () => {
    for (const c of communities) {
      expect(c.sample).toBe(true);
      expect(c.description).toMatch(/^Sample listing \(fictional/);
    }
  });

  it(`places communities within ${maxCommunityDistanceKm} km of their city`, () => {
    const byId = new Map(cities.map((c) => [c.id, c]));
    let farthest = 0;
    for (const c of communities) {
      const city = byId.get(c.cityId);
      if (city === undefined) throw new Error(`unknown city ${c.cityId}`);
      const d = haversineKm(city, c);
      farthest = Math.max(farthest, d);
      expect(d, c.id).toBeLessThanOrEqual(maxCommunityDistanceKm);
      expect(d, c.id).toBeGreaterThan(0.25);
      expect(c.locality).toBe(city.name);
      expect(c.stateCode).toBe(city.stateCode);
    }
    expect(farthest).toBeGreaterThan(maxCommunityDistanceKm / 2);
  });

  it("gives every community its own valid E.164 phone on a fictional 555-01xx line of its state", () => {
    const util = PhoneNumberUtil.getInstance();
    for (const c of communities) {
      expect(c.phone).toMatch(/^\+1[2-9]\d{2}55501\d{2}$/);
      const n = util.parse(c.phone);
      expect(util.isValidNumberForRegion(n, "US"), c.phone).toBe(true);
      expect(stateByCode(c.stateCode)?.areaCodes).toContain(Number(c.phone.slice(2, 5)));
    }
    expect(new Set(communities.map((c) => c.phone)).size).toBe(communities.length);
  });

  it("gives a price range per care type with min ≤ max", () => {
    for (const c of communities) {
      expect(c.careTypes.length).toBeGreaterThan(0);
      expect(c.careTypes).toEqual(careTypes.filter((t) => c.careTypes.includes(t)));
      expect(c.prices.map((p) => p.careType)).toEqual(c.careTypes);
      for (const p of c.prices) {
        expect(Number.isInteger(p.minMonthlyUsd)).toBe(true);
        expect(p.minMonthlyUsd).toBeGreaterThanOrEqual(1500);
        expect(p.minMonthlyUsd).toBeLessThanOrEqual(p.maxMonthlyUsd);
        expect(p.maxMonthlyUsd).toBeLessThanOrEqual(25_000);
      }
    }
    // Dearer states cost more on average.
    const meanAssisted = (state: string) => {
      const ps = communities
        .filter((c) => c.stateCode === state)
        .flatMap((c) => c.prices.filter((p) => p.careType === "assisted-living").map((p) => p.minMonthlyUsd));
      return ps.reduce((a, b) => a + b, 0) / ps.length;
    };
    expect(meanAssisted("MA")).toBeGreaterThan(meanAssisted("MS"));
  });

  it("fills the remaining fields plausibly", () => {
    for (const c of communities) {
      const state = stateByCode(c.stateCode);
      if (state === undefined) throw new Error(c.stateCode);
      expect(c.postalCode).toMatch(/^\d{5}$/);
      const prefix = Number(c.postalCode.slice(0, 3));
      expect(prefix).toBeGreaterThanOrEqual(state.zipPrefixes[0]);
      expect(prefix).toBeLessThanOrEqual(state.zipPrefixes[1]);
      expect(c.streetAddress).toMatch(/^\d{3,4} [A-Z][a-z]+( [A-Z][a-z]+)* [A-Z][a-z]+$/);
      expect(c.capacity).toBeGreaterThan(0);
      expect(["units", "beds", "clients"]).toContain(c.capacityUnit);
      expect(c.yearOpened).toBeGreaterThanOrEqual(1950);
      expect(c.yearOpened).toBeLessThanOrEqual(2024);
      expect(c.amenities.length).toBeGreaterThanOrEqual(4);
      if (c.rating === null) expect(c.reviewCount).toBe(0);
      else {
        expect(c.rating).toBeGreaterThanOrEqual(1);
        expect(c.rating).toBeLessThanOrEqual(5);
        expect(c.reviewCount).toBeGreaterThan(0);
      }
    }
    const kinds = new Set(communities.map((c) => c.kind));
    expect(kinds.size).toBe(6);
    for (const t of careTypes)
      expect(
        communities.some((c) => c.careTypes.includes(t)),
        t,
      ).toBe(true);
  });
});

describe("determinism", () => {
  it("generates byte-identical data from the same seed", () => {
    const again = generateCommunities(selectCities());
    expect(JSON.stringify(again)).toBe(JSON.stringify(communities));
    expect(hashDirectory({ cities, communities: again })).toBe(hashDirectory({ cities, communities }));
  });

  it("matches the published hash and changes with the seed", () => {
    expect(hashDirectory({ cities, communities })).toBe(publishedHash);
    const other = generateCommunities(cities, { seed: `${defaultDirectorySeed}-other` });
    expect(hashDirectory({ cities, communities: other })).not.toBe(publishedHash);
  });
});
