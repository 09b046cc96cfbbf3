/**
 * Normalisation of the identifiers enrichment works from: email and web domains reduced to their
 * registrable domain with the Public Suffix List (`tldts`), free and disposable mail domains
 * (`freemail`'s lists), and phone numbers parsed to E.164 with their line type and region
 * (`google-libphonenumber`, the port of Google's libphonenumber).
 *
 * The registrable domain ("eTLD+1") is what an organisation owns: `a.b.example.co.uk` and
 * `www.example.co.uk` both belong to `example.co.uk`, because `co.uk` is a public suffix. Private
 * suffixes (`github.io`, `herokuapp.com`) count too, so a customer's hosted subdomain is not
 * taken for the hosting company.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import libphonenumber from "google-libphonenumber";
import { getDomain, parse } from "tldts";

const phoneUtil = libphonenumber.PhoneNumberUtil.getInstance();
const { PhoneNumberFormat, PhoneNumberType } = libphonenumber;

/**
 * The registrable domain of a host name or URL (lower-case, no trailing dot), or "" when it has
 * none: an IP address, a bare public suffix (`co.uk`), a single label (`localhost`) or garbage.
 */
export function registrableDomain(input: string): string {
  let host = input.trim().toLowerCase();
  if (host === "") return "";
  // A URL or `host/path`: keep the host only.
  if (host.includes("://")) {
    try {
      host = new URL(host).hostname;
    } catch {
      return "";
    }
  } else {
    host = host.split(/[/?#]/, 1)[0] ?? "";
  }
  host = host.replace(/\.$/, "");
  if (!/^[\p{L}\p{N}.-]+$/u.test(host)) return "";
  const info = parse(host, { allowPrivateDomains: true });
  if (info.isIp) return "";
  return getDomain(host, { allowPrivateDomains: true }) ?? "";
}

/** The registrable domain of an email address's domain part, or "" when it has none. */
export function emailDomain(email: string): string {
  const at = email.lastIndexOf("@");
  if (at < 0) return "";
  return registrableDomain(email.slice(at + 1));
}

/** The label an organisation is usually named after: `acme` of `mail.acme.co.uk`. */
export function domainLabel(domain: string): string {
  const info = parse(domain, { allowPrivateDomains: true });
  return info.domainWithoutSuffix ?? "";
}

/** Free-mail (consumer) and disposable domains, read once from the `freemail` package's data. */
let mailLists: { free: Set<string>; disposable: Set<string> } | undefined;

function lists(): { free: Set<string>; disposable: Set<string> } {
  if (mailLists === undefined) {
    const require = createRequire(import.meta.url);
    const dir = join(dirname(require.resolve("freemail/package.json")), "data");
    const read = (file: string) =>
      new Set(
        readFileSync(join(dir, file), "utf8")
          .split("\n")
          .map((l) => l.trim().toLowerCase())
          .filter((l) => l !== "" && !l.startsWith("#")),
      );
    mailLists = { free: read("free.txt"), disposable: read("disposable.txt") };
  }
  return mailLists;
}

/** How an email domain is classified. */
export interface MailDomainKind {
  /** A free or consumer mail provider (Gmail, Yahoo, …) or a disposable one: it names no organisation. */
  readonly freeMail: boolean;
  /** A throwaway (disposable) mail provider. */
  readonly disposable: boolean;
}

/** Classifies a domain (any host name; checked as given and as its registrable domain). */
export function mailDomainKind(domain: string): MailDomainKind {
  const host = domain.trim().toLowerCase();
  const reg = registrableDomain(host);
  const { free, disposable } = lists();
  const isDisposable = disposable.has(host) || disposable.has(reg);
  return { freeMail: isDisposable || free.has(host) || free.has(reg), disposable: isDisposable };
}

/** libphonenumber's line types, by the names used in responses and attributes. */
const lineTypes: ReadonlyMap<number, string> = new Map([
  [PhoneNumberType.FIXED_LINE, "fixed_line"],
  [PhoneNumberType.MOBILE, "mobile"],
  [PhoneNumberType.FIXED_LINE_OR_MOBILE, "fixed_line_or_mobile"],
  [PhoneNumberType.TOLL_FREE, "toll_free"],
  [PhoneNumberType.PREMIUM_RATE, "premium_rate"],
  [PhoneNumberType.SHARED_COST, "shared_cost"],
  [PhoneNumberType.VOIP, "voip"],
  [PhoneNumberType.PERSONAL_NUMBER, "personal_number"],
  [PhoneNumberType.PAGER, "pager"],
  [PhoneNumberType.UAN, "uan"],
  [PhoneNumberType.VOICEMAIL, "voicemail"],
]);

/** A phone number as libphonenumber understands it. */
export interface NormalizedPhone {
  /** E.164 (`+447400123456`); "" when the input is not a phone number at all. */
  readonly e164: string;
  /** True when the number is valid in its region's numbering plan (not just the right length). */
  readonly valid: boolean;
  /** ISO 3166-1 alpha-2 region of the number; "" when unknown (invalid numbers, non-geographic codes). */
  readonly region: string;
  /** Line type (`mobile`, `fixed_line`, `fixed_line_or_mobile`, `toll_free`, `voip`, …); "unknown" otherwise. */
  readonly lineType: string;
}

const notAPhone: NormalizedPhone = { e164: "", valid: false, region: "", lineType: "unknown" };

/** True when libphonenumber knows `region` (ISO 3166-1 alpha-2) as a region with a numbering plan. */
export function isKnownRegion(region: string): boolean {
  return (phoneUtil.getSupportedRegions() as string[]).includes(region);
}

/**
 * Parses a phone number written in any usual format (`(512) 555-0143`, `+44 7400 123456`,
 * `00 41 44 668 18 00`), national numbers read as in `defaultRegion`.
 */
export function normalizePhone(raw: string, defaultRegion: string): NormalizedPhone {
  const text = raw.trim();
  if (text === "" || text.length > 50) return notAPhone;
  let number: libphonenumber.PhoneNumber;
  try {
    number = phoneUtil.parseAndKeepRawInput(text, defaultRegion as libphonenumber.RegionCode);
  } catch {
    return notAPhone;
  }
  if (!phoneUtil.isPossibleNumber(number)) return notAPhone;
  const e164 = phoneUtil.format(number, PhoneNumberFormat.E164);
  const valid = phoneUtil.isValidNumber(number);
  if (!valid) return { e164, valid, region: "", lineType: "unknown" };
  const region: string = phoneUtil.getRegionCodeForNumber(number) ?? "";
  return {
    e164,
    valid,
    region: region === "001" ? "" : region,
    lineType: lineTypes.get(phoneUtil.getNumberType(number)) ?? "unknown",
  };
}

/** Trimmed, case-folded, NFKC and single-spaced: the form cache keys compare text in. */
export function foldText(text: string): string {
  return text.normalize("NFKC").trim().replace(/\s+/g, " ").toLowerCase();
}
