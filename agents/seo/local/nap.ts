/**
 * NAP (name, address, phone) normalisation and comparison for local SEO.
 *
 * - Names: accents folded, lower case, periods and apostrophes dropped, `&` read as `and`, other
 *   punctuation as spaces, trailing legal suffixes (Inc, LLC, Ltd, Corp, Co…) and a leading `the`
 *   removed.
 * - Addresses: upper case, USPS Publication 28 abbreviations (street suffixes, directionals, unit
 *   designators), spelled-out ordinals as numbers, state names as their codes, ZIP+4 cut to ZIP5.
 *   A one-line address is split into street, unit, city, state and ZIP from the end (ZIP, then
 *   state, then the comma-separated city; without commas the canonical city is looked for at the
 *   end, then the text after the first street suffix is taken as the city).
 * - Phones: parsed with libphonenumber in a default region and formatted as E.164 when valid.
 * - Websites: host without `www.`, path without trailing slash, tracking parameters dropped.
 *
 * Text is compared with Jaro-Winkler (talisman). An address is only as right as its weakest part,
 * so its similarity is the minimum over its compared components: Jaro-Winkler for the street name
 * and the city, exact after normalisation (1 or 0) for house number, units, state and ZIP, which
 * Jaro-Winkler cannot tell apart ("STE 4" and "STE 200" are close strings but other doors).
 * Components one side does not list are not compared, except the street and the units.
 */
import { createRequire } from "node:module";
import libphonenumber from "google-libphonenumber";

const requireCjs = createRequire(import.meta.url);
/** talisman ships no type declarations; this is the signature of its Jaro-Winkler similarity. */
const talismanJaroWinkler = requireCjs("talisman/metrics/jaro-winkler") as (a: string, b: string) => number;

/**
 * Jaro-Winkler similarity, 0–1 (Winkler's boost: prefix up to 4 characters, scaling 0.1, applied
 * from a Jaro score of 0.7). Two empty strings are identical; one empty string matches nothing.
 */
export function jaroWinkler(a: string, b: string): number {
  if (a === b) return 1;
  if (a.length === 0 || b.length === 0) return 0;
  return talismanJaroWinkler(a, b);
}

/** Folds accents (é → e) so that differently typed names compare equal. */
function foldAccents(s: string): string {
  return s.normalize("NFKD").replace(/\p{M}/gu, "");
}

// ---------------------------------------------------------------------------------------------
// Names

const legalSuffixes = new Set([
  "inc",
  "incorporated",
  "llc",
  "lc",
  "ltd",
  "limited",
  "corp",
  "corporation",
  "co",
  "company",
  "pllc",
  "plc",
  "lp",
  "llp",
  "lllp",
]);

