import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as natsConnect } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger, type Logger } from "../log/index.ts";
import { InfraError, type Infrastructure, resolveInfrastructure } from "./index.ts";

const dirs: string[] = [];
const started: Infrastructure[] = [];

afterAll(async () => {
  await Promise.allSettled(started.map((infra) => infra.stop()));
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mesh-infra-"));
  dirs.push(dir);
  return dir;
}

/** Ports nothing listens on (the OS picks them; they are released before use). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once("error", reject);
          server.listen(0, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger("debug", (line) => lines.push(line)), lines };
}

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

/** The JSON of the INFO line the NATS server at `url` greets clients with; rejects when none. */
function natsInfo(url: string): Promise<Record<string, unknown>> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let buffer = "";
    const socket = tcpConnect({ host: hostname, port: Number(port) });
    socket.setTimeout(2_000, () => socket.destroy(new Error("timed out")));
    socket.on("error", reject);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\r\n");
      if (end < 0) return;
      socket.destroy();
      const line = buffer.slice(0, end);
      if (!line.startsWith("INFO ")) reject(new Error(`unexpected greeting ${line}`));
      else resolve(JSON.parse(line.slice(5)) as Record<string, unknown>);
    });
  });
}

/** Whether anything accepts TCP connections on 127.0.0.1:`port`. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/** The InfraError `promise` rejects with (fails the test if it resolves or rejects otherwise). */
async function infraError(promise: Promise<Infrastructure>): Promise<InfraError> {
  const err = await promise.then(
    (infra) => {
      started.push(infra);
      throw new Error("expected an InfraError");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InfraError);
  return err as InfraError;
}

describe("resolveInfrastructure", () => {
  it("finds the machine's local PostgreSQL and NATS in auto mode", async () => {
    const { log, lines } = capturingLogger();
    const infra = await resolveInfrastructure({ dataDir: await dataDir(), env: { PATH: process.env.PATH }, log });
    started.push(infra);
    expect(infra.database).toEqual({ url: "postgres://postgres@127.0.0.1:5432/mesh", source: "local" });
    expect(infra.nats).toEqual({ url: "nats://127.0.0.1:4222", source: "local" });
    expect(await query(infra.database.url, "select 1 as one")).toEqual([{ one: 1 }]);
    expect((await natsInfo(infra.nats.url)).jetstream).toBe(true);
    expect(lines).toContain("info  postgres url=postgres://postgres@127.0.0.1:5432/mesh source=local\n");
    expect(lines).toContain("info  nats url=nats://127.0.0.1:4222 source=local\n");
    await infra.stop();
  });

  it("uses DATABASE_URL and NATS_URL verbatim, without probing, and masks their secrets in logs", async () => {
    const { log, lines } = capturingLogger();
    const env = {
      DATABASE_URL: "postgres://app:s3cret@db.invalid:6543/marketing?sslmode=require",
      NATS_URL: "nats://tok3n@nats.invalid:4333",
      MESH_INFRA: "external",
    };
    const infra = await resolveInfrastructure({ dataDir: await dataDir(), env, log });
    expect(infra.database).toEqual({ url: env.DATABASE_URL, source: "configured" });
    expect(infra.nats).toEqual({ url: env.NATS_URL, source: "configured" });
    await infra.stop();
    const output = lines.join("");
    expect(output).not.toContain("s3cret");
    expect(output).not.toContain("tok3n");
    // (The logger quotes values containing "=".)
    expect(output).toContain('url="postgres://app:***@db.invalid:6543/marketing?sslmode=require" source=configured');
    expect(output).toContain("url=nats://***@nats.invalid:4333 source=configured");
  });

  it("starts embedded PostgreSQL and nats-server, reuses them, and stops only what it started", async () => {
    const dir = await dataDir();
    const [pgPort, natsPort] = await freePorts(2);
    if (pgPort === undefined || natsPort === undefined) throw new Error("no ports");
    const env = {
      PATH: process.env.PATH,
      MESH_EMBEDDED_PG_PORT: String(pgPort),
      MESH_EMBEDDED_NATS_PORT: String(natsPort),
    };
    const { log, lines } = capturingLogger();

    const first = await resolveInfrastructure({ dataDir: dir, env, log, mode: "embedded" });
    started.push(first);
    expect(first.database.source).toBe("embedded");
    expect(first.database.url).toMatch(new RegExp(`^postgres://postgres:[^@]+@127\\.0\\.0\\.1:${pgPort}/mesh$`));
    expect(first.nats).toEqual({ url: `nats://127.0.0.1:${natsPort}`, source: "embedded" });
    const [version] = await query(first.database.url, "select version() as v");
    expect(String(version?.v)).toMatch(/^PostgreSQL 18\./);
    await query(first.database.url, "create table kept (id int)");
    expect((await natsInfo(first.nats.url)).jetstream).toBe(true);
    const nc = await natsConnect({ servers: first.nats.url });
    try {
      const account = await (await jetstreamManager(nc)).getAccountInfo();
      expect(account.streams).toBe(0);
    } finally {
      await nc.close();
    }

    const password = (await readFile(join(dir, "postgres.password"), "utf8")).trim();
    expect((await stat(join(dir, "postgres.password"))).mode & 0o777).toBe(0o600);
    expect(first.database.url).toContain(`:${password}@`);
    expect(lines.join("")).not.toContain(password);

    const second = await resolveInfrastructure({ dataDir: dir, env, log, mode: "embedded" });
    started.push(second);
    expect(second.database).toEqual(first.database);
    expect(second.nats).toEqual(first.nats);
    expect(lines.some((l) => l.startsWith("info  reusing running embedded postgres"))).toBe(true);
    expect(lines.some((l) => l.startsWith("info  reusing running embedded nats-server"))).toBe(true);
    await second.stop();
    expect(await answers(pgPort)).toBe(true);
    expect(await answers(natsPort)).toBe(true);

    await first.stop();
    await first.stop();
    expect(await answers(pgPort)).toBe(false);
    expect(await answers(natsPort)).toBe(false);

    // A restart keeps the cluster: no second initdb, the table is still there.
    lines.length = 0;
    const third = await resolveInfrastructure({ dataDir: dir, env, log, mode: "embedded" });
    started.push(third);
    expect(third.database.url).toBe(first.database.url);
    expect(lines.some((l) => l.includes("initialising embedded postgres"))).toBe(false);
    expect(await query(third.database.url, "select count(*)::int as n from kept")).toEqual([{ n: 0 }]);
    await third.stop();
    expect(await answers(pgPort)).toBe(false);
    expect(await answers(natsPort)).toBe(false);
  }, 60_000);

  it("fails in external mode when nothing answers, naming what to install or set", async () => {
    const [pgPort, natsPort] = await freePorts(2);
    const env = {
      PATH: "/nonexistent",
      MESH_LOCAL_PG_URL: `postgres://postgres@127.0.0.1:${pgPort}/`,
      MESH_LOCAL_NATS_URL: `nats://127.0.0.1:${natsPort}`,
    };
    const err = await infraError(
      resolveInfrastructure({ dataDir: await dataDir(), env, log: createLogger("error"), mode: "external" }),
    );
    expect(err.message).toContain(`nothing answers at postgres://postgres@127.0.0.1:${pgPort}/`);
    expect(err.message).toContain("Set DATABASE_URL");
    expect(err.message).toContain("apt-get install postgresql");
    expect(err.message).toContain(`nothing answers at nats://127.0.0.1:${natsPort}`);
    expect(err.message).toContain("Set NATS_URL");
    expect(err.message).toContain("apt-get install nats-server");
  });

  it("fails in embedded mode without a nats-server binary, saying how to install one", async () => {
    const [natsPort] = await freePorts(1);
    const env = {
      PATH: "/nonexistent",
      DATABASE_URL: "postgres://postgres@db.invalid/mesh",
      MESH_EMBEDDED_NATS_PORT: String(natsPort),
    };
    const opts = { dataDir: await dataDir(), env, log: createLogger("error"), mode: "embedded" as const };
    const missing = await infraError(resolveInfrastructure({ ...opts, natsServerBinary: null }));
    expect(missing.message).toContain("apt-get install nats-server");
    expect(missing.message).toContain("NATS_URL");

    const wrong = await infraError(
      resolveInfrastructure({ ...opts, env: { ...env, MESH_NATS_SERVER_BIN: "/nonexistent/nats-server" } }),
    );
    expect(wrong.message).toContain("MESH_NATS_SERVER_BIN");
  });

  it("rejects invalid settings naming the variable", async () => {
    const opts = { dataDir: await dataDir(), log: createLogger("error") };
    const mode = await infraError(resolveInfrastructure({ ...opts, env: { MESH_INFRA: "cloud" } }));
    expect(mode.message).toContain("MESH_INFRA");
    const port = await infraError(resolveInfrastructure({ ...opts, env: { MESH_EMBEDDED_PG_PORT: "70000" } }));
    expect(port.message).toContain("MESH_EMBEDDED_PG_PORT");
    const url = await infraError(resolveInfrastructure({ ...opts, env: { MESH_LOCAL_NATS_URL: "127.0.0.1:4222" } }));
    expect(url.message).toContain("MESH_LOCAL_NATS_URL");
  });
});
