/**
 * Events and work on NATS JetStream (server 2.9 compatible): streams and durable consumers declared
 * in code and created or updated idempotently; publish with `Nats-Msg-Id` dedup and W3C trace
 * context; durable consumers with bounded redelivery, backoff, an inbox for effectively-once
 * handlers, and dead letters.
 *
 * Subjects: `<prefix>.events.<domain>.<event>`, `<prefix>.tasks.<agent>.<priority>`,
 * `<prefix>.dlq.<stream>.<consumer>`. The prefix (default `mesh`) isolates deployments and tests.
 */
import { randomUUID } from "node:crypto";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  AckPolicy,
  type Consumer,
  type ConsumerConfig,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import {
  connect,
  type MsgHdrs,
  type NatsConnection,
  headers as natsHeaders,
  type Subscription,
} from "@nats-io/transport-node";
import type { Database, EntityManager } from "../db/index.ts";
import type { Logger } from "../log/index.ts";
import { type Carrier, extractTrace, injectTrace, withConsumerSpan, withProducerSpan } from "./trace.ts";

const nanos = (ms: number): number => ms * 1_000_000;

/** Header with the logical message id an inbox deduplicates on (kept across DLQ replays). */
export const MESSAGE_ID_HEADER = "Mesh-Msg-Id";
/** Header naming the payload's protobuf message type. */
export const TYPE_HEADER = "Mesh-Type";

/** A domain event: subject `<prefix>.events.<domain>.<name>`, payload a protobuf message. */
export interface EventType<Desc extends DescMessage = DescMessage> {
  readonly domain: string;
  readonly name: string;
  readonly schema: Desc;
}

/** Defines a domain event type. */
export function defineEvent<Desc extends DescMessage>(domain: string, name: string, schema: Desc): EventType<Desc> {
  if (!/^[a-z][a-z0-9_]*$/.test(domain) || !/^[a-z][a-z0-9_]*$/.test(name)) {
    throw new Error(`invalid event name ${domain}.${name}`);
  }
  return { domain, name, schema };
}

/** Stream names of a prefix. */
export interface StreamNames {
  events: string;
  tasks: string;
  dlq: string;
  advisories: string;
}

/** A message received from a stream or subscription. */
export interface Delivery {
  subject: string;
  data: Uint8Array;
  /** Headers as a record (trace context, Mesh-* headers). */
  headers: Carrier;
  /** Logical message id (Mesh-Msg-Id, else Nats-Msg-Id), when the producer set one. */
  msgId: string | undefined;
  /** 1 on first delivery. */
  deliveryCount: number;
  /** Stream sequence (0 for core subscriptions). */
  streamSeq: number;
}

/** Thrown by a handler for a message that can never succeed: it goes to the DLQ at once. */
export class PermanentError extends Error {
  override name = "PermanentError";
}

/** A durable consumer specification. */
export interface DurableSpec {
  /** Which stream. */
  stream: keyof StreamNames;
  /** Durable name (shared by every instance: they split the messages). */
  durable: string;
  /** Subject filter, prefix included (one subject: NATS 2.9 allows one filter). */
  filter: string;
  /** Deliveries before the message is dead-lettered (default 5). */
  maxDeliver?: number;
  /** Time a delivery may stay unacknowledged (default 30 s). */
  ackWaitMs?: number;
  /** Redelivery delays after a failure, by attempt (default 250 ms, 1 s, 5 s, 15 s). */
  backoffMs?: number[];
  /** Messages in flight per instance (default 16). */
  maxAckPending?: number;
  /** Deliver only messages published from now on (default: all). */
  deliverNew?: boolean;
}

/**
 * How a retry policy redelivers a message whose handler failed: after `delayMs`, or not at all
 * (`giveUp`: the message used its last attempt and goes to the dead letters now).
 */
export interface Redelivery {
  /** Delay before the next delivery (also the delay of a retry when the dead letter cannot be written). */
  delayMs: number;
  /** True when the policy allows no more attempts. */
  giveUp: boolean;
}

/**
 * Retry policies of subjects, asked on every failed delivery (so a changed policy applies to the next
 * failure): the redelivery of a message on `subject` that failed on its `deliveryCount`th delivery
 * (1 = the first), or undefined when no policy governs the subject (the consumer's own backoff then).
 */
