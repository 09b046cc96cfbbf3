/**
 * The scope of the inbound call a piece of code runs for: its deadline, cancellation signal and
 * caller. The server sets it around every handler; the mesh client reads it so outgoing calls
 * inherit the remaining time and are cancelled with the call that caused them.
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** What an inbound call hands down to the calls it makes. */
export interface CallScope {
  /** Absolute deadline (ms since epoch), or undefined when the caller set none. */
  deadline: number | undefined;
  /** Aborted when the inbound call is cancelled or times out. */
  signal: AbortSignal;
  /** Name of the authenticated caller, when known. */
  caller: string | undefined;
}

const storage = new AsyncLocalStorage<CallScope>();

/** Runs `fn` inside `scope`. */
export function runInCallScope<T>(scope: CallScope, fn: () => T): T {
  return storage.run(scope, fn);
}

/** The scope of the inbound call being handled, if any. */
export function currentCallScope(): CallScope | undefined {
  return storage.getStore();
}

/**
 * Parses the deadline an inbound request carries: gRPC `grpc-timeout` (`100m`, `5S`, …) or
 * Connect `connect-timeout-ms`. Returns an absolute time, or undefined when there is none.
 */
export function deadlineFromHeaders(header: Headers, now = Date.now()): number | undefined {
  const connect = header.get("connect-timeout-ms");
  if (connect !== null && /^\d{1,10}$/.test(connect)) return now + Number(connect);
  const grpc = header.get("grpc-timeout");
  const m = grpc === null ? null : /^(\d{1,8})([HMSmun])$/.exec(grpc);
  if (m === null) return undefined;
  const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
  return now + Number(m[1]) * (unitMs[m[2] as string] ?? 1);
}
