/**
 * Tables of the System agent, in the technical schema: the retry policies of task subjects and
 * skills. Enum columns hold the protobuf enum numbers (RetryTargetKind, Jitter, RpcCode).
 */
import { defineEntity, p } from "@mikro-orm/postgresql";

/**
 * The retry policy of one target, stored with its defaults filled in (an unset
 * `max_elapsed` stays null: no time budget). Durations are whole milliseconds.
 */
export const RetryPolicy = defineEntity({
  name: "RetryPolicy",
  tableName: "retry_policy",
  uniques: [{ properties: ["targetKind", "targetName"] }],
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    /** RetryTargetKind: 1 subject filter, 2 skill id. */
    targetKind: p.integer(),
    /** Subject filter (`mesh.tasks.seo.>`) or skill id (`seo.technical_audit`). */
    targetName: p.string().length(256),
    /** Attempts in all, the first included. */
    maxAttempts: p.integer(),
    baseBackoffMs: p.integer(),
    maxBackoffMs: p.integer(),
    /** Jitter (never UNSPECIFIED here: that is stored as FULL). */
    jitter: p.integer(),
    /** RpcCode numbers that are retried. */
    retryableRpcCodes: p.json<number[]>(),
    /** HTTP statuses that are retried on external APIs. */
    retryableHttpStatuses: p.json<number[]>(),
    honourRetryAfter: p.boolean().default(false),
    maxRetryAfterMs: p.integer(),
    /** Time budget across all attempts; null for none. */
    maxElapsedMs: p.integer().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    /** Optimistic lock, and the revision the API reports. */
    version: p.integer().version(),
  },
});

/** Entities of the System agent (technical schema). */
export const systemEntities = [RetryPolicy] as const;
