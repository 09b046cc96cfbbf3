/**
 * LocalBusiness JSON-LD for the canonical business of a local-SEO analysis, and its rich-result
 * check (Google requires `name` and `address`; the recommended properties are those the profile
 * can supply: address parts, geo, opening hours, price range, telephone, url, image).
 *
 * TODO(schema-org-builders): switch to `buildLocalBusiness` / `validateJsonLd` from
 * `lib/schema-org/` once that module lands; this file builds the same small node with schema-dts
 * types so the skill does not depend on work in progress.
 */
import { create } from "@bufbuild/protobuf";
import type {
  LocalBusinessLeaf,
  OpeningHoursSpecification,
  DayOfWeek as SchemaDayOfWeek,
  WithContext,
} from "schema-dts";
import {
  DayOfWeek,
  type EntityValidation,
  EntityValidationSchema,
  type LocalBusinessProfile,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";

const dayNames: ReadonlyMap<number, SchemaDayOfWeek> = new Map<number, SchemaDayOfWeek>([
  [DayOfWeek.MONDAY, "Monday"],
  [DayOfWeek.TUESDAY, "Tuesday"],
  [DayOfWeek.WEDNESDAY, "Wednesday"],
  [DayOfWeek.THURSDAY, "Thursday"],
  [DayOfWeek.FRIDAY, "Friday"],
  [DayOfWeek.SATURDAY, "Saturday"],
  [DayOfWeek.SUNDAY, "Sunday"],
]);

/** A LocalBusiness node with its context. */
export type LocalBusinessJsonLd = WithContext<LocalBusinessLeaf>;

/** Sets `key` on `target` only when `value` is non-empty, so missing data stays visibly missing. */
function setIf<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | "" | undefined): void {
  if (value !== undefined && value !== "" && !(Array.isArray(value) && value.length === 0)) target[key] = value as T[K];
}

/**
 * Builds the LocalBusiness JSON-LD of the canonical profile; `telephone` is the E.164 form when
 * the phone parses, else the phone as written.
 */
export function buildLocalBusinessJsonLd(business: LocalBusinessProfile, telephone: string): LocalBusinessJsonLd {
  const doc: LocalBusinessJsonLd = { "@context": "https://schema.org", "@type": "LocalBusiness" };
  setIf(doc, "@id", business.id);
  setIf(doc, "name", business.name.trim());
  const a = business.address;
  if (a !== undefined) {
    const address: Exclude<LocalBusinessLeaf["address"], string | undefined> & { "@type": "PostalAddress" } = {
      "@type": "PostalAddress",
    };
    setIf(
      address,
      "streetAddress",
      a.streetLines
        .map((l) => l.trim())
        .filter((l) => l !== "")
        .join(", "),
    );
    setIf(address, "addressLocality", a.locality.trim());
    setIf(address, "addressRegion", a.region.trim());
    setIf(address, "postalCode", a.postalCode.trim());
    setIf(address, "addressCountry", a.countryCode);
    doc.address = address;
  }
  setIf(doc, "telephone", telephone);
  setIf(doc, "url", business.website);
  if (business.geo !== undefined && !(business.geo.latitude === 0 && business.geo.longitude === 0)) {
    doc.geo = { "@type": "GeoCoordinates", latitude: business.geo.latitude, longitude: business.geo.longitude };
  }
  const hours: OpeningHoursSpecification[] = business.openingHours.map((h) => ({
    "@type": "OpeningHoursSpecification",
    dayOfWeek: h.daysOfWeek.flatMap((d) => dayNames.get(d) ?? []),
    opens: h.opens,
    closes: h.closes,
  }));
  setIf(doc, "openingHoursSpecification", hours);
  setIf(doc, "image", business.images.length === 1 ? business.images[0] : [...business.images]);
  setIf(doc, "priceRange", business.priceRange.trim());
  setIf(doc, "description", business.description.trim());
  return doc;
}

/** Checks the LocalBusiness JSON-LD against Google's required and recommended properties. */
export function validateLocalBusinessJsonLd(doc: LocalBusinessJsonLd): EntityValidation {
  const missingRequired: string[] = [];
  const missingRecommended: string[] = [];
  const warnings: string[] = [];
  if (doc.name === undefined) missingRequired.push("name");
  const address = doc.address as Record<string, unknown> | undefined;
  if (address === undefined) missingRequired.push("address");
  else {
    for (const p of ["streetAddress", "addressLocality", "addressRegion", "postalCode", "addressCountry"]) {
      if (address[p] === undefined) missingRecommended.push(`address.${p}`);
    }
  }
  for (const p of ["geo", "openingHoursSpecification", "priceRange", "telephone", "url", "image"] as const) {
    if (doc[p] === undefined) missingRecommended.push(p);
  }
  if (doc["@id"] === undefined) warnings.push("no @id: pages and other nodes cannot reference the business");
  if (typeof doc.telephone === "string" && !doc.telephone.startsWith("+")) {
    warnings.push("telephone is not in international (E.164) form: the phone did not parse as a valid number");
  }
  return create(EntityValidationSchema, {
    index: 0,
    schemaType: "LocalBusiness",
    id: typeof doc["@id"] === "string" ? doc["@id"] : "",
    missingRequired,
    missingRecommended,
    warnings,
    richResultEligible: missingRequired.length === 0,
  });
}
