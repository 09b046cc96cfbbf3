/**
 * What moves a run on without a task: timers and awaited events. Timers (retry backoff, approval
 * escalation, event timeouts) are steps with a due time; every instance polls for due steps each
 * tick and handles each in its own transaction holding the run's row lock, re-checking that it is
 * still due, so two instances never fire the same timer twice. Wait steps record the full subject of
 * the event they await; a durable consumer of all domain events matches each event against them.
 */
import { anyPack } from "@bufbuild/protobuf/wkt";
import { StepState, TaskAction } from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { decodeEvent, type Running } from "../bus/index.ts";
import type { EngineCore } from "./core.ts";
import { type ApprovalState, WorkflowStep } from "./entities.ts";
import type { Transitions } from "./transitions.ts";
import { contextFor, definition, stepDef } from "./views.ts";

/** Fires timers and matches awaited events. */
export interface Scheduler {
  /** Handles the steps whose timer is due (at most 100 per tick). */
  tick(): Promise<void>;
  /** Completes the steps waiting for an event on `subject` that `data` matches. */
  onEvent(subject: string, data: Uint8Array): Promise<void>;
  /** Starts the durable consumer feeding domain events to {@link Scheduler.onEvent}. */
  startEventWaits(): Promise<Running>;
  /** Runs {@link Scheduler.tick} every `tickMs`, one tick at a time. */
  startTimers(tickMs: number): void;
  /** Stops the timers and waits for a running tick to end. */
  stopTimers(): Promise<void>;
}

/** Creates the scheduler over `core`, moving runs on with `transitions`. */
export function createScheduler(core: EngineCore, transitions: Transitions): Scheduler {
  const { db, bus, log, now, definitions } = core;
  const { loadLocked, queueTask, emitChange, settle, requestApproval, fail, succeed } = transitions;
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  let stopped = false;

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
          const def = definition(definitions, run.workflow);
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

  const startTimers = (tickMs: number): void => {
    timer = setInterval(() => {
      if (ticking || stopped) return;
      ticking = tick()
        .catch((err: unknown) => log.warn("workflow timers failed", { error: String(err) }))
        .finally(() => {
          ticking = undefined;
        });
    }, tickMs);
    timer.unref();
  };

  const stopTimers = async (): Promise<void> => {
    stopped = true;
    if (timer) clearInterval(timer);
    await ticking;
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
        const def = definition(definitions, run.workflow);
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

  const startEventWaits = (): Promise<Running> =>
    bus.consume(
      { stream: "events", durable: "workflow_event_waits", filter: `${bus.prefix}.events.>`, deliverNew: true },
      async (d) => {
        // The engine's own events are skipped, so a wait step cannot wait for one.
        if (d.subject.startsWith(`${bus.prefix}.events.workflow.`)) return;
        await onEvent(d.subject, d.data);
      },
    );

  return { tick, onEvent, startEventWaits, startTimers, stopTimers };
}
