/**
 * The embedded PostgreSQL and nats-server that lib/infra starts are supervised: killed with
 * SIGKILL, each is reported (error level) and started again on the same port and data directory,
 * with its data; a service that keeps failing backs off; stop() and a terminal's Ctrl-C never
 * trigger a restart, and stop() leaves no process behind. Services reused from another process are
 * watched and reported, never restarted here. Real processes throughout, on private ports and data
 * directories (the machine's shared PostgreSQL and NATS are never touched).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect as natsConnect } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Infrastructure, resolveInfrastructure } from "../lib/infra/index.ts";
import { createLogger, type Logger } from "../lib/log/index.ts";
import { eventually } from "./support/backbone.ts";
import { freePort, root } from "./support/harness.ts";

const dirs: string[] = [];
const opened: Infrastructure[] = [];

afterAll(async () => {
  await Promise.allSettled(opened.map((infra) => infra.stop()));
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
}, 60_000);

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mesh-supervision-"));
  dirs.push(dir);
  return dir;
}

function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger("info", (line) => lines.push(line)), lines };
}

/** The first capture group of the first line (from index `from`) matching `pattern`, once one does. */
function logged(lines: string[], pattern: RegExp, from = 0, timeoutMs = 30_000): Promise<string> {
  return eventually(() => {
    for (const line of lines.slice(from)) {
      const m = pattern.exec(line);
      if (m) return m[1] ?? m[0];
    }
    return undefined;
  }, timeoutMs).catch((err: unknown) => {
    throw new Error(`${String(err)}: no line matching ${pattern} in\n${lines.slice(from).join("")}`);
  });
}

