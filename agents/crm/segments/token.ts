/**
 * Page tokens of segment member lists: the last contact id of a page, the evaluation time the pages
 * are consistent at, and a scope (a hash of the request's definition) so a token is not reused with
 * other rules. Opaque base64url JSON, like the read API's keyset tokens (contacts/page-token.ts).
 */
import { createHash } from "node:crypto";
import { InvalidInputError } from "../../../lib/errors/index.ts";

/** Where the next page starts. */
export interface MemberPosition {
  /** Last contact id of the previous page. */
  readonly afterId: string;
  /** Evaluation time of the first page, ISO 8601 (kept so later pages see the same windows). */
  readonly asOf: string;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A short digest of what a list depends on. */
export function scopeOf(...parts: readonly (string | Uint8Array)[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\u0000");
  return h.digest("base64url").slice(0, 22);
}

/** Encodes the position after `afterId`. */
export function encodeMemberToken(scope: string, pos: MemberPosition): string {
  return Buffer.from(JSON.stringify({ s: scope, i: pos.afterId, t: pos.asOf })).toString("base64url");
}

/** Decodes a token of {@link encodeMemberToken}; undefined for ""; INVALID_ARGUMENT when not ours. */
export function decodeMemberToken(scope: string, token: string, field = "page_token"): MemberPosition | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new InvalidInputError(field, "is not a page token of this list");
  }
  const t = parsed as { s?: unknown; i?: unknown; t?: unknown } | null;
  if (
    t === null ||
    typeof t !== "object" ||
    t.s !== scope ||
    typeof t.i !== "string" ||
    !uuid.test(t.i) ||
    typeof t.t !== "string" ||
    Number.isNaN(Date.parse(t.t))
  ) {
    throw new InvalidInputError(field, "is not a page token of this list");
  }
  return { afterId: t.i, asOf: t.t };
}

/** Encodes the position after the row with key `last` in a list ordered by a text key. */
export function encodeKeyToken(scope: string, last: string): string {
  return Buffer.from(JSON.stringify({ s: scope, k: last })).toString("base64url");
}

/** Decodes a token of {@link encodeKeyToken} whose key must match `pattern`; undefined for "". */
export function decodeKeyToken(
  scope: string,
  token: string,
  pattern: RegExp,
  field = "page_token",
): string | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new InvalidInputError(field, "is not a page token of this list");
  }
  const t = parsed as { s?: unknown; k?: unknown } | null;
  if (t === null || typeof t !== "object" || t.s !== scope || typeof t.k !== "string" || !pattern.test(t.k)) {
    throw new InvalidInputError(field, "is not a page token of this list");
  }
  return t.k;
}
