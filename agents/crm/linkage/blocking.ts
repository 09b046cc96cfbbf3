/**
 * Blocking: the candidate pairs of record linkage without comparing all n(n − 1)/2 pairs.
 *
 * A blocking rule derives keys from a record (one component per part: the normalised value, a
 * prefix of it, or its Double Metaphone primary and alternate codes; the key set is the product
 * of the components, so a part with two codes gives two keys). Records sharing a key form a
 * block, and a pair is a candidate when it shares a key under any rule. A record with an empty
 * part gets no key under that rule.
 *
 * Every pair is produced once: under the first rule, and the first key of that rule, that the
 * two records share. Each rule's key sets are sorted per record, so the test is a merge of two
 * short lists, and nothing proportional to the pairs is kept.
 *
 * Bounds: a key shared by more than `maxBlockSize` records identifies nobody (a placeholder email,
 * a city blocked on alone) and is skipped; and when the rules would produce more than
 * `maxCandidatePairs` pairs, {@link TooManyCandidatePairsError} stops the work early.
 */
import { BlockingMethod, type BlockingRule, type Contact } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { normalizedValue } from "./normalize.ts";
import { metaphoneCodes } from "./strings.ts";

/** The blocking rules produce more candidate pairs than allowed. */
export class TooManyCandidatePairsError extends Error {
  override name = "TooManyCandidatePairsError";
  /** The limit that was passed. */
  readonly limit: number;
  constructor(limit: number) {
    super(`the blocking rules give more than ${limit.toLocaleString("en-US")} candidate pairs; use finer keys`);
    this.limit = limit;
  }
}

/** Bounds of blocking. */
export interface BlockingOptions {
  /** Keys shared by more records than this are skipped. */
  maxBlockSize: number;
  /** More candidate pairs than this is an error. */
  maxCandidatePairs: number;
  /** Checked between blocks. */
  signal?: AbortSignal | undefined;
}

/** Key sets of one rule: record i's sorted key ids are keys[offsets[i] .. offsets[i+1]). */
interface RuleKeys {
  offsets: Int32Array;
  keys: Int32Array;
  /** Records of each key id, ascending, as blockStart/blockMembers. */
  blockStart: Int32Array;
  blockMembers: Int32Array;
  /** Per key id: 1 when the block is too large and skipped. */
  skipped: Uint8Array;
}

/** The key components one part derives from a record. */
function partValues(c: Contact, part: BlockingRule["parts"][number]): string[] {
  const ref = part.field;
  if (ref === undefined) return [];
  const v = normalizedValue(c, ref);
  if (v === "") return [];
  switch (part.method) {
    case BlockingMethod.DOUBLE_METAPHONE: {
      const [p, a] = metaphoneCodes(v);
      if (p === "") return [];
      return a === "" || a === p ? [p] : [p, a];
    }
    case BlockingMethod.PREFIX:
      return [v.slice(0, part.prefixLength)];
    default:
      return [v];
  }
}

