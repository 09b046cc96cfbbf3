/**
 * Typed schema.org JSON-LD builders for the senior-living directory: a community as a
 * LocalBusiness (MedicalBusiness only for licensed skilled nursing), a city page as a
 * CollectionPage whose mainEntity is an ItemList, its BreadcrumbList, and articles.
 *
 * Builders take plain inputs and never invent values: an empty string, an empty list or an
 * undefined field is left out of the node, so `validateJsonLd` can report it as missing instead
 * of the page silently carrying a placeholder. Nodes carry no `@context`; wrap one node with
 * `withContext` or several with `buildGraph`.
 */
import type {
  Article,
  BlogPosting,
  BreadcrumbList,
  CollectionPage,
  DayOfWeek,
  GeoCoordinates,
  Graph,
  ItemList,
  ListItem,
  LocalBusiness,
  LocationFeatureSpecification,
  MedicalBusiness,
  NewsArticle,
  OpeningHoursSpecification,
  Organization,
  Person,
  PostalAddress,
  Thing,
  WithContext,
} from "schema-dts";

/** The schema.org context every document must use (https, no trailing slash). */
export const schemaOrgContext = "https://schema.org";

/** A schema.org node type without the bare-string (IRI) member schema-dts adds to many unions. */
export type SchemaNode<T> = Exclude<T, string>;

/** A day of the week as schema.org's DayOfWeek enumeration names it. */
export type Weekday = "Monday" | "Tuesday" | "Wednesday" | "Thursday" | "Friday" | "Saturday" | "Sunday";

/** A postal address; empty fields are omitted. */
export interface PostalAddressInput {
  /** Street lines, first line first; joined with ", " into `streetAddress`. */
  readonly streetLines?: readonly string[];
  /** City or locality (`addressLocality`). */
  readonly locality?: string;
  /** State or region code, for example `TX` (`addressRegion`). */
  readonly region?: string;
  /** Postal code. */
  readonly postalCode?: string;
  /** Two-letter ISO 3166-1 country code (`addressCountry`). */
  readonly countryCode?: string;
}

/** A WGS84 coordinate. */
export interface GeoInput {
  /** Latitude in degrees. */
  readonly latitude: number;
  /** Longitude in degrees. */
  readonly longitude: number;
}

/** The same opening hours on a set of days. */
export interface OpeningHoursInput {
  /** Days these hours apply to. */
  readonly days: readonly Weekday[];
  /** Local opening time, `HH:MM`. */
  readonly opens: string;
  /** Local closing time, `HH:MM`; `23:59` for open until midnight. */
  readonly closes: string;
}

/** A community or other local business. */
export interface LocalBusinessInput {
  /** `@id`: the business page URL with a fragment, for example `https://example.com/c/123#business`. */
  readonly id?: string;
  /** `MedicalBusiness` only for licensed skilled nursing; `LocalBusiness` otherwise (the default). */
  readonly type?: "LocalBusiness" | "MedicalBusiness";
  /** Business name (Google requires it). */
  readonly name?: string;
  /** Short description. */
  readonly description?: string;
  /** Postal address (Google requires it). */
  readonly address?: PostalAddressInput;
  /** Coordinates. */
  readonly geo?: GeoInput;
  /** Telephone number, ideally in international form (`+1-512-555-0142`). */
  readonly telephone?: string;
  /** The business's page URL. */
  readonly url?: string;
  /** Image URLs. */
  readonly images?: readonly string[];
  /** Price range, for example `$$$` or `$3,500–$6,000 per month`. */
  readonly priceRange?: string;
  /** Opening hours. */
  readonly openingHours?: readonly OpeningHoursInput[];
  /** Amenities (for the directory: care types), emitted as LocationFeatureSpecification values. */
  readonly amenityFeatures?: readonly string[];
  /** Contact email address. */
  readonly email?: string;
  /** Profiles of the same business elsewhere. */
  readonly sameAs?: readonly string[];
}

