/**
 * The schema each server owns and what lives in it (DESIGN §1): an agent's data lives in the schema
 * of the server that owns its domain, wherever the agent runs.
 */
import { contentMigrations } from "../../db/migrations/content/index.ts";
import { operationsMigrations } from "../../db/migrations/operations/index.ts";
import { technicalMigrations } from "../../db/migrations/technical/index.ts";
import type { ServerName } from "../config/index.ts";
import { domainEntities } from "./domain-entities.ts";
import type { DataDomain } from "./index.ts";

/** The three domains. */
export const domains: Record<ServerName, DataDomain> = {
  content: { schema: "content", entities: domainEntities.content, migrations: contentMigrations },
  operations: { schema: "operations", entities: domainEntities.operations, migrations: operationsMigrations },
  technical: { schema: "technical", entities: domainEntities.technical, migrations: technicalMigrations },
};
