/** Run and step states shared by the engine, the service and its clients. */
import { RunState, type RunStateSchema, type StepStateSchema } from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";

/** States a run does not leave (except through RetryRun). */
export const terminalRunStates: ReadonlySet<RunState> = new Set<RunState>([
  RunState.SUCCEEDED,
  RunState.ROLLED_BACK,
  RunState.FAILED,
  RunState.CANCELLED,
]);

/** The short name of a run or step state, e.g. `WAITING_APPROVAL`. */
export function stateName(schema: typeof RunStateSchema | typeof StepStateSchema, n: number): string {
  return schema.values.find((v) => v.number === n)?.localName ?? String(n);
}