/** One entry of a collection page's list. */
export interface CollectionItemInput {
  /** Position from 1; defaults to the entry's index + 1. */
  readonly position?: number;
  /** URL of the listed page. */
  readonly url?: string;
  /** `@id` of the listed entity (a community's LocalBusiness), emitted as `item: {"@id"}`. */
  readonly itemId?: string;
  /** Name of the listed entity. */
  readonly name?: string;
}

/** A collection page (a city page) whose mainEntity is an ItemList. */
export interface CollectionPageInput {
  /** The page's `@id`. */
  readonly id?: string;
  /** The page URL. */
  readonly url?: string;
  /** Page name, for example `Assisted Living in Austin, TX`. */
  readonly name?: string;
  /** Page description. */
  readonly description?: string;
  /** List entries; emitted sorted by position (stable), positions kept as given. */
  readonly items: readonly CollectionItemInput[];
  /** `@id` of the ItemList, when other nodes refer to it. */
  readonly itemListId?: string;
  /** `@id` of the page's BreadcrumbList, emitted as `breadcrumb: {"@id"}`. */
  readonly breadcrumbId?: string;
  /** BCP 47 language tag. */
  readonly inLanguage?: string;
}

/** One step of a breadcrumb trail. */
export interface BreadcrumbInput {
  /** Step name, for example `Texas`. */
  readonly name: string;
  /** Step URL; may be omitted for the last step (the current page). */
  readonly url?: string;
}

/** A breadcrumb trail, from the home page to the current page. */
export interface BreadcrumbListInput {
  /** The list's `@id`. */
  readonly id?: string;
  /** Steps in order; positions are 1..n in this order. */
  readonly items: readonly BreadcrumbInput[];
}

/** An author of an article. */
export interface AuthorInput {
  /** Author name. */
  readonly name: string;
  /** Profile URL. */
  readonly url?: string;
  /** `Person` (default) or `Organization`. */
  readonly kind?: "Person" | "Organization";
}

/** The organisation publishing an article. */
export interface PublisherInput {
  /** Publisher name. */
  readonly name: string;
  /** Home page. */
  readonly url?: string;
  /** Logo image URL. */
  readonly logoUrl?: string;
}

/** An Article, NewsArticle or BlogPosting. */
export interface ArticleInput {
  /** The article's `@id`. */
  readonly id?: string;
  /** schema.org type; `Article` by default. */
  readonly type?: "Article" | "NewsArticle" | "BlogPosting";
  /** Canonical URL, emitted as `url` and `mainEntityOfPage`. */
  readonly url?: string;
  /** Headline. */
  readonly headline?: string;
  /** Short description. */
  readonly description?: string;
  /** Image URLs. */
  readonly images?: readonly string[];
  /** First publication time (a Date is emitted as ISO 8601 UTC). */
  readonly datePublished?: Date | string;
  /** Last modification time. */
  readonly dateModified?: Date | string;
  /** Authors in byline order. */
  readonly authors?: readonly AuthorInput[];
  /** Publisher. */
  readonly publisher?: PublisherInput;
  /** Section, for example `Senior Living Guides`. */
  readonly articleSection?: string;
  /** BCP 47 language tag. */
  readonly inLanguage?: string;
}

/** `{ [key]: value }` when the value is present (not undefined, not "", not an empty list), else `{}`. */
function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  if (value === undefined || value === "" || (Array.isArray(value) && value.length === 0)) return {};
  return { [key]: value } as { [P in K]?: V };
}

/** One value as itself, several as a list; undefined when there is none. */
function oneOrMany<T>(values: readonly T[] | undefined): T | readonly T[] | undefined {
  const present = (values ?? []).filter((v) => v !== "");
  if (present.length === 0) return undefined;
  return present.length === 1 ? present[0] : present;
}

/** A reference to a node defined elsewhere (in the same graph or on another page). */
export function idReference(id: string): { "@id": string } {
  return { "@id": id };
}

