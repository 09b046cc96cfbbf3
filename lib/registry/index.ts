/** The registry: agents and skills derived from the proto descriptors, their JSON Schemas and agent cards. */
export {
  type AgentMeta,
  type Catalog,
  createCatalog,
  isIdempotent,
  procedureOf,
  type SkillMeta,
} from "./catalog.ts";
export { withDependencies } from "./descriptors.ts";
export { type JsonSchema, messageJsonSchema } from "./json-schema.ts";
export { agentCard, createRegistryService, findSkill, type RegistryContext, serverCard } from "./service.ts";
