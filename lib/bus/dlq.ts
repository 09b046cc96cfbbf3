/**
 * Dead letters. When a message exhausts its deliveries, JetStream announces it with a
 * MAX_DELIVERIES advisory; the advisories stream keeps those, and the mover (any instance; they
 * share one durable consumer) copies the original message to `<prefix>.dlq.<stream>.<consumer>`
 * with headers saying where it came from, then removes it from the work queue. Handlers that know a
 * message can never succeed dead-letter it at once (PermanentError). Dead letters can be listed and
 * replayed to their original subject.
 */
import { type Bus, MESSAGE_ID_HEADER, type Running } from "./index.ts";
import type { Carrier } from "./trace.ts";

/** A message in the DLQ. */
export interface DeadLetter {
  /** Sequence in the DLQ stream (the handle for replay). */
  seq: number;
  /** Subject the message was published to. */
  subject: string;
  /** Stream and consumer it failed in. */
  stream: string;
  consumer: string;
  /** Its sequence in the original stream. */
  originalSeq: number;
  /** Deliveries made. */
  deliveries: number;
  /** Why it was dead-lettered. */
  reason: string;
  /** Logical message id. */
  msgId: string | undefined;
  /** When it was dead-lettered. */
  at: string;
  data: Uint8Array;
  headers: Carrier;
}

interface MaxDeliveriesAdvisory {
  stream: string;
  consumer: string;
  stream_seq: number;
  deliveries: number;
}

function carrierOf(h: { keys(): string[]; get(k: string): string } | undefined): Carrier {
  const out: Carrier = {};
  if (!h) return out;
  for (const k of h.keys()) out[k] = h.get(k);
  return out;
}

/** Moves messages named by MAX_DELIVERIES advisories to the DLQ. */
export async function startDeadLetterMover(bus: Bus): Promise<Running> {
  return bus.consume(
    { stream: "advisories", durable: "dlq_mover", filter: ">", maxDeliver: 10, backoffMs: [1000, 5000] },
    async (d) => {
      const adv = JSON.parse(new TextDecoder().decode(d.data)) as MaxDeliveriesAdvisory;
      let original: Awaited<ReturnType<typeof bus.jsm.streams.getMessage>>;
      try {
        original = await bus.jsm.streams.getMessage(adv.stream, { seq: adv.stream_seq });
      } catch {
        return; // already gone (acknowledged late, or moved by another instance)
      }
      if (original === null) return;
      const headers = carrierOf(original.header as never);
      await bus.deadLetter(
        {
          subject: original.subject,
          data: original.data,
          headers,
          msgId: headers[MESSAGE_ID_HEADER] ?? headers["Nats-Msg-Id"],
          deliveryCount: adv.deliveries,
          streamSeq: adv.stream_seq,
        },
        { stream: adv.stream, consumer: adv.consumer },
        `max deliveries (${adv.deliveries}) reached`,
      );
      // Work-queue messages are removed once dead-lettered; events stay in their stream for others.
      if (adv.stream === bus.streams.tasks) {
        await bus.jsm.streams.deleteMessage(adv.stream, adv.stream_seq).catch(() => false);
      }
    },
  );
}

/** Lists dead letters, oldest first, optionally only those from `consumer`. */
export async function listDeadLetters(
  bus: Bus,
  opts: { limit?: number; consumer?: string } = {},
): Promise<DeadLetter[]> {
  const limit = opts.limit ?? 100;
  const info = await bus.jsm.streams.info(bus.streams.dlq);
  const out: DeadLetter[] = [];
  if (info.state.messages === 0) return out;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < limit; seq++) {
    const m = await bus.jsm.streams.getMessage(bus.streams.dlq, { seq }).catch(() => null);
    if (m === null) continue;
    const h = carrierOf(m.header as never);
    const dl: DeadLetter = {
      seq,
      subject: h["Mesh-Dlq-Subject"] ?? "",
      stream: h["Mesh-Dlq-Stream"] ?? "",
      consumer: h["Mesh-Dlq-Consumer"] ?? "",
      originalSeq: Number(h["Mesh-Dlq-Seq"] ?? 0),
      deliveries: Number(h["Mesh-Dlq-Deliveries"] ?? 0),
      reason: h["Mesh-Dlq-Reason"] ?? "",
      msgId: h[MESSAGE_ID_HEADER],
      at: h["Mesh-Dlq-At"] ?? "",
      data: m.data,
      headers: h,
    };
    if (opts.consumer === undefined || dl.consumer === opts.consumer) out.push(dl);
  }
  return out;
}

/**
 * Replays a dead letter to its original subject (the original logical message id is kept, so an
 * inbox still recognises it; the NATS dedup id is new) and removes it from the DLQ.
 */
export async function replayDeadLetter(bus: Bus, seq: number): Promise<{ subject: string; seq: number }> {
  const m = await bus.jsm.streams.getMessage(bus.streams.dlq, { seq });
  if (m === null) throw new Error(`no dead letter ${seq}`);
  const h = carrierOf(m.header as never);
  const subject = h["Mesh-Dlq-Subject"];
  if (!subject) throw new Error(`dead letter ${seq} has no original subject`);
  const headers: Carrier = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith("Mesh-Dlq-") && k !== "Nats-Msg-Id") headers[k] = v;
  headers["Mesh-Replay-Of"] = String(seq);
  const ack = await bus.publish(subject, m.data, { msgId: `replay.${bus.streams.dlq}.${seq}`, headers });
  await bus.jsm.streams.deleteMessage(bus.streams.dlq, seq);
  return { subject, seq: ack.seq };
}
