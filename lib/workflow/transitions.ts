/**
 * The state machine of runs and steps. Every function here works inside a transaction (its
 * EntityManager `em`) holding the run's row lock: it changes the loaded rows, and queues the tasks
 * and announces the events the change causes through the outbox, so they commit with it.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { LockMode } from "@mikro-orm/core";
import { propagation, ROOT_CONTEXT } from "@opentelemetry/api";
import {
  ApprovalRequestedSchema,
  RunChangedSchema,
  RunState,
  StepState,
  TaskAction,
  WorkflowTaskSchema,
} from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { defineEvent, enqueue, enqueueEvent, levelOf, taskSubject } from "../bus/index.ts";
import type { EntityManager } from "../db/index.ts";
import { NotFoundError } from "../errors/index.ts";
import { ENGINE, type EngineCore, type RunRow, type StepRow } from "./core.ts";
import type { StepContext, WorkflowDefinition } from "./define.ts";
import { type ApprovalState, WorkflowRun, WorkflowStep } from "./entities.ts";
import { terminalRunStates } from "./states.ts";
import { contextFor, stepDef, ts } from "./views.ts";

/** Run changes, for watchers and anyone else. */
export const RunChanged = defineEvent("workflow", "run_changed", RunChangedSchema);
/** An approval gate started waiting or escalated. */
export const ApprovalRequested = defineEvent("workflow", "approval_requested", ApprovalRequestedSchema);

const busyStates = new Set<StepState>([StepState.QUEUED, StepState.RUNNING, StepState.RETRY_WAIT]);
const unfinishedStates = new Set<StepState>([
  StepState.PENDING,
  StepState.QUEUED,
  StepState.RETRY_WAIT,
  StepState.WAITING_APPROVAL,
  StepState.WAITING_EVENT,
]);

/** The trace context of the span that started `run`: everything done for the run continues it. */
const runContext = (run: RunRow) => propagation.extract(ROOT_CONTEXT, { traceparent: run.traceparent });

/** The transitions of runs and steps; each takes the EntityManager of the transaction it is part of. */
export interface Transitions {
  /** Loads run `runId` with its row locked (FOR UPDATE), and its steps in definition order. */
  loadLocked(em: EntityManager, runId: string): Promise<{ run: RunRow; steps: StepRow[] }>;
  /** Announces a change of the run or one of its steps (committed with the transaction of `em`). */
  announce(em: EntityManager, run: RunRow, step?: { name: string; state: StepState }): void;
  /** Touches the run's `updatedAt` and announces the change of the run or of `step`. */
  emitChange(em: EntityManager, run: RunRow, step?: StepRow): void;
  /** Queues `action` on `step` for a worker, deduplicated per run, step, generation, attempt and action. */
  queueTask(em: EntityManager, run: RunRow, step: StepRow, action: TaskAction): void;
  /** Moves the run to `state` (stamping `finishedAt` when terminal) and announces it; no-op if already there. */
  setRunState(em: EntityManager, run: RunRow, state: RunState): void;
  /** Starts every step whose dependencies succeeded; settles the run's state. */
  advance(em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[]): void;
  /** Sets the run's state from its steps': SUCCEEDED when all succeeded, RUNNING while any is busy, else WAITING. */
  settle(em: EntityManager, run: RunRow, steps: StepRow[]): void;
  /** Announces that approval step `s` waits for its current approvers. */
  requestApproval(em: EntityManager, run: RunRow, s: StepRow): void;
  /** Stops forward progress and undoes completed steps, newest first. */
  beginRollback(em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[], why: string): void;
  /** Queues the compensation of the newest compensable succeeded step, or ends the rollback when none is left. */
  continueRollback(em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[]): void;
  /** Marks step `s` failed for `why` and rolls the run back. */
  fail(em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[], s: StepRow, why: string): void;
  /** Records `output` of step `s` and moves on: the next steps, or the rollback's next compensation. */
  succeed(em: EntityManager, def: WorkflowDefinition, run: RunRow, steps: StepRow[], s: StepRow, output: Any): void;
}

/** Creates the transitions over `core`. */
export function createTransitions(core: EngineCore): Transitions {
  const { db, bus, now } = core;

  const loadLocked = async (em: EntityManager, runId: string): Promise<{ run: RunRow; steps: StepRow[] }> => {
    const run = await em.findOne(WorkflowRun, { id: runId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
    if (run === null) throw new NotFoundError(`run ${runId} not found`);
    const steps = await em.find(WorkflowStep, { runId }, { orderBy: { position: "asc" } });
    return { run, steps };
  };

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

  return {
    loadLocked,
    announce,
    emitChange,
    queueTask,
    setRunState,
    advance,
    settle,
    requestApproval,
    beginRollback,
    continueRollback,
    fail,
    succeed,
  };
}
