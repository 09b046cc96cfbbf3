/**
 * Interval arithmetic on half-open intervals `[start, end)` of epoch milliseconds: normalisation
 * (sort and merge), union, intersection and subtraction by a sweep over sorted lists, so free time
 * is `working hours ∩ … − busy` in O((n + m) log(n + m)).
 */

/** A half-open interval `[start, end)` in epoch milliseconds; `start < end`. */
export interface Interval {
  /** Inclusive start. */
  readonly start: number;
  /** Exclusive end. */
  readonly end: number;
}

/** Sorted, non-overlapping, non-adjacent intervals: touching or overlapping ones are merged, empty ones dropped. */
export function normalize(intervals: readonly Interval[]): Interval[] {
  const sorted = intervals.filter((i) => i.start < i.end).sort((a, b) => a.start - b.start || a.end - b.end);
  const out: Interval[] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && i.start <= last.end) {
      if (i.end > last.end) out[out.length - 1] = { start: last.start, end: i.end };
    } else {
      out.push({ start: i.start, end: i.end });
    }
  }
  return out;
}

/** The intersection of two interval sets (each normalised first). */
export function intersect(a: readonly Interval[], b: readonly Interval[]): Interval[] {
  const x = normalize(a);
  const y = normalize(b);
  const out: Interval[] = [];
  let i = 0;
  let j = 0;
  while (i < x.length && j < y.length) {
    const p = x[i] as Interval;
    const q = y[j] as Interval;
    const start = Math.max(p.start, q.start);
    const end = Math.min(p.end, q.end);
    if (start < end) out.push({ start, end });
    if (p.end < q.end) i++;
    else j++;
  }
  return out;
}

/** `a` minus `b`: the parts of `a` covered by no interval of `b`. */
export function subtract(a: readonly Interval[], b: readonly Interval[]): Interval[] {
  const x = normalize(a);
  const y = normalize(b);
  const out: Interval[] = [];
  let j = 0;
  for (const p of x) {
    let start = p.start;
    // Busy intervals ending before this one starts can never cut a later one either.
    while (j < y.length && (y[j] as Interval).end <= start) j++;
    let k = j;
    while (k < y.length && (y[k] as Interval).start < p.end) {
      const q = y[k] as Interval;
      if (q.start > start) out.push({ start, end: q.start });
      start = Math.max(start, q.end);
      if (start >= p.end) break;
      k++;
    }
    if (start < p.end) out.push({ start, end: p.end });
  }
  return out;
}

/** Every interval widened by `padMs` on both sides (busy time with a buffer around it). */
export function pad(intervals: readonly Interval[], padMs: number): Interval[] {
  return padMs <= 0 ? [...intervals] : intervals.map((i) => ({ start: i.start - padMs, end: i.end + padMs }));
}

/** Whether `[start, end)` lies entirely inside one interval of the normalised set `free`. */
export function covers(free: readonly Interval[], start: number, end: number): boolean {
  return free.some((f) => f.start <= start && end <= f.end);
}
