/** Token buckets per key (caller, client address): a sustained rate with a burst. */

/** Options of {@link createTokenBuckets}. */
export interface TokenBucketOptions {
  /** Tokens added per second. */
  perSecond: number;
  /** Bucket size. */
  burst: number;
  /** Clock (ms). */
  now?: () => number;
  /** Forget every bucket once this many keys are held (unbounded when unset). */
  maxKeys?: number;
}

/** Buckets by key. */
export interface TokenBuckets {
  /** Takes a token for `key`: 0 when one was taken, else the milliseconds until one is available. */
  take(key: string): number;
}

/** Creates the buckets. */
export function createTokenBuckets(opts: TokenBucketOptions): TokenBuckets {
  const now = opts.now ?? Date.now;
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(key) {
      const t = now();
      const b = buckets.get(key) ?? { tokens: opts.burst, at: t };
      b.tokens = Math.min(opts.burst, b.tokens + ((t - b.at) / 1000) * opts.perSecond);
      b.at = t;
      buckets.set(key, b);
      if (opts.maxKeys !== undefined && buckets.size > opts.maxKeys) buckets.clear();
      if (b.tokens < 1) return Math.ceil(((1 - b.tokens) / opts.perSecond) * 1000);
      b.tokens -= 1;
      return 0;
    },
  };
}
