import { describe, expect, it } from "vitest";
import {
  ClockDriftError,
  compareHlc,
  createClock,
  decodeHlc,
  encodeHlc,
  type Hlc,
  hlcFromProto,
  hlcToProto,
  maxHlc,
} from "./hlc.ts";

/** A physical clock the test moves by hand. */
function fakeTime(start = 1_750_000_000_000) {
  let t = start;
  return {
    now: () => t,
    set: (v: number) => {
      t = v;
    },
    advance: (ms: number) => {
      t += ms;
    },
  };
}

const hlc = (wallTimeMs: number, logical: number, nodeId: string): Hlc => ({ wallTimeMs, logical, nodeId });

/** Deterministic pseudo-random numbers (mulberry32), so a failure reproduces. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("hybrid logical clock", () => {
  it("follows physical time while it moves forward", () => {
    const time = fakeTime();
    const clock = createClock("a", time.now);
    expect(clock.now()).toEqual(hlc(time.now(), 0, "a"));
    time.advance(5);
    expect(clock.now()).toEqual(hlc(time.now(), 0, "a"));
  });

  it("stays monotonic when the physical clock goes backwards or stands still", () => {
    const time = fakeTime();
    const clock = createClock("a", time.now);
    const first = clock.now();
    time.advance(-10_000);
    const second = clock.now();
    const third = clock.now();
    expect(second).toEqual(hlc(first.wallTimeMs, 1, "a"));
    expect(third).toEqual(hlc(first.wallTimeMs, 2, "a"));
    time.set(first.wallTimeMs + 1);
    expect(clock.now()).toEqual(hlc(first.wallTimeMs + 1, 0, "a"));
    let prev = clock.now();
    const rnd = random(7);
    for (let i = 0; i < 1000; i++) {
      time.advance(Math.floor(rnd() * 40) - 25);
      const next = clock.now();
      expect(compareHlc(next, prev)).toBe(1);
      prev = next;
    }
  });

  it("moves past a received timestamp from the future within the drift limit", () => {
    const time = fakeTime();
    const clock = createClock("a", time.now);
    const remote = hlc(time.now() + 30_000, 4, "b");
    const r = clock.receive(remote);
    expect(r).toEqual(hlc(remote.wallTimeMs, 5, "a"));
    expect(compareHlc(r, remote)).toBe(1);
    // Physical time has not caught up: the clock keeps the remote wall time and counts on.
    time.advance(1000);
    expect(clock.now()).toEqual(hlc(remote.wallTimeMs, 6, "a"));
    time.set(remote.wallTimeMs + 1);
    expect(clock.now()).toEqual(hlc(remote.wallTimeMs + 1, 0, "a"));
  });

  it("takes the larger counter when local and remote share the wall time", () => {
    const time = fakeTime();
    const clock = createClock("a", time.now);
    const local = clock.now();
    clock.now();
    expect(clock.receive(hlc(local.wallTimeMs, 7, "b"))).toEqual(hlc(local.wallTimeMs, 8, "a"));
    expect(clock.receive(hlc(local.wallTimeMs, 2, "b"))).toEqual(hlc(local.wallTimeMs, 9, "a"));
    // A remote timestamp in the past leaves the local wall time in charge.
    expect(clock.receive(hlc(local.wallTimeMs - 5000, 99, "b"))).toEqual(hlc(local.wallTimeMs, 10, "a"));
  });

  it("rejects a timestamp leading physical time by more than the drift, leaving the clock as it was", () => {
    const time = fakeTime();
    const clock = createClock("a", time.now);
    const before = clock.now();
    const remote = hlc(time.now() + 60_001, 0, "b");
    expect(() => clock.receive(remote)).toThrow(ClockDriftError);
    try {
      clock.receive(remote);
    } catch (err) {
      expect(err).toBeInstanceOf(ClockDriftError);
      expect((err as ClockDriftError).driftMs).toBe(60_001);
      expect((err as ClockDriftError).message).toBe("wall time 60 s ahead of local clock (limit 60 s)");
    }
    expect(clock.peek()).toEqual(before);
    // Exactly at the limit is allowed; a per-call limit overrides the clock's default.
    expect(() => clock.receive(hlc(time.now() + 60_000, 0, "b"))).not.toThrow();
    expect(() => clock.receive(hlc(time.now() + 5_000, 0, "b"), { maxDriftMs: 1_000 })).toThrow(ClockDriftError);
    const strict = createClock("c", time.now, { maxDriftMs: 10 });
    expect(() => strict.receive(hlc(time.now() + 11, 0, "b"))).toThrow(ClockDriftError);
  });

  it("orders by wall time, then counter, then node id", () => {
    expect(compareHlc(hlc(1, 9, "z"), hlc(2, 0, "a"))).toBe(-1);
    expect(compareHlc(hlc(2, 1, "a"), hlc(2, 0, "z"))).toBe(1);
    expect(compareHlc(hlc(2, 1, "operations-1"), hlc(2, 1, "technical-1"))).toBe(-1);
    expect(compareHlc(hlc(2, 1, "b"), hlc(2, 1, "b"))).toBe(0);
    expect(maxHlc(hlc(2, 1, "a"), hlc(2, 1, "b"))).toEqual(hlc(2, 1, "b"));
    // Node ids compare by code point: U+FF61 sorts before U+1F600 although its UTF-16 unit is larger.
    expect(compareHlc(hlc(2, 1, "\uff61"), hlc(2, 1, "\u{1f600}"))).toBe(-1);
  });

  it("encodes to fixed-width text that decodes back", () => {
    const h = hlc(1_748_786_740_000, 2, "operations-1");
    const s = encodeHlc(h);
    expect(s).toBe(`001748786740000.0000000002.${Buffer.from("operations-1").toString("hex")}`);
    expect(decodeHlc(s)).toEqual(h);
    expect(decodeHlc(encodeHlc(hlc(0, 0, "n\u00e9\u{1f600}")))).toEqual(hlc(0, 0, "n\u00e9\u{1f600}"));
    expect(() => decodeHlc("12.3.ab")).toThrow(RangeError);
    expect(() => encodeHlc(hlc(-1, 0, "a"))).toThrow(RangeError);
    expect(() => encodeHlc(hlc(1, 0, ""))).toThrow(RangeError);
  });

  it("sorts encoded strings in compare order (property over random pairs)", () => {
    const rnd = random(42);
    const nodes = ["a", "ab", "b", "technical-1", "technical-10", "technical-2", "Z", "\u00e9", "\uff61", "\u{1f600}"];
    const pick = (): Hlc => {
      const near = rnd() < 0.5;
      return hlc(
        near ? 1_750_000_000_000 + Math.floor(rnd() * 3) : Math.floor(rnd() * 999_999_999_999_999),
        near ? Math.floor(rnd() * 3) : Math.floor(rnd() * 2_147_483_647),
        nodes[Math.floor(rnd() * nodes.length)] as string,
      );
    };
    for (let i = 0; i < 20_000; i++) {
      const a = pick();
      const b = pick();
      const ea = encodeHlc(a);
      const eb = encodeHlc(b);
      const byString = ea < eb ? -1 : ea > eb ? 1 : 0;
      expect(byString).toBe(compareHlc(a, b));
      // Byte order (PostgreSQL "C" collation) agrees as well.
      expect(Math.sign(Buffer.compare(Buffer.from(ea), Buffer.from(eb)))).toBe(byString);
    }
  });

  it("converts to and from the proto message", () => {
    const h = hlc(1_748_786_740_000, 2, "operations-1");
    const m = hlcToProto(h);
    expect(m.wallTimeMs).toBe(1_748_786_740_000n);
    expect(m.logical).toBe(2);
    expect(m.nodeId).toBe("operations-1");
    expect(hlcFromProto(m)).toEqual(h);
    expect(() => hlcFromProto({ ...m, wallTimeMs: 10n ** 18n })).toThrow(RangeError);
  });

  it("continues after a given timestamp (a scratch copy for dry runs)", () => {
    const time = fakeTime();
    const clock = createClock("a", time.now);
    clock.receive(hlc(time.now() + 1000, 3, "b"));
    const copy = createClock("a", time.now, { after: clock.peek() });
    expect(compareHlc(copy.now(), clock.peek())).toBe(1);
    const before = clock.peek();
    const fork = clock.fork();
    expect(compareHlc(fork.receive(hlc(time.now() + 2000, 0, "c")), before)).toBe(1);
    expect(clock.peek()).toEqual(before);
    expect(fork.maxDriftMs).toBe(clock.maxDriftMs);
  });
});
