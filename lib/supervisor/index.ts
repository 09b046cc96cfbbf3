/**
 * `mesh start`: runs the server binaries as child processes, prefixes their log lines with the
 * server name, restarts a server that dies unexpectedly (with backoff), and on Ctrl-C / SIGTERM
 * stops them all cleanly (each drains its in-flight calls) before exiting.
 *
 * A server that dies before it ever became ready is a start-up failure, not a crash: restarting it
 * would fail the same way forever (a taken port, a wrong setting), hiding the reason in a loop. So
 * one that exits with a {@link startFailureExitCodes start-up failure code} is not restarted, and
 * any other early exit is retried only until it has failed `maxStartFailures` times in a row the
 * same way (same exit code, same last stderr line). Then the supervisor says why, stops the other
 * servers (a mesh missing one server fails every call to the agents placed on it, which is worse
 * than not running) and resolves with the failed server's exit code if it is a start-up failure
 * code, else 1. A server that crashes after it became ready is always restarted (kill -9 recovery).
 *
 * Readiness: a child reports it over the IPC channel opened for it ({@link reportReady}, which
 * servers/run.ts calls once the server listens), whatever its log level.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

/**
 * Exit codes by which a server says it failed at start in a way a restart does not fix:
 * `config` (2): invalid configuration or unavailable infrastructure (ConfigError, InfraError);
 * `listen` (78, EX_CONFIG of sysexits.h): its address cannot be bound (in use, permission denied…).
 */
export const startFailureExitCodes = { config: 2, listen: 78 } as const;

const startFailureCodes: ReadonlySet<number> = new Set(Object.values(startFailureExitCodes));

/** The message a supervised child sends once it serves. */
const readyMessage = { mesh: "ready" } as const;

/** Tells the supervising `mesh start` that this process now serves; a no-op when not supervised. */
export function reportReady(): void {
  if (process.connected) process.send?.(readyMessage);
}

/** One process to supervise. */
export interface SupervisedServer {
  /** Server name, used as the log prefix. */
  name: string;
  /** Entry script; it calls {@link reportReady} once it serves (servers/run.ts does). */
  script: string;
  /** Extra environment. */
  env?: Record<string, string>;
}

/** Options of {@link supervise}. */
export interface SuperviseOptions {
  /** Servers to run. */
  servers: SupervisedServer[];
  /** How long to wait for children after asking them to stop. */
  stopTimeoutMs: number;
  /** Consecutive identical failures at start after which a server is not restarted (default 3). */
  maxStartFailures?: number;
  /** First restart delay, doubled per consecutive restart up to 30 s (default 500 ms). */
  restartDelayMs?: number;
  /** Stops everything, like SIGTERM, when aborted. */
  signal?: AbortSignal;
  /** Where output goes: children's lines and notices to `out`, why a server is given up on to `err`. */
  write?: { out(text: string): void; err(text: string): void };
}

const colors = ["\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m"];

/**
 * Whether a stderr line says something: skips blank lines, stack frames and other indented detail,
 * Node's `Node.js vX` footer and the caret under a source line, so the line kept for "the same way"
 * is the error message of a crash rather than its last frame or footer.
 */
function meaningful(line: string): boolean {
  return line.trim() !== "" && !/^\s/.test(line) && !/^Node\.js v\d/.test(line) && !/^[\^~{}[\]()]+$/.test(line);
}

