/**
 * The model provider: every text a skill writes goes through {@link createModelProvider}. With
 * `MESH_MODEL_BASE_URL` set it is an OpenAI-compatible chat-completions client (timeouts, retries,
 * streaming, JSON output); without, the deterministic built-in writer. Both sit behind token and
 * cost budgets per workflow run and per day, checked before a call is made, and record their usage
 * per skill and run (in the framework's `model_usage` table with {@link createPgUsageStore}).
 */
export { type Budget, type BudgetLimits, createBudget, type Reservation, utcDayStart } from "./budget.ts";
export { type BuiltinOutput, builtinModel, builtinWrite, createBuiltinBackend } from "./builtin.ts";
export {
  type BudgetBreach,
  BudgetExceededError,
  ModelError,
  ModelHttpError,
  ModelOutputError,
  ModelTimeoutError,
  ModelUnavailableError,
  modelErrorCode,
} from "./errors.ts";
export { parseJsonReply, validateJson } from "./json.ts";
export { chatMessagesFor, createOpenAiBackend, type OpenAiOptions, retryAfterMs } from "./openai.ts";
export { createModelProvider, type ModelProviderOptions } from "./provider.ts";
export { charsPerToken, estimatePromptTokens, estimateTokens, tokensPerMessage } from "./tokens.ts";
export type {
  ChatMessage,
  Completion,
  JsonRequest,
  JsonSchema,
  ModelBackend,
  ModelProvider,
  ProviderKind,
  RawUsage,
  StreamEvent,
  Usage,
  UsageScope,
  WriteRequest,
  WriteResult,
  WriteStream,
} from "./types.ts";
export {
  createMemoryUsageStore,
  createPgUsageStore,
  maxSkillRows,
  type SkillUsage,
  type UsageEntry,
  type UsageQuery,
  type UsageStore,
  type UsageTotals,
} from "./usage-store.ts";
