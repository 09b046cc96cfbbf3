/**
 * The OpenAI-compatible provider against a local HTTP server speaking the chat-completions API:
 * plain and streamed replies, JSON mode with a repair, retries (Retry-After, 5xx, timeouts), no
 * retry on other 4xx, and budgets refused before any request leaves.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../config/index.ts";
import {
  BudgetExceededError,
  createMemoryUsageStore,
  createModelProvider,
  ModelHttpError,
  ModelTimeoutError,
  ModelUnavailableError,
  modelErrorCode,
  utcDayStart,
} from "./index.ts";

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** Requests the server received, and the handlers it answers the next ones with (last one repeats). */
const received: Array<{ url: string; auth: string | undefined; body: Record<string, unknown> }> = [];
let handlers: Handler[] = [];
let server: Server;
let baseUrl: string;

function reply(json: unknown, status = 200, headers: Record<string, string> = {}): Handler {
  return (_req, res) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(json));
  };
}

function completion(content: string, usage = { prompt_tokens: 12, completion_tokens: 3 }): Handler {
  return reply({
    id: "c1",
    object: "chat.completion",
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
  });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      received.push({ url: req.url ?? "", auth: req.headers.authorization, body: JSON.parse(body) });
      const h = handlers.length > 1 ? handlers.shift() : handlers[0];
      h?.(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  received.length = 0;
  handlers = [];
});

