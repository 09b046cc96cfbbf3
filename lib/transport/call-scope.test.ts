import { describe, expect, it } from "vitest";
import { type CallScope, currentCallScope, deadlineFromHeaders, runInCallScope } from "./call-scope.ts";

const now = 1_000_000;

function headers(init: Record<string, string>): Headers {
  return new Headers(init);
}

describe("deadlineFromHeaders", () => {
  it("reads connect-timeout-ms", () => {
    expect(deadlineFromHeaders(headers({ "connect-timeout-ms": "250" }), now)).toBe(now + 250);
    expect(deadlineFromHeaders(headers({ "connect-timeout-ms": "0" }), now)).toBe(now);
  });

  it.each([
    // 2 hours = 2 × 3,600,000 ms.
    ["2H", 7_200_000],
    // 3 minutes = 3 × 60,000 ms.
    ["3M", 180_000],
    ["5S", 5000],
    ["100m", 100],
    // 500 µs = 0.5 ms.
    ["500u", 0.5],
    // 2,000,000 ns = 2 ms.
    ["2000000n", 2],
  ])("reads grpc-timeout %s as %d ms", (value, ms) => {
    expect(deadlineFromHeaders(headers({ "grpc-timeout": value }), now)).toBe(now + ms);
  });

  it("prefers connect-timeout-ms when both are present", () => {
    expect(deadlineFromHeaders(headers({ "connect-timeout-ms": "40", "grpc-timeout": "5S" }), now)).toBe(now + 40);
  });

  it("falls back to grpc-timeout when connect-timeout-ms is malformed", () => {
    expect(deadlineFromHeaders(headers({ "connect-timeout-ms": "-5", "grpc-timeout": "5S" }), now)).toBe(now + 5000);
  });

  it.each([
    [{}],
    [{ "connect-timeout-ms": "abc" }],
    [{ "connect-timeout-ms": "1.5" }],
    // Eleven digits: longer than the Connect protocol allows.
    [{ "connect-timeout-ms": "12345678901" }],
    [{ "grpc-timeout": "100" }],
    [{ "grpc-timeout": "1.5S" }],
    [{ "grpc-timeout": "10x" }],
    [{ "grpc-timeout": "S" }],
    // Nine digits: longer than the gRPC protocol allows.
    [{ "grpc-timeout": "123456789S" }],
  ])("returns undefined for %j", (init) => {
    expect(deadlineFromHeaders(headers(init), now)).toBeUndefined();
  });
});

describe("call scope", () => {
  const scope: CallScope = { deadline: now + 500, signal: new AbortController().signal, caller: "content" };

  it("is undefined outside a call", () => {
    expect(currentCallScope()).toBeUndefined();
  });

  it("is the running call's scope, also after an await", async () => {
    const seen = await runInCallScope(scope, async () => {
      const before = currentCallScope();
      await new Promise<void>((resolve) => setImmediate(resolve));
      const after = currentCallScope();
      return { before, after };
    });
    expect(seen.before).toBe(scope);
    expect(seen.after).toBe(scope);
    expect(currentCallScope()).toBeUndefined();
  });

  it("keeps concurrent calls apart and restores the outer scope after a nested one", async () => {
    const other: CallScope = { deadline: undefined, signal: new AbortController().signal, caller: "technical" };
    const callers = await Promise.all([
      runInCallScope(scope, async () => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        const inner = runInCallScope(other, () => currentCallScope()?.caller);
        return [currentCallScope()?.caller, inner];
      }),
      runInCallScope(other, async () => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        return [currentCallScope()?.caller];
      }),
    ]);
    expect(callers).toEqual([["content", "technical"], ["technical"]]);
  });

  it("returns what the function returns", () => {
    expect(runInCallScope(scope, () => 42)).toBe(42);
  });
});
