/**
 * Our own JSON-LD checks: the required and recommended properties Google's rich-result
 * documentation lists for the types the directory emits, plus value checks schema-dts types
 * cannot express. Works on any parsed JSON-LD (a node, an `@graph` document or a top-level array),
 * so the page generator and the technical audit can both use it.
 *
 * | rule | severity | what |
 * |---|---|---|
 * | `context` | error | root `@context` is `https://schema.org` (`http://` is a warning) |
 * | `type` | error | every top-level node has an `@type` (a nested node without one is a warning; bare `{"@id"}` references need none) |
 * | `id.url`, `url` | error | `@id`, `url`, `item`, `image`, `sameAs`, `logo`, … are absolute http(s) URLs |
 * | `id.unique` | error | one definition per `@id` across the document (references are fine) |
 * | `date` | error | date properties are ISO 8601 (a date-time without time zone is a warning) |
 * | `telephone` | error | digits with `+ - . ( )` and spaces, 7–15 digits; no `+country` code is a warning |
 * | `email` | error | looks like `local@domain.tld` |
 * | `local-business.*` | error/warning | name and address required; @id, telephone, url, geo, image, priceRange, openingHoursSpecification recommended |
 * | `address.*` | error/warning | a PostalAddress has at least one field; street, locality, region, postal code and country recommended |
 * | `geo.*` | error | latitude in [-90, 90], longitude in [-180, 180], both present and numeric; (0, 0) is a warning |
 * | `opening-hours.*` | error | dayOfWeek from schema.org's DayOfWeek, opens/closes as `HH:MM[:SS]` |
 * | `collection-page.*` | error/warning | name and url required; @id, description, mainEntity (an ItemList) and breadcrumb recommended |
 * | `item-list.*` | error | ListItem elements with integer positions 1..n in order, each with url or item; numberOfItems matches |
 * | `breadcrumb.*` | error/warning | ListItems with position 1..n, name, and item (except on the last); fewer than two steps is a warning |
 * | `article.*` | warning | headline (≤ 110 characters), image, datePublished, dateModified, author with name recommended |
 * | `amenity.name` | error | a LocationFeatureSpecification has a name |
 *
 * Paths are JSONPath from the document root, for example `$['@graph'][0].address.postalCode`.
 */

/** `error` blocks the rich result (or makes the document wrong); `warning` weakens it. */
export type JsonLdSeverity = "error" | "warning";

/** Whether an issue is a missing property (required or recommended) or a wrong value. */
export type JsonLdIssueKind = "missing-required" | "missing-recommended" | "invalid";

/** One finding. */
export interface JsonLdIssue {
  /** JSONPath of the offending (or missing) property. */
  readonly path: string;
  /** Error or warning. */
  readonly severity: JsonLdSeverity;
  /** Missing property or invalid value. */
  readonly kind: JsonLdIssueKind;
  /** Rule id, for example `local-business.address` or `item-list.position`. */
  readonly rule: string;
  /** What is wrong and what to do. */
  readonly message: string;
  /** Index of the top-level entity the issue belongs to; undefined for document-level issues. */
  readonly entity?: number;
}

/** The findings of one top-level entity (the root node, or one `@graph` element). */
export interface JsonLdEntityReport {
  /** Index among the top-level entities. */
  readonly index: number;
  /** JSONPath of the entity. */
  readonly path: string;
  /** Its `@type` values. */
  readonly types: readonly string[];
  /** Its `@id`, when it has one. */
  readonly id?: string;
  /** Errors in the entity or its nested nodes. */
  readonly errors: readonly JsonLdIssue[];
  /** Warnings in the entity or its nested nodes. */
  readonly warnings: readonly JsonLdIssue[];
}

/** The result of `validateJsonLd`. */
export interface JsonLdValidation {
  /** True when there is no error at all. */
  readonly valid: boolean;
  /** All errors, in document order. */
  readonly errors: readonly JsonLdIssue[];
  /** All warnings, in document order. */
  readonly warnings: readonly JsonLdIssue[];
  /** Findings per top-level entity. */
  readonly entities: readonly JsonLdEntityReport[];
}

type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json };
type JsonObject = { readonly [k: string]: Json };

