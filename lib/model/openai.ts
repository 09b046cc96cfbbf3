/**
 * A client of the OpenAI chat-completions API (`POST {baseUrl}/chat/completions`), which hosted
 * APIs and local servers (llama.cpp, vLLM, Ollama, LM Studio) all speak. Node's fetch, no SDK.
 * Each attempt has a timeout (for a stream: the longest silence between chunks); 408, 429, 5xx,
 * network errors and timeouts are retried with exponential backoff and full jitter, waiting what a
 * `Retry-After` (or `retry-after-ms`) header asks instead when there is one; other 4xx are not
 * retried. A stream is retried only until its first chunk. Bodies are read up to a byte limit.
 */
import { sleep as defaultSleep, fullJitterDelay } from "../transport/index.ts";
import { ModelError, ModelHttpError, ModelTimeoutError, ModelUnavailableError } from "./errors.ts";
import type { ChatMessage, Completion, ModelBackend, RawUsage, StreamEvent, WriteRequest } from "./types.ts";

/** Options of {@link createOpenAiBackend}. */
export interface OpenAiOptions {
  /** API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`. */
  readonly baseUrl: string;
  /** Model name. */
  readonly model: string;
  /** Bearer key; omitted for servers that need none. */
  readonly apiKey?: string | undefined;
  /** Longest one attempt may take; for a stream, the longest silence between chunks. */
  readonly timeoutMs: number;
  /** Attempts in all, the first included. */
  readonly maxAttempts: number;
  /** Base of the exponential backoff (default 500 ms). */
  readonly baseDelayMs?: number;
  /** Cap of one backoff delay (default 8 s). */
  readonly maxDelayMs?: number;
  /** Cap of a wait a `Retry-After` header asks for (default 60 s). */
  readonly maxRetryAfterMs?: number;
  /** Largest response body read (default 8 MiB); a longer one fails the call. */
  readonly maxResponseBytes?: number;
  /** fetch to use (tests; default Node's). */
  readonly fetch?: typeof fetch;
  /** Waits between attempts (tests record the delays instead of waiting). */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Random source of the jitter. */
  readonly random?: () => number;
}

/** Bytes of an error body kept for the message. */
const errorBodyBytes = 4096;

/** Why an attempt failed, and whether another may follow. */
class AttemptFailure extends Error {
  readonly error: ModelError;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  constructor(error: ModelError, retryable: boolean, retryAfterMs?: number) {
    super(error.message);
    this.error = error;
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The wait a `retry-after-ms` or `Retry-After` (seconds or HTTP date) header asks for, if any. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.ceil(Number(ms));
  const raw = headers.get("retry-after")?.trim();
  if (raw === undefined || raw === "") return undefined;
  if (/^\d+$/.test(raw)) return Number(raw) * 1000;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The first `max` bytes of `body` as text; `fail` decides whether going over is an error. */
async function readBounded(body: ReadableStream<Uint8Array> | null, max: number, fail: boolean): Promise<string> {
  if (body === null) return "";
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      if (bytes > max) {
        if (fail) throw new ModelError(`model response larger than ${max} bytes`);
        text += decoder.decode(value.subarray(0, value.byteLength - (bytes - max)), { stream: true });
        break;
      }
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return text + decoder.decode();
}

/** The `error.message` of an OpenAI error body, or the body's start. */
function errorMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown } | string };
    const m = typeof parsed.error === "string" ? parsed.error : parsed.error?.message;
    if (typeof m === "string") return m.slice(0, 500);
  } catch {
    // Not JSON: the text itself says what went wrong.
  }
  return body.slice(0, 500);
}

function usageOf(raw: unknown): RawUsage | undefined {
  if (raw === null || typeof raw !== "object") return undefined;
  const u = raw as { prompt_tokens?: unknown; completion_tokens?: unknown };
  if (typeof u.prompt_tokens !== "number" || typeof u.completion_tokens !== "number") return undefined;
  return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens };
}