export type RedeliveryPolicy = (subject: string, deliveryCount: number) => Redelivery | undefined;

/** A running consumer. */
export interface Running {
  stop(): Promise<void>;
}

/** Handler of a durable consumer; `em` is set when the consumer has a database (inbox mode). */
export type DeliveryHandler = (d: Delivery, em: EntityManager | undefined) => Promise<void>;

/** Options of {@link connectBus}. */
export interface BusOptions {
  /** `nats://host:port`. */
  url: string;
  /** Subject and stream prefix (default `mesh`). */
  prefix?: string;
  /** Connection name (the server's name). */
  name: string;
  /** Logger. */
  log: Logger;
  /** Duplicate-detection window of the streams (default 2 minutes). */
  duplicateWindowMs?: number;
}

/** Stream and subject naming for a prefix. */
export function streamNames(prefix: string): StreamNames {
  const p = prefix.toUpperCase().replace(/[^A-Z0-9]/g, "_");
  return { events: `${p}_EVENTS`, tasks: `${p}_TASKS`, dlq: `${p}_DLQ`, advisories: `${p}_ADVISORIES` };
}

/** Connected bus. */
export interface Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly prefix: string;
  readonly streams: StreamNames;
  readonly log: Logger;
  /** `<prefix>.events.<domain>.<name>`. */
  eventSubject(event: EventType): string;
  /** Publishes a domain event now (outside any transaction; use the outbox for state changes). */
  publishEvent<Desc extends DescMessage>(
    event: EventType<Desc>,
    message: MessageShape<Desc>,
    opts?: { msgId?: string },
  ): Promise<{ seq: number; duplicate: boolean }>;
  /** Publishes raw bytes to a stream subject with dedup id and trace context. */
  publish(
    subject: string,
    data: Uint8Array,
    opts: { msgId: string; headers?: Carrier; parent?: import("@opentelemetry/api").Context },
  ): Promise<{ seq: number; duplicate: boolean }>;
  /** Creates or updates a durable consumer. */
  ensureConsumer(spec: DurableSpec): Promise<Consumer>;
  /** Consumes a durable consumer with `handler`; in inbox mode (`db` given) effectively once. */
  consume(spec: DurableSpec, handler: DeliveryHandler, opts?: { db?: Database }): Promise<Running>;
  /** Every instance receives every matching message (core subscription; cache invalidation). */
  fanout(filter: string, handler: (d: Delivery) => void | Promise<void>): Subscription;
  /** Publishes a message to the DLQ (headers say where it came from and why). */
  deadLetter(d: Delivery, from: { stream: string; consumer: string }, reason: string): Promise<void>;
  /**
   * Lets `policy` decide the redelivery of failed messages of the events and tasks streams, from the
   * next failure on, until the returned function is called; the first policy registered that governs
   * a subject decides.
   */
  useRedeliveryPolicy(policy: RedeliveryPolicy): () => void;
  /** What the registered policies decide for a failed delivery; undefined when none governs its subject. */
  redelivery: RedeliveryPolicy;
  /** Drains and closes the connection. */
  close(): Promise<void>;
}

/** Decodes an event delivery. */
export function decodeEvent<Desc extends DescMessage>(event: EventType<Desc>, d: Delivery): MessageShape<Desc> {
  return fromBinary(event.schema, d.data);
}

/** NATS headers as a record (first value of each header). */
export function toCarrier(h: MsgHdrs | undefined): Carrier {
  const out: Carrier = {};
  if (!h) return out;
  for (const [k, v] of h) if (v[0] !== undefined) out[k] = v[0];
  return out;
}

function toHeaders(c: Carrier): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(c)) h.set(k, v);
  return h;
}

/** A stream message as a {@link Delivery}. */
export function deliveryOf(m: JsMsg): Delivery {
  const headers = toCarrier(m.headers);
  return {
    subject: m.subject,
    data: m.data,
    headers,
    msgId: headers[MESSAGE_ID_HEADER] ?? headers["Nats-Msg-Id"],
    deliveryCount: m.info.deliveryCount,
    streamSeq: m.seq,
  };
}

