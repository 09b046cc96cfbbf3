/** The model provider's settings in lib/config: defaults, the API key file, and refused values. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../config/index.ts";

function thrownBy(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

describe("model settings", () => {
  it("default to the built-in writer with token budgets and no prices", () => {
    expect(loadConfig({}, {}).model).toEqual({
      baseUrl: undefined,
      name: "builtin-writer",
      apiKey: undefined,
      timeoutMs: 60_000,
      maxAttempts: 4,
      maxTokens: 2048,
      pricePromptPer1k: 0,
      priceCompletionPer1k: 0,
      runTokenBudget: 200_000,
      dayTokenBudget: 2_000_000,
      runCostBudget: 0,
      dayCostBudget: 0,
    });
  });

  it("read an OpenAI-compatible server, its key from a file, prices and budgets", () => {
    const dir = mkdtempSync(join(tmpdir(), "mesh-model-"));
    writeFileSync(join(dir, "key"), "sk-from-file\n");
    const model = loadConfig(
      {},
      {
        MESH_MODEL_BASE_URL: "http://127.0.0.1:8080/v1/",
        MESH_MODEL_NAME: "llama-3.1-8b-instruct",
        MESH_MODEL_API_KEY_FILE: join(dir, "key"),
        MESH_MODEL_TIMEOUT_MS: "5000",
        MESH_MODEL_PRICE_PROMPT_PER_1K: "0.15",
        MESH_MODEL_DAY_COST_BUDGET: "20",
      },
    ).model;
    expect(model).toMatchObject({
      baseUrl: "http://127.0.0.1:8080/v1",
      name: "llama-3.1-8b-instruct",
      apiKey: "sk-from-file",
      timeoutMs: 5000,
      pricePromptPer1k: 0.15,
      dayCostBudget: 20,
    });
  });

  it("refuse a base URL without a model name, both key settings, and bad URLs, never echoing the key", () => {
    expect(thrownBy(() => loadConfig({}, { MESH_MODEL_BASE_URL: "http://127.0.0.1:8080/v1" })).message).toBe(
      "MESH_MODEL_NAME is required with MESH_MODEL_BASE_URL",
    );
    const both = thrownBy(() =>
      loadConfig({}, { MESH_MODEL_API_KEY: "sk-secret-value", MESH_MODEL_API_KEY_FILE: "/nope" }),
    );
    expect(both).toBeInstanceOf(ConfigError);
    expect(both.message).not.toContain("sk-secret-value");
    expect(
      thrownBy(() => loadConfig({}, { MESH_MODEL_BASE_URL: "ftp://host/v1", MESH_MODEL_NAME: "m" })).message,
    ).toMatch(/^MESH_MODEL_BASE_URL must be an http\(s\) URL/);
    expect(thrownBy(() => loadConfig({}, { MESH_MODEL_TIMEOUT_MS: "5" })).message).toMatch(
      /^MESH_MODEL_TIMEOUT_MS must be/,
    );
  });
});
