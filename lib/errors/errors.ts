/**
 * Domain errors and their mapping to Connect codes, in one place. Agent code throws these (or a
 * ConnectError); anything else becomes INTERNAL with a reference id, and the original error is
 * logged on the server, never sent.
 */
import { randomUUID } from "node:crypto";
import { toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { outageOf, unavailable } from "./outage.ts";

/** A detail the server attaches itself (not one decoded from a peer's error). */
type OutgoingDetail = NonNullable<ConstructorParameters<typeof ConnectError>[3]>[number];

/** The request is well-formed but a value is unusable; `field` is the field path. */
export class InvalidInputError extends Error {
  override name = "InvalidInputError";
  /** Field path such as `keywords[3].keyword`. */
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** A referenced entity does not exist. */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/** The entity exists but is not in a state that allows the operation. */
export class FailedPreconditionError extends Error {
  override name = "FailedPreconditionError";
}

/** A concurrent change won (optimistic locking) or the request id was reused with other input. */
export class ConflictError extends Error {
  override name = "ConflictError";
}

/**
 * Longest error message sent, in characters. gRPC sends the message (percent-encoded, so up to three
 * times longer) and the details (base64) in HTTP/2 trailers, which peers cap at a few to 16 KiB.
 */
export const maxErrorMessageChars = 1024;
/** Most bytes of encoded error details sent; details past it are dropped. */
export const maxErrorDetailBytes = 4096;

/** `message` cut to {@link maxErrorMessageChars}. */
function capMessage(message: string): string {
  return message.length <= maxErrorMessageChars
    ? message
    : `${message.slice(0, maxErrorMessageChars - 14)} … (truncated)`;
}

/** The leading details whose encoding fits {@link maxErrorDetailBytes} together. */
function capDetails(details: OutgoingDetail[]): OutgoingDetail[] {
  const kept: OutgoingDetail[] = [];
  let bytes = 0;
  for (const d of details) {
    bytes += toBinary(d.desc, d.value as never).byteLength;
    if (bytes > maxErrorDetailBytes) break;
    kept.push(d);
  }
  return kept;
}

/**
 * Maps any thrown value to a ConnectError safe to send, its message and details within
 * {@link maxErrorMessageChars} and {@link maxErrorDetailBytes}; `onInternal` sees unexpected errors.
 */
export function toConnectError(err: unknown, onInternal: (err: unknown, ref: string) => void): ConnectError {
  const mapped = mapError(err, onInternal);
  const details = mapped.details.filter((d): d is OutgoingDetail => "desc" in d);
  const capped = capDetails(details);
  if (mapped.rawMessage.length <= maxErrorMessageChars && capped.length === details.length) return mapped;
  return new ConnectError(capMessage(mapped.rawMessage), mapped.code, mapped.metadata, capped);
}

function mapError(err: unknown, onInternal: (err: unknown, ref: string) => void): ConnectError {
  if (err instanceof ConnectError) {
    if (err.code === Code.Internal || err.code === Code.Unknown) {
      const ref = randomUUID();
      onInternal(err, ref);
      return new ConnectError(`internal error (ref ${ref})`, err.code);
    }
    // Keep code, message, details and metadata; drop the cause (it never leaves the server anyway).
    const details = err.details.filter((d): d is OutgoingDetail => "desc" in d);
    return new ConnectError(err.rawMessage, err.code, err.metadata, details);
  }
  if (err instanceof InvalidInputError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof NotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof FailedPreconditionError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof ConflictError) return new ConnectError(err.message, Code.Aborted);
  if (err instanceof Error && err.name === "AbortError") return new ConnectError("call cancelled", Code.Canceled);
  const dependency = outageOf(err);
  if (dependency !== undefined) return unavailable(dependency);
  const ref = randomUUID();
  onInternal(err, ref);
  return new ConnectError(`internal error (ref ${ref})`, Code.Internal);
}
