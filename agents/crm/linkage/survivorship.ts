/**
 * Survivorship: the golden record of a duplicate cluster, one field at a time.
 *
 * Each field takes the value of one member, chosen by the field's rule or the default strategy:
 * most recent (latest `updated_at`, else `created_at`), most complete (longest value), source
 * priority (highest-ranked `source`), most frequent (the normalised value most members hold; the
 * most recent member holding it gives the spelling) or oldest (earliest `created_at`). Only
 * members with a non-empty value compete; ties go to the surviving contact, then to the earlier
 * created member.
 *
 * Fields that belong together are taken together, so a golden record never pairs a street of one
 * member with the postal code of another: a rule on `full_name` takes given and family name from
 * one member (otherwise each follows its own rule), and the postal address is one unit, chosen by
 * the rule of `street`, else `postal_code`, else `country_code`. `created_at` is the earliest of
 * the cluster and `updated_at` the latest; the id is the surviving contact's. Custom attributes
 * are chosen per key.
 */
import { clone, create } from "@bufbuild/protobuf";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  type Contact,
  ContactField,
  ContactSchema,
  type FieldProvenance,
  FieldProvenanceSchema,
  type SurvivorshipRule,
  SurvivorshipStrategy,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { attributeText, fieldLabel, foldText, lifecycleStageName } from "./normalize.ts";

/** Contact fields that survivorship cannot choose: they are derived from others. */
export const derivedFields: ReadonlySet<ContactField> = new Set([
  ContactField.EMAIL_DOMAIN,
  ContactField.CREATED_AT,
  ContactField.UPDATED_AT,
]);

/** A golden record and where its fields came from. */
export interface Golden {
  record: Contact;
  provenance: FieldProvenance[];
}

const tsMs = (t: Timestamp | undefined): number => (t === undefined ? Number.NEGATIVE_INFINITY : timestampMs(t));
const recency = (c: Contact): number => Math.max(tsMs(c.updatedAt), tsMs(c.createdAt));
const createdMs = (c: Contact): number =>
  c.createdAt === undefined ? Number.POSITIVE_INFINITY : timestampMs(c.createdAt);

/** The member that survives a merge: the earliest created (members without a time last), then the smallest id. */
export function survivorOf(members: readonly Contact[]): Contact {
  let best = members[0] as Contact;
  for (const c of members) {
    const d = createdMs(c) - createdMs(best);
    if (d < 0 || (d === 0 && c.id < best.id)) best = c;
  }
  return best;
}

/** One field's candidates: the members' values in tie-break order. */
type Pick = { member: Contact; value: string };

