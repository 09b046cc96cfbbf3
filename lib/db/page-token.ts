/**
 * Keyset page tokens: the sort key of the last row of a page, as opaque base64url JSON. A keyset
 * (rather than an offset) keeps pages stable while rows are added and costs one index seek per page.
 */
import { InvalidInputError } from "../errors/index.ts";

/** Largest page any list of the read API returns. */
export const maxPageSize = 500;
/** Page size when the request says 0. */
export const defaultPageSize = 50;

/** Position after which the next page starts: a PostgreSQL timestamptz literal and a row id. */
export interface Keyset {
  /** Timestamp of the last row as PostgreSQL printed it (microsecond precision kept). */
  at: string;
  /** Id of the last row (UUID). */
  id: string;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const pgTimestamp = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2})?$/;

/** The effective page size of a request (0 → default); the contract bounds it already. */
export function pageSizeOf(requested: number, field = "page_size"): number {
  if (requested < 0 || requested > maxPageSize) throw new InvalidInputError(field, `must be 0–${maxPageSize}`);
  return requested === 0 ? defaultPageSize : requested;
}

/** Encodes the position after `last`, bound to a list (`scope`) so a token is not reused elsewhere. */
export function encodePageToken(scope: string, last: Keyset): string {
  return Buffer.from(JSON.stringify({ s: scope, a: last.at, i: last.id })).toString("base64url");
}

/** Decodes a token of {@link encodePageToken}; undefined for ""; INVALID_ARGUMENT when it is not ours. */
export function decodePageToken(scope: string, token: string, field = "page_token"): Keyset | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new InvalidInputError(field, "is not a page token of this list");
  }
  const t = parsed as { s?: unknown; a?: unknown; i?: unknown };
  if (
    t === null ||
    typeof t !== "object" ||
    t.s !== scope ||
    typeof t.a !== "string" ||
    typeof t.i !== "string" ||
    !pgTimestamp.test(t.a) ||
    !uuid.test(t.i)
  ) {
    throw new InvalidInputError(field, "is not a page token of this list");
  }
  return { at: t.a, id: t.i };
}
