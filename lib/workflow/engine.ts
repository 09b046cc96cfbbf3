/**
 * The durable workflow engine (technical server).
 *
 * State lives in PostgreSQL (`workflow_run`, `workflow_step`); every transition commits in one
 * transaction together with the work it causes (tasks on the engine's prioritised queue
 * `<prefix>.tasks.workflow.<level>`) and the events announcing it (`workflow.run_changed`,
 * `workflow.approval_requested`), through the outbox. A worker (any technical instance; they share
 * the durable consumers) executes a task by calling the step's skill with an idempotency key fixed
 * per step, so an agent applies a step once however often the call is repeated; it commits the
 * step's output before the next steps are queued. Timers (retry backoff, approval escalation,
 * event timeouts) are rows with a due time, claimed with SKIP LOCKED. A crashed instance's tasks are
 * redelivered by JetStream and its unpublished outbox rows are published by the next relay, so a
 * run resumes from its last committed step.
 */
import { createHash } from "node:crypto";
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  fromBinary,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { type Any, AnySchema, anyPack, anyUnpack, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createValidator } from "@bufbuild/protovalidate";
import { Code, ConnectError } from "@connectrpc/connect";
import { type InferEntity, LockMode } from "@mikro-orm/core";
import { context, propagation, ROOT_CONTEXT, SpanStatusCode, trace } from "@opentelemetry/api";
import { Priority } from "../../gen/mesh/common/v1/types_pb.ts";
import {
  type Approval,
  ApprovalRequestedSchema,
  ApprovalSchema,
  type Run,
  RunChangedSchema,
  RunSchema,
  RunState,
  RunStateSchema,
  type Step,
  StepKind,
  StepSchema,
  StepState,
  StepStateSchema,
  TaskAction,
  type WorkflowTask,
  WorkflowTaskSchema,
} from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { type Bus, decodeEvent, defineEvent, PermanentError, type Running } from "../bus/index.ts";
import { enqueue, enqueueEvent } from "../bus/outbox.ts";
import { levelOf, startPriorityWorker, taskSubject } from "../bus/priority.ts";
import type { Database, EntityManager } from "../db/index.ts";
import { transaction } from "../db/unit-of-work.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { IDEMPOTENCY_HEADER } from "../server/idempotency.ts";
import type { MeshClient } from "../transport/client.ts";
import type { StepContext, StepDefinition, WorkflowDefinition } from "./define.ts";
import { type ApprovalState, WorkflowRun, WorkflowStep } from "./entities.ts";
import { stateName, terminalRunStates } from "./states.ts";

type RunRow = InferEntity<typeof WorkflowRun>;
type StepRow = InferEntity<typeof WorkflowStep>;

/** Run changes, for watchers and anyone else. */
export const RunChanged = defineEvent("workflow", "run_changed", RunChangedSchema);
/** An approval gate started waiting or escalated. */
export const ApprovalRequested = defineEvent("workflow", "approval_requested", ApprovalRequestedSchema);

const ENGINE = "workflow";
const busyStates = new Set<StepState>([StepState.QUEUED, StepState.RUNNING, StepState.RETRY_WAIT]);
const unfinishedStates = new Set<StepState>([
  StepState.PENDING,
  StepState.QUEUED,
  StepState.RETRY_WAIT,
  StepState.WAITING_APPROVAL,
  StepState.WAITING_EVENT,
]);
const retriable = new Set<RunState>([RunState.ROLLED_BACK, RunState.FAILED, RunState.CANCELLED]);
/** Codes worth another attempt: the call may succeed later. */
const retryable = new Set<Code>([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  Code.Canceled,
]);

/** Options of {@link createEngine}. */
export interface EngineOptions {
  /** The technical database. */
  db: Database;
  bus: Bus;
  /** Calls skills on any agent. */
  client: MeshClient;
  /** Workflow definitions. */
  workflows: readonly WorkflowDefinition[];
  log: Logger;
  /** Timer check interval (default 250 ms). */
  tickMs?: number;
  /** Ack wait of workflow tasks (default 15 s): how soon a crashed instance's task is redelivered. */
  ackWaitMs?: number;
  /** Tasks executed at once per instance (default 8). */
  concurrency?: number;
  now?: () => Date;
}

