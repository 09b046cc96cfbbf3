/**
 * Retry management (skill `integration.retry_management`).
 *
 * Retry policies: one per target, a task subject filter or a skill id, stored in the technical
 * schema with their defaults filled in (unset jitter is full jitter, unset backoffs 100 ms and
 * 30 s, empty code lists the documented defaults). Setting a policy replaces the target's policy
 * whole; the revision is the row's optimistic-lock version and only moves when something changed.
 * Values the contract cannot check are refused before anything is written: a subject filter that
 * can match no task or event subject of this deployment, an unknown or non-idempotent skill (only
 * idempotent calls may be retried), a max_backoff shorter than the (default) base_backoff,
 * durations that are not whole milliseconds. {@link backoffDelayMs} and {@link resolvePolicy} are
 * how code applies them: every server keeps a live copy (agents/system/live-policies.ts) that its
 * mesh client and bus consumers read, refreshed by the RetryPolicyChanged event a change publishes
 * through the outbox.
 *
 * Dead letters are the JetStream DLQ the mover fills from MAX_DELIVERIES advisories (lib/bus/dlq).
 * A dead letter's message id is its logical message id. Listing filters by original subject and
 * failure time, newest failure first, with keyset page tokens (stable while letters come and go).
 * Replay republishes each selected letter (oldest first) on its original subject, or on
 * `target_subject`, with Nats-Msg-Id `replay.<request_id>.<dlq sequence>`, then removes it from the
 * DLQ: a retry of a call that crashed midway, with the same request id, is dropped by JetStream's
 * dedup window instead of delivering the message twice. Replays and purges take a transaction-level
 * advisory lock on the DLQ, so two calls never act on the same letter at once.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, type Timestamp, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { InferEntity } from "@mikro-orm/core";
import type { TimeRange } from "../../../gen/mesh/common/v1/types_pb.ts";
import { RetryPolicyChangedSchema } from "../../../gen/mesh/system/v1/system_events_pb.ts";
import {
  type DeadLetter as DeadLetterMessage,
  DeadLetterSchema,
  type DeadLetterSelection,
  Jitter,
  type ListDeadLettersAction,
  type ListDeadLettersResult,
  ListDeadLettersResultSchema,
  type ListRetryPoliciesAction,
  type ListRetryPoliciesResult,
  ListRetryPoliciesResultSchema,
  type ManageRetriesRequest,
  type ManageRetriesResponse,
  ManageRetriesResponseSchema,
  type PurgeDeadLettersAction,
  type PurgeDeadLettersResult,
  PurgeDeadLettersResultSchema,
  type ReplayDeadLettersAction,
  type ReplayDeadLettersResult,
  ReplayDeadLettersResultSchema,
  type ReplayedMessage,
  ReplayedMessageSchema,
  type RetryPolicyEntry,
  RetryPolicyEntrySchema,
  type RetryPolicy as RetryPolicyMessage,
  RetryTargetKind,
  RpcCode,
  type SetRetryPolicyAction,
  type SetRetryPolicyResult,
  SetRetryPolicyResultSchema,
} from "../../../gen/mesh/system/v1/system_service_pb.ts";
import {
  type DeadLetter,
  DeadLetterNotFoundError,
  deadLetterId,
  enqueueEvent,
  matchesDeadLetter,
  purgeDeadLetter,
  replayDeadLetter,
  scanDeadLetters,
} from "../../../lib/bus/index.ts";
import {
  type EntityManager,
  OptimisticLockError,
  transaction,
  UniqueConstraintViolationException,
} from "../../../lib/db/index.ts";
import { ConflictError, InvalidInputError } from "../../../lib/errors/index.ts";
import type { AgentDeps } from "../../../lib/server/index.ts";
import { RetryPolicy } from "../entities.ts";
import { RetryPolicyChangedEvent } from "../events.ts";
import {
  DEFAULT_BASE_BACKOFF_MS,
  DEFAULT_MAX_BACKOFF_MS,
  DEFAULT_RETRYABLE_HTTP_STATUSES,
  DEFAULT_RETRYABLE_RPC_CODES,
} from "../retry-policy.ts";

/** Dependencies of the skill. */
export type ManageRetriesDeps = Pick<AgentDeps, "db" | "bus" | "catalog" | "log" | "now">;