/** A PostalAddress; undefined when every field is empty (so the property is reported missing). */
export function buildPostalAddress(input: PostalAddressInput | undefined): SchemaNode<PostalAddress> | undefined {
  if (input === undefined) return undefined;
  const street = (input.streetLines ?? [])
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .join(", ");
  const node: SchemaNode<PostalAddress> = {
    "@type": "PostalAddress",
    ...opt("streetAddress", street),
    ...opt("addressLocality", input.locality),
    ...opt("addressRegion", input.region),
    ...opt("postalCode", input.postalCode),
    ...opt("addressCountry", input.countryCode),
  };
  return Object.keys(node).length > 1 ? node : undefined;
}

/** GeoCoordinates. */
export function buildGeoCoordinates(input: GeoInput): SchemaNode<GeoCoordinates> {
  return { "@type": "GeoCoordinates", latitude: input.latitude, longitude: input.longitude };
}

/** An OpeningHoursSpecification for one set of days. */
export function buildOpeningHours(input: OpeningHoursInput): SchemaNode<OpeningHoursSpecification> {
  const days: readonly DayOfWeek[] = input.days;
  return {
    "@type": "OpeningHoursSpecification",
    ...opt("dayOfWeek", oneOrMany(days)),
    ...opt("opens", input.opens),
    ...opt("closes", input.closes),
  };
}

/** A LocalBusiness (or MedicalBusiness) node: NAP, geo, hours, price range, care types as amenities. */
export function buildLocalBusiness(input: LocalBusinessInput): SchemaNode<LocalBusiness> | SchemaNode<MedicalBusiness> {
  const amenities: SchemaNode<LocationFeatureSpecification>[] = (input.amenityFeatures ?? [])
    .filter((a) => a.trim() !== "")
    .map((name) => ({ "@type": "LocationFeatureSpecification", name, value: true }));
  const common = {
    ...opt("@id", input.id),
    ...opt("name", input.name),
    ...opt("description", input.description),
    ...opt("address", buildPostalAddress(input.address)),
    ...opt("geo", input.geo === undefined ? undefined : buildGeoCoordinates(input.geo)),
    ...opt("telephone", input.telephone),
    ...opt("email", input.email),
    ...opt("url", input.url),
    ...opt("image", oneOrMany(input.images)),
    ...opt("priceRange", input.priceRange),
    ...opt("openingHoursSpecification", input.openingHours?.map(buildOpeningHours)),
    ...opt("amenityFeature", amenities),
    ...opt("sameAs", oneOrMany(input.sameAs)),
  };
  if (input.type === "MedicalBusiness") return { "@type": "MedicalBusiness", ...common };
  return { "@type": "LocalBusiness", ...common };
}

/** A ListItem of an ItemList: `url` for the listed page, `item: {"@id"}` for the listed entity. */
export function buildListItem(input: CollectionItemInput, index: number): SchemaNode<ListItem> {
  return {
    "@type": "ListItem",
    position: input.position ?? index + 1,
    ...opt("url", input.url),
    ...opt("name", input.name),
    ...opt("item", input.itemId === undefined || input.itemId === "" ? undefined : idReference(input.itemId)),
  };
}

/** An ItemList of the given entries, sorted by position, with `numberOfItems`. */
export function buildItemList(items: readonly CollectionItemInput[], id?: string): SchemaNode<ItemList> {
  const listed = items.map((item, i) => buildListItem(item, i));
  const position = (li: SchemaNode<ListItem>): number => Number(li.position);
  listed.sort((a, b) => position(a) - position(b));
  return {
    "@type": "ItemList",
    ...opt("@id", id),
    numberOfItems: listed.length,
    itemListElement: listed,
  };
}

/** A CollectionPage whose mainEntity is the ItemList of its entries (a city page). */
export function buildCollectionPage(input: CollectionPageInput): SchemaNode<CollectionPage> {
  return {
    "@type": "CollectionPage",
    ...opt("@id", input.id),
    ...opt("url", input.url),
    ...opt("name", input.name),
    ...opt("description", input.description),
    ...opt("inLanguage", input.inLanguage),
    ...opt(
      "breadcrumb",
      input.breadcrumbId === undefined || input.breadcrumbId === "" ? undefined : idReference(input.breadcrumbId),
    ),
    mainEntity: buildItemList(input.items, input.itemListId),
  };
}

