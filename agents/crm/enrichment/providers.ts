/**
 * Enrichment providers: what one step of the waterfall asks, and the built-in providers that answer
 * from what the system holds, without the network.
 *
 * - `company-domain`: a work email's registrable domain is the organisation's web domain
 *   (confidence 0.9: people write from their employer's domain, though some use a personal one);
 *   the domain's label is a guess at the organisation's name (0.3: `acme` of `acme.co.uk` is
 *   "Acme", but labels are often abbreviations), below the default minimum so it only fills a
 *   field when the caller lowers `min_confidence`. Free-mail and disposable domains name no
 *   organisation: a miss.
 * - `phone`: the phone as captured, normalised to E.164 (confidence 1 for a number valid in its
 *   region's numbering plan; impossible or invalid numbers are not returned).
 * - `geography`: a US ZIP code gives the city and state (0.9: a ZIP code is named after its main
 *   post office, which some addresses in it do not use) and, from its centroid, the time zone
 *   (0.9: ZIP areas can straddle a zone boundary); a city with its state gives the time zone
 *   (0.95); a city without a state gives the most populous place of that name, with confidence
 *   0.95 × its share of the population of every place of that name.
 */
import { EnrichableField } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type FieldValue, placeText, text } from "./fields.ts";
import type { Gazetteer, Place } from "./geography.ts";
import { domainLabel, type NormalizedPhone } from "./normalize.ts";

/** The contact as providers see it: normalised, with what normalisation derived. */
export interface Subject {
  /** Lower-cased email, "" when unknown. */
  readonly email: string;
  /** Registrable domain of the email, "" when none. */
  readonly emailDomain: string;
  /** The email's domain is a free-mail or disposable provider. */
  readonly freeMail: boolean;
  /** The email's domain is a disposable provider. */
  readonly disposable: boolean;
  /** Registrable domain of the company's web domain (the `company_domain` attribute), "" when unknown. */
  readonly companyDomain: string;
  readonly givenName: string;
  readonly familyName: string;
  readonly company: string;
  /** The phone as captured (`raw_phone`, else the contact's), normalised. */
  readonly phone: NormalizedPhone;
  readonly city: string;
  readonly region: string;
  readonly postalCode: string;
  /** Country of the address, else the request's default country. */
  readonly countryCode: string;
}

/** One value a provider returned. */
export interface Found {
  readonly field: EnrichableField;
  readonly found: FieldValue;
  /** 0–1. */
  readonly confidence: number;
}

/** A normalised provider query: the inputs it uses, by name ("" values left out). Cache keys hash it. */
export type Query = Readonly<Record<string, string>>;

/** One provider of the waterfall. */
export interface EnrichmentProvider {
  /** Name callers list in `providers` (`^[a-z0-9][a-z0-9_.-]{0,63}$`). */
  readonly name: string;
  /**
   * True when answers are kept in the enrichment cache: providers over the network, which are
   * slow, rate limited or paid. Built-in ones compute their answer faster than a cache read.
   */
  readonly cached: boolean;
  /** The inputs this provider would look up, or undefined when the contact has none it can use. */
  query(subject: Subject): Query | undefined;
  /** Looks the query up; an empty list is a miss; a failure throws. */
  lookup(query: Query, signal: AbortSignal): Promise<Found[]>;
}

/** Drops empty values, so equal inputs give equal queries (and cache keys). */
export function compactQuery(q: Record<string, string>): Query | undefined {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(q)) if (v !== "") out[k] = v;
  return Object.keys(out).length === 0 ? undefined : out;
}

/** "Acme" of `acme`, "Blue Sky" of `blue-sky`. */
function nameOfLabel(label: string): string {
  return label
    .split(/[-_]+/)
    .filter((w) => w !== "")
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(" ");
}

/** Email domain → organisation domain and a guess at its name. */
export function companyDomainProvider(): EnrichmentProvider {
  return {
    name: "company-domain",
    cached: false,
    query: (s) => (s.emailDomain === "" || s.freeMail ? undefined : { domain: s.emailDomain }),
    lookup: async (q) => {
      const domain = q.domain ?? "";
      const found: Found[] = [
        { field: EnrichableField.COMPANY_DOMAIN, found: { value: text(domain) }, confidence: 0.9 },
      ];
      const name = nameOfLabel(domainLabel(domain));
      if (name !== "" && name.length <= 200) {
        found.push({ field: EnrichableField.COMPANY_NAME, found: { value: text(name) }, confidence: 0.3 });
      }
      return found;
    },
  };
}

/** The captured phone in E.164. */
export function phoneProvider(): EnrichmentProvider {
  return {
    name: "phone",
    cached: false,
    query: (s) => (s.phone.valid ? { phone: s.phone.e164 } : undefined),
    lookup: async (q) => [{ field: EnrichableField.PHONE, found: { value: text(q.phone ?? "") }, confidence: 1 }],
  };
}

function cityFound(place: Place, confidence: number): Found {
  return {
    field: EnrichableField.CITY,
    found: { value: text(placeText(place.city, place.region)), place: { city: place.city, region: place.region } },
    confidence,
  };
}

/** Postal code or city → city, region and time zone, from the gazetteer. */
export function geographyProvider(gazetteer: Gazetteer): EnrichmentProvider {
  return {
    name: "geography",
    cached: false,
    query: (s) =>
      compactQuery(
        s.postalCode !== ""
          ? { postal_code: s.postalCode.trim().toUpperCase(), country: s.countryCode }
          : {
              city: s.city.trim(),
              region: s.city.trim() === "" ? "" : s.region.trim().toUpperCase(),
              country: s.countryCode,
            },
      ),
    lookup: async (q) => {
      const country = q.country ?? "";
      const out: Found[] = [];
      const zone = (p: Place, confidence: number) => {
        const tz = gazetteer.timeZoneAt(p.latitude, p.longitude);
        if (tz !== "") out.push({ field: EnrichableField.TIME_ZONE, found: { value: text(tz) }, confidence });
      };
      if (q.postal_code !== undefined) {
        const place = gazetteer.byPostcode(q.postal_code, country);
        if (place !== undefined) {
          out.push(cityFound(place, 0.9));
          zone(place, 0.9);
        }
        return out;
      }
      if (q.city === undefined) return out;
      const match = gazetteer.byCity(q.city, q.region ?? "", country);
      if (match === undefined) return out;
      const confidence = Math.round(0.95 * match.share * 1000) / 1000;
      out.push(cityFound(match.place, confidence));
      zone(match.place, confidence);
      return out;
    },
  };
}
