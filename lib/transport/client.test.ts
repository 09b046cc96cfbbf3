/**
 * The mesh client against an in-process server whose behaviour each test scripts: deadline
 * propagation from the inbound call scope, retries only for idempotent skills and only on
 * UNAVAILABLE, the retry bound, and the circuit breaker's open → half-open → closed cycle.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ResearchService } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { WritingService } from "../../gen/mesh/writing/v1/writing_service_pb.ts";
import { defaultPlacement, type ServerName } from "../config/index.ts";
import { createCatalog } from "../registry/index.ts";
import { runInCallScope } from "./call-scope.ts";
import { createMeshClient, type MeshClient } from "./client.ts";

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
