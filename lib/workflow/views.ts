/**
 * Pure functions over definitions and rows: looking up a run's definition and steps, the keys a
 * step is deduplicated on, the context a step's functions see, and the `Run`/`Step` messages the
 * API returns.
 */
import { createHash } from "node:crypto";
import { create, type DescMethodUnary, fromBinary } from "@bufbuild/protobuf";
import { AnySchema, anyUnpack, type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ApprovalSchema,
  type Run,
  RunSchema,
  type Step,
  StepSchema,
} from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { PermanentError } from "../bus/index.ts";
import type { RunRow, StepRow } from "./core.ts";
import type { StepContext, StepDefinition, WorkflowDefinition } from "./define.ts";
import type { ApprovalState } from "./entities.ts";

// ---- definitions --------------------------------------------------------------------------

/** The definition of workflow `name`; a permanent error when this server does not have it. */
export function definition(definitions: ReadonlyMap<string, WorkflowDefinition>, name: string): WorkflowDefinition {
  const d = definitions.get(name);
  if (d === undefined) throw new PermanentError(`workflow ${name} is not defined on this server`);
  return d;
}

/** The definition of step `name` of `def`; a permanent error when there is none. */
export function stepDef(def: WorkflowDefinition, name: string): StepDefinition {
  const s = def.steps.find((x) => x.name === name);
  if (s === undefined) throw new PermanentError(`workflow ${def.name} has no step ${name}`);
  return s;
}

// ---- keys ---------------------------------------------------------------------------------

/** A UUID derived from `name` (version 5 layout over SHA-256), stable across attempts. */
export function stableUuid(name: string): string {
  const h = createHash("sha256").update(name).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The skill id of `m`, `<service type name>/<method name>`. */
export const skillIdOf = (m: DescMethodUnary): string => `${m.parent.typeName}/${m.name}`;
/** Whether the request message of `m` has a `request_id` field. */
export const hasRequestId = (m: DescMethodUnary): boolean => m.input.fields.some((f) => f.localName === "requestId");
/** The key the agent deduplicates a step on: the request_id derived from the step key, or the key itself. */
export const agentKey = (m: DescMethodUnary, key: string): string => (hasRequestId(m) ? stableUuid(key) : key);
/** The idempotency key of a step of `run`: fixed per step and generation, so every attempt shares it. */
export const stepKey = (run: RunRow, step: string): string => `wf:${run.id}:${step}:${run.generation}`;

// ---- step context -------------------------------------------------------------------------

/** What the functions of `def`'s steps see of `run`: its input and the outputs of `steps`. */
export function contextFor(def: WorkflowDefinition, run: RunRow, steps: StepRow[]): StepContext<unknown> {
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
}

// ---- views --------------------------------------------------------------------------------

/** `d` as a protobuf timestamp, or undefined when unset. */
export const ts = (d: Date | null | undefined): Timestamp | undefined => (d ? timestampFromDate(d) : undefined);

/** The `Step` message of row `s` (`def` is undefined when this server lacks the run's workflow). */
function stepView(def: WorkflowDefinition | undefined, s: StepRow): Step {
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
}

/** The `Run` message of `run`, with `steps` (undefined in listings, which leave steps out). */
export function runView(
  definitions: ReadonlyMap<string, WorkflowDefinition>,
  run: RunRow,
  steps: StepRow[] | undefined,
): Run {
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
}
