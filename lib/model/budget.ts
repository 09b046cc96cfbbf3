/**
 * Token and cost budgets per workflow run and per UTC day. A call is checked before it is made
 * against what is spent (summed from the usage store) plus what calls in flight in this process
 * have reserved, counting the most it could spend: its estimated prompt tokens and its whole
 * completion limit. A call that could exceed a budget is refused and nothing is sent. After the
 * call its real usage is recorded and its reservation released.
 */
import { BudgetExceededError } from "./errors.ts";
import type { UsageScope } from "./types.ts";
import type { UsageEntry, UsageStore } from "./usage-store.ts";

/** Limits and prices; a limit of 0 means none. */
export interface BudgetLimits {
  readonly runTokens: number;
  readonly dayTokens: number;
  readonly runCost: number;
  readonly dayCost: number;
  /** Price per 1000 prompt tokens. */
  readonly pricePromptPer1k: number;
  /** Price per 1000 completion tokens. */
  readonly priceCompletionPer1k: number;
}

/** A granted reservation: settle it with the call's usage, or release it when the call failed. */
export interface Reservation {
  /** Records `entry` and releases the reservation. */
  settle(entry: UsageEntry): Promise<void>;
  /** Releases the reservation without recording anything (the call spent nothing billable). */
  release(): void;
}

/** Checks and records spending. */
export interface Budget {
  /** Cost of a call under the configured prices. */
  costOf(promptTokens: number, completionTokens: number): number;
  /** Reserves what a call could spend, or throws {@link BudgetExceededError}. */
  reserve(scope: UsageScope, promptTokens: number, maxCompletionTokens: number): Promise<Reservation>;
}

/** Start of the UTC day of `t`. */
export function utcDayStart(t: Date): Date {
  return new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
}

/** Budgets over `store`. */
export function createBudget(limits: BudgetLimits, store: UsageStore, now: () => Date = () => new Date()): Budget {
  /** Reservations in flight in this process, by run ("" = all, i.e. the day's). */
  const inFlight = new Map<number, { runId: string; tokens: number; cost: number }>();
  let nextId = 0;
  const costOf = (p: number, c: number): number =>
    (p * limits.pricePromptPer1k + c * limits.priceCompletionPer1k) / 1000;

  function reserved(runId: string | undefined): { tokens: number; cost: number } {
    let tokens = 0;
    let cost = 0;
    for (const r of inFlight.values()) {
      if (runId !== undefined && r.runId !== runId) continue;
      tokens += r.tokens;
      cost += r.cost;
    }
    return { tokens, cost };
  }

  function check(
    scope: "run" | "day",
    spent: { tokens: number; cost: number },
    tokens: number,
    cost: number,
    tokenLimit: number,
    costLimit: number,
  ): void {
    if (tokenLimit > 0 && spent.tokens + tokens > tokenLimit) {
      throw new BudgetExceededError({
        scope,
        measure: "tokens",
        limit: tokenLimit,
        spent: spent.tokens,
        requested: tokens,
      });
    }
    if (costLimit > 0 && spent.cost + cost > costLimit) {
      throw new BudgetExceededError({ scope, measure: "cost", limit: costLimit, spent: spent.cost, requested: cost });
    }
  }

  return {
    costOf,
    async reserve(scope, promptTokens, maxCompletionTokens) {
      const tokens = promptTokens + maxCompletionTokens;
      const cost = costOf(promptTokens, maxCompletionTokens);
      const runId = scope.runId ?? "";
      const dayLimited = limits.dayTokens > 0 || limits.dayCost > 0;
      const runLimited = runId !== "" && (limits.runTokens > 0 || limits.runCost > 0);
      const none = { tokens: 0, cost: 0, calls: 0 };
      // A run's calls are summed over every day it spans: a long run's budget does not reset at midnight.
      const [day, run] = await Promise.all([
        dayLimited ? store.totals({ since: utcDayStart(now()) }) : none,
        runLimited ? store.totals({ since: new Date(0), runId }) : none,
      ]);
      // From here to the reservation nothing awaits, so a concurrent call's check sees this one's.
      if (dayLimited) {
        const held = reserved(undefined);
        check(
          "day",
          { tokens: day.tokens + held.tokens, cost: day.cost + held.cost },
          tokens,
          cost,
          limits.dayTokens,
          limits.dayCost,
        );
      }
      if (runLimited) {
        const held = reserved(runId);
        check(
          "run",
          { tokens: run.tokens + held.tokens, cost: run.cost + held.cost },
          tokens,
          cost,
          limits.runTokens,
          limits.runCost,
        );
      }
      const id = nextId++;
      inFlight.set(id, { runId, tokens, cost });
      let open = true;
      return {
        async settle(entry) {
          try {
            await store.record(entry);
          } finally {
            if (open) inFlight.delete(id);
            open = false;
          }
        },
        release() {
          inFlight.delete(id);
          open = false;
        },
      };
    },
  };
}
