/**
 * Prioritised work for an agent on JetStream 2.9 (no priority groups there): one subject and one
 * shared durable consumer per level (`<prefix>.tasks.<agent>.urgent|normal|bulk`). Every instance
 * of the agent pulls a few messages from each level into local buffers and a scheduler picks the
 * next task by smooth weighted round-robin over the non-empty levels: with the default weights
 * (16 : 4 : 1) urgent work is taken first whenever it waits, yet bulk work keeps moving (about one
 * task in 21) even under a steady stream of urgent work — the starvation guard.
 */
import type { JsMsg } from "@nats-io/jetstream";
import { Priority } from "../../gen/mesh/common/v1/types_pb.ts";
import type { Database } from "../db/index.ts";
import {
  type Bus,
  type Delivery,
  type DeliveryHandler,
  deliveryOf,
  handleDelivery,
  MESSAGE_ID_HEADER,
  type Running,
} from "./bus.ts";
import { type Carrier, injectTrace } from "./trace.ts";

/** Priority levels, most urgent first. */
export const levels = ["urgent", "normal", "bulk"] as const;
/** A priority level. */
export type Level = (typeof levels)[number];

/** Level of a protobuf Priority (unspecified = normal). */
export function levelOf(p: Priority): Level {
  return p === Priority.URGENT ? "urgent" : p === Priority.BULK ? "bulk" : "normal";
}

/** `<prefix>.tasks.<agent>.<level>`. */
export function taskSubject(prefix: string, agent: string, level: Level): string {
  return `${prefix}.tasks.${agent}.${level}`;
}

/** Publishes a task now (outside a transaction; inside one, use the outbox with {@link taskSubject}). */
export function publishTask(
  bus: Bus,
  agent: string,
  level: Level,
  data: Uint8Array,
  msgId: string,
  headers: Carrier = {},
): Promise<{ seq: number; duplicate: boolean }> {
  return bus.publish(taskSubject(bus.prefix, agent, level), data, {
    msgId,
    headers: injectTrace({ ...headers, [MESSAGE_ID_HEADER]: msgId }),
  });
}

/** Options of {@link startPriorityWorker}. */
export interface PriorityWorkerOptions {
  /** Agent whose work this is (subject and durable names). */
  agent: string;
  /** Tasks executed at once by this instance (default 4). */
  concurrency?: number;
  /** Relative weights of the levels (default urgent 16, normal 4, bulk 1). */
  weights?: Partial<Record<Level, number>>;
  /** Deliveries before a task is dead-lettered (default 5). */
  maxDeliver?: number;
  /** Time a delivered task may stay unacknowledged; buffered and running tasks are kept alive (default 30 s). */
  ackWaitMs?: number;
  /** Redelivery delays after a failure (default 250 ms, 1 s, 5 s, 15 s). */
  backoffMs?: number[];
  /** With a database, each task is applied once (inbox row committed with the handler's changes). */
  db?: Database;
  /** Observes every scheduling decision with what was waiting locally when it was made (tests, metrics). */
  onTake?: (level: Level, d: Delivery, waiting: Record<Level, number>) => void;
}

/** A running worker. */
export interface PriorityWorker extends Running {
  /** Tasks buffered locally per level. */
  buffered(): Record<Level, number>;
}

interface Buffered {
  msg: JsMsg;
  level: Level;
}

/** Starts a worker draining the agent's three levels with `handler`. */
export async function startPriorityWorker(
  bus: Bus,
  opts: PriorityWorkerOptions,
  handler: DeliveryHandler,
): Promise<PriorityWorker> {
  const concurrency = opts.concurrency ?? 4;
  const weights: Record<Level, number> = { urgent: 16, normal: 4, bulk: 1, ...opts.weights };
  const ackWaitMs = opts.ackWaitMs ?? 30_000;
  const backoff = opts.backoffMs ?? [250, 1000, 5000, 15000];
  const queues: Record<Level, Buffered[]> = { urgent: [], normal: [], bulk: [] };
  const credit: Record<Level, number> = { urgent: 0, normal: 0, bulk: 0 };
  let active = 0;
  let stopped = false;
  let wake: (() => void) | undefined;
  const signal = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  // A small prefetch per level keeps the decision local and fast while leaving the rest of the
  // queue to other instances sharing the durable consumer.
  const prefetch = Math.max(1, concurrency);
  const iterators = await Promise.all(
    levels.map(async (level) => {
      const consumer = await bus.ensureConsumer({
        stream: "tasks",
        durable: `tasks_${opts.agent}_${level}`,
        filter: taskSubject(bus.prefix, opts.agent, level),
        maxDeliver: opts.maxDeliver ?? 5,
        ackWaitMs,
        backoffMs: backoff,
        maxAckPending: 10_000,
      });
      const messages = await consumer.consume({ max_messages: prefetch });
      return { level, messages };
    }),
  );
  const feeders = iterators.map(({ level, messages }) =>
    (async () => {
      for await (const msg of messages) {
        queues[level].push({ msg, level });
        signal();
      }
    })(),
  );

  // Tasks waiting in a local buffer must not time out on the server.
  const keepAlive = setInterval(
    () => {
      for (const l of levels) for (const b of queues[l]) b.msg.working();
    },
    Math.max(500, ackWaitMs / 3),
  );
  keepAlive.unref();

  /** Smooth weighted round-robin (as in nginx) over the levels that have work. */
  const pick = (): { task: Buffered; waiting: Record<Level, number> } | undefined => {
    const waiting = { urgent: queues.urgent.length, normal: queues.normal.length, bulk: queues.bulk.length };
    let best: Level | undefined;
    let total = 0;
    for (const l of levels) {
      if (queues[l].length === 0) {
        credit[l] = 0;
        continue;
      }
      credit[l] += weights[l];
      total += weights[l];
      if (best === undefined || credit[l] > credit[best]) best = l;
    }
    if (best === undefined) return undefined;
    credit[best] -= total;
    const task = queues[best].shift();
    return task && { task, waiting };
  };

  const run = async (b: Buffered, waiting: Record<Level, number>): Promise<void> => {
    const d = deliveryOf(b.msg);
    opts.onTake?.(b.level, d, waiting);
    const keep = setInterval(() => b.msg.working(), Math.max(500, ackWaitMs / 3));
    try {
      await handleDelivery(b.msg, d, {
        consumer: `tasks_${opts.agent}_${b.level}`,
        inbox: `tasks_${opts.agent}`,
        stream: bus.streams.tasks,
        backoffMs: backoff,
        redelivery: bus.redelivery,
        db: opts.db,
        attributes: { "mesh.task.priority": b.level },
        handler,
        deadLetter: bus.deadLetter,
        log: bus.log,
      });
    } finally {
      clearInterval(keep);
    }
  };

  const loop = (async () => {
    while (!stopped) {
      if (active >= concurrency) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      const next = pick();
      if (next === undefined) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      active++;
      void run(next.task, next.waiting).finally(() => {
        active--;
        signal();
      });
    }
  })();

  return {
    buffered: () => ({ urgent: queues.urgent.length, normal: queues.normal.length, bulk: queues.bulk.length }),
    async stop() {
      stopped = true;
      clearInterval(keepAlive);
      for (const { messages } of iterators) messages.stop();
      signal();
      await loop;
      await Promise.allSettled(feeders);
      while (active > 0) await new Promise((r) => setTimeout(r, 10));
      // Buffered, never started tasks go back to the queue for other instances at once.
      for (const l of levels) for (const b of queues[l].splice(0)) b.msg.nak();
    },
  };
}
