/**
 * Duplicate detection (`crm.duplicate_merging`, DetectDuplicates): Fellegi–Sunter record linkage.
 *
 * Method (agents/crm/linkage): candidate pairs come from blocking keys (Double Metaphone of the
 * family name, exact email, exact phone by default), so the work grows with the block sizes, not
 * with n²; each pair is compared field by field (Jaro–Winkler with similarity bands, exact, Double
 * Metaphone) into agreement levels; the m and u probabilities of every level and the share of
 * matches are estimated by EM on the agreement patterns (Winkler 1988; Jaro 1989); a pair's match
 * weight is the sum of log2(m/u) over its fields, classified against the match and possible
 * thresholds (by default the weights at posterior 0.95 and 0.5); matches are clustered by
 * union-find, and each cluster gets a golden record by per-field survivorship rules, its
 * surviving contact the earliest created.
 *
 * Reference: Fellegi & Sunter (1969), "A theory for record linkage", JASA 64; Winkler (1988),
 * "Using the EM algorithm for weight computation in the Fellegi–Sunter model of record linkage";
 * Jaro (1989), JASA 84; Christen (2012), "Data Matching".
 *
 * Population: the inline `contacts`, or stored contacts (by `contact_ids`, or all live ones) read
 * page by page through a {@link StoredContacts} source (agents/crm/merges/store.ts: keyset pages
 * on (created_at, id)); more than {@link maxPopulation} answers FAILED_PRECONDITION. Merges go
 * through a {@link ContactMerger} (the same module): one transaction per cluster, audited and
 * reversible by UnmergeContacts. Without a source or merger wired, those requests answer
 * FAILED_PRECONDITION.
 *
 * Detection itself writes nothing, so it is safe to repeat; merges carry the `request_id` to the
 * merger, which merges a cluster once per request id, and the server's idempotency interceptor
 * makes a replay answer the first result.
 *
 * Known limit: fields are assumed independent given match status, so two people of one household
 * (same family name, phone and postal code, other given name and email) usually reach the match
 * threshold; that is why merges are a separate, explicit step.
 */
