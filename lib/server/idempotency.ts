/**
 * Idempotent skill calls: a call with a key (its `request_id`, or the `mesh-idempotency-key`
 * header a workflow step sends) runs once. Its result is stored with a hash of the request in the
 * same transaction as the skill's writes; a replay with the same input gets the stored result, a
 * replay with other input gets ALREADY_EXISTS.
 *
 * A skill without side effects (`idempotency_level = NO_SIDE_EFFECTS`: computations, crawls,
 * Lighthouse runs) has no writes to make atomic, so it runs outside any transaction — a minute-long
 * crawl does not keep a connection idle in a transaction — and its result is stored after it, in a
 * short insert of its own (two concurrent first calls both compute; the first result stored wins).
 * So does a skill its module declares self-transacted: one that reaches the network with effects
 * and keeps them at most once itself (claims in short transactions of its own, keyed by the
 * request id), which must not wait on the network inside a transaction.
 */
import { createHash } from "node:crypto";
import { type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import {
  type Database,
  type EntityManager,
  IdempotencyRecord,
  runInUnitOfWork,
  UniqueConstraintViolationException,
} from "../db/index.ts";

/** A stored result to answer with instead of running the handler (set by the interceptor). */
const replayKey = createContextKey<{ message: unknown } | undefined>(undefined);

/**
 * Wraps a service implementation so a call the interceptor recognised as a replay is answered with
 * the stored result; the protocol still writes its own headers and trailers.
 */
export function withReplays<T extends object>(impl: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(impl)) {
    out[name] =
      typeof fn === "function"
        ? (req: unknown, ctx: HandlerContext) => {
            const stored = ctx.values.get(replayKey);
            return stored ? stored.message : (fn as (r: unknown, c: HandlerContext) => unknown)(req, ctx);
          }
        : fn;
  }
  return out as T;
}

/** Header carrying an idempotency key for calls whose request has no `request_id`. */
export const IDEMPOTENCY_HEADER = "mesh-idempotency-key";

function keyOf(message: unknown, header: Headers): string | undefined {
  const rid = (message as { requestId?: unknown }).requestId;
  if (typeof rid === "string" && rid !== "") return rid;
  const h = header.get(IDEMPOTENCY_HEADER);
  if (h === null || h === "") return undefined;
  if (h.length > 200 || !/^[\x21-\x7e]+$/.test(h)) {
    throw new ConnectError(`${IDEMPOTENCY_HEADER} must be 1–200 visible ASCII characters`, Code.InvalidArgument);
  }
  return h;
}

async function replay(
  em: EntityManager,
  id: string,
  hash: string,
  output: DescMessage,
): Promise<{ message: unknown } | undefined> {
  const rec = await em.findOne(IdempotencyRecord, { id });
  if (rec === null) return undefined;
  if (rec.requestHash !== hash) {
    throw new ConnectError(
      "request_id was already used with different input; use a new request_id for a new request",
      Code.AlreadyExists,
    );
  }
  await em.nativeUpdate(IdempotencyRecord, { id }, { replays: rec.replays + 1 });
  return { message: fromBinary(output, new Uint8Array(rec.response)) };
}

/** The interceptor; `dbFor` names the database of a procedure's agent (undefined = not ours). */
export function createIdempotencyInterceptor(
  dbFor: (procedure: string) => Database | undefined,
  selfTransacted: (procedure: string) => boolean = () => false,
): Interceptor {
  return (next) => async (req) => {
    if (req.stream) return next(req);
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const db = dbFor(procedure);
    if (db === undefined) return next(req);
    const key = keyOf(req.message, req.header);
    if (key === undefined) return next(req);
    const id = `${procedure}:${key}`;
    const hash = createHash("sha256")
      .update(toBinary(req.method.input, req.message as never))
      .digest("hex");
    const output = req.method.output;
    const answer = (message: unknown) => {
      req.contextValues.set(replayKey, { message });
      return next(req);
    };
    const stored = await replay(db.fork(), id, hash, output);
    if (stored) return answer(stored.message);
    if (req.method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS || selfTransacted(procedure)) {
      const res = await next(req);
      if (!res.stream) {
        await db
          .fork()
          .upsert(
            IdempotencyRecord,
            { id, procedure, requestHash: hash, response: Buffer.from(toBinary(output, res.message as never)) },
            { onConflictFields: ["id"], onConflictAction: "ignore", disableIdentityMap: true },
          );
      }
      return res;
    }
    try {
      return await db.transaction(async (em) =>
        runInUnitOfWork(db, em, async () => {
          const res = await next(req);
          if (!res.stream) {
            em.create(IdempotencyRecord, {
              id,
              procedure,
              requestHash: hash,
              response: Buffer.from(toBinary(output, res.message as never)),
            });
          }
          return res;
        }),
      );
    } catch (err) {
      // A concurrent call with the same key committed first: answer with its result.
      if (err instanceof UniqueConstraintViolationException) {
        const again = await replay(db.fork(), id, hash, output);
        if (again) return answer(again.message);
      }
      throw err;
    }
  };
}
