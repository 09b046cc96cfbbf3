/**
 * A server that cannot bind its address ends at once with exit code 78 (EX_CONFIG) and one line
 * naming the setting to change, without a stack trace, whether the port is taken before it starts
 * or while it opens its databases; and `mesh start` does not restart such a server in a loop but
 * says why, stops the other servers and exits with that code.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chownSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connectBus } from "../lib/bus/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { startFailureExitCodes } from "../lib/supervisor/index.ts";
import { deleteStreams, isolatedDatabase, natsUrl, uniqueName } from "./support/backbone.ts";
import { freePort, root } from "./support/harness.ts";

/** Output and exit of a finished process. */
interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const spawned = new Set<ChildProcess>();

/** Runs `args` with node until it exits; kills it and fails if it is still running after `limitMs`. */
function runNode(args: string[], env: Record<string, string>, limitMs: number, ids?: { uid: number; gid: number }) {
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"], ...ids });
  spawned.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise<Finished>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`still running after ${limitMs} ms:\n${stdout}\n${stderr}`));
    }, limitMs);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      spawned.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A plain TCP server holding a loopback port, as another program would. */
async function occupy(port = 0): Promise<net.Server> {
  const holder = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve, reject) => {
    holder.once("error", reject);
    holder.listen(port, "127.0.0.1", resolve);
  });
  return holder;
}

const portOf = (srv: net.Server): number => (srv.address() as net.AddressInfo).port;
const close = (srv: net.Server): Promise<void> => new Promise((r) => srv.close(() => r()));
const stackFrame = /^\s+at /m;

