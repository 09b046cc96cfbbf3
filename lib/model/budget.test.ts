/** Budgets with calls in flight, abandoned streams, the JSON check, and the token estimator. */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../config/index.ts";
import {
  BudgetExceededError,
  createBudget,
  createMemoryUsageStore,
  createModelProvider,
  estimatePromptTokens,
  estimateTokens,
  validateJson,
} from "./index.ts";

const limits = { runTokens: 1000, dayTokens: 0, runCost: 0, dayCost: 0, pricePromptPer1k: 0, priceCompletionPer1k: 0 };

describe("budget", () => {
  it("counts calls in flight: two that fit alone but not together get one refusal", async () => {
    const budget = createBudget(limits, createMemoryUsageStore());
    const scope = { skill: "s", runId: "r" };
    const results = await Promise.allSettled([budget.reserve(scope, 100, 500), budget.reserve(scope, 100, 500)]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect((refused.reason as BudgetExceededError).breach).toEqual({
      scope: "run",
      measure: "tokens",
      limit: 1000,
      spent: 600,
      requested: 600,
    });
    // Releasing the reservation (the call failed, nothing billed) frees the room.
    (results.find((r) => r.status === "fulfilled") as PromiseFulfilledResult<{ release(): void }>).value.release();
    await expect(budget.reserve(scope, 100, 500)).resolves.toBeDefined();
  });

  it("keeps runs apart and applies no run budget outside a run", async () => {
    const budget = createBudget(limits, createMemoryUsageStore());
    await budget.reserve({ skill: "s", runId: "a" }, 100, 800);
    await budget.reserve({ skill: "s", runId: "b" }, 100, 800);
    await budget.reserve({ skill: "s" }, 100, 5000);
    await expect(budget.reserve({ skill: "s", runId: "a" }, 100, 800)).rejects.toBeInstanceOf(BudgetExceededError);
  });

  it("records an abandoned stream's partial usage and releases its reservation", async () => {
    const usageStore = createMemoryUsageStore();
    const config = loadConfig({}, { MESH_MODEL_RUN_TOKEN_BUDGET: "1500" }).model;
    const p = createModelProvider({ config, usageStore });
    const request = {
      task: "paragraph",
      data: { topic: "prices", facts: ["Rent is $900."] },
      maxTokens: 1000,
      usage: { skill: "s", runId: "r" },
    };
    const s = p.stream(request);
    for await (const delta of s) {
      expect(delta).not.toBe("");
      break;
    }
    await expect(s.result).rejects.toThrow(/abandoned/);
    expect(usageStore.entries()).toHaveLength(1);
    expect(usageStore.entries()[0]?.estimated).toBe(true);
    // Had the reservation of 1000 + prompt stayed, this call would not fit in 1500.
    await expect(p.write(request)).resolves.toMatchObject({ finishReason: "stop" });
  });
});

describe("validateJson", () => {
  const schema = {
    type: "object",
    required: ["title", "tags"],
    additionalProperties: false,
    properties: {
      title: { type: "string", maxLength: 10 },
      tags: { type: "array", items: { type: "string" }, minItems: 1 },
      score: { type: "number", minimum: 0, maximum: 1 },
    },
  };
  it("accepts a conforming value and names the path of each problem", () => {
    expect(validateJson({ title: "Hi", tags: ["a"], score: 0.5 }, schema)).toEqual([]);
    expect(validateJson({ title: "A much longer title", tags: [1], score: 2, extra: true }, schema)).toEqual([
      "$.title: longer than 10",
      "$.tags[0]: expected string, got integer",
      "$.score: above 1",
      "$.extra: not allowed",
    ]);
    expect(validateJson([], schema)).toEqual(["$: expected object, got array"]);
    expect(validateJson({}, schema)).toEqual(["$.title: required", "$.tags: required"]);
  });
});

describe("token estimator", () => {
  it("counts ~4 characters a token, plus 4 per message and 3 for the reply", () => {
    expect(estimateTokens("")).toBe(0);
    expect(estimateTokens("abcd")).toBe(1);
    expect(estimateTokens("abcde")).toBe(2);
    // 3 + (4 + 2) + (4 + 1).
    expect(
      estimatePromptTokens([
        { role: "system", content: "12345678" },
        { role: "user", content: "hi" },
      ]),
    ).toBe(14);
  });
});
