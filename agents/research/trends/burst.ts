/**
 * Burst detection by z-score against a trailing window. Mentions of a phrase are counted per time
 * bucket (items mentioning it, each counted once); the latest bucket is the current window, the
 * buckets before it the trailing window. A phrase bursts when its current count stands out from
 * the trailing mean:
 *
 *   z = (current − mean) / sqrt(max(variance, mean, 1))
 *
 * with the mean and population variance of the trailing buckets. The variance is floored twice: at
 * the mean, because counts of rare events are at least Poisson-noisy (a phrase seen exactly twice
 * a day for a month and three times today has a sample variance of 0, and would otherwise score
 * infinity), and at 1, so a phrase never seen before scores its count rather than infinity. Chosen
 * over Kleinberg's two-state automaton because every number in the score can be shown as evidence
 * and checked by hand.
 */

/** Share of a phrase's current mentions a longer phrase must hold to stand for it. */
export const SUBSUMPTION_RATIO = 0.8;

/** The score of one phrase. */
export interface BurstScore {
  /** Mean mentions per trailing bucket. */
  readonly mean: number;
  /** Population standard deviation of the trailing buckets' mentions. */
  readonly stddev: number;
  /** The burst's z-score. */
  readonly z: number;
}

/** Scores `current` mentions against the `trailing` buckets' mentions (at least one bucket). */
export function burstScore(current: number, trailing: readonly number[]): BurstScore {
  const n = trailing.length;
  if (n === 0) throw new Error("burst score needs at least one trailing bucket");
  const mean = trailing.reduce((s, c) => s + c, 0) / n;
  const variance = trailing.reduce((s, c) => s + (c - mean) ** 2, 0) / n;
  return { mean, stddev: Math.sqrt(variance), z: (current - mean) / Math.sqrt(Math.max(variance, mean, 1)) };
}

/** A phrase with its mentions per bucket. */
export interface MentionSeries {
  /** Phrase key (lemmas joined by spaces). */
  readonly key: string;
  /** Mentions per bucket, latest first: index 0 is the current window. */
  readonly counts: readonly number[];
}

/** A bursting phrase. */
export interface Burst extends BurstScore {
  /** Phrase key. */
  readonly key: string;
  /** Mentions in the current window. */
  readonly current: number;
  /** Mentions per bucket, latest first. */
  readonly counts: readonly number[];
}

const wordsOf = (key: string): number => key.split(" ").length;

/** Strongest first: by z, then current mentions, then the longer (more specific) phrase, then key. */
function compareBursts(a: Burst, b: Burst): number {
  return (
    b.z - a.z ||
    b.current - a.current ||
    wordsOf(b.key) - wordsOf(a.key) ||
    (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
  );
}

/**
 * The phrases whose current mentions reach `minMentions` and whose z is positive, strongest first.
 * A phrase is left out when a longer bursting phrase containing its words (contiguous, in order)
 * holds at least {@link SUBSUMPTION_RATIO} of its current mentions ("memory" and "care" inside
 * "memory care"): the longer phrase is the topic, the shorter ones only its words.
 */
export function rankBursts(series: Iterable<MentionSeries>, minMentions: number): Burst[] {
  const bursts = new Map<string, Burst>();
  for (const s of series) {
    const current = s.counts[0] ?? 0;
    if (current < minMentions) continue;
    const score = burstScore(current, s.counts.slice(1));
    if (score.z > 0) bursts.set(s.key, { key: s.key, current, counts: s.counts, ...score });
  }
  const subsumed = new Set<string>();
  for (const outer of bursts.values()) {
    const words = outer.key.split(" ");
    for (let len = 1; len < words.length; len++) {
      for (let i = 0; i + len <= words.length; i++) {
        const inner = bursts.get(words.slice(i, i + len).join(" "));
        if (inner !== undefined && outer.current >= SUBSUMPTION_RATIO * inner.current) subsumed.add(inner.key);
      }
    }
  }
  return [...bursts.values()].filter((b) => !subsumed.has(b.key)).sort(compareBursts);
}
