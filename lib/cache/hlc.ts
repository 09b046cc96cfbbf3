/**
 * Hybrid logical clocks (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014): a timestamp
 * is (wall time in ms, logical counter, node id). Timestamps a node issues never go backwards, even
 * when its physical clock does; a node that receives a timestamp moves past it, so causally later
 * events always carry greater timestamps; and the wall component stays within the allowed drift
 * of physical time, because a remote wall time too far ahead is refused rather than adopted.
 */
import { create } from "@bufbuild/protobuf";
import { type HybridLogicalClock, HybridLogicalClockSchema } from "../../gen/mesh/common/v1/cache_pb.ts";

/** An HLC timestamp. */
export interface Hlc {
  /** Physical component, ms since the Unix epoch. */
  readonly wallTimeMs: number;
  /** Orders timestamps sharing a wall time. */
  readonly logical: number;
  /** Issuing node; breaks ties. */
  readonly nodeId: string;
}

/** Default largest lead of a received wall time over local physical time. */
export const DEFAULT_MAX_DRIFT_MS = 60_000;

/** Largest wall time the fixed-width encoding holds (15 digits: beyond year 30000). */
const maxWallTimeMs = 999_999_999_999_999;
/** Largest logical counter (the proto field is an int32). */
const maxLogical = 2_147_483_647;
const wallDigits = 15;
const logicalDigits = 10;

/** A received timestamp leads local physical time by more than the allowed drift. */
export class ClockDriftError extends Error {
  override name = "ClockDriftError";
  /** How far the remote wall time is ahead of local physical time, ms. */
  readonly driftMs: number;
  /** The limit that was exceeded, ms. */
  readonly maxDriftMs: number;
  constructor(driftMs: number, maxDriftMs: number) {
    super(`wall time ${formatMs(driftMs)} ahead of local clock (limit ${formatMs(maxDriftMs)})`);
    this.driftMs = driftMs;
    this.maxDriftMs = maxDriftMs;
  }
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
}

/** Options of {@link createClock}. */
export interface ClockOptions {
  /** Default drift limit of {@link HybridClock.receive} (default 60 s). */
  maxDriftMs?: number;
  /** Continue after this timestamp (a scratch copy of another clock, for dry runs). */
  after?: Hlc;
}

/** One node's hybrid logical clock. */
export interface HybridClock {
  /** This node's id. */
  readonly nodeId: string;
  /** Default drift limit of `receive`, ms. */
  readonly maxDriftMs: number;
  /** A timestamp for a local or send event, greater than every timestamp issued or received before. */
  now(): Hlc;
  /**
   * Moves the clock past `remote` and returns the timestamp of the receive event. Throws
   * {@link ClockDriftError}, leaving the clock as it was, when `remote`'s wall time leads local
   * physical time by more than `maxDriftMs`.
   */
  receive(remote: Hlc, opts?: { maxDriftMs?: number }): Hlc;
  /** The last timestamp issued (or a zero-counter timestamp at physical time before any). */
  peek(): Hlc;
  /** A scratch copy that continues from this clock's state; what it issues leaves this clock alone. */
  fork(): HybridClock;
}

function checkHlc(h: Hlc, what: string): void {
  if (!Number.isSafeInteger(h.wallTimeMs) || h.wallTimeMs < 0 || h.wallTimeMs > maxWallTimeMs) {
    throw new RangeError(`${what}: wall time ${h.wallTimeMs} is outside 0..${maxWallTimeMs}`);
  }
  if (!Number.isSafeInteger(h.logical) || h.logical < 0 || h.logical > maxLogical) {
    throw new RangeError(`${what}: logical counter ${h.logical} is outside 0..${maxLogical}`);
  }
  if (h.nodeId === "") throw new RangeError(`${what}: node id is empty`);
}

