/** Mesh transport: typed clients with deadlines, retries, breakers, and the inbound call scope. */
export { type CallScope, currentCallScope, deadlineFromHeaders, runInCallScope } from "./call-scope.ts";
export {
  type BreakerState,
  createMeshClient,
  type MeshClient,
  type MeshClientOptions,
  type SkillRetry,
  type SkillRetryPolicy,
  singleAttemptKey,
} from "./client.ts";
export { fullJitterDelay, RetryBudget, sleep } from "./retry.ts";