/** How {@link handleDelivery} processes one message of a durable consumer. */
export interface DeliveryProcessing {
  /** Durable consumer name (span attribute, DLQ origin). */
  consumer: string;
  /** Stream name (DLQ origin). */
  stream: string;
  /** Redelivery delays by attempt. */
  backoffMs: number[];
  /** Retry policies of subjects, which replace `backoffMs` (and can give up before max_deliver) where they apply. */
  redelivery?: RedeliveryPolicy | undefined;
  /** Inbox mode: the handler's changes and the inbox row commit together. */
  db?: Database | undefined;
  /** Inbox consumer name (default `consumer`). */
  inbox?: string;
  /** Extra span attributes. */
  attributes?: Record<string, string | number>;
  handler: DeliveryHandler;
  deadLetter: Bus["deadLetter"];
  log: Logger;
}

/**
 * Runs the handler for one message inside a consumer span and settles the message: ack on success;
 * on PermanentError a dead letter at once (then term); on any other error a nak with the backoff
 * of its attempt (JetStream dead-letters it when max_deliver is reached). When a retry policy
 * governs the subject, its backoff replaces the consumer's and, at its last attempt, the message is
 * dead-lettered here and termed, as a permanent error is. A policy allowing more attempts than the
 * consumer's max_deliver is capped by it: the server stops delivering, and the dead-letter mover
 * moves the message as for any consumer.
 */
export async function handleDelivery(m: JsMsg, d: Delivery, p: DeliveryProcessing): Promise<void> {
  try {
    await withConsumerSpan(
      d.subject,
      d.msgId,
      d.headers,
      {
        "messaging.consumer.group.name": p.consumer,
        "messaging.nats.stream": p.stream,
        "messaging.nats.delivery_count": d.deliveryCount,
        ...p.attributes,
      },
      async () => {
        if (p.db) await applyOnce(p.db, p.inbox ?? p.consumer, d, p.handler);
        else await p.handler(d, undefined);
      },
    );
    m.ack();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    if (err instanceof PermanentError) {
      p.log.warn("dead-lettering message", { consumer: p.consumer, subject: d.subject, reason });
      await p.deadLetter(d, { stream: p.stream, consumer: p.consumer }, reason).then(
        () => m.term(reason),
        () => m.nak(p.backoffMs[0] ?? 1000),
      );
      return;
    }
    const policy = redeliveryOf(p, d);
    if (policy?.giveUp) {
      const why = `max attempts (${d.deliveryCount}) of the retry policy reached: ${reason}`;
      p.log.warn("dead-lettering message: its retry policy allows no more attempts", {
        consumer: p.consumer,
        subject: d.subject,
        delivery: d.deliveryCount,
        reason,
      });
      // Written before the term, like the mover's: a crash in between redelivers the message rather than losing it.
      await p.deadLetter(d, { stream: p.stream, consumer: p.consumer }, why).then(
        () => m.term(why),
        () => m.nak(policy.delayMs),
      );
      return;
    }
    const delay = policy?.delayMs ?? p.backoffMs[Math.min(d.deliveryCount - 1, p.backoffMs.length - 1)] ?? 1000;
    p.log.warn("handler failed; redelivering", {
      consumer: p.consumer,
      subject: d.subject,
      delivery: d.deliveryCount,
      delayMs: delay,
      reason,
    });
    m.nak(delay);
  }
}

/**
 * The policy's redelivery of a failed delivery, its delay in whole milliseconds (JetStream takes
 * nanoseconds as an integer); undefined without a policy, or when asking it fails, so a broken
 * policy source falls back to the consumer's own backoff instead of leaving the message unsettled.
 */
function redeliveryOf(p: DeliveryProcessing, d: Delivery): Redelivery | undefined {
  if (p.redelivery === undefined) return undefined;
  try {
    const r = p.redelivery(d.subject, d.deliveryCount);
    return r === undefined ? undefined : { giveUp: r.giveUp, delayMs: Math.max(0, Math.ceil(r.delayMs)) };
  } catch (err) {
    p.log.warn("retry policy failed; using the consumer's backoff", { subject: d.subject, error: String(err) });
    return undefined;
  }
}

