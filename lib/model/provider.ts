/**
 * The model provider skills use: one backend (the OpenAI-compatible client when a base URL is
 * configured, else the built-in writer) behind budgets, usage records and JSON handling. Every call
 * is checked against the budgets before anything is sent, and its usage recorded after it returns.
 * A JSON reply that does not parse or fit its schema gets one repair request (a language model
 * only: the built-in writer would answer the same again).
 */
import type { ModelConfig } from "../config/index.ts";
import { type Budget, createBudget } from "./budget.ts";
import { createBuiltinBackend } from "./builtin.ts";
import { ModelOutputError } from "./errors.ts";
import { parseJsonReply, validateJson } from "./json.ts";
import { createOpenAiBackend } from "./openai.ts";
import { estimatePromptTokens, estimateTokens } from "./tokens.ts";
import type {
  ChatMessage,
  Completion,
  ModelBackend,
  ModelProvider,
  RawUsage,
  Usage,
  WriteRequest,
  WriteResult,
  WriteStream,
} from "./types.ts";
import { createMemoryUsageStore, type UsageStore } from "./usage-store.ts";

/** Options of {@link createModelProvider}. */
export interface ModelProviderOptions {
  /** `config.model` of the mesh configuration. */
  readonly config: ModelConfig;
  /** Where usage is recorded and budgets summed from (default: in memory, this process only). */
  readonly usageStore?: UsageStore;
  /** A backend of one's own instead of the configured one. */
  readonly backend?: ModelBackend;
  /** fetch of the OpenAI-compatible client (tests). */
  readonly fetch?: typeof fetch;
  /** Waits between retries (tests record the delays instead of waiting). */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Base delay of the retry backoff (default 500 ms). */
  readonly retryBaseDelayMs?: number;
  /** Clock of the day budget and the usage records. */
  readonly now?: () => Date;
}

