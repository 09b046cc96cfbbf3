/**
 * Failure handling across servers: a stopped target gives UNAVAILABLE after bounded retries and
 * opens the caller's breaker (visible in health), which closes again when the target returns; a
 * SIGTERM drains in-flight calls before the process exits.
 */
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.ts";
import { SeoService } from "../gen/mesh/seo/v1/seo_service_pb.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, startHarness } from "./support/harness.ts";
import { rankTrackingRequest } from "./support/requests.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    servers: ["content", "technical"],
    env: {
      MESH_RETRY_MAX_ATTEMPTS: "3",
      MESH_RETRY_BASE_DELAY_MS: "10",
      MESH_BREAKER_FAILURES: "3",
      MESH_BREAKER_HALF_OPEN_AFTER_MS: "300",
    },
  });
});
afterAll(async () => {
  await h?.close();
});

async function healthz(): Promise<{ inFlight: number; breakers: Record<string, string> }> {
  return (await (await fetch(`${h.urls.technical}/healthz`)).json()) as never;
}

describe("target server stopped", () => {
  it("answers UNAVAILABLE after bounded retries, opens the breaker, and closes it when the target returns", async () => {
    const seo = h.client("technical", SeoService);
    const health = h.client("technical", Health, null);
    expect((await seo.trackRankings(rankTrackingRequest())).opportunities).toHaveLength(1);
    expect(await h.stop("content")).toBe(0);

    const err = await expectCode(seo.trackRankings(rankTrackingRequest()), Code.Unavailable);
    expect(err.rawMessage).not.toMatch(/circuit breaker/);
    // Three attempts of the idempotent KeywordResearch call, then the error; all in the caller's trace.
    const spans = await h.otlp.waitFor((all) =>
      all.some((s) => s.kind === 3 && s.statusCode === 2 && s.attributes["mesh.handoff.attempt"] === 3),
    );
    const third = spans.find((s) => s.kind === 3 && s.attributes["mesh.handoff.attempt"] === 3);
    const attempts = spans.filter(
      (s) =>
        s.kind === 3 && s.traceId === third?.traceId && s.name === "mesh.research.v1.ResearchService/KeywordResearch",
    );
    expect(attempts).toHaveLength(3);
    expect(attempts.every((s) => s.attributes["rpc.connect_rpc.error_code"] === "unavailable")).toBe(true);

    // Three consecutive failures opened the breaker: the next call fails fast, and health says so.
    expect((await healthz()).breakers.content).toBe("open");
    expect((await health.check({ service: "mesh.peer.content" })).status).toBe(Status.NOT_SERVING);
    expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
    const fast = await expectCode(seo.trackRankings(rankTrackingRequest()), Code.Unavailable);
    expect(fast.rawMessage).toMatch(/circuit breaker for content .* is open/);

    await h.start("content");
    await new Promise((r) => setTimeout(r, 350)); // past the half-open delay
    expect((await seo.trackRankings(rankTrackingRequest())).opportunities).toHaveLength(1);
    expect((await healthz()).breakers.content).toBe("closed");
    expect((await health.check({ service: "mesh.peer.content" })).status).toBe(Status.SERVING);
  });
});

describe("SIGTERM", () => {
  it("reports NOT_SERVING, finishes the call in flight, then exits 0", async () => {
    const health = h.client("technical", Health, null, "grpc");
    const watched: number[] = [];
    const watching = (async () => {
      for await (const r of health.watch({ service: "" })) watched.push(r.status);
    })();
    // A call large enough to still be in flight on the technical server (waiting for Research).
    const call = h.client("technical", SeoService).trackRankings(rankTrackingRequest(20_000));
    const deadline = Date.now() + 20_000;
    while ((await healthz()).inFlight < 3) {
      // in flight: the call, the Watch stream and this /healthz request
      if (Date.now() > deadline) throw new Error("the call never became in flight");
      await new Promise((r) => setTimeout(r, 5));
    }
    const exit = h.stop("technical", "SIGTERM");
    const res = await call;
    expect(res.rankings.length).toBe(20_001);
    expect(await exit).toBe(0);
    await watching.catch(() => undefined);
    expect(watched[0]).toBe(Status.SERVING);
    expect(watched).toContain(Status.NOT_SERVING);
    expect(h.logs.technical).toMatch(/draining signal=SIGTERM/);
    await h.start("technical");
  });
});
