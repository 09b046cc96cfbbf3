/**
 * Contact enrichment from external sources (`crm.contact_enrichment`).
 *
 * Method: a provider waterfall with a response cache, as data-enrichment tools (Clearbit-style
 * waterfalls) run it. The contact is first normalised: the email's registrable domain from the
 * Public Suffix List (`tldts`), free-mail and disposable domains flagged (`freemail`'s lists), the
 * phone as captured parsed to E.164 with its region and line type (libphonenumber). Providers are
 * then asked in order (the request's `providers`, else the configured order: the built-in
 * `company-domain`, `phone` and `geography`, then HTTP providers); see enrichment/waterfall.ts for
 * the rules — a provider is skipped once every wanted field has a value at `min_confidence`, a
 * later value replaces an earlier one only with a strictly higher confidence, a failing provider is
 * reported and the next one asked. Answers of network providers are cached per provider and
 * normalised query (`operations.crm_enrichment_cache`) and reused while younger than
 * `max_cache_age` (30 days unless given; 0 asks again).
 *
 * Which fields: `fields_wanted`, else every enrichable field; without `overwrite_existing` only
 * those empty on the contact (CITY counts as empty while the city or the region is). A field's best
 * value is accepted when its confidence reaches `min_confidence` (0.5 unless given); every value
 * found is reported with its source and confidence, accepted or not.
 *
 * Writes: a stored contact (`contact_id`, or an inline contact with an id) gets the accepted values
 * in one short transaction after every provider has answered — never while the network is waited
 * on — with its row locked and the empty-field rule applied again to the row as it is then, so a
 * value written meanwhile by someone else is not overwritten. An inline contact without an id is
 * returned enriched and stored nowhere.
 */
import { create } from "@bufbuild/protobuf";
import { LockMode } from "@mikro-orm/postgresql";
import {
  type AttributeValue,
  type Contact,
  EnrichableField,
  type EnrichContactRequest,
  EnrichContactRequestSchema,
  type EnrichContactResponse,
  EnrichContactResponseSchema,
  type EnrichedField,
  EnrichedFieldSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Database, outsideUnitOfWork, transaction } from "../../../lib/db/index.ts";
