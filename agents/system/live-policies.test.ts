/**
 * Retry policies end to end through the System agent's module (real PostgreSQL and NATS): a policy
 * set with ManageRetries reaches the live copy of the server that owns the table (read in process)
 * and of a server that does not (loaded through ManageRetries, retried until it answers), through
 * the RetryPolicyChanged event the outbox publishes; the copies then drive a real mesh client's
 * retries and a real consumer's redelivery, and follow a changed policy without a restart.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResearchService } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { RetryPolicyChangedSchema } from "../../gen/mesh/system/v1/system_events_pb.ts";
import {
  Jitter,
  type ManageRetriesRequest,
  ManageRetriesRequestSchema,
  RetryTargetKind,
  RpcCode,
  SystemService,
} from "../../gen/mesh/system/v1/system_service_pb.ts";
import type { Bus, Running } from "../../lib/bus/index.ts";
import { listDeadLetters, publishTask, taskSubject } from "../../lib/bus/index.ts";
import { defaultPlacement, type ServerName } from "../../lib/config/index.ts";
import type { Database } from "../../lib/db/index.ts";
import { createLogger } from "../../lib/log/index.ts";
import { createCatalog } from "../../lib/registry/index.ts";
import {
  createInProcessClient,
  type EverywhereDeps,
  type EverywhereParts,
  type RetryPolicySource,
} from "../../lib/server/index.ts";
import { createMeshClient, type MeshClient } from "../../lib/transport/index.ts";
import { domains } from "../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../test/support/backbone.ts";
import { RetryPolicyChangedEvent } from "./events.ts";
import { systemAgent } from "./index.ts";
import { manageRetries } from "./skills/manage-retries.ts";

const log = createLogger("error");
const catalog = createCatalog();
const keywordResearch = "content.keyword_research";

type SetPolicy = MessageInitShape<typeof ManageRetriesRequestSchema>["action"] & { case: "setPolicy" };

describe("retry policies applied through the System agent", () => {
  let fx: BackboneFixture;
  let bus: Bus;
  let deps: EverywhereDeps & { db: Database };
  let owner: EverywhereParts;
  let remote: EverywhereParts;
  const running: Running[] = [];
  // The research server every attempt of a call reaches: it always answers UNAVAILABLE.
  let attempts = 0;
  let research: http2.Http2Server;
  let client: MeshClient;
  // What the remote copy's calls to the System agent do: the first ones find it still starting.
  let listCalls = 0;

  const set = async (value: SetPolicy["value"]) => {
    const res = await manageRetries(
      deps,
      create(ManageRetriesRequestSchema, { requestId: crypto.randomUUID(), action: { case: "setPolicy", value } }),
    );
    return res.result.case === "setPolicy" ? res.result.value.entry : undefined;
  };
  const sources = (): Required<RetryPolicySource>[] =>
    [owner, remote].map((p) => p.retryPolicies as Required<RetryPolicySource>);

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.technical, "technical");
    bus = fx.bus;
    deps = {
      client: undefined as never,
      catalog,
      log,
      now: () => new Date(),
      db: fx.db,
      bus,
      config: undefined as never,
      server: "technical",
      nodeId: "technical-0",
    };
    const routes = (router: ConnectRouter) =>
      router.service(ResearchService, {
        keywordResearch: () => {
          attempts++;
          throw new ConnectError("research is down", Code.Unavailable);
        },
      });
    research = http2.createServer(connectNodeAdapter({ routes }));
    await new Promise<void>((r) => research.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(research.address() as AddressInfo).port}`;
    client = createMeshClient({
      identity: "operations",
      token: "t",
      serverUrls: { content: url, operations: url, technical: url } as Record<ServerName, string>,
      placement: defaultPlacement,
      catalog,
      retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5, budgetRatio: 1, budgetMinPerSecond: 1000 },
      breaker: { failureThreshold: 1000, halfOpenAfterMs: 1000 },
    });
  });
  afterAll(async () => {
    for (const r of running) await r.stop();
    client?.close();
    research?.close();
    await fx?.dispose();
  });

  it("loads the stored policies on the server owning them and, retrying until it answers, elsewhere", async () => {
    await set({
      target: { kind: RetryTargetKind.SUBJECT, name: `${bus.prefix}.tasks.e2e.>` },
      policy: { maxAttempts: 2, baseBackoff: durationFromMs(50), jitter: Jitter.NONE },
    });

    const everywhere = systemAgent.everywhere;
    if (everywhere === undefined) throw new Error("the System agent contributes nothing to every server");
    owner = await everywhere(deps);
    running.push(...(owner.running ?? []));
    // The owner read its table before returning: the policy applies from its first message on.
    const ownerSource = owner.retryPolicies as Required<RetryPolicySource>;
    expect(ownerSource.redelivery(`${bus.prefix}.tasks.e2e.normal`, 1)).toEqual({ giveUp: false, delayMs: 50 });
    expect(ownerSource.redelivery(`${bus.prefix}.tasks.e2e.normal`, 2)?.giveUp).toBe(true);
    expect(ownerSource.redelivery(`${bus.prefix}.tasks.other.normal`, 1)).toBeUndefined();

    const system = createInProcessClient(SystemService, {
      manageRetries: (req: ManageRetriesRequest) => manageRetries(deps, req),
    });
    const remoteClient = {
      agent: () => ({
        manageRetries: (req: ManageRetriesRequest, o?: { signal?: AbortSignal }) => {
          listCalls++;
          if (listCalls <= 2) return Promise.reject(new ConnectError("technical is starting", Code.Unavailable));
          return system.manageRetries(req, o);
        },
      }),
    } as unknown as MeshClient;
    remote = await everywhere({ ...deps, db: undefined, client: remoteClient, server: "operations" });
    running.push(...(remote.running ?? []));
    const remoteSource = remote.retryPolicies as Required<RetryPolicySource>;
    // It keeps asking until the owner answers (a policy may also reach it by event meanwhile).
    await eventually(() => (listCalls >= 3 ? true : undefined));
    await eventually(() => remoteSource.redelivery(`${bus.prefix}.tasks.e2e.urgent`, 1));
    expect(remoteSource.redelivery(`${bus.prefix}.tasks.e2e.urgent`, 1)).toEqual({ giveUp: false, delayMs: 50 });
  });

  it("drives the mesh client's retries of a skill, and follows a changed policy", async () => {
    const [ownerSource, remoteSource] = sources();
    client.useSkillRetryPolicy?.(remoteSource?.skillRetry ?? (() => undefined));
    const attemptsOfOneCall = async (): Promise<number> => {
      attempts = 0;
      const err = await client
        .agent(ResearchService)
        .keywordResearch({ keywords: [{ keyword: "a", monthlySearchVolume: 1n }] })
        .catch((e: unknown) => e);
      expect(ConnectError.from(err).code).toBe(Code.Unavailable);
      return attempts;
    };
    expect(await attemptsOfOneCall()).toBe(3); // no policy yet: the client's defaults

    const policy = (maxAttempts: number, codes: RpcCode[]) => ({
      target: { kind: RetryTargetKind.SKILL, name: keywordResearch },
      policy: { maxAttempts, baseBackoff: durationFromMs(1), jitter: Jitter.NONE, retryableRpcCodes: codes },
    });
    const first = await set(policy(5, [RpcCode.UNAVAILABLE]));
    // Both copies receive the change through the outbox and the event, without a restart.
    for (const s of [ownerSource, remoteSource]) await eventually(() => s?.skillRetry(keywordResearch));
    expect(await attemptsOfOneCall()).toBe(5);

    await set(policy(2, [RpcCode.UNAVAILABLE]));
    await eventually(() => (remoteSource?.skillRetry(keywordResearch)?.maxAttempts === 2 ? true : undefined));
    expect(await attemptsOfOneCall()).toBe(2);

    // A code the policy does not list is not retried.
    await set(policy(4, [RpcCode.RESOURCE_EXHAUSTED]));
    await eventually(() => (remoteSource?.skillRetry(keywordResearch)?.maxAttempts === 4 ? true : undefined));
    expect(await attemptsOfOneCall()).toBe(1);

    // A late event carrying an older revision never brings the older policy back: it is published
    // before a fresh change, which the copies apply after it (one publisher, one subscription: in order).
    await bus.publishEvent(RetryPolicyChangedEvent, create(RetryPolicyChangedSchema, { entry: first }));
    await set({
      target: { kind: RetryTargetKind.SUBJECT, name: `${bus.prefix}.tasks.marker.>` },
      policy: { maxAttempts: 1 },
    });
    for (const s of [ownerSource, remoteSource]) {
      await eventually(() => s?.redelivery(`${bus.prefix}.tasks.marker.x`, 1));
      expect(s?.skillRetry(keywordResearch)?.maxAttempts).toBe(4);
    }
  });

  it("drives the bus's redelivery of a subject and dead-letters after the policy's attempts", async () => {
    const [, remoteSource] = sources();
    const off = bus.useRedeliveryPolicy(remoteSource?.redelivery ?? (() => undefined));
    const at: number[] = [];
    const consumer = await bus.consume(
      {
        stream: "tasks",
        durable: "e2e_normal",
        filter: taskSubject(bus.prefix, "e2e", "normal"),
        maxDeliver: 6,
        // Also each delivery's ack wait (JetStream): long enough to write the dead letter in.
        backoffMs: [200, 200, 200, 200, 200],
      },
      async () => {
        at.push(performance.now());
        throw new Error("downstream refused");
      },
    );
    try {
      await publishTask(bus, "e2e", "normal", new TextEncoder().encode("poison"), "e2e-1");
      const [letter] = await eventually(async () => {
        const l = await listDeadLetters(bus, { consumer: "e2e_normal" });
        return l.length === 1 ? l : undefined;
      });
      expect(at).toHaveLength(2);
      expect((at[1] ?? 0) - (at[0] ?? 0)).toBeGreaterThanOrEqual(49); // the policy's 50 ms
      expect(letter?.reason).toMatch(/^max attempts \(2\) of the retry policy reached/);

      // Raised at run time: the same consumer now makes three attempts.
      await set({
        target: { kind: RetryTargetKind.SUBJECT, name: `${bus.prefix}.tasks.e2e.>` },
        policy: { maxAttempts: 3, baseBackoff: durationFromMs(10), jitter: Jitter.NONE },
      });
      await eventually(() =>
        remoteSource?.redelivery(`${bus.prefix}.tasks.e2e.normal`, 2)?.giveUp ? undefined : true,
      );
      at.length = 0;
      await publishTask(bus, "e2e", "normal", new TextEncoder().encode("poison"), "e2e-2");
      const letters = await eventually(async () => {
        const l = await listDeadLetters(bus, { consumer: "e2e_normal" });
        return l.length === 2 ? l : undefined;
      });
      expect(at).toHaveLength(3);
      expect(letters[1]?.reason).toMatch(/^max attempts \(3\) of the retry policy reached/);
    } finally {
      off();
      await consumer.stop();
    }
  });
});
