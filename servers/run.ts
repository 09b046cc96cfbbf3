/**
 * The composition root: runs one server binary as a process: loads configuration, wires telemetry, starts the server,
 * and drains on SIGTERM/SIGINT (NOT_SERVING, stop accepting, wait for in-flight calls, exit).
 *
 * Failures at start that a restart does not fix end the process with one line naming what to change
 * and no stack trace, and with an exit code `mesh start`'s supervisor does not restart
 * (startFailureExitCodes in lib/supervisor): 2 for invalid configuration or unavailable
 * infrastructure, 78 (EX_CONFIG) when the server's address cannot be bound.
 */
import net from "node:net";
import { ensureDevCredentials } from "../lib/auth/index.ts";
import { ConfigError, loadConfig, type ServerName } from "../lib/config/index.ts";
import { InfraError, resolveInfrastructure } from "../lib/infra/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { ListenError, listenAddress, startMeshServer } from "../lib/server/index.ts";
import { reportReady, startFailureExitCodes } from "../lib/supervisor/index.ts";
import { setupTelemetry } from "../lib/telemetry/index.ts";
import { meshModules } from "./modules.ts";

/** What is known of a failed bind: Node's error code and the address. */
type BindFailure = Pick<ListenError, "code" | "host" | "port">;

/**
 * Binds the server's address and releases it again, so a taken port fails in milliseconds, before
 * migrations run or an embedded database starts. Only a hint: whatever takes the port between this
 * and the real listen is reported the same way from there.
 */
async function probeAddress(host: string, port: number): Promise<BindFailure | undefined> {
  const probe = net.createServer();
  const failure = await new Promise<BindFailure | undefined>((resolve) => {
    probe.once("error", (err: NodeJS.ErrnoException) => resolve({ code: err.code ?? "EUNKNOWN", host, port }));
    probe.listen(port, host, () => resolve(undefined));
  });
  if (failure === undefined) await new Promise<void>((resolve) => probe.close(() => resolve()));
  return failure;
}

/** The one line telling the operator why `server` cannot listen and which setting to change. */
function bindFailureMessage(server: ServerName, failure: BindFailure, listenHostSet: boolean): string {
  const urlSetting = `MESH_${server.toUpperCase()}_URL`;
  const hostSetting = listenHostSet ? "MESH_LISTEN_HOST" : `the host of ${urlSetting} (or MESH_LISTEN_HOST)`;
  // The port always comes from the URL; the host too unless MESH_LISTEN_HOST overrides it.
  const hostNote = listenHostSet ? "; the host is MESH_LISTEN_HOST's" : "";
  let why: string;
  switch (failure.code) {
    case "EADDRINUSE":
      why = `the address is in use (set ${urlSetting} to another port, or stop what holds it${hostNote})`;
      break;
    case "EACCES":
      why = `permission denied (set ${urlSetting} to use a port above 1024, or run with the privilege to bind it${hostNote})`;
      break;
    case "EADDRNOTAVAIL":
      why = `the address is not one of this machine's (set ${hostSetting} to a local address such as 127.0.0.1)`;
      break;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      why = `the host name does not resolve (set ${hostSetting} to an address or a name that resolves)`;
      break;
    default:
      why = `${failure.code} (check ${urlSetting}${listenHostSet ? " and MESH_LISTEN_HOST" : ""})`;
  }
  return `${server} server cannot listen on ${failure.host}:${failure.port}: ${why}`;
}

/** Starts `server` in this process and keeps it running until a signal stops it. */
export async function runServer(server: ServerName): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(startFailureExitCodes.config);
    }
    throw err;
  }
  // The address startMeshServer binds, checked before anything is opened.
  const listenHostSet = config.listenHost !== undefined;
  const { host, port } = listenAddress(config.serverUrls[server], config.listenHost);
  const probed = await probeAddress(host, port);
  if (probed !== undefined) {
    process.stderr.write(`${bindFailureMessage(server, probed, listenHostSet)}\n`);
    process.exit(startFailureExitCodes.listen);
  }
  const log = createLogger(config.logLevel);
  if (ensureDevCredentials(config.dataDir, config.authFile)) {
    log.info("created dev credentials", { dir: config.dataDir });
  }
  const telemetry = setupTelemetry({
    serviceName: `mesh-${server}`,
    otlpEndpoint: config.otlpEndpoint,
    memorySpans: config.otlpEndpoint === undefined,
  });
  // Servers started by `mesh start` get the URLs the supervisor resolved; a lone server finds (or
  // starts) PostgreSQL and NATS itself.
  let infra: Awaited<ReturnType<typeof resolveInfrastructure>> | undefined;
  if (config.databaseUrl === undefined || config.natsUrl === undefined) {
    try {
      infra = await resolveInfrastructure({ dataDir: config.dataDir, log, mode: config.infraMode });
    } catch (err) {
      if (err instanceof InfraError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(startFailureExitCodes.config);
      }
      throw err;
    }
    config = { ...config, databaseUrl: infra.database.url, natsUrl: infra.nats.url };
  }
  let mesh: Awaited<ReturnType<typeof startMeshServer>>;
  try {
    mesh = await startMeshServer({ server, config, modules: meshModules, log });
  } catch (err) {
    if (!(err instanceof ListenError)) throw err;
    const failure = err;
    // startMeshServer leaves what it opened before listening (database pools, NATS, outbox relays,
    // agent workers) open and out of reach, and they would keep the process alive: stop what this
    // function started (embedded infrastructure, telemetry), for a bounded time, and exit, which
    // closes the rest. The line comes last so it is the last thing the operator (and the supervisor) sees.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([infra?.stop(), telemetry.shutdown()]),
      new Promise((r) => {
        timer = setTimeout(r, 5000);
      }),
    ]);
    clearTimeout(timer);
    process.stderr.write(`${bindFailureMessage(server, failure, listenHostSet)}\n`);
    process.exit(startFailureExitCodes.listen);
  }
  // Tells `mesh start` this server came up, so a later exit is a crash to recover from.
  reportReady();
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info("draining", { signal, inFlight: mesh.inFlight(), graceMs: config.shutdownGraceMs });
    await mesh.close();
    await infra?.stop();
    await telemetry.shutdown();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
