/**
 * Schema.org markup (JSON-LD) for rich results.
 *
 * Method: each typed entity of the request is mapped by the lib/schema-org builders (schema-dts
 * types) to one node; one entity is emitted as a node with `@context`, several as one `@graph`
 * whose nodes refer to each other by `@id` (a city page's ItemList points at the communities'
 * LocalBusiness `@id`s, its `breadcrumb` at the BreadcrumbList). The document is then checked by
 * `validateJsonLd` against the required and recommended properties of Google's rich-result
 * documentation plus value checks (URLs, ISO 8601 dates, telephone, coordinates, positions,
 * `@id` uniqueness), and the findings are reported per entity as JSONPaths into `json_ld`.
 * Nothing is filled in: a missing name or address is left out and reported, never invented.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Thing as SchemaThing } from "schema-dts";
import {
  type ArticleEntity,
  ArticleType,
  AuthorKind,
  type BreadcrumbListEntity,
  type CollectionPageEntity,
  DayOfWeek,
  type EntityValidation,
  EntityValidationSchema,
  type GenerateSchemaMarkupRequest,
  type GenerateSchemaMarkupResponse,
  GenerateSchemaMarkupResponseSchema,
  type LocalBusinessEntity,
  LocalBusinessType,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import {
  type ArticleInput,
  buildArticle,
  buildBreadcrumbList,
  buildCollectionPage,
  buildGraph,
  buildLocalBusiness,
  type JsonLdIssue,
  type LocalBusinessInput,
  type SchemaNode,
  serializeJsonLd,
  toJsonLdScriptTag,
  validateJsonLd,
  type Weekday,
  withContext,
} from "../../../lib/schema-org/index.ts";

/** A schema.org node as the builders return it. */
type Thing = SchemaNode<SchemaThing>;

const maxEntities = 1000;

const weekdayNames: Readonly<Record<number, Weekday>> = {
  [DayOfWeek.MONDAY]: "Monday",
  [DayOfWeek.TUESDAY]: "Tuesday",
  [DayOfWeek.WEDNESDAY]: "Wednesday",
  [DayOfWeek.THURSDAY]: "Thursday",
  [DayOfWeek.FRIDAY]: "Friday",
  [DayOfWeek.SATURDAY]: "Saturday",
  [DayOfWeek.SUNDAY]: "Sunday",
};

function localBusinessInput(e: LocalBusinessEntity, field: string): LocalBusinessInput {
  if (
    e.businessType !== LocalBusinessType.UNSPECIFIED &&
    e.businessType !== LocalBusinessType.LOCAL_BUSINESS &&
    e.businessType !== LocalBusinessType.MEDICAL_BUSINESS
  ) {
    throw new InvalidInputError(`${field}.business_type`, `unknown value ${e.businessType}`);
  }
  const openingHours = e.openingHours.map((h, i) => ({
    days: h.daysOfWeek.map((d, j) => {
      const name = weekdayNames[d];
      if (name === undefined) {
        throw new InvalidInputError(
          `${field}.opening_hours[${i}].days_of_week[${j}]`,
          "must be a day, Monday to Sunday",
        );
      }
      return name;
    }),
    opens: h.opens,
    closes: h.closes,
  }));
  const a = e.address;
  return {
    id: e.id,
    type: e.businessType === LocalBusinessType.MEDICAL_BUSINESS ? "MedicalBusiness" : "LocalBusiness",
    name: e.name.trim(),
    description: e.description,
    ...(a === undefined
      ? {}
      : {
          address: {
            streetLines: a.streetLines,
            locality: a.locality,
            region: a.region,
            postalCode: a.postalCode,
            countryCode: a.countryCode,
          },
        }),
    ...(e.geo === undefined ? {} : { geo: { latitude: e.geo.latitude, longitude: e.geo.longitude } }),
    telephone: e.telephone.trim(),
    url: e.url,
    images: e.images,
    priceRange: e.priceRange,
    openingHours,
    amenityFeatures: e.amenityFeatures,
    email: e.email,
    sameAs: e.sameAs,
  };
}

function collectionPageNode(e: CollectionPageEntity, field: string): Thing {
  e.items.forEach((item, j) => {
    if (item.position < 1) throw new InvalidInputError(`${field}.items[${j}].position`, "must be 1 or more");
    if (item.url === "" && item.itemId === "") {
      throw new InvalidInputError(`${field}.items[${j}]`, "give the item's url or item_id");
    }
  });
  return buildCollectionPage({
    id: e.id,
    url: e.url,
    name: e.name.trim(),
    description: e.description,
    breadcrumbId: e.breadcrumbId,
    itemListId: e.itemListId,
    inLanguage: e.inLanguage,
    items: e.items.map((item) => ({ position: item.position, url: item.url, itemId: item.itemId, name: item.name })),
  });
}

function breadcrumbListNode(e: BreadcrumbListEntity, field: string): Thing {
  if (e.items.length === 0) throw new InvalidInputError(`${field}.items`, "give at least one step");
  e.items.forEach((step, j) => {
    if (step.name.trim() === "") throw new InvalidInputError(`${field}.items[${j}].name`, "must not be blank");
  });
  return buildBreadcrumbList({ id: e.id, items: e.items.map((s) => ({ name: s.name.trim(), url: s.url })) });
}

