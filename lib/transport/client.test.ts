/**
 * The mesh client against an in-process server whose behaviour each test scripts: deadline
 * propagation from the inbound call scope, retries only for idempotent skills and only on
 * UNAVAILABLE, the retry bound, the circuit breaker's open → half-open → closed cycle, and the retry
 * policies of skills (attempts, codes) that replace those defaults.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, type ConnectRouter, createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ResearchService } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { WritingService } from "../../gen/mesh/writing/v1/writing_service_pb.ts";
import { defaultPlacement, type ServerName } from "../config/index.ts";
import { createCatalog } from "../registry/index.ts";
import { runInCallScope } from "./call-scope.ts";
import { createMeshClient, type MeshClient, type SkillRetry, singleAttemptKey } from "./client.ts";

/** What the scripted server does on the next calls. */
let script: Array<() => void> = [];
let calls = 0;
let lastTimeoutMs: number | undefined;
let server: http2.Http2Server;
let url: string;
const catalog = createCatalog();

beforeAll(async () => {
  const routes = (router: ConnectRouter) => {
    const behave = (timeoutMs: number | undefined) => {
      calls++;
      lastTimeoutMs = timeoutMs;
      script.shift()?.();
    };
    router.service(ResearchService, {
      keywordResearch: (_req, ctx) => {
        behave(ctx.timeoutMs());
        return {};
      },
    });
    router.service(WritingService, {
      writePressRelease: (_req, ctx) => {
        behave(ctx.timeoutMs());
        return {};
      },
    });
  };
  server = http2.createServer(connectNodeAdapter({ routes }));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.close();
});

let client: MeshClient;
function makeClient(breakerFailures = 100): MeshClient {
  const serverUrls = { content: url, operations: url, technical: url } as Record<ServerName, string>;
  client = createMeshClient({
    identity: "technical",
    token: "t",
    serverUrls,
    placement: defaultPlacement,
    catalog,
    retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5, budgetRatio: 1, budgetMinPerSecond: 100 },
    breaker: { failureThreshold: breakerFailures, halfOpenAfterMs: 200 },
  });
  return client;
}
afterEach(() => {
  client?.close();
  script = [];
  calls = 0;
});

const unavailable = () => {
  throw new ConnectError("down", Code.Unavailable);
};
const kwReq = { keywords: [{ keyword: "a", monthlySearchVolume: 1n }] };

describe("deadlines", () => {
  it("an outgoing call gets the remaining time of the inbound call, not the default", async () => {
    const research = makeClient().agent(ResearchService);
    await research.keywordResearch(kwReq);
    expect(lastTimeoutMs).toBeGreaterThan(20_000); // default 30 s
    const signal = new AbortController().signal;
    await runInCallScope({ deadline: Date.now() + 400, signal, caller: "x" }, () => research.keywordResearch(kwReq));
    expect(lastTimeoutMs).toBeLessThanOrEqual(400);
    expect(lastTimeoutMs).toBeGreaterThan(0);
  });

  it("an expired inbound deadline fails with DEADLINE_EXCEEDED without calling", async () => {
    const research = makeClient().agent(ResearchService);
    const signal = new AbortController().signal;
    const err = await runInCallScope({ deadline: Date.now() - 1, signal, caller: "x" }, () =>
      research.keywordResearch(kwReq).catch((e: unknown) => e),
    );
    expect(ConnectError.from(err).code).toBe(Code.DeadlineExceeded);
    expect(calls).toBe(0);
  });
});

describe("retries", () => {
  it("retries an idempotent skill on UNAVAILABLE and succeeds", async () => {
    script = [unavailable, unavailable];
    await makeClient().agent(ResearchService).keywordResearch(kwReq);
    expect(calls).toBe(3);
  });

  it("stops after maxAttempts", async () => {
    script = [unavailable, unavailable, unavailable, unavailable];
    const err = await makeClient()
      .agent(ResearchService)
      .keywordResearch(kwReq)
      .catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Unavailable);
    expect(calls).toBe(3);
  });

  it("never retries a non-idempotent skill", async () => {
    script = [unavailable];
    const err = await makeClient()
      .agent(WritingService)
      .writePressRelease({})
      .catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Unavailable);
    expect(calls).toBe(1);
  });

  it("never retries codes other than UNAVAILABLE", async () => {
    script = [
      () => {
        throw new ConnectError("bad", Code.InvalidArgument);
      },
    ];
    const err = await makeClient()
      .agent(ResearchService)
      .keywordResearch(kwReq)
      .catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.InvalidArgument);
    expect(calls).toBe(1);
  });
});

describe("circuit breaker", () => {
  it("opens after consecutive failures, fails fast while open, closes after a successful trial", async () => {
    const c = makeClient(2);
    const research = c.agent(ResearchService);
    script = [unavailable, unavailable];
    await research.keywordResearch(kwReq).catch(() => undefined); // attempts 1 and 2 fail → open
    expect(c.breakerStates().content).toBe("open");
    const before = calls;
    const err = await research.keywordResearch(kwReq).catch((e: unknown) => e);
    expect(ConnectError.from(err).rawMessage).toMatch(/circuit breaker for content/);
    expect(calls).toBe(before); // failed fast
    await new Promise((r) => setTimeout(r, 250));
    await research.keywordResearch(kwReq);
    expect(c.breakerStates().content).toBe("closed");
  });

  it("does not count domain errors as failures", async () => {
    const c = makeClient(1);
    script = [
      () => {
        throw new ConnectError("bad", Code.InvalidArgument);
      },
    ];
    await c
      .agent(ResearchService)
      .keywordResearch(kwReq)
      .catch(() => undefined);
    expect(c.breakerStates().content).toBe("closed");
  });
});