type RetryPolicyRow = InferEntity<typeof RetryPolicy>;

/** The policy columns of a row (what a set replaces). */
interface PolicyColumns {
  maxAttempts: number;
  baseBackoffMs: number;
  maxBackoffMs: number;
  jitter: number;
  retryableRpcCodes: number[];
  retryableHttpStatuses: number[];
  honourRetryAfter: boolean;
  maxRetryAfterMs: number;
  maxElapsedMs: number | null;
}

const DEFAULT_PAGE_SIZE = 100;
const DEFAULT_MAX_REPLAY = 1000;

/** Runs one retry-management action. */
export async function manageRetries(
  deps: ManageRetriesDeps,
  req: ManageRetriesRequest,
): Promise<ManageRetriesResponse> {
  const action = req.action;
  switch (action.case) {
    case "setPolicy":
      return response({ case: "setPolicy", value: await setPolicy(deps, action.value) });
    case "listPolicies":
      return response({ case: "listPolicies", value: await listPolicies(deps, action.value) });
    case "listDeadLetters":
      return response({ case: "listDeadLetters", value: await listDeadLetters(deps, action.value) });
    case "replay":
      return response({ case: "replay", value: await replay(deps, req.requestId, action.value) });
    case "purge":
      return response({ case: "purge", value: await purge(deps, action.value) });
    default:
      throw new InvalidInputError(
        "action",
        "is required: set_policy, list_policies, list_dead_letters, replay or purge",
      );
  }
}

function response(result: ManageRetriesResponse["result"]): ManageRetriesResponse {
  return create(ManageRetriesResponseSchema, { result });
}

// ---------------------------------------------------------------------------------------------
// Retry policies

async function setPolicy(deps: ManageRetriesDeps, a: SetRetryPolicyAction): Promise<SetRetryPolicyResult> {
  if (a.target === undefined) throw new InvalidInputError("set_policy.target", "is required");
  if (a.policy === undefined) throw new InvalidInputError("set_policy.policy", "is required");
  const kind = a.target.kind;
  const name = a.target.name;
  checkTarget(deps, kind, name);
  const columns = policyColumns(a.policy, "set_policy.policy");
  return transaction(deps.db, async (em) => {
    // Serialises concurrent sets of one target, including the first (no row to lock yet).
    await lock(em, `system.retry_policy:${kind}:${name}`);
    let row = await em.findOne(RetryPolicy, { targetKind: kind, targetName: name });
    const created = row === null;
    const changed = row === null || !sameColumns(row, columns);
    const now = deps.now();
    if (row === null) {
      row = em.create(RetryPolicy, { targetKind: kind, targetName: name, ...columns, createdAt: now, updatedAt: now });
    } else if (changed) {
      em.assign(row, { ...columns, updatedAt: now });
    }
    try {
      await em.flush();
    } catch (err) {
      if (err instanceof OptimisticLockError || err instanceof UniqueConstraintViolationException) {
        throw new ConflictError(`the retry policy of ${name} changed concurrently; retry the call`, { cause: err });
      }
      throw err;
    }
    const entry = entryOf(row);
    // Every server applies policies from a live copy: the event, committed with the change, updates them all.
    if (changed) {
      enqueueEvent(deps.db, em, deps.bus.prefix, RetryPolicyChangedEvent, create(RetryPolicyChangedSchema, { entry }));
    }
    return create(SetRetryPolicyResultSchema, { entry, created });
  });
}

