/**
 * Retry policies as code reads them: the delay before a retry (capped exponential backoff with
 * jitter) and which stored policy governs a subject or a skill. Pure functions, no I/O.
 */
import {
  Jitter,
  type RetryPolicy,
  type RetryTarget,
  RetryTargetKind,
  RpcCode,
} from "../../gen/mesh/system/v1/system_service_pb.ts";
import { subjectMatches } from "../../lib/bus/index.ts";

/** Delay before the first retry when `base_backoff` is unset. */
export const DEFAULT_BASE_BACKOFF_MS = 100;
/** Longest single delay when `max_backoff` is unset. */
export const DEFAULT_MAX_BACKOFF_MS = 30_000;
/** Codes retried when `retryable_rpc_codes` is empty. */
export const DEFAULT_RETRYABLE_RPC_CODES: readonly RpcCode[] = [
  RpcCode.UNAVAILABLE,
  RpcCode.DEADLINE_EXCEEDED,
  RpcCode.RESOURCE_EXHAUSTED,
  RpcCode.ABORTED,
];
/** HTTP statuses retried when `retryable_http_statuses` is empty. */
export const DEFAULT_RETRYABLE_HTTP_STATUSES: readonly number[] = [408, 429, 502, 503, 504];

const durationMsOf = (d: { seconds: bigint; nanos: number } | undefined, fallback: number): number =>
  d === undefined ? fallback : Number(d.seconds) * 1000 + d.nanos / 1_000_000;

/**
 * The delay in milliseconds (fractional) before retry number `attempt` (1 = the first retry, after
 * the first failed attempt). The capped exponential delay is
 * `min(max_backoff, base_backoff × 2^(attempt-1))`; the jitter then draws from it:
 * full (the default) `random(0, capped)`, equal `capped/2 + random(0, capped/2)`, none `capped`,
 * decorrelated `min(max_backoff, random(base_backoff, 3 × previous))`, where `previousDelayMs` is the
 * delay actually used before the previous retry (default: the previous capped delay, or
 * `base_backoff` for the first retry). `random` returns a number in [0, 1).
 */
export function backoffDelayMs(
  policy: Pick<RetryPolicy, "baseBackoff" | "maxBackoff" | "jitter">,
  attempt: number,
  random: () => number = Math.random,
  previousDelayMs?: number,
): number {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be an integer ≥ 1, got ${attempt}`);
  const base = durationMsOf(policy.baseBackoff, DEFAULT_BASE_BACKOFF_MS);
  const max = durationMsOf(policy.maxBackoff, DEFAULT_MAX_BACKOFF_MS);
  const capped = (n: number): number => Math.min(max, base * 2 ** (n - 1));
  switch (policy.jitter) {
    case Jitter.NONE:
      return capped(attempt);
    case Jitter.EQUAL:
      return capped(attempt) / 2 + random() * (capped(attempt) / 2);
    case Jitter.DECORRELATED: {
      const previous = previousDelayMs ?? (attempt === 1 ? base : capped(attempt - 1));
      const high = Math.max(base, 3 * previous);
      return Math.min(max, base + random() * (high - base));
    }
    default:
      return random() * capped(attempt);
  }
}

/** What a policy is looked up for. */
export interface PolicyTarget {
  kind: RetryTargetKind;
  /** A concrete subject (for SUBJECT) or a skill id (for SKILL). */
  name: string;
}

/** Rank of a filter token: a literal is more specific than `*`, which is more specific than `>`. */
const tokenRank = (t: string | undefined): number => (t === ">" ? 0 : t === "*" ? 1 : 2);

/**
 * Orders two subject filters that match the same subject, most specific first: comparing token by
 * token from the left, the first position where they differ decides (literal before `*` before
 * `>`), so `mesh.tasks.seo.>` beats `mesh.tasks.*.urgent` (the agent is named before the level).
 */
function compareSpecificity(a: string, b: string): number {
  const ta = a.split(".");
  const tb = b.split(".");
  for (let i = 0; i < Math.max(ta.length, tb.length); i++) {
    const d = tokenRank(tb[i]) - tokenRank(ta[i]);
    if (d !== 0) return d;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The policy governing `target`, or undefined when none does: for a skill the policy of that skill
 * id; for a subject the most specific policy whose subject filter matches it (see
 * {@link compareSpecificity}: an exact subject beats any wildcard filter).
 */
export function resolvePolicy<T extends { target?: Pick<RetryTarget, "kind" | "name"> | undefined }>(
  policies: readonly T[],
  target: PolicyTarget,
): T | undefined {
  if (target.kind === RetryTargetKind.SKILL) {
    return policies.find((p) => p.target?.kind === RetryTargetKind.SKILL && p.target.name === target.name);
  }
  if (target.kind !== RetryTargetKind.SUBJECT) return undefined;
  let best: T | undefined;
  for (const p of policies) {
    if (p.target?.kind !== RetryTargetKind.SUBJECT || !subjectMatches(p.target.name, target.name)) continue;
    if (best === undefined || compareSpecificity(p.target.name, best.target?.name ?? "") < 0) best = p;
  }
  return best;
}