describe("retry policies", () => {
  const keywordResearch = "content.keyword_research";
  const pressRelease = "content.press_release";
  const resourceExhausted = () => {
    throw new ConnectError("slow down", Code.ResourceExhausted);
  };
  /** A policy without jitter retrying `codes`, as the System agent's live copy supplies it. */
  const policy = (maxAttempts: number, codes: Code[] = [Code.Unavailable], delayMs = 1): SkillRetry => ({
    maxAttempts,
    delayMs: () => delayMs,
    retryable: (code) => codes.includes(code),
  });
  const failing = (n: number, fail = unavailable) => Array.from({ length: n }, () => fail);

  it("attempts a skill with a policy exactly its max attempts, instead of the client's", async () => {
    const c = makeClient();
    c.useSkillRetryPolicy?.((skill) => (skill === keywordResearch ? policy(5) : undefined));
    script = failing(10);
    const err = await c
      .agent(ResearchService)
      .keywordResearch(kwReq)
      .catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Unavailable);
    expect(calls).toBe(5);
  });

  it("retries the policy's codes only", async () => {
    const c = makeClient();
    c.useSkillRetryPolicy?.((skill) => (skill === keywordResearch ? policy(5, [Code.ResourceExhausted]) : undefined));
    script = failing(10);
    const err = await c
      .agent(ResearchService)
      .keywordResearch(kwReq)
      .catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Unavailable);
    expect(calls).toBe(1); // UNAVAILABLE is not in this policy

    calls = 0;
    script = failing(2, resourceExhausted);
    await c.agent(ResearchService).keywordResearch(kwReq);
    expect(calls).toBe(3);
  });

  it("keeps the defaults for a skill without a policy, and never retries a non-idempotent skill", async () => {
    const c = makeClient();
    c.useSkillRetryPolicy?.((skill) => (skill === pressRelease || skill === "other.skill" ? policy(5) : undefined));
    script = failing(10);
    await c
      .agent(ResearchService)
      .keywordResearch(kwReq)
      .catch(() => undefined);
    expect(calls).toBe(3); // the client's maxAttempts

    calls = 0;
    script = failing(10);
    await c
      .agent(WritingService)
      .writePressRelease({})
      .catch(() => undefined);
    expect(calls).toBe(1);
  });

  it("reads the policy on every call and stops applying it once removed", async () => {
    const c = makeClient();
    let attempts = 2;
    const off = c.useSkillRetryPolicy?.((skill) => (skill === keywordResearch ? policy(attempts) : undefined));
    const attemptsOfOneCall = async (): Promise<number> => {
      calls = 0;
      script = failing(10);
      await c
        .agent(ResearchService)
        .keywordResearch(kwReq)
        .catch(() => undefined);
      return calls;
    };
    expect(await attemptsOfOneCall()).toBe(2);
    attempts = 6;
    expect(await attemptsOfOneCall()).toBe(6);
    off?.();
    expect(await attemptsOfOneCall()).toBe(3);
  });

  it("makes one attempt for a caller that retries on its own", async () => {
    const c = makeClient();
    c.useSkillRetryPolicy?.(() => policy(5));
    script = failing(10);
    const contextValues = createContextValues().set(singleAttemptKey, true);
    await c
      .agent(ResearchService)
      .keywordResearch(kwReq, { contextValues })
      .catch(() => undefined);
    expect(calls).toBe(1);
  });

  it("stays within the call's deadline, the policy's time budget and the retry budget", async () => {
    const c = makeClient();
    let current = policy(5, [Code.Unavailable], 10_000);
    c.useSkillRetryPolicy?.(() => current);
    const research = c.agent(ResearchService);
    script = failing(10);
    await research.keywordResearch(kwReq, { timeoutMs: 2000 }).catch(() => undefined);
    expect(calls).toBe(1); // the next attempt would start after the deadline

    calls = 0;
    current = { ...policy(5, [Code.Unavailable], 10), maxElapsedMs: 5 };
    script = failing(10);
    await research.keywordResearch(kwReq).catch(() => undefined);
    expect(calls).toBe(1); // the first retry would start after the policy's time budget

    const serverUrls = { content: url, operations: url, technical: url } as Record<ServerName, string>;
    const broke = createMeshClient({
      identity: "technical",
      token: "t",
      serverUrls,
      placement: defaultPlacement,
      catalog,
      retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5, budgetRatio: 0, budgetMinPerSecond: 0 },
    });
    try {
      broke.useSkillRetryPolicy?.(() => policy(5));
      calls = 0;
      script = failing(10);
      await broke
        .agent(ResearchService)
        .keywordResearch(kwReq)
        .catch(() => undefined);
      expect(calls).toBe(1); // no retry budget left
    } finally {
      broke.close();
    }
  });
});