/** Refuses targets that could never apply; throws InvalidInputError. */
function checkTarget(deps: ManageRetriesDeps, kind: RetryTargetKind, name: string): void {
  const at = "set_policy.target.name";
  if (kind === RetryTargetKind.SKILL) {
    const skill = deps.catalog.skillById.get(name);
    if (skill === undefined) throw new InvalidInputError(at, `no skill ${name} in the mesh`);
    if (!skill.idempotent) {
      throw new InvalidInputError(at, `skill ${name} is not idempotent; only idempotent skills are retried`);
    }
    return;
  }
  if (kind !== RetryTargetKind.SUBJECT) {
    throw new InvalidInputError(
      "set_policy.target.kind",
      "must be RETRY_TARGET_KIND_SUBJECT or RETRY_TARGET_KIND_SKILL",
    );
  }
  const { prefix } = deps.bus;
  if (!filtersOverlap(name, `${prefix}.tasks.>`) && !filtersOverlap(name, `${prefix}.events.>`)) {
    throw new InvalidInputError(
      at,
      `${name} matches no task or event subject of this deployment (${prefix}.tasks.> or ${prefix}.events.>)`,
    );
  }
}

/** True when some subject matches both NATS subject filters. */
function filtersOverlap(a: string, b: string): boolean {
  const ta = a.split(".");
  const tb = b.split(".");
  for (let i = 0; ; i++) {
    const x = ta[i];
    const y = tb[i];
    // `>` matches one or more tokens, so the other side must still have one.
    if (x === ">" || y === ">") return x !== undefined && y !== undefined;
    if (x === undefined || y === undefined) return x === y;
    if (x !== "*" && y !== "*" && x !== y) return false;
  }
}

/** Whole milliseconds of a duration; throws InvalidInputError for a finer one. */
function wholeMs(d: { seconds: bigint; nanos: number }, path: string): number {
  if (d.nanos % 1_000_000 !== 0) throw new InvalidInputError(path, "must be a whole number of milliseconds");
  return Number(d.seconds) * 1000 + d.nanos / 1_000_000;
}

/** The columns of a policy with its defaults filled in; throws InvalidInputError. */
function policyColumns(p: RetryPolicyMessage, path: string): PolicyColumns {
  if (p.maxAttempts < 1 || p.maxAttempts > 100) throw new InvalidInputError(`${path}.max_attempts`, "must be 1–100");
  const base = p.baseBackoff === undefined ? DEFAULT_BASE_BACKOFF_MS : wholeMs(p.baseBackoff, `${path}.base_backoff`);
  const max = p.maxBackoff === undefined ? DEFAULT_MAX_BACKOFF_MS : wholeMs(p.maxBackoff, `${path}.max_backoff`);
  if (max < base) {
    // The contract checks the order only when both are set; a default on one side is checked here.
    throw p.maxBackoff === undefined
      ? new InvalidInputError(
          `${path}.base_backoff`,
          `must not be longer than max_backoff, which defaults to ${DEFAULT_MAX_BACKOFF_MS} ms`,
        )
      : new InvalidInputError(
          `${path}.max_backoff`,
          `must not be shorter than base_backoff, which defaults to ${DEFAULT_BASE_BACKOFF_MS} ms`,
        );
  }
  return {
    maxAttempts: p.maxAttempts,
    baseBackoffMs: base,
    maxBackoffMs: max,
    jitter: p.jitter === Jitter.UNSPECIFIED ? Jitter.FULL : p.jitter,
    retryableRpcCodes: p.retryableRpcCodes.length > 0 ? [...p.retryableRpcCodes] : [...DEFAULT_RETRYABLE_RPC_CODES],
    retryableHttpStatuses:
      p.retryableHttpStatuses.length > 0 ? [...p.retryableHttpStatuses] : [...DEFAULT_RETRYABLE_HTTP_STATUSES],
    honourRetryAfter: p.honourRetryAfter,
    maxRetryAfterMs: p.maxRetryAfter === undefined ? max : wholeMs(p.maxRetryAfter, `${path}.max_retry_after`),
    maxElapsedMs: p.maxElapsed === undefined ? null : wholeMs(p.maxElapsed, `${path}.max_elapsed`),
  };
}

