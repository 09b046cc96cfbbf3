/**
 * A mesh server: hosts the agents placed on it, plus RegistryService, grpc.health.v1 and gRPC
 * reflection, on one port serving Connect, gRPC and gRPC-Web. Drains gracefully on close().
 */
import type http from "node:http";
import { createRegistry, type DescFile } from "@bufbuild/protobuf";
import { type ConnectRouter, createContextValues, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { file_grpc_health_v1_health, Health } from "../../gen/grpc/health/v1/health_pb.ts";
import { file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { file_grpc_reflection_v1alpha_reflection } from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import {
  file_mesh_registry_v1_registry_service,
  RegistryService,
} from "../../gen/mesh/registry/v1/registry_service_pb.ts";
import { type Authenticator, loadAuthenticator, readToken } from "../auth/index.ts";
import { claimNodeId } from "../cache/index.ts";
import { type MeshConfig, type ServerName, tlsFilesFor } from "../config/index.ts";
import { type Database, outsideUnitOfWork } from "../db/index.ts";
import { createLogger, type Logger } from "../log/index.ts";
import {
  agentCard,
  type Catalog,
  createCatalog,
  createRegistryService,
  type RegistryContext,
  serverCard,
  withDependencies,
} from "../registry/index.ts";
import { createServerTracingInterceptor } from "../telemetry/index.ts";
import { createMeshClient, type MeshClient } from "../transport/index.ts";
import { RequestMemoryBudget } from "./admission.ts";
import type { AgentDeps, AgentModule, HostedService, MeshModule, ModuleParts } from "./agent.ts";
import { type Backbone, openBackbone } from "./backbone.ts";
import { meshNodeAdapter, strictJsonOptions } from "./bad-input.ts";
import { watchDependencies } from "./dependencies.ts";
import { startEverywhere } from "./everywhere.ts";
import { createHealthRegistry, type HealthRegistry, type ServingStatus } from "./health.ts";
import type { HttpRequest, HttpResponse, HttpRoute } from "./http.ts";
import { createIdempotencyInterceptor, withReplays } from "./idempotency.ts";
import {
  createAuthInterceptor,
  createErrorInterceptor,
  createRateLimitInterceptor,
  createScopeInterceptor,
  peerKey,
} from "./interceptors.ts";
import { type Handler, type Listener, listen, listenAddress } from "./listener.ts";
import {
  createReflectionIndex,
  createReflectionV1,
  createReflectionV1Alpha,
  ReflectionV1,
  ReflectionV1Alpha,
} from "./reflection.ts";
import { createRefusalRecorder } from "./refusals.ts";
import { createValidationInterceptor } from "./validate.ts";

const version = "0.1.0";

/** True for an agent's module (as opposed to a product placed with one). */
function isAgentModule(m: MeshModule): m is AgentModule {
  return "service" in m && "implemented" in m;
}

/** Options of {@link startMeshServer}. */
export interface MeshServerOptions {
  /** Which server binary this is. */
  server: ServerName;
  /** Loaded configuration. */
  config: MeshConfig;
  /**
   * Every module of the build (agents and the products placed with them); the server hosts those
   * placed on it and composes each schema it opens from the tables of all modules whose domain it is.
   */
  modules: readonly MeshModule[];
  /** Logger. */
  log?: Logger;
  /** Catalog (default: from the generated descriptors). */
  catalog?: Catalog;
  /** Authenticator (default: from the auth file). */
  authenticator?: Authenticator;
  /** Outbound client (default: one built from the configuration with this server's token). */
  client?: MeshClient;
  /** Port to bind instead of the configured URL's (0 = any free port). */
  port?: number;
  /** Databases and bus (default: opened from the configuration, closed with the server). */
  backbone?: Backbone;
}

/** A running mesh server. */
export interface MeshServer {
  /** Server name. */
  name: ServerName;
  /** Bound port. */
  port: number;
  /** Agents hosted here. */
  agents: string[];
  /** Health registry. */
  health: HealthRegistry;
  /** Outbound client of this server. */
  client: MeshClient;
  /** Databases and bus. */
  backbone: Backbone;
  /** Calls in flight right now. */
  inFlight(): number;
  /** Drains: NOT_SERVING, stop accepting, wait for in-flight calls up to `graceMs`, then close. */
  close(graceMs?: number): Promise<void>;
}

const publicServices = new Set([
  Health.typeName,
  ReflectionV1.typeName,
  ReflectionV1Alpha.typeName,
  RegistryService.typeName,
]);

/** Starts a mesh server. */
export async function startMeshServer(opts: MeshServerOptions): Promise<MeshServer> {
  const { config, server } = opts;
  const log = opts.log ?? createLogger(config.logLevel);
  const catalog = opts.catalog ?? createCatalog();
  const authenticator = opts.authenticator ?? loadAuthenticator(config.authFile);
  const tls = tlsFilesFor(config.tls, server);
  const client =
    opts.client ??
    createMeshClient({
      identity: server,
      token: readToken(config.dataDir, server, config.token),
      serverUrls: config.serverUrls,
      placement: config.placement,
      catalog,
      protocol: config.clientProtocol,
      caFile: tls?.ca,
      defaultTimeoutMs: config.defaultTimeoutMs,
      retry: config.retry,
      breaker: config.breaker,
      handoffBudgetMs: config.handoffBudgetMs,
      maxMessageBytes: config.maxMessageBytes,
    });

  const hosted = opts.modules.filter((m) => config.placement[m.placedWith] === server);
  const agentModules = opts.modules.filter(isAgentModule);
  for (const a of catalog.agents) {
    if (config.placement[a.id] === server && !agentModules.some((m) => m.id === a.id)) {
      throw new Error(`agent ${a.id} is placed on ${server} but no module implements it`);
    }
  }
  const implemented = new Set(
    agentModules.flatMap((m) => m.implemented.map((name) => `${m.service.typeName}/${name}`)),
  );
  const registryCtx: RegistryContext = {
    catalog,
    placement: config.placement,
    serverUrls: config.serverUrls,
    implemented,
  };
  const backbone =
    opts.backbone ??
    (await openBackbone({
      config,
      server,
      agents: [...new Set(hosted.map((m) => m.placedWith))],
      modules: opts.modules,
      catalog,
      log,
    }));
  // MESH_NODE_ID, else a slot claimed in the data directory (unique per instance, kept across restarts).
  const nodeClaim = config.nodeId === undefined ? claimNodeId({ dataDir: config.dataDir, server }) : undefined;
  const nodeId = config.nodeId ?? (nodeClaim?.nodeId as string);
  const services: HostedService[] = [];
  const httpRoutes: HttpRoute[] = [];
  const started: ModuleParts[] = [];
  const dbOfService = new Map<string, Database>();
  /** Procedures whose skills keep their own transactions (HostedService.selfTransacted). */
  const selfTransacted = new Set<string>();
  // What modules bring to every server (the System agent's retry policies), before any module consumes or calls.
  const everywhere = await startEverywhere(
    opts.modules,
    { client, catalog, log, now: () => new Date(), bus: backbone.bus, config, server, nodeId },
    backbone,
  );
  for (const m of hosted) {
    const db = backbone.databaseOf(m.placedWith);
    const deps: AgentDeps = {
      client,
      catalog,
      log,
      now: () => new Date(),
      db,
      bus: backbone.bus,
      config,
      server,
      nodeId,
    };
    const parts = await m.start(deps);
    started.push(parts);
    for (const s of parts.services ?? []) {
      services.push(s);
      if (s.idempotent) dbOfService.set(s.service.typeName, db);
      for (const name of s.selfTransacted ?? []) selfTransacted.add(`${s.service.typeName}/${name}`);
    }
    httpRoutes.push(...(parts.routes ?? []));
  }

  let listening = false;
  const dependencies = watchDependencies({
    databases: backbone.databases,
    bus: backbone.bus,
    log,
    // The server as a whole is SERVING only while its database(s) and NATS are reachable.
    onChange: () => {
      if (listening) health.set("", dependencies.allServing() ? "SERVING" : "NOT_SERVING");
    },
  });
  const health = createHealthRegistry(() => {
    const out: Record<string, ServingStatus> = { ...dependencies.statuses() };
    for (const [peer, state] of Object.entries(client.breakerStates())) {
      out[`mesh.peer.${peer}`] = state === "open" ? "NOT_SERVING" : "SERVING";
    }
    return out;
  });
  // Every contract's messages can travel inside google.protobuf.Any (workflow inputs, step outputs
  // are other servers' responses), so JSON and reflection resolve all of them, not only the types of
  // the services hosted here.
  const anyTypeFiles: DescFile[] = [
    ...catalog.files,
    ...services.map((s) => s.service.file),
    ...started.flatMap((p) => p.typeFiles ?? []),
  ];
  const typeRegistry = createRegistry(...withDependencies(...anyTypeFiles));
  const reflectionIndex = createReflectionIndex(
    [
      ...anyTypeFiles,
      file_mesh_registry_v1_registry_service,
      file_grpc_health_v1_health,
      file_grpc_reflection_v1_reflection,
      file_grpc_reflection_v1alpha_reflection,
    ],
    [
      ...services.map((s) => s.service.typeName),
      RegistryService.typeName,
      Health.typeName,
      ReflectionV1.typeName,
      ReflectionV1Alpha.typeName,
    ],
  );

  const skillOf = (procedure: string): string | undefined => catalog.skillByProcedure.get(procedure)?.id;
  const inflight = { n: 0 };
  const routes = (router: ConnectRouter): void => {
    for (const s of services) {
      const guarded = dbOfService.has(s.service.typeName);
      router.service(s.service, (guarded ? withReplays(s.impl as object) : s.impl) as never);
    }
    router.service(RegistryService, createRegistryService(registryCtx));
    router.service(Health, health.service);
    router.service(ReflectionV1, createReflectionV1(reflectionIndex));
    router.service(ReflectionV1Alpha, createReflectionV1Alpha(reflectionIndex));
  };

  const json = (res: HttpResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body, null, 2);
    (res as http.ServerResponse).writeHead(status, { "content-type": "application/json", "cache-control": "no-cache" });
    res.end(text);
  };
  // Cards depend only on the descriptors and the placement, both fixed for the process; building one
  // derives a JSON Schema per skill, so build each once.
  const cards = new Map<string, unknown>();
  const card = (key: string, build: () => unknown): unknown => {
    let c = cards.get(key);
    if (c === undefined) {
      c = build();
      cards.set(key, c);
    }
    return c;
  };
  const fallback = (req: HttpRequest, res: HttpResponse): void => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (httpRoutes.length > 0 && path !== "/healthz" && !path.includes("/.well-known/agent-card.json")) {
      void (async () => {
        for (const route of httpRoutes) if (await route(req, res)) return;
        json(res, 404, { error: `no route ${req.method} ${path}` });
      })().catch((err: unknown) => {
        log.warn("http route failed", { path, error: String(err) });
        if (!res.headersSent) json(res, 500, { error: "internal error" });
        else res.end();
      });
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      json(res, 404, { error: `no route ${req.method} ${path}` });
      return;
    }
    if (path === "/.well-known/agent-card.json") {
      json(
        res,
        200,
        card("", () => serverCard(registryCtx, server, version)),
      );
      return;
    }
    const m = /^\/agents\/([a-z0-9_]+)\/\.well-known\/agent-card\.json$/.exec(path);
    const agent = m ? catalog.agentById.get(m[1] as string) : undefined;
    if (agent) {
      json(
        res,
        200,
        card(agent.id, () => agentCard(registryCtx, agent, version)),
      );
      return;
    }
    if (path === "/healthz") {
      const status = health.get("") ?? "NOT_SERVING";
      json(res, status === "SERVING" ? 200 : 503, {
        server,
        status,
        inFlight: inflight.n,
        services: health.all(),
        breakers: client.breakerStates(),
      });
      return;
    }
    json(res, 404, { error: `no route GET ${path}` });
  };

  // Refusals at authentication, authorisation and rate limiting are logged and published as security events.
  const refusals = createRefusalRecorder({ server, bus: backbone.bus, log, skillOf });
  const interceptors: Interceptor[] = [
    createServerTracingInterceptor({ server, skillOf }),
    // Checks JSON answers with the registry the adapter encodes them with (see jsonOptions below).
    createErrorInterceptor(log, { jsonOptions: { registry: typeRegistry } }),
    refusals.wrap(
      createAuthInterceptor({ authenticator, isPublic: (p) => publicServices.has(p.split("/")[0] ?? ""), skillOf }),
    ),
    refusals.wrap(createRateLimitInterceptor({ perSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst })),
    createScopeInterceptor(),
    createValidationInterceptor(),
    createIdempotencyInterceptor(
      (p) => dbOfService.get(p.split("/")[0] ?? ""),
      (p) => selfTransacted.has(p),
    ),
  ];
  const limits = { readMaxBytes: config.maxMessageBytes, writeMaxBytes: config.maxMessageBytes };
  // What requests may take decoded, all at once (admission.ts).
  const memory = new RequestMemoryBudget({
    capacityBytes: config.requestMemoryBytes,
    maxMessageBytes: config.maxMessageBytes,
  });
  if (!memory.fitsLargestMessage()) {
    log.warn("the request memory budget is smaller than the largest message needs: such requests are refused", {
      requestMemoryBytes: config.requestMemoryBytes,
      maxMessageBytes: config.maxMessageBytes,
    });
  }
  // Requests are read strictly (unknown JSON fields and enum names refused, nesting bounded), and
  // undecodable ones answer INVALID_ARGUMENT instead of connect-es' INTERNAL (bad-input.ts).
  const routerJson = strictJsonOptions({ registry: typeRegistry });
  const connectHandler = meshNodeAdapter(
    {
      routes,
      fallback: fallback as never,
      ...limits,
      jsonOptions: routerJson,
      contextValues: (req) => createContextValues().set(peerKey, req.socket?.remoteAddress ?? ""),
      interceptors,
    },
    log,
    memory,
  ) as Handler;
  // Calls from this process to the agents it hosts skip the network but nothing else: the same
  // routes and interceptors (authentication, validation, error mapping, idempotency), outside the
  // caller's unit of work.
  if (opts.client === undefined) {
    const isolate: Interceptor = (next) => (req) => outsideUnitOfWork(() => next(req));
    client.attachLocal?.(server, (clientInterceptors) =>
      createRouterTransport(routes, {
        transport: { ...limits, interceptors: clientInterceptors, useBinaryFormat: true },
        router: { ...limits, jsonOptions: routerJson, interceptors: [isolate, ...interceptors] },
      }),
    );
  }
  // Count requests from the moment their headers arrive until their response is closed, so a drain
  // also waits for calls whose body is still arriving.
  const handler: Handler = (req, res) => {
    inflight.n++;
    res.once("close", () => inflight.n--);
    connectHandler(req, res);
  };

  const address = listenAddress(config.serverUrls[server], config.listenHost);
  const host = address.host;
  const port = opts.port ?? address.port;
  const listener: Listener = await listen(handler, host, port, tls, config.http);
  for (const s of services) health.set(s.service.typeName, "SERVING");
  for (const name of publicServices) health.set(name, "SERVING");
  listening = true;
  health.set("", dependencies.allServing() ? "SERVING" : "NOT_SERVING");
  log.info("serving", {
    server,
    address: `${tls ? "https" : "http"}://${host}:${listener.port}`,
    agents: hosted.map((m) => m.id).join(","),
    tls: tls !== undefined,
  });

  let closing: Promise<void> | undefined;
  return {
    name: server,
    port: listener.port,
    agents: hosted.filter(isAgentModule).map((m) => m.id),
    health,
    client,
    backbone,
    inFlight: () => inflight.n,
    close(graceMs = config.shutdownGraceMs) {
      closing ??= (async () => {
        health.shutdown();
        dependencies.stop();
        refusals.stop();
        listener.stopAccepting();
        const deadline = Date.now() + graceMs;
        while (inflight.n > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        if (inflight.n > 0) log.warn("drain deadline reached; closing remaining calls", { inFlight: inflight.n });
        listener.destroy();
        for (const p of started) for (const r of p.running ?? []) await r.stop();
        for (const p of started) await p.stop?.();
        await everywhere.stop();
        if (opts.backbone === undefined) await backbone.close();
        if (opts.client === undefined) client.close();
        nodeClaim?.release();
        log.info("stopped", { server });
      })();
      return closing;
    },
  };
}
