/**
 * Retry policies across servers, in process on the real PostgreSQL and NATS: the technical server
 * hosts the System agent and stores the policies; the content server hosts nothing of it, yet loads
 * them at start and follows every change (the module's `everywhere` hook, wired by startMeshServer),
 * and its own mesh client and bus apply them.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemAgent } from "../agents/system/index.ts";
import { ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { Jitter, RetryTargetKind, SystemService } from "../gen/mesh/system/v1/system_service_pb.ts";
import { ensureDevCredentials } from "../lib/auth/index.ts";
import { listDeadLetters, publishTask, taskSubject } from "../lib/bus/index.ts";
import { defaultPlacement, loadConfig, type MeshConfig, type ServerName } from "../lib/config/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { type MeshServer, startMeshServer } from "../lib/server/index.ts";
import { deleteStreams, eventually, isolatedDatabase, natsUrl, uniqueName } from "./support/backbone.ts";
import { freePort } from "./support/harness.ts";

const log = createLogger("error");
let dataDir: string;
let database: Awaited<ReturnType<typeof isolatedDatabase>>;
let config: MeshConfig;
let technical: MeshServer | undefined;
let content: MeshServer | undefined;
// Stands in for the operations server (where research is placed): every attempt fails UNAVAILABLE.
let operations: http2.Http2Server;
let attempts = 0;

const setPolicy = (via: MeshServer, target: { kind: RetryTargetKind; name: string }, policy: object) =>
  via.client
    .agent(SystemService)
    .manageRetries({ requestId: randomUUID(), action: { case: "setPolicy", value: { target, policy } } });

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "mesh-retry-"));
  ensureDevCredentials(dataDir, join(dataDir, "auth.json"));
  database = await isolatedDatabase();
  const routes = (router: ConnectRouter) =>
    router.service(ResearchService, {
      keywordResearch: () => {
        attempts++;
        throw new ConnectError("research is down", Code.Unavailable);
      },
    });
  operations = http2.createServer(connectNodeAdapter({ routes }));
  await new Promise<void>((r) => operations.listen(0, "127.0.0.1", r));
  const placement: Record<string, ServerName> = {};
  for (const agent of Object.keys(defaultPlacement)) placement[agent] = agent === "system" ? "technical" : "operations";
  config = loadConfig(
    {
      dataDir,
      authFile: join(dataDir, "auth.json"),
      serverUrls: {
        content: `http://127.0.0.1:${await freePort()}`,
        operations: `http://127.0.0.1:${(operations.address() as AddressInfo).port}`,
        technical: `http://127.0.0.1:${await freePort()}`,
      },
      placement,
      databaseUrl: database.url,
      natsUrl,
      natsPrefix: uniqueName("t"),
      breaker: { failureThreshold: 1000, halfOpenAfterMs: 1000 },
      retry: { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 5, budgetRatio: 1, budgetMinPerSecond: 1000 },
    },
    {},
  );
  technical = await startMeshServer({ server: "technical", config, modules: [systemAgent], log });
});
afterAll(async () => {
  await content?.close(0);
  if (technical !== undefined) {
    await deleteStreams(technical.backbone.bus);
    await technical.close(0);
  }
  operations?.close();
  await database?.drop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("retry policies on every server", () => {
  it("a server without the System agent loads the stored policies at start and follows their changes", async () => {
    const subject = taskSubject(config.natsPrefix, "it", "normal");
    await setPolicy(
      technical as MeshServer,
      { kind: RetryTargetKind.SUBJECT, name: `${config.natsPrefix}.tasks.it.>` },
      { maxAttempts: 2, baseBackoff: durationFromMs(20), jitter: Jitter.NONE },
    );
    // The owning server's copy follows the change through its event.
    await eventually(() => technical?.backbone.bus.redelivery(subject, 1));

    content = await startMeshServer({ server: "content", config, modules: [systemAgent], log });
    const bus = content.backbone.bus;
    await eventually(() => bus.redelivery(subject, 1));
    expect(bus.redelivery(subject, 2)?.giveUp).toBe(true);

    // The content server's consumers dead-letter after the policy's attempts.
    let deliveries = 0;
    const consumer = await bus.consume(
      { stream: "tasks", durable: "it_normal", filter: subject, maxDeliver: 5, backoffMs: [200, 200, 200, 200] },
      async () => {
        deliveries++;
        throw new Error("downstream refused");
      },
    );
    try {
      await publishTask(bus, "it", "normal", new TextEncoder().encode("poison"), "it-1");
      const [letter] = await eventually(async () => {
        const l = await listDeadLetters(bus, { consumer: "it_normal" });
        return l.length === 1 ? l : undefined;
      });
      expect(deliveries).toBe(2);
      expect(letter?.reason).toMatch(/max attempts \(2\) of the retry policy/);
    } finally {
      await consumer.stop();
    }

    // The content server's client: the defaults, then a policy set on the technical server.
    const research = content.client.agent(ResearchService);
    const attemptsOfOneCall = async (): Promise<number> => {
      attempts = 0;
      await research.keywordResearch({ keywords: [{ keyword: "a", monthlySearchVolume: 1n }] }).catch(() => undefined);
      return attempts;
    };
    expect(await attemptsOfOneCall()).toBe(4);
    await setPolicy(
      content,
      { kind: RetryTargetKind.SKILL, name: "content.keyword_research" },
      { maxAttempts: 2, baseBackoff: durationFromMs(1), jitter: Jitter.NONE },
    );
    await eventually(async () => ((await attemptsOfOneCall()) === 2 ? true : undefined));
    await setPolicy(
      content,
      { kind: RetryTargetKind.SKILL, name: "content.keyword_research" },
      { maxAttempts: 6, baseBackoff: durationFromMs(1), jitter: Jitter.NONE },
    );
    await eventually(async () => ((await attemptsOfOneCall()) === 6 ? true : undefined));
  });
});
