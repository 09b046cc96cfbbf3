/** The three schemas of the build, each composed of the framework's tables and its modules' (tests, tools and the migration generator open them). */
import { type ServerName, serverNames } from "../lib/config/index.ts";
import type { DataDomain } from "../lib/db/index.ts";
import { createCatalog } from "../lib/registry/index.ts";
import { composeDomains } from "../lib/server/index.ts";
import { meshModules } from "./modules.ts";

/** Schema → its domain. */
export const domains: Record<ServerName, DataDomain> = composeDomains(meshModules, createCatalog());

/** Every schema name, in order. */
export const schemas: readonly ServerName[] = serverNames;
