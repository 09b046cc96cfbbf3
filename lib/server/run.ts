/**
 * Runs one server binary as a process: loads configuration, wires telemetry, starts the server,
 * and drains on SIGTERM/SIGINT (NOT_SERVING, stop accepting, wait for in-flight calls, exit).
 */
import { agentModules } from "../../agents/index.ts";
import { createDirectoryService } from "../../agents/seo/pages/directory-service.ts";
import { createVisitorRoutes, type VisitorCity } from "../../agents/seo/pages/visitors.ts";
import { loadGeoNamesCities, selectCities } from "../../directory/index.ts";
import { DirectoryService } from "../../gen/mesh/directory/v1/directory_service_pb.ts";
import { WorkflowService } from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { loadWorkflows } from "../../workflows/index.ts";
import { ensureDevCredentials } from "../auth/index.ts";
import { ConfigError, loadConfig, type ServerName } from "../config/index.ts";
import { InfraError, resolveInfrastructure } from "../infra/index.ts";
import { createLogger } from "../log/index.ts";
import { setupTelemetry } from "../telemetry/sdk.ts";
import { createEngine } from "../workflow/engine.ts";
import { createWorkflowService } from "../workflow/service.ts";
import { type HostContext, type HostedService, startMeshServer } from "./server.ts";

/** DirectoryService runs where the SEO agent is placed, on the SEO agent's database. */
function directoryServices(server: ServerName, ctx: HostContext): HostedService[] {
  if (ctx.config.placement.seo !== server) return [];
  const db = ctx.backbone.databaseOf("seo");
  const impl = createDirectoryService({
    db,
    client: ctx.client,
    log: ctx.log,
    siteDir: ctx.config.siteDir,
    siteOrigin: ctx.config.siteOrigin,
  });
  return [{ service: DirectoryService, impl }];
}

/** The directory's site and visitor endpoints are served where the SEO agent is placed. */
function directoryRoutes(server: ServerName, ctx: HostContext) {
  if (ctx.config.placement.seo !== server) return [];
  let cities: Promise<ReadonlyMap<string, VisitorCity>> | undefined;
  return createVisitorRoutes({
    client: ctx.client,
    log: ctx.log,
    siteDir: ctx.config.siteDir,
    cities: () => {
      cities ??= Promise.resolve(
        new Map(selectCities(loadGeoNamesCities()).map((c) => [c.id, { name: c.name, stateCode: c.stateCode }])),
      );
      return cities;
    },
  });
}

/** The workflow engine runs where the System agent is placed (the technical server by default). */
async function workflowServices(server: ServerName, ctx: HostContext): Promise<HostedService[]> {
  if (ctx.config.placement.system !== server) return [];
  const db = ctx.backbone.databaseOf("system");
  const engine = createEngine({
    db,
    bus: ctx.backbone.bus,
    client: ctx.client,
    workflows: await loadWorkflows(ctx.config.workflowModules),
    log: ctx.log,
    tickMs: ctx.config.workflowTickMs,
    ackWaitMs: ctx.config.workflowAckWaitMs,
  });
  await engine.start();
  return [
    { service: WorkflowService, impl: createWorkflowService(engine, ctx.backbone.bus), stop: () => engine.stop(), db },
  ];
}

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
    modules: agentModules,
    log,
    extraServices: async (ctx) => [...(await workflowServices(server, ctx)), ...directoryServices(server, ctx)],
    httpRoutes: (ctx) => directoryRoutes(server, ctx),
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
