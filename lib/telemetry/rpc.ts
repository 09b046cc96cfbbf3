/**
 * Tracing and metrics for Connect/gRPC calls, as connect-es interceptors (there is no official
 * OpenTelemetry instrumentation for connect-es, and Node's http2 is not auto-instrumented).
 * Spans follow the RPC semantic conventions; every client call between mesh servers is also a
 * handoff, measured against the latency budget. Uses only @opentelemetry/api.
 */
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import {
  type Attributes,
  context,
  type Histogram,
  metrics,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

const instrumentationName = "marketing-mesh/rpc";

/** Span and metric attribute names specific to the mesh. */
export const handoffAttributes = {
  handoff: "mesh.handoff",
  from: "mesh.handoff.from",
  to: "mesh.handoff.to",
  skill: "mesh.skill.id",
  budgetMs: "mesh.handoff.budget_ms",
  durationMs: "mesh.handoff.duration_ms",
  withinBudget: "mesh.handoff.within_budget",
  attempt: "mesh.handoff.attempt",
} as const;

/** `unavailable`, `deadline_exceeded`, … — the Connect protocol's code names. */
export function codeName(code: Code): string {
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`));
}

function rpcSystem(protocol: "connect" | "grpc" | "grpc-web"): string {
  return protocol === "connect" ? "connect_rpc" : "grpc";
}

function statusAttributes(system: string, code: Code | 0): Attributes {
  return system === "grpc"
    ? { "rpc.grpc.status_code": code }
    : code === 0
      ? {}
      : { "rpc.connect_rpc.error_code": codeName(code) };
}

/** Records the call's outcome on its span (status code attribute; exception and error status on failure). */
function recordOutcome(span: Span, err: unknown, system: string): Code | 0 {
  if (err === undefined) {
    span.setAttributes(statusAttributes(system, 0));
    return 0;
  }
  const ce = ConnectError.from(err);
  span.setAttributes(statusAttributes(system, ce.code));
  span.recordException(ce);
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${codeName(ce.code)}: ${ce.rawMessage}` });
  return ce.code;
}

/** Wraps a streaming response so `onDone` runs when the stream ends, with its error if any. */
function watchStream<T>(it: AsyncIterable<T>, onDone: (err: unknown) => void): AsyncIterable<T> {
  return {
    async *[Symbol.asyncIterator]() {
      try {
        yield* it;
        onDone(undefined);
      } catch (err) {
        onDone(err);
        throw err;
      }
    },
  };
}

/** Options of {@link createClientTracingInterceptor}. */
export interface ClientTracingOptions {
  /** Server (or client identity) making the call. */
  from: string;
  /** Server being called. */
  to: string;
  /** Protocol of the transport this interceptor is installed on. */
  protocol: "connect" | "grpc";
  /** Latency budget of one handoff, in ms. */
  budgetMs: number;
  /** Skill id of a procedure, when it is a skill. */
  skillOf?: (procedure: string) => string | undefined;
}

/**
 * Client interceptor: one CLIENT span per attempt, W3C trace context injected into the request
 * headers, handoff attributes, and the `mesh.handoff.duration` / `rpc.client.duration` histograms.
 */
