/**
 * How modules plug into servers. A module is self-contained: it declares its tables (entities and
 * the migrations that create them, in the schema of the server owning its domain), and what it
 * brings to a server hosting it — services, HTTP routes, background work (event consumers) — and
 * the composition root (`servers/`) mounts the modules that placement puts on each server. A module
 * may also contribute to every server whatever its placement (`everywhere`: the System agent's
 * retry policies, applied by every server's client and bus).
 *
 * Agents are modules made with {@link defineAgent}: an agent names its service, lists the skills it
 * implements and creates the implementation from injected dependencies; the server answers
 * UNIMPLEMENTED, naming the skill, for every skill not implemented yet. Products built on the agents
 * (the directory, the workflow engine) are modules made with {@link defineModule}, placed with the
 * agent whose server hosts them.
 */
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { MigrationObject } from "@mikro-orm/core";
import type { EntitySchema } from "@mikro-orm/postgresql";
import type { Bus, RedeliveryPolicy, Running } from "../bus/index.ts";
import type { MeshConfig, ServerName } from "../config/index.ts";
import type { Database } from "../db/index.ts";
import type { Logger } from "../log/index.ts";
import type { Catalog } from "../registry/index.ts";
import type { MeshClient, SkillRetryPolicy } from "../transport/index.ts";
import { timeBudgetMs, type UnaryImpl, withTimeBudget } from "./admission.ts";
import type { HttpRoute } from "./http.ts";

/** What every module gets from the server hosting it. */
export interface AgentDeps {
  /** Typed clients for every agent (wherever it is placed). */
  client: MeshClient;
  /** Agents and skills. */
  catalog: Catalog;
  /** Logger of the hosting server. */
  log: Logger;
  /** Clock. */
  now: () => Date;
  /** Database of the module's domain (the schema of the server owning its data). */
  db: Database;
  /** Events and work. */
  bus: Bus;
  /** The process's configuration (loaded once by the server; modules never read the environment). */
  config: MeshConfig;
  /** The server hosting the module. */
  server: ServerName;
  /** This instance's node id (hybrid logical clocks): unique per instance, stable across restarts. */
  nodeId: string;
}

/** Tables a module owns: entities and the committed migrations that create them, oldest first. */
export interface ModuleData {
  /** MikroORM entities (defineEntity). */
  readonly entities: readonly EntitySchema[];
  /** Migrations, named `Migration<yyyymmddhhmmss>_<name>` so they order across modules by time. */
  readonly migrations: readonly MigrationObject[];
}

/** A service a module hosts. */
export interface HostedService {
  /** The protobuf service. */
  service: DescService;
  /** Its implementation. */
  impl: unknown;
  /** Guard calls that carry a request_id with idempotency records in the module's database. */
  idempotent?: boolean;
  /**
   * RPC names whose skills keep their own transactions short because they reach the network with
   * effects (claim, send outside any transaction, record): the idempotency guard runs them outside
   * its transaction and stores their result after them, as for skills without side effects.
   */
  selfTransacted?: readonly string[];
}

/** What a started module brings to its server. */
export interface ModuleParts {
  /** Services to serve. */
  services?: HostedService[];
  /** Plain HTTP routes, tried in order for requests that are not RPCs. */
  routes?: HttpRoute[];
  /** Files of messages that travel inside `google.protobuf.Any` in its services (JSON and reflection resolve them). */
  typeFiles?: DescFile[];
  /** Background work (event consumers, workers) stopped with the server, after the drain. */
  running?: Running[];
  /** Called on close, after the drain and the running work. */
  stop?: () => Promise<void>;
}

/**
 * What {@link MeshModule.everywhere} gets: the dependencies of a hosted module, except that the
 * module's database is there only on servers that opened its domain.
 */
export interface EverywhereDeps extends Omit<AgentDeps, "db"> {
  /** Database of the module's domain when this server opened it (it hosts a module of that domain), else undefined. */
  db: Database | undefined;
}

/** Retry policies a module supplies to every server; both are asked live, on every call and every failed delivery. */
export interface RetryPolicySource {
  /** Client-side retries of calls to a skill (idempotent skills only). */
  skillRetry?: SkillRetryPolicy;
  /** Redelivery backoff and dead-letter point of failed messages of a subject. */
  redelivery?: RedeliveryPolicy;
}

/** What a module brings to every server, whatever its placement. */
export interface EverywhereParts {
  /** Retry policies the server's mesh client and bus consumers apply. */
  retryPolicies?: RetryPolicySource;
  /** Background work stopped with the server, after the hosted modules. */
  running?: Running[];
}

