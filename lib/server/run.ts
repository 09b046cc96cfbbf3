/**
 * Runs one server binary as a process: loads configuration, wires telemetry, starts the server,
 * and drains on SIGTERM/SIGINT (NOT_SERVING, stop accepting, wait for in-flight calls, exit).
 */
import { agentModules } from "../../agents/index.ts";
import { ensureDevCredentials } from "../auth/index.ts";
import { ConfigError, loadConfig, type ServerName } from "../config/index.ts";
import { createLogger } from "../log/index.ts";
import { setupTelemetry } from "../telemetry/sdk.ts";
import { startMeshServer } from "./server.ts";

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
  const mesh = await startMeshServer({ server, config, modules: agentModules, log });
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info("draining", { signal, inFlight: mesh.inFlight(), graceMs: config.shutdownGraceMs });
    await mesh.close();
    await telemetry.shutdown();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
