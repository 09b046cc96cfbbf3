/**
 * Server interceptors every mesh server installs, outermost first: tracing (telemetry/rpc.ts),
 * error mapping, authentication and authorisation, per-caller rate limiting, the call scope that
 * outgoing calls inherit, then protovalidate. Each is a plain connect-es interceptor.
 */

import { type DescMessage, type JsonWriteOptions, type MessageShape, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Authenticator, Principal } from "../auth/index.ts";
import { retryAfter, toConnectError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { deadlineFromHeaders, runInCallScope } from "../transport/index.ts";
import { malformedRequest } from "./bad-input.ts";
import { createTokenBuckets } from "./token-bucket.ts";

/** The authenticated caller of a call (undefined on public procedures called without a token). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "mesh caller" });
/** Remote address of the connection a call came on. */
export const peerKey = createContextKey<string>("", { description: "peer address" });

/** Options of {@link createErrorInterceptor}. */
export interface ErrorInterceptorOptions {
  /**
   * The JSON options the server answers with (its type registry). JSON answers are encoded with
   * them before they leave the interceptor; default: protobuf-es defaults, as connect-es uses them.
   */
  jsonOptions?: Partial<JsonWriteOptions>;
}

/** Whether the caller reads JSON: a `…json` content type, or a Connect GET with `encoding=json`. */
function answersJson(req: { header: Headers; requestMethod: string; url: string }): boolean {
  const type = req.header.get("content-type");
  if (type !== null) return /^application\/(?:[a-z-]+\+)?json\s*(?:;|$)/i.test(type.trim());
  return req.requestMethod === "GET" && new URL(req.url, "http://x").searchParams.get("encoding") === "json";
}

/**
 * Maps every error to a safe ConnectError; logs unexpected ones (anything that would answer
 * INTERNAL or UNKNOWN) with the reference id the caller sees. Errors a streaming handler throws
 * while producing its messages are mapped the same way.
 *
 * connect-es encodes a response only after the interceptors have returned, and answers an
 * encoding failure itself as INTERNAL with the raw message (say, an Any whose type is not in the
 * registry), unlogged. So a response to a JSON caller is encoded here first, and a failure mapped
 * like any other error. Binary answers are not checked: binary encoding needs no registry (an Any
 * is bytes), and checking would encode every call between servers twice.
 */
export function createErrorInterceptor(log: Logger, opts: ErrorInterceptorOptions = {}): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const map = (err: unknown): ConnectError => {
      // A streamed request message connect-es could not decode (unary ones fail before the
      // interceptors run: see bad-input.ts).
      const malformed = malformedRequest(err, req.method.input);
      if (malformed !== undefined) {
        log.warn("malformed request", { procedure, error: malformed.rawMessage });
        return malformed;
      }
      return toConnectError(err, (e, ref) => log.error("unexpected error", { ref, procedure, err: e }));
    };
    const json = answersJson(req);
    // Throws what connect-es would throw when it encodes `message` for this caller.
    const encode = (message: unknown): void => {
      if (json) toJson(req.method.output, message as MessageShape<DescMessage>, opts.jsonOptions);
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
      if (!res.stream) encode(res.message);
    } catch (err) {
      throw map(err);
    }
    if (!res.stream) return res;
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          for await (const m of messages) {
            encode(m);
            yield m;
          }
        } catch (err) {
          throw map(err);
        }
      })(),
    };
  };
}

/** Runs handlers inside the call scope (deadline, cancellation, caller) that outgoing calls inherit. */
export function createScopeInterceptor(): Interceptor {
  return (next) => (req) =>
    runInCallScope(
      {
        deadline: deadlineFromHeaders(req.header),
        signal: req.signal,
        caller: req.contextValues.get(principalKey)?.name,
      },
      () => next(req),
    );
}

/** Options of {@link createAuthInterceptor}. */
export interface AuthOptions {
  /** Verifies tokens and grants. */
  authenticator: Authenticator;
  /** Procedures callable without a token (health, reflection, registry). */
  isPublic: (procedure: string) => boolean;
  /** Skill id of a procedure, for grants written as skill ids. */
  skillOf: (procedure: string) => string | undefined;
}

/** Bearer-token authentication (UNAUTHENTICATED) and per-skill authorisation (PERMISSION_DENIED). */
export function createAuthInterceptor(opts: AuthOptions): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const header = req.header.get("authorization");
    const isPublic = opts.isPublic(procedure);
    if (header === null) {
      if (isPublic) return next(req);
      throw new ConnectError(
        "missing bearer token: send the header 'authorization: Bearer <token>'",
        Code.Unauthenticated,
      );
    }
    // The scheme is case-insensitive (RFC 9110 §11.1); the token keeps its strict charset.
    const m = /^Bearer +([A-Za-z0-9._~+/=-]{1,512})$/i.exec(header);
    const principal = m ? opts.authenticator.authenticate(m[1] as string) : undefined;
    if (principal === undefined) throw new ConnectError("invalid bearer token", Code.Unauthenticated);
    // Known before authorisation, so a refusal is recorded with the caller it refused.
    req.contextValues.set(principalKey, principal);
    if (!isPublic && !opts.authenticator.authorize(principal, procedure, opts.skillOf(procedure))) {
      const skill = opts.skillOf(procedure);
      throw new ConnectError(
        `caller "${principal.name}" is not allowed to call ${skill ? `skill ${skill} (${procedure})` : procedure}`,
        Code.PermissionDenied,
      );
    }
    return next(req);
  };
}

/** Options of {@link createRateLimitInterceptor}. */
export interface RateLimitOptions {
  /** Sustained calls per second per caller. */
  perSecond: number;
  /** Burst size per caller. */
  burst: number;
  /** Clock (ms). */
  now?: () => number;
}

/**
 * Per-caller token bucket: a caller over its rate gets RESOURCE_EXHAUSTED with a google.rpc.RetryInfo
 * detail and a `retry-after` header. Unauthenticated calls are limited per peer address.
 */
export function createRateLimitInterceptor(opts: RateLimitOptions): Interceptor {
  const buckets = createTokenBuckets(opts);
  return (next) => async (req) => {
    const key = req.contextValues.get(principalKey)?.name ?? `peer:${req.contextValues.get(peerKey)}`;
    const waitMs = buckets.take(key);
    if (waitMs > 0) {
      throw retryAfter(
        `rate limit of ${opts.perSecond}/s (burst ${opts.burst}) exceeded for ${key}; retry in ${waitMs} ms`,
        Code.ResourceExhausted,
        waitMs,
      );
    }
    return next(req);
  };
}
