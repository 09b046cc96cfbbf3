/**
 * The workflow module's public surface: defining workflows, running the engine and its
 * WorkflowService, the engine's events and state helpers, and its entities and migrations for the
 * technical schema. The engine's parts (core, views, transitions, executor, scheduler) stay internal.
 */
export {
  DEFAULT_STEP_ATTEMPTS,
  defineWorkflow,
  type RetryPolicy,
  type StepContext,
  type StepDefinition,
  shortestRetryWindowMs,
  type WorkflowDefinition,
} from "./define.ts";
export {
  ApprovalRequested,
  createEngine,
  type Engine,
  type EngineOptions,
  RunChanged,
  stableUuid,
} from "./engine.ts";
export { workflowEntities } from "./entities.ts";
export { migrations as workflowMigrations } from "./migrations/index.ts";
export { createWorkflowService } from "./service.ts";
export { stateName, terminalRunStates } from "./states.ts";