/** The engine. */
export interface Engine {
  readonly definitions: ReadonlyMap<string, WorkflowDefinition>;
  startRun(req: {
    requestId: string;
    workflow: string;
    input: Any | undefined;
    priority: Priority;
    labels: Record<string, string>;
  }): Promise<Run>;
  getRun(runId: string): Promise<Run>;
  listRuns(q: { workflow: string; states: RunState[]; pageSize: number; pageToken: string; label: string }): Promise<{
    runs: Run[];
    nextPageToken: string;
  }>;
  decide(req: { runId: string; step: string; approver: string; comment: string; approve: boolean }): Promise<Run>;
  cancel(runId: string, reason: string): Promise<Run>;
  retry(runId: string): Promise<Run>;
  /** Starts the worker, the timers and the event waiter. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

function hashRequest(parts: unknown): string {
  return createHash("sha256")
    .update(
      JSON.stringify(parts, (_k, v) =>
        typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v,
      ),
    )
    .digest("hex");
}

/** A UUID derived from `name` (version 5 layout over SHA-256), stable across attempts. */
export function stableUuid(name: string): string {
  const h = createHash("sha256").update(name).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** Creates the engine for `opts.workflows`. */
export function createEngine(opts: EngineOptions): Engine {
  const { db, bus, client, log } = opts;
  const now = opts.now ?? (() => new Date());
  const tickMs = opts.tickMs ?? 250;
  const definitions = new Map(opts.workflows.map((w) => [w.name, w]));
  const validator = createValidator();
  let worker: Running | undefined;
  let waiter: Running | undefined;
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  let stopped = false;

  const definition = (name: string): WorkflowDefinition => {
    const d = definitions.get(name);
    if (d === undefined) throw new PermanentError(`workflow ${name} is not defined on this server`);
    return d;
  };
  const stepDef = (def: WorkflowDefinition, name: string): StepDefinition => {
    const s = def.steps.find((x) => x.name === name);
    if (s === undefined) throw new PermanentError(`workflow ${def.name} has no step ${name}`);
    return s;
  };
  const runContext = (run: RunRow) => propagation.extract(ROOT_CONTEXT, { traceparent: run.traceparent });

  const contextFor = (def: WorkflowDefinition, run: RunRow, steps: StepRow[]): StepContext<unknown> => {
    const input = anyUnpack(fromBinary(AnySchema, new Uint8Array(run.input)), def.input);
    return {
      input,
      runId: run.id,
      runStartedAt: run.createdAt,
      output(step) {
        const row = steps.find((s) => s.name === step.name);
        if (row?.output == null) throw new Error(`step ${step.name} has no output yet`);
        const any = fromBinary(AnySchema, new Uint8Array(row.output));
        const out = anyUnpack(any, (step as { method: DescMethodUnary }).method.output);
        if (out === undefined) throw new Error(`step ${step.name} output has an unexpected type ${any.typeUrl}`);
        return out as never;
      },
    };
  };

  // ---- views ------------------------------------------------------------------------------

  const ts = (d: Date | null | undefined) => (d ? timestampFromDate(d) : undefined);
  const stepView = (def: WorkflowDefinition | undefined, s: StepRow): Step => {
    const sd = def?.steps.find((x) => x.name === s.name);
    const approval = s.approval as ApprovalState | null | undefined;
    return create(StepSchema, {
      name: s.name,
      kind: s.kind,
      state: s.state,
      dependsOn: [...(sd?.after ?? [])],
      skillId: sd?.kind === "skill" ? skillIdOf(sd.method) : "",
      attempt: s.attempt,
      maxAttempts: s.maxAttempts,
      output: s.output ? fromBinary(AnySchema, new Uint8Array(s.output)) : undefined,
      error: s.error,
      startedAt: ts(s.startedAt),
      finishedAt: ts(s.finishedAt),
      dueAt: ts(s.dueAt),
      approval: approval
        ? create(ApprovalSchema, {
            approvers: approval.approvers,
            escalationLevel: approval.escalationLevel,
            decidedBy: approval.decidedBy ?? "",
            comment: approval.comment ?? "",
            decidedAt: approval.decidedAt ? timestampFromDate(new Date(approval.decidedAt)) : undefined,
          })
        : undefined,
      awaitedEvent: s.awaitedEvent ?? "",
      compensable: sd?.kind === "skill" && sd.compensate !== undefined,
    });
  };
  const runView = (run: RunRow, steps: StepRow[] | undefined): Run => {
    const def = definitions.get(run.workflow);
    return create(RunSchema, {
      id: run.id,
      workflow: run.workflow,
      state: run.state,
      priority: run.priority,
      input: fromBinary(AnySchema, new Uint8Array(run.input)),
      steps: (steps ?? []).map((s) => {
        const v = stepView(def, s);
        const sd = def?.steps.find((x) => x.name === s.name);
        if (sd?.kind === "skill") v.idempotencyKey = agentKey(sd.method, stepKey(run, s.name));
        return v;
      }),
      error: run.error,
      createdAt: ts(run.createdAt),
      updatedAt: ts(run.updatedAt),
      finishedAt: ts(run.finishedAt),
      traceId: run.traceparent.split("-")[1] ?? "",
      labels: run.labels,
      requestId: run.requestId,
      retries: run.generation,
    });
  };
  const skillIdOf = (m: DescMethodUnary): string => `${m.parent.typeName}/${m.name}`;
  const hasRequestId = (m: DescMethodUnary): boolean => m.input.fields.some((f) => f.localName === "requestId");
  /** The key the agent deduplicates a step on: the request_id derived from the step key, or the key itself. */
  const agentKey = (m: DescMethodUnary, key: string): string => (hasRequestId(m) ? stableUuid(key) : key);
  const stepKey = (run: RunRow, step: string): string => `wf:${run.id}:${step}:${run.generation}`;

  // ---- transitions (all inside a transaction holding the run's row lock) --------------------

  const loadLocked = async (em: EntityManager, runId: string): Promise<{ run: RunRow; steps: StepRow[] }> => {
    const run = await em.findOne(WorkflowRun, { id: runId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
    if (run === null) throw new NotFoundError(`run ${runId} not found`);
    const steps = await em.find(WorkflowStep, { runId }, { orderBy: { position: "asc" } });
    return { run, steps };
  };

  /** Announces a change of the run or one of its steps (committed with the transaction of `em`). */
  const announce = (em: EntityManager, run: RunRow, step?: { name: string; state: StepState }): void => {
    enqueueEvent(
      db,
      em,
      bus.prefix,
      RunChanged,
      create(RunChangedSchema, {
        runId: run.id,
        workflow: run.workflow,
        state: run.state,
        step: step?.name ?? "",
        stepState: step?.state ?? StepState.UNSPECIFIED,
        at: timestampFromDate(now()),
      }),
      { parent: runContext(run) },
    );
  };

  const emitChange = (em: EntityManager, run: RunRow, step?: StepRow): void => {
    run.updatedAt = now();
    announce(em, run, step);
  };

  const queueTask = (em: EntityManager, run: RunRow, step: StepRow, action: TaskAction): void => {
    const task = create(WorkflowTaskSchema, {
      runId: run.id,
      step: step.name,
      action,
      attempt: step.attempt,
      generation: run.generation,
    });
    enqueue(db, em, {
      subject: taskSubject(bus.prefix, ENGINE, levelOf(run.priority)),
      data: toBinary(WorkflowTaskSchema, task),
      msgId: `wf.${run.id}.${step.name}.${run.generation}.${step.attempt}.${action}`,
      parent: runContext(run),
    });
  };

  const setRunState = (em: EntityManager, run: RunRow, state: RunState): void => {
    if (run.state === state) return;
    run.state = state;
    if (terminalRunStates.has(state)) run.finishedAt = now();
    emitChange(em, run);
  };

  /** Starts every step whose dependencies succeeded; settles the run's state. */
  const advance = (em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[]): void => {
    if (run.state === RunState.ROLLING_BACK || terminalRunStates.has(run.state)) return;
    const byName = new Map(steps.map((s) => [s.name, s]));
    const ctx = contextFor(def, run, steps);
    for (const s of steps) {
      if (s.state !== StepState.PENDING) continue;
      const sd = stepDef(def, s.name);
      if (!sd.after.every((d) => byName.get(d)?.state === StepState.SUCCEEDED)) continue;
      if (sd.kind === "skill") {
        s.state = StepState.QUEUED;
        s.attempt = 1;
        s.error = "";
        queueTask(em, run, s, TaskAction.EXECUTE);
      } else if (sd.kind === "approval") {
        const approvers = (sd.approvers as (c: StepContext<unknown>) => string[])(ctx);
        s.state = StepState.WAITING_APPROVAL;
        s.approval = { approvers, escalationLevel: 0 };
        s.dueAt = new Date(now().getTime() + sd.timeoutMs);
        requestApproval(em, run, s);
      } else {
        s.state = StepState.WAITING_EVENT;
        s.awaitedEvent = bus.eventSubject(sd.event);
        s.dueAt = new Date(now().getTime() + sd.timeoutMs);
      }
      emitChange(em, run, s);
    }
    settle(em, run, steps);
  };

  const settle = (em: EntityManager, run: RunRow, steps: StepRow[]): void => {
    const done = steps.every((s) => s.state === StepState.SUCCEEDED);
    const busy = steps.some((s) => busyStates.has(s.state));
    setRunState(em, run, done ? RunState.SUCCEEDED : busy ? RunState.RUNNING : RunState.WAITING);
  };

  const requestApproval = (em: EntityManager, run: RunRow, s: StepRow): void => {
    const a = s.approval as ApprovalState;
    enqueueEvent(
      db,
      em,
      bus.prefix,
      ApprovalRequested,
      create(ApprovalRequestedSchema, {
        runId: run.id,
        step: s.name,
        approvers: a.approvers,
        escalationLevel: a.escalationLevel,
        dueAt: ts(s.dueAt),
      }),
      { parent: runContext(run) },
    );
  };

  /** Stops forward progress and undoes completed steps, newest first. */
  const beginRollback = (em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[], why: string) => {
    if (run.state === RunState.ROLLING_BACK || terminalRunStates.has(run.state)) return;
    run.error = why;
    setRunState(em, run, RunState.ROLLING_BACK);
    for (const s of steps) {
      if (unfinishedStates.has(s.state)) {
        s.state = StepState.SKIPPED;
        s.dueAt = null;
        emitChange(em, run, s);
      }
    }
    continueRollback(em, def, run, steps);
  };

  const continueRollback = (em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[]): void => {
    if (run.state !== RunState.ROLLING_BACK) return;
    // A step still executing finishes first; its completion continues the rollback.
    if (steps.some((s) => s.state === StepState.RUNNING || s.state === StepState.COMPENSATING)) return;
    const next = steps
      .filter((s) => {
        const sd = def.steps.find((x) => x.name === s.name);
        return s.state === StepState.SUCCEEDED && sd?.kind === "skill" && sd.compensate !== undefined;
      })
      .sort((a, b) => (b.completedSeq ?? 0) - (a.completedSeq ?? 0))[0];
    if (next) {
      next.state = StepState.COMPENSATING;
      next.attempt = 1;
      queueTask(em, run, next, TaskAction.COMPENSATE);
      emitChange(em, run, next);
      return;
    }
    setRunState(em, run, run.cancelled ? RunState.CANCELLED : RunState.ROLLED_BACK);
  };

  const fail = (em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[], s: StepRow, why: string) => {
    s.state = StepState.FAILED;
    s.error = why;
    s.finishedAt = now();
    s.dueAt = null;
    emitChange(em, run, s);
    beginRollback(em, def, run, steps, `step ${s.name} failed: ${why}`);
  };

  const succeed = (
    em: EntityManager,
    def: WorkflowDefinition,
    run: RunRow,
    steps: StepRow[],
    s: StepRow,
    output: Any,
  ) => {
    s.state = StepState.SUCCEEDED;
    s.output = Buffer.from(toBinary(AnySchema, output));
    s.error = "";
    s.finishedAt = now();
    s.dueAt = null;
    s.completedSeq = Math.max(0, ...steps.map((x) => x.completedSeq ?? 0)) + 1;
    emitChange(em, run, s);
    if (run.state === RunState.ROLLING_BACK) continueRollback(em, def, run, steps);
    else advance(em, def, run, steps);
  };

  // ---- task execution -----------------------------------------------------------------------

  const callSkill = async (
    method: DescMethodUnary,
    request: unknown,
    key: string,
    timeoutMs: number,
  ): Promise<MessageShape<DescMessage>> => {
    const c = client.agent(method.parent) as unknown as Record<
      string,
      (r: unknown, o: { timeoutMs: number; headers: Record<string, string> }) => Promise<MessageShape<DescMessage>>
    >;
    const fn = c[method.localName];
    if (fn === undefined) throw new PermanentError(`no client method ${method.localName}`);
    return fn(request, { timeoutMs, headers: { [IDEMPOTENCY_HEADER]: key } });
  };

  /** Builds a request, filling `request_id` from the step key when the message has one. */
  const buildRequest = (method: DescMethodUnary, init: unknown, key: string): MessageShape<DescMessage> => {
    const msg = create(method.input, init as never) as MessageShape<DescMessage> & { requestId?: string };
    if (hasRequestId(method) && !msg.requestId) msg.requestId = stableUuid(key);
    return msg;
  };

  const execute = async (task: WorkflowTask, deliveryCount: number, maxDeliver: number): Promise<void> => {
    // 1. Claim: the step must still be waiting for exactly this attempt. Only the step's row is
    // updated (conditionally), so sibling steps of a parallel branch start without waiting for
    // each other; the run's state is RUNNING already while a step is queued.
    const claimed = await db.transaction(async (em) => {
      const run = await em.findOne(WorkflowRun, { id: task.runId });
      if (run === null || run.generation !== task.generation) return undefined;
      const steps = await em.find(WorkflowStep, { runId: run.id }, { orderBy: { position: "asc" } });
      const s = steps.find((x) => x.name === task.step);
      if (s === undefined || s.attempt !== task.attempt) return undefined;
      const want: StepState[] =
        task.action === TaskAction.EXECUTE ? [StepState.QUEUED, StepState.RUNNING] : [StepState.COMPENSATING];
      if (!want.includes(s.state)) return undefined;
      const def = definition(run.workflow);
      if (task.action === TaskAction.EXECUTE && s.state === StepState.QUEUED) {
        const claimedRows = await em.nativeUpdate(
          WorkflowStep,
          { id: s.id, state: StepState.QUEUED, attempt: task.attempt },
          { state: StepState.RUNNING, startedAt: now(), version: s.version + 1 },
        );
        if (claimedRows === 0) return undefined;
        announce(em, run, { name: s.name, state: StepState.RUNNING });
      }
      return { run, steps, def, ctx: contextFor(def, run, steps), step: s };
    });
    if (claimed === undefined) return;
    const { run, def, ctx, step } = claimed;
    const sd = stepDef(def, step.name);
    if (sd.kind !== "skill") return;
    const compensating = task.action === TaskAction.COMPENSATE;
    const compensation = sd.compensate;
    const method = compensating ? compensation?.method : sd.method;
    if (method === undefined) return;
    const key = compensating ? `${stepKey(run, step.name)}:compensate` : stepKey(run, step.name);

    // 2. Call the agent, inside the run's trace.
    const tracer = trace.getTracer("marketing-mesh/workflow");
    const span = tracer.startSpan(`workflow.${compensating ? "compensate" : "step"} ${step.name}`, {
      attributes: {
        "mesh.workflow.name": run.workflow,
        "mesh.workflow.run_id": run.id,
        "mesh.workflow.step": step.name,
        "mesh.workflow.attempt": task.attempt,
        "mesh.skill.procedure": skillIdOf(method),
      },
    });
    let outcome: { ok: true; output: Any } | { ok: false; code: Code; message: string };
    try {
      const init =
        compensating && compensation
          ? (compensation.input as (c: unknown, o: unknown) => unknown)(ctx, ctx.output(sd as never))
          : (sd.input as (c: unknown) => unknown)(ctx);
      const request = buildRequest(method, init, key);
      const res = await context.with(trace.setSpan(context.active(), span), () =>
        callSkill(method, request, key, compensating ? (sd.compensate?.timeoutMs ?? 30_000) : sd.timeoutMs),
      );
      outcome = { ok: true, output: anyPack(method.output, res) };
    } catch (err) {
      const ce = ConnectError.from(err);
      outcome = {
        ok: false,
        code: err instanceof PermanentError ? Code.FailedPrecondition : ce.code,
        message: ce.message,
      };
      span.setStatus({ code: SpanStatusCode.ERROR, message: ce.message });
    } finally {
      span.end();
    }

    // 3. Commit the result and queue what follows.
    const result = outcome;
    await db.transaction(async (em) => {
      const { run: r, steps } = await loadLocked(em, task.runId);
      const s = steps.find((x) => x.name === task.step);
      if (s === undefined || s.attempt !== task.attempt || r.generation !== task.generation) return;
      if (compensating) {
        if (s.state !== StepState.COMPENSATING) return;
        if (result.ok) {
          s.state = StepState.COMPENSATED;
          s.finishedAt = now();
          emitChange(em, r, s);
          continueRollback(em, def, r, steps);
          return;
        }
        if (retryable.has(result.code) && deliveryCount < maxDeliver) {
          throw new Error(`compensation of ${s.name} failed, will retry: ${result.message}`);
        }
        s.error = `compensation failed: ${result.message}`;
        r.error = `${r.error}; compensation of ${s.name} failed: ${result.message}`;
        emitChange(em, r, s);
        setRunState(em, r, RunState.FAILED);
        return;
      }
      if (s.state !== StepState.RUNNING) return;
      if (result.ok) {
        succeed(em, def, r, steps, s, result.output);
        return;
      }
      const canRetry =
        retryable.has(result.code) && s.attempt < sd.retry.maxAttempts && r.state !== RunState.ROLLING_BACK;
      if (canRetry) {
        const base = Math.min(sd.retry.maxBackoffMs, sd.retry.initialBackoffMs * 2 ** (s.attempt - 1));
        s.state = StepState.RETRY_WAIT;
        s.error = result.message;
        s.dueAt = new Date(now().getTime() + Math.round(base / 2 + Math.random() * (base / 2)));
        emitChange(em, r, s);
        settle(em, r, steps);
        return;
      }
      if (r.state === RunState.ROLLING_BACK) {
        // The run is already rolling back (cancelled); this step's failure changes nothing more.
        s.state = StepState.FAILED;
        s.error = result.message;
        emitChange(em, r, s);
        continueRollback(em, def, r, steps);
        return;
      }
      fail(em, def, r, steps, s, `${Code[result.code]}: ${result.message}`);
    });
  };

  // ---- timers -------------------------------------------------------------------------------

  const tick = async (): Promise<void> => {
    const due = await db.fork().find(
      WorkflowStep,
      {
        dueAt: { $lte: now() },
        state: { $in: [StepState.RETRY_WAIT, StepState.WAITING_APPROVAL, StepState.WAITING_EVENT] },
      },
      { limit: 100, fields: ["id", "runId", "name"] },
    );
    for (const d of due) {
      await db
        .transaction(async (em) => {
          const { run, steps } = await loadLocked(em, d.runId);
          const s = steps.find((x) => x.name === d.name);
          if (s?.dueAt == null || s.dueAt > now()) return; // handled meanwhile
          const def = definition(run.workflow);
          const sd = stepDef(def, s.name);
          if (s.state === StepState.RETRY_WAIT) {
            s.attempt += 1;
            s.state = StepState.QUEUED;
            s.dueAt = null;
            queueTask(em, run, s, TaskAction.EXECUTE);
            emitChange(em, run, s);
            settle(em, run, steps);
          } else if (s.state === StepState.WAITING_APPROVAL && sd.kind === "approval") {
            const a = s.approval as ApprovalState;
            const next = sd.escalateTo[a.escalationLevel];
            if (next === undefined) {
              fail(em, def, run, steps, s, `approval timed out after ${a.escalationLevel} escalation(s)`);
              return;
            }
            s.approval = { approvers: [...next], escalationLevel: a.escalationLevel + 1 };
            s.dueAt = new Date(now().getTime() + sd.timeoutMs);
            requestApproval(em, run, s);
            emitChange(em, run, s);
          } else if (s.state === StepState.WAITING_EVENT) {
            fail(em, def, run, steps, s, `timed out waiting for ${s.awaitedEvent}`);
          }
        })
        .catch((err: unknown) => log.warn("workflow timer failed", { run: d.runId, step: d.name, error: String(err) }));
    }
  };

  // ---- event waits --------------------------------------------------------------------------

  const onEvent = async (subject: string, data: Uint8Array): Promise<void> => {
    const waiting = await db
      .fork()
      .find(WorkflowStep, { awaitedEvent: subject, state: StepState.WAITING_EVENT }, { fields: ["runId", "name"] });
    for (const w of waiting) {
      await db.transaction(async (em) => {
        const { run, steps } = await loadLocked(em, w.runId);
        const s = steps.find((x) => x.name === w.name);
        if (s?.state !== StepState.WAITING_EVENT) return;
        const def = definition(run.workflow);
        const sd = stepDef(def, s.name);
        if (sd.kind !== "wait") return;
        const event = decodeEvent(sd.event, {
          subject,
          data,
          headers: {},
          msgId: undefined,
          deliveryCount: 1,
          streamSeq: 0,
        });
        if (!(sd.match as (c: unknown, e: unknown) => boolean)(contextFor(def, run, steps), event)) return;
        succeed(em, def, run, steps, s, anyPack(sd.event.schema, event));
      });
    }
  };

  // ---- public API ---------------------------------------------------------------------------

  const getRun = async (runId: string): Promise<Run> => {
    const em = db.fork();
    const run = await em.findOne(WorkflowRun, { id: runId });
    if (run === null) throw new NotFoundError(`run ${runId} not found`);
    const steps = await em.find(WorkflowStep, { runId }, { orderBy: { position: "asc" } });
    return runView(run, steps);
  };

  return {
    definitions,

    async startRun(req) {
      const def = definitions.get(req.workflow);
      if (def === undefined) {
        throw new NotFoundError(
          `workflow: no workflow named "${req.workflow}" (known: ${[...definitions.keys()].sort().join(", ")})`,
        );
      }
      if (req.input === undefined) throw new InvalidInputError("input", "is required");
      if (req.input.typeUrl.split("/").pop() !== def.input.typeName) {
        throw new InvalidInputError("input", `must be a ${def.input.typeName}, got ${req.input.typeUrl || "no type"}`);
      }
      let input: MessageShape<DescMessage> | undefined;
      try {
        input = anyUnpack(req.input, def.input);
      } catch (err) {
        throw new InvalidInputError("input", `cannot be decoded as ${def.input.typeName}: ${String(err)}`);
      }
      if (input === undefined) throw new InvalidInputError("input", `must be a ${def.input.typeName}`);
      const check = validator.validate(def.input, input);
      if (check.kind === "invalid") {
        const v = check.violations[0];
        throw new InvalidInputError(`input.${v?.toString().split(":")[0] ?? ""}`, v?.message ?? "is invalid");
      }
      if (check.kind === "error") throw new InvalidInputError("input", check.error.message);
      const priority = req.priority === Priority.UNSPECIFIED ? Priority.NORMAL : req.priority;
      const requestHash = hashRequest({
        w: req.workflow,
        i: toBinary(AnySchema, req.input),
        p: priority,
        l: req.labels,
      });
      return transaction(db, async (em) => {
        const existing = await em.findOne(WorkflowRun, { requestId: req.requestId });
        if (existing !== null) {
          if (existing.requestHash !== requestHash) {
            throw new ConnectError(
              "request_id was already used to start a run with different input; use a new request_id",
              Code.AlreadyExists,
            );
          }
          const steps = await em.find(WorkflowStep, { runId: existing.id }, { orderBy: { position: "asc" } });
          return runView(existing, steps);
        }
        const carrier: Record<string, string> = {};
        propagation.inject(context.active(), carrier);
        const runId = stableUuid(`run:${req.requestId}`);
        const run = em.create(WorkflowRun, {
          id: runId,
          workflow: def.name,
          requestId: req.requestId,
          requestHash,
          state: RunState.RUNNING,
          priority,
          input: Buffer.from(toBinary(AnySchema, req.input as Any)),
          labels: req.labels,
          traceparent: carrier.traceparent ?? `00-${"0".repeat(32)}-${"0".repeat(16)}-00`,
        });
        const steps = def.steps.map((sd, position) =>
          em.create(WorkflowStep, {
            id: stableUuid(`step:${runId}:${sd.name}`),
            runId,
            name: sd.name,
            position,
            kind:
              sd.kind === "skill" ? StepKind.SKILL : sd.kind === "approval" ? StepKind.APPROVAL : StepKind.WAIT_EVENT,
            state: StepState.PENDING,
            maxAttempts: sd.kind === "skill" ? sd.retry.maxAttempts : 1,
          }),
        );
        emitChange(em, run);
        advance(em, def, run, steps);
        await em.flush();
        return runView(run, steps);
      });
    },

    getRun,

    async listRuns(q) {
      const pageSize = q.pageSize === 0 ? 50 : q.pageSize;
      const where: Record<string, unknown> = {};
      if (q.workflow) where.workflow = q.workflow;
      if (q.states.length > 0) where.state = { $in: q.states };
      if (q.label) {
        const i = q.label.indexOf("=");
        if (i <= 0) throw new InvalidInputError("label", "must be key=value");
        where.labels = { [q.label.slice(0, i)]: q.label.slice(i + 1) };
      }
      if (q.pageToken) {
        let cursor: { t: string; id: string };
        try {
          cursor = JSON.parse(Buffer.from(q.pageToken, "base64url").toString("utf8")) as { t: string; id: string };
          if (typeof cursor.t !== "string" || typeof cursor.id !== "string") throw new Error("shape");
        } catch {
          throw new InvalidInputError("page_token", "is not a token from a previous page");
        }
        const t = new Date(cursor.t);
        where.$or = [{ createdAt: { $lt: t } }, { createdAt: t, id: { $lt: cursor.id } }];
      }
      const rows = await db.fork().find(WorkflowRun, where as never, {
        orderBy: [{ createdAt: "desc" }, { id: "desc" }],
        limit: pageSize + 1,
      });
      const page = rows.slice(0, pageSize);
      const last = page[page.length - 1];
      return {
        runs: page.map((r) => runView(r, undefined)),
        nextPageToken:
          rows.length > pageSize && last
            ? Buffer.from(JSON.stringify({ t: last.createdAt.toISOString(), id: last.id })).toString("base64url")
            : "",
      };
    },

    async decide(req) {
      return transaction(db, async (em) => {
        const { run, steps } = await loadLocked(em, req.runId);
        const s = steps.find((x) => x.name === req.step);
        if (s === undefined) throw new NotFoundError(`step: run ${req.runId} has no step "${req.step}"`);
        if (s.state !== StepState.WAITING_APPROVAL) {
          throw new FailedPreconditionError(
            `step "${req.step}" is not waiting for approval (it is ${stateName(StepStateSchema, s.state)})`,
          );
        }
        const a = s.approval as ApprovalState;
        if (!a.approvers.includes(req.approver)) {
          throw new ConnectError(
            `approver: "${req.approver}" may not decide step "${req.step}" (approvers now: ${a.approvers.join(", ")})`,
            Code.PermissionDenied,
          );
        }
        const def = definition(run.workflow);
        const decided: ApprovalState = {
          ...a,
          decidedBy: req.approver,
          comment: req.comment,
          decidedAt: now().toISOString(),
        };
        s.approval = decided;
        if (req.approve) {
          const output = create(ApprovalSchema, {
            approvers: a.approvers,
            escalationLevel: a.escalationLevel,
            decidedBy: req.approver,
            comment: req.comment,
            decidedAt: timestampFromDate(now()),
          });
          succeed(em, def, run, steps, s, anyPack(ApprovalSchema, output as Approval));
        } else {
          fail(em, def, run, steps, s, `rejected by ${req.approver}: ${req.comment}`);
        }
        await em.flush();
        return runView(run, steps);
      });
    },

    async cancel(runId, reason) {
      return transaction(db, async (em) => {
        const { run, steps } = await loadLocked(em, runId);
        if (terminalRunStates.has(run.state)) {
          throw new FailedPreconditionError(`run ${runId} has already ended (${stateName(RunStateSchema, run.state)})`);
        }
        if (run.state !== RunState.ROLLING_BACK) {
          run.cancelled = true;
          beginRollback(em, definition(run.workflow), run, steps, `cancelled${reason ? `: ${reason}` : ""}`);
        }
        await em.flush();
        return runView(run, steps);
      });
    },

    async retry(runId) {
      return transaction(db, async (em) => {
        const { run, steps } = await loadLocked(em, runId);
        if (!retriable.has(run.state)) {
          throw new FailedPreconditionError(
            `run ${runId} is ${stateName(RunStateSchema, run.state)}; only rolled-back, failed or cancelled runs can be retried`,
          );
        }
        const def = definition(run.workflow);
        run.generation += 1;
        run.cancelled = false;
        run.error = "";
        run.finishedAt = null;
        for (const s of steps) {
          // Compensated steps were undone, so they run again; steps that succeeded and had no
          // compensation keep their output.
          if (s.state !== StepState.SUCCEEDED) {
            s.state = StepState.PENDING;
            s.attempt = 0;
            s.output = null;
            s.error = "";
            s.dueAt = null;
            s.approval = null;
            s.completedSeq = null;
            s.startedAt = null;
            s.finishedAt = null;
          }
        }
        run.state = RunState.RUNNING;
        emitChange(em, run);
        advance(em, def, run, steps);
        await em.flush();
        return runView(run, steps);
      });
    },

    async start() {
      const maxDeliver = 10;
      worker = await startPriorityWorker(
        bus,
        { agent: ENGINE, concurrency: opts.concurrency ?? 8, ackWaitMs: opts.ackWaitMs ?? 15_000, maxDeliver },
        async (d) => {
          let task: WorkflowTask;
          try {
            task = fromBinary(WorkflowTaskSchema, d.data);
          } catch {
            throw new PermanentError("undecodable workflow task");
          }
          await execute(task, d.deliveryCount, maxDeliver);
        },
      );
      waiter = await bus.consume(
        { stream: "events", durable: "workflow_event_waits", filter: `${bus.prefix}.events.>`, deliverNew: true },
        async (d) => {
          if (d.subject.startsWith(`${bus.prefix}.events.workflow.`)) return;
          await onEvent(d.subject, d.data);
        },
      );
      timer = setInterval(() => {
        if (ticking || stopped) return;
        ticking = tick()
          .catch((err: unknown) => log.warn("workflow timers failed", { error: String(err) }))
          .finally(() => {
            ticking = undefined;
          });
      }, tickMs);
      timer.unref();
    },

    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await ticking;
      await waiter?.stop();
      await worker?.stop();
    },
  };
}