/** The messages a request sends: its own, or a system prompt for the task and the data as JSON. */
export function chatMessagesFor(request: WriteRequest): ChatMessage[] {
  if (request.messages !== undefined && request.messages.length > 0) return [...request.messages];
  const system = [
    `You write marketing content. Task: ${request.task}.`,
    "Use only the facts in the data you are given; do not invent numbers, names or claims.",
    "Write plain, readable English for the audience named in the data.",
    request.json === undefined ? "" : "Reply with a single JSON object and nothing else.",
    request.instructions ?? "",
  ]
    .filter(Boolean)
    .join("\n");
  return [
    { role: "system", content: system },
    { role: "user", content: JSON.stringify(request.data) },
  ];
}

/** The OpenAI-compatible backend. */
export function createOpenAiBackend(opts: OpenAiOptions): ModelBackend {
  const doFetch = opts.fetch ?? fetch;
  const wait = opts.sleep ?? defaultSleep;
  const random = opts.random ?? Math.random;
  const baseDelay = opts.baseDelayMs ?? 500;
  const maxDelay = opts.maxDelayMs ?? 8000;
  const maxRetryAfter = opts.maxRetryAfterMs ?? 60_000;
  const maxBytes = opts.maxResponseBytes ?? 8 * 1024 * 1024;
  const url = `${opts.baseUrl.replace(/\/+$/, "")}/chat/completions`;

  function bodyFor(request: WriteRequest, messages: readonly ChatMessage[], maxTokens: number, stream: boolean) {
    const body: Record<string, unknown> = { model: opts.model, messages, max_tokens: maxTokens };
    if (request.temperature !== undefined) body.temperature = request.temperature;
    if (request.json === true) body.response_format = { type: "json_object" };
    else if (request.json !== undefined) {
      body.response_format = {
        type: "json_schema",
        json_schema: { name: request.json.name, schema: request.json.schema, strict: false },
      };
    }
    if (stream) {
      body.stream = true;
      body.stream_options = { include_usage: true };
    }
    return JSON.stringify(body);
  }

  /**
   * One attempt up to the response headers. The returned `touch` restarts the timeout (a stream
   * calls it on every chunk) and `done` clears it; the timeout aborts the body read too.
   */
  async function send(
    payload: string,
    signal: AbortSignal | undefined,
  ): Promise<{ res: Response; touch(): void; done(): void; timedOut(): boolean }> {
    const ctl = new AbortController();
    let expired = false;
    let timer: NodeJS.Timeout | undefined;
    const touch = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        expired = true;
        ctl.abort(new ModelTimeoutError(`model server sent nothing for ${opts.timeoutMs} ms`));
      }, opts.timeoutMs);
    };
    const done = (): void => clearTimeout(timer);
    touch();
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
    if (opts.apiKey !== undefined) headers.authorization = `Bearer ${opts.apiKey}`;
    let res: Response;
    try {
      res = await doFetch(url, {
        method: "POST",
        headers,
        body: payload,
        redirect: "error",
        signal: signal === undefined ? ctl.signal : AbortSignal.any([ctl.signal, signal]),
      });
    } catch (err) {
      done();
      throw failureOf(err, expired, signal);
    }
    if (res.ok) return { res, touch, done, timedOut: () => expired };
    let text = "";
    try {
      text = await readBounded(res.body, errorBodyBytes, false);
    } catch {
      // The status says enough.
    } finally {
      done();
    }
    const s = res.status;
    const error = new ModelHttpError(s, `model server answered ${s}: ${errorMessage(text)}`);
    const retryable = s === 408 || s === 429 || s >= 500;
    const after = retryAfterMs(res.headers);
    throw new AttemptFailure(error, retryable, after === undefined ? undefined : Math.min(after, maxRetryAfter));
  }

  /** The failure an exception of fetch or of a body read stands for. */
  function failureOf(err: unknown, expired: boolean, signal: AbortSignal | undefined): Error {
    if (err instanceof AttemptFailure) return err;
    if (signal?.aborted) return signal.reason instanceof Error ? signal.reason : new ModelError("model call cancelled");
    if (expired)
      return new AttemptFailure(new ModelTimeoutError(`model server took longer than ${opts.timeoutMs} ms`), true);
    if (err instanceof ModelError) return new AttemptFailure(err, false);
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message ?? (err as Error).message;
    return new AttemptFailure(new ModelUnavailableError(`model server unreachable: ${detail}`), true);
  }

  /** Runs `attempt` until it succeeds, fails for good or the attempts are spent. */
  async function withRetries<T>(signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        if (!(err instanceof AttemptFailure)) throw err;
        if (!err.retryable || n >= opts.maxAttempts) throw err.error;
        await wait(err.retryAfterMs ?? fullJitterDelay(n, baseDelay, maxDelay, random), signal);
      }
    }
  }

  return {
    kind: "openai",
    model: opts.model,
    messagesFor: chatMessagesFor,

    complete(request, messages, maxTokens): Promise<Completion> {
      const payload = bodyFor(request, messages, maxTokens, false);
      return withRetries(request.signal, async () => {
        const { res, done, timedOut } = await send(payload, request.signal);
        let text: string;
        try {
          text = await readBounded(res.body, maxBytes, true);
        } catch (err) {
          throw failureOf(err, timedOut(), request.signal);
        } finally {
          done();
        }
        let parsed: { choices?: Array<{ message?: { content?: unknown }; finish_reason?: unknown }>; usage?: unknown };
        try {
          parsed = JSON.parse(text);
        } catch {
          throw new AttemptFailure(new ModelError("model server sent a body that is not JSON"), false);
        }
        const choice = parsed.choices?.[0];
        if (choice === undefined) throw new AttemptFailure(new ModelError("model server sent no choices"), false);
        const content = choice.message?.content;
        return {
          text: typeof content === "string" ? content : "",
          finishReason: typeof choice.finish_reason === "string" ? choice.finish_reason : "stop",
          usage: usageOf(parsed.usage),
        };
      });
    },

    async *stream(request, messages, maxTokens): AsyncIterable<StreamEvent> {
      const payload = bodyFor(request, messages, maxTokens, true);
      const opened = await withRetries(request.signal, () => send(payload, request.signal));
      const { res, touch, done, timedOut } = opened;
      if (res.body === null) {
        done();
        throw new ModelError("model server sent an empty stream");
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let data: string[] = [];
      let bytes = 0;
      try {
        for (;;) {
          let chunk: Awaited<ReturnType<typeof reader.read>>;
          try {
            chunk = await reader.read();
          } catch (err) {
            const failure = failureOf(err, timedOut(), request.signal);
            throw failure instanceof AttemptFailure ? failure.error : failure;
          }
          if (chunk.done) break;
          touch();
          bytes += chunk.value.byteLength;
          if (bytes > maxBytes) throw new ModelError(`model stream larger than ${maxBytes} bytes`);
          buffer += decoder.decode(chunk.value, { stream: true });
          let nl = buffer.search(/\r?\n/);
          while (nl >= 0) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(buffer[nl] === "\r" ? nl + 2 : nl + 1);
            nl = buffer.search(/\r?\n/);
            if (line === "") {
              // A blank line ends an event: its data lines joined by newlines.
              if (data.length === 0) continue;
              const payloadText = data.join("\n");
              data = [];
              if (payloadText.trim() === "[DONE]") return;
              yield* eventsOf(payloadText);
            } else if (line.startsWith("data:")) {
              data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines carry nothing the chat stream uses.
          }
        }
        if (data.length > 0 && data.join("\n").trim() !== "[DONE]") yield* eventsOf(data.join("\n"));
      } finally {
        done();
        await reader.cancel().catch(() => undefined);
      }
    },
  };
}

/** The events of one stream chunk (`chat.completion.chunk`). */
function* eventsOf(payload: string): Generator<StreamEvent> {
  let chunk: {
    choices?: Array<{ delta?: { content?: unknown }; finish_reason?: unknown }>;
    usage?: unknown;
    error?: { message?: unknown };
  };
  try {
    chunk = JSON.parse(payload);
  } catch {
    throw new ModelError("model stream sent a chunk that is not JSON");
  }
  if (chunk.error !== undefined) {
    throw new ModelError(`model stream failed: ${String(chunk.error.message ?? "unknown error").slice(0, 500)}`);
  }
  for (const choice of chunk.choices ?? []) {
    const content = choice.delta?.content;
    if (typeof content === "string" && content !== "") yield { type: "delta", text: content };
    if (typeof choice.finish_reason === "string") yield { type: "finish", reason: choice.finish_reason };
  }
  const usage = usageOf(chunk.usage);
  if (usage !== undefined) yield { type: "usage", usage };
}
