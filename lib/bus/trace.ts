/**
 * Messaging spans per the OpenTelemetry messaging conventions (`messaging.system = nats`): W3C
 * trace context travels in NATS headers; a consumer's process span continues the producer's trace
 * and also links to the producer span.
 */
import {
  type Attributes,
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

const tracer = () => trace.getTracer("marketing-mesh/messaging");

/** Header carrier: a plain record (what the outbox stores, and what NATS headers are built from). */
export type Carrier = Record<string, string>;

/** Writes the active (or given) context's trace headers into `carrier`. */
export function injectTrace(carrier: Carrier, ctx: Context = context.active()): Carrier {
  propagation.inject(ctx, carrier);
  return carrier;
}

/** The context carried by `carrier`. */
export function extractTrace(carrier: Carrier): Context {
  return propagation.extract(context.active(), carrier);
}

function baseAttributes(subject: string, msgId: string | undefined, operation: string): Attributes {
  return {
    "messaging.system": "nats",
    "messaging.destination.name": subject,
    "messaging.operation.type": operation,
    "messaging.operation.name": operation === "send" ? "publish" : operation,
    ...(msgId === undefined ? {} : { "messaging.message.id": msgId }),
  };
}

/**
 * Runs `fn` inside a producer span `send <subject>` whose parent is `parent`; `fn` gets the span's
 * context to inject into the outgoing headers.
 */
export async function withProducerSpan<T>(
  subject: string,
  msgId: string,
  parent: Context,
  fn: (ctx: Context) => Promise<T>,
): Promise<T> {
  const span = tracer().startSpan(
    `send ${subject}`,
    { kind: SpanKind.PRODUCER, attributes: baseAttributes(subject, msgId, "send") },
    parent,
  );
  const ctx = trace.setSpan(parent, span);
  try {
    return await context.with(ctx, () => fn(ctx));
  } catch (err) {
    fail(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/**
 * Runs `fn` inside a consumer span `process <subject>`: a child of the producer's context (so one
 * trace follows the message) with a link to the producer span, as the conventions suggest.
 */
export async function withConsumerSpan<T>(
  subject: string,
  msgId: string | undefined,
  carrier: Carrier,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = extractTrace(carrier);
  const producer = trace.getSpanContext(parent);
  const span = tracer().startSpan(
    `process ${subject}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: { ...baseAttributes(subject, msgId, "process"), ...attributes },
      links: producer ? [{ context: producer }] : [],
    },
    parent,
  );
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    fail(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/**
 * Runs `fn` inside an internal span `name` that continues the trace stored in `carrier` (trace
 * headers kept with durable work, e.g. a scheduled row, by {@link injectTrace}); with no stored
 * trace it is a new root. For work a poll loop picks up after the request or message that planned
 * it has ended: the work stays in that trace.
 */
export async function withStoredTrace<T>(
  name: string,
  carrier: Carrier | null | undefined,
  attributes: Attributes,
  fn: () => Promise<T>,
): Promise<T> {
  const parent = propagation.extract(context.active(), carrier ?? {});
  const span = tracer().startSpan(name, { kind: SpanKind.INTERNAL, attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), fn);
  } catch (err) {
    fail(span, err);
    throw err;
  } finally {
    span.end();
  }
}

function fail(span: Span, err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  span.recordException(e);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}
