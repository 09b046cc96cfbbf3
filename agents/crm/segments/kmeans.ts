/**
 * K-means clustering (Lloyd's algorithm with k-means++ seeding, from ml-kmeans) on z-score
 * standardised features, best of several restarts by inertia, as scikit-learn's KMeans does
 * (n_init restarts, greedy k-means++ with 2 + ⌊ln k⌋ local trials). Each restart is seeded from the
 * request's seed, so the same request gives the same clusters.
 *
 * Standardisation: (x − mean) / σ with the population σ (StandardScaler's); a constant feature
 * becomes 0. Centroids are reported in original units (the mean of the members' raw features).
 * Clusters are ordered by size, largest first (ties by first member), and keyed `cluster-<n>`.
 * The silhouette is the mean silhouette coefficient, exact up to 2,000 points and on a seeded
 * sample of 2,000 points above that (as silhouette_score's sample_size does).
 */
import { kmeans } from "ml-kmeans";

/** Options of {@link clusterKMeans}. */
export interface KMeansOptions {
  readonly k: number;
  readonly seed: bigint;
  readonly maxIterations: number;
  readonly restarts: number;
  readonly standardize: boolean;
}

/** The chosen solution. */
export interface KMeansSolution {
  /** Cluster (0-based, in report order) of each point. */
  readonly assignments: Int32Array;
  /** Centroids in original units, in report order. */
  readonly centroids: readonly number[][];
  /** Members per cluster, in report order. */
  readonly sizes: readonly number[];
  /** Distance of each point to its centroid in the (standardised) clustering space. */
  readonly distances: Float64Array;
  readonly inertia: number;
  readonly iterations: number;
  readonly silhouette: number;
}

/** Most points the silhouette is computed on exactly. */
export const silhouetteSampleSize = 2000;

/** z-scores of each column (population σ); constant columns become 0. */
export function standardize(points: readonly number[][]): number[][] {
  const n = points.length;
  const d = points[0]?.length ?? 0;
  const mean = new Array<number>(d).fill(0);
  const sd = new Array<number>(d).fill(0);
  for (const p of points) for (let j = 0; j < d; j++) mean[j] = (mean[j] as number) + (p[j] as number) / n;
  for (const p of points)
    for (let j = 0; j < d; j++) sd[j] = (sd[j] as number) + ((p[j] as number) - (mean[j] as number)) ** 2 / n;
  for (let j = 0; j < d; j++) sd[j] = Math.sqrt(sd[j] as number);
  return points.map((p) =>
    p.map((x, j) => ((sd[j] as number) > 0 ? (x - (mean[j] as number)) / (sd[j] as number) : 0)),
  );
}

function sq(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += ((a[j] as number) - (b[j] as number)) ** 2;
  return s;
}

/** Index of the nearest centroid (first on ties) and its squared distance. */
function nearest(p: readonly number[], centroids: readonly number[][]): [number, number] {
  let best = 0;
  let bestD = Number.POSITIVE_INFINITY;
  centroids.forEach((c, i) => {
    const d = sq(p, c);
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  });
  return [best, bestD];
}

/** Mulberry32: a small seeded PRNG for the silhouette sample. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mean silhouette coefficient of `labels` over `idx` (points with a singleton cluster score 0). */
export function silhouette(
  points: readonly number[][],
  labels: ArrayLike<number>,
  idx: readonly number[],
  k: number,
): number {
  if (idx.length < 2) return 0;
  let total = 0;
  const sums = new Float64Array(k);
  const counts = new Int32Array(k);
  for (const i of idx) counts[labels[i] as number] = (counts[labels[i] as number] as number) + 1;
  for (const i of idx) {
    sums.fill(0);
    const pi = points[i] as number[];
    for (const j of idx)
      if (j !== i)
        sums[labels[j] as number] = (sums[labels[j] as number] as number) + Math.sqrt(sq(pi, points[j] as number[]));
    const own = labels[i] as number;
    const ownCount = (counts[own] as number) - 1;
    if (ownCount === 0) continue;
    const a = (sums[own] as number) / ownCount;
    let b = Number.POSITIVE_INFINITY;
    for (let c = 0; c < k; c++)
      if (c !== own && (counts[c] as number) > 0) b = Math.min(b, (sums[c] as number) / (counts[c] as number));
    if (!Number.isFinite(b)) continue;
    total += (b - a) / Math.max(a, b);
  }
  return total / idx.length;
}

