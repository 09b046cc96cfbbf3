/**
 * Batched durable consumers: up to `batchSize` messages of a durable pull consumer handled in ONE
 * database transaction, with the inbox dedupe done in bulk (one `insert … on conflict do nothing
 * returning` for the batch's message ids), and every message acknowledged after the commit.
 *
 * Guarantees are those of the per-message inbox path ({@link handleDelivery} + {@link applyOnce}):
 * - effectively once: a message whose inbox row committed is skipped when redelivered (in a batch
 *   or alone), since the inbox row and the handler's changes commit together;
 * - failures: when a batch fails (handler or commit), it is rolled back and each of its messages is
 *   retried alone through the per-message path, which acks, naks with the consumer's backoff or the
 *   retry policy, or dead-letters (PermanentError, policy giving up; max_deliver through the
 *   dead-letter mover) exactly as a per-message consumer does. One poison message therefore never
 *   blocks the others. A redelivered message (delivery count > 1) always takes the per-message path.
 * - traces: the batch runs in a `process <filter>` consumer span linked to every message's producer
 *   span; each message also gets its own `process <subject>` span, a child of its producer's context
 *   (one trace follows the message) linked to the batch span, whose context the handler receives to
 *   continue the trace (e.g. as the parent of outbox messages).
 *
 * Messages are pulled with `consume()` (a callback filling a local queue, bounded by the consumer's
 * max_ack_pending) and handled by `concurrency` batch loops per instance; instances share the durable.
 */

import { randomUUID } from "node:crypto";
import type { JsMsg } from "@nats-io/jetstream";
import { type Context, context, type Link, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Database, EntityManager } from "../db/index.ts";
import {
  type Bus,
  type Delivery,
  type DeliveryHandler,
  type DeliveryProcessing,
  type DurableSpec,
  deliveryOf,
  handleDelivery,
  MESSAGE_ID_HEADER,
  type Running,
} from "./bus.ts";
import type { OutgoingMessage } from "./outbox.ts";
import { extractTrace, injectTrace } from "./trace.ts";

const tracer = () => trace.getTracer("marketing-mesh/messaging");

/** A message of a batch, with the trace context of its own process span. */
export interface BatchDelivery extends Delivery {
  /** Context of the message's process span (a child of its producer's): the parent of work done for it. */
  context: Context;
}

/**
 * Handler of a batch: the messages not applied before, in stream order, inside the transaction `em`
 * (which also holds their inbox rows). Throwing rolls the whole batch back.
 */
export type BatchHandler = (batch: BatchDelivery[], em: EntityManager) => Promise<void>;

/** Options of {@link consumeBatches}. */
export interface BatchOptions {
  /** Database of the inbox and of the handler's transaction. */
  db: Database;
  /** Messages per batch at most (default 200). */
  batchSize?: number;
  /** Batches handled at once per instance (default 2); each holds a database connection. */
  concurrency?: number;
  /** Inbox consumer name (default the durable name). */
  inbox?: string;
  /**
   * Handler of a message retried alone (after a batch failure, or redelivered); default the batch
   * handler with a batch of one.
   */
  single?: DeliveryHandler;
}

/** Logical id the inbox deduplicates on (as {@link applyOnce}). */
export function inboxId(d: Delivery): string {
  return d.msgId ?? `${d.subject}#${d.streamSeq}`;
}

/**
 * Inserts the inbox rows of `deliveries` in one statement; returns those not applied before
 * (the first of several deliveries with one id), in order.
 */
export async function claimInbox<D extends Delivery>(
  db: Database,
  em: EntityManager,
  consumer: string,
  deliveries: readonly D[],
): Promise<D[]> {
  const firsts = new Map<string, D>();
  for (const d of deliveries) {
    const id = inboxId(d);
    if (!firsts.has(id)) firsts.set(id, d);
  }
  if (firsts.size === 0) return [];
  const rows = await em
    .getConnection()
    .execute<{ msg_id: string }[]>(
      `insert into "${db.schema}"."inbox" (consumer, msg_id, subject, processed_at)` +
        ` select ?, x.msg_id, x.subject, now() from json_to_recordset(?::json) as x(msg_id text, subject text)` +
        " on conflict do nothing returning msg_id",
      [consumer, JSON.stringify([...firsts].map(([msg_id, d]) => ({ msg_id, subject: d.subject })))],
      "all",
      em.getTransactionContext(),
    );
  const fresh = new Set(rows.map((r) => r.msg_id));
  return [...firsts].filter(([id]) => fresh.has(id)).map(([, d]) => d);
}

/**
 * Adds `msgs` to the outbox of the transaction `em` belongs to in one statement (what
 * {@link enqueue} does for one message, with the same headers: message id, trace context of each
 * message's `parent` or the active one). Returns the message ids.
 */
export async function enqueueAll(db: Database, em: EntityManager, msgs: readonly OutgoingMessage[]): Promise<string[]> {
  if (msgs.length === 0) return [];
  const rows = msgs.map((m) => {
    const msg_id = m.msgId ?? randomUUID();
    const headers = injectTrace({ ...(m.headers ?? {}), [MESSAGE_ID_HEADER]: msg_id }, m.parent);
    return { subject: m.subject, msg_id, payload: Buffer.from(m.data).toString("base64"), headers };
  });
  await em
    .getConnection()
    .execute(
      `insert into "${db.schema}"."outbox" (subject, msg_id, payload, headers, created_at)` +
        " select x.subject, x.msg_id, decode(x.payload, 'base64'), x.headers, now()" +
        " from jsonb_to_recordset(?::jsonb) as x(subject text, msg_id text, payload text, headers jsonb)",
      [JSON.stringify(rows)],
      "run",
      em.getTransactionContext(),
    );
  db.markOutbox(em);
  return rows.map((r) => r.msg_id);
}

