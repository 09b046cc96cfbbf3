/**
 * Retry primitives: exponential backoff with full jitter, and a retry budget that caps retries
 * to a fraction of calls so a struggling server is not hit by a retry storm.
 */

/** Delay before retry number `retry` (1-based): uniform in [0, min(max, base·2^(retry-1))]. */
export function fullJitterDelay(retry: number, baseMs: number, maxMs: number, random = Math.random): number {
  const cap = Math.min(maxMs, baseMs * 2 ** (retry - 1));
  return Math.floor(random() * cap);
}

/**
 * A retry budget in the style of Finagle / gRPC retry throttling: every call deposits `ratio`
 * tokens, every retry withdraws one; a floor of `minPerSecond` retries is always allowed.
 */
export class RetryBudget {
  private tokens = 0;
  private windowStart = 0;
  private floorUsed = 0;
  private readonly ratio: number;
  private readonly minPerSecond: number;
  private readonly maxTokens: number;
  private readonly now: () => number;

  /** @param ratio retries per call allowed; @param minPerSecond retries per second always allowed. */
  constructor(ratio: number, minPerSecond: number, maxTokens = 100, now: () => number = Date.now) {
    this.ratio = ratio;
    this.minPerSecond = minPerSecond;
    this.maxTokens = maxTokens;
    this.now = now;
  }

  /** Records a call (first attempt). */
  deposit(): void {
    this.tokens = Math.min(this.maxTokens, this.tokens + this.ratio);
  }

  /** Takes permission for one retry; false when the budget is spent. */
  tryWithdraw(): boolean {
    const t = this.now();
    if (t - this.windowStart >= 1000) {
      this.windowStart = t;
      this.floorUsed = 0;
    }
    if (this.floorUsed < this.minPerSecond) {
      this.floorUsed++;
      return true;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

/** Resolves after `ms`, or rejects when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
