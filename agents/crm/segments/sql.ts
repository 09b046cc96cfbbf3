/** Shared pieces of the segment compilers: SQL fragments with their parameters, and count windows. */
import { InvalidInputError } from "../../../lib/errors/index.ts";

/** A piece of SQL with its `?` parameters, in order. */
export interface SqlFragment {
  readonly sql: string;
  readonly params: readonly unknown[];
}

/** What a compilation needs besides the tree. */
export interface CompileContext {
  /** Evaluation time of windows and WITHIN_LAST. */
  readonly asOf: Date;
  /** Quoted schema of the CRM's tables, for example `"operations"`. */
  readonly schema: string;
}

/** Milliseconds of a protobuf Duration. */
export function durationMs(d: { seconds: bigint; nanos: number } | undefined): number {
  return d === undefined ? 0 : Number(d.seconds) * 1000 + Math.trunc(d.nanos / 1e6);
}

/** The (as_of − within, as_of] window of a count over `column`; all history up to as_of when unset. */
export function windowSql(
  column: string,
  within: { seconds: bigint; nanos: number } | undefined,
  path: string,
  ctx: CompileContext,
): SqlFragment {
  const ms = durationMs(within);
  if (ms < 0) throw new InvalidInputError(path, "must not be negative");
  if (ms === 0) return { sql: `${column} <= ?::timestamptz`, params: [ctx.asOf.toISOString()] };
  return {
    sql: `${column} > ?::timestamptz and ${column} <= ?::timestamptz`,
    params: [new Date(ctx.asOf.getTime() - ms).toISOString(), ctx.asOf.toISOString()],
  };
}
