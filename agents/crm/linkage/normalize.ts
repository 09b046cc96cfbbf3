/**
 * Normalisation of contact fields for record linkage: every comparator and blocking key works on
 * these forms, so that differences of typing (case, accents, punctuation, phone formats, ZIP+4,
 * nicknames) are not mistaken for differences of identity.
 *
 * - Text: accents folded (é → e), lower case, apostrophes and periods dropped ("O'Brien" →
 *   "obrien"), other punctuation read as a space, runs of spaces collapsed.
 * - Given names: standardised through a table of unambiguous English diminutives ("Bob" →
 *   "robert"), as name standardisation does before comparison in record linkage (Febrl,
 *   Christen 2012, ch. 4); ambiguous ones ("Pat", "Chris", "Alex") are left as typed.
 * - Emails: trimmed and lower-cased; the domain is the part after `@`, cut to its registrable
 *   part by a short list of common second-level suffixes (`co.uk`, `com.au`, …).
 * - Phones: parsed with libphonenumber (default region US) and formatted as E.164; a value it
 *   cannot parse keeps its digits.
 * - Postal codes: upper case without spaces; a US ZIP+4 is cut to its ZIP5.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import libphonenumber from "google-libphonenumber";
import {
  type AttributeValue,
  type Contact,
  ContactField,
  ContactFieldSchema,
  type FieldRef,
  LifecycleStage,
  LifecycleStageSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";

const phoneUtil = libphonenumber.PhoneNumberUtil.getInstance();

/** Folds accents, lower-cases, drops apostrophes and periods, reads other punctuation as spaces. */
export function foldText(s: string): string {
  if (s === "") return "";
  return s
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .replace(/['’.]/g, "")
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim();
}

/** Unambiguous diminutives and their formal given name. */
const nicknameGroups: Readonly<Record<string, readonly string[]>> = {
  robert: ["bob", "bobby", "rob", "robbie", "bert"],
  william: ["bill", "billy", "will", "willy", "willie"],
  richard: ["rick", "ricky", "dick", "rich", "richie"],
  james: ["jim", "jimmy", "jamie"],
  john: ["johnny", "jack"],
  joseph: ["joe", "joey"],
  thomas: ["tom", "tommy"],
  charles: ["charlie", "chuck"],
  michael: ["mike", "mikey"],
  daniel: ["dan", "danny"],
  matthew: ["matt"],
  anthony: ["tony"],
  edward: ["ed", "eddie", "ted", "teddy", "ned"],
  elizabeth: ["liz", "lizzie", "beth", "betty", "betsy", "eliza"],
  margaret: ["peggy", "maggie", "meg", "marge", "margie"],
  katherine: ["kate", "kathy", "katie", "kathleen"],
  catherine: ["cathy", "cate"],
  patricia: ["patty", "trish", "tricia"],
  jennifer: ["jen", "jenny"],
  susan: ["sue", "susie"],
  deborah: ["deb", "debbie"],
  dorothy: ["dot", "dottie"],
  barbara: ["barb", "barbie"],
  rebecca: ["becky", "becca"],
  samuel: ["sam", "sammy"],
  benjamin: ["ben", "benny"],
  nicholas: ["nick", "nicky"],
  steven: ["steve", "stephen"],
  timothy: ["tim", "timmy"],
  gregory: ["greg"],
  kenneth: ["ken", "kenny"],
  ronald: ["ron", "ronnie"],
  donald: ["don", "donnie"],
  lawrence: ["larry"],
  gerald: ["jerry"],
  raymond: ["ray"],
  walter: ["walt"],
  harold: ["hal"],
  frederick: ["fred", "freddie"],
  albert: ["al", "bert"],
  virginia: ["ginny", "ginger"],
  judith: ["judy"],
  pamela: ["pam"],
  cynthia: ["cindy"],
  theresa: ["terry", "tess"],
  victoria: ["vicky", "tori"],
  abigail: ["abby"],
  eleanor: ["ellie", "nell"],
  dolores: ["lola"],
  beverly: ["bev"],
};

const nicknames: ReadonlyMap<string, string> = new Map(
  Object.entries(nicknameGroups).flatMap(([formal, short]) => short.map((s) => [s, formal] as const)),
);

/** The folded given name, a known diminutive replaced by its formal name ("Bobby" → "robert"). */
export function standardGivenName(s: string): string {
  const folded = foldText(s);
  if (folded === "") return "";
  const space = folded.indexOf(" ");
  const first = space < 0 ? folded : folded.slice(0, space);
  const formal = nicknames.get(first);
  return formal === undefined ? folded : space < 0 ? formal : formal + folded.slice(space);
}

/** Trimmed and lower-cased. */
export function normalizeEmail(s: string): string {
  return s.trim().toLowerCase();
}

/** Second-level suffixes under which a registrable domain has three labels. */
const twoLabelSuffixes = new Set([
  "co.uk",
  "org.uk",
  "ac.uk",
  "gov.uk",
  "com.au",
  "net.au",
  "org.au",
  "co.nz",
  "co.jp",
  "com.br",
  "com.mx",
  "co.in",
  "co.za",
  "com.cn",
]);

/** The registrable domain of an email address ("mary@mail.example.co.uk" → "example.co.uk"). */
export function emailDomain(email: string): string {
  const e = normalizeEmail(email);
  const at = e.lastIndexOf("@");
  if (at < 0) return "";
  const labels = e.slice(at + 1).split(".");
  if (labels.length <= 2) return labels.join(".");
  const lastTwo = labels.slice(-2).join(".");
  return twoLabelSuffixes.has(lastTwo) ? labels.slice(-3).join(".") : lastTwo;
}

/**
 * A phone number as E.164 ("(512) 555-0143" → "+15125550143"), parsed in `defaultRegion` when it
 * has no country code; a number libphonenumber cannot make valid keeps its digits (and a leading
 * `+`), so two spellings of one invalid number still agree.
 */
export function normalizePhone(s: string, defaultRegion = "US"): string {
  const t = s.trim();
  if (t === "") return "";
  // Already E.164 (what the contract stores): nothing to parse.
  if (/^\+[1-9]\d{1,14}$/.test(t)) return t;
  try {
    const n = phoneUtil.parse(t, defaultRegion);
    if (phoneUtil.isValidNumber(n)) return phoneUtil.format(n, libphonenumber.PhoneNumberFormat.E164);
  } catch {
    // Not a phone number libphonenumber can parse: fall back to the digits.
  }
  const digits = t.replace(/\D/g, "");
  return digits === "" ? "" : t.startsWith("+") ? `+${digits}` : digits;
}

/** Upper case without spaces or hyphens, a US ZIP+4 cut to ZIP5. */
export function normalizePostalCode(s: string): string {
  const t = s.trim().toUpperCase();
  const zip = /^(\d{5})(?:[-\s]?\d{4})?$/.exec(t);
  if (zip) return zip[1] as string;
  return t.replace(/[\s-]+/g, "");
}

/** The enum value name of a lifecycle stage (`LIFECYCLE_STAGE_LEAD`), "" when unspecified. */
export function lifecycleStageName(s: LifecycleStage): string {
  return s === LifecycleStage.UNSPECIFIED ? "" : (LifecycleStageSchema.value[s]?.name ?? String(s));
}

/** A field's label in responses: `given_name`, `email`, `attr:care_type`. */
export function fieldLabel(ref: FieldRef): string {
  if (ref.ref.case === "attributeKey") return `attr:${ref.ref.value}`;
  const f = ref.ref.value ?? ContactField.UNSPECIFIED;
  return (ContactFieldSchema.value[f]?.localName ?? String(f)).toLowerCase();
}

/** An attribute value as text ("" when unset). */
export function attributeText(v: AttributeValue | undefined): string {
  switch (v?.kind.case) {
    case "stringValue":
      return v.kind.value;
    case "numberValue":
    case "intValue":
    case "boolValue":
      return String(v.kind.value);
    case "timestampValue":
      return timestampDate(v.kind.value).toISOString();
    case "durationValue":
      return `${v.kind.value.seconds}s`;
    default:
      return "";
  }
}

/** The value of a field as stored or typed, for display ("" when empty). */
export function displayValue(c: Contact, ref: FieldRef): string {
  if (ref.ref.case === "attributeKey") {
    const key = ref.ref.value;
    return attributeText(c.attributes.find((a) => a.key === key)?.value);
  }
  switch (ref.ref.value) {
    case ContactField.GIVEN_NAME:
      return c.givenName;
    case ContactField.FAMILY_NAME:
      return c.familyName;
    case ContactField.FULL_NAME:
      return [c.givenName, c.familyName].filter((s) => s.trim() !== "").join(" ");
    case ContactField.EMAIL:
      return c.email;
    case ContactField.EMAIL_DOMAIN:
      return emailDomain(c.email);
    case ContactField.PHONE:
      return c.phone;
    case ContactField.COMPANY:
      return c.company;
    case ContactField.TITLE:
      return c.title;
    case ContactField.STREET:
      return c.address?.streetLines[0] ?? "";
    case ContactField.POSTAL_CODE:
      return c.address?.postalCode ?? "";
    case ContactField.CITY:
      return c.city || (c.address?.locality ?? "");
    case ContactField.REGION:
      return c.region || (c.address?.region ?? "");
    case ContactField.COUNTRY_CODE:
      return c.address?.countryCode ?? "";
    case ContactField.SOURCE:
      return c.source;
    case ContactField.LIFECYCLE_STAGE:
      return lifecycleStageName(c.lifecycleStage);
    case ContactField.CREATED_AT:
      return c.createdAt ? timestampDate(c.createdAt).toISOString() : "";
    case ContactField.UPDATED_AT:
      return c.updatedAt ? timestampDate(c.updatedAt).toISOString() : "";
    default:
      return "";
  }
}

/** The normalised value of a field, as comparators and blocking keys see it ("" when empty). */
export function normalizedValue(c: Contact, ref: FieldRef): string {
  if (ref.ref.case === "attributeKey") return foldText(displayValue(c, ref));
  switch (ref.ref.value) {
    case ContactField.GIVEN_NAME:
      return standardGivenName(c.givenName);
    case ContactField.FULL_NAME:
      return [standardGivenName(c.givenName), foldText(c.familyName)].filter((s) => s !== "").join(" ");
    case ContactField.EMAIL:
      return normalizeEmail(c.email);
    case ContactField.EMAIL_DOMAIN:
      return emailDomain(c.email);
    case ContactField.PHONE:
      return normalizePhone(c.phone);
    case ContactField.POSTAL_CODE:
      return normalizePostalCode(displayValue(c, ref));
    case ContactField.REGION:
    case ContactField.COUNTRY_CODE:
      return displayValue(c, ref).trim().toUpperCase();
    case ContactField.SOURCE:
    case ContactField.LIFECYCLE_STAGE:
    case ContactField.CREATED_AT:
    case ContactField.UPDATED_AT:
      return displayValue(c, ref);
    default:
      return foldText(displayValue(c, ref));
  }
}
