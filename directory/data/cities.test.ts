import { PhoneNumberUtil } from "google-libphonenumber";
import { beforeAll, describe, expect, it } from "vitest";
import {
  type CityRecord,
  directoryCityCount,
  eligibleCities,
  type GeoNamesCity,
  geonamesCredit,
  geonamesCreditHtml,
  loadGeoNamesCities,
  neighbourCount,
  perStateMinimum,
  selectCities,
} from "./cities.ts";
import { haversineKm } from "./geo.ts";
import { slugify } from "./slug.ts";
import { usStates } from "./states.ts";

let rows: readonly GeoNamesCity[];
let cities: CityRecord[];

beforeAll(() => {
  rows = loadGeoNamesCities();
  cities = selectCities(rows);
});

describe("selectCities", () => {
  it("selects exactly 977 cities covering the 50 states and DC", () => {
    expect(cities).toHaveLength(directoryCityCount);
    expect(directoryCityCount).toBe(977);
    const states = new Set(cities.map((c) => c.stateCode));
    expect(states.size).toBe(51);
    expect([...states].sort()).toEqual(usStates.map((s) => s.code).sort());
    expect(usStates).toHaveLength(51);
  });

  it("includes every jurisdiction's largest eligible city", () => {
    const top = new Map<string, GeoNamesCity>();
    for (const r of eligibleCities(rows)) if (!top.has(r.adminCode)) top.set(r.adminCode, r);
    expect(top.size).toBe(51);
    const ids = new Set(cities.map((c) => c.geonamesId));
    for (const r of top.values()) expect(ids.has(r.cityId), `${r.name}, ${r.adminCode}`).toBe(true);
    const byId = new Map(cities.map((c) => [c.id, c]));
    expect(byId.get("new-york-city-ny")?.rank).toBe(1);
    expect(byId.get("washington-dc-dc")?.name).toBe("Washington, D.C.");
    expect(byId.get("anchorage-ak")?.stateName).toBe("Alaska");
    expect(byId.get("honolulu-hi")).toBeDefined();
  });

  it("gives every jurisdiction the per-state minimum where it has that many", () => {
    const available = new Map<string, number>();
    for (const r of eligibleCities(rows)) available.set(r.adminCode, (available.get(r.adminCode) ?? 0) + 1);
    const counts = new Map<string, number>();
    for (const c of cities) counts.set(c.stateCode, (counts.get(c.stateCode) ?? 0) + 1);
    for (const s of usStates) {
      expect(counts.get(s.code) ?? 0, s.code).toBeGreaterThanOrEqual(
        Math.min(perStateMinimum, available.get(s.code) ?? 0),
      );
    }
    expect(counts.get("DC")).toBe(5);
    expect(Math.min(...[...counts.entries()].filter(([s]) => s !== "DC").map(([, n]) => n))).toBe(perStateMinimum);
  });

  it("keeps only living places with a population, ranked by population then id", () => {
    const raw = new Map(rows.map((r) => [r.cityId, r]));
    for (const [i, c] of cities.entries()) {
      const r = raw.get(c.geonamesId);
      expect(r?.country).toBe("US");
      expect(["PPLX", "PPLQ", "PPLH", "PPLW", "PPLL"]).not.toContain(r?.featureCode);
      expect(c.population).toBeGreaterThan(0);
      expect(c.rank).toBe(i + 1);
      const prev = cities[i - 1];
      if (prev !== undefined) {
        expect(
          prev.population > c.population || (prev.population === c.population && prev.geonamesId < c.geonamesId),
        ).toBe(true);
      }
      expect(c.latitude).toBe(r?.loc.coordinates[1]);
      expect(c.longitude).toBe(r?.loc.coordinates[0]);
    }
  });

  it("gives unique slug ids of the form <name>-<state>", () => {
    expect(new Set(cities.map((c) => c.id)).size).toBe(cities.length);
    expect(new Set(cities.map((c) => c.geonamesId)).size).toBe(cities.length);
    for (const c of cities) {
      expect(c.id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*-[a-z]{2}$/);
      expect(c.id).toBe(`${slugify(c.name)}-${c.stateCode.toLowerCase()}`);
    }
  });

  it("is deterministic", () => {
    expect(JSON.stringify(selectCities(rows))).toBe(JSON.stringify(cities));
  });

  it("lists each city's nearest neighbours, closest first", () => {
    const byId = new Map(cities.map((c) => [c.id, c]));
    for (const c of cities) {
      expect(c.neighbours).toHaveLength(neighbourCount);
      const ids = c.neighbours.map((n) => n.id);
      expect(ids).not.toContain(c.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const [i, n] of c.neighbours.entries()) {
        const other = byId.get(n.id);
        if (other === undefined) throw new Error(`unknown neighbour ${n.id}`);
        expect(Math.abs(haversineKm(c, other) - n.distanceKm)).toBeLessThanOrEqual(0.05 + 1e-9);
        if (i > 0) expect(n.distanceKm).toBeGreaterThanOrEqual(c.neighbours[i - 1]?.distanceKm ?? 0);
      }
    }
    // Spot-check the O(n²) scan against a brute-force nearest for a few cities.
    for (const c of [cities[0], cities[500], cities[976]]) {
      if (c === undefined) continue;
      const nearest = cities
        .filter((o) => o.id !== c.id)
        .reduce((best, o) => (haversineKm(c, o) < haversineKm(c, best) ? o : best));
      expect(c.neighbours[0]?.id).toBe(nearest.id);
    }
    // With at least 8 cities each, Alaska's and Hawaii's neighbours stay inside the state.
    for (const c of cities.filter((x) => x.stateCode === "AK" || x.stateCode === "HI")) {
      for (const n of c.neighbours) expect(byId.get(n.id)?.stateCode).toBe(c.stateCode);
    }
  });
});

describe("state table", () => {
  it("has real area codes that take fictional 555-01xx lines", () => {
    const util = PhoneNumberUtil.getInstance();
    for (const s of usStates) {
      expect(s.areaCodes.length, s.code).toBeGreaterThan(0);
      for (const area of s.areaCodes) {
        const n = util.parse(`+1${area}5550100`);
        expect(util.isValidNumberForRegion(n, "US"), `${s.code} ${area}`).toBe(true);
      }
      expect(s.zipPrefixes[0]).toBeLessThanOrEqual(s.zipPrefixes[1]);
      expect(s.costIndex).toBeGreaterThan(0.5);
      expect(s.costIndex).toBeLessThan(2);
    }
  });
});

describe("credit", () => {
  it("credits GeoNames under CC BY 4.0", () => {
    for (const text of [geonamesCredit, geonamesCreditHtml]) {
      expect(text).toContain("GeoNames");
      expect(text).toContain("CC BY 4.0");
      expect(text).toContain("https://creativecommons.org/licenses/by/4.0/");
      expect(text).toContain("https://www.geonames.org/");
    }
  });
});