/** A provider on the local server; `sleeps` records the waits between retries instead of waiting. */
function provider(env: Record<string, string> = {}) {
  const sleeps: number[] = [];
  const usageStore = createMemoryUsageStore();
  const config = loadConfig(
    {},
    {
      MESH_MODEL_BASE_URL: baseUrl,
      MESH_MODEL_NAME: "test-model",
      MESH_MODEL_API_KEY: "sk-test",
      MESH_MODEL_PRICE_PROMPT_PER_1K: "1",
      MESH_MODEL_PRICE_COMPLETION_PER_1K: "2",
      ...env,
    },
  ).model;
  const p = createModelProvider({
    config,
    usageStore,
    retryBaseDelayMs: 10,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  return { p, sleeps, usageStore };
}

const brief = {
  title: "Memory care in Austin",
  keyword: "memory care austin",
  facts: ["Median price is $6,200 a month."],
};

describe("OpenAI-compatible provider", () => {
  it("posts a chat completion and takes the usage from the response", async () => {
    handlers = [completion("Hello there.")];
    const { p, usageStore } = provider();
    const r = await p.write({
      task: "article",
      data: brief,
      maxTokens: 300,
      usage: { skill: "writing.WriteArticle", runId: "run-1" },
    });
    expect(r).toMatchObject({
      text: "Hello there.",
      provider: "openai",
      model: "test-model",
      finishReason: "stop",
      json: undefined,
    });
    // 12 × 1 / 1000 + 3 × 2 / 1000 = 0.018.
    expect(r.usage).toEqual({ promptTokens: 12, completionTokens: 3, totalTokens: 15, cost: 0.018, estimated: false });
    expect(received).toHaveLength(1);
    expect(received[0]?.url).toBe("/v1/chat/completions");
    expect(received[0]?.auth).toBe("Bearer sk-test");
    expect(received[0]?.body).toMatchObject({ model: "test-model", max_tokens: 300 });
    const messages = received[0]?.body.messages as Array<{ role: string; content: string }>;
    expect(messages.map((m) => m.role)).toEqual(["system", "user"]);
    expect(JSON.parse(messages[1]?.content ?? "")).toEqual(brief);
    expect(usageStore.entries()).toMatchObject([
      {
        skill: "writing.WriteArticle",
        runId: "run-1",
        provider: "openai",
        promptTokens: 12,
        completionTokens: 3,
        cost: 0.018,
      },
    ]);
  });

  it("streams deltas and takes the usage from the final chunk", async () => {
    handlers = [
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        const chunk = (delta: unknown, finish: string | null = null) =>
          `data: ${JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        // Lines split across writes, a comment line and CRLF endings, as real servers send them.
        const text =
          chunk({ role: "assistant", content: "" }) +
          ": keep-alive\n\n" +
          chunk({ content: "Hel" }) +
          chunk({ content: "lo" }).replace(/\n\n$/, "\r\n\r\n") +
          chunk({ content: " world." }) +
          chunk({}, "stop") +
          `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 40, completion_tokens: 4, total_tokens: 44 } })}\n\n` +
          "data: [DONE]\n\n";
        const cut = Math.floor(text.length / 3);
        res.write(text.slice(0, cut));
        setImmediate(() => {
          res.write(text.slice(cut, cut * 2));
          setImmediate(() => res.end(text.slice(cut * 2)));
        });
      },
    ];
    const { p, usageStore } = provider();
    const s = p.stream({ task: "paragraph", data: { topic: "x" }, usage: { skill: "writing.WriteArticle" } });
    const deltas: string[] = [];
    for await (const d of s) deltas.push(d);
    expect(deltas).toEqual(["Hel", "lo", " world."]);
    const r = await s.result;
    expect(r.text).toBe("Hello world.");
    expect(r.finishReason).toBe("stop");
    expect(r.usage).toMatchObject({ promptTokens: 40, completionTokens: 4, estimated: false });
    expect(received[0]?.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(usageStore.entries()).toHaveLength(1);
  });

  it("asks for JSON, and repairs an invalid first reply once", async () => {
    handlers = [
      completion("Sure! {title: 'oops'"),
      completion('{"title":"Memory care in Austin","sections":2}', { prompt_tokens: 50, completion_tokens: 9 }),
    ];
    const { p, usageStore } = provider();
    const schema = {
      type: "object",
      required: ["title", "sections"],
      properties: { title: { type: "string" }, sections: { type: "integer", minimum: 1 } },
    };
    const r = await p.write({
      task: "outline",
      data: brief,
      json: { name: "outline", schema },
      usage: { skill: "writing.WriteArticle" },
    });
    expect(r.json).toEqual({ title: "Memory care in Austin", sections: 2 });
    expect(received).toHaveLength(2);
    expect(received[0]?.body.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "outline", schema, strict: false },
    });
    const repair = received[1]?.body.messages as Array<{ role: string; content: string }>;
    expect(repair.at(-2)).toEqual({ role: "assistant", content: "Sure! {title: 'oops'" });
    expect(repair.at(-1)?.content).toMatch(/not the JSON asked for/);
    // Both calls count: 12 + 50 prompt, 3 + 9 completion.
    expect(r.usage).toMatchObject({ promptTokens: 62, completionTokens: 12 });
    expect(usageStore.entries()).toHaveLength(2);
  });

  it("sends json_object for a plain JSON request and reads a fenced reply", async () => {
    handlers = [completion('```json\n{"ok":true}\n```')];
    const { p } = provider();
    const r = await p.write({ task: "meta", data: brief, json: true, usage: { skill: "optimization.OptimizeMeta" } });
    expect(r.json).toEqual({ ok: true });
    expect(received[0]?.body.response_format).toEqual({ type: "json_object" });
  });

  it("waits what Retry-After asks after a 429, then succeeds", async () => {
    handlers = [reply({ error: { message: "slow down" } }, 429, { "retry-after": "2" }), completion("Done.")];
    const { p, sleeps } = provider();
    const r = await p.write({ task: "paragraph", data: { topic: "x" }, usage: { skill: "s" } });
    expect(r.text).toBe("Done.");
    expect(received).toHaveLength(2);
    expect(sleeps).toEqual([2000]);
  });

  it("gives up after the configured attempts of 500s, backing off with jitter", async () => {
    handlers = [reply({ error: { message: "boom" } }, 500)];
    const { p, sleeps, usageStore } = provider({ MESH_MODEL_MAX_ATTEMPTS: "3" });
    const err = await p
      .write({ task: "paragraph", data: { topic: "x" }, usage: { skill: "s" } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelHttpError);
    expect((err as ModelHttpError).status).toBe(500);
    expect((err as Error).message).toContain("boom");
    expect(modelErrorCode(err)).toBe(Code.Unavailable);
    expect(received).toHaveLength(3);
    // Full jitter: retry n waits at most 10 ms × 2^(n−1).
    expect(sleeps).toHaveLength(2);
    expect(sleeps[0]).toBeLessThanOrEqual(10);
    expect(sleeps[1]).toBeLessThanOrEqual(20);
    expect(usageStore.entries()).toEqual([]);
  });

  it("does not retry a 400", async () => {
    handlers = [reply({ error: { message: "unknown model" } }, 400)];
    const { p } = provider();
    const err = await p
      .write({ task: "paragraph", data: { topic: "x" }, usage: { skill: "s" } })
      .catch((e: unknown) => e);
    expect((err as ModelHttpError).status).toBe(400);
    expect(modelErrorCode(err)).toBe(Code.FailedPrecondition);
    expect(received).toHaveLength(1);
  });

  it("times an attempt out and retries it", async () => {
    handlers = [() => undefined]; // never answers
    const { p } = provider({ MESH_MODEL_TIMEOUT_MS: "150", MESH_MODEL_MAX_ATTEMPTS: "2" });
    const err = await p
      .write({ task: "paragraph", data: { topic: "x" }, usage: { skill: "s" } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelTimeoutError);
    expect(modelErrorCode(err)).toBe(Code.DeadlineExceeded);
    expect(received).toHaveLength(2);
    server.closeAllConnections();
  });

  it("reports an unreachable server after its attempts", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const config = loadConfig(
      {},
      { MESH_MODEL_BASE_URL: `http://127.0.0.1:${port}/v1`, MESH_MODEL_NAME: "m", MESH_MODEL_MAX_ATTEMPTS: "2" },
    ).model;
    const p = createModelProvider({ config, sleep: async () => undefined });
    const err = await p
      .write({ task: "paragraph", data: { topic: "x" }, usage: { skill: "s" } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelUnavailableError);
  });
});

