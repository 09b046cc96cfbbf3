/**
 * Comparison vectors: each comparator turns the values of one field of a candidate pair into an
 * agreement level (full, partial, none, or missing when either value is empty).
 *
 * - exact: the normalised values are equal (full) or not (none);
 * - Jaro–Winkler: full at or above the first similarity level, partial at or above the second
 *   (when given), none below;
 * - Double Metaphone: full when the primary codes agree, partial when any code of one value is a
 *   code of the other (Philips' alternate encodings), none otherwise.
 *
 * Values are normalised and interned once per record (an integer per distinct value), so the
 * comparison of a pair is integer equality, a cached Jaro–Winkler score or a code lookup: the
 * cost of the millions of candidate pairs of 100,000 records does not depend on string lengths.
 */
import { ComparatorKind, type Contact, type FieldComparator } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { Level, type LevelCode } from "./em.ts";
import { normalizedValue } from "./normalize.ts";
import { jaroWinkler, metaphoneCodes } from "./strings.ts";

/** Default Jaro–Winkler cut-offs: full agreement at 0.92, partial at 0.85 (Winkler's usual bands). */
export const defaultSimilarityLevels: readonly number[] = [0.92, 0.85];

/** Most Jaro–Winkler scores a comparator keeps cached before it starts over. */
const maxCachedScores = 1 << 20;

/** One field's comparator over a prepared population. */
export class FieldComparison {
  /** The comparator. */
  readonly spec: FieldComparator;
  /** Interned normalised value of each record; 0 means empty. */
  readonly valueIds: Int32Array;
  /** Distinct normalised values, by id (index 0 is the empty string). */
  readonly values: string[];
  /** Whether this comparator has a partial level. */
  readonly hasPartial: boolean;
  private readonly kind: ComparatorKind;
  private readonly full: number;
  private readonly partial: number;
  /** Double Metaphone primary and alternate code ids of each value id. */
  private readonly primary: Int32Array;
  private readonly alternate: Int32Array;
  private readonly cache = new Map<number, number>();

  constructor(spec: FieldComparator, records: readonly Contact[]) {
    this.spec = spec;
    this.kind = spec.kind;
    const levels = spec.similarityLevels.length > 0 ? spec.similarityLevels : defaultSimilarityLevels;
    this.full = levels[0] as number;
    this.partial = levels[1] ?? Number.NaN;
    this.hasPartial =
      spec.kind === ComparatorKind.DOUBLE_METAPHONE || (spec.kind === ComparatorKind.JARO_WINKLER && levels.length > 1);
    const ref = spec.field;
    if (ref === undefined) throw new Error("comparator without a field");
    const index = new Map<string, number>([["", 0]]);
    this.values = [""];
    this.valueIds = new Int32Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const v = normalizedValue(records[i] as Contact, ref);
      let id = index.get(v);
      if (id === undefined) {
        id = this.values.length;
        index.set(v, id);
        this.values.push(v);
      }
      this.valueIds[i] = id;
    }
    this.primary = new Int32Array(this.values.length);
    this.alternate = new Int32Array(this.values.length);
    if (spec.kind === ComparatorKind.DOUBLE_METAPHONE) {
      const codes = new Map<string, number>([["", 0]]);
      const codeId = (c: string): number => {
        let id = codes.get(c);
        if (id === undefined) {
          id = codes.size;
          codes.set(c, id);
        }
        return id;
      };
      for (let v = 1; v < this.values.length; v++) {
        const [p, a] = metaphoneCodes(this.values[v] as string);
        this.primary[v] = codeId(p);
        this.alternate[v] = codeId(a);
      }
    }
  }

  /** Similarity of two value ids, 0–1 (1 or 0 for exact; 1, 0.5 or 0 for Double Metaphone). */
  similarityOf(a: number, b: number): number {
    if (a === b) return 1;
    switch (this.kind) {
      case ComparatorKind.JARO_WINKLER: {
        const key = a < b ? a * this.values.length + b : b * this.values.length + a;
        let s = this.cache.get(key);
        if (s === undefined) {
          s = jaroWinkler(this.values[a] as string, this.values[b] as string);
          if (this.cache.size >= maxCachedScores) this.cache.clear();
          this.cache.set(key, s);
        }
        return s;
      }
      case ComparatorKind.DOUBLE_METAPHONE: {
        const pa = this.primary[a] as number;
        const pb = this.primary[b] as number;
        if (pa !== 0 && pa === pb) return 1;
        const aa = this.alternate[a] as number;
        const ab = this.alternate[b] as number;
        const shared = (x: number) => x !== 0 && (x === pb || x === ab);
        return shared(pa) || shared(aa) ? 0.5 : 0;
      }
      default:
        return 0;
    }
  }

  /** Agreement level of records i and j. */
  level(i: number, j: number): LevelCode {
    const a = this.valueIds[i] as number;
    const b = this.valueIds[j] as number;
    if (a === 0 || b === 0) return Level.missing;
    return this.levelOfSimilarity(this.similarityOf(a, b));
  }

  /** Agreement level a similarity reaches. */
  levelOfSimilarity(s: number): LevelCode {
    switch (this.kind) {
      case ComparatorKind.JARO_WINKLER:
        return s >= this.full ? Level.full : this.hasPartial && s >= this.partial ? Level.partial : Level.none;
      case ComparatorKind.DOUBLE_METAPHONE:
        return s === 1 ? Level.full : s > 0 ? Level.partial : Level.none;
      default:
        return s === 1 ? Level.full : Level.none;
    }
  }

  /** Similarity of records i and j (0 when either value is empty). */
  similarity(i: number, j: number): number {
    const a = this.valueIds[i] as number;
    const b = this.valueIds[j] as number;
    return a === 0 || b === 0 ? 0 : this.similarityOf(a, b);
  }
}