export function createClientTracingInterceptor(opts: ClientTracingOptions): Interceptor {
  const tracer = trace.getTracer(instrumentationName);
  const meter = metrics.getMeter(instrumentationName);
  const handoffHist: Histogram = meter.createHistogram("mesh.handoff.duration", {
    unit: "ms",
    description: "Duration of cross-server handoffs (client side), to compare with the handoff budget.",
  });
  const clientHist: Histogram = meter.createHistogram("rpc.client.duration", {
    unit: "ms",
    description: "Duration of outbound RPCs.",
  });
  const system = rpcSystem(opts.protocol);
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const skill = opts.skillOf?.(procedure);
    const attributes: Attributes = {
      "rpc.system": system,
      "rpc.service": req.service.typeName,
      "rpc.method": req.method.name,
      [handoffAttributes.handoff]: true,
      [handoffAttributes.from]: opts.from,
      [handoffAttributes.to]: opts.to,
      [handoffAttributes.budgetMs]: opts.budgetMs,
    };
    const url = new URL(req.url);
    attributes["server.address"] = url.hostname;
    attributes["server.port"] = Number(url.port);
    if (skill) attributes[handoffAttributes.skill] = skill;
    const attempt = req.contextValues.get(attemptKey);
    if (attempt > 1) attributes[handoffAttributes.attempt] = attempt;
    const span = tracer.startSpan(procedure, { kind: SpanKind.CLIENT, attributes });
    const ctx = trace.setSpan(context.active(), span);
    propagation.inject(ctx, req.header, {
      set: (h, k, v) => h.set(k, v),
    });
    const start = performance.now();
    const finish = (err: unknown): void => {
      const ms = performance.now() - start;
      const code = recordOutcome(span, err, system);
      const within = ms <= opts.budgetMs;
      span.setAttributes({ [handoffAttributes.durationMs]: ms, [handoffAttributes.withinBudget]: within });
      span.end();
      const metricAttrs: Attributes = {
        "rpc.system": system,
        "rpc.service": req.service.typeName,
        "rpc.method": req.method.name,
        "rpc.status": code === 0 ? "ok" : codeName(code),
      };
      clientHist.record(ms, metricAttrs);
      handoffHist.record(ms, {
        [handoffAttributes.from]: opts.from,
        [handoffAttributes.to]: opts.to,
        [handoffAttributes.withinBudget]: within,
        ...metricAttrs,
      });
    };
    try {
      const res = await context.with(ctx, () => next(req));
      if (res.stream) return { ...res, message: watchStream(res.message, finish) };
      finish(undefined);
      return res;
    } catch (err) {
      finish(err);
      throw err;
    }
  };
}

/** Options of {@link createServerTracingInterceptor}. */
export interface ServerTracingOptions {
  /** Server name, recorded as `mesh.server`. */
  server: string;
  /** Skill id of a procedure, when it is a skill. */
  skillOf?: (procedure: string) => string | undefined;
}

/** The protocol of an incoming request, from its content type. */
export function protocolOf(header: Headers): "connect" | "grpc" | "grpc-web" {
  const ct = header.get("content-type") ?? "";
  if (ct.startsWith("application/grpc-web")) return "grpc-web";
  if (ct.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/**
 * Server interceptor: extracts W3C trace context, runs the handler inside a SERVER span and
 * records `rpc.server.duration`. Install it outermost so it sees the final status code.
 */
export function createServerTracingInterceptor(opts: ServerTracingOptions): Interceptor {
  const tracer = trace.getTracer(instrumentationName);
  const hist = metrics.getMeter(instrumentationName).createHistogram("rpc.server.duration", {
    unit: "ms",
    description: "Duration of inbound RPCs.",
  });
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const system = rpcSystem(protocolOf(req.header));
    const parent = propagation.extract(context.active(), req.header, {
      get: (h, k) => h.get(k) ?? undefined,
      keys: (h) => [...h.keys()],
    });
    const skill = opts.skillOf?.(procedure);
    const attributes: Attributes = {
      "rpc.system": system,
      "rpc.service": req.service.typeName,
      "rpc.method": req.method.name,
      "mesh.server": opts.server,
    };
    if (skill) attributes[handoffAttributes.skill] = skill;
    const span = tracer.startSpan(procedure, { kind: SpanKind.SERVER, attributes }, parent);
    const ctx = trace.setSpan(parent, span);
    const start = performance.now();
    const finish = (err: unknown): void => {
      const code = recordOutcome(span, err, system);
      span.end();
      hist.record(performance.now() - start, {
        "rpc.system": system,
        "rpc.service": req.service.typeName,
        "rpc.method": req.method.name,
        "rpc.status": code === 0 ? "ok" : codeName(code),
      });
    };
    try {
      const res = await context.with(ctx, () => next(req));
      if (res.stream) return { ...res, message: watchStream(res.message, finish) };
      finish(undefined);
      return res;
    } catch (err) {
      finish(err);
      throw err;
    }
  };
}

/** Attempt number of a call (1 = first), set by the mesh client's retry loop. */
export const attemptKey = createContextKey<number>(1, { description: "mesh call attempt number" });
