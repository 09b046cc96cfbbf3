/**
 * RegistryService and A2A agent cards, both computed from the catalog (the proto descriptors)
 * and the current placement.
 */
import { create, type DescFile, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { SkillCategory } from "../../gen/mesh/common/v1/skill_pb.ts";
import {
  type RegistryService,
  type SkillInfo,
  SkillInfoSchema,
} from "../../gen/mesh/registry/v1/registry_service_pb.ts";
import type { AgentMeta, Catalog, SkillMeta } from "./catalog.ts";
import { withDependencies } from "./descriptors.ts";
import { messageJsonSchema } from "./json-schema.ts";

/** Where agents run and which skills are implemented. */
export interface RegistryContext {
  /** The catalog. */
  catalog: Catalog;
  /** Agent id → server. */
  placement: Readonly<Record<string, string>>;
  /** Server → base URL. */
  serverUrls: Readonly<Record<string, string>>;
  /** Procedures implemented in this build (`pkg.Service/Method`). */
  implemented: ReadonlySet<string>;
}

function skillInfo(ctx: RegistryContext, s: SkillMeta): SkillInfo {
  return create(SkillInfoSchema, {
    id: s.id,
    agentId: s.agentId,
    server: ctx.placement[s.agentId] ?? "",
    category: s.category,
    title: s.title,
    description: s.description,
    idempotent: s.idempotent,
    tags: [...s.tags],
    example: s.example,
    procedure: `/${s.procedure}`,
    requestType: s.method.input.typeName,
    responseType: s.method.output.typeName,
    implemented: ctx.implemented.has(s.procedure),
  });
}

function descriptorSet(file: DescFile): Uint8Array {
  const files = withDependencies(file).map((f) => create(FileDescriptorProtoSchema, f.proto));
  return toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: files }));
}

/** Finds a skill by id or by RPC path (with or without the leading slash). */
export function findSkill(catalog: Catalog, key: string): SkillMeta | undefined {
  return catalog.skillById.get(key) ?? catalog.skillByProcedure.get(key.replace(/^\//, ""));
}

/** The RegistryService implementation. */
export function createRegistryService(ctx: RegistryContext): ServiceImpl<typeof RegistryService> {
  return {
    listAgents(req) {
      const agents = ctx.catalog.agents
        .filter((a) => req.server === "" || ctx.placement[a.id] === req.server)
        .map((a) => {
          const server = ctx.placement[a.id] ?? a.defaultServer;
          return {
            id: a.id,
            name: a.name,
            description: a.description,
            service: a.service.typeName,
            server,
            url: ctx.serverUrls[server] ?? "",
            skillCount: a.skills.length,
            implementedSkillCount: a.skills.filter((s) => ctx.implemented.has(s.procedure)).length,
          };
        });
      return { agents };
    },
    listSkills(req) {
      if (req.agentId !== "" && !ctx.catalog.agentById.has(req.agentId)) {
        throw new ConnectError(`agent_id: unknown agent "${req.agentId}"`, Code.NotFound);
      }
      const skills = ctx.catalog.skills
        .filter((s) => req.agentId === "" || s.agentId === req.agentId)
        .filter((s) => req.category === SkillCategory.UNSPECIFIED || s.category === req.category)
        .map((s) => skillInfo(ctx, s));
      return { skills };
    },
    getSkill(req) {
      const s = findSkill(ctx.catalog, req.skill);
      if (s === undefined) throw new ConnectError(`skill: no skill "${req.skill}"`, Code.NotFound);
      return {
        skill: skillInfo(ctx, s),
        requestJsonSchema: JSON.stringify(messageJsonSchema(s.method.input)),
        responseJsonSchema: JSON.stringify(messageJsonSchema(s.method.output)),
        fileDescriptorSet: descriptorSet(s.method.parent.file),
      };
    },
  };
}

/** An A2A (v1.0 shape) agent card, extended with each skill's input and output JSON Schema. */
export type AgentCard = Record<string, unknown>;

const categoryNames: Record<number, string> = {
  [SkillCategory.CONTENT]: "content",
  [SkillCategory.SEO]: "seo",
  [SkillCategory.CRM]: "crm",
  [SkillCategory.ANALYTICS]: "analytics",
  [SkillCategory.INTEGRATION]: "integration",
};

function cardSkill(ctx: RegistryContext, s: SkillMeta): Record<string, unknown> {
  return {
    id: s.id,
    name: s.title,
    description: s.description,
    tags: [categoryNames[s.category] ?? "other", ...s.tags],
    examples: s.example ? [s.example] : [],
    inputModes: ["application/proto", "application/json"],
    outputModes: ["application/proto", "application/json"],
    // Beyond A2A: the typed contract of the skill.
    rpc: `/${s.procedure}`,
    idempotent: s.idempotent,
    implemented: ctx.implemented.has(s.procedure),
    inputSchema: messageJsonSchema(s.method.input),
    outputSchema: messageJsonSchema(s.method.output),
  };
}

function card(
  ctx: RegistryContext,
  name: string,
  description: string,
  url: string,
  skills: readonly SkillMeta[],
  version: string,
): AgentCard {
  return {
    name,
    description,
    version,
    provider: { organization: "Marketing Mesh", url: "https://github.com/marketing-mesh" },
    supportedInterfaces: [
      { url, protocolBinding: "GRPC", protocolVersion: "1.0" },
      { url, protocolBinding: "CONNECT", protocolVersion: "1.0" },
    ],
    capabilities: { streaming: false, pushNotifications: false, extendedAgentCard: false },
    securitySchemes: { bearer: { httpAuthSecurityScheme: { scheme: "Bearer", description: "Mesh bearer token" } } },
    securityRequirements: [{ schemes: { bearer: { list: [] } } }],
    defaultInputModes: ["application/proto", "application/json"],
    defaultOutputModes: ["application/proto", "application/json"],
    skills: skills.map((s) => cardSkill(ctx, s)),
  };
}

/** The card of one agent. */
export function agentCard(ctx: RegistryContext, agent: AgentMeta, version: string): AgentCard {
  const server = ctx.placement[agent.id] ?? agent.defaultServer;
  return card(ctx, agent.name, agent.description, ctx.serverUrls[server] ?? "", agent.skills, version);
}

/** The card of a whole server: every agent it hosts, as one A2A agent. */
export function serverCard(ctx: RegistryContext, server: string, version: string): AgentCard {
  const agents = ctx.catalog.agents.filter((a) => ctx.placement[a.id] === server);
  const c = card(
    ctx,
    `Marketing Mesh ${server} server`,
    `Hosts the ${agents.map((a) => a.name).join(", ")}.`,
    ctx.serverUrls[server] ?? "",
    agents.flatMap((a) => a.skills),
    version,
  );
  c.agents = agents.map((a) => ({ id: a.id, name: a.name, card: `/agents/${a.id}/.well-known/agent-card.json` }));
  return c;
}
