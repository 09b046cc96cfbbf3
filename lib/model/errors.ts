/**
 * Errors of the model provider. Skills map them to codes with {@link modelErrorCode}: a refused
 * budget is RESOURCE_EXHAUSTED, an unreachable or overloaded model UNAVAILABLE, a timeout
 * DEADLINE_EXCEEDED, a reply that is not the JSON asked for INTERNAL.
 */
import { Code } from "@connectrpc/connect";

/** Any failure of a model call. */
export class ModelError extends Error {
  override name = "ModelError";
}

/** The model server answered with an error status (after the retries it allows). */
export class ModelHttpError extends ModelError {
  override name = "ModelHttpError";
  /** HTTP status. */
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** The model server could not be reached, or the connection broke (after the retries). */
export class ModelUnavailableError extends ModelError {
  override name = "ModelUnavailableError";
}

/** An attempt took longer than the configured timeout (after the retries). */
export class ModelTimeoutError extends ModelError {
  override name = "ModelTimeoutError";
}

/** The reply was not the JSON asked for, even after one repair request. */
export class ModelOutputError extends ModelError {
  override name = "ModelOutputError";
}

/** Which budget a refused call would have exceeded. */
export interface BudgetBreach {
  /** `run` (the workflow run's) or `day` (the UTC day's). */
  readonly scope: "run" | "day";
  /** `tokens` or `cost`. */
  readonly measure: "tokens" | "cost";
  /** The budget. */
  readonly limit: number;
  /** Already spent (and reserved by calls in flight). */
  readonly spent: number;
  /** What this call could spend at most (estimated prompt + its max completion tokens). */
  readonly requested: number;
}

/** A call refused before it was made because it could exceed a budget; nothing was sent. */
export class BudgetExceededError extends ModelError {
  override name = "BudgetExceededError";
  readonly breach: BudgetBreach;
  constructor(breach: BudgetBreach) {
    const what = breach.scope === "run" ? "workflow run" : "day";
    super(
      `model ${breach.measure} budget of the ${what} exhausted: ${fmt(breach.spent)} spent of ${fmt(breach.limit)}, this call may need ${fmt(breach.requested)}`,
    );
    this.breach = breach;
  }
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(4);
}

/** The Connect code a skill answers with when a model call fails with `err`; undefined for other errors. */
export function modelErrorCode(err: unknown): Code | undefined {
  if (err instanceof BudgetExceededError) return Code.ResourceExhausted;
  if (err instanceof ModelTimeoutError) return Code.DeadlineExceeded;
  if (err instanceof ModelUnavailableError) return Code.Unavailable;
  if (err instanceof ModelHttpError) {
    return err.status === 429 || err.status >= 500 || err.status === 408 ? Code.Unavailable : Code.FailedPrecondition;
  }
  if (err instanceof ModelOutputError) return Code.Internal;
  return undefined;
}
