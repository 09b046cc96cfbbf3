/**
 * Integration harness: runs the real server binaries as child processes on free ports with their
 * own data directory, auth file and OTLP receiver, and gives tests authenticated clients.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.ts";
import { ensureDevCredentials, generateToken, hashToken, parseAuthFile, readToken } from "../../lib/auth/index.ts";
import { connectBus } from "../../lib/bus/index.ts";
import { type ServerName, serverNames } from "../../lib/config/index.ts";
import { createLogger } from "../../lib/log/index.ts";
import { deleteStreams, isolatedDatabase, natsUrl, uniqueName } from "./backbone.ts";
import { type OtlpReceiver, startOtlpReceiver } from "./otlp-receiver.ts";

/** Repository root. */
export const root = join(import.meta.dirname, "..", "..");

/** A free loopback TCP port. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Options of {@link startHarness}. */
export interface HarnessOptions {
  /** Servers to start (default: all three). */
  servers?: ServerName[];
  /** Extra environment for every server. */
  env?: Record<string, string>;
  /** Extra principals: name → grants. */
  principals?: Record<string, string[]>;
  /** Use https with certificates from this directory (made by createDevCertificates). */
  tlsDir?: string;
}

/** Running servers plus what tests need to talk to them. */
export interface Harness {
  /** Data directory of the run. */
  dataDir: string;
  /** Base URL per server. */
  urls: Record<ServerName, string>;
  /** Bearer token per principal (operator, the three servers, extra principals). */
  tokens: Record<string, string>;
  /** Spans the servers exported. */
  otlp: OtlpReceiver;
  /** Environment the servers run with. */
  env: Record<string, string>;
  /** The run's own database (dropped on close). */
  databaseUrl: string;
  /** The run's own NATS prefix (its streams are deleted on close). */
  natsPrefix: string;
  /** Output of each server process so far. */
  logs: Record<string, string>;
  /** Starts (or restarts) a server and waits until it reports SERVING. */
  start(server: ServerName): Promise<void>;
  /** Sends a signal and waits for the process to exit; returns its exit code. */
  stop(server: ServerName, signal?: NodeJS.Signals): Promise<number | null>;
  /** The child process of a server. */
  process(server: ServerName): ChildProcess | undefined;
  /** A plain connect-es client (no mesh resilience) as `principal` (or anonymous with null). */
  client<S extends DescService>(
    server: ServerName,
    service: S,
    principal?: string | null,
    protocol?: "connect" | "grpc",
  ): Client<S>;
  /** Stops everything and removes the data directory. */
  close(): Promise<void>;
}

/** Starts the servers. */
export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const servers = opts.servers ?? [...serverNames];
  const dataDir = mkdtempSync(join(tmpdir(), "mesh-test-"));
  const authFile = join(dataDir, "auth.json");
  ensureDevCredentials(dataDir, authFile);
  const tokens: Record<string, string> = {};
  for (const p of ["operator", ...serverNames]) tokens[p] = readToken(dataDir, p);
  const file = parseAuthFile(readFileSync(authFile, "utf8"), authFile);
  for (const [name, allow] of Object.entries(opts.principals ?? {})) {
    const token = generateToken();
    tokens[name] = token;
    file.principals[name] = { kind: "client", tokenSha256: hashToken(token), allow };
  }
  writeFileSync(authFile, JSON.stringify(file));
  const otlp = await startOtlpReceiver();
  const database = await isolatedDatabase();
  const natsPrefix = uniqueName("t");
  const scheme = opts.tlsDir ? "https" : "http";
  const urls = {} as Record<ServerName, string>;
  for (const s of serverNames) urls[s] = `${scheme}://127.0.0.1:${await freePort()}`;
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    MESH_ROOT: root,
    MESH_DATA_DIR: dataDir,
    MESH_CONTENT_URL: urls.content,
    MESH_OPERATIONS_URL: urls.operations,
    MESH_TECHNICAL_URL: urls.technical,
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
    MESH_SHUTDOWN_GRACE_MS: "5000",
    DATABASE_URL: database.url,
    NATS_URL: natsUrl,
    MESH_NATS_PREFIX: natsPrefix,
    ...(opts.tlsDir ? { MESH_TLS_DIR: opts.tlsDir } : {}),
    ...opts.env,
  };
  const procs = new Map<ServerName, ChildProcess>();
  const logs: Record<string, string> = {};
  const ca = opts.tlsDir ? readFileSync(join(opts.tlsDir, "ca.crt")) : undefined;
  const transports = new Map<string, ReturnType<typeof createConnectTransport>>();
  const transport = (server: ServerName, protocol: "connect" | "grpc") => {
    const key = `${server}/${protocol}`;
    let t = transports.get(key);
    if (t === undefined) {
      const o = { baseUrl: urls[server], httpVersion: "2" as const, ...(ca ? { nodeOptions: { ca } } : {}) };
      t = protocol === "grpc" ? createGrpcTransport(o) : createConnectTransport(o);
      transports.set(key, t);
    }
    return t;
  };
  const h: Harness = {
    dataDir,
    urls,
    tokens,
    otlp,
    env,
    logs,
    databaseUrl: database.url,
    natsPrefix,
    client(server, service, principal = "operator", protocol = "connect") {
      const raw = createClient(service, transport(server, protocol)) as unknown as Record<
        string,
        (r: unknown, o?: object) => unknown
      >;
      const token = principal === null ? undefined : tokens[principal];
      const out: Record<string, unknown> = {};
      for (const m of service.methods) {
        const fn = raw[m.localName] as (r: unknown, o?: object) => unknown;
        out[m.localName] = (r: unknown, o: { headers?: Record<string, string> } = {}) =>
          fn(r, {
            timeoutMs: 30_000,
            ...o,
            headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...o.headers },
          });
      }
      return out as unknown as Client<typeof service>;
    },
    async start(server) {
      logs[server] = "";
      const child = spawn(process.execPath, [join(root, "servers", server, "main.ts")], {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      child.stdout?.on("data", (d: Buffer) => (logs[server] += d.toString()));
      child.stderr?.on("data", (d: Buffer) => (logs[server] += d.toString()));
      procs.set(server, child);
      const health = h.client(server, Health, null);
      const deadline = Date.now() + 30_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`${server} exited with ${child.exitCode}:\n${logs[server]}`);
        try {
          const r = await health.check({ service: "" }, { timeoutMs: 1000 });
          if (r.status === HealthCheckResponse_ServingStatus.SERVING) return;
        } catch {
          // not up yet
        }
        if (Date.now() > deadline) throw new Error(`${server} never became SERVING:\n${logs[server]}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop(server, signal = "SIGTERM") {
      const child = procs.get(server);
      if (child === undefined || child.exitCode !== null) return child?.exitCode ?? null;
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      child.kill(signal);
      const code = await exited;
      procs.delete(server);
      return code;
    },
    process: (server) => procs.get(server),
    async close() {
      await Promise.all([...procs.keys()].map((s) => h.stop(s, "SIGKILL")));
      await otlp.close();
      const bus = await connectBus({ url: natsUrl, prefix: natsPrefix, name: "harness", log: createLogger("error") });
      await deleteStreams(bus);
      await bus.close();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(servers.map((s) => h.start(s)));
  } catch (err) {
    await h.close();
    throw err;
  }
  return h;
}