/** A module of the build: an agent or a product placed with one. */
export interface MeshModule {
  /** Module id: the agent id for agents. */
  readonly id: string;
  /** The agent whose placement decides which server hosts the module and whose schema holds its data. */
  readonly placedWith: string;
  /** Tables the module owns. */
  readonly data?: ModuleData;
  /** Starts the module on a server hosting it. */
  start(deps: AgentDeps): Promise<ModuleParts> | ModuleParts;
  /**
   * Starts what the module contributes to every server, hosting it or not (for example the retry
   * policies the System agent stores, applied by every server's client and bus); run before the
   * hosted modules start.
   */
  everywhere?(deps: EverywhereDeps): Promise<EverywhereParts> | EverywhereParts;
}

/** A partial service implementation: the implemented skills only. */
export type PartialServiceImpl<S extends DescService> = Partial<ServiceImpl<S>>;

/**
 * The call a skill serves, from connect-es's handler context (a handler passes its context as is):
 * cancellation, the time left before the caller's deadline, and request values such as the
 * authenticated caller.
 */
export type CallContext = Pick<HandlerContext, "signal" | "timeoutMs" | "values">;

/** One agent's module, as declared in `agents/<id>/index.ts`. */
export interface AgentDefinition<S extends DescService> {
  /** Agent id, as in the service's agent option. */
  readonly id: string;
  /** The protobuf service. */
  readonly service: S;
  /** RPC names implemented in this build. */
  readonly implemented: readonly string[];
  /** Tables the agent owns. */
  readonly data?: ModuleData;
  /** See {@link HostedService.selfTransacted}. */
  readonly selfTransacted?: readonly string[];
  /** Creates the implementation. */
  create(deps: AgentDeps): PartialServiceImpl<S> | Promise<PartialServiceImpl<S>>;
  /** Background work the agent runs where it is hosted (durable event consumers, workers). */
  background?(deps: AgentDeps): Running[] | Promise<Running[]>;
  /** Plain HTTP routes the agent serves where it is hosted. */
  routes?(deps: AgentDeps): HttpRoute[];
  /** What the agent contributes to every server, whatever its placement (see {@link MeshModule.everywhere}). */
  everywhere?(deps: EverywhereDeps): Promise<EverywhereParts> | EverywhereParts;
}

/** An agent's module: its definition plus how a server starts it. */
export interface AgentModule<S extends DescService = DescService> extends AgentDefinition<S>, MeshModule {}

/** Defines an agent module; its service answers UNIMPLEMENTED for skills not in `implemented`. */
export function defineAgent<S extends DescService>(def: AgentDefinition<S>): AgentModule<S> {
  return {
    ...def,
    placedWith: def.id,
    async start(deps) {
      const impl = completeService(def, await def.create(deps), deps.catalog, deps.config.skillTimeBudgetMs);
      return {
        services: [{ service: def.service, impl, idempotent: true, selfTransacted: def.selfTransacted ?? [] }],
        routes: def.routes?.(deps) ?? [],
        running: (await def.background?.(deps)) ?? [],
      };
    },
  };
}

/** Defines a product module (the directory, the workflow engine) hosted beside the agent it is placed with. */
export function defineModule(m: MeshModule): MeshModule {
  return m;
}

/**
 * Fills every method missing from `impl` with a handler answering UNIMPLEMENTED that names the
 * skill; fails if `impl` and the module's `implemented` list disagree. With `defaultTimeBudgetMs`,
 * each implemented unary skill runs within its time budget (lib/server/admission.ts).
 */
export function completeService<S extends DescService>(
  module: Pick<AgentDefinition<S>, "id" | "service" | "implemented">,
  impl: PartialServiceImpl<S>,
  catalog: Catalog,
  defaultTimeBudgetMs?: number,
): ServiceImpl<S> {
  const out: Record<string, unknown> = { ...impl };
  for (const method of module.service.methods) {
    const fn = (impl as Record<string, unknown>)[method.localName];
    const has = typeof fn === "function";
    if (has !== module.implemented.includes(method.name)) {
      throw new Error(
        `agent ${module.id}: ${method.name} is ${has ? "" : "not "}implemented but "implemented" says otherwise`,
      );
    }
    const skill = catalog.skillByProcedure.get(`${module.service.typeName}/${method.name}`);
    const what = skill
      ? `skill ${skill.id} (${module.service.typeName}/${method.name})`
      : `${module.service.typeName}/${method.name}`;
    if (has) {
      if (defaultTimeBudgetMs !== undefined && method.methodKind === "unary") {
        out[method.localName] = withTimeBudget(
          (fn as UnaryImpl).bind(impl),
          timeBudgetMs(method, defaultTimeBudgetMs),
          what,
        );
      }
      continue;
    }
    out[method.localName] = () => {
      throw new ConnectError(`${what} is not implemented yet`, Code.Unimplemented);
    };
  }
  return out as ServiceImpl<S>;
}
