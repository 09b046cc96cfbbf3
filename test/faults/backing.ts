/**
 * A private NATS JetStream server and a private PostgreSQL cluster for the fault suite: each on a
 * free port with its own data directory, so the suite can kill and restart them without touching
 * the machine's shared servers. Both keep their data directory across restarts, as a crashed
 * production server would.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "../support/harness.ts";

const execFileAsync = promisify(execFile);

/** The nats-server binary (MESH_FAULTS_NATS_SERVER overrides). */
export const natsServerBin = process.env.MESH_FAULTS_NATS_SERVER ?? "/usr/sbin/nats-server";

/** The directory of initdb/pg_ctl: MESH_FAULTS_PG_BIN, else the newest /usr/lib/postgresql/<n>/bin. */
export function postgresBinDir(): string | undefined {
  if (process.env.MESH_FAULTS_PG_BIN) return process.env.MESH_FAULTS_PG_BIN;
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(base, versions[0], "bin");
}

/** Why the private servers cannot run here, or undefined when they can. */
export function backingUnavailable(): string | undefined {
  if (!existsSync(natsServerBin)) return `no nats-server at ${natsServerBin} (apt-get install nats-server)`;
  if (postgresBinDir() === undefined)
    return "no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)";
  return undefined;
}

/** Resolves when `host:port` accepts a TCP connection, or throws after `timeoutMs`. */
export async function waitForPort(host: string, port: number, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A private nats-server with JetStream. */
export interface PrivateNats {
  /** `nats://host:port` as reached from the host. */
  readonly url: string;
  readonly port: number;
  /** Output of the server so far (all its lives). */
  readonly log: () => string;
  /** Starts the server (again) on the same port and store directory; resolves when it accepts connections. */
  start(): Promise<void>;
  /** kill -9, and waits for the process to exit. */
  kill(): Promise<void>;
  /** Kills the server and removes its store. */
  close(): Promise<void>;
}

/** Starts a nats-server listening on `host` (an address every server process can reach). */
export async function startPrivateNats(host: string): Promise<PrivateNats> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "mesh-faults-nats-"));
  let child: ChildProcess | undefined;
  let out = "";
  const api: PrivateNats = {
    url: `nats://${host}:${port}`,
    port,
    log: () => out,
    async start() {
      const c = spawn(natsServerBin, ["-js", "-sd", dir, "-a", host, "-p", String(port)], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      c.stdout?.on("data", (d: Buffer) => (out += d.toString()));
      c.stderr?.on("data", (d: Buffer) => (out += d.toString()));
      child = c;
      await waitForPort(host, port);
    },
    async kill() {
      const c = child;
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((r) => c.once("exit", () => r()));
      c.kill("SIGKILL");
      await exited;
      child = undefined;
    },
    async close() {
      await api.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await api.start();
  return api;
}

/** A private PostgreSQL cluster. */
export interface PrivatePostgres {
  /** Server URL (database `postgres`) as reached from the host. */
  readonly adminUrl: string;
  readonly port: number;
  /** The cluster's server log. */
  readonly logFile: string;
  /** Starts the cluster (again); resolves when it accepts connections. */
  start(): Promise<void>;
  /** `pg_ctl stop` in `mode` (immediate: no shutdown checkpoint, crash recovery on the next start). */
  stop(mode: "fast" | "immediate"): Promise<void>;
  /** Stops the cluster and removes its data directory. */
  close(): Promise<void>;
}

/**
 * Initialises and starts a PostgreSQL cluster listening on `hosts` (comma-separated), with trust
 * authentication for `postgres` from loopback and from the addresses `trustFrom`. PostgreSQL refuses to run as root, so under root its commands run
 * as the `postgres` system user, which owns the data directory.
 */
export async function startPrivatePostgres(hosts: string, trustFrom: string[] = []): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error("no PostgreSQL binaries");
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "mesh-faults-pg-"));
  const dataDir = join(dir, "data");
  const logFile = join(dir, "server.log");
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { stdout } = await execFileAsync("id", ["-u", "postgres"]);
    const { stdout: gid } = await execFileAsync("id", ["-g", "postgres"]);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const run = async (tool: string, args: string[]): Promise<void> => {
    const file = join(bin, tool);
    if (asRoot) await execFileAsync("runuser", ["-u", "postgres", "--", file, ...args], { cwd: dir });
    else await execFileAsync(file, args, { cwd: dir });
  };
  await run("initdb", ["-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
  for (const address of trustFrom) appendFileSync(join(dataDir, "pg_hba.conf"), `host all all ${address}/32 trust\n`);
  const first = hosts.split(",")[0] ?? "127.0.0.1";
  const api: PrivatePostgres = {
    adminUrl: `postgres://postgres@${first}:${port}/postgres`,
    port,
    logFile,
    async start() {
      // fsync off: the suite kills processes, not the machine, so the page cache keeps every commit.
      const opts = `-p ${port} -k ${dir} -c listen_addresses=${hosts} -c fsync=off -c max_connections=200`;
      await run("pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "-o", opts, "start"]);
      await waitForPort(first, port);
      // Accepting TCP is not accepting queries (recovery after an immediate stop): wait for a query.
      const end = Date.now() + 60_000;
      for (;;) {
        const c = new pg.Client({ connectionString: api.adminUrl, connectionTimeoutMillis: 2000 });
        c.on("error", () => undefined);
        try {
          await c.connect();
          await c.query("select 1");
          await c.end();
          return;
        } catch (err) {
          await c.end().catch(() => undefined);
          if (Date.now() > end) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
    async stop(mode) {
      await run("pg_ctl", ["-D", dataDir, "-m", mode, "-w", "stop"]);
    },
    async close() {
      await api.stop("immediate").catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await api.start();
  return api;
}
