/**
 * Per-request memory and time budgets.
 *
 * A request costs far more memory decoded than on the wire: protobuf-es turns each 2-byte empty
 * submessage into a ~80-byte object (41× measured), JSON more (the text, the parsed tree and the
 * message exist at once). The message size limit alone lets a handful of concurrent 16 MiB
 * requests exhaust the heap. So every unary request reserves its estimated decoded size from the
 * server's {@link RequestMemoryBudget} as its body arrives, before connect-es decodes it, and
 * gives it back when its call ends. A request that does not fit is answered RESOURCE_EXHAUSTED at
 * once (with RetryInfo when waiting can help), so a burst of large requests slows their senders
 * instead of crashing the server.
 *
 * A skill call also has a time budget (the skill's `time_budget` option, else the server's
 * default): past it the call answers DEADLINE_EXCEEDED and the skill's signal is aborted; its
 * request memory stays reserved until the skill really returns.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { skill as skillOption } from "../../gen/mesh/common/v1/skill_pb.ts";
import { retryAfter } from "../errors/index.ts";

/** Decoded bytes per wire byte of a binary request (measured worst case: empty submessages, 41×). */
export const binaryExpansion = 48;
/** Decoded bytes per wire byte of a JSON request (text, parsed tree and message alive at once). */
export const jsonExpansion = 64;
/** How much a compressed body is assumed to grow when it is decompressed (capped at the message limit). */
const compressionRatio = 16;
/** When a request that would fit an idle server may retry. */
const retryDelayMs = 1_000;

/** A request's share of the budget: grows as its body arrives, returned when its call ends. */
export interface Admission {
  /** Bytes reserved so far. */
  readonly reserved: number;
  /** Keeps the reservation until `work` settles too (a call answered before its skill returned). */
  holdUntil(work: Promise<unknown>): void;
}

/** The admission of the call being served, for handlers that outlive their answer. */
export const admissionKey = createContextKey<Admission | undefined>(undefined, { description: "request memory" });

/** Options of {@link RequestMemoryBudget}. */
export interface RequestMemoryBudgetOptions {
  /** Bytes all requests in flight may take at once. */
  capacityBytes: number;
  /** Largest request message, in bytes (caps a compressed body's estimate). */
  maxMessageBytes: number;
}

/** The server's request memory: reservations of the requests in flight, never above its capacity. */
export class RequestMemoryBudget {
  readonly capacityBytes: number;
  readonly #maxMessageBytes: number;
  #inUse = 0;
  #peak = 0;
  #refused = 0;

  constructor(opts: RequestMemoryBudgetOptions) {
    this.capacityBytes = opts.capacityBytes;
    this.#maxMessageBytes = opts.maxMessageBytes;
  }

  /** Bytes reserved now. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Most bytes reserved at once since the server started. */
  get peak(): number {
    return this.#peak;
  }

  /** Requests refused for want of memory. */
  get refused(): number {
    return this.#refused;
  }

  /** Whether the largest message could ever be admitted (checked at start-up). */
  fitsLargestMessage(): boolean {
    return this.#maxMessageBytes * jsonExpansion <= this.capacityBytes;
  }

