/**
 * Executing workflow tasks: a worker (any technical instance; they share the durable consumers)
 * claims the step, calls the step's skill (or its compensation) with an idempotency key fixed per
 * step, so an agent applies a step once however often the call is repeated, and commits the
 * step's output before the next steps are queued. A crashed instance's tasks are redelivered by
 * JetStream after the ack wait.
 */
import { create, type DescMessage, type DescMethodUnary, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { type Any, anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, SpanStatusCode, trace } from "@opentelemetry/api";
import {
  RunState,
  StepState,
  TaskAction,
  type WorkflowTask,
  WorkflowTaskSchema,
} from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { PermanentError, type Running, startPriorityWorker } from "../bus/index.ts";
import { IDEMPOTENCY_HEADER } from "../server/index.ts";
import { ENGINE, type EngineCore } from "./core.ts";
import { WorkflowRun, WorkflowStep } from "./entities.ts";
import type { Transitions } from "./transitions.ts";
import { contextFor, definition, hasRequestId, skillIdOf, stableUuid, stepDef, stepKey } from "./views.ts";

/**
 * Deliveries of a task before JetStream stops redelivering it. A compensation failing with a retryable
 * code is redelivered until then; the last delivery records the failure.
 */
const maxDeliver = 10;

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

/** Executes workflow tasks. */
export interface Executor {
  /** Executes `task` (its `deliveryCount`-th delivery): claims the step, calls the skill, commits the result. */
  execute(task: WorkflowTask, deliveryCount: number): Promise<void>;
  /** Starts the worker consuming the engine's task queue. */
  startWorker(opts: { concurrency: number; ackWaitMs: number }): Promise<Running>;
}

/** Creates the executor over `core`, moving runs on with `transitions`. */
export function createExecutor(core: EngineCore, transitions: Transitions): Executor {
  const { db, bus, client, now, definitions } = core;
  const { loadLocked, announce, emitChange, setRunState, settle, continueRollback, fail, succeed } = transitions;

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

  const execute = async (task: WorkflowTask, deliveryCount: number): Promise<void> => {
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
      const def = definition(definitions, run.workflow);
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

  const startWorker = (opts: { concurrency: number; ackWaitMs: number }): Promise<Running> =>
    startPriorityWorker(
      bus,
      { agent: ENGINE, concurrency: opts.concurrency, ackWaitMs: opts.ackWaitMs, maxDeliver },
      async (d) => {
        let task: WorkflowTask;
        try {
          task = fromBinary(WorkflowTaskSchema, d.data);
        } catch {
          throw new PermanentError("undecodable workflow task");
        }
        await execute(task, d.deliveryCount);
      },
    );

  return { execute, startWorker };
}
