/**
 * A mesh server: hosts the agents placed on it, plus RegistryService, grpc.health.v1 and gRPC
 * reflection, on one port serving Connect, gRPC and gRPC-Web. Drains gracefully on close().
 */
import type http from "node:http";
import type http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { type ConnectRouter, createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createValidateInterceptor } from "@connectrpc/validate";
import { file_grpc_health_v1_health, Health } from "../../gen/grpc/health/v1/health_pb.ts";
import { file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { file_grpc_reflection_v1alpha_reflection } from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import {
  file_mesh_registry_v1_registry_service,
  RegistryService,
} from "../../gen/mesh/registry/v1/registry_service_pb.ts";
import { type Authenticator, loadAuthenticator, readToken } from "../auth/index.ts";
import { type MeshConfig, type ServerName, tlsFilesFor } from "../config/index.ts";
import { createLogger, type Logger } from "../log/index.ts";
import { type Catalog, createCatalog } from "../registry/catalog.ts";
import { agentCard, createRegistryService, type RegistryContext, serverCard } from "../registry/service.ts";
import { createServerTracingInterceptor } from "../telemetry/rpc.ts";
import { createMeshClient, type MeshClient } from "../transport/client.ts";
import { type AgentModule, completeService } from "./agent.ts";
import { type Backbone, openBackbone } from "./backbone.ts";
import { createHealthRegistry, type HealthRegistry, type ServingStatus } from "./health.ts";
import { createIdempotencyInterceptor, withReplays } from "./idempotency.ts";
import {
  createAuthInterceptor,
  createErrorInterceptor,
  createRateLimitInterceptor,
  createScopeInterceptor,
  peerKey,
} from "./interceptors.ts";
import { type Handler, type Listener, listen } from "./listener.ts";
import {
  createReflectionIndex,
  createReflectionV1,
  createReflectionV1Alpha,
  ReflectionV1,
  ReflectionV1Alpha,
} from "./reflection.ts";

const version = "0.1.0";

/** Options of {@link startMeshServer}. */
export interface MeshServerOptions {
  /** Which server binary this is. */
  server: ServerName;
  /** Loaded configuration. */
  config: MeshConfig;
  /** Every agent module of the build; the server hosts those placed on it. */
  modules: readonly AgentModule[];
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
  /** HTTP routes answered besides RPCs (tried in order for non-RPC requests; true = handled). */
  httpRoutes?: (ctx: HostContext) => Array<(req: HttpRequest, res: HttpResponse) => Promise<boolean>>;
  /** Services this server hosts besides its agents (the workflow engine), created once the backbone is open. */
  extraServices?: (ctx: HostContext) => Promise<HostedService[]> | HostedService[];
}

/** A request a plain HTTP route sees. */
export type HttpRequest = http.IncomingMessage | http2.Http2ServerRequest;
/** The response a plain HTTP route writes. */
export type HttpResponse = http.ServerResponse | http2.Http2ServerResponse;

/** What {@link MeshServerOptions.extraServices} gets. */
export interface HostContext {
  backbone: Backbone;
  client: MeshClient;
  catalog: Catalog;
  log: Logger;
  config: MeshConfig;
}

/** A service hosted besides the agents, with a stop hook. */
export interface HostedService {
  service: DescService;
  impl: unknown;
  /** Called on close, after the drain. */
  stop?: () => Promise<void>;
  /** Database whose idempotency records guard its calls with a request_id. */
  db?: ReturnType<Backbone["databaseOf"]>;
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

  const hosted = opts.modules.filter((m) => config.placement[m.id] === server);
  for (const a of catalog.agents) {
    if (config.placement[a.id] === server && !hosted.some((m) => m.id === a.id)) {
      throw new Error(`agent ${a.id} is placed on ${server} but no module implements it`);
    }
  }
  const implemented = new Set(
    opts.modules.flatMap((m) => m.implemented.map((name) => `${m.service.typeName}/${name}`)),
  );
  const registryCtx: RegistryContext = {
    catalog,
    placement: config.placement,
    serverUrls: config.serverUrls,
    implemented,
  };
  const backbone = opts.backbone ?? (await openBackbone({ config, server, agents: hosted.map((m) => m.id), log }));
  const services: HostedService[] = [];
  const dbOfService = new Map<string, ReturnType<Backbone["databaseOf"]>>();
  for (const m of hosted) {
    const db = backbone.databaseOf(m.id);
    const deps = { client, catalog, log, now: () => new Date(), db, bus: backbone.bus };
    services.push({ service: m.service, impl: completeService(m, await m.create(deps), catalog) });
    dbOfService.set(m.service.typeName, db);
  }
  const hostContext: HostContext = { backbone, client, catalog, log, config };
  const extra = opts.extraServices ? await opts.extraServices(hostContext) : [];
  const httpRoutes = opts.httpRoutes ? opts.httpRoutes(hostContext) : [];
  services.push(...extra);
  for (const s of extra) if (s.db) dbOfService.set(s.service.typeName, s.db);

  const health = createHealthRegistry(() => {
    const out: Record<string, ServingStatus> = {};
    for (const [peer, state] of Object.entries(client.breakerStates())) {
      out[`mesh.peer.${peer}`] = state === "open" ? "NOT_SERVING" : "SERVING";
    }
    return out;
  });
  const reflectionIndex = createReflectionIndex(
    [
      ...services.map((s) => s.service.file),
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

  const json = (res: http.ServerResponse | http2.Http2ServerResponse, status: number, body: unknown): void => {
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
  const fallback = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ): void => {
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

  const connectHandler = connectNodeAdapter({
    routes,
    fallback: fallback as never,
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    contextValues: (req) => createContextValues().set(peerKey, req.socket?.remoteAddress ?? ""),
    interceptors: [
      createServerTracingInterceptor({ server, skillOf }),
      createErrorInterceptor(log),
      createAuthInterceptor({ authenticator, isPublic: (p) => publicServices.has(p.split("/")[0] ?? ""), skillOf }),
      createRateLimitInterceptor({ perSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst }),
      createScopeInterceptor(),
      createValidateInterceptor(),
      createIdempotencyInterceptor((p) => dbOfService.get(p.split("/")[0] ?? "")),
    ],
  }) as Handler;
  // Count requests from the moment their headers arrive until their response is closed, so a drain
  // also waits for calls whose body is still arriving.
  const handler: Handler = (req, res) => {
    inflight.n++;
    res.once("close", () => inflight.n--);
    connectHandler(req, res);
  };

  const url = new URL(config.serverUrls[server]);
  const host = config.listenHost ?? url.hostname;
  const port = opts.port ?? Number(url.port);
  const listener: Listener = await listen(handler, host, port, tls);
  for (const s of services) health.set(s.service.typeName, "SERVING");
  for (const name of publicServices) health.set(name, "SERVING");
  health.set("", "SERVING");
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
    agents: hosted.map((m) => m.id),
    health,
    client,
    backbone,
    inFlight: () => inflight.n,
    close(graceMs = config.shutdownGraceMs) {
      closing ??= (async () => {
        health.shutdown();
        listener.stopAccepting();
        const deadline = Date.now() + graceMs;
        while (inflight.n > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        if (inflight.n > 0) log.warn("drain deadline reached; closing remaining calls", { inFlight: inflight.n });
        listener.destroy();
        for (const s of extra) await s.stop?.();
        if (opts.backbone === undefined) await backbone.close();
        if (opts.client === undefined) client.close();
        log.info("stopped", { server });
      })();
      return closing;
    },
  };
}
