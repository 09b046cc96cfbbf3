/**
 * Dead letters. When a message exhausts its deliveries, JetStream announces it with a
 * MAX_DELIVERIES advisory; the advisories stream keeps those, and the mover (any instance; they
 * share one durable consumer) copies the original message to `<prefix>.dlq.<stream>.<consumer>`
 * with headers saying where it came from, then removes it from the work queue. Handlers that know a
 * message can never succeed dead-letter it at once (PermanentError). Dead letters can be listed and
 * selected (by DLQ sequence, message id, original subject filter, stream, consumer, time), replayed
 * to their original subject (or another one) and purged.
 */
import type { MsgHdrs } from "@nats-io/transport-node";
import { type Bus, MESSAGE_ID_HEADER, type Running, toCarrier } from "./bus.ts";
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
  /** When it was dead-lettered (ISO 8601). */
  at: string;
  /** `at` as a date (the DLQ's own timestamp when the header is missing or unreadable). */
  failedAt: Date;
  data: Uint8Array;
  headers: Carrier;
}

/** Which dead letters to read; every criterion given must hold. */
export interface DeadLetterFilter {
  /** Only these DLQ sequences. */
  seqs?: readonly number[];
  /** Only dead letters whose id ({@link deadLetterId}) is one of these. */
  msgIds?: readonly string[];
  /** Only dead letters whose original subject matches this NATS subject filter (`*`, `>`). */
  subject?: string;
  /** Only dead letters from this stream. */
  stream?: string;
  /** Only dead letters from this durable consumer. */
  consumer?: string;
  /** Only dead letters that failed at or after this time. */
  failedFrom?: Date;
  /** Only dead letters that failed before this time. */
  failedUntil?: Date;
  /** At most this many (oldest first). */
  limit?: number;
}

/** Thrown when a DLQ sequence names no dead letter (never one, or replayed or purged since). */
export class DeadLetterNotFoundError extends Error {
  override name = "DeadLetterNotFoundError";
  /** The DLQ sequence asked for. */
  readonly seq: number;
  constructor(seq: number) {
    super(`no dead letter ${seq}`);
    this.seq = seq;
  }
}

interface MaxDeliveriesAdvisory {
  stream: string;
  consumer: string;
  stream_seq: number;
  deliveries: number;
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
      const headers = toCarrier(original.header);
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

/**
 * True when `subject` matches the NATS subject filter `filter`: `*` matches one token, a final `>`
 * one or more.
 */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    const token = f[i];
    if (token === ">") return i === f.length - 1 && s.length > i;
    if (i >= s.length) return false;
    if (token !== "*" && token !== s[i]) return false;
  }
  return f.length === s.length;
}

/**
 * The id a dead letter is addressed by: its logical message id (Mesh-Msg-Id, which for tasks is
 * also the Nats-Msg-Id they were published with), else the DLQ's own dedup id
 * (`dlq.<stream>.<sequence>`).
 */
export function deadLetterId(dl: DeadLetter): string {
  return dl.msgId ?? dl.headers["Nats-Msg-Id"] ?? `dlq.${dl.stream}.${dl.originalSeq}`;
}

/** True when `dl` satisfies every criterion of `filter` (`limit` aside). */
export function matchesDeadLetter(dl: DeadLetter, filter: DeadLetterFilter): boolean {
  if (filter.seqs !== undefined && !filter.seqs.includes(dl.seq)) return false;
  if (filter.msgIds !== undefined && !filter.msgIds.includes(deadLetterId(dl))) return false;
  if (filter.subject !== undefined && !subjectMatches(filter.subject, dl.subject)) return false;
  if (filter.stream !== undefined && dl.stream !== filter.stream) return false;
  if (filter.consumer !== undefined && dl.consumer !== filter.consumer) return false;
  if (filter.failedFrom !== undefined && dl.failedAt.getTime() < filter.failedFrom.getTime()) return false;
  if (filter.failedUntil !== undefined && dl.failedAt.getTime() >= filter.failedUntil.getTime()) return false;
  return true;
}

function deadLetterOf(seq: number, header: MsgHdrs | undefined, data: Uint8Array, storedAt: Date): DeadLetter {
  const h = toCarrier(header);
  const at = h["Mesh-Dlq-At"] ?? "";
  const parsed = at === "" ? Number.NaN : Date.parse(at);
  return {
    seq,
    subject: h["Mesh-Dlq-Subject"] ?? "",
    stream: h["Mesh-Dlq-Stream"] ?? "",
    consumer: h["Mesh-Dlq-Consumer"] ?? "",
    originalSeq: Number(h["Mesh-Dlq-Seq"] ?? 0),
    deliveries: Number(h["Mesh-Dlq-Deliveries"] ?? 0),
    reason: h["Mesh-Dlq-Reason"] ?? "",
    msgId: h[MESSAGE_ID_HEADER],
    at,
    failedAt: Number.isNaN(parsed) ? storedAt : new Date(parsed),
    data,
    headers: h,
  };
}

