/** Runs and steps of the workflow engine, in the technical schema. */
import { defineEntity, p } from "@mikro-orm/postgresql";
import type { Priority } from "../../gen/mesh/common/v1/types_pb.ts";
import type { RunState, StepKind, StepState } from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";

/** Approval gate state, stored as JSON on the step. */
export interface ApprovalState {
  approvers: string[];
  escalationLevel: number;
  decidedBy?: string;
  comment?: string;
  decidedAt?: string;
}

/** One run of a workflow. */
export const WorkflowRun = defineEntity({
  name: "WorkflowRun",
  tableName: "workflow_run",
  indexes: [{ properties: ["workflow", "createdAt"] }, { properties: ["createdAt", "id"] }],
  properties: {
    id: p.uuid().primary(),
    workflow: p.string().length(63),
    /** StartRun's request_id: a replay returns this run. */
    requestId: p.uuid().unique(),
    /** SHA-256 of StartRun's request: a replay with other input is refused. */
    requestHash: p.string().length(64),
    /** RunState number. */
    state: p.smallint().$type<RunState>().index(),
    /** Priority number (1 urgent, 2 normal, 3 bulk). */
    priority: p.smallint().$type<Priority>(),
    /** The input, as a serialized google.protobuf.Any. */
    input: p.blob(),
    labels: p.json<Record<string, string>>(),
    error: p.text().default(""),
    /** W3C traceparent of the span that started the run; every step continues this trace. */
    traceparent: p.string().length(64),
    /** Set by CancelRun: the rollback ends in CANCELLED instead of ROLLED_BACK. */
    cancelled: p.boolean().default(false),
    /** Incremented by RetryRun; part of every step's idempotency key. */
    generation: p.integer().default(0),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()),
    finishedAt: p.datetime().nullable(),
    version: p.integer().version(),
  },
});

/** One step of a run. */
export const WorkflowStep = defineEntity({
  name: "WorkflowStep",
  tableName: "workflow_step",
  uniques: [{ properties: ["runId", "name"] }],
  indexes: [{ properties: ["state", "dueAt"] }, { properties: ["awaitedEvent", "state"] }],
  properties: {
    id: p.uuid().primary(),
    runId: p.uuid(),
    name: p.string().length(64),
    /** Definition order. */
    position: p.smallint(),
    /** StepKind number. */
    kind: p.smallint().$type<StepKind>(),
    /** StepState number. */
    state: p.smallint().$type<StepState>(),
    attempt: p.integer().default(0),
    maxAttempts: p.integer(),
    output: p.blob().nullable(),
    error: p.text().default(""),
    startedAt: p.datetime().nullable(),
    finishedAt: p.datetime().nullable(),
    /** When the step's timer fires (retry, approval escalation, event timeout). */
    dueAt: p.datetime().nullable(),
    /** Order in which steps succeeded: compensation runs in reverse. */
    completedSeq: p.integer().nullable(),
    approval: p.json<ApprovalState>().nullable(),
    /** Full subject of the awaited event (wait steps). */
    awaitedEvent: p.string().length(255).nullable(),
    version: p.integer().version(),
  },
});

/** Workflow entities. */
export const workflowEntities = [WorkflowRun, WorkflowStep] as const;