function sameColumns(row: RetryPolicyRow, c: PolicyColumns): boolean {
  return (Object.keys(c) as (keyof PolicyColumns)[]).every(
    (k) => JSON.stringify(row[k] ?? null) === JSON.stringify(c[k]),
  );
}

function entryOf(row: RetryPolicyRow): RetryPolicyEntry {
  return create(RetryPolicyEntrySchema, {
    target: { kind: row.targetKind as RetryTargetKind, name: row.targetName },
    policy: {
      maxAttempts: row.maxAttempts,
      baseBackoff: durationFromMs(row.baseBackoffMs),
      maxBackoff: durationFromMs(row.maxBackoffMs),
      jitter: row.jitter as Jitter,
      retryableRpcCodes: row.retryableRpcCodes as RpcCode[],
      retryableHttpStatuses: row.retryableHttpStatuses,
      honourRetryAfter: row.honourRetryAfter,
      maxRetryAfter: durationFromMs(row.maxRetryAfterMs),
      ...(row.maxElapsedMs === null || row.maxElapsedMs === undefined
        ? {}
        : { maxElapsed: durationFromMs(row.maxElapsedMs) }),
    },
    revision: BigInt(row.version),
    updatedAt: timestampFromDate(row.updatedAt),
  });
}

async function listPolicies(deps: ManageRetriesDeps, a: ListRetryPoliciesAction): Promise<ListRetryPoliciesResult> {
  const size = a.pageSize > 0 ? a.pageSize : DEFAULT_PAGE_SIZE;
  const after = a.pageToken === "" ? undefined : policyToken(a.pageToken);
  return transaction(deps.db, async (em) => {
    const rows = await em.find(
      RetryPolicy,
      {
        ...(a.kind === RetryTargetKind.UNSPECIFIED ? {} : { targetKind: a.kind }),
        ...(after === undefined
          ? {}
          : { $or: [{ targetKind: { $gt: after.k } }, { targetKind: after.k, targetName: { $gt: after.n } }] }),
      },
      { orderBy: { targetKind: "asc", targetName: "asc" }, limit: size + 1 },
    );
    const page = rows.slice(0, size);
    const last = page.at(-1);
    return create(ListRetryPoliciesResultSchema, {
      entries: page.map(entryOf),
      nextPageToken:
        rows.length > size && last !== undefined ? encodeToken({ k: last.targetKind, n: last.targetName }) : "",
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Dead letters

function encodeToken(v: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(v)).toString("base64url");
}

function decodeToken(token: string, path: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(Buffer.from(token, "base64url").toString());
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new InvalidInputError(path, "is not a page token from a previous page");
}

function policyToken(token: string): { k: number; n: string } {
  const path = "list_policies.page_token";
  const v = decodeToken(token, path);
  if (!Number.isInteger(v.k) || typeof v.n !== "string") {
    throw new InvalidInputError(path, "is not a page token from a previous page");
  }
  return { k: v.k as number, n: v.n };
}

function deadLetterToken(token: string): { t: number; s: number } {
  const path = "list_dead_letters.page_token";
  const v = decodeToken(token, path);
  if (!Number.isFinite(v.t) || !Number.isInteger(v.s)) {
    throw new InvalidInputError(path, "is not a page token from a previous page");
  }
  return { t: v.t as number, s: v.s as number };
}

/** Time-range criteria of a TimeRange ([start, end)). */
function rangeOf(r: TimeRange | undefined): { failedFrom?: Date; failedUntil?: Date } {
  const date = (t: Timestamp | undefined) => (t === undefined ? undefined : timestampDate(t));
  const from = date(r?.start);
  const until = date(r?.end);
  return {
    ...(from === undefined ? {} : { failedFrom: from }),
    ...(until === undefined ? {} : { failedUntil: until }),
  };
}

/** Newest failure first; the DLQ sequence breaks ties (later first). */
function newestFirst(a: { t: number; s: number }, b: { t: number; s: number }): number {
  return b.t - a.t || b.s - a.s;
}

const keyOf = (dl: DeadLetter) => ({ t: dl.failedAt.getTime(), s: dl.seq });

async function listDeadLetters(deps: ManageRetriesDeps, a: ListDeadLettersAction): Promise<ListDeadLettersResult> {
  const size = a.pageSize > 0 ? a.pageSize : DEFAULT_PAGE_SIZE;
  const after = a.pageToken === "" ? undefined : deadLetterToken(a.pageToken);
  const matching = await scanDeadLetters(deps.bus, {
    ...(a.subjectFilter === "" ? {} : { subject: a.subjectFilter }),
    ...rangeOf(a.failedIn),
  });
  matching.sort((x, y) => newestFirst(keyOf(x), keyOf(y)));
  const rest = after === undefined ? matching : matching.filter((dl) => newestFirst(after, keyOf(dl)) < 0);
  const page = rest.slice(0, size);
  const last = page.at(-1);
  return create(ListDeadLettersResultSchema, {
    deadLetters: page.map(deadLetterMessage),
    nextPageToken: rest.length > size && last !== undefined ? encodeToken(keyOf(last)) : "",
    totalCount: BigInt(matching.length),
  });
}

/** Masks credentials an error message may carry (URL passwords, bearer tokens, key=value secrets). */
export function redactSecrets(text: string): string {
  return text
    .replace(/(\/\/[^/\s:@]+):[^@\s/]+@/g, "$1:***@")
    .replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, "$1 ***")
    .replace(
      /\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)/gi,
      "$1$2***",
    );
}

/** The W3C trace id of a traceparent header, or "". */
function traceIdOf(headers: Record<string, string>): string {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(headers.traceparent ?? "");
  return m?.[1] ?? "";
}

function deadLetterMessage(dl: DeadLetter): DeadLetterMessage {
  return create(DeadLetterSchema, {
    subject: dl.subject,
    messageId: deadLetterId(dl),
    deliveryCount: dl.deliveries,
    lastError: redactSecrets(dl.reason),
    // The DLQ records the failure's message, not a status code.
    lastErrorCode: RpcCode.UNKNOWN,
    // JetStream reports only the exhausted delivery, so the first failure time is not known.
    lastFailureTime: timestampFromDate(dl.failedAt),
    stream: dl.stream,
    streamSequence: BigInt(dl.originalSeq),
    consumer: dl.consumer,
    sizeBytes: BigInt(dl.data.length),
    traceId: traceIdOf(dl.headers),
  });
}

/** Checks what the contract cannot: `failed_in` only narrows `subject_filter`. */
function checkSelection(sel: DeadLetterSelection | undefined, path: string): DeadLetterSelection {
  if (sel === undefined) throw new InvalidInputError(path, "is required");
  if (sel.messageIds.length === 0 && sel.subjectFilter === "") {
    throw new InvalidInputError(path, "select dead letters by message_ids or by subject_filter");
  }
  if (sel.failedIn !== undefined && sel.subjectFilter === "") {
    throw new InvalidInputError(`${path}.failed_in`, "applies only with subject_filter");
  }
  return sel;
}

/**
 * The dead letters a selection picks (those with a listed id, plus those matching the subject
 * filter and time range), oldest first, and the listed ids that pick none.
 */
function select(letters: readonly DeadLetter[], sel: DeadLetterSelection): { picked: Picked[]; notFound: string[] } {
  const ids = new Set(sel.messageIds);
  const found = new Set<string>();
  const byFilter = sel.subjectFilter === "" ? undefined : { subject: sel.subjectFilter, ...rangeOf(sel.failedIn) };
  const picked: Picked[] = [];
  for (const dl of letters) {
    const id = deadLetterId(dl);
    const listed = ids.has(id);
    if (listed) found.add(id);
    if (listed || (byFilter !== undefined && matchesDeadLetter(dl, byFilter))) picked.push({ dl, id, listed });
  }
  return { picked, notFound: sel.messageIds.filter((id) => !found.has(id)) };
}

interface Picked {
  dl: DeadLetter;
  id: string;
  /** Selected by id (so reported as not found if it vanishes meanwhile). */
  listed: boolean;
}

/** Serialises replays and purges of this deployment's DLQ until the transaction ends. */
function lockDeadLetters(em: EntityManager, deps: ManageRetriesDeps): Promise<void> {
  return lock(em, `system.dlq:${deps.bus.streams.dlq}`);
}

async function lock(em: EntityManager, key: string): Promise<void> {
  await em.execute("select pg_advisory_xact_lock(hashtextextended(?, 0))", [key]);
}

/** Nats-Msg-Id of a replay: a retried call with the same request id is dropped by JetStream's dedup. */
export function replayMessageId(requestId: string, dlqSeq: number): string {
  return `replay.${requestId}.${dlqSeq}`;
}

async function replay(
  deps: ManageRetriesDeps,
  requestId: string,
  a: ReplayDeadLettersAction,
): Promise<ReplayDeadLettersResult> {
  const sel = checkSelection(a.selection, "replay.selection");
  if (requestId === "") throw new InvalidInputError("request_id", "is required for a replay");
  const { prefix } = deps.bus;
  const target = a.targetSubject;
  if (target !== "" && !target.startsWith(`${prefix}.tasks.`) && !target.startsWith(`${prefix}.events.`)) {
    throw new InvalidInputError(
      "replay.target_subject",
      `must be a task or event subject of this deployment (${prefix}.tasks.… or ${prefix}.events.…)`,
    );
  }
  const max = a.maxMessages > 0 ? a.maxMessages : DEFAULT_MAX_REPLAY;
  return transaction(deps.db, async (em) => {
    await lockDeadLetters(em, deps);
    const { picked, notFound } = select(await scanDeadLetters(deps.bus), sel);
    const replayed: ReplayedMessage[] = [];
    for (const p of picked.slice(0, max)) {
      try {
        const r = await replayDeadLetter(deps.bus, p.dl.seq, {
          msgId: replayMessageId(requestId, p.dl.seq),
          ...(target === "" ? {} : { subject: target }),
        });
        replayed.push(
          create(ReplayedMessageSchema, { messageId: p.id, subject: r.subject, streamSequence: BigInt(r.seq) }),
        );
      } catch (err) {
        // Gone since the scan (expired, or removed outside this skill).
        if (!(err instanceof DeadLetterNotFoundError)) throw err;
        if (p.listed) notFound.push(p.id);
      }
    }
    const done = new Set(replayed.map((r) => r.messageId));
    if (replayed.length > 0) {
      deps.log.info("replayed dead letters", { requestId, count: replayed.length, truncated: picked.length > max });
    }
    return create(ReplayDeadLettersResultSchema, {
      replayed,
      notFoundMessageIds: [...new Set(notFound)].filter((id) => !done.has(id)),
      truncated: picked.length > max,
    });
  });
}

async function purge(deps: ManageRetriesDeps, a: PurgeDeadLettersAction): Promise<PurgeDeadLettersResult> {
  const sel = checkSelection(a.selection, "purge.selection");
  return transaction(deps.db, async (em) => {
    await lockDeadLetters(em, deps);
    const { picked, notFound } = select(await scanDeadLetters(deps.bus), sel);
    let purged = 0;
    const done = new Set<string>();
    for (const p of picked) {
      if (await purgeDeadLetter(deps.bus, p.dl.seq)) {
        purged++;
        done.add(p.id);
      } else if (p.listed) notFound.push(p.id);
    }
    if (purged > 0) deps.log.info("purged dead letters", { count: purged });
    return create(PurgeDeadLettersResultSchema, {
      purged: BigInt(purged),
      notFoundMessageIds: [...new Set(notFound)].filter((id) => !done.has(id)),
    });
  });
}