const localBusinessTypes = new Set([
  "LocalBusiness",
  "MedicalBusiness",
  "MedicalClinic",
  "Nursing",
  "Geriatric",
  "CommunityHealth",
  "HealthAndBeautyBusiness",
  "LodgingBusiness",
  "ProfessionalService",
  "Store",
  "FoodEstablishment",
  "Restaurant",
  "Dentist",
  "Physician",
  "Pharmacy",
  "RealEstateAgent",
  "FinancialService",
  "LegalService",
  "ChildCare",
]);
const articleTypes = new Set([
  "Article",
  "NewsArticle",
  "BlogPosting",
  "TechArticle",
  "Report",
  "ScholarlyArticle",
  "AnalysisNewsArticle",
  "ReportageNewsArticle",
]);
const weekdays = new Set([
  "Monday",
  "Tuesday",
  "Wednesday",
  "Thursday",
  "Friday",
  "Saturday",
  "Sunday",
  "PublicHolidays",
]);
const urlProps = new Set([
  "url",
  "sameAs",
  "image",
  "logo",
  "item",
  "mainEntityOfPage",
  "contentUrl",
  "thumbnailUrl",
  "hasMap",
]);
const dateProps = new Set([
  "datePublished",
  "dateModified",
  "dateCreated",
  "uploadDate",
  "startDate",
  "endDate",
  "validFrom",
  "validThrough",
  "foundingDate",
  "expires",
]);
const addressFields = ["streetAddress", "addressLocality", "addressRegion", "postalCode", "addressCountry"] as const;
/** Google truncates article headlines past this many characters. */
const maxHeadline = 110;
/** Google does not show price ranges of this length or longer. */
const maxPriceRange = 100;

/** JSONPath of `key` under `base`: dot notation for identifiers, bracket notation otherwise. */
export function jsonPathChild(base: string, key: string | number): string {
  if (typeof key === "number") return `${base}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${base}.${key}` : `${base}['${key.replace(/['\\]/g, "\\$&")}']`;
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Present: not undefined, null, blank string or empty list. */
function present(v: Json | undefined): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v === "string") return v.trim() !== "";
  if (Array.isArray(v)) return v.length > 0;
  return true;
}

function asList(v: Json | undefined): readonly Json[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v as Json];
}

function typesOf(node: JsonObject): string[] {
  return asList(node["@type"]).filter((t): t is string => typeof t === "string");
}

/** Absolute http(s) URL. */
export function isAbsoluteHttpUrl(s: string): boolean {
  if (!URL.canParse(s)) return false;
  const u = new URL(s);
  return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
}

const isoDate = /^(\d{4})-(\d{2})-(\d{2})$/;
const isoDateTime =
  /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.\d+)?)?(Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?$/;

/** `ok`, `no-zone` (a date-time without time zone) or `invalid`, for an ISO 8601 date or date-time. */
export function checkIsoDate(s: string): "ok" | "no-zone" | "invalid" {
  const m = isoDate.exec(s) ?? isoDateTime.exec(s);
  if (m === null) return "invalid";
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) return "invalid";
  return m.length > 4 && m[7] === undefined ? "no-zone" : "ok";
}

/** `ok`, `no-country-code` or `invalid` for a telephone number, E.164-ish (`+1-512-555-0142`). */
export function checkTelephone(s: string): "ok" | "no-country-code" | "invalid" {
  const withoutExtension = s.trim().replace(/\s*(?:ext\.?|x)\s*\d{1,6}$/i, "");
  const compact = withoutExtension.replace(/[\s().-]/g, "");
  if (!/^\+?\d+$/.test(compact)) return "invalid";
  const digits = compact.replace("+", "");
  if (digits.length < 7 || digits.length > 15) return "invalid";
  if (!compact.startsWith("+")) return "no-country-code";
  return digits.startsWith("0") ? "invalid" : "ok";
}

function toNumber(v: Json | undefined): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

class Checker {
  readonly issues: JsonLdIssue[] = [];
  /** `@id` → path of its first definition. */
  readonly defined = new Map<string, string>();
  entity: number | undefined;

  add(path: string, severity: JsonLdSeverity, kind: JsonLdIssueKind, rule: string, message: string): void {
    this.issues.push(
      this.entity === undefined
        ? { path, severity, kind, rule, message }
        : { path, severity, kind, rule, message, entity: this.entity },
    );
  }

