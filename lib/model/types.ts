/**
 * The model provider's vocabulary: what a skill asks for (a task kind with its structured data),
 * what it gets back (text, parsed JSON, usage) and the two backends behind one interface.
 */

/** One chat message of the OpenAI chat-completions API. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** A JSON Schema the reply must satisfy (the subset {@link validateJson} checks; see json.ts). */
export type JsonSchema = Readonly<Record<string, unknown>>;

/** Ask for JSON: any JSON object, or one satisfying a named schema (`response_format: json_schema`). */
export type JsonRequest = true | { readonly name: string; readonly schema: JsonSchema };

/** Who is spending: budgets and usage records are kept per skill and workflow run. */
export interface UsageScope {
  /** The calling skill, `agent.Method` by convention (e.g. `writing.WriteArticle`). */
  readonly skill: string;
  /** The workflow run the call serves; omitted outside a run (then only the day's budget applies). */
  readonly runId?: string;
}

/** What a skill asks the provider to write. */
export interface WriteRequest {
  /**
   * The kind of text: `article`, `outline`, `meta`, `summary`, `press_release`, `alt_text`,
   * `paragraph`, or any other word (the built-in writer then renders the data's facts; see builtin.ts).
   */
  readonly task: string;
  /** The structured input: a brief, a page, facts. JSON-serialisable. */
  readonly data: Readonly<Record<string, unknown>>;
  /** Extra guidance for a language model (the built-in writer ignores it). */
  readonly instructions?: string;
  /** Explicit messages for a language model instead of the generated prompt (the built-in writer ignores them). */
  readonly messages?: readonly ChatMessage[];
  /** Ask for a JSON reply, parsed (and checked against the schema when given) into {@link WriteResult.json}. */
  readonly json?: JsonRequest;
  /** Completion tokens the call may use; defaults to the configured maximum. */
  readonly maxTokens?: number;
  /** Sampling temperature for a language model (default the server's). */
  readonly temperature?: number;
  /** Whose budget pays. */
  readonly usage: UsageScope;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
}

/** Tokens and cost of one call (or of a call and its JSON repair, summed). */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** prompt × price + completion × price, per 1000 tokens. */
  cost: number;
  /** True when the tokens were estimated (~4 characters a token) rather than reported by the server. */
  estimated: boolean;
}

/** What a call produced. */
export interface WriteResult {
  /** The text written (for a JSON request, the JSON text). */
  text: string;
  /** The parsed reply of a JSON request; undefined otherwise. */
  json: unknown;
  /** `builtin` or `openai`. */
  provider: ProviderKind;
  /** The model that wrote it. */
  model: string;
  /** Why generation stopped: `stop`, `length`, … (`stop` for the built-in writer). */
  finishReason: string;
  usage: Usage;
}

/** A streamed call: iterate the text deltas as they arrive; `result` settles when the stream ends. */
export interface WriteStream extends AsyncIterable<string> {
  /** The assembled result; rejects when the call fails. Settles only once the deltas are consumed. */
  readonly result: Promise<WriteResult>;
}

/** The provider skills use. */
export interface ModelProvider {
  /** `builtin` or `openai`. */
  readonly kind: ProviderKind;
  /** Model name. */
  readonly model: string;
  /** Writes the text in one response. */
  write(request: WriteRequest): Promise<WriteResult>;
  /** Writes the text as a stream of deltas (JSON requests are not streamed: use {@link write}). */
  stream(request: WriteRequest): WriteStream;
}

/** Which backend wrote a text. */
export type ProviderKind = "builtin" | "openai";

/** Token counts as a backend reports them; undefined fields are estimated by the provider. */
export interface RawUsage {
  promptTokens: number;
  completionTokens: number;
}

/** One completed backend call. */
export interface Completion {
  text: string;
  finishReason: string;
  /** Reported by the server; undefined when it reported none. */
  usage: RawUsage | undefined;
}

/** One event of a backend stream. */
export type StreamEvent =
  | { readonly type: "delta"; readonly text: string }
  | { readonly type: "finish"; readonly reason: string }
  | { readonly type: "usage"; readonly usage: RawUsage };

/** A backend: one call, no budgets, no JSON parsing (the provider adds both). */
export interface ModelBackend {
  readonly kind: ProviderKind;
  readonly model: string;
  /** The messages a call sends (what the budget estimates prompt tokens from). */
  messagesFor(request: WriteRequest): ChatMessage[];
  /** One non-streamed call. */
  complete(request: WriteRequest, messages: readonly ChatMessage[], maxTokens: number): Promise<Completion>;
  /** One streamed call. */
  stream(request: WriteRequest, messages: readonly ChatMessage[], maxTokens: number): AsyncIterable<StreamEvent>;
}
