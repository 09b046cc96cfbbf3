/**
 * RFM scoring: each customer's recency (days since the last purchase), frequency (number of
 * purchases) and monetary value (net spend) are scored 1…bins by quantile rank, and the recency
 * score and the frequency-monetary score place the customer on the standard R × FM grid of named
 * segments.
 *
 * Quantile scores (ties share a score): a customer's score is 1 + ⌊bins · b / n⌋, where b is the
 * number of customers strictly worse on that measure (longer ago; fewer purchases; less spend) and
 * n the number of customers. With distinct values this cuts the ranking into equal bins (the
 * quintiles when bins = 5); tied values never straddle two bins.
 *
 * Grid: scores are put on the 1–5 scale linearly (1 + round((score − 1) · 4 / (bins − 1))), FM = ⌊(F + M + 1) / 2⌋ (their mean,
 * halves rounded up), and (R, FM) maps to:
 *
 *   FM\R   1                 2                 3                4                     5
 *   5      cannot-lose-them  cannot-lose-them  loyal-customers  loyal-customers       champions
 *   4      at-risk           at-risk           loyal-customers  loyal-customers       champions
 *   3      at-risk           at-risk           need-attention   potential-loyalists   potential-loyalists
 *   2      hibernating       hibernating       about-to-sleep   potential-loyalists   potential-loyalists
 *   1      lost              hibernating       about-to-sleep   promising             new-customers
 */
import { RfmSegment } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";

/** One customer's RFM measures. */
export interface RfmMeasures {
  readonly contactId: string;
  readonly recencyDays: number;
  readonly frequency: number;
  readonly monetaryMicros: bigint;
}

/** A customer's measures with their scores and segment. */
export interface RfmScored extends RfmMeasures {
  readonly r: number;
  readonly f: number;
  readonly m: number;
  readonly segment: RfmSegment;
}

/** The named segments in grid order, with their keys and names. */
export const rfmSegments: readonly { segment: RfmSegment; key: string; name: string }[] = [
  { segment: RfmSegment.CHAMPIONS, key: "champions", name: "Champions" },
  { segment: RfmSegment.LOYAL_CUSTOMERS, key: "loyal-customers", name: "Loyal customers" },
  { segment: RfmSegment.POTENTIAL_LOYALISTS, key: "potential-loyalists", name: "Potential loyalists" },
  { segment: RfmSegment.NEW_CUSTOMERS, key: "new-customers", name: "New customers" },
  { segment: RfmSegment.PROMISING, key: "promising", name: "Promising" },
  { segment: RfmSegment.NEED_ATTENTION, key: "need-attention", name: "Need attention" },
  { segment: RfmSegment.ABOUT_TO_SLEEP, key: "about-to-sleep", name: "About to sleep" },
  { segment: RfmSegment.AT_RISK, key: "at-risk", name: "At risk" },
  { segment: RfmSegment.CANNOT_LOSE_THEM, key: "cannot-lose-them", name: "Cannot lose them" },
  { segment: RfmSegment.HIBERNATING, key: "hibernating", name: "Hibernating" },
  { segment: RfmSegment.LOST, key: "lost", name: "Lost" },
];

/** The grid cell of an R score and an FM score, both on the 1–5 scale. */
export function gridSegment(r: number, fm: number): RfmSegment {
  if (r <= 2) {
    if (fm === 5) return RfmSegment.CANNOT_LOSE_THEM;
    if (fm >= 3) return RfmSegment.AT_RISK;
    return r === 1 && fm === 1 ? RfmSegment.LOST : RfmSegment.HIBERNATING;
  }
  if (r === 3) {
    if (fm >= 4) return RfmSegment.LOYAL_CUSTOMERS;
    return fm === 3 ? RfmSegment.NEED_ATTENTION : RfmSegment.ABOUT_TO_SLEEP;
  }
  if (fm >= 4) return r === 5 ? RfmSegment.CHAMPIONS : RfmSegment.LOYAL_CUSTOMERS;
  if (fm >= 2) return RfmSegment.POTENTIAL_LOYALISTS;
  return r === 5 ? RfmSegment.NEW_CUSTOMERS : RfmSegment.PROMISING;
}

