/**
 * Duplicate detection (`crm.duplicate_merging`) over a large synthetic CRM: 100,000 contacts by
 * default (people with 10 % corrupted duplicates and a few households, from the seeded generator
 * the tests use), detected with the contract's default comparators and blocking rules. The time
 * is the skill's, from the request to the response: contract validation, normalisation, blocking,
 * comparisons, EM, classification, clustering and golden records. It runs in process (the skill
 * is a function of its request); generating the population is not timed. Precision and recall
 * against the known duplicates are reported beside the time. The target is < 60 s.
 *
 * `node bench/crm-duplicates.ts [contacts] [runs]` runs it alone and prints the result.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { pairKey, syntheticPopulation } from "../agents/crm/linkage/index.ts";
import { detectDuplicates } from "../agents/crm/skills/detect-duplicates.ts";
import { DetectDuplicatesRequestSchema, MatchClass } from "../gen/mesh/crm/v1/crm_service_pb.ts";

/** Options of {@link benchCrmDuplicates}. */
export interface CrmDuplicatesBenchOptions {
  /** Contacts in the population (people plus their duplicates). */
  contacts: number;
  /** Timed runs. */
  runs: number;
}

/** One timed run. */
export interface CrmDuplicatesResult {
  contacts: number;
  trueDuplicatePairs: number;
  seconds: number;
  candidatePairs: number;
  matches: number;
  possibles: number;
  clusters: number;
  emIterations: number;
  precision: number;
  recall: number;
  /** Peak resident memory after the run, MiB. */
  rssMiB: number;
}

/** Runs the scenario `runs` times on one population. */
export async function benchCrmDuplicates(opts: CrmDuplicatesBenchOptions): Promise<CrmDuplicatesResult[]> {
  const duplicates = Math.round(opts.contacts / 11);
  const pop = syntheticPopulation({
    seed: 100_000,
    people: opts.contacts - duplicates,
    duplicates,
    householdShare: 0.01,
  });
  const results: CrmDuplicatesResult[] = [];
  for (let run = 0; run < opts.runs; run++) {
    const req = create(DetectDuplicatesRequestSchema, {
      requestId: randomUUID(),
      contacts: pop.contacts,
      maxPairs: 100_000,
    });
    const started = performance.now();
    const res = await detectDuplicates({}, req);
    const seconds = (performance.now() - started) / 1000;
    const matches = res.pairs.filter((p) => p.matchClass === MatchClass.MATCH);
    const truePositives = matches.filter((p) => pop.truePairs.has(pairKey(p.leftContactId, p.rightContactId))).length;
    results.push({
      contacts: res.recordCount,
      trueDuplicatePairs: pop.truePairs.size,
      seconds: Math.round(seconds * 1000) / 1000,
      candidatePairs: Number(res.candidatePairCount),
      matches: res.matchCount,
      possibles: res.possibleCount,
      clusters: res.clusters.length,
      emIterations: res.emIterations,
      precision: Math.round((truePositives / Math.max(1, matches.length)) * 10_000) / 10_000,
      recall: Math.round((truePositives / pop.truePairs.size) * 10_000) / 10_000,
      rssMiB: Math.round(process.memoryUsage().rss / 1048576),
    });
  }
  return results;
}

if (import.meta.main) {
  const contacts = Number(process.argv[2] ?? 100_000);
  const runs = Number(process.argv[3] ?? 1);
  for (const r of await benchCrmDuplicates({ contacts, runs })) {
    process.stdout.write(`crm duplicates: ${JSON.stringify(r)}  target < 60 s ${r.seconds < 60 ? "✓" : "✗"}\n`);
  }
  process.exit(0);
}