/** A BreadcrumbList (Home › State › City); positions follow the step order, the last may lack a URL. */
export function buildBreadcrumbList(input: BreadcrumbListInput): SchemaNode<BreadcrumbList> {
  return {
    "@type": "BreadcrumbList",
    ...opt("@id", input.id),
    itemListElement: input.items.map(
      (step, i): SchemaNode<ListItem> => ({
        "@type": "ListItem",
        position: i + 1,
        name: step.name,
        ...opt("item", step.url),
      }),
    ),
  };
}

function isoDate(d: Date | string | undefined): string | undefined {
  if (d === undefined) return undefined;
  return typeof d === "string" ? d : d.toISOString();
}

function buildAuthor(a: AuthorInput): SchemaNode<Person> | SchemaNode<Organization> {
  const props = { name: a.name, ...opt("url", a.url) };
  return a.kind === "Organization" ? { "@type": "Organization", ...props } : { "@type": "Person", ...props };
}

function buildPublisher(p: PublisherInput): SchemaNode<Organization> {
  return {
    "@type": "Organization",
    name: p.name,
    ...opt("url", p.url),
    ...opt(
      "logo",
      p.logoUrl === undefined || p.logoUrl === "" ? undefined : { "@type": "ImageObject" as const, url: p.logoUrl },
    ),
  };
}

/** An Article, NewsArticle or BlogPosting. */
export function buildArticle(
  input: ArticleInput,
): SchemaNode<Article> | SchemaNode<NewsArticle> | SchemaNode<BlogPosting> {
  const props = {
    ...opt("@id", input.id),
    ...opt("url", input.url),
    ...opt("mainEntityOfPage", input.url),
    ...opt("headline", input.headline),
    ...opt("description", input.description),
    ...opt("image", oneOrMany(input.images)),
    ...opt("datePublished", isoDate(input.datePublished)),
    ...opt("dateModified", isoDate(input.dateModified)),
    ...opt("author", oneOrMany(input.authors?.map(buildAuthor))),
    ...opt("publisher", input.publisher === undefined ? undefined : buildPublisher(input.publisher)),
    ...opt("articleSection", input.articleSection),
    ...opt("inLanguage", input.inLanguage),
  };
  if (input.type === "NewsArticle") return { "@type": "NewsArticle", ...props };
  if (input.type === "BlogPosting") return { "@type": "BlogPosting", ...props };
  return { "@type": "Article", ...props };
}

/** A single-node document: the node with `@context`. */
export function withContext<T extends SchemaNode<Thing>>(node: T): WithContext<T> {
  return { "@context": schemaOrgContext, ...node };
}

/** A multi-node document: one `@graph` under one `@context`, nodes linked by `@id` references. */
export function buildGraph(nodes: readonly SchemaNode<Thing>[]): Graph {
  return { "@context": schemaOrgContext, "@graph": nodes };
}

/** Options of `serializeJsonLd`. */
export interface SerializeOptions {
  /** Indent with two spaces; minified by default. */
  readonly pretty?: boolean;
}

/**
 * JSON text of a document, safe inside an HTML `<script>` element: `<`, `>` and `&` are escaped
 * as `\u003c`, `\u003e`, `\u0026` (same value for any JSON parser), so a name containing
 * `</script>` cannot end the element.
 */
export function serializeJsonLd(doc: unknown, options: SerializeOptions = {}): string {
  return JSON.stringify(doc, null, options.pretty === true ? 2 : undefined).replace(
    /[<>&]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The document as a `<script type="application/ld+json">` element, ready to embed in `<head>`. */
export function toJsonLdScriptTag(doc: unknown, options: SerializeOptions = {}): string {
  const json = serializeJsonLd(doc, options);
  return options.pretty === true
    ? `<script type="application/ld+json">\n${json}\n</script>`
    : `<script type="application/ld+json">${json}</script>`;
}
