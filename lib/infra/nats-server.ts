/**
 * NATS plumbing for lib/infra: probing a server by the `INFO {json}` line it greets every client
 * with, finding the nats-server binary, and running it as a child process with JetStream.
 * Only flags nats-server 2.9 understands are used. Errors are plain `Error`s; index.ts wraps them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, open, stat } from "node:fs/promises";
import { connect } from "node:net";
import { delimiter, join } from "node:path";
import type { Logger } from "../log/index.ts";
import type { ProcessExit, ServiceRun } from "./supervise.ts";

/** What an address answered to the INFO probe. */
export type NatsProbe =
  | { kind: "jetstream"; version: string }
  | { kind: "no-jetstream"; version: string }
  | { kind: "not-nats"; detail: string }
  | { kind: "unreachable"; detail: string };

/** Longest INFO line accepted; real ones are a few hundred bytes. */
const maxInfoBytes = 64 * 1024;

/** Connects to `host:port`, reads the server's INFO line and disconnects. */
export function probeNats(host: string, port: number, timeoutMs: number): Promise<NatsProbe> {
  return new Promise((resolve) => {
    let connected = false;
    let done = false;
    let buffer = "";
    const socket = connect({ host, port });
    const finish = (result: NatsProbe): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () =>
      finish(
        connected ? { kind: "not-nats", detail: "no INFO line in time" } : { kind: "unreachable", detail: "timed out" },
      ),
    );
    socket.on("connect", () => {
      connected = true;
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      finish(
        connected
          ? { kind: "not-nats", detail: err.message }
          : { kind: "unreachable", detail: err.code ?? err.message },
      );
    });
    socket.on("close", () => finish({ kind: "not-nats", detail: "closed without an INFO line" }));
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\n");
      if (end < 0) {
        if (buffer.length > maxInfoBytes) finish({ kind: "not-nats", detail: "overlong greeting" });
        return;
      }
      finish(parseInfo(buffer.slice(0, end).trim()));
    });
  });
}

function parseInfo(line: string): NatsProbe {
  const match = /^INFO\s+(\{.*\})$/i.exec(line);
  if (match?.[1] === undefined)
    return { kind: "not-nats", detail: `unexpected greeting ${JSON.stringify(line.slice(0, 60))}` };
  let info: unknown;
  try {
    info = JSON.parse(match[1]);
  } catch {
    return { kind: "not-nats", detail: "INFO is not JSON" };
  }
  const fields = typeof info === "object" && info !== null ? (info as Record<string, unknown>) : {};
  const version = typeof fields.version === "string" ? fields.version : "unknown";
  return fields.jetstream === true ? { kind: "jetstream", version } : { kind: "no-jetstream", version };
}

/** The first executable `nats-server` on `pathEnv`, then in /usr/sbin and /usr/local/bin. */
export async function findNatsServer(pathEnv: string | undefined): Promise<string | undefined> {
  const dirs = [...(pathEnv ?? "").split(delimiter), "/usr/sbin", "/usr/local/bin"].filter((d) => d !== "");
  for (const dir of new Set(dirs)) {
    const candidate = join(dir, "nats-server");
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/** Whether `path` is a regular file this process may execute. */
export async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Path of the nats-server binary. */
  binary: string;
  /** Port on 127.0.0.1. */
  port: number;
  /** JetStream store directory (created when missing). */
  storeDir: string;
  /** File the server's output is appended to. */
  logFile: string;
  /** How long to wait for the server to answer with JetStream enabled. */
  readyTimeoutMs: number;
  /** Progress messages. */
  log: Logger;
}

/** A nats-server child process this call started; `stop()` sends SIGTERM, then SIGKILL after 5 s. */
export type RunningNatsServer = ServiceRun;

/** Grace period between SIGTERM and SIGKILL. */
const killAfterMs = 5_000;

/**
 * Spawns `nats-server -js` on 127.0.0.1 and resolves once it answers the INFO probe with JetStream
 * enabled. On failure the child is gone and the error quotes the end of the log file.
 */
export async function startNatsServer(opts: NatsServerOptions): Promise<RunningNatsServer> {
  const { binary, port, storeDir, logFile, readyTimeoutMs, log } = opts;
  await mkdir(storeDir, { recursive: true });
  const args = ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir];
  const out = await open(logFile, "a", 0o600);
  let child: ChildProcess;
  let exit: string | undefined;
  let exited: Promise<ProcessExit>;
  try {
    await out.write(`--- ${new Date().toISOString()} ${binary} ${args.join(" ")}\n`);
    // The child gets its own copies of the descriptor; ours is closed right after. Its own process
    // group keeps a terminal's Ctrl-C from stopping it under servers that are still draining;
    // stop() and the exit handler below end it.
    child = spawn(binary, args, { stdio: ["ignore", out.fd, out.fd], detached: true });
    // Listen before anything is awaited: a child that fails at once (a refusing wrapper, a bad
    // flag) can exit while the descriptor is being closed, and an 'exit' nobody heard is lost.
    exited = new Promise<ProcessExit>((resolve) => {
      child.once("exit", (code, signal) => {
        exit = signal ? `signal ${signal}` : `code ${code}`;
        resolve({ code, signal });
      });
      // Spawn failures (EACCES, ENOENT) emit 'error' and no 'exit'.
      child.once("error", (err) => {
        exit ??= err.message;
        resolve({ code: null, signal: null });
      });
    });
  } finally {
    await out.close();
  }
  log.info("starting nats-server", { port, pid: child.pid, log: logFile });
  // If the process ends without calling stop(), do not leave the server behind.
  const onProcessExit = (): void => {
    child.kill("SIGTERM");
  };
  process.on("exit", onProcessExit);
  void exited.then(() => process.removeListener("exit", onProcessExit));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= terminate(child, exited, () => exit !== undefined);
    return stopping;
  };

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exit !== undefined) {
      throw new Error(`nats-server exited (${exit}) before it was ready; end of ${logFile}:\n${await tail(logFile)}`);
    }
    const probe = await probeNats("127.0.0.1", port, 1_000);
    // Re-check: a server that was already on the port answers while ours dies of "address in use".
    if (probe.kind === "jetstream" && exit === undefined) break;
    if (Date.now() >= deadline) {
      await stop();
      throw new Error(
        `nats-server did not answer with JetStream on 127.0.0.1:${port} within ${readyTimeoutMs} ms; ` +
          `end of ${logFile}:\n${await tail(logFile)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (child.pid === undefined) throw new Error("nats-server has no pid");
  return { pid: child.pid, exited, stop };
}

async function terminate(child: ChildProcess, exited: Promise<unknown>, hasExited: () => boolean): Promise<void> {
  if (hasExited()) return;
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const gone = await Promise.race([
    exited.then(() => true),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), killAfterMs);
    }),
  ]);
  clearTimeout(timer);
  if (!gone) {
    child.kill("SIGKILL");
    await exited;
  }
}

/** The last lines of a log file (at most 4 KiB of it). */
async function tail(file: string, lines = 20): Promise<string> {
  try {
    const handle = await open(file, "r");
    try {
      const { size } = await handle.stat();
      const length = Math.min(size, 4096);
      const { buffer } = await handle.read(Buffer.alloc(length), 0, length, size - length);
      return buffer.toString("utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } finally {
      await handle.close();
    }
  } catch (err) {
    return `(cannot read ${file}: ${err instanceof Error ? err.message : String(err)})`;
  }
}
