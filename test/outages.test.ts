/**
 * A dependency outage answers the right code and health tells the truth: with the technical
 * server's PostgreSQL unreachable (a TCP proxy in front of it, cut and restored), a call that needs
 * the database answers UNAVAILABLE with RetryInfo — not INTERNAL — and gRPC health and /healthz
 * report NOT_SERVING, naming the dependency, until the database is back.
 */
import { randomUUID } from "node:crypto";
import net from "node:net";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
import { KeywordOpportunityInputSchema, WorkflowService } from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { eventually } from "./support/backbone.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, startHarness } from "./support/harness.ts";

/** A TCP proxy to `target` that can be cut (every connection dropped, new ones refused) and restored. */
async function startProxy(target: { host: string; port: number }) {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const open = async (): Promise<void> => {
    const s = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      for (const x of [client, upstream]) {
        sockets.add(x);
        x.once("close", () => sockets.delete(x));
        x.on("error", () => x.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.once("close", () => upstream.destroy());
      upstream.once("close", () => client.destroy());
    });
    await new Promise<void>((r) => s.listen(port, "127.0.0.1", r));
    port = (s.address() as net.AddressInfo).port;
    server = s;
  };
  await open();
  return {
    port: () => port,
    async cut() {
      // close() waits for open connections, so they are destroyed before it is awaited.
      const closed = new Promise<void>((r) => (server ? server.close(() => r()) : r()));
      for (const s of sockets) s.destroy();
      await closed;
      server = undefined;
    },
    restore: open,
    async close() {
      await this.cut();
    },
  };
}

describe("outages", () => {
  let h: Harness;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  const health = () => h.client("technical", Health, null);
  const status = async (service: string) =>
    (
      await health()
        .check({ service }, { timeoutMs: 3000 })
        .catch(() => undefined)
    )?.status;

  beforeAll(async () => {
    h = await startHarness({ servers: [] });
    const db = new URL(h.databaseUrl);
    proxy = await startProxy({ host: db.hostname, port: Number(db.port || 5432) });
    db.hostname = "127.0.0.1";
    db.port = String(proxy.port());
    h.env.DATABASE_URL = db.toString();
    await h.start("technical");
  }, 90_000);
  afterAll(async () => {
    await h?.close();
    await proxy?.close();
  });

  it("answers UNAVAILABLE with RetryInfo while the database is unreachable, and reports it in health", async () => {
    expect(await status("")).toBe(HealthCheckResponse_ServingStatus.SERVING);
    await proxy.cut();
    const input = anyPack(
      KeywordOpportunityInputSchema,
      create(KeywordOpportunityInputSchema, { keyword: "memory care dallas", siteDomain: "example.com" }),
    );
    const err = await expectCode(
      h
        .client("technical", WorkflowService)
        .startRun({ requestId: randomUUID(), workflow: "keyword_opportunity", input }),
      Code.Unavailable,
      /database .* unreachable/,
    );
    expect(err.findDetails).toBeDefined();
    expect(err.details.length).toBeGreaterThan(0);
    expect(err.rawMessage).not.toMatch(/ECONNREFUSED|internal/i);

    await eventually(
      async () => ((await status("")) === HealthCheckResponse_ServingStatus.NOT_SERVING ? true : undefined),
      15_000,
    );
    expect(await status("mesh.dependency.postgres.technical")).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
    expect(await status("mesh.dependency.nats")).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const healthz = await fetch(`${h.urls.technical}/healthz`);
    expect(healthz.status).toBe(503);
    expect(((await healthz.json()) as { services: Record<string, string> }).services).toMatchObject({
      "mesh.dependency.postgres.technical": "NOT_SERVING",
    });
    expect(h.logs.technical).toMatch(/dependency unreachable dependency=mesh\.dependency\.postgres\.technical/);

    await proxy.restore();
    await eventually(
      async () => ((await status("")) === HealthCheckResponse_ServingStatus.SERVING ? true : undefined),
      20_000,
    );
    const listed = await h.client("technical", WorkflowService).listRuns({ pageSize: 5 });
    expect(listed.runs).toBeDefined();
  });
});
