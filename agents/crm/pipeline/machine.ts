/**
 * The pipeline as a table-driven finite-state machine. States are the definition's stages; the
 * transition table is its list of (from, to, guards, triggers), where `from = "*"` stands for
 * every open stage. A move is decided without side effects: the candidate transitions (to the
 * target, or every transition out of the current stage in listed order for auto mode) are tried in
 * order, each guard evaluated in order, and the first transition whose guards all pass is taken.
 * The caller applies the decision (writes, events) in its transaction.
 */
import { create } from "@bufbuild/protobuf";
import {
  type GuardEvaluation,
  GuardEvaluationSchema,
  type PipelineDefinition,
  type StageGuard,
  StageOutcome,
  type StageTransition,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import { outcomeOfStage, stageOf } from "./definition.ts";

/** Where the caller wants the deal to go. */
export type MoveTarget = { kind: "stage"; stage: string } | { kind: "auto" };

/** The outcome of deciding a move. */
export interface MoveDecision {
  /** The transition taken; undefined when no candidate's guards all passed. */
  taken: StageTransition | undefined;
  /** Every guard evaluated, in evaluation order. */
  guards: GuardEvaluation[];
}

/** Evaluates one guard of the transition into `toStage`. */
export type GuardEvaluator = (guard: StageGuard, toStage: string) => Promise<{ passed: boolean; reason: string }>;

/** Transitions leaving `stage`, in listed order; `*` applies to open stages except into themselves. */
export function transitionsFrom(def: PipelineDefinition, stage: string): StageTransition[] {
  const current = stageOf(def, stage);
  const open = current !== undefined && outcomeOfStage(current) === StageOutcome.OPEN;
  return def.transitions.filter((t) => t.fromStage === stage || (t.fromStage === "*" && open && t.toStage !== stage));
}

/**
 * Decides a move of a deal in `current` under `def`. Throws INVALID_ARGUMENT for a target that is
 * no stage of the pipeline and FAILED_PRECONDITION, naming both stages, when the pipeline has no
 * transition from the current stage to the target.
 */
export async function decideMove(
  def: PipelineDefinition,
  current: string,
  target: MoveTarget,
  evaluate: GuardEvaluator,
): Promise<MoveDecision> {
  if (stageOf(def, current) === undefined) {
    throw new FailedPreconditionError(`the deal's stage "${current}" is not a stage of pipeline "${def.id}"`);
  }
  let candidates = transitionsFrom(def, current);
  if (target.kind === "stage") {
    if (stageOf(def, target.stage) === undefined) {
      throw new InvalidInputError("target_stage", `"${target.stage}" is not a stage of pipeline "${def.id}"`);
    }
    if (target.stage === current) {
      throw new FailedPreconditionError(`the deal is already in stage "${current}"`);
    }
    candidates = candidates.filter((t) => t.toStage === target.stage);
    if (candidates.length === 0) {
      throw new FailedPreconditionError(
        `pipeline "${def.id}" has no transition from "${current}" to "${target.stage}"`,
      );
    }
  }
  const guards: GuardEvaluation[] = [];
  for (const t of candidates) {
    let all = true;
    for (const g of t.guards) {
      const r = await evaluate(g, t.toStage);
      guards.push(
        create(GuardEvaluationSchema, { guardId: g.id, toStage: t.toStage, passed: r.passed, reason: r.reason }),
      );
      if (!r.passed) {
        all = false;
        break;
      }
    }
    if (all) return { taken: t, guards };
  }
  return { taken: undefined, guards };
}
