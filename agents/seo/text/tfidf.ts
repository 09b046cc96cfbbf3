/**
 * TF-IDF vectors and cosine similarity over a small corpus of texts.
 *
 * Terms are wink-nlp word tokens, lower-cased, without stop words, reduced to their Porter2 stems
 * ("communities" and "community" are one term), from lib/search's uncached `contentWords` (its cached
 * `contentLemmas` suits short keywords but would hold whole pages). Weights are raw term
 * frequency × smoothed inverse document frequency idf(t) = ln((1 + N) / (1 + df(t))) + 1, the form
 * scikit-learn uses, so a term in every document still counts a little and a two-document corpus
 * still works; vectors are L2-normalised, so cosine similarity is their dot product.
 */
import { contentWords } from "../../../lib/search/index.ts";

/** A sparse, L2-normalised TF-IDF vector: term → weight. */
export type TfidfVector = ReadonlyMap<string, number>;

/** The terms of a text: stems of its words that are not stop words. */
export function terms(text: string): string[] {
  return contentWords(text, { form: "stem", numbers: false });
}

/** TF-IDF vectors of `documents` (each a list of terms), with IDF over exactly these documents. */
export function tfidfVectors(documents: readonly (readonly string[])[]): TfidfVector[] {
  const df = new Map<string, number>();
  const counts = documents.map((doc) => {
    const tf = new Map<string, number>();
    for (const t of doc) tf.set(t, (tf.get(t) ?? 0) + 1);
    for (const t of tf.keys()) df.set(t, (df.get(t) ?? 0) + 1);
    return tf;
  });
  const n = documents.length;
  return counts.map((tf) => {
    const v = new Map<string, number>();
    let norm = 0;
    for (const [t, f] of tf) {
      const w = f * (Math.log((1 + n) / (1 + (df.get(t) ?? 0))) + 1);
      v.set(t, w);
      norm += w * w;
    }
    norm = Math.sqrt(norm);
    if (norm > 0) for (const [t, w] of v) v.set(t, w / norm);
    return v;
  });
}

/** Cosine similarity of two normalised vectors, 0–1 (0 when either is empty). */
export function cosine(a: TfidfVector, b: TfidfVector): number {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let dot = 0;
  for (const [t, w] of small) dot += w * (large.get(t) ?? 0);
  // Rounding can push the dot product of identical vectors a hair past 1.
  return Math.min(1, Math.max(0, dot));
}
