/**
 * A seeded synthetic contact population with known duplicates, for the linkage tests and the
 * benchmark (the same seed always gives the same contacts).
 *
 * Base people have a given and a family name (common US names plus a long tail of made-up
 * surnames, so blocks have realistic sizes), an email derived from the name, a US phone number, a
 * ZIP code and times. Some live in households: a partner with the same family name, phone and
 * ZIP but another given name and email — distinct people that look alike, the usual source of
 * false matches. Duplicates are copies of base people corrupted the way CRM data is: typos,
 * diminutives ("Bob" for "Robert"), given and family name swapped, another or a mistyped email,
 * the phone typed in another format (normalised to E.164 on the way in, as the contract stores it)
 * or mistyped, and missing fields.
 */
import { clone, create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { type Contact, ContactSchema } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { normalizePhone } from "./normalize.ts";

/** A deterministic PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const givenNames = [
  "Robert",
  "William",
  "Richard",
  "James",
  "John",
  "Joseph",
  "Thomas",
  "Charles",
  "Michael",
  "Daniel",
  "Matthew",
  "Anthony",
  "Edward",
  "Elizabeth",
  "Margaret",
  "Katherine",
  "Patricia",
  "Jennifer",
  "Susan",
  "Deborah",
  "Dorothy",
  "Barbara",
  "Rebecca",
  "Samuel",
  "Benjamin",
  "Nicholas",
  "Steven",
  "Timothy",
  "Gregory",
  "Kenneth",
  "Ronald",
  "Donald",
  "Lawrence",
  "Gerald",
  "Raymond",
  "Walter",
  "Frederick",
  "Virginia",
  "Judith",
  "Pamela",
  "Cynthia",
  "Theresa",
  "Victoria",
  "Abigail",
  "Eleanor",
  "Mary",
  "Linda",
  "Helen",
  "Sandra",
  "Carol",
  "Ruth",
  "Sharon",
  "Michelle",
  "Laura",
  "Sarah",
  "Kimberly",
  "Jessica",
  "Shirley",
  "Angela",
  "Melissa",
  "Brenda",
  "Amy",
  "Anna",
  "Kathleen",
  "Martha",
  "Joan",
  "Evelyn",
  "Jean",
  "Cheryl",
  "Mildred",
  "Gloria",
  "Ann",
  "Frances",
  "Alice",
  "Julie",
  "Joyce",
  "Diane",
  "George",
  "Paul",
  "Mark",
  "Kevin",
  "Brian",
  "Jason",
  "Gary",
  "Eric",
  "Larry",
  "Scott",
  "Frank",
  "Jeffrey",
  "Jerry",
  "Dennis",
  "Peter",
  "Henry",
  "Carl",
  "Arthur",
  "Roger",
  "Keith",
  "Harold",
  "Wayne",
  "Ralph",
  "Eugene",
  "Russell",
  "Louis",
  "Philip",
  "Bobby",
  "Johnny",
  "Howard",
  "Marcus",
  "Dwayne",
  "Leticia",
  "Rosa",
  "Guadalupe",
  "Jorge",
  "Luis",
  "Carmen",
  "Ana",
  "Miguel",
  "Mei",
  "Wei",
  "Priya",
  "Raj",
  "Aisha",
  "Omar",
  "Fatima",
  "Kwame",
  "Ingrid",
  "Sven",
  "Yuki",
  "Hiroshi",
];

const commonSurnames = [
  "Smith",
  "Johnson",
  "Williams",
  "Brown",
  "Jones",
  "Garcia",
  "Miller",
  "Davis",
  "Rodriguez",
  "Martinez",
  "Hernandez",
  "Lopez",
  "Gonzalez",
  "Wilson",
  "Anderson",
  "Thomas",
  "Taylor",
  "Moore",
  "Jackson",
  "Martin",
  "Lee",
  "Perez",
  "Thompson",
  "White",
  "Harris",
  "Sanchez",
  "Clark",
  "Ramirez",
  "Lewis",
  "Robinson",
  "Walker",
  "Young",
  "Allen",
  "King",
  "Wright",
  "Scott",
  "Torres",
  "Nguyen",
  "Hill",
  "Flores",
  "Green",
  "Adams",
  "Nelson",
  "Baker",
  "Hall",
  "Rivera",
  "Campbell",
  "Mitchell",
  "Carter",
  "Roberts",
  "Gomez",
  "Phillips",
  "Evans",
  "Turner",
  "Diaz",
  "Parker",
  "Cruz",
  "Edwards",
  "Collins",
  "Reyes",
  "Stewart",
  "Morris",
  "Morales",
  "Murphy",
  "Cook",
  "Rogers",
  "Gutierrez",
  "Ortiz",
  "Morgan",
  "Cooper",
  "Peterson",
  "Bailey",
  "Reed",
  "Kelly",
  "Howard",
  "Ramos",
  "Kim",
  "Cox",
  "Ward",
  "Richardson",
  "Watson",
  "Brooks",
];

const onsets = [
  "b",
  "br",
  "c",
  "ch",
  "d",
  "dr",
  "f",
  "g",
  "gr",
  "h",
  "j",
  "k",
  "kl",
  "l",
  "m",
  "n",
  "p",
  "pr",
  "r",
  "s",
  "st",
  "t",
  "tr",
  "v",
  "w",
  "z",
];
const vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"];
const codas = ["", "n", "r", "l", "s", "t", "m", "ck", "rd", "nd", "ll", "ss", "th", "x"];
const endings = ["", "", "son", "er", "ley", "ton", "ford", "man", "berg", "ski", "ez", "ing", "well", "ham"];
const emailDomains = ["gmail.com", "yahoo.com", "outlook.com", "aol.com", "icloud.com", "comcast.net", "hotmail.com"];
const areaCodes = [
  "512",
  "737",
  "214",
  "469",
  "713",
  "832",
  "210",
  "305",
  "312",
  "415",
  "617",
  "206",
  "303",
  "404",
  "602",
  "615",
  "702",
  "503",
  "919",
  "720",
];
const sources = ["web-enquiry", "sales-import", "referral", "event"];

/** A population with its true duplicate pairs. */
export interface SyntheticPopulation {
  contacts: Contact[];
  /** Keys `${a}|${b}` (a < b, contact ids) of every pair that is one person. */
  truePairs: Set<string>;
  /** How many contacts are base people (the rest are duplicates). */
  baseCount: number;
  /** Household number of the contacts in households (partners and their duplicates). */
  household: Map<string, number>;
}

/** Options of {@link syntheticPopulation}. */
export interface SyntheticOptions {
  seed: number;
  /** Distinct people. */
  people: number;
  /** Corrupted duplicates, each of a different person. */
  duplicates: number;
  /** Share of consecutive pairs of people made a household (0–1); default 0.02. */
  householdShare?: number;
}

/** The key of a pair of contact ids, smaller first. */
export const pairKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);

