/**
 * The provider waterfall. Providers are asked in order; one is skipped once every wanted field
 * holds a value at the minimum confidence. Each value a provider returns is a candidate; for a
 * wanted field it replaces the value found so far only with a strictly higher confidence (so on a
 * tie the earlier provider, which the caller ranked higher, keeps it). A provider that fails is
 * reported with its error and the next one is asked. Answers of providers marked `cached` come from
 * the cache when one younger than the allowed age is there, and are stored after a live call.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  type EnrichableField,
  type ProviderCall,
  ProviderCallSchema,
  ProviderOutcome,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type EnrichmentCache, queryKey } from "./cache.ts";
import type { FieldValue } from "./fields.ts";
import type { EnrichmentProvider, Found, Subject } from "./providers.ts";

/** What a waterfall runs on. */
export interface WaterfallInput {
  readonly subject: Subject;
  /** Fields to fill, already narrowed to those the caller may change. */
  readonly wanted: ReadonlySet<EnrichableField>;
  /** Minimum confidence for a value to count as filling a field. */
  readonly minConfidence: number;
  /** Cached answers younger than this are reused; 0 never reads the cache. */
  readonly maxCacheAgeMs: number;
  readonly providers: readonly EnrichmentProvider[];
  readonly cache: EnrichmentCache | undefined;
  readonly now: () => Date;
  readonly signal: AbortSignal;
}

/** A value found by one provider. */
export interface Candidate {
  readonly field: EnrichableField;
  readonly found: FieldValue;
  readonly confidence: number;
  /** Provider name. */
  readonly source: string;
}

/** What the waterfall found. */
export interface WaterfallResult {
  /** One report per provider, in order. */
  readonly calls: ProviderCall[];
  /** Every value found, in the order found. */
  readonly candidates: Candidate[];
  /** The best value of each wanted field (the highest confidence, the earliest provider on ties). */
  readonly best: Map<EnrichableField, Candidate>;
}

/** Runs the waterfall. Only cancellation (the call's signal) and cache failures end it early. */
export async function runWaterfall(input: WaterfallInput): Promise<WaterfallResult> {
  const calls: ProviderCall[] = [];
  const candidates: Candidate[] = [];
  const best = new Map<EnrichableField, Candidate>();
  const missing = () =>
    [...input.wanted].some((f) => {
      const b = best.get(f);
      return b === undefined || b.confidence < input.minConfidence;
    });

  for (const provider of input.providers) {
    const call = create(ProviderCallSchema, { provider: provider.name });
    calls.push(call);
    if (!missing()) {
      call.outcome = ProviderOutcome.SKIPPED;
      continue;
    }
    const query = provider.query(input.subject);
    if (query === undefined) {
      // Nothing it could look up for this contact: a miss without asking.
      call.outcome = ProviderOutcome.MISS;
      continue;
    }
    const useCache = provider.cached && input.cache !== undefined;
    const key = useCache ? queryKey(query) : "";
    let answer: Found[] | undefined;
    if (useCache && input.maxCacheAgeMs > 0) {
      const notBefore = new Date(input.now().getTime() - input.maxCacheAgeMs);
      answer = await input.cache?.read(provider.name, key, notBefore);
      call.cached = answer !== undefined;
    }
    if (answer === undefined) {
      const started = performance.now();
      try {
        answer = await provider.lookup(query, input.signal);
      } catch (err) {
        if (input.signal.aborted) throw input.signal.reason;
        call.outcome = ProviderOutcome.ERROR;
        call.error = (err instanceof Error ? err.message : String(err)).slice(0, 500);
        call.latency = durationFromMs(Math.round(performance.now() - started));
        continue;
      }
      call.latency = durationFromMs(Math.round(performance.now() - started));
      if (useCache) {
        await input.cache?.write({
          provider: provider.name,
          key,
          email: input.subject.email,
          found: answer,
          fetchedAt: input.now(),
        });
      }
    }
    call.outcome = answer.length > 0 ? ProviderOutcome.HIT : ProviderOutcome.MISS;
    call.fieldsReturned = [...new Set(answer.map((f) => f.field))];
    for (const f of answer) {
      const c: Candidate = { ...f, source: provider.name };
      candidates.push(c);
      if (!input.wanted.has(f.field)) continue;
      const current = best.get(f.field);
      if (current === undefined || f.confidence > current.confidence) best.set(f.field, c);
    }
  }
  return { calls, candidates, best };
}