import { create } from "@bufbuild/protobuf";
import {
  AgreementLevel,
  CandidatePairSchema,
  ComparatorKind,
  type Contact,
  type DetectDuplicatesRequest,
  DetectDuplicatesRequestSchema,
  type DetectDuplicatesResponse,
  DetectDuplicatesResponseSchema,
  type DuplicateCluster,
  DuplicateClusterSchema,
  FieldAgreementSchema,
  MatchClass,
  ParameterEstimateSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { checkContract, FailedPreconditionError, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { type CallContext, principalKey } from "../../../lib/server/index.ts";
import {
  defaultBlockingRules,
  defaultComparators,
  derivedFields,
  displayValue,
  emOptions,
  fieldLabel,
  goldenRecord,
  Level,
  type LinkageResult,
  linkRecords,
  maxBlockSize,
  maxCandidatePairs,
  maxPopulation,
  survivorOf,
  TooManyCandidatePairsError,
} from "../linkage/index.ts";

/** Message-level rules of the contract and the field they are about. */
const ruleFields: Readonly<Record<string, string>> = {
  "detect_duplicates.population": "contact_ids",
  "detect_duplicates.inline_ids": "contacts",
  "detect_duplicates.inline_no_merge": "apply_merges",
  "detect_duplicates.thresholds": "possible_threshold",
};

/** Contacts read per page from a {@link StoredContacts} source. */
export const storedPageSize = 1_000;

/** Pairs returned when `max_pairs` is 0. */
const defaultMaxPairs = 1_000;

/** One page of stored contacts. */
export interface StoredContactPage {
  contacts: Contact[];
  /** Cursor of the next page; undefined on the last. */
  next?: string | undefined;
}

/**
 * The contacts the CRM holds, read in pages (the contact store implements it). With `ids`, only
 * those contacts (unknown ids are left out); without, all live (not merged-away) contacts, in a
 * stable order.
 */
export interface StoredContacts {
  page(query: {
    ids?: readonly string[] | undefined;
    after?: string | undefined;
    limit: number;
    signal?: AbortSignal | undefined;
  }): Promise<StoredContactPage>;
}

/** A merge of one cluster into its surviving contact, as the contact store applies it. */
export interface MergePlan {
  /** The idempotency key of the request, so a replay merges nothing again. */
  requestId: string;
  survivingContactId: string;
  /** The other members, merged away into the survivor. */
  mergedContactIds: string[];
  /** The golden record the survivor takes (its id is the survivor's). */
  golden: Contact;
  /** The members as detection read them; a member whose `updated_at` moved since is not merged. */
  members: Contact[];
  /** Lowest posterior match probability among the cluster's matching pairs. */
  matchProbability: number;
  /** The caller, for the audit. */
  mergedBy: string;
}

/** Applies merges (audited and reversible), the contact store's side of this skill. */
export interface ContactMerger {
  /**
   * Merges one cluster; answers the merge id, or undefined when a member changed or was merged
   * meanwhile (nothing is merged). A replay of the same request id and survivor answers the first id.
   */
  merge(plan: MergePlan, signal?: AbortSignal): Promise<string | undefined>;
}

/** Dependencies of the skill; both are optional until the contact store lands. */
export interface DetectDuplicatesDeps {
  /** The stored contacts, when the contact store is wired. */
  storedContacts?: StoredContacts | undefined;
  /** Merges, when the contact store is wired. */
  merger?: ContactMerger | undefined;
}

/** The contract's agreement level of each internal level code. */
const levelOut: Readonly<Record<number, AgreementLevel>> = {
  [Level.full]: AgreementLevel.FULL,
  [Level.partial]: AgreementLevel.PARTIAL,
  [Level.none]: AgreementLevel.NONE,
  [Level.missing]: AgreementLevel.MISSING,
};

/** The request's rules that the contract cannot express. */
function checkRequest(req: DetectDuplicatesRequest): void {
  checkContract(DetectDuplicatesRequestSchema, req, ruleFields);
  const ids = new Map<string, number>();
  req.contacts.forEach((c, i) => {
    const first = ids.get(c.id);
    if (first !== undefined) throw new InvalidInputError(`contacts[${i}].id`, `repeats contacts[${first}].id`);
    ids.set(c.id, i);
  });
  const compared = new Map<string, number>();
  req.comparators.forEach((c, i) => {
    const label = fieldLabel(c.field as NonNullable<typeof c.field>);
    const first = compared.get(label);
    if (first !== undefined) {
      throw new InvalidInputError(`comparators[${i}].field`, `${label} is already compared by comparators[${first}]`);
    }
    compared.set(label, i);
    if (c.kind !== ComparatorKind.JARO_WINKLER && c.similarityLevels.length > 0) {
      throw new InvalidInputError(`comparators[${i}].similarity_levels`, "apply to Jaro-Winkler comparators only");
    }
  });
  const ruled = new Map<string, number>();
  req.survivorship.forEach((r, i) => {
    const ref = r.field as NonNullable<typeof r.field>;
    if (ref.ref.case === "contactField" && derivedFields.has(ref.ref.value)) {
      throw new InvalidInputError(
        `survivorship[${i}].field`,
        `${fieldLabel(ref)} is derived (email domain from the email, times from the cluster); it has no rule`,
      );
    }
    const label = fieldLabel(ref);
    const first = ruled.get(label);
    if (first !== undefined) throw new InvalidInputError(`survivorship[${i}].field`, `repeats survivorship[${first}]`);
    ruled.set(label, i);
  });
}

/** The population: inline contacts, or stored ones read page by page (at most {@link maxPopulation}). */
async function population(
  deps: DetectDuplicatesDeps,
  req: DetectDuplicatesRequest,
  signal: AbortSignal | undefined,
): Promise<readonly Contact[]> {
  if (req.contacts.length > 0) return req.contacts;
  const source = deps.storedContacts;
  if (source === undefined) {
    throw new FailedPreconditionError(
      "stored contacts cannot be examined yet: the contact store is not wired to duplicate detection; pass the contacts inline in `contacts`",
    );
  }
  const wanted = req.contactIds.length > 0 ? req.contactIds : undefined;
  const out: Contact[] = [];
  let after: string | undefined;
  for (;;) {
    signal?.throwIfAborted();
    const page = await source.page({ ids: wanted, after, limit: storedPageSize, signal });
    out.push(...page.contacts);
    if (out.length > maxPopulation) {
      throw new FailedPreconditionError(
        `the CRM holds more than ${maxPopulation.toLocaleString("en-US")} contacts; name at most that many in contact_ids`,
      );
    }
    if (page.next === undefined || page.contacts.length === 0) break;
    after = page.next;
  }
  if (wanted !== undefined && out.length < wanted.length) {
    const found = new Set(out.map((c) => c.id));
    const missing = wanted.find((id) => !found.has(id));
    throw new NotFoundError(`contact ${missing} not found or merged into another contact (contact_ids)`);
  }
  return out;
}

/** Finds duplicate contacts; merges the clusters only when asked and a merger is wired. */
export async function detectDuplicates(
  deps: DetectDuplicatesDeps,
  req: DetectDuplicatesRequest,
  ctx?: CallContext,
): Promise<DetectDuplicatesResponse> {
  checkRequest(req);
  if (req.applyMerges && deps.merger === undefined) {
    throw new FailedPreconditionError(
      "merges cannot be applied yet: the contact store's audited merge is not wired; run without apply_merges for a dry run",
    );
  }
  const signal = ctx?.signal;
  const records = await population(deps, req, signal);
  let result: LinkageResult;
  try {
    result = await linkRecords(records, {
      comparators: req.comparators.length > 0 ? req.comparators : defaultComparators(),
      blockingRules: req.blockingRules.length > 0 ? req.blockingRules : defaultBlockingRules(),
      em: emOptions(req.em ?? {}),
      matchThreshold: req.matchThreshold,
      possibleThreshold: req.possibleThreshold,
      maxPairs: req.maxPairs || defaultMaxPairs,
      maxBlockSize,
      maxCandidatePairs,
      signal,
    });
  } catch (err) {
    if (err instanceof TooManyCandidatePairsError) {
      throw new InvalidInputError("blocking_rules", err.message);
    }
    throw err;
  }
  const clusters = await buildClusters(deps, req, records, result, ctx);
  return create(DetectDuplicatesResponseSchema, {
    pairs: result.pairs.map((p) => {
      const a = records[p.left] as Contact;
      const b = records[p.right] as Contact;
      return create(CandidatePairSchema, {
        leftContactId: a.id,
        rightContactId: b.id,
        matchWeight: p.weight,
        matchProbability: p.probability,
        matchClass: p.matchClass === "match" ? MatchClass.MATCH : MatchClass.POSSIBLE,
        fields: result.comparisons.map((cmp, f) => {
          const level = cmp.level(p.left, p.right);
          const ref = cmp.spec.field as NonNullable<typeof cmp.spec.field>;
          return create(FieldAgreementSchema, {
            field: result.labels[f] as string,
            leftValue: displayValue(a, ref),
            rightValue: displayValue(b, ref),
            similarity: cmp.similarity(p.left, p.right),
            level: levelOut[level] as AgreementLevel,
            weight: level === Level.missing ? 0 : ((result.weights[f] as number[])[level] as number),
          });
        }),
      });
    }),
    parameters: result.labels.flatMap((label, f) =>
      (result.comparisons[f]?.hasPartial ? [Level.full, Level.partial, Level.none] : [Level.full, Level.none]).map(
        (l) =>
          create(ParameterEstimateSchema, {
            field: label,
            level: levelOut[l] as AgreementLevel,
            m: (result.estimate.m[f] as number[])[l] as number,
            u: (result.estimate.u[f] as number[])[l] as number,
            weight: (result.weights[f] as number[])[l] as number,
          }),
      ),
    ),
    matchProportion: result.estimate.p,
    emIterations: result.estimate.iterations,
    emConverged: result.estimate.converged,
    matchThreshold: result.matchThreshold,
    possibleThreshold: result.possibleThreshold,
    recordCount: records.length,
    candidatePairCount: BigInt(result.candidatePairs),
    matchCount: result.matchCount,
    possibleCount: result.possibleCount,
    clusters,
    mergedContactCount: clusters.reduce((n, c) => n + (c.merged ? c.contactIds.length - 1 : 0), 0),
  });
}

/** Clusters with their golden records; merged through the merger when asked. */
async function buildClusters(
  deps: DetectDuplicatesDeps,
  req: DetectDuplicatesRequest,
  records: readonly Contact[],
  result: LinkageResult,
  ctx: CallContext | undefined,
): Promise<DuplicateCluster[]> {
  const signal = ctx?.signal;
  const mergedBy = ctx?.values.get(principalKey)?.name ?? "";
  const out: DuplicateCluster[] = [];
  for (const [n, group] of result.clusters.entries()) {
    const members = group.map((i) => records[i] as Contact);
    const survivor = survivorOf(members);
    const golden = goldenRecord(members, survivor, req.survivorship, req.defaultSurvivorship);
    let mergeId: string | undefined;
    if (req.applyMerges && deps.merger !== undefined) {
      signal?.throwIfAborted();
      mergeId = await deps.merger.merge(
        {
          requestId: req.requestId,
          survivingContactId: survivor.id,
          mergedContactIds: members.filter((m) => m !== survivor).map((m) => m.id),
          golden: golden.record,
          members,
          matchProbability: result.clusterProbabilities[n] ?? 1,
          mergedBy,
        },
        signal,
      );
    }
    out.push(
      create(DuplicateClusterSchema, {
        clusterId: n + 1,
        contactIds: members.map((m) => m.id),
        survivingContactId: survivor.id,
        goldenRecord: golden.record,
        provenance: golden.provenance,
        merged: mergeId !== undefined,
        mergeId: mergeId ?? "",
      }),
    );
  }
  return out;
}