/** The provider `opts.config` describes. */
export function createModelProvider(opts: ModelProviderOptions): ModelProvider {
  const cfg = opts.config;
  const backend =
    opts.backend ??
    (cfg.baseUrl === undefined
      ? createBuiltinBackend()
      : createOpenAiBackend({
          baseUrl: cfg.baseUrl,
          model: cfg.name,
          apiKey: cfg.apiKey,
          timeoutMs: cfg.timeoutMs,
          maxAttempts: cfg.maxAttempts,
          ...(opts.retryBaseDelayMs === undefined ? {} : { baseDelayMs: opts.retryBaseDelayMs }),
          ...(opts.fetch === undefined ? {} : { fetch: opts.fetch }),
          ...(opts.sleep === undefined ? {} : { sleep: opts.sleep }),
        }));
  const now = opts.now ?? (() => new Date());
  const free = backend.kind === "builtin";
  const budget: Budget = createBudget(
    {
      runTokens: cfg.runTokenBudget,
      dayTokens: cfg.dayTokenBudget,
      runCost: cfg.runCostBudget,
      dayCost: cfg.dayCostBudget,
      // The built-in writer costs nothing; its tokens still count against the token budgets.
      pricePromptPer1k: free ? 0 : cfg.pricePromptPer1k,
      priceCompletionPer1k: free ? 0 : cfg.priceCompletionPer1k,
    },
    opts.usageStore ?? createMemoryUsageStore(),
    now,
  );

  function checkRequest(request: WriteRequest): number {
    if (typeof request.task !== "string" || request.task.trim() === "") throw new TypeError("task must be a word");
    if (typeof request.usage?.skill !== "string" || request.usage.skill === "") {
      throw new TypeError("usage.skill must name the calling skill");
    }
    const maxTokens = request.maxTokens ?? cfg.maxTokens;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError("maxTokens must be a positive integer");
    return maxTokens;
  }

  function usageOf(reported: RawUsage | undefined, promptEstimate: number, text: string): Usage {
    const promptTokens = reported?.promptTokens ?? promptEstimate;
    const completionTokens = reported?.completionTokens ?? estimateTokens(text);
    return {
      promptTokens,
      completionTokens,
      totalTokens: promptTokens + completionTokens,
      cost: budget.costOf(promptTokens, completionTokens),
      estimated: reported === undefined,
    };
  }

  function add(a: Usage | undefined, b: Usage): Usage {
    if (a === undefined) return b;
    return {
      promptTokens: a.promptTokens + b.promptTokens,
      completionTokens: a.completionTokens + b.completionTokens,
      totalTokens: a.totalTokens + b.totalTokens,
      cost: a.cost + b.cost,
      estimated: a.estimated || b.estimated,
    };
  }

  async function record(
    request: WriteRequest,
    usage: Usage,
    settle: (e: Parameters<UsageStore["record"]>[0]) => Promise<void>,
  ) {
    await settle({
      skill: request.usage.skill,
      runId: request.usage.runId ?? "",
      provider: backend.kind,
      model: backend.model,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      cost: usage.cost,
      estimated: usage.estimated,
      at: now(),
    });
  }

  /** One budgeted, recorded backend call. */
  async function call(request: WriteRequest, messages: readonly ChatMessage[], maxTokens: number) {
    const promptEstimate = estimatePromptTokens(messages);
    const reservation = await budget.reserve(request.usage, promptEstimate, maxTokens);
    let completion: Completion;
    try {
      completion = await backend.complete(request, messages, maxTokens);
    } catch (err) {
      reservation.release();
      throw err;
    }
    const usage = usageOf(completion.usage, promptEstimate, completion.text);
    await record(request, usage, (e) => reservation.settle(e));
    return { completion, usage };
  }

  /** The parsed JSON of `text`, or why it is not what was asked for. */
  function parseFor(request: WriteRequest, text: string): { ok: true; value: unknown } | { ok: false; error: string } {
    const parsed = parseJsonReply(text);
    if (!parsed.ok || request.json === undefined || request.json === true) return parsed;
    const problems = validateJson(parsed.value, request.json.schema);
    return problems.length === 0 ? parsed : { ok: false, error: problems.join("; ") };
  }

  function result(completion: Completion, usage: Usage, json: unknown): WriteResult {
    return {
      text: completion.text,
      json,
      provider: backend.kind,
      model: backend.model,
      finishReason: completion.finishReason,
      usage,
    };
  }

  return {
    kind: backend.kind,
    model: backend.model,

    async write(request) {
      const maxTokens = checkRequest(request);
      const messages = backend.messagesFor(request);
      const first = await call(request, messages, maxTokens);
      if (request.json === undefined) return result(first.completion, first.usage, undefined);
      const parsed = parseFor(request, first.completion.text);
      if (parsed.ok) return result(first.completion, first.usage, parsed.value);
      if (backend.kind === "builtin")
        throw new ModelOutputError(`the built-in writer's reply is not the JSON asked for: ${parsed.error}`);
      const repair: ChatMessage[] = [
        ...messages,
        { role: "assistant", content: first.completion.text },
        {
          role: "user",
          content: `That reply is not the JSON asked for (${parsed.error.slice(0, 500)}). Reply again with only the corrected JSON object.`,
        },
      ];
      const second = await call(request, repair, maxTokens);
      const usage = add(first.usage, second.usage);
      const reparsed = parseFor(request, second.completion.text);
      if (!reparsed.ok)
        throw new ModelOutputError(
          `model reply is not the JSON asked for, even after a repair request: ${reparsed.error}`,
        );
      return result(second.completion, usage, reparsed.value);
    },

    stream(request) {
      let settle!: (r: WriteResult) => void;
      let fail!: (err: unknown) => void;
      const done = new Promise<WriteResult>((resolve, reject) => {
        settle = resolve;
        fail = reject;
      });
      // A caller that only iterates must not see an unhandled rejection of `result`.
      done.catch(() => undefined);
      let started = false;

      async function* run(): AsyncGenerator<string> {
        const maxTokens = checkRequest(request);
        const messages = backend.messagesFor(request);
        const promptEstimate = estimatePromptTokens(messages);
        const reservation = await budget.reserve(request.usage, promptEstimate, maxTokens);
        let text = "";
        let finishReason = "stop";
        let reported: RawUsage | undefined;
        let recorded = false;
        let usage: Usage;
        try {
          for await (const ev of backend.stream(request, messages, maxTokens)) {
            if (ev.type === "delta") {
              text += ev.text;
              yield ev.text;
            } else if (ev.type === "finish") finishReason = ev.reason;
            else reported = ev.usage;
          }
          usage = usageOf(reported, promptEstimate, text);
          recorded = true;
          await record(request, usage, (e) => reservation.settle(e));
        } finally {
          if (!recorded) {
            // Broken or abandoned: the server may have billed it, so what it sent so far is recorded, estimated.
            await record(request, usageOf(undefined, promptEstimate, text), (e) => reservation.settle(e)).catch(() =>
              reservation.release(),
            );
          }
        }
        let json: unknown;
        if (request.json !== undefined) {
          const parsed = parseFor(request, text);
          if (!parsed.ok) throw new ModelOutputError(`streamed reply is not the JSON asked for: ${parsed.error}`);
          json = parsed.value;
        }
        settle(result({ text, finishReason, usage: reported }, usage, json));
      }

      const stream: WriteStream = {
        result: done,
        [Symbol.asyncIterator]() {
          if (started) throw new Error("a model stream can be iterated once");
          started = true;
          const it = run();
          return {
            async next() {
              try {
                return await it.next();
              } catch (err) {
                fail(err);
                throw err;
              }
            },
            async return() {
              const r = await it.return(undefined);
              fail(new Error("model stream abandoned before its end"));
              return r;
            },
          };
        },
      };
      return stream;
    },
  };
}
