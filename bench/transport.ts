/**
 * Transport benchmark: cross-server skill-call latency through the full mesh stack (mesh client
 * with deadlines, retries, breaker, auth and tracing → a real content server process with auth,
 * rate limiting, validation, tracing and error mapping → the Research agent's KeywordResearch)
 * beside a bare connect-node server and a bare @grpc/grpc-js echo, in the same run, sequential
 * and at concurrency 32.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
import { KeywordResearchRequestSchema, ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { ensureDevCredentials, readToken } from "../lib/auth/index.ts";
import { connectBus } from "../lib/bus/index.ts";
import { defaultPlacement, type ServerName } from "../lib/config/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { createCatalog } from "../lib/registry/index.ts";
import { setupTelemetry } from "../lib/telemetry/index.ts";
import { createMeshClient } from "../lib/transport/index.ts";
import { deleteStreams, isolatedDatabase, natsUrl, uniqueName } from "../test/support/backbone.ts";
import { freePort } from "../test/support/harness.ts";
import { type LatencyResult, measure } from "./lib.ts";
import { benchRequest } from "./requests.ts";

const root = join(import.meta.dirname, "..");

/** Options of the transport benchmark. */
export interface TransportBenchOptions {
  /** Measured calls per scenario. */
  calls: number;
  /** Warm-up calls per scenario. */
  warmup: number;
}

function waitForLine(child: ChildProcess, re: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = "";
    child.stdout?.on("data", (d: Buffer) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) resolve(m);
    });
    child.once("exit", (code) => reject(new Error(`exited with ${code} before printing ${re}`)));
  });
}

/** Runs the scenarios and returns the results plus the target checks. */
export async function benchTransport(opts: TransportBenchOptions) {
  const dataDir = mkdtempSync(join(tmpdir(), "mesh-bench-"));
  const authFile = join(dataDir, "auth.json");
  ensureDevCredentials(dataDir, authFile);
  const contentUrl = `http://127.0.0.1:${await freePort()}`;
  const children: ChildProcess[] = [];
  // The server needs a database and NATS; give it scratch ones so a benchmark leaves nothing behind.
  const database = await isolatedDatabase();
  const prefix = uniqueName("bench");
  try {
    const content = spawn(process.execPath, [join(root, "servers", "content", "main.ts")], {
      env: {
        ...process.env,
        MESH_ROOT: root,
        MESH_DATA_DIR: dataDir,
        MESH_CONTENT_URL: contentUrl,
        DATABASE_URL: database.url,
        NATS_URL: natsUrl,
        MESH_NATS_PREFIX: prefix,
        MESH_RATE_LIMIT_RPS: "10000000",
        MESH_RATE_LIMIT_BURST: "10000000",
        MESH_LOG_LEVEL: "warn",
        OTEL_EXPORTER_OTLP_ENDPOINT: "",
      },
      stdio: ["ignore", "inherit", "inherit"],
    });
    children.push(content);
    const bare = spawn(process.execPath, [join(root, "bench", "bare-servers.ts")], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(bare);
    const [, connectPort, grpcPort] = await waitForLine(bare, /ready (\d+) (\d+)/);
    const health = createClient(Health, createConnectTransport({ baseUrl: contentUrl, httpVersion: "2" }));
    for (let i = 0; ; i++) {
      const ok = await health.check({ service: "" }).then(
        (r) => r.status === HealthCheckResponse_ServingStatus.SERVING,
        () => false,
      );
      if (ok) break;
      if (i > 300) throw new Error("content server did not start");
      await new Promise((r) => setTimeout(r, 100));
    }

    // This process plays the technical server: same SDK wiring, same client, its own token.
    const telemetry = setupTelemetry({ serviceName: "mesh-technical-bench", memorySpans: true });
    const catalog = createCatalog();
    const serverUrls = { content: contentUrl, operations: contentUrl, technical: contentUrl } as Record<
      ServerName,
      string
    >;
    const meshClient = (protocol: "connect" | "grpc") =>
      createMeshClient({
        identity: "technical",
        token: readToken(dataDir, "technical"),
        serverUrls,
        placement: defaultPlacement,
        catalog,
        protocol,
      }).agent(ResearchService);
    const req = benchRequest();
    const bareUrl = `http://127.0.0.1:${connectPort}`;
    const bareConnect = createClient(
      ResearchService,
      createConnectTransport({ baseUrl: bareUrl, httpVersion: "2", useBinaryFormat: true }),
    );
    const bareGrpc = createClient(ResearchService, createGrpcTransport({ baseUrl: bareUrl }));
    const grpcClient = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    const payload = Buffer.from(toBinary(KeywordResearchRequestSchema, req));
    const pass = (b: Buffer) => b;
    const grpcEcho = () =>
      new Promise<Buffer>((resolve, reject) =>
        grpcClient.makeUnaryRequest("/bench.v1.EchoService/Echo", pass, pass, payload, (err, res) =>
          err ? reject(err) : resolve(res as Buffer),
        ),
      );
    const meshConnect = meshClient("connect");
    const meshGrpc = meshClient("grpc");
    const scenarios: Array<[string, () => Promise<unknown>]> = [
      ["mesh skill call, Connect protocol", () => meshConnect.keywordResearch(req)],
      ["bare connect-node, Connect protocol", () => bareConnect.keywordResearch(req)],
      ["mesh skill call, gRPC protocol", () => meshGrpc.keywordResearch(req)],
      ["bare connect-node, gRPC protocol", () => bareGrpc.keywordResearch(req)],
      ["bare @grpc/grpc-js echo", grpcEcho],
    ];
    const results: LatencyResult[] = [];
    for (const concurrency of [1, 32]) {
      for (const [name, call] of scenarios) {
        results.push(await measure(name, call, { calls: opts.calls, warmup: opts.warmup, concurrency }));
      }
    }
    grpcClient.close();
    await telemetry.shutdown();

    const get = (name: string, c: number) =>
      results.find((r) => r.name === name && r.concurrency === c) as LatencyResult;
    const checks = [1, 32].flatMap((c) =>
      (["Connect", "gRPC"] as const).map((p) => {
        const mesh = get(`mesh skill call, ${p} protocol`, c);
        const baseline = get(`bare connect-node, ${p} protocol`, c);
        return {
          protocol: p,
          concurrency: c,
          meshP99Ms: mesh.p99,
          p99Under5ms: mesh.p99 < 5,
          p50Ratio: Math.round((mesh.p50 / baseline.p50) * 100) / 100,
          p99Ratio: Math.round((mesh.p99 / baseline.p99) * 100) / 100,
          withinRatio1_5: mesh.p50 / baseline.p50 <= 1.5 && mesh.p99 / baseline.p99 <= 1.5,
        };
      }),
    );
    return { results, checks };
  } finally {
    await Promise.all(
      children.map((c) =>
        c.exitCode === null
          ? new Promise((r) => {
              c.once("exit", r);
              c.kill("SIGTERM");
            })
          : undefined,
      ),
    );
    rmSync(dataDir, { recursive: true, force: true });
    const bus = await connectBus({ url: natsUrl, prefix, name: "bench", log: createLogger("error") });
    await deleteStreams(bus);
    await bus.close();
    await database.drop();
  }
}