async function query(url: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Whether anything accepts TCP connections on 127.0.0.1:`port`. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of the processes whose parent is `pid` (PostgreSQL's server processes under its postmaster). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid …; comm may contain spaces, so split after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The pid in the cluster's postmaster.pid (PostgreSQL writes it once it runs). */
async function postmasterPid(dir: string): Promise<number> {
  return Number((await readFile(join(dir, "postgres", "postmaster.pid"), "utf8")).split("\n")[0]);
}

/** The pid of the nats-server started last, from its "starting nats-server" log line. */
function natsPid(lines: string[]): number {
  const starts = lines.filter((l) => l.startsWith("info  starting nats-server"));
  const pid = /pid=(\d+)/.exec(starts.at(-1) ?? "")?.[1];
  if (pid === undefined) throw new Error(`no nats-server start logged:\n${lines.join("")}`);
  return Number(pid);
}

/** Publishes to a JetStream subject and returns the ack (the stream must exist). */
async function publish(url: string, subject: string): Promise<{ stream: string; seq: number }> {
  const nc = await natsConnect({ servers: url });
  try {
    const ack = await jetstream(nc).publish(subject, "x");
    return { stream: ack.stream, seq: ack.seq };
  } finally {
    await nc.close();
  }
}

/** The `restartInMs` values of the death and failed-restart lines of `service`, in order. */
function restartDelays(lines: string[], service: string, from = 0): number[] {
  return lines
    .slice(from)
    .filter((l) => l.startsWith(`error embedded ${service} `))
    .flatMap((l) => {
      const m = /restartInMs=(\d+)/.exec(l);
      return m ? [Number(m[1])] : [];
    });
}

describe("supervised embedded PostgreSQL and nats-server", () => {
  let dir = "";
  let pgPort = 0;
  let natsPort = 0;
  let infra: Infrastructure;
  const { log, lines } = capturingLogger();

  beforeAll(async () => {
    dir = await dataDir();
    pgPort = await freePort();
    natsPort = await freePort();
    infra = await resolveInfrastructure({
      dataDir: dir,
      env: { PATH: process.env.PATH, MESH_EMBEDDED_PG_PORT: String(pgPort), MESH_EMBEDDED_NATS_PORT: String(natsPort) },
      log,
      mode: "embedded",
      supervision: { baseDelayMs: 20, probeIntervalMs: 50 },
    });
    opened.push(infra);
  }, 180_000);

  it("restarts a nats-server killed with SIGKILL on its port, with its streams, and says so", async () => {
    const nc = await natsConnect({ servers: infra.nats.url });
    try {
      await (await jetstreamManager(nc)).streams.add({
        name: "SUPERVISED",
        subjects: ["supervised.>"],
        storage: StorageType.File,
      });
    } finally {
      await nc.close();
    }
    expect(await publish(infra.nats.url, "supervised.a")).toEqual({ stream: "SUPERVISED", seq: 1 });

    const pid = natsPid(lines);
    const from = lines.length;
    process.kill(pid, "SIGKILL");
    const died = await logged(lines, /^error embedded nats-server exited unexpectedly .*/, from);
    expect(died).toContain(`pid=${pid}`);
    expect(died).toContain("signal=SIGKILL");
    expect(died).toMatch(/ranForMs=\d+/);
    expect(died).toContain(`port=${natsPort}`);
    expect(died).toContain("restartInMs=20");
    const back = Number(await logged(lines, /^info {2}embedded nats-server is back pid=(\d+)/, from));
    expect(back).not.toBe(pid);
    expect(back).toBe(natsPid(lines));
    // Same port, same store: the stream is still there and takes the next message.
    expect(await publish(infra.nats.url, "supervised.b")).toEqual({ stream: "SUPERVISED", seq: 2 });
    expect(infra.status().find((s) => s.service === "nats-server")).toEqual({
      service: "nats-server",
      port: natsPort,
      owner: "started",
      state: "running",
      pid: back,
      restarts: 1,
    });

    // Killed again before it stayed up long (60 s by default): the delay doubles.
    const again = lines.length;
    process.kill(back, "SIGKILL");
    expect(await logged(lines, /^error embedded nats-server exited unexpectedly .*restartInMs=(\d+)/, again)).toBe(
      "40",
    );
    await logged(lines, /^info {2}embedded nats-server is back /, again);
    expect(await publish(infra.nats.url, "supervised.c")).toEqual({ stream: "SUPERVISED", seq: 3 });
    expect(infra.status().find((s) => s.service === "nats-server")?.restarts).toBe(2);
  }, 60_000);

  it("restarts a PostgreSQL killed with SIGKILL, with its data", async () => {
    await query(infra.database.url, "create table kept_rows (id int primary key, note text not null)");
    await query(infra.database.url, "insert into kept_rows values (1, 'before')");

    const pid = await postmasterPid(dir);
    const from = lines.length;
    process.kill(pid, "SIGKILL");
    const died = await logged(lines, /^error embedded postgres exited unexpectedly .*/, from);
    expect(died).toContain(`pid=${pid}`);
    expect(died).toContain("signal=SIGKILL");
    expect(died).toContain(`port=${pgPort}`);
    const back = Number(await logged(lines, /^info {2}embedded postgres is back pid=(\d+)/, from, 60_000));
    expect(back).not.toBe(pid);
    expect(await postmasterPid(dir)).toBe(back);
    expect(await query(infra.database.url, "select id, note from kept_rows")).toEqual([{ id: 1, note: "before" }]);
    await query(infra.database.url, "insert into kept_rows values (2, 'after')");
    expect(infra.status().find((s) => s.service === "postgres")).toEqual({
      service: "postgres",
      port: pgPort,
      owner: "started",
      state: "running",
      pid: back,
      restarts: 1,
    });
  }, 180_000);

  it("keeps retrying a PostgreSQL whose old server processes still hold its shared memory, until they are gone", async () => {
    // A backend that cannot notice its postmaster's death (stopped) keeps the old shared memory in
    // use: PostgreSQL refuses to start on the data directory until it is gone.
    const client = new pg.Client({ connectionString: infra.database.url });
    client.on("error", () => undefined);
    await client.connect();
    const backend = Number((await client.query("select pg_backend_pid() as pid")).rows[0]?.pid);
    process.kill(backend, "SIGSTOP");
    const from = lines.length;
    try {
      process.kill(await postmasterPid(dir), "SIGKILL");
      await eventually(() => (restartDelays(lines, "postgres", from).length >= 3 ? true : undefined), 60_000);
      const failed = await logged(lines, /^error embedded postgres failed to restart .*/, from);
      expect(failed).toContain("pre-existing shared memory block");
      expect(failed).toContain(`port=${pgPort}`);
      // Killed before it stayed up 60 s: the first delay continues from the last restart's (20 ms).
      expect(restartDelays(lines, "postgres", from).slice(0, 3)).toEqual([40, 80, 160]);
      expect(infra.status()[0]?.state).toBe("restarting");
    } finally {
      process.kill(backend, "SIGCONT");
    }
    await logged(lines, /^info {2}embedded postgres is back /, from, 60_000);
    expect(await query(infra.database.url, "select id from kept_rows order by id")).toEqual([{ id: 1 }, { id: 2 }]);
    expect(infra.status()[0]).toMatchObject({ state: "running", restarts: 2 });
    await client.end().catch(() => undefined);
  }, 180_000);

  it("stops them without restarting them and leaves no process; a process reusing them reports them gone", async () => {
    const reuser = capturingLogger();
    const second = await resolveInfrastructure({
      dataDir: dir,
      env: { PATH: process.env.PATH, MESH_EMBEDDED_PG_PORT: String(pgPort), MESH_EMBEDDED_NATS_PORT: String(natsPort) },
      log: reuser.log,
      mode: "embedded",
      supervision: { probeIntervalMs: 50 },
    });
    opened.push(second);
    expect(second.status()).toEqual([
      { service: "postgres", port: pgPort, owner: "reused", state: "running", restarts: 0 },
      { service: "nats-server", port: natsPort, owner: "reused", state: "running", restarts: 0 },
    ]);

    const postmaster = await postmasterPid(dir);
    const processes = [postmaster, ...childrenOf(postmaster), natsPid(lines)];
    expect(processes.length).toBeGreaterThan(2);
    const from = lines.length;
    await infra.stop();
    for (const pid of processes) expect(alive(pid), `process ${pid}`).toBe(false);
    expect(await answers(pgPort)).toBe(false);
    expect(await answers(natsPort)).toBe(false);
    expect(infra.status().map((s) => s.state)).toEqual(["stopped", "stopped"]);
    expect(lines.slice(from).filter((l) => /unexpectedly|restart|starting/.test(l))).toEqual([]);

    // The reusing process did not start them: it says they are gone, and leaves them down.
    await logged(reuser.lines, /^error embedded postgres \(run by another process\) stopped answering/);
    await logged(reuser.lines, /^error embedded nats-server \(run by another process\) stopped answering/);
    expect(second.status().map((s) => s.state)).toEqual(["down", "down"]);
    expect(reuser.lines.filter((l) => /^info {2}starting|is back/.test(l))).toEqual([]);
    expect(await answers(pgPort)).toBe(false);
    expect(await answers(natsPort)).toBe(false);
    await second.stop();
  }, 60_000);
});

describe("a nats-server that keeps failing to start", () => {
  it("backs off (doubling to the cap), comes back when it can, and stop() ends the retries", async () => {
    const dir = await dataDir();
    const natsPort = await freePort();
    const refuse = join(dir, "refuse");
    const real = execFileSync("sh", ["-c", "command -v nats-server"], {
      env: { PATH: `${process.env.PATH}:/usr/sbin:/usr/local/bin` },
      encoding: "utf8",
    }).trim();
    // Runs the real nats-server in its own place (exec keeps the pid), unless told to refuse.
    const wrapper = join(dir, "nats-server-wrapper");
    await writeFile(
      wrapper,
      `#!/bin/sh\nif [ -e '${refuse}' ]; then echo 'refusing to start' >&2; exit 3; fi\nexec '${real}' "$@"\n`,
    );
    await chmod(wrapper, 0o755);
    const { log, lines } = capturingLogger();
    const infra = await resolveInfrastructure({
      dataDir: dir,
      env: { DATABASE_URL: "postgres://postgres@127.0.0.1:5432/postgres", MESH_EMBEDDED_NATS_PORT: String(natsPort) },
      log,
      mode: "embedded",
      natsServerBinary: wrapper,
      supervision: { baseDelayMs: 20, maxDelayMs: 160, stableAfterMs: 1 },
    });
    opened.push(infra);
    expect(infra.status()).toEqual([
      { service: "nats-server", port: natsPort, owner: "started", state: "running", pid: natsPid(lines), restarts: 0 },
    ]);

    await writeFile(refuse, "");
    let from = lines.length;
    process.kill(natsPid(lines), "SIGKILL");
    await eventually(() => (restartDelays(lines, "nats-server", from).length >= 6 ? true : undefined), 30_000);
    const failed = await logged(lines, /^error embedded nats-server failed to restart .*/, from);
    expect(failed).toContain("exited (code 3)");
    expect(failed).toMatch(/attempt=\d+/);
    expect(restartDelays(lines, "nats-server", from).slice(0, 6)).toEqual([20, 40, 80, 160, 160, 160]);
    expect(infra.status()[0]?.state).toBe("restarting");
    expect(await answers(natsPort)).toBe(false);

    await unlink(refuse);
    const back = Number(await logged(lines, /^info {2}embedded nats-server is back pid=(\d+)/, from));
    expect(infra.status()[0]).toMatchObject({ state: "running", pid: back, restarts: 1 });

    // It stayed up longer than stableAfterMs (1 ms): the next death starts from the base delay again.
    from = lines.length;
    process.kill(back, "SIGKILL");
    expect(await logged(lines, /^error embedded nats-server exited unexpectedly .*restartInMs=(\d+)/, from)).toBe("20");
    await logged(lines, /^info {2}embedded nats-server is back /, from);

    // stop() while it waits to retry: no attempt after it, nothing left on the port.
    await writeFile(refuse, "");
    from = lines.length;
    process.kill(natsPid(lines), "SIGKILL");
    await logged(lines, /^error embedded nats-server failed to restart /, from);
    await infra.stop();
    const after = lines.length;
    expect(infra.status()[0]?.state).toBe("stopped");
    // Longer than several backoff delays (160 ms at most): any attempt would have been logged.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(lines.slice(after)).toEqual([]);
    expect(await answers(natsPort)).toBe(false);
  }, 60_000);
});

describe("Ctrl-C in the terminal of a process running embedded services", () => {
  it("reaches neither service: they keep serving until stop(), which is no crash", async () => {
    const dir = await dataDir();
    const pgPort = await freePort();
    const natsPort = await freePort();
    const script = join(dir, "host.ts");
    const lib = (p: string): string => JSON.stringify(pathToFileURL(join(root, p)).href);
    // A stand-in for `npm start`: on SIGINT it keeps running ("draining") until told to stop.
    await writeFile(
      script,
      [
        `import { resolveInfrastructure } from ${lib("lib/infra/index.ts")};`,
        `import { createLogger } from ${lib("lib/log/index.ts")};`,
        "const infra = await resolveInfrastructure({",
        "  dataDir: process.argv[2], log: createLogger('info'), mode: 'embedded', supervision: { baseDelayMs: 20 },",
        "});",
        "process.on('SIGINT', () => process.stdout.write('draining\\n'));",
        "process.on('message', async () => { await infra.stop(); process.exit(0); });",
        "process.stdout.write(JSON.stringify(infra.status()) + '\\n');",
      ].join("\n"),
    );
    const env = {
      ...process.env,
      MESH_EMBEDDED_PG_PORT: String(pgPort),
      MESH_EMBEDDED_NATS_PORT: String(natsPort),
    };
    // Its own process group, like a shell job: a terminal's Ctrl-C signals the whole group.
    const host: ChildProcess = spawn(process.execPath, [script, dir], {
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    let output = "";
    host.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    host.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((r) => host.once("exit", (code) => r(code)));
    try {
      const status = await eventually(() => /^\[.*\]$/m.exec(output)?.[0], 90_000).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${output}`);
      });
      const pids = (JSON.parse(status) as Array<{ pid?: number }>).map((s) => s.pid);
      expect(pids).toEqual([expect.any(Number), expect.any(Number)]);

      process.kill(-(host.pid as number), "SIGINT");
      await eventually(() => (output.includes("draining") ? true : undefined));
      const url = `postgres://postgres:${encodeURIComponent((await readFile(join(dir, "postgres.password"), "utf8")).trim())}@127.0.0.1:${pgPort}/mesh`;
      // Let a PostgreSQL that got the SIGINT finish its fast shutdown before looking.
      await new Promise((r) => setTimeout(r, 500));
      expect(await query(url, "select 1 as one")).toEqual([{ one: 1 }]);
      for (const pid of pids) expect(alive(pid as number), `process ${pid}`).toBe(true);

      host.send("stop");
      expect(await exited).toBe(0);
      for (const pid of pids) expect(alive(pid as number), `process ${pid}`).toBe(false);
      expect(await answers(pgPort)).toBe(false);
      expect(await answers(natsPort)).toBe(false);
      expect(output).not.toMatch(/unexpectedly|failed to restart|is back/);
    } finally {
      if (host.exitCode === null) {
        host.send("stop");
        await exited;
      }
    }
  }, 120_000);
});
