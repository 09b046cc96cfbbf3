/**
 * Dead letters. When a message exhausts its deliveries, JetStream announces it with a
 * MAX_DELIVERIES advisory; the advisories stream keeps those, and the mover (any instance; they
 * share one durable consumer) copies the original message to `<prefix>.dlq.<stream>.<consumer>`
 * with headers saying where it came from, then removes it from the work queue. Handlers that know a
 * message can never succeed dead-letter it at once (PermanentError). Dead letters can be listed and
 * selected (by DLQ sequence, message id, original subject filter, stream, consumer, time), replayed
 * to their original subject (or another one) and purged.
 *
 * Reads are bounded: a scan walks the DLQ in batches of at most 1,000 messages (one round trip each,
 * through a short-lived ordered consumer), headers only unless payloads are asked for, and holds one
 * batch at a time; a DLQ sequence is the cursor to resume from. Replay and purge act on one letter
 * at a time, so callers that act on many scan, then act on each batch's letters.
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
  /** The payload, or its first bytes (see `truncated`); empty when read headers only. */
  data: Uint8Array;
  /** Size of the whole payload in bytes. */
  size: number;
  /** True when `data` holds less than the whole payload. */
  truncated: boolean;
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

/** Messages a scan reads per round trip, and so at most holds at once, unless told otherwise. */
export const DEAD_LETTER_BATCH = 500;
/** Largest batch a scan accepts. */
export const MAX_DEAD_LETTER_BATCH = 1000;
/** Most dead letters {@link listDeadLetters} returns in one call. */
export const MAX_DEAD_LETTER_PAGE = 1000;
/** Payload bytes {@link listDeadLetters} keeps per letter unless told otherwise. */
export const DEFAULT_PAYLOAD_BYTES = 16 * 1024;
/** How long a fetch waits for messages the stream said it holds (they may be removed meanwhile). */
const FETCH_EXPIRES_MS = 2000;

/** How a scan walks the DLQ. */
export interface DeadLetterScan {
  /** Oldest first (the default) or newest first, in DLQ order (the order they failed in). */
  order?: "oldest" | "newest";
  /**
   * Resume point, exclusive: a DLQ sequence to continue after (oldest first) or before (newest
   * first); the last `seq` of the previous page.
   */
  cursor?: number;
  /** Messages read per round trip and held at once: 1–1000, default {@link DEAD_LETTER_BATCH}. */
  batchSize?: number;
  /**
   * Payload bytes kept per letter; a longer payload is cut and the letter flagged `truncated`. 0 (the
   * default) reads headers only: the server sends no payload at all.
   */
  payloadBytes?: number;
}

/** One batch of a scan: the letters in it that match the filter, and how many it read. */
export interface DeadLetterBatch {
  letters: DeadLetter[];
  /** Dead letters read for this batch, matching or not (never more than the batch size). */
  scanned: number;
}

function deadLetterOf(
  seq: number,
  header: MsgHdrs | undefined,
  data: Uint8Array,
  storedAt: Date,
  payloadBytes: number,
): DeadLetter {
  const h = toCarrier(header);
  const at = h["Mesh-Dlq-At"] ?? "";
  const parsed = at === "" ? Number.NaN : Date.parse(at);
  // A headers-only read carries the payload's size in a header of the server's.
  const sent = h["Nats-Msg-Size"];
  delete h["Nats-Msg-Size"];
  const size = payloadBytes === 0 && sent !== undefined ? Number(sent) : data.length;
  // A copy, so that a cut payload does not keep the whole message buffer alive.
  const kept = data.length > payloadBytes ? data.slice(0, payloadBytes) : data;
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
    data: kept,
    size,
    truncated: kept.length < size,
    headers: h,
  };
}

/** Reads one dead letter by DLQ sequence (payload whole); null when there is none. */
export async function getDeadLetter(bus: Bus, seq: number): Promise<DeadLetter | null> {
  const m = await bus.jsm.streams.getMessage(bus.streams.dlq, { seq }).catch(() => null);
  return m === null ? null : deadLetterOf(seq, m.header, m.data, m.time, Number.POSITIVE_INFINITY);
}

function batchSizeOf(scan: DeadLetterScan): number {
  const n = scan.batchSize ?? DEAD_LETTER_BATCH;
  if (!Number.isInteger(n) || n < 1 || n > MAX_DEAD_LETTER_BATCH) {
    throw new RangeError(`dead-letter batch size must be 1–${MAX_DEAD_LETTER_BATCH}, not ${n}`);
  }
  return n;
}

/**
 * Reads the headers of up to `max` messages from `start` on, stopping after `until`, through an
 * ordered consumer (deleted afterwards). `pending` is what the stream holds from `start` on;
 * `knownPending` narrows it to the messages known to lie in the range, so that no fetch waits for
 * more than there are.
 */
async function readRange(
  bus: Bus,
  start: number,
  until: number,
  max: number,
  knownPending?: (pending: number) => number,
): Promise<{ letters: DeadLetter[]; pending: number }> {
  const reader = await bus.js.consumers.get(bus.streams.dlq, { opt_start_seq: start, headers_only: true });
  try {
    const pending = (await reader.info(true)).num_pending;
    const want = Math.min(max, knownPending === undefined ? pending : knownPending(pending));
    const letters: DeadLetter[] = [];
    if (want <= 0) return { letters, pending };
    const batch = await reader.fetch({ max_messages: want, expires: FETCH_EXPIRES_MS });
    for await (const m of batch) {
      if (m.seq > until) break;
      letters.push(deadLetterOf(m.seq, m.headers, m.data, m.time, 0));
      if (m.seq === until || m.info.pending === 0 || letters.length >= want) break;
    }
    await batch.close();
    return { letters, pending };
  } finally {
    await reader.delete().catch(() => false);
  }
}

