/**
 * The enrichment cache in the `operations` schema: one row per provider and normalised query, so a
 * slow, rate-limited or paid provider is asked once for the same input within the cache age.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";
import type { StoredJson } from "../entities.ts";

/** A provider's answer to one normalised query. Misses are kept too (`fields` empty). */
export const CrmEnrichmentCache = defineEntity({
  name: "CrmEnrichmentCache",
  tableName: "crm_enrichment_cache",
  properties: {
    /** Provider name. */
    provider: p.string().length(64).primary(),
    /** SHA-256 (hex) of the canonical JSON of the provider's normalised query. */
    inputKey: p.string().length(64).primary(),
    /**
     * SHA-256 (hex) of the normalised email the query held, so that erasing a person can delete
     * the answers about them without storing the address itself; null when the query had none.
     */
    emailKey: p.string().length(64).nullable().index(),
    /** The answer: found fields with value (protobuf JSON), confidence and structured parts. */
    fields: p.json<StoredJson[]>(),
    fetchedAt: p.datetime(),
    /** When the row may be deleted (no caller may reuse it after then). */
    expiresAt: p.datetime().index(),
  },
});

/** A stored cache row. */
export type CrmEnrichmentCacheRow = InferEntity<typeof CrmEnrichmentCache>;

/** The enrichment entities, for the operations domain. */
export const enrichmentEntities = [CrmEnrichmentCache] as const;