/** The segment of R, F and M scores out of `bins`. */
export function rfmSegment(r: number, f: number, m: number, bins: number): RfmSegment {
  const five = (s: number) => Math.min(5, Math.max(1, 1 + Math.round(((s - 1) * 4) / (bins - 1))));
  return gridSegment(five(r), Math.floor((five(f) + five(m) + 1) / 2));
}

/**
 * Quantile scores of `values` (higher is better): 1 + ⌊bins · (number strictly lower) / n⌋.
 * `compare` orders two values ascending.
 */
export function quantileScores<T>(values: readonly T[], bins: number, compare: (a: T, b: T) => number): number[] {
  const n = values.length;
  const order = [...values.keys()].sort((a, b) => compare(values[a] as T, values[b] as T));
  const scores = new Array<number>(n);
  let below = 0;
  for (let i = 0; i < n; i++) {
    const at = order[i] as number;
    // The first of a run of ties: everything before it is strictly lower.
    if (i > 0 && compare(values[order[i - 1] as number] as T, values[at] as T) !== 0) below = i;
    scores[at] = 1 + Math.floor((bins * below) / n);
  }
  return scores;
}

/** Scores customers and assigns their segments. */
export function scoreRfm(customers: readonly RfmMeasures[], bins: number): RfmScored[] {
  // Recency: fewer days is better, so order by days descending.
  const r = quantileScores(
    customers.map((c) => c.recencyDays),
    bins,
    (a, b) => b - a,
  );
  const f = quantileScores(
    customers.map((c) => c.frequency),
    bins,
    (a, b) => a - b,
  );
  const m = quantileScores(
    customers.map((c) => c.monetaryMicros),
    bins,
    (a, b) => (a < b ? -1 : a > b ? 1 : 0),
  );
  return customers.map((c, i) => {
    const ri = r[i] as number;
    const fi = f[i] as number;
    const mi = m[i] as number;
    return { ...c, r: ri, f: fi, m: mi, segment: rfmSegment(ri, fi, mi, bins) };
  });
}

/** One purchase (or refund) of a customer. */
export interface Purchase {
  readonly contactId: string;
  readonly atMs: number;
  readonly amountMicros: bigint;
  readonly transactionId: string;
}

/**
 * Measures per customer from purchases: frequency counts positive transactions, monetary sums all
 * (refunds count against spend), recency is from the last positive one. Transactions after as_of or
 * before the look-back window are left out, and a repeated transaction id counts once. Customers
 * without a positive transaction are not customers.
 */
export function measuresOf(purchases: Iterable<Purchase>, asOfMs: number, lookbackMs: number): RfmMeasures[] {
  const seen = new Set<string>();
  const by = new Map<string, { last: number; n: number; sum: bigint }>();
  for (const p of purchases) {
    if (p.atMs > asOfMs || (lookbackMs > 0 && p.atMs <= asOfMs - lookbackMs)) continue;
    if (p.transactionId !== "") {
      if (seen.has(p.transactionId)) continue;
      seen.add(p.transactionId);
    }
    const id = p.contactId.toLowerCase();
    const acc = by.get(id) ?? { last: Number.NEGATIVE_INFINITY, n: 0, sum: 0n };
    acc.sum += p.amountMicros;
    if (p.amountMicros > 0n) {
      acc.n += 1;
      acc.last = Math.max(acc.last, p.atMs);
    }
    by.set(id, acc);
  }
  const out: RfmMeasures[] = [];
  for (const [contactId, a] of by) {
    if (a.n === 0) continue;
    out.push({ contactId, recencyDays: (asOfMs - a.last) / 86_400_000, frequency: a.n, monetaryMicros: a.sum });
  }
  return out;
}