  /**
   * Meters a unary request body: reserves each chunk's estimated decoded size before passing it on
   * and throws RESOURCE_EXHAUSTED (which connect-es answers in the caller's protocol) once the
   * budget cannot take it. `done` must be called when the call has been answered.
   */
  admit(
    body: AsyncIterable<Uint8Array>,
    header: Headers,
  ): { body: AsyncIterable<Uint8Array>; admission: Admission; done: () => void } {
    const type = header.get("content-type") ?? "";
    const perByte = /json/i.test(type) ? jsonExpansion : binaryExpansion;
    const compressed =
      header.has("content-encoding") || header.has("connect-content-encoding") || header.has("grpc-encoding");
    const budget = this;
    let wire = 0;
    let reserved = 0;
    let ended = false;
    const held: Promise<unknown>[] = [];
    const release = (): void => {
      budget.#inUse -= reserved;
      reserved = 0;
    };
    const reserveFor = (wireBytes: number): void => {
      const decoded = compressed ? Math.min(wireBytes * compressionRatio, budget.#maxMessageBytes) : wireBytes;
      const want = Math.ceil(decoded * perByte) - reserved;
      if (want <= 0) return;
      if (budget.#inUse + want > budget.capacityBytes) {
        budget.#refused++;
        const mb = (n: number): string => `${(n / 1048576).toFixed(0)} MB`;
        if (reserved + want > budget.capacityBytes) {
          throw new ConnectError(
            `request too large to serve: decoding it needs about ${mb(reserved + want)}, more than this server's request memory of ${mb(budget.capacityBytes)} (MESH_REQUEST_MEMORY_BYTES); send it in smaller batches`,
            Code.ResourceExhausted,
          );
        }
        throw retryAfter(
          `server busy: requests in flight hold ${mb(budget.#inUse)} of its ${mb(budget.capacityBytes)} request memory; retry later`,
          Code.ResourceExhausted,
          retryDelayMs,
        );
      }
      budget.#inUse += want;
      reserved += want;
      if (budget.#inUse > budget.#peak) budget.#peak = budget.#inUse;
    };
    const declared = Number(header.get("content-length") ?? Number.NaN);
    const metered = (async function* () {
      // A declared length is reserved before a byte is read: a request that cannot fit costs nothing.
      if (declared > 0 && declared <= budget.#maxMessageBytes + 5) reserveFor(declared);
      for await (const chunk of body) {
        wire += chunk.byteLength;
        // Past the message limit connect-es refuses the request itself (RESOURCE_EXHAUSTED naming
        // the limit); reserving more for it would only change the answer.
        if (wire <= budget.#maxMessageBytes + 5) reserveFor(wire);
        yield chunk;
      }
    })();
    const admission: Admission = {
      get reserved() {
        return reserved;
      },
      holdUntil(work) {
        held.push(work.catch(() => undefined));
      },
    };
    const done = (): void => {
      if (ended) return;
      ended = true;
      if (held.length === 0) release();
      else void Promise.all(held).then(release);
    };
    return { body: metered, admission, done };
  }
}

/** The time budget of `method`'s skill in milliseconds, or `fallbackMs` when it declares none. */
export function timeBudgetMs(method: DescMethod, fallbackMs: number): number {
  if (!hasOption(method, skillOption)) return fallbackMs;
  const d = getOption(method, skillOption).timeBudget;
  if (d === undefined) return fallbackMs;
  const ms = Number(d.seconds) * 1000 + d.nanos / 1e6;
  return ms > 0 ? ms : fallbackMs;
}

/** A unary handler as connect-es calls it. */
export type UnaryImpl = (req: unknown, ctx: HandlerContext) => unknown;

/**
 * `fn` bounded to `budgetMs`: its context's signal aborts and `timeoutMs()` counts down to the
 * budget (or the caller's deadline when sooner); past the budget the call answers
 * DEADLINE_EXCEEDED without waiting for `fn`, whose request memory stays reserved until it returns.
 */
export function withTimeBudget(fn: UnaryImpl, budgetMs: number, what: string): UnaryImpl {
  return (req, ctx) => {
    const started = performance.now();
    const over = new AbortController();
    const timer = setTimeout(() => {
      over.abort(
        new ConnectError(
          `${what} exceeded its time budget of ${budgetMs >= 1000 ? `${budgetMs / 1000} s` : `${budgetMs} ms`}`,
          Code.DeadlineExceeded,
        ),
      );
    }, budgetMs);
    const timeoutMs = (): number => {
      const left = Math.max(0, budgetMs - (performance.now() - started));
      const caller = ctx.timeoutMs();
      return caller === undefined ? left : Math.min(caller, left);
    };
    const work = Promise.resolve().then(() =>
      fn(req, { ...ctx, signal: AbortSignal.any([ctx.signal, over.signal]), timeoutMs }),
    );
    ctx.values.get(admissionKey)?.holdUntil(work);
    return new Promise((resolve, reject) => {
      const onOver = (): void => reject(over.signal.reason);
      over.signal.addEventListener("abort", onOver, { once: true });
      work.then(resolve, reject).finally(() => {
        clearTimeout(timer);
        over.signal.removeEventListener("abort", onOver);
      });
    });
  };
}