function buildRuleKeys(rule: BlockingRule, records: readonly Contact[], maxBlockSize: number): RuleKeys {
  const n = records.length;
  const index = new Map<string, number>();
  const offsets = new Int32Array(n + 1);
  const flat: number[] = [];
  for (let i = 0; i < n; i++) {
    let combos: string[] = [""];
    for (const part of rule.parts) {
      const values = partValues(records[i] as Contact, part);
      const next: string[] = [];
      for (const prefix of combos) for (const v of values) next.push(prefix === "" ? `${v}` : `${prefix}\u0001${v}`);
      combos = next;
      if (combos.length === 0) break;
    }
    const ids = new Set<number>();
    for (const key of combos) {
      let id = index.get(key);
      if (id === undefined) {
        id = index.size;
        index.set(key, id);
      }
      ids.add(id);
    }
    for (const id of [...ids].sort((a, b) => a - b)) flat.push(id);
    offsets[i + 1] = flat.length;
  }
  const keys = Int32Array.from(flat);
  // Invert by counting sort: members of each key, in record order.
  const K = index.size;
  const blockStart = new Int32Array(K + 1);
  for (const k of keys) blockStart[k + 1] = (blockStart[k + 1] as number) + 1;
  for (let k = 0; k < K; k++) blockStart[k + 1] = (blockStart[k + 1] as number) + (blockStart[k] as number);
  const fill = blockStart.slice(0, K);
  const blockMembers = new Int32Array(keys.length);
  for (let i = 0; i < n; i++) {
    for (let p = offsets[i] as number; p < (offsets[i + 1] as number); p++) {
      const k = keys[p] as number;
      blockMembers[fill[k] as number] = i;
      fill[k] = (fill[k] as number) + 1;
    }
  }
  const skipped = new Uint8Array(K);
  for (let k = 0; k < K; k++) {
    if ((blockStart[k + 1] as number) - (blockStart[k] as number) > maxBlockSize) skipped[k] = 1;
  }
  return { offsets, keys, blockStart, blockMembers, skipped };
}

/** The first key (lowest id) of `rk` that records i and j share and that is not skipped, or -1. */
function firstSharedKey(rk: RuleKeys, i: number, j: number): number {
  let a = rk.offsets[i] as number;
  const aEnd = rk.offsets[i + 1] as number;
  let b = rk.offsets[j] as number;
  const bEnd = rk.offsets[j + 1] as number;
  while (a < aEnd && b < bEnd) {
    const ka = rk.keys[a] as number;
    const kb = rk.keys[b] as number;
    if (ka === kb) {
      if (rk.skipped[ka] === 0) return ka;
      a++;
      b++;
    } else if (ka < kb) a++;
    else b++;
  }
  return -1;
}

/** What blocking did. */
export interface BlockingStats {
  /** Candidate pairs produced. */
  pairs: number;
  /** Blocks skipped for holding more than `maxBlockSize` records. */
  skippedBlocks: number;
}

/**
 * Calls `visit(i, j)` (i < j, record indexes) once for every candidate pair of `rules`. Yields to
 * the event loop between blocks now and then, so a long run does not starve other calls.
 */
export async function forEachCandidatePair(
  rules: readonly BlockingRule[],
  records: readonly Contact[],
  opts: BlockingOptions,
  visit: (i: number, j: number) => void,
): Promise<BlockingStats> {
  const ruleKeys = rules.map((r) => buildRuleKeys(r, records, opts.maxBlockSize));
  let pairs = 0;
  let skippedBlocks = 0;
  let sinceYield = 0;
  for (let r = 0; r < ruleKeys.length; r++) {
    const rk = ruleKeys[r] as RuleKeys;
    const K = rk.skipped.length;
    for (let k = 0; k < K; k++) {
      const start = rk.blockStart[k] as number;
      const end = rk.blockStart[k + 1] as number;
      if (end - start < 2) continue;
      if (rk.skipped[k] === 1) {
        skippedBlocks++;
        continue;
      }
      for (let a = start; a < end; a++) {
        const i = rk.blockMembers[a] as number;
        for (let b = a + 1; b < end; b++) {
          const j = rk.blockMembers[b] as number;
          if (firstSharedKey(rk, i, j) !== k) continue;
          let seen = false;
          for (let q = 0; q < r && !seen; q++) seen = firstSharedKey(ruleKeys[q] as RuleKeys, i, j) >= 0;
          if (seen) continue;
          if (++pairs > opts.maxCandidatePairs) throw new TooManyCandidatePairsError(opts.maxCandidatePairs);
          visit(i, j);
        }
      }
      sinceYield += ((end - start) * (end - start - 1)) / 2 + 1;
      if (sinceYield >= 200_000) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
        opts.signal?.throwIfAborted();
      }
    }
  }
  return { pairs, skippedBlocks };
}
