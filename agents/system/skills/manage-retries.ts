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
 * A dead letter's message id is its logical message id. Every DLQ read is bounded: the DLQ is
 * scanned headers only, one batch (500 messages) per round trip, never holding more than one batch
 * and one page. Listing filters by original subject and failure time, latest failure (DLQ order)
 * first; its page token is the last DLQ sequence shown (stable while letters come and go) and the
 * total counted for the first page. Replay republishes each selected letter (oldest first, its
 * payload read on its own) on its original subject, or on `target_subject`, with Nats-Msg-Id
 * `replay.<request_id>.<dlq sequence>`, then removes it from the DLQ: a retry of a call that crashed
 * midway, with the same request id, skips the letters already removed and has the one republished
 * but not removed dropped by JetStream's dedup window, so nothing is delivered twice (past the
 * window, the logical message id still lets a consumer's inbox drop it). Purge deletes each selected
 * letter as its batch is scanned. Replays and purges take a transaction-level advisory lock on the
 * DLQ, so two calls never act on the same letter at once.
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
export type ManageRetriesDeps = Pick<AgentDeps, "db" | "bus" | "catalog" | "log" | "now"> & {
  /** Dead letters read per round trip and held at once (default 500, lib/bus DEAD_LETTER_BATCH). */
  dlqBatchSize?: number;
};

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

/** A dead-letter page token: the last DLQ sequence shown, and the count taken on the first page. */
interface DeadLetterCursor {
  s: number;
  n: number;
}

