/**
 * The token estimator budgets use when no server counts: about four characters a token (OpenAI's
 * rule of thumb for English), plus a few tokens of framing per chat message. It over-counts code and
 * under-counts some languages a little; budgets only need the same yardstick before and after a call.
 */
import type { ChatMessage } from "./types.ts";

/** Characters per token the estimator assumes. */
export const charsPerToken = 4;
/** Tokens of framing (role, separators) counted per message, as the chat format adds them. */
export const tokensPerMessage = 4;

/** Estimated tokens of `text`: ⌈characters / 4⌉ (0 for the empty string). */
export function estimateTokens(text: string): number {
  return Math.ceil([...text].length / charsPerToken);
}

/** Estimated prompt tokens of `messages`: their text plus {@link tokensPerMessage} each, plus 3 for the reply's priming. */
export function estimatePromptTokens(messages: readonly ChatMessage[]): number {
  let n = 3;
  for (const m of messages) n += tokensPerMessage + estimateTokens(m.content);
  return n;
}
