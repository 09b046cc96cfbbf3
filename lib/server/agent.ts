/**
 * How agents plug into servers. An agent module names its service, lists the skills it
 * implements, and creates the implementation from injected dependencies; the server answers
 * UNIMPLEMENTED, naming the skill, for every skill not implemented yet.
 */
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Bus } from "../bus/index.ts";
import type { Database } from "../db/index.ts";
import type { Logger } from "../log/index.ts";
import type { Catalog } from "../registry/catalog.ts";
import type { MeshClient } from "../transport/client.ts";

/** What every agent gets from the server hosting it. */
export interface AgentDeps {
  /** Typed clients for other agents (wherever they are placed). */
  client: MeshClient;
  /** Agents and skills. */
  catalog: Catalog;
  /** Logger of the hosting server. */
  log: Logger;
  /** Clock. */
  now: () => Date;
  /** Database of the agent's domain (the schema of the server owning its data). */
  db: Database;
  /** Events and work. */
  bus: Bus;
}

/** A partial service implementation: the implemented skills only. */
export type PartialServiceImpl<S extends DescService> = Partial<ServiceImpl<S>>;

/** One agent's module. */
export interface AgentModule<S extends DescService = DescService> {
  /** Agent id, as in the service's agent option. */
  readonly id: string;
  /** The protobuf service. */
  readonly service: S;
  /** RPC names implemented in this build. */
  readonly implemented: readonly string[];
  /** Creates the implementation. */
  create(deps: AgentDeps): PartialServiceImpl<S> | Promise<PartialServiceImpl<S>>;
}

/** Defines an agent module (a typed identity function). */
export function defineAgent<S extends DescService>(m: AgentModule<S>): AgentModule<S> {
  return m;
}

/**
 * Fills every method missing from `impl` with a handler answering UNIMPLEMENTED that names the
 * skill; fails if `impl` and the module's `implemented` list disagree.
 */
export function completeService<S extends DescService>(
  module: AgentModule<S>,
  impl: PartialServiceImpl<S>,
  catalog: Catalog,
): ServiceImpl<S> {
  const out: Record<string, unknown> = { ...impl };
  for (const method of module.service.methods) {
    const has = typeof (impl as Record<string, unknown>)[method.localName] === "function";
    if (has !== module.implemented.includes(method.name)) {
      throw new Error(
        `agent ${module.id}: ${method.name} is ${has ? "" : "not "}implemented but "implemented" says otherwise`,
      );
    }
    if (has) continue;
    const skill = catalog.skillByProcedure.get(`${module.service.typeName}/${method.name}`);
    const what = skill
      ? `skill ${skill.id} (${module.service.typeName}/${method.name})`
      : `${module.service.typeName}/${method.name}`;
    out[method.localName] = () => {
      throw new ConnectError(`${what} is not implemented yet`, Code.Unimplemented);
    };
  }
  return out as ServiceImpl<S>;
}