/** Number of distinct rows of `points`. */
function distinctRows(points: readonly number[][]): number {
  return new Set(points.map((p) => p.join(","))).size;
}

/**
 * Clusters `raw` (rows of feature values). Throws RangeError when there are fewer distinct points
 * than clusters (the caller names the field).
 */
export function clusterKMeans(raw: readonly number[][], opts: KMeansOptions): KMeansSolution {
  const points = opts.standardize ? standardize(raw) : raw.map((p) => [...p]);
  if (distinctRows(points) < opts.k) throw new RangeError(`fewer than ${opts.k} distinct feature vectors`);
  let best: { centroids: number[][]; labels: Int32Array; inertia: number; iterations: number } | undefined;
  for (let r = 0; r < opts.restarts; r++) {
    const seed = Number(BigInt.asUintN(32, opts.seed + BigInt(r) * 2654435761n));
    const res = kmeans(points as number[][], opts.k, {
      initialization: "kmeans++",
      seed,
      maxIterations: opts.maxIterations,
      tolerance: 1e-12,
    });
    // Assign against the final centroids (ml-kmeans' labels are from the step before the update).
    const labels = new Int32Array(points.length);
    let inertia = 0;
    points.forEach((p, i) => {
      const [c, d] = nearest(p, res.centroids);
      labels[i] = c;
      inertia += d;
    });
    if (best === undefined || inertia < best.inertia - 1e-9 * Math.max(1, best.inertia)) {
      best = { centroids: res.centroids, labels, inertia, iterations: res.iterations };
    }
  }
  if (best === undefined) throw new RangeError("restarts must be at least 1");
  const { centroids, labels, inertia, iterations } = best;
  // Report order: size descending, ties by first member.
  const size = new Array<number>(opts.k).fill(0);
  const first = new Array<number>(opts.k).fill(Number.POSITIVE_INFINITY);
  labels.forEach((c, i) => {
    size[c] = (size[c] as number) + 1;
    if (first[c] === Number.POSITIVE_INFINITY) first[c] = i;
  });
  const order = [...Array(opts.k).keys()].sort(
    (a, b) => (size[b] as number) - (size[a] as number) || (first[a] as number) - (first[b] as number),
  );
  const rank = new Int32Array(opts.k);
  order.forEach((c, i) => {
    rank[c] = i;
  });
  const assignments = labels.map((c) => rank[c] as number);
  const d = raw[0]?.length ?? 0;
  const rawCentroids = order.map(() => new Array<number>(d).fill(0));
  raw.forEach((p, i) => {
    const c = rawCentroids[assignments[i] as number] as number[];
    for (let j = 0; j < d; j++) c[j] = (c[j] as number) + (p[j] as number);
  });
  const sizes = order.map((c) => size[c] as number);
  rawCentroids.forEach((c, i) => {
    const n = sizes[i] as number;
    for (let j = 0; j < d; j++) c[j] = n > 0 ? (c[j] as number) / n : Number.NaN;
  });
  const distances = new Float64Array(points.length);
  points.forEach((p, i) => {
    distances[i] = Math.sqrt(sq(p, centroids[labels[i] as number] as number[]));
  });
  let idx = [...points.keys()];
  if (idx.length > silhouetteSampleSize) {
    const rand = mulberry32(Number(BigInt.asUintN(32, opts.seed)));
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j] as number, idx[i] as number];
    }
    idx = idx.slice(0, silhouetteSampleSize);
  }
  return {
    assignments,
    centroids: rawCentroids,
    sizes,
    distances,
    inertia,
    iterations,
    silhouette: silhouette(points, labels, idx, opts.k),
  };
}