function articleInput(e: ArticleEntity, field: string): ArticleInput {
  const types: Readonly<Record<number, ArticleInput["type"]>> = {
    [ArticleType.UNSPECIFIED]: "Article",
    [ArticleType.ARTICLE]: "Article",
    [ArticleType.NEWS_ARTICLE]: "NewsArticle",
    [ArticleType.BLOG_POSTING]: "BlogPosting",
  };
  const type = types[e.articleType];
  if (type === undefined) throw new InvalidInputError(`${field}.article_type`, `unknown value ${e.articleType}`);
  const authors = e.authors.map((a, j) => {
    if (a.name.trim() === "") throw new InvalidInputError(`${field}.authors[${j}].name`, "must not be blank");
    if (a.kind !== AuthorKind.UNSPECIFIED && a.kind !== AuthorKind.PERSON && a.kind !== AuthorKind.ORGANIZATION) {
      throw new InvalidInputError(`${field}.authors[${j}].kind`, `unknown value ${a.kind}`);
    }
    return {
      name: a.name.trim(),
      url: a.url,
      kind: a.kind === AuthorKind.ORGANIZATION ? ("Organization" as const) : ("Person" as const),
    };
  });
  const p = e.publisher;
  if (p !== undefined && p.name.trim() === "")
    throw new InvalidInputError(`${field}.publisher.name`, "must not be blank");
  return {
    id: e.id,
    type,
    url: e.url,
    headline: e.headline.trim(),
    description: e.description,
    images: e.images,
    ...(e.datePublished === undefined ? {} : { datePublished: timestampDate(e.datePublished) }),
    ...(e.dateModified === undefined ? {} : { dateModified: timestampDate(e.dateModified) }),
    authors,
    ...(p === undefined ? {} : { publisher: { name: p.name.trim(), url: p.url, logoUrl: p.logoUrl } }),
    articleSection: e.articleSection,
    inLanguage: e.inLanguage,
  };
}

/** The schema.org node of one request entity; throws InvalidInputError naming the field. */
function entityNode(req: GenerateSchemaMarkupRequest, i: number): Thing {
  const entity = req.entities[i]?.entity;
  const field = `entities[${i}]`;
  switch (entity?.case) {
    case "localBusiness":
      return buildLocalBusiness(localBusinessInput(entity.value, `${field}.local_business`));
    case "collectionPage":
      return collectionPageNode(entity.value, `${field}.collection_page`);
    case "breadcrumbList":
      return breadcrumbListNode(entity.value, `${field}.breadcrumb_list`);
    case "article":
      return buildArticle(articleInput(entity.value, `${field}.article`));
    default:
      throw new InvalidInputError(
        `${field}.entity`,
        "set exactly one of local_business, collection_page, breadcrumb_list or article",
      );
  }
}

function describeIssue(issue: JsonLdIssue): string {
  return `${issue.severity} ${issue.path}: ${issue.message}`;
}

/** Generates the JSON-LD of one page's entities and validates it. Pure: no dependencies used. */
export async function generateSchemaMarkup(req: GenerateSchemaMarkupRequest): Promise<GenerateSchemaMarkupResponse> {
  if (req.entities.length === 0) throw new InvalidInputError("entities", "give at least one entity");
  if (req.entities.length > maxEntities) {
    throw new InvalidInputError("entities", `at most ${maxEntities} entities per request`);
  }
  const nodes = req.entities.map((_, i) => entityNode(req, i));
  const [only] = nodes;
  const doc = nodes.length === 1 && only !== undefined ? withContext(only) : buildGraph(nodes);
  const check = validateJsonLd(doc);

  // Document-level findings (none are expected from our own builders) are reported on the first entity.
  const documentIssues = [...check.errors, ...check.warnings].filter((x) => x.entity === undefined);
  const validations: EntityValidation[] = check.entities.map((report, i) => {
    const issues = [...report.errors, ...report.warnings, ...(i === 0 ? documentIssues : [])];
    const node = nodes[i] as Thing;
    return create(EntityValidationSchema, {
      index: i,
      schemaType: String(node["@type"]),
      id: report.id ?? "",
      missingRequired: issues.filter((x) => x.kind === "missing-required").map((x) => x.path),
      missingRecommended: issues.filter((x) => x.kind === "missing-recommended").map((x) => x.path),
      warnings: issues.filter((x) => x.kind === "invalid").map(describeIssue),
      richResultEligible: report.errors.length === 0 && (i > 0 || documentIssues.every((x) => x.severity !== "error")),
    });
  });
  const options = { pretty: req.pretty };
  return create(GenerateSchemaMarkupResponseSchema, {
    jsonLd: req.asScriptTag ? toJsonLdScriptTag(doc, options) : serializeJsonLd(doc, options),
    validations,
    valid: check.valid,
    missingRequiredCount: validations.reduce((n, v) => n + v.missingRequired.length, 0),
    missingRecommendedCount: validations.reduce((n, v) => n + v.missingRecommended.length, 0),
  });
}
