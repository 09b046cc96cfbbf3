/**
 * `npm start` on a machine with nothing but Node: with MESH_INFRA=embedded (so the test needn't stop
 * the machine's own services) and a clean data directory, the supervisor starts an embedded
 * PostgreSQL and a nats-server child, the three servers come up on them, and the smoke run passes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
import { RunState, WorkflowService } from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { readToken } from "../lib/auth/index.ts";
import { serverNames } from "../lib/config/index.ts";
import { runSmoke } from "../workflows/smoke.ts";
import { eventually } from "./support/backbone.ts";
import { freePort, root } from "./support/harness.ts";

const answers = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });

describe("npm start with embedded PostgreSQL and NATS", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "mesh-embedded-"));
  const urls: Record<string, string> = {};
  let pgPort = 0;
  let natsPort = 0;
  let child: ChildProcess | undefined;
  let output = "";

  beforeAll(async () => {
    pgPort = await freePort();
    natsPort = await freePort();
    for (const s of serverNames) urls[s] = `http://127.0.0.1:${await freePort()}`;
    const env: Record<string, string> = { ...(process.env as Record<string, string>) };
    for (const k of ["DATABASE_URL", "NATS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "MESH_PLACEMENT"]) delete env[k];
    Object.assign(env, {
      MESH_ROOT: root,
      MESH_DATA_DIR: dataDir,
      MESH_INFRA: "embedded",
      MESH_EMBEDDED_PG_PORT: String(pgPort),
      MESH_EMBEDDED_NATS_PORT: String(natsPort),
      MESH_CONTENT_URL: urls.content,
      MESH_OPERATIONS_URL: urls.operations,
      MESH_TECHNICAL_URL: urls.technical,
    });
    child = spawn(process.execPath, [join(root, "bin", "mesh.ts"), "start"], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    for (const s of serverNames) {
      const health = createClient(Health, createConnectTransport({ baseUrl: urls[s] as string, httpVersion: "2" }));
      await eventually(async () => {
        if (child?.exitCode !== null) throw new Error(`mesh start exited:\n${output}`);
        const r = await health.check({ service: "" }, { timeoutMs: 1000 }).catch(() => undefined);
        return r?.status === HealthCheckResponse_ServingStatus.SERVING ? true : undefined;
      }, 90_000).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${output}`);
      });
    }
  }, 120_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child?.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  it("says which PostgreSQL and NATS it uses, and the smoke run passes on them", async () => {
    expect(output).toMatch(new RegExp(`postgres .*127\\.0\\.0\\.1:${pgPort}.*source=embedded`));
    expect(output).toMatch(new RegExp(`nats .*127\\.0\\.0\\.1:${natsPort}.*source=embedded`));
    const token = readToken(dataDir, "operator");
    const transport = createConnectTransport({
      baseUrl: urls.technical as string,
      httpVersion: "2",
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${token}`);
          return next(req);
        },
      ],
    });
    const run = await runSmoke(createClient(WorkflowService, transport));
    expect(run.state).toBe(RunState.SUCCEEDED);
  }, 90_000);

  it("stops the embedded services with the servers", async () => {
    const exited = new Promise<number | null>((r) => child?.once("exit", (code) => r(code)));
    child?.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(await answers(pgPort)).toBe(false);
    expect(await answers(natsPort)).toBe(false);
  }, 60_000);
});
