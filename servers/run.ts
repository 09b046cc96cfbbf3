/**
 * The composition root: runs one server binary as a process: loads configuration, wires telemetry, starts the server,
 * and drains on SIGTERM/SIGINT (NOT_SERVING, stop accepting, wait for in-flight calls, exit).
 */
import { ensureDevCredentials } from "../lib/auth/index.ts";
import { ConfigError, loadConfig, type ServerName } from "../lib/config/index.ts";
import { InfraError, resolveInfrastructure } from "../lib/infra/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { startMeshServer } from "../lib/server/index.ts";
import { setupTelemetry } from "../lib/telemetry/index.ts";
import { meshModules } from "./modules.ts";

/** Starts `server` in this process and keeps it running until a signal stops it. */
export async function runServer(server: ServerName): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
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
        process.exit(2);
      }
      throw err;
    }
    config = { ...config, databaseUrl: infra.database.url, natsUrl: infra.nats.url };
  }
  const mesh = await startMeshServer({
    server,
    config,
    modules: meshModules,
    log,
  });
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