/** The winning candidate of `strategy` among non-empty `values`, or undefined when all are empty. */
function choose(strategy: SurvivorshipStrategy, rule: SurvivorshipRule | undefined, values: Pick[]): Pick | undefined {
  const present = values.filter((v) => v.value.trim() !== "");
  if (present.length === 0) return undefined;
  // Earlier candidates win ties: `present` is in tie-break order, and only a strictly better one replaces.
  const best = (score: (p: Pick) => number): Pick => {
    let top = present[0] as Pick;
    let topScore = score(top);
    for (const p of present) {
      const s = score(p);
      if (s > topScore) {
        top = p;
        topScore = s;
      }
    }
    return top;
  };
  switch (strategy) {
    case SurvivorshipStrategy.OLDEST:
      return best((p) => -createdMs(p.member));
    case SurvivorshipStrategy.MOST_COMPLETE:
      return best((p) => p.value.trim().length * 1e15 + recencyRank(p, present));
    case SurvivorshipStrategy.SOURCE_PRIORITY: {
      const order = rule?.sourcePriority ?? [];
      const rank = (p: Pick) => {
        const at = order.indexOf(p.member.source);
        return at < 0 ? order.length : at;
      };
      return best((p) => -rank(p) * 1e15 + recencyRank(p, present));
    }
    case SurvivorshipStrategy.MOST_FREQUENT: {
      const counts = new Map<string, number>();
      for (const p of present) {
        const k = foldText(p.value);
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      return best((p) => (counts.get(foldText(p.value)) as number) * 1e15 + recencyRank(p, present));
    }
    default:
      return best((p) => recencyRank(p, present));
  }
}

/** Rank of a candidate by recency among `present` (higher is more recent), for tie-breaks. */
function recencyRank(p: Pick, present: Pick[]): number {
  let rank = 0;
  const r = recency(p.member);
  for (const q of present) if (recency(q.member) < r) rank++;
  return rank;
}

function formatAddress(c: Contact): string {
  const a = c.address;
  if (a === undefined) return "";
  return [...a.streetLines, a.locality, a.region, a.postalCode, a.countryCode]
    .filter((s) => s.trim() !== "")
    .join(", ");
}

/** Builds the golden record of `members` (two or more), surviving id `survivor.id`. */
export function goldenRecord(
  members: readonly Contact[],
  survivor: Contact,
  rules: readonly SurvivorshipRule[],
  defaultStrategy: SurvivorshipStrategy,
): Golden {
  const byLabel = new Map<string, SurvivorshipRule>();
  for (const r of rules) if (r.field) byLabel.set(fieldLabel(r.field), r);
  const fallback =
    defaultStrategy === SurvivorshipStrategy.UNSPECIFIED ? SurvivorshipStrategy.MOST_RECENT : defaultStrategy;
  // Tie-break order: the survivor, then by creation.
  const ordered = [survivor, ...members.filter((m) => m !== survivor).sort((a, b) => createdMs(a) - createdMs(b))];
  const record = create(ContactSchema, { id: survivor.id });
  const provenance: FieldProvenance[] = [];

  const decide = (labels: string[], value: (c: Contact) => string): Contact | undefined => {
    let rule: SurvivorshipRule | undefined;
    for (const l of labels) {
      rule = byLabel.get(l);
      if (rule) break;
    }
    const strategy = rule?.strategy ?? fallback;
    const won = choose(
      strategy,
      rule,
      ordered.map((member) => ({ member, value: value(member) })),
    );
    return won?.member;
  };
  const note = (label: string, from: Contact, strategy: SurvivorshipStrategy) =>
    provenance.push(create(FieldProvenanceSchema, { field: label, sourceContactId: from.id, strategy }));
  const strategyOf = (labels: string[]) => {
    for (const l of labels) {
      const r = byLabel.get(l);
      if (r) return r.strategy;
    }
    return fallback;
  };

  // Names: together under a full_name rule, else each by its own.
  if (byLabel.has("full_name")) {
    const from = decide(["full_name"], (c) => `${c.givenName} ${c.familyName}`);
    if (from) {
      record.givenName = from.givenName;
      record.familyName = from.familyName;
      note("given_name", from, strategyOf(["full_name"]));
      note("family_name", from, strategyOf(["full_name"]));
    }
  } else {
    const given = decide(["given_name"], (c) => c.givenName);
    if (given) {
      record.givenName = given.givenName;
      note("given_name", given, strategyOf(["given_name"]));
    }
    const family = decide(["family_name"], (c) => c.familyName);
    if (family) {
      record.familyName = family.familyName;
      note("family_name", family, strategyOf(["family_name"]));
    }
  }

  const simple: Array<[string, (c: Contact) => string, (from: Contact) => void]> = [
    ["email", (c) => c.email, (f) => (record.email = f.email)],
    ["phone", (c) => c.phone, (f) => (record.phone = f.phone)],
    ["company", (c) => c.company, (f) => (record.company = f.company)],
    ["title", (c) => c.title, (f) => (record.title = f.title)],
    ["city", (c) => c.city, (f) => (record.city = f.city)],
    ["region", (c) => c.region, (f) => (record.region = f.region)],
    ["source", (c) => c.source, (f) => (record.source = f.source)],
    ["lifecycle_stage", (c) => lifecycleStageName(c.lifecycleStage), (f) => (record.lifecycleStage = f.lifecycleStage)],
  ];
  for (const [label, value, set] of simple) {
    const from = decide([label], value);
    if (from) {
      set(from);
      note(label, from, strategyOf([label]));
    }
  }

  const addressLabels = ["street", "postal_code", "country_code"];
  const addressFrom = decide(addressLabels, formatAddress);
  if (addressFrom?.address) {
    record.address = clone(PostalAddressSchema, addressFrom.address);
    note("address", addressFrom, strategyOf(addressLabels));
  }

  // Custom attributes, per key, in order of first appearance.
  const keys: string[] = [];
  for (const m of ordered) for (const a of m.attributes) if (!keys.includes(a.key)) keys.push(a.key);
  for (const key of keys) {
    const label = `attr:${key}`;
    const attributeOf = (c: Contact) => attributeText(c.attributes.find((a) => a.key === key)?.value);
    const from = decide([label], attributeOf);
    const attr = from?.attributes.find((a) => a.key === key);
    if (from && attr) {
      record.attributes.push(attr);
      note(label, from, strategyOf([label]));
    }
  }

  // Times: the cluster's first creation and last change.
  let created: Contact | undefined;
  let updated: Contact | undefined;
  for (const m of ordered) {
    if (m.createdAt && (created === undefined || createdMs(m) < createdMs(created))) created = m;
    if (recency(m) > Number.NEGATIVE_INFINITY && (updated === undefined || recency(m) > recency(updated))) updated = m;
  }
  if (created?.createdAt) record.createdAt = created.createdAt;
  if (updated) record.updatedAt = updated.updatedAt ?? updated.createdAt;
  return { record, provenance };
}
