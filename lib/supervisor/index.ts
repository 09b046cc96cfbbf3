/**
 * `mesh start`: runs the server binaries as child processes, prefixes their log lines with the
 * server name, restarts a server that dies unexpectedly (with backoff), and on Ctrl-C / SIGTERM
 * stops them all cleanly (each drains its in-flight calls) before exiting.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** One process to supervise. */
export interface SupervisedServer {
  /** Server name, used as the log prefix. */
  name: string;
  /** Entry script. */
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
}

const colors = ["\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m"];

/** Runs the servers until a signal stops them; resolves with the exit code. */
export function supervise(opts: SuperviseOptions): Promise<number> {
  const width = Math.max(...opts.servers.map((s) => s.name.length));
  const tty = process.stdout.isTTY;
  const children = new Map<string, ChildProcess>();
  let stopping = false;
  return new Promise((resolve) => {
    const startOne = (s: SupervisedServer, index: number, restarts: number): void => {
      const prefix = `${tty ? colors[index % colors.length] : ""}[${s.name.padEnd(width)}]${tty ? "\x1b[0m" : ""} `;
      const child = spawn(process.execPath, [s.script], {
        env: { ...process.env, ...s.env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.set(s.name, child);
      for (const stream of [child.stdout, child.stderr]) {
        createInterface({ input: stream }).on("line", (line) => process.stdout.write(`${prefix}${line}\n`));
      }
      const startedAt = Date.now();
      child.on("exit", (code, signal) => {
        children.delete(s.name);
        if (stopping) {
          process.stdout.write(`${prefix}stopped\n`);
          if (children.size === 0) resolve(0);
          return;
        }
        // Reset the backoff when the server had been up for a while.
        const n = Date.now() - startedAt > 60_000 ? 0 : restarts + 1;
        const delay = Math.min(30_000, 500 * 2 ** Math.min(n, 6));
        process.stdout.write(`${prefix}exited (${signal ?? `code ${code}`}); restarting in ${delay} ms\n`);
        setTimeout(() => {
          if (!stopping) startOne(s, index, n);
        }, delay);
      });
    };
    for (const [i, s] of opts.servers.entries()) startOne(s, i, 0);

    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      process.stdout.write(`stopping ${[...children.keys()].join(", ")} (${signal})\n`);
      if (children.size === 0) resolve(0);
      for (const c of children.values()) c.kill("SIGTERM");
      setTimeout(() => {
        for (const c of children.values()) c.kill("SIGKILL");
        resolve(1);
      }, opts.stopTimeoutMs).unref();
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGHUP", () => stop("SIGHUP"));
  });
}

/** Entry script of a server binary. */
export function serverScript(root: string, server: string): string {
  return join(root, "servers", server, "main.ts");
}