/** Creates or updates a stream (idempotent at every start). */
async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(cfg.name);
    await jsm.streams.update(cfg.name, cfg);
  } catch (err) {
    if ((err as { code?: string; name?: string }).name !== "StreamNotFoundError" && !/not found/i.test(String(err))) {
      throw err;
    }
    await jsm.streams.add(cfg);
  }
}

/** Connects to NATS and declares the streams. */
export async function connectBus(opts: BusOptions): Promise<Bus> {
  const prefix = opts.prefix ?? "mesh";
  if (!/^[a-z][a-z0-9_-]*$/.test(prefix)) throw new Error(`invalid NATS prefix ${prefix}`);
  const log = opts.log;
  const nc = await connect({ servers: opts.url, name: opts.name, maxReconnectAttempts: -1 });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const streams = streamNames(prefix);
  const dupWindow = nanos(opts.duplicateWindowMs ?? 120_000);
  const day = 24 * 3600 * 1000;
  await ensureStream(jsm, {
    name: streams.events,
    subjects: [`${prefix}.events.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(7 * day),
    duplicate_window: dupWindow,
  });
  await ensureStream(jsm, {
    name: streams.tasks,
    subjects: [`${prefix}.tasks.>`],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    duplicate_window: dupWindow,
  });
  await ensureStream(jsm, {
    name: streams.dlq,
    subjects: [`${prefix}.dlq.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(30 * day),
    duplicate_window: dupWindow,
  });
  // The server announces exhausted deliveries only as core messages; capturing them in a stream
  // means a dead letter is moved even when no instance was listening at that moment.
  await ensureStream(jsm, {
    name: streams.advisories,
    subjects: [
      `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${streams.events}.>`,
      `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${streams.tasks}.>`,
    ],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    max_age: nanos(7 * day),
  });

  const publish: Bus["publish"] = (subject, data, o) => {
    const parent = o.parent ?? (o.headers ? extractTrace(o.headers) : undefined) ?? undefined;
    return withProducerSpan(subject, o.msgId, parent ?? extractTrace({}), async (ctx) => {
      const carrier: Carrier = { ...(o.headers ?? {}) };
      delete carrier.traceparent;
      delete carrier.tracestate;
      injectTrace(carrier, ctx);
      const ack = await js.publish(subject, data, { msgID: o.msgId, headers: toHeaders(carrier) });
      return { seq: ack.seq, duplicate: ack.duplicate };
    });
  };

  const deadLetter: Bus["deadLetter"] = async (d, from, reason) => {
    const headers: Carrier = {
      ...d.headers,
      "Mesh-Dlq-Subject": d.subject,
      "Mesh-Dlq-Stream": from.stream,
      "Mesh-Dlq-Consumer": from.consumer,
      "Mesh-Dlq-Seq": String(d.streamSeq),
      "Mesh-Dlq-Deliveries": String(d.deliveryCount),
      "Mesh-Dlq-Reason": reason.slice(0, 500),
      "Mesh-Dlq-At": new Date().toISOString(),
    };
    if (d.msgId !== undefined) headers[MESSAGE_ID_HEADER] = d.msgId;
    delete headers["Nats-Msg-Id"];
    await publish(`${prefix}.dlq.${from.stream}.${from.consumer}`, d.data, {
      // Per consumer: two consumers giving up on the same event make two dead letters.
      msgId: `dlq.${from.stream}.${from.consumer}.${d.streamSeq}`,
      headers,
    });
  };

  const ensureConsumer = async (spec: DurableSpec): Promise<Consumer> => {
    const stream = streams[spec.stream];
    const maxDeliver = spec.maxDeliver ?? 5;
    const backoff = (spec.backoffMs ?? [250, 1000, 5000, 15000]).slice(0, Math.max(0, maxDeliver - 1));
    const cfg: Partial<ConsumerConfig> = {
      durable_name: spec.durable,
      filter_subject: spec.filter,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(spec.ackWaitMs ?? 30_000),
      max_deliver: maxDeliver,
      max_ack_pending: spec.maxAckPending ?? 1000,
      deliver_policy: spec.deliverNew ? DeliverPolicy.New : DeliverPolicy.All,
    };
    // The server's backoff list governs redelivery after an ack timeout; a failed handler asks for
    // its own delay with nak(). Backoff must be shorter than max_deliver.
    if (backoff.length > 0) cfg.backoff = backoff.map(nanos);
    try {
      await jsm.consumers.info(stream, spec.durable);
      const { durable_name: _d, deliver_policy: _p, ...update } = cfg;
      await jsm.consumers.update(stream, spec.durable, update);
    } catch (err) {
      if (!/not found/i.test(String(err))) throw err;
      await jsm.consumers.add(stream, cfg);
    }
    return js.consumers.get(stream, spec.durable);
  };

  // Registered retry policies, asked in order on every failure (read live: a change applies at once).
  const policies: RedeliveryPolicy[] = [];
  const redelivery: RedeliveryPolicy = (subject, deliveryCount) => {
    for (const policy of policies) {
      const r = policy(subject, deliveryCount);
      if (r !== undefined) return r;
    }
    return undefined;
  };

  const consume: Bus["consume"] = async (spec, handler, o = {}) => {
    const consumer = await ensureConsumer(spec);
    const stream = streams[spec.stream];
    const backoff = spec.backoffMs ?? [250, 1000, 5000, 15000];
    const messages = await consumer.consume({ max_messages: spec.maxAckPending ?? 16 });
    const processing: DeliveryProcessing = {
      consumer: spec.durable,
      stream,
      backoffMs: backoff,
      // Policies govern the deployment's work and events, never the bus's own plumbing (advisories, DLQ).
      redelivery: spec.stream === "events" || spec.stream === "tasks" ? redelivery : undefined,
      db: o.db,
      handler,
      deadLetter,
      log,
    };
    const handleOne = (m: JsMsg): Promise<void> => handleDelivery(m, deliveryOf(m), processing);
    const loop = (async () => {
      for await (const m of messages) {
        await handleOne(m);
      }
    })();
    return {
      async stop() {
        messages.stop();
        await loop.catch(() => undefined);
      },
    };
  };

  const fanout: Bus["fanout"] = (filter, handler) =>
    nc.subscribe(filter, {
      callback: (err, msg) => {
        if (err) {
          log.warn("subscription error", { filter, error: err.message });
          return;
        }
        const headers = toCarrier(msg.headers);
        const d: Delivery = {
          subject: msg.subject,
          data: msg.data,
          headers,
          msgId: headers[MESSAGE_ID_HEADER] ?? headers["Nats-Msg-Id"],
          deliveryCount: 1,
          streamSeq: 0,
        };
        void Promise.resolve()
          .then(() => handler(d))
          .catch((e: unknown) => log.warn("fan-out handler failed", { filter, error: String(e) }));
      },
    });

  return {
    nc,
    js,
    jsm,
    prefix,
    streams,
    log,
    eventSubject: (e) => `${prefix}.events.${e.domain}.${e.name}`,
    publishEvent(event, message, o = {}) {
      const msgId = o.msgId ?? randomUUID();
      return publish(`${prefix}.events.${event.domain}.${event.name}`, toBinary(event.schema, message), {
        msgId,
        headers: { [TYPE_HEADER]: event.schema.typeName, [MESSAGE_ID_HEADER]: msgId },
      });
    },
    publish,
    ensureConsumer,
    consume,
    fanout,
    deadLetter,
    useRedeliveryPolicy(policy) {
      policies.push(policy);
      return () => {
        const i = policies.indexOf(policy);
        if (i >= 0) policies.splice(i, 1);
      };
    },
    redelivery,
    async close() {
      await nc.drain().catch(() => nc.close());
    },
  };
}

/**
 * Applies a delivery once per consumer: the inbox row and the handler's changes commit together,
 * so a redelivered message whose effects already committed is acknowledged without running again.
 */
export async function applyOnce(db: Database, consumer: string, d: Delivery, handler: DeliveryHandler): Promise<void> {
  const msgId = d.msgId ?? `${d.subject}#${d.streamSeq}`;
  await db.transaction(async (em) => {
    const rows = await em
      .getConnection()
      .execute<{ inserted: number }[]>(
        `insert into "${db.schema}"."inbox" (consumer, msg_id, subject, processed_at) values (?, ?, ?, now()) on conflict do nothing returning 1 as inserted`,
        [consumer, msgId, d.subject],
        "all",
        em.getTransactionContext(),
      );
    if (rows.length === 0) return;
    await handler(d, em);
  });
}