/** Normalises a business name for comparison, for example `The Oaks of Mesa, L.L.C.` → `oaks of mesa`. */
export function normalizeBusinessName(name: string): string {
  const words = foldAccents(name)
    .toLowerCase()
    .replace(/[.'’`]/g, "")
    .replace(/&/g, " and ")
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim()
    .split(" ")
    .filter((w) => w !== "");
  // Keep at least one word: a business called "Company" is still a name.
  while (words.length > 1 && legalSuffixes.has(words[words.length - 1] as string)) words.pop();
  if (words.length > 1 && words[0] === "the") words.shift();
  return words.join(" ");
}

// ---------------------------------------------------------------------------------------------
// Phones

const phoneUtil = libphonenumber.PhoneNumberUtil.getInstance();
/** An ISO 3166-1 region libphonenumber has a numbering plan for. */
export type PhoneRegion = libphonenumber.RegionCode;

const supportedRegions: ReadonlySet<string> = new Set(phoneUtil.getSupportedRegions());

/** True when libphonenumber knows the ISO 3166-1 region (so it can parse national numbers in it). */
export function isSupportedPhoneRegion(region: string): region is PhoneRegion {
  return supportedRegions.has(region);
}

/** A phone number normalised for comparison. */
export interface NormalizedPhone {
  /** E.164 form, or "" when the number does not parse to a valid number. */
  readonly e164: string;
  /** What comparisons use: the E.164 form, else the digits as written. */
  readonly comparable: string;
}

/** Parses a phone number written in any common format; national numbers are read in `region`. */
export function normalizePhone(raw: string, region: PhoneRegion): NormalizedPhone {
  const text = raw.trim();
  const digits = text.replace(/\D/g, "");
  try {
    const parsed = phoneUtil.parse(text, region);
    // Validity, not just possibility: a seven-digit local number is "possible" in the US but has
    // no area code, and formatting it as E.164 would invent a wrong number.
    if (phoneUtil.isValidNumber(parsed)) {
      const e164 = phoneUtil.format(parsed, libphonenumber.PhoneNumberFormat.E164);
      return { e164, comparable: e164 };
    }
  } catch {
    // Not a phone number at all; compared by its digits below.
  }
  return { e164: "", comparable: digits };
}

// ---------------------------------------------------------------------------------------------
// Websites

const trackingParameter = /^(utm_.*|gclid|fbclid|msclkid|yclid|mc_cid|mc_eid|ref)$/i;

/** Normalises a website URL for comparison, for example `https://www.Example.com/a/?utm_source=x` → `example.com/a`. */
export function normalizeWebsite(raw: string): string {
  const text = raw.trim();
  if (text === "") return "";
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`);
  } catch {
    return text.toLowerCase();
  }
  const host = url.hostname
    .toLowerCase()
    .replace(/^www\./, "")
    .replace(/\.$/, "");
  const path = url.pathname.replace(/\/+$/, "");
  const params = [...url.searchParams].filter(([k]) => !trackingParameter.test(k)).sort(([a], [b]) => (a < b ? -1 : 1));
  const query = params.length > 0 ? `?${new URLSearchParams(params).toString()}` : "";
  return `${host}${path}${query}`;
}

// ---------------------------------------------------------------------------------------------
// Addresses

/** USPS state and territory codes by upper-case name. */
const stateCodesByName: ReadonlyMap<string, string> = new Map([
  ["ALABAMA", "AL"],
  ["ALASKA", "AK"],
  ["ARIZONA", "AZ"],
  ["ARKANSAS", "AR"],
  ["CALIFORNIA", "CA"],
  ["COLORADO", "CO"],
  ["CONNECTICUT", "CT"],
  ["DELAWARE", "DE"],
  ["DISTRICT OF COLUMBIA", "DC"],
  ["FLORIDA", "FL"],
  ["GEORGIA", "GA"],
  ["HAWAII", "HI"],
  ["IDAHO", "ID"],
  ["ILLINOIS", "IL"],
  ["INDIANA", "IN"],
  ["IOWA", "IA"],
  ["KANSAS", "KS"],
  ["KENTUCKY", "KY"],
  ["LOUISIANA", "LA"],
  ["MAINE", "ME"],
  ["MARYLAND", "MD"],
  ["MASSACHUSETTS", "MA"],
  ["MICHIGAN", "MI"],
  ["MINNESOTA", "MN"],
  ["MISSISSIPPI", "MS"],
  ["MISSOURI", "MO"],
  ["MONTANA", "MT"],
  ["NEBRASKA", "NE"],
  ["NEVADA", "NV"],
  ["NEW HAMPSHIRE", "NH"],
  ["NEW JERSEY", "NJ"],
  ["NEW MEXICO", "NM"],
  ["NEW YORK", "NY"],
  ["NORTH CAROLINA", "NC"],
  ["NORTH DAKOTA", "ND"],
  ["OHIO", "OH"],
  ["OKLAHOMA", "OK"],
  ["OREGON", "OR"],
  ["PENNSYLVANIA", "PA"],
  ["RHODE ISLAND", "RI"],
  ["SOUTH CAROLINA", "SC"],
  ["SOUTH DAKOTA", "SD"],
  ["TENNESSEE", "TN"],
  ["TEXAS", "TX"],
  ["UTAH", "UT"],
  ["VERMONT", "VT"],
  ["VIRGINIA", "VA"],
  ["WASHINGTON", "WA"],
  ["WEST VIRGINIA", "WV"],
  ["WISCONSIN", "WI"],
  ["WYOMING", "WY"],
  ["AMERICAN SAMOA", "AS"],
  ["GUAM", "GU"],
  ["NORTHERN MARIANA ISLANDS", "MP"],
  ["PUERTO RICO", "PR"],
  ["US VIRGIN ISLANDS", "VI"],
  ["VIRGIN ISLANDS", "VI"],
  ["WASHINGTON DC", "DC"],
]);
const stateCodes = new Set(stateCodesByName.values());

/** The USPS code of a state written as a code or a name, else the text upper-cased. */
export function stateCode(region: string): string {
  const key = tokenize(region).join(" ");
  if (stateCodes.has(key)) return key;
  return stateCodesByName.get(key) ?? key;
}

/** USPS Publication 28 street-suffix abbreviations (C1), by the standard abbreviation. */
const suffixForms: Readonly<Record<string, readonly string[]>> = {
  ALY: ["ALLEY", "ALLEE", "ALLY"],
  ANX: ["ANNEX", "ANNX", "ANEX"],
  ARC: ["ARCADE"],
  AVE: ["AVENUE", "AV", "AVEN", "AVENU", "AVN", "AVNUE"],
  BCH: ["BEACH"],
  BLF: ["BLUFF", "BLUF"],
  BLVD: ["BOULEVARD", "BOUL", "BOULV"],
  BND: ["BEND"],
  BR: ["BRANCH", "BRNCH"],
  BRG: ["BRIDGE", "BRDGE"],
  BRK: ["BROOK"],
  BYP: ["BYPASS", "BYPA", "BYPAS", "BYPS"],
  BYU: ["BAYOU", "BAYOO"],
  CIR: ["CIRCLE", "CIRC", "CIRCL", "CRCL", "CRCLE"],
  CLB: ["CLUB"],
  CLF: ["CLIFF"],
  CMN: ["COMMON"],
  COR: ["CORNER"],
  CP: ["CAMP", "CMP"],
  CPE: ["CAPE"],
  CRES: ["CRESCENT", "CRSENT", "CRSNT"],
  CRK: ["CREEK"],
  CRSE: ["COURSE"],
  CSWY: ["CAUSEWAY", "CAUSWA"],
  CT: ["COURT"],
  CTR: ["CENTER", "CENTRE", "CEN", "CENT", "CENTR", "CNTER", "CNTR"],
  CV: ["COVE"],
  CYN: ["CANYON", "CANYN", "CNYN"],
  DL: ["DALE"],
  DM: ["DAM"],
  DR: ["DRIVE", "DRIV", "DRV"],
  DV: ["DIVIDE", "DIV", "DVD"],
  EST: ["ESTATE"],
  ESTS: ["ESTATES"],
  EXPY: ["EXPRESSWAY", "EXP", "EXPR", "EXPRESS", "EXPW"],
  EXT: ["EXTENSION", "EXTN", "EXTNSN"],
  FLD: ["FIELD"],
  FLDS: ["FIELDS"],
  FLS: ["FALLS"],
  FLT: ["FLAT"],
  FRD: ["FORD"],
  FRG: ["FORGE", "FORG"],
  FRK: ["FORK"],
  FRST: ["FOREST", "FORESTS"],
  FRY: ["FERRY", "FRRY"],
  FT: ["FORT", "FRT"],
  FWY: ["FREEWAY", "FREEWY", "FRWAY", "FRWY"],
  GDN: ["GARDEN", "GARDN", "GRDEN", "GRDN"],
  GDNS: ["GARDENS", "GRDNS"],
  GLN: ["GLEN"],
  GRN: ["GREEN"],
  GRV: ["GROVE", "GROV"],
  GTWY: ["GATEWAY", "GATEWY", "GATWAY", "GTWAY"],
  HBR: ["HARBOR", "HARB", "HARBR", "HRBOR"],
  HL: ["HILL"],
  HLS: ["HILLS"],
  HOLW: ["HOLLOW", "HLLW", "HOLLOWS", "HOLWS"],
  HTS: ["HEIGHTS", "HT"],
  HVN: ["HAVEN"],
  HWY: ["HIGHWAY", "HIGHWY", "HIWAY", "HIWY", "HWAY"],
  INLT: ["INLET"],
  IS: ["ISLAND", "ISLND"],
  JCT: ["JUNCTION", "JCTION", "JCTN", "JUNCTN", "JUNCTON"],
  KNL: ["KNOLL", "KNOL"],
  LK: ["LAKE"],
  LKS: ["LAKES"],
  LN: ["LANE"],
  LNDG: ["LANDING", "LNDNG"],
  MDW: ["MEADOW"],
  MDWS: ["MEADOWS", "MEDOWS"],
  ML: ["MILL"],
  MNR: ["MANOR"],
  MSN: ["MISSION", "MISSN", "MSSN"],
  MT: ["MOUNT", "MNT"],
  MTN: ["MOUNTAIN", "MNTAIN", "MNTN", "MOUNTIN", "MTIN"],
  ORCH: ["ORCHARD", "ORCHRD"],
  PKWY: ["PARKWAY", "PARKWY", "PKWAY", "PKY"],
  PL: ["PLACE"],
  PLN: ["PLAIN"],
  PLNS: ["PLAINS"],
  PLZ: ["PLAZA", "PLZA"],
  PNES: ["PINES"],
  PR: ["PRAIRIE", "PRR"],
  PRT: ["PORT"],
  PT: ["POINT"],
  RD: ["ROAD"],
  RDG: ["RIDGE", "RDGE"],
  RIV: ["RIVER", "RVR", "RIVR"],
  RNCH: ["RANCH", "RANCHES", "RNCHS"],
  RTE: ["ROUTE"],
  SHR: ["SHORE", "SHOAR"],
  SMT: ["SUMMIT", "SUMIT", "SUMITT"],
  SPG: ["SPRING", "SPNG", "SPRNG"],
  SPGS: ["SPRINGS", "SPNGS", "SPRNGS"],
  SQ: ["SQUARE", "SQR", "SQRE", "SQU"],
  ST: ["STREET", "STRT", "STR", "SAINT"],
  STA: ["STATION", "STATN", "STN"],
  TER: ["TERRACE", "TERR"],
  TPKE: ["TURNPIKE", "TRNPK", "TURNPK"],
  TRCE: ["TRACE", "TRACES"],
  TRL: ["TRAIL", "TRAILS", "TRLS"],
  VIS: ["VISTA", "VIST", "VST", "VSTA"],
  VLG: ["VILLAGE", "VILL", "VILLAG", "VILLG", "VILLIAGE"],
  VLY: ["VALLEY", "VALLY", "VLLY"],
  VW: ["VIEW"],
  WLS: ["WELLS"],
  XING: ["CROSSING", "CRSSNG"],
};
const streetSuffixes = new Set(Object.keys(suffixForms));

const directionals: Readonly<Record<string, string>> = {
  NORTH: "N",
  SOUTH: "S",
  EAST: "E",
  WEST: "W",
  NORTHEAST: "NE",
  NORTHWEST: "NW",
  SOUTHEAST: "SE",
  SOUTHWEST: "SW",
};
const directionalCodes = new Set(Object.values(directionals));

const ordinals = [
  "FIRST",
  "SECOND",
  "THIRD",
  "FOURTH",
  "FIFTH",
  "SIXTH",
  "SEVENTH",
  "EIGHTH",
  "NINTH",
  "TENTH",
  "ELEVENTH",
  "TWELFTH",
];
const ordinalSuffix = (n: number): string => (n === 1 ? "ST" : n === 2 ? "ND" : n === 3 ? "RD" : "TH");

/** Every word's USPS abbreviation (suffixes, directionals, `SAINT`, ordinals as `1ST`…). */
const wordAbbreviations: ReadonlyMap<string, string> = new Map([
  ...Object.entries(suffixForms).flatMap(([abbr, forms]) => forms.map((f): [string, string] => [f, abbr])),
  ...Object.entries(directionals),
  ...ordinals.map((word, i): [string, string] => [word, `${i + 1}${ordinalSuffix(i + 1)}`]),
]);

/** USPS Publication 28 secondary unit designators (C2) that take an identifier, and `#`. */
const unitDesignators: ReadonlyMap<string, string> = new Map([
  ["APARTMENT", "APT"],
  ["APT", "APT"],
  ["SUITE", "STE"],
  ["STE", "STE"],
  ["UNIT", "UNIT"],
  ["BUILDING", "BLDG"],
  ["BLDG", "BLDG"],
  ["FLOOR", "FL"],
  ["FL", "FL"],
  ["ROOM", "RM"],
  ["RM", "RM"],
  ["DEPARTMENT", "DEPT"],
  ["DEPT", "DEPT"],
  ["SPACE", "SPC"],
  ["SPC", "SPC"],
  ["LOT", "LOT"],
  ["TRAILER", "TRLR"],
  ["TRLR", "TRLR"],
  ["HANGAR", "HNGR"],
  ["HNGR", "HNGR"],
  ["#", "#"],
]);

const countryNames = new Set(["US", "USA", "UNITED STATES", "UNITED STATES OF AMERICA"]);

/** Upper-case words of a piece of address text; `#4` becomes `#`, `4`. */
function tokenize(text: string): string[] {
  return foldAccents(text)
    .toUpperCase()
    .replace(/\./g, "")
    .replace(/#/g, " # ")
    .replace(/[^A-Z0-9#/\- ]+/g, " ")
    .split(/\s+/)
    .map((t) => t.replace(/^-+|-+$/g, ""))
    .filter((t) => t !== "");
}

/** A word in its USPS abbreviation. */
function abbreviate(word: string): string {
  return wordAbbreviations.get(word) ?? word;
}

/** True for the identifier of a unit: it has a digit or is one letter (`4`, `200B`, `B`). */
function isUnitId(token: string | undefined): token is string {
  return token !== undefined && (/\d/.test(token) || /^[A-Z]$/.test(token));
}

/**
 * The unit starting at `tokens[k]`, as `[normalised unit, tokens used]`, or undefined. Handles
 * `STE 4`, `SUITE # 4`, `# 4` and `4TH FL`.
 */
function unitAt(tokens: readonly string[], k: number): [string, number] | undefined {
  const t = tokens[k] as string;
  const designator = unitDesignators.get(t);
  if (designator !== undefined) {
    const skip = designator !== "#" && tokens[k + 1] === "#" ? 1 : 0;
    const id = tokens[k + 1 + skip];
    return isUnitId(id) ? [`${designator} ${id}`, 2 + skip] : undefined;
  }
  const ordinal = /^(\d+)(ST|ND|RD|TH)$/.exec(t);
  if (ordinal !== null && unitDesignators.get(tokens[k + 1] ?? "") === "FL") return [`FL ${ordinal[1]}`, 2];
  return undefined;
}

/** An address split into normalised components; empty strings and lists where not given. */
export interface ParsedAddress {
  /** House number, for example `1200` or `12 1/2`. */
  readonly house: string;
  /** Street-name words (directionals and suffix abbreviated), for example `["N", "MAIN", "ST"]`. */
  readonly street: readonly string[];
  /** Secondary units, for example `["STE 4"]`. */
  readonly units: readonly string[];
  /** City words, abbreviated like street words. */
  readonly city: readonly string[];
  /** USPS state code. */
  readonly state: string;
  /** Five-digit ZIP (or the upper-cased postal code outside the US). */
  readonly zip: string;
}

/** Splits street-line words into house number, street words and units. */
function parseStreetTokens(tokens: readonly string[]): Pick<ParsedAddress, "house" | "street" | "units"> {
  let k = 0;
  let house = "";
  if (/^\d/.test(tokens[0] ?? "")) {
    house = tokens[0] as string;
    k = 1;
    if (/^\d+\/\d+$/.test(tokens[1] ?? "")) {
      house += ` ${tokens[1]}`;
      k = 2;
    }
  }
  const street: string[] = [];
  const units: string[] = [];
  while (k < tokens.length) {
    // A unit needs a street before it: "123 Lot 4 Rd" is not a lot.
    const unit = street.length > 0 ? unitAt(tokens, k) : undefined;
    if (unit !== undefined) {
      units.push(unit[0]);
      k += unit[1];
      continue;
    }
    street.push(tokens[k] as string);
    k++;
  }
  return { house, street, units };
}

/** Normalises a postal code: ZIP+4 (with or without the dash) becomes ZIP5. */
function normalizePostalCode(postalCode: string): string {
  const compact = postalCode.toUpperCase().replace(/\s+/g, "");
  const zip = /^(\d{5})(?:-?\d{4})?$/.exec(compact);
  return zip !== null ? (zip[1] as string) : compact;
}

/** A postal address given in parts. */
export interface AddressParts {
  /** Street lines, first line first. */
  readonly streetLines: readonly string[];
  /** City. */
  readonly locality: string;
  /** State code or name. */
  readonly region: string;
  /** Postal code. */
  readonly postalCode: string;
}

/** True when an address given in parts has any content. */
export function hasAddressParts(a: AddressParts | undefined): a is AddressParts {
  return (
    a !== undefined &&
    (a.streetLines.some((l) => l.trim() !== "") ||
      a.locality.trim() !== "" ||
      a.region.trim() !== "" ||
      a.postalCode.trim() !== "")
  );
}

/** Normalises an address given in parts. */
export function parseAddressParts(a: AddressParts): ParsedAddress {
  return {
    ...parseStreetTokens(a.streetLines.flatMap(tokenize).map(abbreviate)),
    city: tokenize(a.locality).map(abbreviate),
    state: a.region.trim() === "" ? "" : stateCode(a.region),
    zip: normalizePostalCode(a.postalCode),
  };
}

/** True when a comma-separated segment is a street line's continuation (`Suite 4`), not a city. */
function isUnitSegment(segment: readonly string[]): boolean {
  return unitAt(segment, 0) !== undefined || /^\d/.test(segment[0] ?? "");
}

/** True when `words` end with the non-empty `suffix`. */
function endsWith(words: readonly string[], suffix: readonly string[]): boolean {
  const n = words.length;
  const h = suffix.length;
  return h > 0 && n >= h && suffix.every((w, i) => words[n - h + i] === w);
}

/**
 * Splits words that hold a street and a city without a comma between them: at the known city
 * when the words end with it, else after the first street suffix (and its post-directional and
 * units). Returns the index where the city starts (the length when there is no city).
 */
function cityStart(words: readonly string[], cityHint: readonly string[]): number {
  const n = words.length;
  if (endsWith(words, cityHint)) return n - cityHint.length;
  const first = /^\d/.test(words[0] ?? "") ? 2 : 1;
  for (let i = first; i < n - 1; i++) {
    if (!streetSuffixes.has(words[i] as string)) continue;
    let j = i + 1;
    if (directionalCodes.has(words[j] as string) && j < n - 1) j++;
    for (let unit = unitAt(words, j); unit !== undefined; unit = unitAt(words, j)) j += unit[1];
    // A city has no digits; otherwise the suffix was part of the street name.
    const rest = words.slice(j);
    return rest.length > 0 && rest.every((w) => !/\d/.test(w)) ? j : n;
  }
  return n;
}

/**
 * Normalises an address written on one line, for example
 * `123 North Main Street, Suite 4, Austin, Texas 78704-1234`. `cityHint` is the canonical city's
 * normalised words, used to find the city when no comma sets it apart.
 */
export function parseAddressText(text: string, cityHint: readonly string[] = []): ParsedAddress {
  const segments = text
    .split(/[,;\n]+/)
    .map(tokenize)
    .filter((s) => s.length > 0);
  const lastSegment = segments.at(-1);
  if (segments.length > 1 && lastSegment !== undefined && countryNames.has(lastSegment.join(" "))) segments.pop();
  let tail = segments.pop() ?? [];
  if (tail.length > 1 && (tail.at(-1) === "USA" || tail.at(-1) === "US")) tail = tail.slice(0, -1);

  let zip = "";
  const last = tail.at(-1) ?? "";
  if (/^\d{5}(-\d{4})?$/.test(last) || /^\d{9}$/.test(last)) {
    zip = last.slice(0, 5);
    tail = tail.slice(0, -1);
  } else if (/^\d{4}$/.test(last) && /^\d{5}$/.test(tail.at(-2) ?? "") && tail.length > 2) {
    zip = tail.at(-2) as string;
    tail = tail.slice(0, -2);
  }

  // A state needs an anchor: a ZIP after it, a comma before it or the known city before it
  // ("123 Main Ct" is not Connecticut).
  let state = "";
  const anchored = zip !== "" || segments.length > 0;
  for (let len = Math.min(4, tail.length); len >= 1; len--) {
    const words = tail.slice(tail.length - len).join(" ");
    const code = len === 1 && stateCodes.has(words) ? words : stateCodesByName.get(words);
    if (code !== undefined && (anchored || endsWith(tail.slice(0, tail.length - len).map(abbreviate), cityHint))) {
      state = code;
      tail = tail.slice(0, tail.length - len);
      break;
    }
  }

  const parts = [...segments, ...(tail.length > 0 ? [tail] : [])].map((s) => s.map(abbreviate));
  const lastPart = parts.at(-1);
  let city: string[] = [];
  let streetWords: string[];
  if (parts.length > 1 && lastPart !== undefined && !isUnitSegment(lastPart)) {
    city = lastPart;
    streetWords = parts.slice(0, -1).flat();
  } else {
    const words = parts.flat();
    const at = cityStart(words, cityHint);
    city = words.slice(at);
    streetWords = words.slice(0, at);
  }
  return { ...parseStreetTokens(streetWords), city, state, zip };
}

/** The normalised address on one line, for example `123 N MAIN ST STE 4, AUSTIN, TX 78704`. */
export function formatParsedAddress(a: ParsedAddress): string {
  const street = [a.house, ...a.street, ...a.units].filter((w) => w !== "").join(" ");
  const stateZip = [a.state, a.zip].filter((w) => w !== "").join(" ");
  return [street, a.city.join(" "), stateZip].filter((p) => p !== "").join(", ");
}

/** The result of comparing two addresses. */
export interface AddressComparison {
  /** Minimum similarity over the compared components, 0–1. */
  readonly similarity: number;
  /** Components below the threshold, for example `suite: STE 4 vs STE 200`. */
  readonly differences: readonly string[];
  /** True when every difference is in the units (same building, other suite). */
  readonly unitsOnly: boolean;
}

const orNone = (s: string): string => (s === "" ? "none" : s);

/** Compares a listed address with the canonical one component by component (see the module comment). */
export function compareAddresses(
  canonical: ParsedAddress,
  listed: ParsedAddress,
  threshold: number,
): AddressComparison {
  const scores: number[] = [];
  const differences: string[] = [];
  let unitDifference = false;
  const exact = (label: string, a: string, b: string): void => {
    const same = a === b;
    scores.push(same ? 1 : 0);
    if (!same) differences.push(`${label}: ${orNone(a)} vs ${orNone(b)}`);
  };
  const fuzzy = (label: string, a: readonly string[], b: readonly string[]): void => {
    const s = jaroWinkler(a.join(" "), b.join(" "));
    scores.push(s);
    if (s < threshold) differences.push(`${label}: ${orNone(a.join(" "))} vs ${orNone(b.join(" "))}`);
  };
  if (canonical.house !== "" || listed.house !== "") exact("house number", canonical.house, listed.house);
  fuzzy("street", canonical.street, listed.street);
  const unitKey = (units: readonly string[]): string =>
    units
      .map((u) => u.split(" ")[1] as string)
      .sort()
      .join(" ");
  if (unitKey(canonical.units) !== unitKey(listed.units)) {
    // The designator may differ (STE 4, UNIT 4, # 4 are the same door); the identifiers may not.
    scores.push(0);
    differences.push(`unit: ${orNone(canonical.units.join(" "))} vs ${orNone(listed.units.join(" "))}`);
    unitDifference = true;
  }
  if (canonical.city.length > 0 && listed.city.length > 0) fuzzy("city", canonical.city, listed.city);
  if (canonical.state !== "" && listed.state !== "") exact("state", canonical.state, listed.state);
  if (canonical.zip !== "" && listed.zip !== "") exact("ZIP", canonical.zip, listed.zip);
  return {
    similarity: Math.min(...scores),
    differences,
    unitsOnly: unitDifference && differences.length === 1,
  };
}
