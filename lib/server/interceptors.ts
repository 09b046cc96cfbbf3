/**
 * Server interceptors every mesh server installs, outermost first: tracing (telemetry/rpc.ts),
 * error mapping, authentication and authorisation, per-caller rate limiting, the call scope that
 * outgoing calls inherit, then protovalidate. Each is a plain connect-es interceptor.
 */

import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import type { Authenticator, Principal } from "../auth/index.ts";
import { toConnectError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { deadlineFromHeaders, runInCallScope } from "../transport/index.ts";
import { createTokenBuckets } from "./token-bucket.ts";

/** The authenticated caller of a call (undefined on public procedures called without a token). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "mesh caller" });
/** Remote address of the connection a call came on. */
export const peerKey = createContextKey<string>("", { description: "peer address" });

/**
 * Maps every error to a safe ConnectError; logs unexpected ones (anything that would answer
 * INTERNAL or UNKNOWN) with the reference id the caller sees. Errors a streaming handler throws
 * while producing its messages are mapped the same way.
 */
export function createErrorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const map = (err: unknown): ConnectError =>
      toConnectError(err, (e, ref) => log.error("unexpected error", { ref, procedure, err: e }));
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      throw map(err);
    }
    if (!res.stream) return res;
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
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
    const m = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/.exec(header);
    const principal = m ? opts.authenticator.authenticate(m[1] as string) : undefined;
    if (principal === undefined) throw new ConnectError("invalid bearer token", Code.Unauthenticated);
    if (!isPublic && !opts.authenticator.authorize(principal, procedure, opts.skillOf(procedure))) {
      const skill = opts.skillOf(procedure);
      throw new ConnectError(
        `caller "${principal.name}" is not allowed to call ${skill ? `skill ${skill} (${procedure})` : procedure}`,
        Code.PermissionDenied,
      );
    }
    req.contextValues.set(principalKey, principal);
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
      const seconds = BigInt(Math.floor(waitMs / 1000));
      const nanos = (waitMs % 1000) * 1_000_000;
      throw new ConnectError(
        `rate limit of ${opts.perSecond}/s (burst ${opts.burst}) exceeded for ${key}; retry in ${waitMs} ms`,
        Code.ResourceExhausted,
        { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))) },
        [
          {
            desc: RetryInfoSchema,
            value: create(RetryInfoSchema, { retryDelay: create(DurationSchema, { seconds, nanos }) }),
          },
        ],
      );
    }
    return next(req);
  };
}
