/**
 * Every call refused at authentication, authorisation or rate limiting leaves a trace: a warning in
 * the log and a `CallRefused` security event on the bus (the events stream keeps it for security
 * monitoring). A flood — a caller hammering past its rate limit, a scanner trying tokens — is
 * recorded once per second per caller, reason and procedure, with the number of refusals it stands
 * for, so recording never costs more than the refusals it records.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type CallRefused, CallRefusedSchema, RefusalReason } from "../../gen/mesh/common/v1/security_pb.ts";
import { type Bus, defineEvent } from "../bus/index.ts";
import type { Logger } from "../log/index.ts";
import { peerKey, principalKey } from "./interceptors.ts";

/** The security event of a refused call. */
export const CallRefusedEvent = defineEvent("security", "call_refused", CallRefusedSchema);

/** Options of {@link createRefusalRecorder}. */
export interface RefusalRecorderOptions {
  server: string;
  bus: Bus;
  log: Logger;
  /** Skill id of a procedure. */
  skillOf: (procedure: string) => string | undefined;
  /** Shortest time between two records of the same refusal (default 1 s). */
  windowMs?: number;
  now?: () => Date;
}

/** Records refusals; `wrap` turns an interceptor that may refuse into one whose refusals are recorded. */
export interface RefusalRecorder {
  /** The interceptor `inner`, with every refusal it makes itself (not its callee's errors) recorded. */
  wrap(inner: Interceptor): Interceptor;
  /** Flushes pending counts and stops the flush timer. */
  stop(): void;
}

const reasonNames: Readonly<Record<number, string>> = {
  [RefusalReason.UNAUTHENTICATED]: "unauthenticated",
  [RefusalReason.PERMISSION_DENIED]: "permission_denied",
  [RefusalReason.RATE_LIMITED]: "rate_limited",
};

const reasonOf = (code: Code): RefusalReason | undefined =>
  code === Code.Unauthenticated
    ? RefusalReason.UNAUTHENTICATED
    : code === Code.PermissionDenied
      ? RefusalReason.PERMISSION_DENIED
      : code === Code.ResourceExhausted
        ? RefusalReason.RATE_LIMITED
        : undefined;

/** Creates the recorder of one server. */
export function createRefusalRecorder(opts: RefusalRecorderOptions): RefusalRecorder {
  const windowMs = opts.windowMs ?? 1000;
  const now = opts.now ?? (() => new Date());
  /** Per caller+reason+procedure: when it was last recorded, and refusals since then not yet recorded. */
  const bursts = new Map<string, { last: number; pending: CallRefused | undefined; count: number }>();

  const emit = (event: CallRefused): void => {
    opts.log.warn("call refused", {
      reason: reasonNames[event.reason] ?? String(event.reason),
      procedure: event.procedure,
      caller: event.caller || undefined,
      peer: event.peerAddress,
      count: event.count,
      message: event.message,
    });
    opts.bus.publishEvent(CallRefusedEvent, event).catch((err: unknown) => {
      opts.log.warn("could not publish a security event", { error: String(err) });
    });
  };
  const flush = (all: boolean): void => {
    const t = now().getTime();
    for (const [key, b] of bursts) {
      if (b.pending !== undefined && b.count > 0 && (all || t - b.last >= windowMs)) {
        emit({ ...b.pending, count: b.count });
        b.pending = undefined;
        b.count = 0;
        b.last = t;
      } else if (b.pending === undefined && t - b.last > 60 * windowMs) {
        bursts.delete(key);
      }
    }
  };
  const timer = setInterval(() => flush(false), windowMs);
  timer.unref();

  const record = (req: Parameters<Parameters<Interceptor>[0]>[0], err: unknown): void => {
    const ce = ConnectError.from(err);
    const reason = reasonOf(ce.code);
    if (reason === undefined) return;
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const caller = req.contextValues.get(principalKey)?.name ?? "";
    const peer = req.contextValues.get(peerKey);
    const at = now();
    const event = create(CallRefusedSchema, {
      server: opts.server,
      procedure,
      skillId: opts.skillOf(procedure) ?? "",
      caller,
      peerAddress: peer,
      reason,
      message: ce.rawMessage.slice(0, 500),
      refusedAt: timestampFromDate(at),
      count: 1,
    });
    const key = `${reason}|${caller || `peer:${peer}`}|${procedure}`;
    const b = bursts.get(key);
    if (b === undefined || at.getTime() - b.last >= windowMs) {
      if (b?.pending !== undefined) emit({ ...b.pending, count: b.count });
      bursts.set(key, { last: at.getTime(), pending: undefined, count: 0 });
      if (bursts.size > 10_000) flush(true);
      emit(event);
      return;
    }
    b.pending = event;
    b.count++;
  };

  return {
    wrap(inner) {
      return (next) => {
        return async (req) => {
          let passed = false;
          const handler = inner((r) => {
            passed = true;
            return next(r);
          });
          try {
            return await handler(req);
          } catch (err) {
            if (!passed) record(req, err);
            throw err;
          }
        };
      };
    },
    stop() {
      clearInterval(timer);
      flush(true);
    },
  };
}
