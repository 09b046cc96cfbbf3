/**
 * The mesh client: a typed client for any agent wherever it is placed. Every call gets a deadline
 * (the caller's, the remaining time of the inbound call it serves, or the default — whichever is
 * shortest) and the inbound call's cancellation; idempotent skills are retried on UNAVAILABLE with
 * exponential backoff and full jitter within a retry budget, or as the retry policy of the skill
 * says when one is registered (attempts, backoff, retryable codes; still within the deadline and
 * the budget); each target server has a circuit breaker. Calls carry the caller's bearer token and
 * are traced as handoffs.
 */
import { readFileSync } from "node:fs";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  type CallOptions,
  type Client,
  Code,
  ConnectError,
  createClient,
  createContextKey,
  createContextValues,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { metrics } from "@opentelemetry/api";
import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
} from "cockatiel";
import type { BreakerConfig, RetryConfig, ServerName } from "../config/index.ts";
import type { Catalog } from "../registry/index.ts";
import { attemptKey, createClientTracingInterceptor } from "../telemetry/index.ts";
import { currentCallScope } from "./call-scope.ts";
import { fullJitterDelay, RetryBudget, sleep } from "./retry.ts";

/** Breaker state as reported in metrics and health. */
export type BreakerState = "closed" | "open" | "half_open";

/** Options of {@link createMeshClient}. */
export interface MeshClientOptions {
  /** Who is calling: a server name or a client principal; recorded as the handoff source. */
  identity: string;
  /** Bearer token presented to every server. */
  token: string;
  /** Where each server is reached. */
  serverUrls: Readonly<Record<ServerName, string>>;
  /** Agent id → server. */
  placement: Readonly<Record<string, ServerName>>;
  /** Agents and skills. */
  catalog: Catalog;
  /** Wire protocol; both are served on every port. */
  protocol?: "connect" | "grpc";
  /** CA certificate file (PEM) to verify servers with, when they use TLS. */
  caFile?: string | undefined;
  /** Deadline of calls that have none. */
  defaultTimeoutMs?: number;
  /** Retry policy for idempotent skills. */
  retry?: RetryConfig;
  /** Circuit breaker policy per target server. */
  breaker?: BreakerConfig;
  /** Handoff latency budget (ms). */
  handoffBudgetMs?: number;
  /** Largest message sent or accepted. */
  maxMessageBytes?: number;
  /** Extra interceptors, run inside the tracing interceptor. */
  interceptors?: Interceptor[];
}

/** How a retry policy retries the calls to one skill (instead of the client's defaults). */
export interface SkillRetry {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /**
   * Delay before retry number `retry` (1 = the first retry); `previousDelayMs` is the delay used
   * before the previous retry (undefined before the first), for decorrelated jitter.
   */
  delayMs(retry: number, previousDelayMs: number | undefined): number;
  /** True when a failure with `code` is retried. */
  retryable(code: Code): boolean;
  /** Time budget across all attempts, from the first; undefined when only the call's deadline limits retries. */
  maxElapsedMs?: number | undefined;
}

/**
 * Retry policies of skills, asked at the start of every call to an idempotent skill (so a changed
 * policy applies to the next call): the policy of `skillId`, or undefined for the client's defaults.
 */
export type SkillRetryPolicy = (skillId: string) => SkillRetry | undefined;

/**
 * Set to true in a call's `contextValues` to make one attempt only, whatever the skill and its
 * policy: for callers that retry on their own, so retries never multiply across layers.
 */
export const singleAttemptKey = createContextKey<boolean>(false, { description: "mesh call without client retries" });

/** Typed clients for every agent, with shared transports and breakers. */
export interface MeshClient {
  /** A typed client for the agent implementing `service`. */
  agent<S extends DescService>(service: S): Client<S>;
  /** A typed client for any service served on `server` (registry, health, …). */
  server<S extends DescService>(server: ServerName, service: S): Client<S>;
  /**
   * Routes calls to `server` (this process's own server) through `transport`, made with the client's
   * interceptors (tracing, bearer token): agents hosted in the same process are then called through
   * an in-process router transport with the same validation and error mapping as remote ones.
   */
  attachLocal?(server: ServerName, transport: (clientInterceptors: Interceptor[]) => Transport): void;
  /**
   * Lets `policy` decide the retries of calls to idempotent skills, from the next call on, until the
   * returned function is called; the first policy registered that has one for a skill decides.
   */
  useSkillRetryPolicy?(policy: SkillRetryPolicy): () => void;
  /** Breaker state of every target server. */
  breakerStates(): Record<ServerName, BreakerState>;
  /** Closes all HTTP/2 sessions. */
  close(): void;
}

const defaultRetry: RetryConfig = {
  maxAttempts: 4,
  baseDelayMs: 50,
  maxDelayMs: 2000,
  budgetRatio: 0.2,
  budgetMinPerSecond: 10,
};
const defaultBreaker: BreakerConfig = { failureThreshold: 5, halfOpenAfterMs: 5000 };