describe("a server whose address cannot be bound", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "mesh-startup-"));
  const natsPrefix = uniqueName("t");
  const holders: net.Server[] = [];
  let database: Awaited<ReturnType<typeof isolatedDatabase>>;
  let env: Record<string, string>;

  beforeAll(async () => {
    database = await isolatedDatabase();
    env = { ...(process.env as Record<string, string>) };
    for (const k of ["OTEL_EXPORTER_OTLP_ENDPOINT", "MESH_PLACEMENT", "MESH_LISTEN_HOST"]) delete env[k];
    Object.assign(env, {
      MESH_ROOT: root,
      MESH_DATA_DIR: dataDir,
      // Never start an embedded PostgreSQL or NATS, whatever happens.
      MESH_INFRA: "external",
      DATABASE_URL: database.url,
      NATS_URL: natsUrl,
      MESH_NATS_PREFIX: natsPrefix,
      MESH_SHUTDOWN_GRACE_MS: "2000",
      MESH_CONTENT_URL: `http://127.0.0.1:${await freePort()}`,
      MESH_OPERATIONS_URL: `http://127.0.0.1:${await freePort()}`,
      MESH_TECHNICAL_URL: `http://127.0.0.1:${await freePort()}`,
    });
  });

  afterEach(async () => {
    for (const c of spawned) c.kill("SIGKILL");
    for (const h of holders.splice(0)) await close(h);
  });

  afterAll(async () => {
    const bus = await connectBus({
      url: natsUrl,
      prefix: natsPrefix,
      name: "startup-test",
      log: createLogger("error"),
    });
    await deleteStreams(bus);
    await bus.close();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("exits with 78 and one line naming MESH_CONTENT_URL when the port is taken before it starts", async () => {
    const holder = await occupy();
    holders.push(holder);
    const port = portOf(holder);
    const r = await runNode(
      [join(root, "servers", "content", "main.ts")],
      { ...env, MESH_CONTENT_URL: `http://127.0.0.1:${port}` },
      30_000,
    );
    expect(r.code).toBe(startFailureExitCodes.listen);
    expect(r.stderr).toBe(
      `content server cannot listen on 127.0.0.1:${port}: the address is in use (set MESH_CONTENT_URL to another port, or stop what holds it)\n`,
    );
    expect(r.stderr).not.toMatch(stackFrame);
  });

  it("names MESH_LISTEN_HOST too when the host comes from it", async () => {
    const holder = await occupy();
    holders.push(holder);
    const port = portOf(holder);
    const r = await runNode(
      [join(root, "servers", "operations", "main.ts")],
      { ...env, MESH_OPERATIONS_URL: `http://localhost:${port}`, MESH_LISTEN_HOST: "127.0.0.1" },
      30_000,
    );
    expect(r.code).toBe(startFailureExitCodes.listen);
    expect(r.stderr.trim().split("\n")).toEqual([
      `operations server cannot listen on 127.0.0.1:${port}: the address is in use (set MESH_OPERATIONS_URL to another port, or stop what holds it; the host is MESH_LISTEN_HOST's)`,
    ]);
  });

  it("exits with 78, promptly, when the port is taken while it opens its databases and bus", async () => {
    // The server checks its port first, then connects to NATS: a proxy in front of NATS takes the
    // port when that connection arrives, so the bind fails at listen, after pools, the bus, relays
    // and agent workers are open.
    const port = await freePort();
    const nats = new URL(natsUrl);
    let taken: Promise<void> | undefined;
    const proxy = net.createServer((socket) => {
      socket.pause();
      taken ??= occupy(port).then((h) => {
        holders.push(h);
      });
      void taken.then(() => {
        const upstream = net.connect(Number(nats.port), nats.hostname);
        socket.pipe(upstream).pipe(socket);
        socket.resume();
        const end = () => {
          socket.destroy();
          upstream.destroy();
        };
        socket.once("close", end);
        upstream.once("close", end);
        upstream.once("error", end);
        socket.once("error", end);
      });
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    holders.push(proxy);
    const r = await runNode(
      [join(root, "servers", "content", "main.ts")],
      {
        ...env,
        MESH_CONTENT_URL: `http://127.0.0.1:${port}`,
        NATS_URL: `nats://127.0.0.1:${portOf(proxy)}`,
      },
      60_000,
    );
    expect(taken).toBeDefined();
    expect(r.code).toBe(startFailureExitCodes.listen);
    expect(r.stderr).not.toMatch(stackFrame);
    const lines = r.stderr.trim().split("\n");
    expect(lines.at(-1)).toBe(
      `content server cannot listen on 127.0.0.1:${port}: the address is in use (set MESH_CONTENT_URL to another port, or stop what holds it)`,
    );
    // It got as far as opening its database (the proxy did not fail it earlier).
    expect(r.stderr).toMatch(/migrated schema=content/);
  });

  it("exits with 78 and says to use a port above 1024 when it may not bind a low port", async (ctx) => {
    // Root may bind any port, so the server runs as nobody then.
    const root0 = process.getuid?.() === 0;
    const unprivilegedStart = Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8"));
    if (!root0 && unprivilegedStart <= 1023) ctx.skip();
    const ids = root0 ? { uid: 65534, gid: 65534 } : undefined;
    const ownDir = mkdtempSync(join(tmpdir(), "mesh-startup-eacces-"));
    if (ids) chownSync(ownDir, ids.uid, ids.gid);
    try {
      const r = await runNode(
        [join(root, "servers", "content", "main.ts")],
        { ...env, MESH_DATA_DIR: ownDir, HOME: ownDir, MESH_CONTENT_URL: "http://127.0.0.1:1023" },
        30_000,
        ids,
      );
      expect(r.code).toBe(startFailureExitCodes.listen);
      expect(r.stderr).toBe(
        "content server cannot listen on 127.0.0.1:1023: permission denied (set MESH_CONTENT_URL to use a port above 1024, or run with the privilege to bind it)\n",
      );
    } finally {
      rmSync(ownDir, { recursive: true, force: true });
    }
  });

  it("is not restarted in a loop by mesh start, which says why, stops the others and exits with 78", async () => {
    const holder = await occupy();
    holders.push(holder);
    const port = portOf(holder);
    const r = await runNode(
      [join(root, "bin", "mesh.ts"), "start"],
      { ...env, MESH_CONTENT_URL: `http://127.0.0.1:${port}` },
      90_000,
    );
    const output = r.stdout + r.stderr;
    expect(r.code, output).toBe(startFailureExitCodes.listen);
    // Each start of the content server prints this line once: it was started exactly once.
    const attempts = output.split("\n").filter((l) => /^\[content\s*\] content server cannot listen/.test(l));
    expect(attempts, output).toHaveLength(1);
    expect(r.stderr).toContain(
      `supervisor: content failed to start with exit code 78, which a restart does not fix (content server cannot listen on 127.0.0.1:${port}: the address is in use (set MESH_CONTENT_URL to another port, or stop what holds it)); not restarting it`,
    );
    expect(output).not.toMatch(/restarting in/);
    expect(output).toMatch(/stopping (operations, technical|technical, operations) \(content could not start\)/);
    expect(output).not.toMatch(stackFrame);
  }, 120_000);
});
