/**
 * Contact enrichment: normalisation, offline providers, the HTTP provider adapter, the cache and
 * the waterfall that runs them (`crm.contact_enrichment`).
 */
import type { EnrichmentCache } from "./cache.ts";
import { builtInGazetteer, type Gazetteer } from "./geography.ts";
import { checkHttpProviderOptions, type HttpProviderOptions, httpProvider } from "./http-provider.ts";
import { companyDomainProvider, type EnrichmentProvider, geographyProvider, phoneProvider } from "./providers.ts";

export { databaseCache, defaultRetentionMs, type EnrichmentCache, emailKey, queryKey } from "./cache.ts";
export { contactOfRow, copyContact, writeEnrichableFields } from "./contact.ts";
export { CrmEnrichmentCache, type CrmEnrichmentCacheRow, enrichmentEntities } from "./entities.ts";
export * from "./fields.ts";
export { builtInGazetteer, type CityMatch, type Gazetteer, type Place } from "./geography.ts";
export {
  abortableSleep,
  checkHttpProviderOptions,
  type HttpProviderOptions,
  httpProvider,
  ProviderError,
  parseAnswer,
  retryAfterMs,
} from "./http-provider.ts";
export * from "./normalize.ts";
export * from "./providers.ts";
export { type Candidate, runWaterfall, type WaterfallInput, type WaterfallResult } from "./waterfall.ts";

/** The providers a server offers and the order used when a call names none. */
export interface Enrichment {
  /** Providers by name. */
  readonly providers: ReadonlyMap<string, EnrichmentProvider>;
  /** The waterfall when a request's `providers` is empty. */
  readonly defaultOrder: readonly string[];
  /** The cache for providers marked `cached`; none disables caching. */
  readonly cache?: EnrichmentCache;
}

/** Settings of a server's enrichment. */
export interface EnrichmentOptions {
  /** HTTP providers, asked after the built-in ones by default, in this order. */
  readonly http?: readonly HttpProviderOptions[];
  /** The default order (names); default: `company-domain`, `phone`, `geography`, then each HTTP provider. */
  readonly order?: readonly string[];
  /** Places; default the built-in gazetteer. */
  readonly gazetteer?: Gazetteer;
  /** More providers (tests, deployments with their own). */
  readonly extra?: readonly EnrichmentProvider[];
  /** The cache. */
  readonly cache?: EnrichmentCache;
}

/** Builds the provider set; throws on a bad setting (a duplicate name, an unknown name in `order`). */
export function createEnrichment(options: EnrichmentOptions = {}): Enrichment {
  const list: EnrichmentProvider[] = [
    companyDomainProvider(),
    phoneProvider(),
    geographyProvider(options.gazetteer ?? builtInGazetteer()),
  ];
  for (const h of options.http ?? []) {
    checkHttpProviderOptions(h);
    list.push(httpProvider(h));
  }
  list.push(...(options.extra ?? []));
  const providers = new Map<string, EnrichmentProvider>();
  for (const p of list) {
    if (providers.has(p.name)) throw new Error(`enrichment provider ${p.name} is declared twice`);
    providers.set(p.name, p);
  }
  const defaultOrder = options.order ?? list.map((p) => p.name);
  for (const name of defaultOrder) {
    if (!providers.has(name)) throw new Error(`enrichment order names unknown provider ${name}`);
  }
  return { providers, defaultOrder, ...(options.cache === undefined ? {} : { cache: options.cache }) };
}