function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) {
    const e = err instanceof Error ? err : new Error(String(err));
    span.recordException(e);
    span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
  }
  span.end();
}

/**
 * Consumes the durable consumer `spec` in batches (see the module comment). The consumer's
 * max_ack_pending defaults to twice `batchSize × concurrency`.
 */
export async function consumeBatches(
  bus: Bus,
  spec: DurableSpec,
  handler: BatchHandler,
  opts: BatchOptions,
): Promise<Running> {
  const batchSize = Math.max(1, Math.floor(opts.batchSize ?? 200));
  const loops = Math.max(1, Math.floor(opts.concurrency ?? 2));
  const maxAckPending = spec.maxAckPending ?? batchSize * loops * 2;
  // No server-side backoff: with one, its first delay (250 ms by default) replaces ack_wait, and a
  // message waiting for its batch, or in a batch that takes longer, would be redelivered while it is
  // being handled. The ack timeout (ackWaitMs, default 30 s) then only recovers the messages of a
  // crashed instance; failed messages are still nak'ed with the backoff of their attempt.
  const consumer = await bus.ensureConsumer({ ...spec, maxAckPending, backoffMs: [] });
  const stream = bus.streams[spec.stream];
  const inbox = opts.inbox ?? spec.durable;
  const db = opts.db;
  const log = bus.log;
  const single: DeliveryHandler =
    opts.single ??
    (async (d, em) => {
      if (em === undefined) throw new Error("batch consumers run in inbox mode");
      await handler([{ ...d, context: context.active() }], em);
    });
  const processing: DeliveryProcessing = {
    consumer: spec.durable,
    stream,
    backoffMs: spec.backoffMs ?? [250, 1000, 5000, 15000],
    // As Bus.consume: policies govern the deployment's work and events, not the bus's plumbing.
    redelivery: spec.stream === "events" || spec.stream === "tasks" ? bus.redelivery : undefined,
    db,
    inbox,
    handler: single,
    deadLetter: bus.deadLetter,
    log,
  };

  const queue: JsMsg[] = [];
  let waiters: (() => void)[] = [];
  let stopped = false;
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const messages = await consumer.consume({
    max_messages: Math.min(maxAckPending, batchSize * loops),
    callback: (m) => {
      queue.push(m);
      wake();
    },
  });

  const alone = async (ms: readonly JsMsg[]): Promise<void> => {
    for (const m of ms) await handleDelivery(m, deliveryOf(m), processing);
  };

  const runBatch = async (ms: JsMsg[]): Promise<void> => {
    const retried = ms.filter((m) => m.info.deliveryCount > 1);
    const fresh = ms.filter((m) => m.info.deliveryCount <= 1);
    // Older deliveries first; each alone, as a per-message consumer would.
    await alone(retried);
    if (fresh.length === 0) return;
    const ds = fresh.map(deliveryOf);
    const producers: Link[] = [];
    for (const d of ds) {
      const sc = trace.getSpanContext(extractTrace(d.headers));
      if (sc !== undefined) producers.push({ context: sc });
    }
    const batchSpan = tracer().startSpan(`process ${spec.filter}`, {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": spec.filter,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.batch.message_count": ds.length,
        "messaging.consumer.group.name": spec.durable,
        "messaging.nats.stream": stream,
      },
      links: producers,
    });
    const batchLink: Link = { context: batchSpan.spanContext() };
    const spans: Span[] = [];
    const items: BatchDelivery[] = ds.map((d) => {
      const parent = extractTrace(d.headers);
      const producer = trace.getSpanContext(parent);
      const span = tracer().startSpan(
        `process ${d.subject}`,
        {
          kind: SpanKind.CONSUMER,
          attributes: {
            "messaging.system": "nats",
            "messaging.destination.name": d.subject,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            ...(d.msgId === undefined ? {} : { "messaging.message.id": d.msgId }),
            "messaging.consumer.group.name": spec.durable,
            "messaging.nats.stream": stream,
            "messaging.nats.delivery_count": d.deliveryCount,
          },
          links: producer ? [{ context: producer }, batchLink] : [batchLink],
        },
        parent,
      );
      spans.push(span);
      return { ...d, context: trace.setSpan(parent, span) };
    });
    try {
      await context.with(trace.setSpan(context.active(), batchSpan), () =>
        db.transaction(async (em) => {
          const todo = await claimInbox(db, em, inbox, items);
          if (todo.length > 0) await handler(todo, em);
        }),
      );
    } catch (err) {
      for (const s of spans) endSpan(s, err);
      endSpan(batchSpan, err);
      log.warn("batch failed; retrying its messages one by one", {
        consumer: spec.durable,
        messages: fresh.length,
        reason: err instanceof Error ? err.message : String(err),
      });
      await alone(fresh);
      return;
    }
    for (const m of fresh) m.ack();
    for (const s of spans) endSpan(s);
    endSpan(batchSpan);
  };

  const loop = async (): Promise<void> => {
    while (!stopped) {
      if (queue.length === 0) {
        await new Promise<void>((r) => waiters.push(r));
        continue;
      }
      const ms = queue.splice(0, batchSize);
      try {
        await runBatch(ms);
      } catch (err) {
        // Settling failed unexpectedly (e.g. the connection closed): the server redelivers after ack_wait.
        log.warn("batch consumer failed to settle messages", { consumer: spec.durable, error: String(err) });
      }
    }
  };
  const running = Array.from({ length: loops }, () => loop());

  return {
    async stop() {
      stopped = true;
      messages.stop();
      wake();
      await Promise.all(running);
      // Messages pulled but not started go back at once rather than after ack_wait.
      for (const m of queue.splice(0)) m.nak();
    },
  };
}