import { checkContract, FailedPreconditionError, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import {
  allFields,
  applyValue,
  attributeKeys,
  type Candidate,
  contactOfRow,
  copyContact,
  currentValue,
  type Enrichment,
  emailDomain,
  isEmpty,
  isKnownRegion,
  mailDomainKind,
  normalizePhone,
  registrableDomain,
  runWaterfall,
  type Subject,
  writeEnrichableFields,
} from "../enrichment/index.ts";
import { CrmContact } from "../entities.ts";

/** Cache age when the request gives none. */
const defaultMaxCacheAgeMs = 30 * 86_400_000;
/** Minimum confidence when the request gives 0. */
const defaultMinConfidence = 0.5;
/** Expired cache rows deleted after a call that wrote to the cache (bounded, so the call stays short). */
const purgeBatch = 100;

/** Dependencies of the skill. */
export interface EnrichContactDeps {
  /** The operations database. */
  db: Database;
  /** Clock. */
  now: () => Date;
  /** Providers, default order and cache. */
  enrichment: Enrichment;
}

/** The request after the contract's rules and the checks it cannot express. */
interface Plan {
  providerNames: string[];
  defaultCountry: string;
  minConfidence: number;
  maxCacheAgeMs: number;
}

function checkRequest(req: EnrichContactRequest, enrichment: Enrichment): Plan {
  checkContract(EnrichContactRequestSchema, req);
  for (const [i, name] of req.providers.entries()) {
    if (!enrichment.providers.has(name)) {
      throw new InvalidInputError(
        `providers[${i}]`,
        `unknown provider ${JSON.stringify(name)}; known: ${[...enrichment.providers.keys()].join(", ")}`,
      );
    }
  }
  const defaultCountry = req.defaultCountryCode || "US";
  if (!isKnownRegion(defaultCountry)) {
    throw new InvalidInputError(
      "default_country_code",
      `${defaultCountry} is not a region with a telephone numbering plan`,
    );
  }
  const age = req.maxCacheAge;
  return {
    providerNames: req.providers.length > 0 ? [...req.providers] : [...enrichment.defaultOrder],
    defaultCountry,
    minConfidence: req.minConfidence === 0 ? defaultMinConfidence : req.minConfidence,
    maxCacheAgeMs: age === undefined ? defaultMaxCacheAgeMs : Number(age.seconds) * 1000 + Math.floor(age.nanos / 1e6),
  };
}

/** The subject contact: the stored one, or the inline one (and the stored id it names, if any). */
async function loadContact(
  deps: EnrichContactDeps,
  req: EnrichContactRequest,
): Promise<{ contact: Contact; storedId: string }> {
  const subject = req.subject;
  let id: string;
  let inline: Contact | undefined;
  if (subject.case === "contactId") id = subject.value.toLowerCase();
  else if (subject.case === "contact") {
    inline = copyContact(subject.value);
    id = inline.id.toLowerCase();
  } else throw new InvalidInputError("subject", "contact_id or contact is required");
  if (id === "") return { contact: inline as Contact, storedId: "" };
  const row = await deps.db.fork().findOne(CrmContact, { id }, { disableIdentityMap: true });
  const field = inline === undefined ? "contact_id" : "contact.id";
  if (row === null) throw new NotFoundError(`${field}: contact ${id} does not exist`);
  if (row.mergedInto !== null && row.mergedInto !== undefined) {
    throw new FailedPreconditionError(`${field}: contact ${id} was merged into ${row.mergedInto}; enrich that contact`);
  }
  return { contact: inline ?? contactOfRow(row), storedId: id };
}

function subjectOf(contact: Contact, req: EnrichContactRequest, plan: Plan): Subject {
  const email = contact.email.trim().toLowerCase();
  const domain = emailDomain(email);
  const kind =
    domain === "" ? { freeMail: false, disposable: false } : mailDomainKind(email.slice(email.lastIndexOf("@") + 1));
  const companyAttr = contact.attributes.find((a) => a.key === attributeKeys.get(EnrichableField.COMPANY_DOMAIN));
  const companyDomain =
    companyAttr?.value?.kind.case === "stringValue" ? registrableDomain(companyAttr.value.kind.value) : "";
  const rawPhone = req.rawPhone.trim() !== "" ? req.rawPhone : contact.phone;
  const address = contact.address;
  return {
    email,
    emailDomain: domain,
    freeMail: kind.freeMail,
    disposable: kind.disposable,
    companyDomain,
    givenName: contact.givenName,
    familyName: contact.familyName,
    company: contact.company,
    phone: normalizePhone(rawPhone, plan.defaultCountry),
    city: contact.city || address?.locality || "",
    region: contact.region || address?.region || "",
    postalCode: address?.postalCode ?? "",
    countryCode: address?.countryCode || plan.defaultCountry,
  };
}

/** Runs the enrichment; see the file comment for the method. */
export async function enrichContact(
  deps: EnrichContactDeps,
  req: EnrichContactRequest,
  ctx?: CallContext,
): Promise<EnrichContactResponse> {
  const plan = checkRequest(req, deps.enrichment);
  const { contact: original, storedId } = await loadContact(deps, req);
  const subject = subjectOf(original, req, plan);

  const asked = req.fieldsWanted.length > 0 ? req.fieldsWanted : allFields;
  const wanted = new Set(asked.filter((f) => req.overwriteExisting || isEmpty(original, f)));
  // The network is asked outside the call's transaction: cache reads and writes are short
  // statements of their own, and nothing is locked while providers answer.
  const result = await outsideUnitOfWork(() =>
    runWaterfall({
      subject,
      wanted,
      minConfidence: plan.minConfidence,
      maxCacheAgeMs: plan.maxCacheAgeMs,
      providers: plan.providerNames.map(
        (n) => deps.enrichment.providers.get(n) as NonNullable<ReturnType<typeof deps.enrichment.providers.get>>,
      ),
      cache: deps.enrichment.cache,
      now: deps.now,
      signal: ctx?.signal ?? new AbortController().signal,
    }),
  );
  const accepted = [...result.best.values()].filter((c) => c.confidence >= plan.minConfidence);

  const applied = new Set<Candidate>();
  const applyTo = (contact: Contact) => {
    for (const c of accepted) {
      if (!req.overwriteExisting && !isEmpty(contact, c.field)) continue;
      if (applyValue(contact, c.field, c.found)) applied.add(c);
    }
  };
  let contact: Contact;
  if (storedId === "") {
    contact = copyContact(original);
    applyTo(contact);
  } else {
    contact = await transaction(deps.db, async (em) => {
      const row = await em.findOneOrFail(CrmContact, { id: storedId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      // The row as it is now (another writer may have filled a field meanwhile); an inline
      // contact's own values are only inputs, never written.
      const current = contactOfRow(row);
      applyTo(current);
      if (applied.size > 0 && writeEnrichableFields(current, row)) {
        row.updatedAt = deps.now();
        await em.flush();
      }
      return contactOfRow(row);
    });
  }
  if (
    result.calls.some((c) => !c.cached && deps.enrichment.providers.get(c.provider)?.cached) &&
    deps.enrichment.cache
  ) {
    await outsideUnitOfWork(() => deps.enrichment.cache?.purgeExpired(deps.now(), purgeBatch));
  }

  const fields: EnrichedField[] = result.candidates.map((c) => {
    const previous: AttributeValue | undefined = currentValue(original, c.field);
    return create(EnrichedFieldSchema, {
      field: c.field,
      value: c.found.value,
      source: c.source,
      confidence: c.confidence,
      applied: applied.has(c),
      ...(previous === undefined ? {} : { previousValue: previous }),
    });
  });
  const companyDomainAttr = contact.attributes.find((a) => a.key === "company_domain")?.value;
  return create(EnrichContactResponseSchema, {
    contact,
    fields,
    emailDomain: subject.emailDomain,
    companyDomain:
      companyDomainAttr?.kind.case === "stringValue"
        ? registrableDomain(companyDomainAttr.kind.value)
        : subject.companyDomain,
    freeMail: subject.freeMail,
    phoneE164: subject.phone.e164,
    phoneValid: subject.phone.valid,
    phoneCountryCode: subject.phone.region,
    providerCalls: result.calls,
  });
}