/** Builds the population: people (some in households) and duplicates, shuffled. */
export function syntheticPopulation(opts: SyntheticOptions): SyntheticPopulation {
  const rnd = seededRandom(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const digit = () => String(Math.floor(rnd() * 10));
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rnd() * 16).toString(16)).join("");
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-${pick(["8", "9", "a", "b"])}${hex(3)}-${hex(12)}`;
  const madeUpSurname = () => {
    const s =
      pick(onsets) +
      pick(vowels) +
      pick(codas) +
      (rnd() < 0.5 ? pick(onsets) + pick(vowels) + pick(codas) : "") +
      pick(endings);
    return s.charAt(0).toUpperCase() + s.slice(1);
  };
  // The 82 commonest US surnames are held by about 17 % of people (2010 census); the rest is a long tail.
  const surname = () => (rnd() < 0.18 ? pick(commonSurnames) : madeUpSurname());
  const phone = () => {
    let exchange = "";
    do exchange = String(2 + Math.floor(rnd() * 8)) + digit() + digit();
    while (exchange === "555" || exchange.endsWith("11"));
    return `+1${pick(areaCodes)}${exchange}${digit()}${digit()}${digit()}${digit()}`;
  };
  const zip = () => String(10000 + Math.floor(rnd() * 89999));
  const email = (given: string, family: string) => {
    const g = given.toLowerCase();
    const f = family.toLowerCase();
    const local = pick([`${g}.${f}`, `${g[0]}${f}`, `${g}${f}${Math.floor(rnd() * 100)}`, `${f}.${g}`, `${g}_${f}`]);
    return `${local}@${pick(emailDomains)}`;
  };
  const start = Date.parse("2023-01-01T00:00:00Z");
  const span = 3 * 365 * 86_400_000;

  const people: Contact[] = [];
  for (let i = 0; i < opts.people; i++) {
    const givenName = pick(givenNames);
    const familyName = surname();
    const created = start + Math.floor(rnd() * span);
    people.push(
      create(ContactSchema, {
        id: uuid(),
        givenName,
        familyName,
        email: rnd() < 0.9 ? email(givenName, familyName) : "",
        phone: rnd() < 0.85 ? phone() : "",
        address: rnd() < 0.8 ? { postalCode: zip(), countryCode: "US" } : undefined,
        source: pick(sources),
        createdAt: timestampFromMs(created),
        updatedAt: timestampFromMs(created + Math.floor(rnd() * 90 * 86_400_000)),
      }),
    );
  }
  // Households: the partner takes the person's family name, phone and address.
  const householdShare = opts.householdShare ?? 0.02;
  const household = new Map<string, number>();
  for (let i = 0; i + 1 < people.length; i += 2) {
    if (rnd() >= householdShare) continue;
    const a = people[i] as Contact;
    const b = people[i + 1] as Contact;
    household.set(a.id, i);
    household.set(b.id, i);
    b.familyName = a.familyName;
    b.phone = a.phone;
    if (a.address) b.address = clone(PostalAddressSchema, a.address);
    if (b.email !== "") b.email = email(b.givenName, b.familyName);
  }

  const typo = (s: string): string => {
    if (s.length < 3) return s;
    const at = 1 + Math.floor(rnd() * (s.length - 2));
    const letter = String.fromCharCode(97 + Math.floor(rnd() * 26));
    switch (Math.floor(rnd() * 4)) {
      case 0:
        return s.slice(0, at) + s.slice(at + 1); // deletion
      case 1:
        return s.slice(0, at) + letter + s.slice(at); // insertion
      case 2:
        return s.slice(0, at) + letter + s.slice(at + 1); // substitution
      default:
        return s.slice(0, at - 1) + s.charAt(at) + s.charAt(at - 1) + s.slice(at + 1); // transposition
    }
  };
  const diminutives: Record<string, string[]> = {
    Robert: ["Bob", "Bobby", "Rob"],
    William: ["Bill", "Will"],
    Richard: ["Rick", "Dick"],
    James: ["Jim", "Jimmy"],
    Joseph: ["Joe"],
    Thomas: ["Tom"],
    Charles: ["Charlie"],
    Michael: ["Mike"],
    Elizabeth: ["Liz", "Beth", "Betty"],
    Margaret: ["Peggy", "Maggie"],
    Katherine: ["Kate", "Kathy"],
    Jennifer: ["Jen", "Jenny"],
    Susan: ["Sue"],
    Deborah: ["Debbie"],
    Daniel: ["Dan"],
    Steven: ["Steve"],
  };
  const formats = (e164: string): string => {
    const d = e164.slice(2);
    return pick([
      `(${d.slice(0, 3)}) ${d.slice(3, 6)}-${d.slice(6)}`,
      `${d.slice(0, 3)}.${d.slice(3, 6)}.${d.slice(6)}`,
      `1-${d.slice(0, 3)}-${d.slice(3, 6)}-${d.slice(6)}`,
      `+1 ${d.slice(0, 3)} ${d.slice(3, 6)} ${d.slice(6)}`,
      d,
    ]);
  };

  const truePairs = new Set<string>();
  const duplicates: Contact[] = [];
  const order = people.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  for (let d = 0; d < Math.min(opts.duplicates, people.length); d++) {
    const base = people[order[d] as number] as Contact;
    let givenName = base.givenName;
    let familyName = base.familyName;
    const r = rnd();
    const nick = diminutives[givenName];
    if (r < 0.15 && nick) givenName = pick(nick);
    else if (r < 0.45) givenName = typo(givenName);
    if (rnd() < 0.3) familyName = typo(familyName);
    if (rnd() < 0.07) [givenName, familyName] = [familyName, givenName];
    let mail = base.email;
    const e = rnd();
    if (mail !== "" && e < 0.1) mail = `${typo(mail.slice(0, mail.indexOf("@")))}${mail.slice(mail.indexOf("@"))}`;
    else if (e < 0.2) mail = email(givenName, familyName);
    else if (e < 0.45) mail = "";
    let tel = base.phone;
    const p = rnd();
    if (tel !== "" && p < 0.5) tel = normalizePhone(formats(tel));
    else if (tel !== "" && p < 0.55) tel = tel.slice(0, -4) + digit() + tel.slice(-3);
    else if (p >= 0.55 && p < 0.8) tel = "";
    const a = rnd();
    const postalCode = a < 0.75 ? (base.address?.postalCode ?? "") : a < 0.9 ? "" : zip();
    const created = start + Math.floor(rnd() * span);
    const dup = create(ContactSchema, {
      id: uuid(),
      givenName,
      familyName,
      email: mail,
      phone: /^\+[1-9]\d{1,14}$/.test(tel) ? tel : "",
      address: postalCode === "" ? undefined : { postalCode, countryCode: "US" },
      source: pick(sources),
      createdAt: timestampFromMs(created),
      updatedAt: timestampFromMs(created + Math.floor(rnd() * 90 * 86_400_000)),
    });
    duplicates.push(dup);
    truePairs.add(pairKey(base.id, dup.id));
    const home = household.get(base.id);
    if (home !== undefined) household.set(dup.id, home);
  }
  const contacts = [...people, ...duplicates];
  for (let i = contacts.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [contacts[i], contacts[j]] = [contacts[j] as Contact, contacts[i] as Contact];
  }
  return { contacts, truePairs, baseCount: people.length, household };
}
