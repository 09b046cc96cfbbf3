/**
 * Errors that mean a dependency (PostgreSQL, NATS) cannot be reached right now, as opposed to a
 * defect: they answer UNAVAILABLE with RetryInfo — a caller may retry, and the mesh client does for
 * idempotent skills — instead of INTERNAL.
 */
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";

/** Socket errors of a connection that could not be made or was lost. */
const socketCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "EAI_AGAIN",
]);
/** PostgreSQL SQLSTATEs of a server going away or not accepting connections yet. */
const postgresCodes = new Set(["57P01", "57P02", "57P03", "53300"]);
/** Messages of the pg pool and client when the server is gone. */
const lostConnection =
  /Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect/i;
/** Stack frames of the drivers: an error is an outage of ours only when one of them raised it. */
const databaseFrames = /node_modules[\\/](?:pg|pg-pool|@mikro-orm)[\\/]/;
const busFrames = /node_modules[\\/]@nats-io[\\/]/;

/**
 * Which dependency an outage error comes from, or undefined when `err` is not an outage of the
 * database or the message bus (a refused connection to a site a skill fetches is not one).
 */
export function outageOf(err: unknown): "database" | "message bus" | undefined {
  const seen = new Set<unknown>();
  for (let e: unknown = err; e instanceof Error && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const code = String((e as { code?: unknown }).code ?? "");
    const frames = e.stack ?? "";
    if (e.name === "ConnectionException") return "database"; // MikroORM's wrapper of a lost connection
    if (postgresCodes.has(code) || (/^08[0-9A-Z]{3}$/.test(code) && databaseFrames.test(frames))) return "database";
    if (socketCodes.has(code) || lostConnection.test(e.message) || /ConnectionError|ClosedConnection/.test(e.name)) {
      if (databaseFrames.test(frames)) return "database";
      if (busFrames.test(frames)) return "message bus";
    }
  }
  return undefined;
}

/**
 * A retryable refusal: ConnectError `code` with a `retry-after` header (whole seconds, at least 1)
 * and a google.rpc.RetryInfo detail of `waitMs`.
 */
export function retryAfter(message: string, code: Code, waitMs: number): ConnectError {
  const seconds = BigInt(Math.floor(waitMs / 1000));
  const nanos = (waitMs % 1000) * 1_000_000;
  return new ConnectError(message, code, { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))) }, [
    {
      desc: RetryInfoSchema,
      value: create(RetryInfoSchema, { retryDelay: create(DurationSchema, { seconds, nanos }) }),
    },
  ]);
}

/** UNAVAILABLE for an outage of `dependency`, with a one-second RetryInfo and `retry-after`. */
export function unavailable(dependency: string): ConnectError {
  return retryAfter(`the ${dependency} this call needs is unreachable right now; retry later`, Code.Unavailable, 1000);
}
