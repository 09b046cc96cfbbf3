import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  Jitter,
  RetryPolicySchema,
  type RetryTarget,
  RetryTargetKind,
} from "../../gen/mesh/system/v1/system_service_pb.ts";
import { backoffDelayMs, resolvePolicy } from "./retry-policy.ts";

const policy = (baseMs: number | undefined, maxMs: number | undefined, jitter: Jitter = Jitter.FULL) =>
  create(RetryPolicySchema, {
    maxAttempts: 10,
    ...(baseMs === undefined ? {} : { baseBackoff: durationFromMs(baseMs) }),
    ...(maxMs === undefined ? {} : { maxBackoff: durationFromMs(maxMs) }),
    jitter,
  });

const fixed = (v: number) => () => v;

describe("backoffDelayMs", () => {
  it("draws full jitter from zero to the capped exponential delay", () => {
    const p = policy(1000, 60_000);
    // random(0, min(max, base × 2^(attempt-1)))
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelayMs(p, n, fixed(0.5)))).toEqual([
      500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000,
    ]);
    expect(backoffDelayMs(p, 3, fixed(0))).toBe(0);
    expect(backoffDelayMs(p, 3, fixed(0.999))).toBeCloseTo(3996, 6);
    expect(backoffDelayMs(p, 100, fixed(0.25))).toBe(15_000);
    // Unspecified jitter is full jitter.
    expect(backoffDelayMs(policy(1000, 60_000, Jitter.UNSPECIFIED), 2, fixed(0.5))).toBe(1000);
  });

  it("stays within [0, cap) with Math.random and averages half the cap", () => {
    const p = policy(200, 5000);
    const samples = Array.from({ length: 20_000 }, () => backoffDelayMs(p, 4));
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...samples)).toBeLessThan(1600);
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    expect(mean).toBeGreaterThan(760);
    expect(mean).toBeLessThan(840);
  });

  it("uses 100 ms and 30 s when the backoffs are unset", () => {
    const p = policy(undefined, undefined, Jitter.NONE);
    expect(backoffDelayMs(p, 1)).toBe(100);
    expect(backoffDelayMs(p, 4)).toBe(800);
    expect(backoffDelayMs(p, 10)).toBe(30_000);
  });

  it("implements no, equal and decorrelated jitter", () => {
    expect(backoffDelayMs(policy(1000, 10_000, Jitter.NONE), 3, fixed(0.9))).toBe(4000);
    expect(backoffDelayMs(policy(1000, 10_000, Jitter.EQUAL), 3, fixed(0))).toBe(2000);
    expect(backoffDelayMs(policy(1000, 10_000, Jitter.EQUAL), 3, fixed(0.5))).toBe(3000);
    const d = policy(1000, 10_000, Jitter.DECORRELATED);
    // random(base, 3 × previous), capped; the first retry's previous delay is the base.
    expect(backoffDelayMs(d, 1, fixed(0))).toBe(1000);
    expect(backoffDelayMs(d, 1, fixed(0.5))).toBe(2000);
    expect(backoffDelayMs(d, 2, fixed(0.5), 2500)).toBe(4250);
    expect(backoffDelayMs(d, 5, fixed(0.99), 9000)).toBe(10_000);
  });

  it("refuses attempts that are not integers ≥ 1", () => {
    expect(() => backoffDelayMs(policy(1000, 2000), 0)).toThrow(RangeError);
    expect(() => backoffDelayMs(policy(1000, 2000), 1.5)).toThrow(RangeError);
  });
});

describe("resolvePolicy", () => {
  const entry = (kind: RetryTargetKind, name: string) => ({
    target: { kind, name } as Pick<RetryTarget, "kind" | "name">,
    name,
  });
  const subject = (name: string) => entry(RetryTargetKind.SUBJECT, name);
  const policies = [
    subject(">"),
    subject("mesh.tasks.>"),
    subject("mesh.tasks.*.urgent"),
    subject("mesh.tasks.seo.>"),
    subject("mesh.tasks.seo.*"),
    subject("mesh.tasks.seo.bulk"),
    entry(RetryTargetKind.SKILL, "seo.technical_audit"),
  ];
  const forSubject = (s: string, list = policies) =>
    resolvePolicy(list, { kind: RetryTargetKind.SUBJECT, name: s })?.name;

  it("picks the most specific matching subject filter, whatever the order", () => {
    for (const list of [policies, [...policies].reverse()]) {
      expect(forSubject("mesh.tasks.seo.bulk", list)).toBe("mesh.tasks.seo.bulk");
      // A literal token beats `*` at the first position where the filters differ, `*` beats `>`.
      expect(forSubject("mesh.tasks.seo.urgent", list)).toBe("mesh.tasks.seo.*");
      expect(forSubject("mesh.tasks.seo.urgent.extra", list)).toBe("mesh.tasks.seo.>");
      expect(forSubject("mesh.tasks.crm.urgent", list)).toBe("mesh.tasks.*.urgent");
      expect(forSubject("mesh.tasks.crm.normal", list)).toBe("mesh.tasks.>");
      expect(forSubject("mesh.events.crm.contact_merged", list)).toBe(">");
    }
  });

  it("matches NATS wildcards exactly", () => {
    const list = [subject("mesh.tasks.>"), subject("mesh.*.seo")];
    expect(forSubject("mesh.tasks", list)).toBeUndefined(); // `>` needs at least one more token
    expect(forSubject("mesh.tasks.seo", list)).toBe("mesh.tasks.>");
    expect(forSubject("mesh.events.seo", list)).toBe("mesh.*.seo");
    expect(forSubject("mesh.events.seo.x", list)).toBeUndefined();
    expect(forSubject("other.tasks.seo", list)).toBeUndefined();
  });

  it("resolves skills by exact id and never mixes kinds", () => {
    const skill = (s: string) => resolvePolicy(policies, { kind: RetryTargetKind.SKILL, name: s })?.name;
    expect(skill("seo.technical_audit")).toBe("seo.technical_audit");
    expect(skill("seo.page_speed")).toBeUndefined();
    // A skill id is a valid subject too, but only subject filters govern subjects.
    expect(forSubject("seo.technical_audit", [entry(RetryTargetKind.SKILL, "seo.technical_audit")])).toBeUndefined();
  });
});
