/**
 * schema.org JSON-LD for the directory: typed builders (schema-dts types) for communities
 * (LocalBusiness / MedicalBusiness), city pages (CollectionPage + ItemList), breadcrumbs and
 * articles; graph assembly and script-safe serialisation; and `validateJsonLd`, our own
 * required/recommended property and value checks with JSONPath findings.
 *
 * Typical page use:
 *
 * ```ts
 * const doc = buildGraph([buildCollectionPage(page), buildBreadcrumbList(trail), ...communities.map(buildLocalBusiness)]);
 * const check = validateJsonLd(doc); // check.valid, check.errors[i].path
 * html += toJsonLdScriptTag(doc);
 * ```
 */
export type {
  ArticleInput,
  AuthorInput,
  BreadcrumbInput,
  BreadcrumbListInput,
  CollectionItemInput,
  CollectionPageInput,
  GeoInput,
  LocalBusinessInput,
  OpeningHoursInput,
  PostalAddressInput,
  PublisherInput,
  SchemaNode,
  SerializeOptions,
  Weekday,
} from "./builders.ts";
export {
  buildArticle,
  buildBreadcrumbList,
  buildCollectionPage,
  buildGeoCoordinates,
  buildGraph,
  buildItemList,
  buildListItem,
  buildLocalBusiness,
  buildOpeningHours,
  buildPostalAddress,
  idReference,
  schemaOrgContext,
  serializeJsonLd,
  toJsonLdScriptTag,
  withContext,
} from "./builders.ts";
export type {
  JsonLdEntityReport,
  JsonLdIssue,
  JsonLdIssueKind,
  JsonLdSeverity,
  JsonLdValidation,
} from "./validate.ts";
export {
  checkIsoDate,
  checkTelephone,
  isAbsoluteHttpUrl,
  jsonPathChild,
  validateJsonLd,
} from "./validate.ts";
