/**
 * The three servers as real processes for the fault suite, like test/support/harness.ts but with
 * what fault injection needs: per-server addresses (one server may run inside a network namespace,
 * bound to its veth address), the backing services given by URL (a private PostgreSQL and NATS),
 * a server's pid for signals (kill -9, SIGSTOP/SIGCONT), and restarts.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.ts";
import { ensureDevCredentials, readToken } from "../../lib/auth/index.ts";
import { type ServerName, serverNames } from "../../lib/config/index.ts";
import { freePort, root } from "../support/harness.ts";

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** Address the servers outside a namespace bind to (and reach each other and the backing services on). */
  host: string;
  /** A server run inside a namespace: its argv prefix and the address it binds to there. */
  isolated?: { server: ServerName; exec: string[]; address: string };
  /** PostgreSQL URL of the servers' database. */
  databaseUrl: string;
  /** NATS URL. */
  natsUrl: string;
  /** Extra environment for every server. */
  env?: Record<string, string>;
}

/** Running servers. */
export interface Cluster {
  readonly urls: Record<ServerName, string>;
  readonly dataDir: string;
  /** Output of each server process so far (all its lives). */
  readonly logs: Record<ServerName, string>;
  /** Starts (or restarts) a server and waits until it reports SERVING. */
  start(server: ServerName): Promise<void>;
  /** Sends `signal` to a server; for SIGKILL/SIGTERM waits until the process has exited. */
  signal(server: ServerName, signal: NodeJS.Signals): Promise<void>;
  /** The server's pid (undefined when it is not running). */
  pid(server: ServerName): number | undefined;
  /** True while the server's health check answers SERVING (within `timeoutMs`). */
  serving(server: ServerName, timeoutMs?: number): Promise<boolean>;
  /** A connect-es client of a server, as the operator. */
  client<S extends DescService>(server: ServerName, service: S): Client<S>;
  /** Kills every server and removes the data directory. */
  close(): Promise<void>;
}

/** Starts the three servers. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const dataDir = mkdtempSync(join(tmpdir(), "mesh-faults-"));
  const authFile = join(dataDir, "auth.json");
  ensureDevCredentials(dataDir, authFile);
  const token = readToken(dataDir, "operator");
  const urls = {} as Record<ServerName, string>;
  for (const s of serverNames) {
    const host = opts.isolated?.server === s ? opts.isolated.address : opts.host;
    urls[s] = `http://${host}:${await freePort()}`;
  }
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    MESH_ROOT: root,
    MESH_DATA_DIR: dataDir,
    MESH_CONTENT_URL: urls.content,
    MESH_OPERATIONS_URL: urls.operations,
    MESH_TECHNICAL_URL: urls.technical,
    MESH_SHUTDOWN_GRACE_MS: "5000",
    MESH_INFRA: "external",
    DATABASE_URL: opts.databaseUrl,
    NATS_URL: opts.natsUrl,
    MESH_NATS_PREFIX: "faults",
    MESH_LOG_LEVEL: "warn",
    ...opts.env,
  };
  delete env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const procs = new Map<ServerName, ChildProcess>();
  const logs = { content: "", operations: "", technical: "" } as Record<ServerName, string>;
  const transports = new Map<ServerName, Transport>();
  const transport = (s: ServerName): Transport => {
    let t = transports.get(s);
    if (t === undefined) {
      t = createConnectTransport({ baseUrl: urls[s], httpVersion: "2" });
      transports.set(s, t);
    }
    return t;
  };
  const auth = { authorization: `Bearer ${token}` };

  const cluster: Cluster = {
    urls,
    dataDir,
    logs,
    async start(server) {
      const prefix = opts.isolated?.server === server ? opts.isolated.exec : [];
      const argv = [...prefix, process.execPath, join(root, "servers", server, "main.ts")];
      const child = spawn(argv[0] as string, argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout?.on("data", (d: Buffer) => (logs[server] += d.toString()));
      child.stderr?.on("data", (d: Buffer) => (logs[server] += d.toString()));
      procs.set(server, child);
      const deadline = Date.now() + 60_000;
      for (;;) {
        if (child.exitCode !== null) {
          throw new Error(`${server} exited with ${child.exitCode}:\n${logs[server].slice(-4000)}`);
        }
        if (await cluster.serving(server, 1000)) return;
        if (Date.now() > deadline) throw new Error(`${server} never became SERVING:\n${logs[server].slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async signal(server, signal) {
      const child = procs.get(server);
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
      if (signal !== "SIGKILL" && signal !== "SIGTERM") {
        child.kill(signal);
        return;
      }
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill(signal);
      await exited;
      procs.delete(server);
    },
    pid: (server) => procs.get(server)?.pid,
    async serving(server, timeoutMs = 2000) {
      try {
        const health = createClient(Health, transport(server));
        const r = await health.check({ service: "" }, { timeoutMs });
        return r.status === HealthCheckResponse_ServingStatus.SERVING;
      } catch {
        return false;
      }
    },
    client(server, service) {
      const raw = createClient(service, transport(server)) as unknown as Record<
        string,
        (r: unknown, o?: object) => unknown
      >;
      const out: Record<string, unknown> = {};
      for (const m of service.methods) {
        const fn = raw[m.localName] as (r: unknown, o?: object) => unknown;
        out[m.localName] = (r: unknown, o: { timeoutMs?: number } = {}) =>
          fn(r, { timeoutMs: 10_000, ...o, headers: auth });
      }
      return out as unknown as Client<typeof service>;
    },
    async close() {
      for (const s of [...procs.keys()]) {
        const c = procs.get(s);
        c?.kill("SIGCONT");
        await cluster.signal(s, "SIGKILL");
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(serverNames.map((s) => cluster.start(s)));
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}