  invalid(path: string, rule: string, message: string, severity: JsonLdSeverity = "error"): void {
    this.add(path, severity, "invalid", rule, message);
  }

  /** Reports `key` missing from `node` as required; true when present. */
  required(node: JsonObject, path: string, key: string, rule: string, what: string): boolean {
    if (present(node[key])) return true;
    this.add(jsonPathChild(path, key), "error", "missing-required", rule, `${what} is required`);
    return false;
  }

  /** Reports `key` missing from `node` as recommended; true when present. */
  recommended(node: JsonObject, path: string, key: string, rule: string, what: string): boolean {
    if (present(node[key])) return true;
    this.add(jsonPathChild(path, key), "warning", "missing-recommended", rule, `${what} is recommended`);
    return false;
  }

  context(node: JsonObject, path: string): void {
    const ctx = node["@context"];
    const p = jsonPathChild(path, "@context");
    if (ctx === undefined) {
      this.add(p, "error", "missing-required", "context", '@context is required: use "https://schema.org"');
      return;
    }
    const values = asList(ctx).filter((c): c is string => typeof c === "string");
    if (values.some((c) => /^https:\/\/schema\.org\/?$/.test(c))) return;
    if (values.some((c) => /^http:\/\/schema\.org\/?$/.test(c))) {
      this.invalid(p, "context", 'use "https://schema.org" rather than http', "warning");
      return;
    }
    this.invalid(p, "context", '@context must be "https://schema.org"');
  }

  /** Checks one node and everything nested in it; `top` for a top-level entity. */
  node(node: JsonObject, path: string, top = false): void {
    const keys = Object.keys(node).filter((k) => k !== "@context");
    const id = node["@id"];
    if (id !== undefined) {
      const idPath = jsonPathChild(path, "@id");
      if (typeof id !== "string" || !isAbsoluteHttpUrl(id)) {
        this.invalid(idPath, "id.url", "@id must be an absolute URL, for example https://example.com/page#business");
      } else if (keys.some((k) => k !== "@id" && k !== "@type")) {
        const first = this.defined.get(id);
        if (first === undefined) this.defined.set(id, path);
        else
          this.invalid(
            idPath,
            "id.unique",
            `@id ${id} is already defined at ${first}; refer to it with {"@id"} instead`,
          );
      }
    }
    // A bare {"@id"} is a reference to a node defined elsewhere.
    if (keys.length === 1 && keys[0] === "@id") return;
    const types = typesOf(node);
    if (types.length === 0 && top) {
      this.add(jsonPathChild(path, "@type"), "error", "missing-required", "type", "@type is required");
    } else if (types.length === 0) {
      this.add(jsonPathChild(path, "@type"), "warning", "missing-recommended", "type", "@type is recommended");
    }
    for (const [key, value] of Object.entries(node)) {
      if (key.startsWith("@")) continue;
      this.property(key, value, jsonPathChild(path, key));
    }
    const is = (set: ReadonlySet<string>): boolean => types.some((t) => set.has(t));
    if (is(localBusinessTypes)) this.localBusiness(node, path);
    if (types.includes("PostalAddress")) this.postalAddress(node, path);
    if (types.includes("GeoCoordinates")) this.geo(node, path);
    if (types.includes("OpeningHoursSpecification")) this.openingHours(node, path);
    if (types.includes("LocationFeatureSpecification")) {
      this.required(node, path, "name", "amenity.name", "LocationFeatureSpecification name");
    }
    if (types.includes("CollectionPage")) this.collectionPage(node, path);
    if (types.includes("BreadcrumbList")) this.breadcrumbList(node, path);
    else if (types.includes("ItemList")) this.itemList(node, path);
    if (is(articleTypes)) this.article(node, path);
  }

