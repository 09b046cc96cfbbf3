/**
 * Fellegi–Sunter record linkage of a population of contacts, end to end: blocking gives the
 * candidate pairs, the comparators give each pair its agreement pattern, EM estimates the m and u
 * probabilities and the match proportion from the pattern counts, each pattern's match weight is
 * the sum of its levels' log2(m/u), and pairs are classified against the match and possible
 * thresholds. Matches are grouped into clusters by union-find.
 *
 * A pair's weight depends on its pattern alone, so weights, posteriors and classes are computed
 * once per distinct pattern (a few hundred), not per pair. Pairs are kept as three integers
 * (records and pattern), 12 bytes each.
 *
 * Default thresholds follow from the posterior: with prior odds p/(1 − p), a pair of weight W has
 * posterior odds 2^W · p/(1 − p), so the match threshold (posterior 0.95) is
 * log2(19) − log2(p/(1 − p)) and the possible threshold (posterior 0.5) is −log2(p/(1 − p)).
 */
import type { BlockingRule, Contact, FieldComparator } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { forEachCandidatePair } from "./blocking.ts";
import { FieldComparison } from "./compare.ts";
import { type EmEstimate, type EmOptions, estimateEm, Level, levelWeights } from "./em.ts";
import { fieldLabel } from "./normalize.ts";
import { UnionFind } from "./union-find.ts";

/** How to link, defaults resolved. */
export interface LinkageConfig {
  comparators: readonly FieldComparator[];
  blockingRules: readonly BlockingRule[];
  em: EmOptions;
  /** Weight at or above which a pair is a match; undefined: posterior 0.95. */
  matchThreshold?: number | undefined;
  /** Weight at or above which a pair is a possible match; undefined: posterior 0.5. */
  possibleThreshold?: number | undefined;
  /** Most match and possible pairs returned, highest weight first. */
  maxPairs: number;
  /** Blocks larger than this are skipped. */
  maxBlockSize: number;
  /** More candidate pairs than this is an error. */
  maxCandidatePairs: number;
  signal?: AbortSignal | undefined;
}

/** Class of a pair. */
export type PairClass = "match" | "possible" | "non-match";

/** A classified candidate pair (record indexes, left < right). */
export interface LinkedPair {
  left: number;
  right: number;
  weight: number;
  probability: number;
  matchClass: PairClass;
}

/** The outcome of {@link linkRecords}. */
export interface LinkageResult {
  /** Field label of each comparator. */
  labels: string[];
  /** The comparators over the population, for per-field detail of a pair. */
  comparisons: FieldComparison[];
  estimate: EmEstimate;
  /** log2(m/u) per field and level. */
  weights: number[][];
  matchThreshold: number;
  possibleThreshold: number;
  candidatePairs: number;
  skippedBlocks: number;
  matchCount: number;
  possibleCount: number;
  /** Match and possible pairs, highest weight first (then by record), at most `maxPairs`. */
  pairs: LinkedPair[];
  /** Clusters of two or more records linked by matches, each sorted, by smallest member. */
  clusters: number[][];
  /** Per cluster, the lowest posterior match probability among its matching pairs. */
  clusterProbabilities: number[];
}

/** An Int32 list that grows by doubling. */
class IntList {
  data = new Int32Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Int32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
}

/** Fields at most this many give a pattern key that is an exact number (4^26 < 2^53). */
const maxNumericPatternFields = 26;