/** Failures that say the target is unhealthy (as opposed to a bad request or a domain error). */
function isTransportFailure(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unavailable || code === Code.DeadlineExceeded;
}

function stateName(s: CircuitState): BreakerState {
  return s === CircuitState.Closed ? "closed" : s === CircuitState.HalfOpen ? "half_open" : "open";
}

interface Target {
  server: ServerName;
  url: string;
  transport: Transport;
  /** HTTP/2 sessions (none for the in-process target). */
  sessions: Http2SessionManager | undefined;
  breaker: CircuitBreakerPolicy;
}

/** Creates the mesh client of one process. */
export function createMeshClient(opts: MeshClientOptions): MeshClient {
  const retry = opts.retry ?? defaultRetry;
  const breakerCfg = opts.breaker ?? defaultBreaker;
  const protocol = opts.protocol ?? "connect";
  const defaultTimeoutMs = opts.defaultTimeoutMs ?? 30_000;
  const ca = opts.caFile ? readFileSync(opts.caFile) : undefined;
  const budget = new RetryBudget(retry.budgetRatio, retry.budgetMinPerSecond);
  const skillOf = (procedure: string): string | undefined => opts.catalog.skillByProcedure.get(procedure)?.id;
  const meter = metrics.getMeter("marketing-mesh/transport");
  const retries = meter.createCounter("mesh.client.retries", { description: "Retries of idempotent calls." });
  const rejected = meter.createCounter("mesh.client.breaker.rejections", {
    description: "Calls failed fast because the target's circuit breaker was open.",
  });
  const targets = new Map<ServerName, Target>();
  const local = new Map<ServerName, (clientInterceptors: Interceptor[]) => Transport>();
  const policies: SkillRetryPolicy[] = [];
  /** The registered policy of a skill; a failing policy source means the defaults, never a failed call. */
  const policyOf = (skillId: string): SkillRetry | undefined => {
    for (const policy of policies) {
      try {
        const p = policy(skillId);
        if (p !== undefined) return p;
      } catch {
        // next source, else the defaults
      }
    }
    return undefined;
  };

  const targetFor = (server: ServerName): Target => {
    const existing = targets.get(server);
    if (existing) return existing;
    const url = opts.serverUrls[server];
    const auth: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${opts.token}`);
      return next(req);
    };
    const interceptors = [
      createClientTracingInterceptor({
        from: opts.identity,
        to: server,
        protocol,
        budgetMs: opts.handoffBudgetMs ?? 200,
        skillOf,
      }),
      auth,
      ...(opts.interceptors ?? []),
    ];
    const breaker = circuitBreaker(handleWhen(isTransportFailure), {
      halfOpenAfter: breakerCfg.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(breakerCfg.failureThreshold),
    });
    const inProcess = local.get(server);
    if (inProcess !== undefined) {
      const t: Target = { server, url, transport: inProcess(interceptors), sessions: undefined, breaker };
      targets.set(server, t);
      return t;
    }
    const nodeOptions = ca ? { ca } : {};
    const sessions = new Http2SessionManager(
      url,
      { pingIntervalMs: 30_000, idleConnectionTimeoutMs: 300_000 },
      nodeOptions,
    );
    const common = {
      baseUrl: url,
      httpVersion: "2" as const,
      sessionManager: sessions,
      interceptors,
      readMaxBytes: opts.maxMessageBytes ?? 16 * 1024 * 1024,
      writeMaxBytes: opts.maxMessageBytes ?? 16 * 1024 * 1024,
    };
    const transport =
      protocol === "grpc" ? createGrpcTransport(common) : createConnectTransport({ ...common, useBinaryFormat: true });
    const t: Target = { server, url, transport, sessions, breaker };
    targets.set(server, t);
    return t;
  };

  meter
    .createObservableGauge("mesh.client.breaker.state", {
      description: "Circuit breaker state per target server: 0 closed, 1 half-open, 2 open.",
    })
    .addCallback((r) => {
      for (const t of targets.values()) {
        const s = stateName(t.breaker.state);
        r.observe(s === "closed" ? 0 : s === "half_open" ? 1 : 2, { "mesh.target": t.server });
      }
    });

  /** Deadline and cancellation for one logical call. */
  const callBounds = (options: CallOptions | undefined): { deadline: number; signal: AbortSignal | undefined } => {
    const scope = currentCallScope();
    const now = Date.now();
    let deadline = now + (options?.timeoutMs ?? defaultTimeoutMs);
    if (scope?.deadline !== undefined) deadline = Math.min(deadline, scope.deadline);
    const signals = [options?.signal, scope?.signal].filter((s): s is AbortSignal => s !== undefined);
    return { deadline, signal: signals.length > 1 ? AbortSignal.any(signals) : signals[0] };
  };

  const unary = async <R>(
    t: Target,
    method: DescMethod,
    options: CallOptions | undefined,
    call: (o: CallOptions) => Promise<R>,
  ): Promise<R> => {
    const procedure = `${method.parent.typeName}/${method.name}`;
    const skill = opts.catalog.skillByProcedure.get(procedure);
    const idempotent = skill?.idempotent ?? false;
    // Only idempotent skills are ever retried, so only they have a policy.
    const policy = idempotent && skill !== undefined ? policyOf(skill.id) : undefined;
    const maxAttempts =
      options?.contextValues?.get(singleAttemptKey) === true ? 1 : (policy?.maxAttempts ?? retry.maxAttempts);
    const { deadline, signal } = callBounds(options);
    const started = Date.now();
    let previousDelay: number | undefined;
    budget.deposit();
    for (let attempt = 1; ; attempt++) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new ConnectError(`deadline exceeded before calling ${procedure} on ${t.server}`, Code.DeadlineExceeded);
      }
      const contextValues = options?.contextValues ?? createContextValues();
      contextValues.set(attemptKey, attempt);
      try {
        return await t.breaker.execute(() =>
          call({ ...options, timeoutMs: remaining, ...(signal ? { signal } : {}), contextValues }),
        );
      } catch (err) {
        if (err instanceof BrokenCircuitError) {
          rejected.add(1, { "mesh.target": t.server });
          throw new ConnectError(
            `circuit breaker for ${t.server} (${t.url}) is open after repeated failures; failing fast`,
            Code.Unavailable,
          );
        }
        const ce = ConnectError.from(err);
        const retryableCode = policy === undefined ? ce.code === Code.Unavailable : policy.retryable(ce.code);
        if (!idempotent || !retryableCode || attempt >= maxAttempts) throw ce;
        const delay =
          policy === undefined
            ? fullJitterDelay(attempt, retry.baseDelayMs, retry.maxDelayMs)
            : Math.max(0, Math.ceil(policy.delayMs(attempt, previousDelay)));
        const overBudget = policy?.maxElapsedMs !== undefined && Date.now() + delay - started >= policy.maxElapsedMs;
        if (Date.now() + delay >= deadline || overBudget || !budget.tryWithdraw()) throw ce;
        previousDelay = delay;
        retries.add(1, { "mesh.target": t.server, "rpc.method": method.name });
        await sleep(delay, signal);
      }
    }
  };

  const wrap = <S extends DescService>(server: ServerName, service: S): Client<S> => {
    const t = targetFor(server);
    const raw = createClient(service, t.transport) as unknown as Record<
      string,
      (req: unknown, o?: CallOptions) => unknown
    >;
    const out: Record<string, (req: unknown, o?: CallOptions) => unknown> = {};
    for (const method of service.methods) {
      const fn = raw[method.localName];
      if (fn === undefined) continue;
      out[method.localName] =
        method.methodKind === "unary"
          ? (req, o) => unary(t, method, o, (callOpts) => fn(req, callOpts) as Promise<unknown>)
          : (req, o) => {
              const { deadline, signal } = callBounds(o);
              return fn(req, { ...o, timeoutMs: Math.max(1, deadline - Date.now()), ...(signal ? { signal } : {}) });
            };
    }
    return out as unknown as Client<S>;
  };

  const cache = new Map<string, unknown>();
  return {
    agent<S extends DescService>(service: S): Client<S> {
      const agent = opts.catalog.agents.find((a) => a.service.typeName === service.typeName);
      if (agent === undefined) throw new Error(`${service.typeName} is not an agent service`);
      const server = opts.placement[agent.id];
      if (server === undefined) throw new Error(`agent ${agent.id} has no placement`);
      return this.server(server, service);
    },
    server<S extends DescService>(server: ServerName, service: S): Client<S> {
      const key = `${server}/${service.typeName}`;
      let c = cache.get(key) as Client<S> | undefined;
      if (c === undefined) {
        c = wrap(server, service);
        cache.set(key, c);
      }
      return c;
    },
    attachLocal(server, transport) {
      local.set(server, transport);
      // Clients made before now keep their target; drop them so the next call uses the local one.
      targets.get(server)?.sessions?.abort();
      targets.delete(server);
      for (const key of [...cache.keys()]) if (key.startsWith(`${server}/`)) cache.delete(key);
    },
    useSkillRetryPolicy(policy) {
      policies.push(policy);
      return () => {
        const i = policies.indexOf(policy);
        if (i >= 0) policies.splice(i, 1);
      };
    },
    breakerStates() {
      const out = {} as Record<ServerName, BreakerState>;
      for (const t of targets.values()) out[t.server] = stateName(t.breaker.state);
      return out;
    },
    close() {
      for (const t of targets.values()) t.sessions?.abort();
      targets.clear();
      cache.clear();
    },
  };
}
