/**
 * Local SEO: NAP consistency across citations, business-profile completeness, LocalBusiness JSON-LD.
 *
 * Method: the request's business is the canonical (primary) source. Name, address, phone and
 * website of the business and of every citation are normalised (see `local-seo-nap.ts`) and each
 * listed field is compared with the canonical one: Jaro-Winkler for names, component-wise for
 * addresses (Jaro-Winkler for street and city, exact for house number, unit, state and ZIP),
 * exact E.164 for phones and exact normalised URLs for websites. A field is consistent when its
 * similarity reaches the threshold. A citation scores 30 (name) + 40 (address) + 30 (phone) for its
 * consistent fields, out of the fields the business has (a field the citation leaves out earns
 * nothing: an incomplete citation is a weaker one); the overall score is their mean. Issues
 * group the sources per problem with what each lists, and when most listings agree with each
 * other on a value other than the canonical one, the canonical value itself is questioned.
 */
import { create } from "@bufbuild/protobuf";
import {
  type AnalyzeLocalSeoRequest,
  type AnalyzeLocalSeoResponse,
  AnalyzeLocalSeoResponseSchema,
  type Citation,
  type CitationConsistency,
  CitationConsistencySchema,
  type FieldConsistency,
  FieldConsistencySchema,
  FindingSeverity,
  type LocalBusinessProfile,
  type LocalSeoIssue,
  LocalSeoIssueSchema,
  NapField,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { buildLocalBusinessJsonLd, validateLocalBusinessJsonLd } from "../local/json-ld.ts";
import {
  compareAddresses,
  formatParsedAddress,
  hasAddressParts,
  isSupportedPhoneRegion,
  jaroWinkler,
  normalizeBusinessName,
  normalizePhone,
  normalizeWebsite,
  type ParsedAddress,
  type PhoneRegion,
  parseAddressParts,
  parseAddressText,
} from "../local/nap.ts";

/** The skill needs no dependencies: it is a pure function of the request. */
export type AnalyzeLocalSeoDeps = Record<never, never>;

/** Jaro-Winkler similarity from which a text field counts as consistent when the request leaves it 0. */
export const defaultMatchThreshold = 0.92;

/** Google Business Profile's limit for the business description, in characters. */
const profileDescriptionLimit = 750;

const weights: ReadonlyMap<NapField, number> = new Map<NapField, number>([
  [NapField.NAME, 30],
  [NapField.ADDRESS, 40],
  [NapField.PHONE, 30],
]);

const fieldLabels: ReadonlyMap<NapField, string> = new Map<NapField, string>([
  [NapField.NAME, "name"],
  [NapField.ADDRESS, "address"],
  [NapField.PHONE, "phone"],
  [NapField.WEBSITE, "website"],
]);

/** A listed value in the form comparisons use. */
type Comparable = string | ParsedAddress;

/** One field of one citation, compared. */
interface FieldResult {
  readonly consistency: FieldConsistency;
  /** The listed value for comparing listings with each other (undefined when not listed). */
  readonly listed: Comparable | undefined;
  /** Why it is inconsistent, for the issue message. */
  readonly detail: string;
  /** An address that differs only in its unit. */
  readonly unitsOnly: boolean;
  /** A listed phone that is not a valid number. */
  readonly invalidPhone: boolean;
}

/** The canonical business, normalised. */
interface Canonical {
  readonly name: string;
  readonly address: ParsedAddress;
  readonly phone: string;
  readonly phoneE164: string;
  readonly website: string;
}

/** Runs the local-SEO analysis on a request. */
export async function analyzeLocalSeo(
  _deps: AnalyzeLocalSeoDeps,
  req: AnalyzeLocalSeoRequest,
): Promise<AnalyzeLocalSeoResponse> {
  const business = checkBusiness(req);
  const threshold = checkThreshold(req.matchThreshold);
  const region = phoneRegion(req, business);
  if (req.citations.length > 500) throw new InvalidInputError("citations", "at most 500 citations per request");
  req.citations.forEach(checkCitation);

  const canonicalPhone = business.phone.trim() === "" ? undefined : normalizePhone(business.phone, region);
  const canonical: Canonical = {
    name: normalizeBusinessName(business.name),
    address: parseAddressParts(business.address),
    phone: canonicalPhone?.comparable ?? "",
    phoneE164: canonicalPhone?.e164 ?? "",
    website: normalizeWebsite(business.website),
  };

  const compared = req.citations.map((c) => compareCitation(c, canonical, region, threshold));
  const citations = compared.map((fields, i) => citationConsistency(req.citations[i] as Citation, fields));
  const overall =
    citations.length === 0 ? 100 : round2(citations.reduce((s, c) => s + c.consistencyScore, 0) / citations.length);

  const profile = profileCheck(business, canonical, region);
  const issues = [...napIssues(req.citations, compared, business, canonical, threshold), ...profile.issues].sort(
    (a, b) => a.severity - b.severity,
  );

  const doc = buildLocalBusinessJsonLd(business, canonical.phoneE164 || business.phone.trim());
  return create(AnalyzeLocalSeoResponseSchema, {
    citations,
    overallConsistencyScore: overall,
    issues,
    localBusinessJsonLd: JSON.stringify(doc),
    jsonLdValidation: validateLocalBusinessJsonLd(doc),
    canonicalPhoneE164: canonical.phoneE164,
    missingProfileFields: profile.missing,
    profileCompleteness: profile.completeness,
  });
}

// ---------------------------------------------------------------------------------------------
// Input checks (beyond the contract's rules, which the server enforces before the skill runs)

type CheckedBusiness = LocalBusinessProfile & { address: NonNullable<LocalBusinessProfile["address"]> };

function checkBusiness(req: AnalyzeLocalSeoRequest): CheckedBusiness {
  const b = req.business;
  if (b === undefined) throw new InvalidInputError("business", "the canonical business is required");
  if (b.name.trim() === "" || normalizeBusinessName(b.name) === "") {
    throw new InvalidInputError("business.name", "the business name has no letters or digits");
  }
  if (b.address === undefined) throw new InvalidInputError("business.address", "the canonical address is required");
  if (!b.address.streetLines.some((l) => l.trim() !== "")) {
    throw new InvalidInputError(
      "business.address.street_lines",
      "at least one street line is needed to compare addresses across listings",
    );
  }
  return b as CheckedBusiness;
}

function checkThreshold(t: number): number {
  if (!Number.isFinite(t) || t < 0 || t > 1) throw new InvalidInputError("match_threshold", "must be between 0 and 1");
  return t === 0 ? defaultMatchThreshold : t;
}

/** The region for phones without a country code: the request's, else the address's country, else US. */
function phoneRegion(req: AnalyzeLocalSeoRequest, business: CheckedBusiness): PhoneRegion {
  const [field, region] =
    req.defaultRegion !== ""
      ? ["default_region", req.defaultRegion]
      : business.address.countryCode !== ""
        ? ["business.address.country_code", business.address.countryCode]
        : ["default_region", "US"];
  if (!isSupportedPhoneRegion(region)) {
    throw new InvalidInputError(field, `"${region}" is not an ISO 3166-1 region with a phone numbering plan`);
  }
  return region;
}

function checkCitation(c: Citation, i: number): void {
  if (c.sourceName.trim() === "") throw new InvalidInputError(`citations[${i}].source_name`, "must not be blank");
  const listsSomething =
    c.name.trim() !== "" ||
    hasAddressParts(c.address) ||
    c.addressText.trim() !== "" ||
    c.phone.trim() !== "" ||
    c.website.trim() !== "";
  if (!listsSomething) {
    throw new InvalidInputError(`citations[${i}]`, "lists none of name, address, phone or website: nothing to compare");
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison

function field(
  napField: NapField,
  canonicalValue: string,
  listedValue: string,
  similarity: number,
  threshold: number,
  present: boolean,
): FieldConsistency {
  return create(FieldConsistencySchema, {
    field: napField,
    canonicalValue,
    listedValue,
    similarity,
    consistent: present && similarity >= threshold,
    present,
  });
}

function notListed(napField: NapField, canonicalValue: string): FieldResult {
  return {
    consistency: field(napField, canonicalValue, "", 0, 1, false),
    listed: undefined,
    detail: "",
    unitsOnly: false,
    invalidPhone: false,
  };
}

/** Compares one citation with the canonical business: name and address always, phone and website when the business has them. */
function compareCitation(c: Citation, canon: Canonical, region: PhoneRegion, threshold: number): FieldResult[] {
  const results: FieldResult[] = [];

  const name = normalizeBusinessName(c.name);
  if (c.name.trim() === "") results.push(notListed(NapField.NAME, canon.name));
  else {
    const s = jaroWinkler(canon.name, name);
    results.push({
      consistency: field(NapField.NAME, canon.name, name, s, threshold, true),
      listed: name,
      detail: `"${c.name.trim()}" (similarity ${s.toFixed(2)})`,
      unitsOnly: false,
      invalidPhone: false,
    });
  }

  const canonAddress = formatParsedAddress(canon.address);
  const address = hasAddressParts(c.address)
    ? parseAddressParts(c.address)
    : c.addressText.trim() !== ""
      ? parseAddressText(c.addressText, canon.address.city)
      : undefined;
  if (address === undefined) results.push(notListed(NapField.ADDRESS, canonAddress));
  else {
    const cmp = compareAddresses(canon.address, address, threshold);
    results.push({
      consistency: field(NapField.ADDRESS, canonAddress, formatParsedAddress(address), cmp.similarity, threshold, true),
      listed: address,
      detail: `"${formatParsedAddress(address)}" (${cmp.differences.join("; ")})`,
      unitsOnly: cmp.unitsOnly,
      invalidPhone: false,
    });
  }

  if (canon.phone !== "") {
    if (c.phone.trim() === "") results.push(notListed(NapField.PHONE, canon.phone));
    else {
      const phone = normalizePhone(c.phone, region);
      const s = phone.comparable === canon.phone ? 1 : 0;
      results.push({
        consistency: field(NapField.PHONE, canon.phone, phone.comparable, s, threshold, true),
        listed: phone.comparable,
        detail: phone.e164 === "" ? `"${c.phone.trim()}" (not a valid number)` : phone.e164,
        unitsOnly: false,
        invalidPhone: phone.e164 === "",
      });
    }
  }

  if (canon.website !== "") {
    if (c.website.trim() === "") results.push(notListed(NapField.WEBSITE, canon.website));
    else {
      const website = normalizeWebsite(c.website);
      const s = website === canon.website ? 1 : 0;
      results.push({
        consistency: field(NapField.WEBSITE, canon.website, website, s, threshold, true),
        listed: website,
        detail: website,
        unitsOnly: false,
        invalidPhone: false,
      });
    }
  }
  return results;
}

function citationConsistency(c: Citation, results: readonly FieldResult[]): CitationConsistency {
  let earned = 0;
  let total = 0;
  for (const { consistency: f } of results) {
    const w = weights.get(f.field) ?? 0;
    total += w;
    if (f.consistent) earned += w;
  }
  return create(CitationConsistencySchema, {
    sourceName: c.sourceName,
    url: c.url,
    fields: results.map((r) => r.consistency),
    consistencyScore: total === 0 ? 100 : round2((100 * earned) / total),
    // Only what the source lists counts here; leaving a field out shows in the score and issues.
    consistent: results.every((r) => !r.consistency.present || r.consistency.consistent),
  });
}

/** Whether two listed values of the same field agree with each other. */
function agree(napField: NapField, a: Comparable, b: Comparable, threshold: number): boolean {
  if (typeof a === "string" || typeof b === "string") {
    return napField === NapField.NAME ? jaroWinkler(String(a), String(b)) >= threshold : a === b;
  }
  return compareAddresses(a, b, threshold).similarity >= threshold;
}

// ---------------------------------------------------------------------------------------------
// Issues

function issue(
  ruleId: string,
  severity: FindingSeverity,
  napField: NapField,
  sourceNames: string[],
  message: string,
  recommendation: string,
): LocalSeoIssue {
  return create(LocalSeoIssueSchema, { ruleId, severity, field: napField, sourceNames, message, recommendation });
}

function displayAddress(b: CheckedBusiness): string {
  const a = b.address;
  const stateZip = [a.region.trim(), a.postalCode.trim()].filter((s) => s !== "").join(" ");
  return [...a.streetLines.map((l) => l.trim()), a.locality.trim(), stateZip].filter((s) => s !== "").join(", ");
}

function napIssues(
  cits: readonly Citation[],
  compared: readonly FieldResult[][],
  business: CheckedBusiness,
  canon: Canonical,
  threshold: number,
): LocalSeoIssue[] {
  const canonicalDisplay: ReadonlyMap<NapField, string> = new Map<NapField, string>([
    [NapField.NAME, business.name.trim()],
    [NapField.ADDRESS, displayAddress(business)],
    [NapField.PHONE, canon.phoneE164 || business.phone.trim()],
    [NapField.WEBSITE, business.website],
  ]);
  const out: LocalSeoIssue[] = [];
  for (const napField of [NapField.NAME, NapField.ADDRESS, NapField.PHONE, NapField.WEBSITE]) {
    const label = fieldLabels.get(napField) as string;
    const want = canonicalDisplay.get(napField) as string;
    const rows = compared.flatMap((fields, i) => {
      const r = fields.find((f) => f.consistency.field === napField);
      return r === undefined ? [] : [{ source: (cits[i] as Citation).sourceName, r }];
    });
    if (rows.length === 0) continue;
    const group = (pick: (r: FieldResult) => boolean) => rows.filter((row) => pick(row.r));
    const listing = (g: { source: string; r: FieldResult }[]) => g.map((row) => `${row.source}: ${row.r.detail}`);

    const missing = group((r) => !r.consistency.present);
    if (missing.length > 0) {
      out.push(
        issue(
          `nap.${label}-missing`,
          FindingSeverity.NOTICE,
          napField,
          missing.map((m) => m.source),
          `${missing.length} listing(s) do not show the ${label}.`,
          `Add the ${label} "${want}" to these listings: complete citations count for more.`,
        ),
      );
    }
    const wrong = group((r) => r.consistency.present && !r.consistency.consistent);
    const invalid = wrong.filter((w) => w.r.invalidPhone);
    if (invalid.length > 0) {
      out.push(
        issue(
          "nap.phone-invalid",
          FindingSeverity.WARNING,
          napField,
          invalid.map((m) => m.source),
          `Phone listed is not a valid number (missing area code or mistyped): ${listing(invalid).join("; ")}.`,
          `Correct it to ${want}.`,
        ),
      );
    }
    const unitOnly = wrong.filter((w) => w.r.unitsOnly);
    if (unitOnly.length > 0) {
      out.push(
        issue(
          "nap.suite-mismatch",
          FindingSeverity.WARNING,
          napField,
          unitOnly.map((m) => m.source),
          `Listed with another suite or unit than "${want}": ${listing(unitOnly).join("; ")}.`,
          `Correct the suite or unit to match "${want}" exactly.`,
        ),
      );
    }
    const mismatched = wrong.filter((w) => !w.r.invalidPhone && !w.r.unitsOnly);
    if (mismatched.length > 0) {
      const severity =
        napField === NapField.ADDRESS || napField === NapField.PHONE
          ? FindingSeverity.CRITICAL
          : FindingSeverity.WARNING;
      const why =
        napField === NapField.PHONE
          ? " Callers reach another (perhaps old) number."
          : napField === NapField.ADDRESS
            ? " Maps and visitors are sent elsewhere, and search engines lose confidence in the location."
            : "";
      out.push(
        issue(
          `nap.${label}-mismatch`,
          severity,
          napField,
          mismatched.map((m) => m.source),
          `${mismatched.length} of ${rows.length} listing(s) show another ${label} than "${want}": ${listing(mismatched).join("; ")}.${why}`,
          `Update these listings to the canonical ${label} "${want}".`,
        ),
      );
    }

    // Greedy clustering of the disagreeing listings: does a majority agree on another value?
    const listed = rows.filter((row) => row.r.consistency.present);
    const clusters: { value: Comparable; display: string; sources: string[] }[] = [];
    for (const w of wrong) {
      const value = w.r.listed as Comparable;
      const cluster = clusters.find((c) => agree(napField, c.value, value, threshold));
      if (cluster !== undefined) cluster.sources.push(w.source);
      else clusters.push({ value, display: w.r.consistency.listedValue, sources: [w.source] });
    }
    const top = clusters.sort((a, b) => b.sources.length - a.sources.length)[0];
    if (top !== undefined && top.sources.length >= 2 && 2 * top.sources.length > listed.length) {
      out.push(
        issue(
          "nap.canonical-disputed",
          FindingSeverity.WARNING,
          napField,
          top.sources,
          `${top.sources.length} of ${listed.length} listings agree on the ${label} "${top.display}", not the profile's "${want}".`,
          `Confirm the profile's ${label}: if it changed, update the profile first; otherwise correct these listings.`,
        ),
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Business profile

interface ProfileCheck {
  readonly missing: string[];
  readonly completeness: number;
  readonly issues: LocalSeoIssue[];
}

function profileCheck(b: CheckedBusiness, canon: Canonical, region: string): ProfileCheck {
  const missing: string[] = [];
  const issues: LocalSeoIssue[] = [];
  let filled = 0;
  let total = 0;
  const check = (
    name: string,
    ok: boolean,
    ruleId: string,
    severity: FindingSeverity,
    message: string,
    recommendation: string,
  ): void => {
    total++;
    if (ok) filled++;
    else {
      missing.push(name);
      issues.push(issue(ruleId, severity, NapField.UNSPECIFIED, [], message, recommendation));
    }
  };
  // The name is checked on input; it counts as a filled field.
  total++;
  filled++;

  const a = b.address;
  const addressGaps = (
    [
      ["address.locality", a.locality],
      ["address.region", a.region],
      ["address.postal_code", a.postalCode],
    ] as const
  ).filter(([, v]) => v.trim() === "");
  total++;
  if (addressGaps.length === 0) filled++;
  else {
    missing.push(...addressGaps.map(([p]) => p));
    issues.push(
      issue(
        "profile.address-incomplete",
        FindingSeverity.CRITICAL,
        NapField.UNSPECIFIED,
        [],
        `The address has no ${addressGaps.map(([p]) => p.slice("address.".length)).join(", ")}.`,
        "Complete the address: listings, maps and the LocalBusiness markup match on the full address.",
      ),
    );
  }

  check(
    "phone",
    b.phone.trim() !== "",
    "profile.phone-missing",
    FindingSeverity.WARNING,
    "The profile has no phone number.",
    "Add the main local phone number and use the same number on every listing.",
  );
  if (b.phone.trim() !== "" && canon.phoneE164 === "") {
    issues.push(
      issue(
        "profile.phone-invalid",
        FindingSeverity.WARNING,
        NapField.PHONE,
        [],
        `"${b.phone.trim()}" is not a valid phone number in region ${region}.`,
        "Correct the phone number (with area code) so it can be written in international form.",
      ),
    );
  }
  check(
    "website",
    b.website.trim() !== "",
    "profile.website-missing",
    FindingSeverity.WARNING,
    "The profile has no website.",
    "Add the business's own page (the community page, not a directory listing).",
  );
  check(
    "categories",
    b.categories.some((c) => c.trim() !== ""),
    "profile.categories-missing",
    FindingSeverity.WARNING,
    "The profile has no business category.",
    'Add the primary category first (for example "Assisted living facility"), then secondary ones.',
  );
  check(
    "opening_hours",
    b.openingHours.length > 0,
    "profile.hours-missing",
    FindingSeverity.WARNING,
    "The profile has no opening hours.",
    "Add opening hours (office or visiting hours) for every day.",
  );
  check(
    "geo",
    b.geo !== undefined && !(b.geo.latitude === 0 && b.geo.longitude === 0),
    "profile.geo-missing",
    FindingSeverity.NOTICE,
    "The profile has no coordinates.",
    "Add the latitude and longitude of the entrance.",
  );
  check(
    "description",
    b.description.trim() !== "",
    "profile.description-missing",
    FindingSeverity.NOTICE,
    "The profile has no description.",
    `Add a description of up to ${profileDescriptionLimit} characters: services, care types, what sets it apart.`,
  );
  if ([...b.description.trim()].length > profileDescriptionLimit) {
    issues.push(
      issue(
        "profile.description-too-long",
        FindingSeverity.NOTICE,
        NapField.UNSPECIFIED,
        [],
        `The description has ${[...b.description.trim()].length} characters; business profiles show at most ${profileDescriptionLimit}.`,
        `Shorten it to ${profileDescriptionLimit} characters or fewer, most important first.`,
      ),
    );
  }
  check(
    "images",
    b.images.length > 0,
    "profile.images-missing",
    FindingSeverity.NOTICE,
    "The profile has no images.",
    "Add photos of the building, rooms and common areas.",
  );
  check(
    "price_range",
    b.priceRange.trim() !== "",
    "profile.price-range-missing",
    FindingSeverity.NOTICE,
    "The profile has no price range.",
    'Add a price range, for example "$$$" or "$4,000–$6,500 per month".',
  );
  return { missing, completeness: round2((100 * filled) / total), issues };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
