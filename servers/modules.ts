/**
 * Every module of the build: the ten agents and the products placed with them (the directory beside
 * the SEO agent, the workflow engine beside the System agent). A server hosts the modules whose
 * agent placement puts on it; adding an agent means adding its module here, and nothing else.
 */
import { crmAgent } from "../agents/crm/index.ts";
import { dataAgent } from "../agents/data/index.ts";
import { emailAgent } from "../agents/email/index.ts";
import { optimizationAgent } from "../agents/optimization/index.ts";
import { reportingAgent } from "../agents/reporting/index.ts";
import { researchAgent } from "../agents/research/index.ts";
import { seoAgent } from "../agents/seo/index.ts";
import { socialAgent } from "../agents/social/index.ts";
import { systemAgent } from "../agents/system/index.ts";
import { writingAgent } from "../agents/writing/index.ts";
import { directoryModule } from "../directory/index.ts";
import type { AgentModule, MeshModule } from "../lib/server/index.ts";
import { workflowModule } from "../workflows/module.ts";

/** The ten agents. */
export const agentModules: readonly AgentModule[] = [
  researchAgent,
  writingAgent,
  optimizationAgent,
  crmAgent,
  emailAgent,
  socialAgent,
  seoAgent,
  dataAgent,
  reportingAgent,
  systemAgent,
] as readonly AgentModule[];

/** Every module of the build. */
export const meshModules: readonly MeshModule[] = [...agentModules, directoryModule, workflowModule];