/**
 * The letters with their payloads (cut to `payloadBytes`), read one at a time so that one whole
 * payload at most is held; letters removed since their headers were read are left out.
 */
async function withPayloads(bus: Bus, letters: DeadLetter[], payloadBytes: number): Promise<DeadLetter[]> {
  if (payloadBytes === 0) return letters;
  const out: DeadLetter[] = [];
  for (const dl of letters) {
    const m = await bus.jsm.streams.getMessage(bus.streams.dlq, { seq: dl.seq }).catch(() => null);
    if (m !== null) out.push(deadLetterOf(dl.seq, m.header, m.data, m.time, payloadBytes));
  }
  return out;
}

/**
 * Walks the dead letters, oldest or newest first, in batches of at most `scan.batchSize` read in
 * one round trip each (headers only); yields the letters of each batch that match `filter`, and
 * never holds more than one batch, so a DLQ of any size is scanned in bounded memory (stop early
 * with `break`; the consumer is removed). With `scan.payloadBytes`, the matching letters' payloads
 * are then read one by one. Dead letters arriving during the scan are left for the next one. A
 * sequence list (`filter.seqs`) is read letter by letter instead.
 */
export async function* scanDeadLetters(
  bus: Bus,
  filter: DeadLetterFilter = {},
  scan: DeadLetterScan = {},
): AsyncGenerator<DeadLetterBatch, void, undefined> {
  const size = batchSizeOf(scan);
  const newest = scan.order === "newest";
  const payloadBytes = scan.payloadBytes ?? 0;
  let left = filter.limit ?? Number.POSITIVE_INFINITY;
  const pick = (read: DeadLetter[]): DeadLetter[] => {
    const letters: DeadLetter[] = [];
    for (const dl of read) {
      if (left <= 0) break;
      if (matchesDeadLetter(dl, filter)) {
        letters.push(dl);
        left--;
      }
    }
    return letters;
  };
  const take = async (read: DeadLetter[]): Promise<DeadLetterBatch> => ({
    letters: await withPayloads(bus, pick(read), payloadBytes),
    scanned: read.length,
  });
  if (left <= 0) return;

  if (filter.seqs !== undefined) {
    const c = scan.cursor;
    const seqs = [...new Set(filter.seqs)]
      .filter((s) => c === undefined || (newest ? s < c : s > c))
      .sort((a, b) => (newest ? b - a : a - b));
    for (let i = 0; i < seqs.length && left > 0; i += size) {
      const read: DeadLetter[] = [];
      for (const seq of seqs.slice(i, i + size)) {
        const m = await bus.jsm.streams.getMessage(bus.streams.dlq, { seq }).catch(() => null);
        if (m !== null) read.push(deadLetterOf(seq, m.header, m.data, m.time, payloadBytes));
      }
      yield { letters: pick(read), scanned: read.length };
    }
    return;
  }

  const { state } = await bus.jsm.streams.info(bus.streams.dlq);
  if (state.messages === 0) return;
  const first = state.first_seq;
  const last = state.last_seq;

  if (!newest) {
    // One window per batch: an ordered consumer from the next sequence, up to one batch of messages.
    let next = Math.max(first, (scan.cursor ?? 0) + 1);
    while (next <= last && left > 0) {
      const { letters: read } = await readRange(bus, next, last, size);
      if (read.length === 0) return;
      next = (read.at(-1)?.seq ?? last) + 1;
      yield await take(read);
    }
    return;
  }

  // Newest first: windows of `size` sequences, from the top down, each read forward. The messages
  // from a window's start on, minus those above it, are the ones in it: an empty window costs no fetch.
  let hi = Math.min(last, (scan.cursor ?? last + 1) - 1);
  let above: number | undefined = hi === last ? 0 : undefined;
  while (hi >= first && left > 0) {
    const lo = Math.max(first, hi - size + 1);
    const known = above;
    const { letters: read, pending } = await readRange(bus, lo, hi, hi - lo + 1, (p) =>
      known === undefined ? p : p - known,
    );
    above = pending;
    hi = lo - 1;
    if (read.length > 0) yield await take(read.reverse());
  }
}

/**
 * One page of dead letters matching `opts`: at most `opts.limit` (default 100, at most 1000),
 * oldest first unless `opts.order` is "newest", after (or before) `opts.cursor`. Payloads are kept
 * up to `opts.payloadBytes` each (default 16 KiB; 0 for headers only).
 */
export async function listDeadLetters(bus: Bus, opts: DeadLetterFilter & DeadLetterScan = {}): Promise<DeadLetter[]> {
  const limit = Math.min(opts.limit ?? 100, MAX_DEAD_LETTER_PAGE);
  const out: DeadLetter[] = [];
  const scan = { ...opts, payloadBytes: opts.payloadBytes ?? DEFAULT_PAYLOAD_BYTES };
  for await (const b of scanDeadLetters(bus, { ...opts, limit }, scan)) out.push(...b.letters);
  return out;
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
