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
 * event timeouts) are rows with a due time, each handled in a transaction holding its run's row
 * lock. A crashed instance's tasks are redelivered by JetStream and its unpublished outbox rows are
 * published by the next relay, so a run resumes from its last committed step.
 *
 * The parts share their dependencies through the small {@link EngineCore} of core.ts, passed to
 * each part's factory:
 * - views.ts: definition lookup, step keys, step contexts and the `Run`/`Step` messages (pure functions);
 * - transitions.ts: the state machine, inside a transaction holding the run's row lock;
 * - executor.ts: the worker executing tasks (skill calls and compensations);
 * - scheduler.ts: timers and event waits;
 * - this file: composition and the public API (start, read, decide, cancel, retry).
 */
import { createHash } from "node:crypto";
import { create, type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, anyPack, anyUnpack, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, propagation } from "@opentelemetry/api";
import { Priority } from "../../gen/mesh/common/v1/types_pb.ts";
import {
  type Approval,
  ApprovalSchema,
  type Run,
  RunState,
  RunStateSchema,
  StepKind,
  StepState,
  StepStateSchema,
} from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import type { Bus, Running } from "../bus/index.ts";
import type { Database } from "../db/index.ts";
import { transaction } from "../db/index.ts";
import { FailedPreconditionError, findViolations, InvalidInputError, NotFoundError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { MeshClient } from "../transport/index.ts";
import type { EngineCore } from "./core.ts";
import type { WorkflowDefinition } from "./define.ts";
import { type ApprovalState, WorkflowRun, WorkflowStep } from "./entities.ts";
import { createExecutor } from "./executor.ts";
import { createScheduler } from "./scheduler.ts";
import { stateName, terminalRunStates } from "./states.ts";
import { createTransitions } from "./transitions.ts";
import { definition, runView, stableUuid } from "./views.ts";

/** The engine's events, defined next to the transitions that announce them. */
export { ApprovalRequested, RunChanged } from "./transitions.ts";
/** Derives stable ids and request ids from names (also used outside the engine). */
export { stableUuid } from "./views.ts";

/** Run states RetryRun accepts. */
const retriable = new Set<RunState>([RunState.ROLLED_BACK, RunState.FAILED, RunState.CANCELLED]);

/** Options of {@link createEngine}. */
export interface EngineOptions {
  /** The technical database. */
  db: Database;
  /** Carries tasks and events (the outbox relays them). */
  bus: Bus;
  /** Calls skills on any agent. */
  client: MeshClient;
  /** Workflow definitions. */
  workflows: readonly WorkflowDefinition[];
  /** Where timer and task failures are logged. */
  log: Logger;
  /** Timer check interval (default 250 ms). */
  tickMs?: number;
  /** Ack wait of workflow tasks (default 15 s): how soon a crashed instance's task is redelivered. */
  ackWaitMs?: number;
  /** Tasks executed at once per instance (default 8). */
  concurrency?: number;
  /** The clock (default the system clock). */
  now?: () => Date;
}

/** The engine. */
export interface Engine {
  /** The workflows this engine runs, by name. */
  readonly definitions: ReadonlyMap<string, WorkflowDefinition>;
  /** Starts a run, or returns the run an earlier call with the same `requestId` and request started. */
  startRun(req: {
    requestId: string;
    workflow: string;
    input: Any | undefined;
    priority: Priority;
    labels: Record<string, string>;
  }): Promise<Run>;
  /** The run with its steps. */
  getRun(runId: string): Promise<Run>;
  /** Runs, newest first, without their steps; filtered by workflow, states and one `key=value` label. */
  listRuns(q: { workflow: string; states: RunState[]; pageSize: number; pageToken: string; label: string }): Promise<{
    runs: Run[];
    nextPageToken: string;
  }>;
  /** Approves or rejects an approval step on behalf of one of its current approvers. */
  decide(req: { runId: string; step: string; approver: string; comment: string; approve: boolean }): Promise<Run>;
  /** Cancels a run that has not ended: it rolls back and ends CANCELLED. */
  cancel(runId: string, reason: string): Promise<Run>;
  /** Runs a rolled-back, failed or cancelled run again (new generation); SUCCEEDED steps keep their output. */
  retry(runId: string): Promise<Run>;
  /** Starts the worker, the timers and the event waiter. */
  start(): Promise<void>;
  /** Stops the timers, then the event waiter and the worker. */
  stop(): Promise<void>;
}

/** SHA-256 of a StartRun request, so a replay of its request_id with other input is refused. */
function hashRequest(parts: unknown): string {
  return createHash("sha256")
    .update(
      JSON.stringify(parts, (_k, v) =>
        typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v,
      ),
    )
    .digest("hex");
}

/** Creates the engine for `opts.workflows`. */
export function createEngine(opts: EngineOptions): Engine {
  const { db, bus, log } = opts;
  const now = opts.now ?? (() => new Date());
  const tickMs = opts.tickMs ?? 250;
  const definitions = new Map(opts.workflows.map((w) => [w.name, w]));
  const core: EngineCore = { db, bus, client: opts.client, log, now, definitions };
  const transitions = createTransitions(core);
  const executor = createExecutor(core, transitions);
  const scheduler = createScheduler(core, transitions);
  const { loadLocked, emitChange, advance, beginRollback, fail, succeed } = transitions;
  let worker: Running | undefined;
  let waiter: Running | undefined;

  // ---- public API ---------------------------------------------------------------------------

  const getRun = async (runId: string): Promise<Run> => {
    const em = db.fork();
    const run = await em.findOne(WorkflowRun, { id: runId });
    if (run === null) throw new NotFoundError(`run ${runId} not found`);
    const steps = await em.find(WorkflowStep, { runId }, { orderBy: { position: "asc" } });
    return runView(definitions, run, steps);
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
      let found: ReturnType<typeof findViolations>;
      try {
        found = findViolations(def.input, input);
      } catch (err) {
        throw new InvalidInputError("input", String((err as Error).message ?? err).slice(0, 500));
      }
      if (found !== undefined) {
        throw new InvalidInputError(`input.${found.fields[0]}`, found.messages[0] ?? "is invalid");
      }
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
          return runView(definitions, existing, steps);
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
        return runView(definitions, run, steps);
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
        runs: page.map((r) => runView(definitions, r, undefined)),
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
        const def = definition(definitions, run.workflow);
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
        return runView(definitions, run, steps);
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
          beginRollback(
            em,
            definition(definitions, run.workflow),
            run,
            steps,
            `cancelled${reason ? `: ${reason}` : ""}`,
          );
        }
        await em.flush();
        return runView(definitions, run, steps);
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
        const def = definition(definitions, run.workflow);
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
        return runView(definitions, run, steps);
      });
    },

    async start() {
      worker = await executor.startWorker({ concurrency: opts.concurrency ?? 8, ackWaitMs: opts.ackWaitMs ?? 15_000 });
      waiter = await scheduler.startEventWaits();
      scheduler.startTimers(tickMs);
    },

    async stop() {
      await scheduler.stopTimers();
      await waiter?.stop();
      await worker?.stop();
    },
  };
}