describe("budgets", () => {
  it("refuses a call that could exceed the run's token budget before any request leaves", async () => {
    handlers = [completion("never sent")];
    const { p, usageStore } = provider({ MESH_MODEL_RUN_TOKEN_BUDGET: "1000" });
    // The call may need its prompt plus all of max_tokens (1200), more than the run's 1000.
    const err = await p
      .write({
        task: "article",
        data: brief,
        maxTokens: 1200,
        usage: { skill: "writing.WriteArticle", runId: "run-7" },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BudgetExceededError);
    expect((err as BudgetExceededError).breach).toMatchObject({
      scope: "run",
      measure: "tokens",
      limit: 1000,
      spent: 0,
    });
    expect(modelErrorCode(err)).toBe(Code.ResourceExhausted);
    expect(received).toEqual([]);
    expect(usageStore.entries()).toEqual([]);
  });

  it("refuses a call once the day's cost is spent, counting what was recorded today", async () => {
    handlers = [completion("never sent")];
    const { p, usageStore } = provider({ MESH_MODEL_DAY_COST_BUDGET: "5" });
    await usageStore.record({
      skill: "writing.WriteArticle",
      runId: "",
      provider: "openai",
      model: "test-model",
      promptTokens: 1000,
      completionTokens: 2000,
      cost: 4.999,
      estimated: false,
      at: new Date(utcDayStart(new Date()).getTime() + 1000),
    });
    // Any call costs more than the 0.001 left: 2048 max tokens alone are 4.096.
    const err = await p
      .write({ task: "paragraph", data: { topic: "x" }, usage: { skill: "s" } })
      .catch((e: unknown) => e);
    expect((err as BudgetExceededError).breach).toMatchObject({ scope: "day", measure: "cost", limit: 5 });
    expect(received).toEqual([]);
  });

  it("records usage per skill and run, and lets calls through while within budget", async () => {
    handlers = [completion("One."), completion("Two.", { prompt_tokens: 20, completion_tokens: 5 })];
    const { p, usageStore } = provider({ MESH_MODEL_RUN_TOKEN_BUDGET: "5000" });
    await p.write({
      task: "paragraph",
      data: { topic: "x" },
      maxTokens: 100,
      usage: { skill: "research.IdeateTopics", runId: "r" },
    });
    await p.write({
      task: "paragraph",
      data: { topic: "y" },
      maxTokens: 100,
      usage: { skill: "writing.WriteArticle", runId: "r" },
    });
    const since = new Date(0);
    expect(await usageStore.totals({ since, runId: "r" })).toMatchObject({ tokens: 15 + 25, calls: 2 });
    expect((await usageStore.bySkill({ since, runId: "r" })).map((s) => [s.skill, s.tokens])).toEqual([
      ["writing.WriteArticle", 25],
      ["research.IdeateTopics", 15],
    ]);
  });
});
