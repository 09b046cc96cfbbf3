/**
 * The catalog of agents and skills, derived from the proto descriptors: an agent is a service
 * carrying the `(mesh.common.v1.agent)` option, a skill is a method carrying
 * `(mesh.common.v1.skill)`. Nothing about agents or skills is declared anywhere else.
 */
import { type DescFile, type DescMethod, type DescService, getOption, hasOption } from "@bufbuild/protobuf";
import type { GenFile } from "@bufbuild/protobuf/codegenv2";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { agent as agentOption, type SkillCategory, skill as skillOption } from "../../gen/mesh/common/v1/skill_pb.ts";
import { serviceFiles } from "../../gen/mesh/services.ts";

/** One skill: registry metadata plus its RPC. */
export interface SkillMeta {
  /** Stable id, e.g. `content.keyword_research`. */
  readonly id: string;
  /** Owning agent id. */
  readonly agentId: string;
  /** Category the skill is counted under. */
  readonly category: SkillCategory;
  /** Short title. */
  readonly title: string;
  /** What the skill computes and how. */
  readonly description: string;
  /** Safe to retry with the same request (from the standard idempotency_level option). */
  readonly idempotent: boolean;
  /** Discovery tags. */
  readonly tags: readonly string[];
  /** Example request (canonical protobuf JSON). */
  readonly example: string;
  /** The RPC. */
  readonly method: DescMethod;
  /** RPC path without the leading slash: `mesh.research.v1.ResearchService/KeywordResearch`. */
  readonly procedure: string;
}

/** One agent: a service with the agent option. */
export interface AgentMeta {
  /** Stable id, e.g. `research`. */
  readonly id: string;
  /** Human name. */
  readonly name: string;
  /** Responsibility. */
  readonly description: string;
  /** Server hosting it when placement does not say otherwise. */
  readonly defaultServer: string;
  /** The protobuf service. */
  readonly service: DescService;
  /** Its skills, in declaration order. */
  readonly skills: readonly SkillMeta[];
}

/** Agents and skills of the mesh. */
export interface Catalog {
  /** Agents ordered by id. */
  readonly agents: readonly AgentMeta[];
  /** Skills ordered by id. */
  readonly skills: readonly SkillMeta[];
  /** Agent by id. */
  readonly agentById: ReadonlyMap<string, AgentMeta>;
  /** Skill by id. */
  readonly skillById: ReadonlyMap<string, SkillMeta>;
  /** Skill by procedure (`pkg.Service/Method`). */
  readonly skillByProcedure: ReadonlyMap<string, SkillMeta>;
  /** Every service file, for reflection. */
  readonly files: readonly DescFile[];
}

/** Procedure path of a method without the leading slash. */
export function procedureOf(method: DescMethod): string {
  return `${method.parent.typeName}/${method.name}`;
}

/** True when the standard option says retries are safe. */
export function isIdempotent(method: DescMethod): boolean {
  return (
    method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
    method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT
  );
}

function skillOf(agentId: string, method: DescMethod): SkillMeta | undefined {
  if (!hasOption(method, skillOption)) return undefined;
  const o = getOption(method, skillOption);
  return {
    id: o.id,
    agentId,
    category: o.category,
    title: o.title,
    description: o.description,
    idempotent: isIdempotent(method),
    tags: o.tags,
    example: o.example,
    method,
    procedure: procedureOf(method),
  };
}

/** Builds the catalog from generated files (default: every service file under proto/mesh). */
export function createCatalog(files: readonly GenFile[] = serviceFiles): Catalog {
  const agents: AgentMeta[] = [];
  for (const file of files) {
    for (const service of file.services) {
      if (!hasOption(service, agentOption)) continue;
      const o = getOption(service, agentOption);
      const skills = service.methods.map((m) => skillOf(o.id, m)).filter((s): s is SkillMeta => s !== undefined);
      agents.push({
        id: o.id,
        name: o.name,
        description: o.description,
        defaultServer: o.defaultServer,
        service,
        skills,
      });
    }
  }
  agents.sort((a, b) => a.id.localeCompare(b.id));
  const skills = agents.flatMap((a) => a.skills).sort((a, b) => a.id.localeCompare(b.id));
  const skillById = new Map<string, SkillMeta>();
  for (const s of skills) {
    if (skillById.has(s.id)) throw new Error(`skill id ${s.id} is declared twice`);
    skillById.set(s.id, s);
  }
  return {
    agents,
    skills,
    agentById: new Map(agents.map((a) => [a.id, a])),
    skillById,
    skillByProcedure: new Map(skills.map((s) => [s.procedure, s])),
    files: [...files],
  };
}
