/**
 * Transactional outbox: a state change and the messages announcing it commit in one PostgreSQL
 * transaction; the relay publishes committed messages to JetStream (with their Nats-Msg-Id, so a
 * relay that crashes after publishing but before deleting causes no duplicate) and deletes them.
 * An event exists if and only if its change committed.
 */
import { randomUUID } from "node:crypto";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { toBinary } from "@bufbuild/protobuf";
import type { Context } from "@opentelemetry/api";
import type { Database, EntityManager } from "../db/index.ts";
import { OutboxMessage } from "../db/index.ts";
import type { Logger } from "../log/index.ts";
import { type Bus, type EventType, MESSAGE_ID_HEADER, type Running, TYPE_HEADER } from "./bus.ts";
import { type Carrier, injectTrace } from "./trace.ts";

/** One message to publish after commit. */
export interface OutgoingMessage {
  subject: string;
  data: Uint8Array;
  /** Dedup id (default: a random UUID). */
  msgId?: string | undefined;
  headers?: Carrier;
  /** Trace context to continue (default: the active one). */
  parent?: Context | undefined;
}

/** Adds `msg` to the outbox of the transaction `em` belongs to. */
export function enqueue(db: Database, em: EntityManager, msg: OutgoingMessage): string {
  const msgId = msg.msgId ?? randomUUID();
  const headers = injectTrace({ ...(msg.headers ?? {}), [MESSAGE_ID_HEADER]: msgId }, msg.parent);
  em.create(OutboxMessage, { subject: msg.subject, msgId, payload: Buffer.from(msg.data), headers });
  db.markOutbox(em);
  return msgId;
}

/** Adds a domain event to the outbox of the transaction `em` belongs to. */
export function enqueueEvent<Desc extends DescMessage>(
  db: Database,
  em: EntityManager,
  prefix: string,
  event: EventType<Desc>,
  message: MessageShape<Desc>,
  opts: { msgId?: string; parent?: Context } = {},
): string {
  return enqueue(db, em, {
    subject: `${prefix}.events.${event.domain}.${event.name}`,
    data: toBinary(event.schema, message),
    msgId: opts.msgId,
    parent: opts.parent,
    headers: { [TYPE_HEADER]: event.schema.typeName },
  });
}

/** Options of {@link startOutboxRelay}. */
export interface RelayOptions {
  /** Poll interval catching messages left by a crash (default 1 s); commits wake the relay at once. */
  pollMs?: number;
  /** Messages per batch (default 200). */
  batch?: number;
  log: Logger;
}

interface Row {
  id: number;
  subject: string;
  msg_id: string;
  payload: Buffer;
  headers: Carrier;
}

/**
 * Publishes committed outbox messages. Woken by every commit that carried messages, and polling
 * for what a crashed process left. Several relays (replicas) split the work with SKIP LOCKED.
 */
export function startOutboxRelay(db: Database, bus: Bus, opts: RelayOptions): Running & { flush(): Promise<void> } {
  const pollMs = opts.pollMs ?? 1000;
  const batch = opts.batch ?? 200;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  const drainOnce = async (): Promise<number> =>
    db.transaction(async (em) => {
      const tx = em.getTransactionContext();
      const conn = em.getConnection();
      const rows = await conn.execute<Row[]>(
        `select id, subject, msg_id, payload, headers from "${db.schema}"."outbox" order by id limit ? for update skip locked`,
        [batch],
        "all",
        tx,
      );
      if (rows.length === 0) return 0;
      await Promise.all(
        rows.map((r) => bus.publish(r.subject, new Uint8Array(r.payload), { msgId: r.msg_id, headers: r.headers })),
      );
      await conn.execute(
        `delete from "${db.schema}"."outbox" where id in (${rows.map(() => "?").join(",")})`,
        rows.map((r) => r.id),
        "run",
        tx,
      );
      return rows.length;
    });

  const run = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          while (!stopped && (await drainOnce()) === batch) {}
        } while (again && !stopped);
      } catch (err) {
        if (!stopped) opts.log.warn("outbox relay failed; retrying on next poll", { error: String(err) });
      } finally {
        running = undefined;
      }
    })();
    return running;
  };

  const off = db.onOutboxCommit(() => void run());
  const timer = setInterval(() => void run(), pollMs);
  timer.unref();
  void run();
  return {
    flush: async () => {
      await run();
      if (running) await running;
    },
    async stop() {
      stopped = true;
      off();
      clearInterval(timer);
      await running;
    },
  };
}
