/** WorkflowService: the RPC face of the engine. */
import { create, fromBinary } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ListWorkflowsResponseSchema,
  RunChangedSchema,
  StepKind,
  StepSchema,
  StepState,
  type WatchRunResponse,
  WatchRunResponseSchema,
  WorkflowInfoSchema,
  type WorkflowService,
} from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import type { Bus } from "../bus/index.ts";
import type { Engine } from "./engine.ts";
import { RunChanged } from "./engine.ts";
import { terminalRunStates } from "./states.ts";

/** The WorkflowService implementation over `engine`. */
export function createWorkflowService(engine: Engine, bus: Bus): ServiceImpl<typeof WorkflowService> {
  return {
    listWorkflows() {
      const workflows = [...engine.definitions.values()]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((w) =>
          create(WorkflowInfoSchema, {
            name: w.name,
            description: w.description,
            inputType: w.input.typeName,
            steps: w.steps.map((s) =>
              create(StepSchema, {
                name: s.name,
                kind:
                  s.kind === "skill" ? StepKind.SKILL : s.kind === "approval" ? StepKind.APPROVAL : StepKind.WAIT_EVENT,
                state: StepState.UNSPECIFIED,
                dependsOn: [...s.after],
                skillId: s.kind === "skill" ? `${s.method.parent.typeName}/${s.method.name}` : "",
                maxAttempts: s.kind === "skill" ? s.retry.maxAttempts : 1,
                awaitedEvent: s.kind === "wait" ? bus.eventSubject(s.event) : "",
                compensable: s.kind === "skill" && s.compensate !== undefined,
              }),
            ),
          }),
        );
      return create(ListWorkflowsResponseSchema, { workflows });
    },
    async startRun(req) {
      const run = await engine.startRun({
        requestId: req.requestId,
        workflow: req.workflow,
        input: req.input,
        priority: req.priority,
        labels: req.labels,
      });
      return { run };
    },
    async getRun(req) {
      return { run: await engine.getRun(req.runId) };
    },
    async listRuns(req) {
      return engine.listRuns({
        workflow: req.workflow,
        states: req.states,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
        label: req.label,
      });
    },
    async *watchRun(req, ctx) {
      // Subscribe before reading the current state, so no change falls between the two.
      const changes: string[] = [];
      let wake: (() => void) | undefined;
      const sub = bus.fanout(bus.eventSubject(RunChanged), (d) => {
        const e = fromBinary(RunChangedSchema, d.data);
        if (e.runId !== req.runId) return;
        changes.push(e.step);
        wake?.();
      });
      const onAbort = () => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        let run = await engine.getRun(req.runId);
        yield create(WatchRunResponseSchema, { run, changedStep: "" }) as WatchRunResponse;
        while (!terminalRunStates.has(run.state) && !ctx.signal.aborted) {
          if (changes.length === 0) await new Promise<void>((r) => (wake = r));
          wake = undefined;
          if (ctx.signal.aborted) break;
          const batch = changes.splice(0);
          if (batch.length === 0) continue;
          run = await engine.getRun(req.runId);
          yield create(WatchRunResponseSchema, { run, changedStep: batch[batch.length - 1] ?? "" }) as WatchRunResponse;
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        sub.unsubscribe();
      }
    },
    async approveStep(req) {
      return {
        run: await engine.decide({
          runId: req.runId,
          step: req.step,
          approver: req.approver,
          comment: req.comment,
          approve: true,
        }),
      };
    },
    async rejectStep(req) {
      return {
        run: await engine.decide({
          runId: req.runId,
          step: req.step,
          approver: req.approver,
          comment: req.reason,
          approve: false,
        }),
      };
    },
    async cancelRun(req) {
      return { run: await engine.cancel(req.runId, req.reason) };
    },
    async retryRun(req) {
      return { run: await engine.retry(req.runId) };
    },
  };
}