  /** Value checks by property name, then recursion into nested nodes. */
  property(key: string, value: Json, path: string): void {
    const values = Array.isArray(value) ? value : [value];
    values.forEach((v, i) => {
      const p = Array.isArray(value) ? jsonPathChild(path, i) : path;
      if (isObject(v)) {
        this.node(v, p);
        return;
      }
      if (typeof v !== "string") return;
      if (urlProps.has(key) && !isAbsoluteHttpUrl(v)) {
        this.invalid(p, "url", `${key} must be an absolute http(s) URL, got "${v}"`);
      } else if (dateProps.has(key)) {
        const r = checkIsoDate(v);
        if (r === "invalid") this.invalid(p, "date", `${key} must be an ISO 8601 date or date-time, got "${v}"`);
        if (r === "no-zone") this.invalid(p, "date", `${key} has no time zone; add Z or an offset`, "warning");
      } else if (key === "telephone" || key === "faxNumber") {
        const r = checkTelephone(v);
        if (r === "invalid") {
          this.invalid(p, "telephone", `${key} "${v}" is not a phone number (7–15 digits, optional +country code)`);
        }
        if (r === "no-country-code") {
          this.invalid(p, "telephone", `${key} "${v}" has no country code; use the +1-555-555-0100 form`, "warning");
        }
      } else if (key === "email" && !/^(mailto:)?[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v)) {
        this.invalid(p, "email", `email "${v}" is not an email address`);
      }
    });
  }

  localBusiness(node: JsonObject, path: string): void {
    this.required(node, path, "name", "local-business.name", "LocalBusiness name");
    if (this.required(node, path, "address", "local-business.address", "LocalBusiness address")) {
      if (typeof node.address === "string") {
        this.invalid(
          jsonPathChild(path, "address"),
          "local-business.address",
          "use a PostalAddress, not text",
          "warning",
        );
      }
    }
    this.recommended(node, path, "@id", "local-business.id", "@id (a stable URL with a fragment)");
    this.recommended(node, path, "telephone", "local-business.telephone", "telephone");
    this.recommended(node, path, "url", "local-business.url", "url");
    this.recommended(node, path, "geo", "local-business.geo", "geo (GeoCoordinates)");
    this.recommended(node, path, "image", "local-business.image", "image");
    this.recommended(node, path, "priceRange", "local-business.price-range", "priceRange");
    this.recommended(
      node,
      path,
      "openingHoursSpecification",
      "local-business.opening-hours",
      "openingHoursSpecification",
    );
    const price = node.priceRange;
    if (typeof price === "string" && price.length >= maxPriceRange) {
      this.invalid(
        jsonPathChild(path, "priceRange"),
        "local-business.price-range",
        `priceRange has ${price.length} characters; Google ignores ${maxPriceRange} or more`,
        "warning",
      );
    }
  }

  postalAddress(node: JsonObject, path: string): void {
    if (!addressFields.some((f) => present(node[f]))) {
      this.invalid(path, "address.empty", "PostalAddress has no address fields");
      return;
    }
    for (const f of addressFields) this.recommended(node, path, f, `address.${f}`, `address ${f}`);
  }

  geo(node: JsonObject, path: string): void {
    const check = (key: "latitude" | "longitude", limit: number): number | undefined => {
      if (!this.required(node, path, key, `geo.${key}`, key)) return undefined;
      const n = toNumber(node[key]);
      if (n === undefined || Math.abs(n) > limit) {
        this.invalid(jsonPathChild(path, key), `geo.${key}`, `${key} must be a number in [-${limit}, ${limit}]`);
        return undefined;
      }
      return n;
    };
    const lat = check("latitude", 90);
    const lon = check("longitude", 180);
    if (lat === 0 && lon === 0) {
      this.invalid(path, "geo.null-island", "coordinates (0, 0) are almost certainly a missing value", "warning");
    }
  }