/** Runs the servers until a signal stops them or one cannot start; resolves with the exit code. */
export function supervise(opts: SuperviseOptions): Promise<number> {
  const width = Math.max(...opts.servers.map((s) => s.name.length));
  const tty = process.stdout.isTTY && opts.write === undefined;
  const out = opts.write?.out ?? ((text: string) => process.stdout.write(text));
  const err = opts.write?.err ?? ((text: string) => process.stderr.write(text));
  const maxStartFailures = opts.maxStartFailures ?? 3;
  const restartDelayMs = opts.restartDelayMs ?? 500;
  const children = new Map<string, ChildProcess>();
  const timers = new Set<NodeJS.Timeout>();
  let stopping = false;
  let exitCode = 0;
  return new Promise((resolve) => {
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.off("SIGHUP", onSignal);
      opts.signal?.removeEventListener("abort", onAbort);
      resolve(code);
    };
    /** Per server: the failure at start seen last and how many times in a row it happened. */
    const streaks = new Map<string, { signature: string; count: number }>();
    const startOne = (s: SupervisedServer, index: number, restarts: number): void => {
      const prefix = `${tty ? colors[index % colors.length] : ""}[${s.name.padEnd(width)}]${tty ? "\x1b[0m" : ""} `;
      const child = spawn(process.execPath, [s.script], {
        env: { ...process.env, ...s.env },
        stdio: ["ignore", "pipe", "pipe", "ipc"],
      });
      children.set(s.name, child);
      let ready = false;
      let lastLine = "";
      child.on("message", (m: unknown) => {
        if ((m as typeof readyMessage | null)?.mesh !== readyMessage.mesh) return;
        ready = true;
        streaks.delete(s.name);
      });
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => out(`${prefix}${line}\n`));
      const stderrLines = createInterface({ input: child.stderr as NodeJS.ReadableStream });
      stderrLines.on("line", (line) => {
        if (meaningful(line)) lastLine = line;
        out(`${prefix}${line}\n`);
      });
      const stderrRead = new Promise<void>((r) => stderrLines.once("close", r));
      const startedAt = Date.now();
      // Decide once the child's stderr has been read to the end, so its last line is known; but not
      // on "close", which waits for every process holding the pipe (a grandchild may keep it open).
      child.on("exit", (code, signal) => {
        let timer: NodeJS.Timeout | undefined;
        const waited = new Promise<void>((r) => {
          timer = setTimeout(r, 1000);
        });
        void Promise.race([stderrRead, waited]).then(() => {
          clearTimeout(timer);
          exited(code, signal);
        });
      });
      const exited = (code: number | null, signal: NodeJS.Signals | null): void => {
        children.delete(s.name);
        if (stopping) {
          out(`${prefix}stopped\n`);
          if (children.size === 0) finish(exitCode);
          return;
        }
        const how = signal ?? `exit code ${code}`;
        const said = lastLine === "" ? "" : `: ${lastLine}`;
        if (!ready) {
          if (code !== null && startFailureCodes.has(code)) {
            giveUp(
              s,
              code,
              `supervisor: ${s.name} failed to start with ${how}, which a restart does not fix (${lastLine || "no output"}); not restarting it`,
            );
            return;
          }
          const signature = `${how}\n${lastLine}`;
          const previous = streaks.get(s.name);
          const count = previous?.signature === signature ? previous.count + 1 : 1;
          streaks.set(s.name, { signature, count });
          if (count >= maxStartFailures) {
            giveUp(
              s,
              1,
              `supervisor: ${s.name} failed to start ${count} times the same way (${how}${said}); not restarting it`,
            );
            return;
          }
        }
        // Reset the backoff when the server had been up for a while.
        const n = Date.now() - startedAt > 60_000 ? 0 : restarts + 1;
        const delay = Math.min(30_000, restartDelayMs * 2 ** Math.min(n, 6));
        out(`${prefix}exited (${how})${ready ? "" : " before it was ready"}; restarting in ${delay} ms\n`);
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!stopping) startOne(s, index, n);
        }, delay);
        timers.add(timer);
      };
    };

    const stop = (reason: string, code: number): void => {
      if (stopping) return;
      stopping = true;
      exitCode = code;
      // A server waiting for its restart is not started again.
      for (const t of timers) clearTimeout(t);
      timers.clear();
      if (children.size === 0) {
        finish(exitCode);
        return;
      }
      out(`stopping ${[...children.keys()].join(", ")} (${reason})\n`);
      for (const c of children.values()) c.kill("SIGTERM");
      setTimeout(() => {
        for (const c of children.values()) c.kill("SIGKILL");
        finish(exitCode === 0 ? 1 : exitCode);
      }, opts.stopTimeoutMs).unref();
    };
    const giveUp = (s: SupervisedServer, code: number, message: string): void => {
      err(`${message}\n`);
      stop(`${s.name} could not start`, code);
    };
    const onSignal = (signal: NodeJS.Signals): void => stop(signal, 0);
    const onAbort = (): void => stop("aborted", 0);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.on("SIGHUP", onSignal);
    if (opts.signal?.aborted) {
      finish(0);
      return;
    }
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    for (const [i, s] of opts.servers.entries()) startOne(s, i, 0);
  });
}

/** Entry script of a server binary. */
export function serverScript(root: string, server: string): string {
  return join(root, "servers", server, "main.ts");
}