function deadLetterToken(token: string): DeadLetterCursor {
  const path = "list_dead_letters.page_token";
  const v = decodeToken(token, path);
  if (!Number.isSafeInteger(v.s) || (v.s as number) < 1 || !Number.isSafeInteger(v.n) || (v.n as number) < 0) {
    throw new InvalidInputError(path, "is not a page token from a previous page");
  }
  return { s: v.s as number, n: v.n as number };
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

/** How a scan of this deployment's DLQ walks it (headers only, one batch at a time). */
function scanOf(deps: ManageRetriesDeps, order: "oldest" | "newest", cursor?: number) {
  return {
    order,
    payloadBytes: 0,
    ...(deps.dlqBatchSize === undefined ? {} : { batchSize: deps.dlqBatchSize }),
    ...(cursor === undefined ? {} : { cursor }),
  };
}

/**
 * One page of dead letters, latest failure (the DLQ's order) first. The first page counts the
 * matching letters: from the stream's own count when nothing is filtered, else in one pass over the
 * headers that also keeps the newest `size + 1` matches; its token carries that count and the last
 * sequence shown, and each further page reads down from there until it is full.
 */
async function listDeadLetters(deps: ManageRetriesDeps, a: ListDeadLettersAction): Promise<ListDeadLettersResult> {
  const size = a.pageSize > 0 ? a.pageSize : DEFAULT_PAGE_SIZE;
  const after = a.pageToken === "" ? undefined : deadLetterToken(a.pageToken);
  const filter = { ...(a.subjectFilter === "" ? {} : { subject: a.subjectFilter }), ...rangeOf(a.failedIn) };
  const filtered = Object.keys(filter).length > 0;
  let total: number;
  let newest: DeadLetter[] = [];
  if (after !== undefined) {
    total = after.n;
    for await (const b of scanDeadLetters(deps.bus, { ...filter, limit: size + 1 }, scanOf(deps, "newest", after.s))) {
      newest.push(...b.letters);
    }
  } else if (!filtered) {
    total = (await deps.bus.jsm.streams.info(deps.bus.streams.dlq)).state.messages;
    for await (const b of scanDeadLetters(deps.bus, { limit: size + 1 }, scanOf(deps, "newest"))) {
      newest.push(...b.letters);
    }
  } else {
    total = 0;
    for await (const b of scanDeadLetters(deps.bus, filter, scanOf(deps, "oldest"))) {
      total += b.letters.length;
      newest.push(...b.letters);
      // Keeps the newest size + 1 (at most one page and one batch are held).
      if (newest.length > size + 1) newest = newest.slice(-(size + 1));
    }
    newest.reverse();
  }
  const page = newest.slice(0, size);
  const last = page.at(-1);
  return create(ListDeadLettersResultSchema, {
    deadLetters: page.map(deadLetterMessage),
    nextPageToken: newest.length > size && last !== undefined ? encodeToken({ s: last.seq, n: total }) : "",
    totalCount: BigInt(total),
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
    sizeBytes: BigInt(dl.size),
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

/** A dead letter a selection picked. */
interface Picked {
  dl: DeadLetter;
  id: string;
  /** Selected by id (so reported as not found if it vanishes meanwhile). */
  listed: boolean;
}

/**
 * Picks the letters of a selection batch by batch: those with a listed id, plus those matching the
 * subject filter and time range. Remembers which listed ids it met (at most the request's ids).
 */
function selector(sel: DeadLetterSelection) {
  const ids = new Set(sel.messageIds);
  const found = new Set<string>();
  const byFilter = sel.subjectFilter === "" ? undefined : { subject: sel.subjectFilter, ...rangeOf(sel.failedIn) };
  return {
    /** The batch's picked letters, oldest first. */
    pick(letters: readonly DeadLetter[]): Picked[] {
      const picked: Picked[] = [];
      for (const dl of letters) {
        const id = deadLetterId(dl);
        const listed = ids.has(id);
        if (listed) found.add(id);
        if (listed || (byFilter !== undefined && matchesDeadLetter(dl, byFilter))) picked.push({ dl, id, listed });
      }
      return picked;
    },
    /** True when nothing more can be picked: no filter, and every listed id met. */
    get complete(): boolean {
      return byFilter === undefined && found.size === ids.size;
    },
    /** True when listed ids remain unmet. */
    get searching(): boolean {
      return found.size < ids.size;
    },
    /** Listed ids never met, in request order. */
    notFound(): string[] {
      return sel.messageIds.filter((id) => !found.has(id));
    },
  };
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

/**
 * Replays the selection oldest first, scanning the DLQ's headers one batch at a time and replaying
 * each picked letter on its own (its payload read then, so one at a time), at most `max_messages`.
 * Past the limit the scan goes on only while listed ids are still unmet, to tell them apart from
 * ids that name no dead letter.
 */
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
    const selection = selector(sel);
    const replayed: ReplayedMessage[] = [];
    const vanished: string[] = [];
    let truncated = false;
    let scanned = 0;
    for await (const batch of scanDeadLetters(deps.bus, {}, scanOf(deps, "oldest"))) {
      scanned += batch.scanned;
      for (const p of selection.pick(batch.letters)) {
        if (replayed.length >= max) {
          truncated = true;
          continue;
        }
        try {
          const r = await replayDeadLetter(deps.bus, p.dl.seq, {
            msgId: replayMessageId(requestId, p.dl.seq),
            ...(target === "" ? {} : { subject: target }),
          });
          replayed.push(
            create(ReplayedMessageSchema, { messageId: p.id, subject: r.subject, streamSequence: BigInt(r.seq) }),
          );
        } catch (err) {
          // Gone since its headers were read (expired, or removed outside this skill).
          if (!(err instanceof DeadLetterNotFoundError)) throw err;
          if (p.listed) vanished.push(p.id);
        }
      }
      deps.log.debug("replaying dead letters", { requestId, scanned, replayed: replayed.length });
      if (selection.complete || (truncated && !selection.searching)) break;
    }
    const done = new Set(replayed.map((r) => r.messageId));
    if (replayed.length > 0) {
      deps.log.info("replayed dead letters", { requestId, count: replayed.length, scanned, truncated });
    }
    return create(ReplayDeadLettersResultSchema, {
      replayed,
      notFoundMessageIds: [...new Set([...selection.notFound(), ...vanished])].filter((id) => !done.has(id)),
      truncated,
    });
  });
}

/** Purges the selection, scanning the DLQ's headers one batch at a time and deleting each picked letter. */
async function purge(deps: ManageRetriesDeps, a: PurgeDeadLettersAction): Promise<PurgeDeadLettersResult> {
  const sel = checkSelection(a.selection, "purge.selection");
  return transaction(deps.db, async (em) => {
    await lockDeadLetters(em, deps);
    const selection = selector(sel);
    let purged = 0;
    let scanned = 0;
    const done = new Set<string>();
    const vanished: string[] = [];
    for await (const batch of scanDeadLetters(deps.bus, {}, scanOf(deps, "oldest"))) {
      scanned += batch.scanned;
      for (const p of selection.pick(batch.letters)) {
        if (await purgeDeadLetter(deps.bus, p.dl.seq)) {
          purged++;
          done.add(p.id);
        } else if (p.listed) vanished.push(p.id);
      }
      deps.log.debug("purging dead letters", { scanned, purged });
      if (selection.complete) break;
    }
    if (purged > 0) deps.log.info("purged dead letters", { count: purged, scanned });
    return create(PurgeDeadLettersResultSchema, {
      purged: BigInt(purged),
      notFoundMessageIds: [...new Set([...selection.notFound(), ...vanished])].filter((id) => !done.has(id)),
    });
  });
}