  openingHours(node: JsonObject, path: string): void {
    if (this.required(node, path, "dayOfWeek", "opening-hours.day-of-week", "dayOfWeek")) {
      const days = node.dayOfWeek;
      asList(days).forEach((d, i) => {
        const name = typeof d === "string" ? d.replace(/^https?:\/\/schema\.org\//, "") : "";
        if (!weekdays.has(name)) {
          const p = jsonPathChild(path, "dayOfWeek");
          this.invalid(
            Array.isArray(days) ? jsonPathChild(p, i) : p,
            "opening-hours.day-of-week",
            `dayOfWeek must be a schema.org DayOfWeek such as "Monday", got ${JSON.stringify(d)}`,
          );
        }
      });
    }
    for (const key of ["opens", "closes"] as const) {
      if (!this.required(node, path, key, `opening-hours.${key}`, key)) continue;
      const v = node[key];
      if (typeof v !== "string" || !/^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/.test(v)) {
        this.invalid(jsonPathChild(path, key), `opening-hours.${key}`, `${key} must be a local time HH:MM[:SS]`);
      }
    }
  }

  collectionPage(node: JsonObject, path: string): void {
    this.required(node, path, "name", "collection-page.name", "CollectionPage name");
    this.required(node, path, "url", "collection-page.url", "CollectionPage url");
    this.recommended(node, path, "@id", "collection-page.id", "@id");
    this.recommended(node, path, "description", "collection-page.description", "description");
    this.recommended(node, path, "breadcrumb", "collection-page.breadcrumb", "breadcrumb");
    if (this.recommended(node, path, "mainEntity", "collection-page.main-entity", "mainEntity (an ItemList)")) {
      const main = node.mainEntity;
      if (isObject(main) && !typesOf(main).includes("ItemList") && Object.keys(main).some((k) => k !== "@id")) {
        this.invalid(
          jsonPathChild(path, "mainEntity"),
          "collection-page.main-entity",
          "mainEntity of a CollectionPage should be an ItemList",
          "warning",
        );
      }
    }
  }

  /** ListItem elements with positions 1..n in order; returns the elements that are objects. */
  listItems(node: JsonObject, path: string, rule: string): { item: JsonObject; path: string }[] {
    if (!this.required(node, path, "itemListElement", `${rule}.elements`, "itemListElement")) return [];
    const listPath = jsonPathChild(path, "itemListElement");
    const out: { item: JsonObject; path: string }[] = [];
    asList(node.itemListElement).forEach((el, i) => {
      const p = Array.isArray(node.itemListElement) ? jsonPathChild(listPath, i) : listPath;
      if (!isObject(el) || !typesOf(el).includes("ListItem")) {
        this.invalid(p, `${rule}.list-item`, "each itemListElement must be a ListItem");
        return;
      }
      const pos = el.position;
      const expected = i + 1;
      if (pos === undefined) {
        this.add(jsonPathChild(p, "position"), "error", "missing-required", `${rule}.position`, "position is required");
      } else if (toNumber(pos) !== expected) {
        this.invalid(
          jsonPathChild(p, "position"),
          `${rule}.position`,
          `positions must run 1..n in list order: expected ${expected}, got ${JSON.stringify(pos)}`,
        );
      }
      out.push({ item: el, path: p });
    });
    return out;
  }

  itemList(node: JsonObject, path: string): void {
    const items = this.listItems(node, path, "item-list");
    if (Array.isArray(node.itemListElement) && node.itemListElement.length === 0) {
      this.invalid(jsonPathChild(path, "itemListElement"), "item-list.elements", "the list is empty", "warning");
    }
    for (const { item, path: p } of items) {
      if (!present(item.url) && !present(item.item)) {
        this.add(
          jsonPathChild(p, "url"),
          "error",
          "missing-required",
          "item-list.target",
          "a ListItem needs url or item",
        );
      }
    }
    const declared = node.numberOfItems;
    if (declared !== undefined && toNumber(declared) !== asList(node.itemListElement).length) {
      this.invalid(
        jsonPathChild(path, "numberOfItems"),
        "item-list.number-of-items",
        `numberOfItems is ${JSON.stringify(declared)} but the list has ${asList(node.itemListElement).length} elements`,
      );
    }
  }

  breadcrumbList(node: JsonObject, path: string): void {
    const items = this.listItems(node, path, "breadcrumb");
    if (present(node.itemListElement) && asList(node.itemListElement).length < 2) {
      this.invalid(
        jsonPathChild(path, "itemListElement"),
        "breadcrumb.elements",
        "a breadcrumb trail should have at least two steps",
        "warning",
      );
    }
    items.forEach(({ item, path: p }, i) => {
      const target = item.item;
      if (!present(item.name) && !(isObject(target) && present(target.name))) {
        this.add(
          jsonPathChild(p, "name"),
          "error",
          "missing-required",
          "breadcrumb.name",
          "breadcrumb name is required",
        );
      }
      if (i < items.length - 1 && !present(target)) {
        this.add(
          jsonPathChild(p, "item"),
          "error",
          "missing-required",
          "breadcrumb.item",
          "item (the step's URL) is required on every step but the last",
        );
      }
    });
  }

  article(node: JsonObject, path: string): void {
    if (this.recommended(node, path, "headline", "article.headline", "headline")) {
      const h = node.headline;
      if (typeof h === "string" && h.length > maxHeadline) {
        this.invalid(
          jsonPathChild(path, "headline"),
          "article.headline",
          `headline has ${h.length} characters; Google truncates past ${maxHeadline}`,
          "warning",
        );
      }
    }
    this.recommended(node, path, "image", "article.image", "image");
    this.recommended(node, path, "datePublished", "article.date-published", "datePublished");
    this.recommended(node, path, "dateModified", "article.date-modified", "dateModified");
    if (this.recommended(node, path, "author", "article.author", "author")) {
      const authorPath = jsonPathChild(path, "author");
      asList(node.author).forEach((a, i) => {
        const p = Array.isArray(node.author) ? jsonPathChild(authorPath, i) : authorPath;
        if (!isObject(a)) {
          this.invalid(p, "article.author", "author should be a Person or Organization, not text", "warning");
          return;
        }
        const types = typesOf(a);
        if (!types.includes("Person") && !types.includes("Organization") && types.length > 0) {
          this.invalid(p, "article.author", "author should be a Person or Organization", "warning");
        }
        this.recommended(a, p, "name", "article.author-name", "author name");
      });
    }
    const published = node.datePublished;
    const modified = node.dateModified;
    if (
      typeof published === "string" &&
      typeof modified === "string" &&
      checkIsoDate(published) !== "invalid" &&
      checkIsoDate(modified) !== "invalid" &&
      Date.parse(modified) < Date.parse(published)
    ) {
      this.invalid(
        jsonPathChild(path, "dateModified"),
        "article.dates",
        "dateModified is before datePublished",
        "warning",
      );
    }
  }
}

/**
 * Validates a parsed JSON-LD document: a node with `@context`, a `{"@context", "@graph"}` document
 * or a top-level array of such nodes. Each root node or `@graph` element is one entity.
 */
export function validateJsonLd(doc: unknown): JsonLdValidation {
  const c = new Checker();
  const entities: { path: string; node: JsonObject | undefined }[] = [];
  const root = doc as Json;
  if (Array.isArray(root)) {
    root.forEach((el, i) => {
      const p = jsonPathChild("$", i);
      if (isObject(el)) c.context(el, p);
      entities.push({ path: p, node: isObject(el) ? el : undefined });
    });
  } else if (isObject(root)) {
    c.context(root, "$");
    if (root["@graph"] !== undefined) {
      const graph = root["@graph"];
      const gp = jsonPathChild("$", "@graph");
      if (!Array.isArray(graph)) c.invalid(gp, "graph", "@graph must be an array of nodes");
      else {
        for (const [i, el] of graph.entries()) {
          entities.push({ path: jsonPathChild(gp, i), node: isObject(el) ? el : undefined });
        }
      }
    } else {
      entities.push({ path: "$", node: root });
    }
  } else {
    c.invalid("$", "document", "a JSON-LD document must be an object or an array of objects");
  }
  entities.forEach((e, i) => {
    c.entity = i;
    if (e.node === undefined) c.invalid(e.path, "document", "each entity must be a JSON object");
    else c.node(e.node, e.path, true);
  });
  c.entity = undefined;

  const errors = c.issues.filter((x) => x.severity === "error");
  const warnings = c.issues.filter((x) => x.severity === "warning");
  const reports = entities.map((e, i): JsonLdEntityReport => {
    const id = e.node?.["@id"];
    const base = {
      index: i,
      path: e.path,
      types: e.node === undefined ? [] : typesOf(e.node),
      errors: errors.filter((x) => x.entity === i),
      warnings: warnings.filter((x) => x.entity === i),
    };
    return typeof id === "string" ? { ...base, id } : base;
  });
  return { valid: errors.length === 0, errors, warnings, entities: reports };
}