/** Links `records` (no more than the caller's limit; the work is bounded by blocking, not n²). */
export async function linkRecords(records: readonly Contact[], config: LinkageConfig): Promise<LinkageResult> {
  const comparisons = config.comparators.map((c) => new FieldComparison(c, records));
  const F = comparisons.length;
  const labels = config.comparators.map((c) => (c.field ? fieldLabel(c.field) : ""));

  // Candidate pairs and their agreement patterns.
  const left = new IntList();
  const right = new IntList();
  const patternOfPair = new IntList();
  const patternIndex = new Map<number | string, number>();
  const patternLevels: number[] = [];
  const patternCounts: number[] = [];
  const scratch = new Uint8Array(F);
  const stats = await forEachCandidatePair(
    config.blockingRules,
    records,
    { maxBlockSize: config.maxBlockSize, maxCandidatePairs: config.maxCandidatePairs, signal: config.signal },
    (i, j) => {
      let key: number | string = 0;
      for (let f = 0; f < F; f++) {
        const l = (comparisons[f] as FieldComparison).level(i, j);
        scratch[f] = l;
        if (F <= maxNumericPatternFields) key = (key as number) * 4 + l;
      }
      if (F > maxNumericPatternFields) key = scratch.join("");
      let k = patternIndex.get(key);
      if (k === undefined) {
        k = patternCounts.length;
        patternIndex.set(key, k);
        for (let f = 0; f < F; f++) patternLevels.push(scratch[f] as number);
        patternCounts.push(0);
      }
      patternCounts[k] = (patternCounts[k] as number) + 1;
      left.push(i);
      right.push(j);
      patternOfPair.push(k);
    },
  );

  // Parameters, weights and thresholds.
  const estimate = estimateEm(
    {
      fields: F,
      levels: Uint8Array.from(patternLevels),
      counts: Float64Array.from(patternCounts),
      hasPartial: comparisons.map((c) => c.hasPartial),
    },
    config.em,
  );
  const weights = levelWeights(estimate);
  const priorLog2Odds = Math.log2(estimate.p / (1 - estimate.p));
  const matchThreshold = config.matchThreshold ?? Math.log2(0.95 / 0.05) - priorLog2Odds;
  const possibleThreshold = Math.min(config.possibleThreshold ?? -priorLog2Odds, matchThreshold);
  const K = patternCounts.length;
  const patternWeight = new Float64Array(K);
  const patternClass: PairClass[] = [];
  for (let k = 0; k < K; k++) {
    let w = 0;
    for (let f = 0; f < F; f++) {
      const l = patternLevels[k * F + f] as number;
      if (l !== Level.missing) w += (weights[f] as number[])[l] as number;
    }
    patternWeight[k] = w;
    patternClass.push(w >= matchThreshold ? "match" : w >= possibleThreshold ? "possible" : "non-match");
  }

  // Classification and clusters.
  const uf = new UnionFind(records.length);
  const linked: number[] = [];
  let matchCount = 0;
  let possibleCount = 0;
  for (let q = 0; q < left.length; q++) {
    const k = patternOfPair.data[q] as number;
    const cls = patternClass[k];
    if (cls === "non-match") continue;
    if (cls === "match") {
      matchCount++;
      uf.union(left.data[q] as number, right.data[q] as number);
    } else possibleCount++;
    linked.push(q);
  }
  const weightOf = (q: number) => patternWeight[patternOfPair.data[q] as number] as number;
  linked.sort(
    (a, b) =>
      weightOf(b) - weightOf(a) ||
      (left.data[a] as number) - (left.data[b] as number) ||
      (right.data[a] as number) - (right.data[b] as number),
  );
  const pairs = linked.slice(0, config.maxPairs).map((q): LinkedPair => {
    const w = weightOf(q);
    const k = patternOfPair.data[q] as number;
    return {
      left: left.data[q] as number,
      right: right.data[q] as number,
      weight: w,
      probability: 1 / (1 + 2 ** -(w + priorLog2Odds)),
      matchClass: patternClass[k] as PairClass,
    };
  });
  const clusters = uf.groups();
  const clusterOf = new Int32Array(records.length).fill(-1);
  clusters.forEach((g, c) => {
    for (const i of g) clusterOf[i] = c;
  });
  const clusterProbabilities = clusters.map(() => 1);
  for (const q of linked) {
    const k = patternOfPair.data[q] as number;
    if (patternClass[k] !== "match") continue;
    const c = clusterOf[left.data[q] as number] as number;
    const prob = 1 / (1 + 2 ** -(weightOf(q) + priorLog2Odds));
    if (prob < (clusterProbabilities[c] as number)) clusterProbabilities[c] = prob;
  }
  return {
    labels,
    comparisons,
    estimate,
    weights,
    matchThreshold,
    possibleThreshold,
    candidatePairs: stats.pairs,
    skippedBlocks: stats.skippedBlocks,
    matchCount,
    possibleCount,
    pairs,
    clusters,
    clusterProbabilities,
  };
}