/** Reads one dead letter by DLQ sequence; null when there is none. */
export async function getDeadLetter(bus: Bus, seq: number): Promise<DeadLetter | null> {
  const m = await bus.jsm.streams.getMessage(bus.streams.dlq, { seq }).catch(() => null);
  return m === null ? null : deadLetterOf(seq, m.header, m.data, m.time);
}

/**
 * Reads the dead letters matching `filter`, oldest first (all of them unless `filter.limit`). The
 * whole DLQ is read through an ordered consumer (one round trip per batch, not per message); a
 * sequence list is read message by message.
 */
export async function scanDeadLetters(bus: Bus, filter: DeadLetterFilter = {}): Promise<DeadLetter[]> {
  const limit = filter.limit ?? Number.POSITIVE_INFINITY;
  const out: DeadLetter[] = [];
  if (limit <= 0) return out;
  if (filter.seqs !== undefined) {
    for (const seq of [...new Set(filter.seqs)].sort((a, b) => a - b)) {
      const dl = await getDeadLetter(bus, seq);
      if (dl !== null && matchesDeadLetter(dl, filter)) out.push(dl);
      if (out.length >= limit) break;
    }
    return out;
  }
  const info = await bus.jsm.streams.info(bus.streams.dlq);
  if (info.state.messages === 0) return out;
  // Dead letters arriving during the scan are left for the next one.
  const last = info.state.last_seq;
  const reader = await bus.js.consumers.get(bus.streams.dlq);
  try {
    for (let done = false; !done; ) {
      const batch = await reader.fetch({ max_messages: 500, expires: 1000 });
      let received = 0;
      for await (const m of batch) {
        received++;
        if (m.seq > last) {
          done = true;
          break;
        }
        const dl = deadLetterOf(m.seq, m.headers, m.data, m.time);
        if (matchesDeadLetter(dl, filter)) out.push(dl);
        // The last message may have been removed since `info`: `pending` says nothing follows.
        if (out.length >= limit || m.seq >= last || m.info.pending === 0) {
          done = true;
          break;
        }
      }
      await batch.close();
      if (received === 0) done = true;
    }
  } finally {
    await reader.delete().catch(() => false);
  }
  return out;
}

/** Lists dead letters, oldest first: at most `limit` (default 100) matching the other criteria. */
export async function listDeadLetters(bus: Bus, opts: DeadLetterFilter = {}): Promise<DeadLetter[]> {
  return scanDeadLetters(bus, { ...opts, limit: opts.limit ?? 100 });
}

/** Options of {@link replayDeadLetter}. */
export interface ReplayOptions {
  /**
   * Nats-Msg-Id of the republished message (default `replay.<dlq stream>.<seq>`). Derive it from
   * the caller's request id so a retried replay inside the dedup window is dropped by JetStream.
   */
  msgId?: string;
  /** Publish on this subject instead of the original one. */
  subject?: string;
}

/**
 * Replays a dead letter to its original subject (or `opts.subject`; the original logical message
 * id is kept, so an inbox still recognises it; the NATS dedup id is new) and removes it from the
 * DLQ. `duplicate` is true when JetStream dropped the publish as a duplicate of an earlier replay
 * with the same id (which did reach the stream, at `seq`). Throws DeadLetterNotFoundError when
 * `seq` names no dead letter.
 */
export async function replayDeadLetter(
  bus: Bus,
  seq: number,
  opts: ReplayOptions = {},
): Promise<{ subject: string; seq: number; duplicate: boolean }> {
  const m = await bus.jsm.streams.getMessage(bus.streams.dlq, { seq });
  if (m === null) throw new DeadLetterNotFoundError(seq);
  const h = toCarrier(m.header as never);
  const subject = opts.subject ?? h["Mesh-Dlq-Subject"];
  if (!subject) throw new Error(`dead letter ${seq} has no original subject`);
  const headers: Carrier = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith("Mesh-Dlq-") && k !== "Nats-Msg-Id") headers[k] = v;
  headers["Mesh-Replay-Of"] = String(seq);
  const ack = await bus.publish(subject, m.data, { msgId: opts.msgId ?? `replay.${bus.streams.dlq}.${seq}`, headers });
  // Gone already means a concurrent replay or purge removed it; the message is out of the DLQ either way.
  await purgeDeadLetter(bus, seq);
  return { subject, seq: ack.seq, duplicate: ack.duplicate };
}

/** Deletes a dead letter for good; false when `seq` names none (never, or replayed or purged since). */
export async function purgeDeadLetter(bus: Bus, seq: number): Promise<boolean> {
  try {
    return await bus.jsm.streams.deleteMessage(bus.streams.dlq, seq);
  } catch (err) {
    // The server's "not found" answers vary by position (before, inside or past the stream).
    if ((await getDeadLetter(bus, seq)) === null) return false;
    throw err;
  }
}