/** Creates the clock of node `nodeId`; `physical` is the physical clock in ms. */
export function createClock(nodeId: string, physical: () => number = Date.now, opts: ClockOptions = {}): HybridClock {
  if (nodeId === "") throw new RangeError("node id is empty");
  const defaultDrift = opts.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
  let wall = 0;
  let logical = 0;
  if (opts.after !== undefined) {
    checkHlc(opts.after, "after");
    wall = opts.after.wallTimeMs;
    logical = opts.after.logical;
  }
  const pt = (): number => Math.floor(physical());
  const stamp = (w: number, c: number): Hlc => {
    if (c > maxLogical) throw new RangeError("HLC logical counter overflow");
    wall = w;
    logical = c;
    return { wallTimeMs: w, logical: c, nodeId };
  };
  return {
    nodeId,
    maxDriftMs: defaultDrift,
    now() {
      const p = pt();
      return p > wall ? stamp(p, 0) : stamp(wall, logical + 1);
    },
    receive(remote, o = {}) {
      checkHlc(remote, "remote HLC");
      const p = pt();
      const limit = o.maxDriftMs ?? defaultDrift;
      if (remote.wallTimeMs - p > limit) throw new ClockDriftError(remote.wallTimeMs - p, limit);
      const w = Math.max(wall, remote.wallTimeMs, p);
      if (w === wall && w === remote.wallTimeMs) return stamp(w, Math.max(logical, remote.logical) + 1);
      if (w === wall) return stamp(w, logical + 1);
      if (w === remote.wallTimeMs) return stamp(w, remote.logical + 1);
      return stamp(w, 0);
    },
    peek() {
      return wall === 0 ? { wallTimeMs: pt(), logical: 0, nodeId } : { wallTimeMs: wall, logical, nodeId };
    },
    fork() {
      const after = wall === 0 ? undefined : { wallTimeMs: wall, logical, nodeId };
      return createClock(
        nodeId,
        physical,
        after === undefined ? { maxDriftMs: defaultDrift } : { maxDriftMs: defaultDrift, after },
      );
    },
  };
}

/**
 * Node ids compare by Unicode code point (the order of their UTF-8 bytes, as PostgreSQL's "C"
 * collation sorts), not by UTF-16 code unit as `<` does.
 */
function compareNodeIds(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** Total order of timestamps: wall time, then logical counter, then node id. Returns -1, 0 or 1. */
export function compareHlc(a: Hlc, b: Hlc): number {
  if (a.wallTimeMs !== b.wallTimeMs) return a.wallTimeMs < b.wallTimeMs ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  return Math.sign(compareNodeIds(a.nodeId, b.nodeId));
}

/** The later of two timestamps. */
export function maxHlc(a: Hlc, b: Hlc): Hlc {
  return compareHlc(a, b) >= 0 ? a : b;
}

/**
 * Encodes a timestamp as `<wall:15 digits>.<logical:10 digits>.<node id as UTF-8 hex>`: fixed-width
 * numbers and a hex node id make plain string order (any collation, `<`, byte order) equal to
 * {@link compareHlc} order, so the encoding can be stored and indexed as text.
 */
export function encodeHlc(h: Hlc): string {
  checkHlc(h, "HLC");
  const wall = String(h.wallTimeMs).padStart(wallDigits, "0");
  const logical = String(h.logical).padStart(logicalDigits, "0");
  return `${wall}.${logical}.${Buffer.from(h.nodeId, "utf8").toString("hex")}`;
}

const encoded = /^(\d{15})\.(\d{10})\.((?:[0-9a-f]{2})+)$/;

/** Decodes {@link encodeHlc}'s output; throws on anything else. */
export function decodeHlc(s: string): Hlc {
  const m = encoded.exec(s);
  if (m === null) throw new RangeError(`not an encoded HLC: ${JSON.stringify(s.slice(0, 80))}`);
  const h = { wallTimeMs: Number(m[1]), logical: Number(m[2]), nodeId: Buffer.from(m[3] as string, "hex").toString() };
  checkHlc(h, "encoded HLC");
  return h;
}

/** The fields of a timestamp's proto message. */
export type HlcFields = Pick<HybridLogicalClock, "wallTimeMs" | "logical" | "nodeId">;

/**
 * A timestamp as proto message fields: initialises the platform's message or any message of the
 * same shape (the Data agent's API has its own).
 */
export function hlcToProto(h: Hlc): HlcFields {
  return { wallTimeMs: BigInt(h.wallTimeMs), logical: h.logical, nodeId: h.nodeId };
}

/** A timestamp as the platform's proto message. */
export function hlcMessage(h: Hlc): HybridLogicalClock {
  return create(HybridLogicalClockSchema, hlcToProto(h));
}

/**
 * A timestamp from its proto message (the platform's, or any message of the same shape such as the
 * Data agent's); throws RangeError when a part is out of range.
 */
export function hlcFromProto(m: HlcFields): Hlc {
  if (m.wallTimeMs < 0n || m.wallTimeMs > BigInt(maxWallTimeMs)) {
    throw new RangeError(`wall_time_ms ${m.wallTimeMs} is outside 0..${maxWallTimeMs}`);
  }
  const h = { wallTimeMs: Number(m.wallTimeMs), logical: m.logical, nodeId: m.nodeId };
  checkHlc(h, "HLC");
  return h;
}

/** `wall.logical@node`, for logs and messages. */
export function formatHlc(h: Hlc): string {
  return `${h.wallTimeMs}.${h.logical}@${h.nodeId}`;
}
