/** Every agent module of the build. Servers host the ones placement assigns to them. */
import type { AgentModule } from "../lib/server/agent.ts";
import { crmAgent } from "./crm/index.ts";
import { dataAgent } from "./data/index.ts";
import { emailAgent } from "./email/index.ts";
import { optimizationAgent } from "./optimization/index.ts";
import { reportingAgent } from "./reporting/index.ts";
import { researchAgent } from "./research/index.ts";
import { seoAgent } from "./seo/index.ts";
import { socialAgent } from "./social/index.ts";
import { systemAgent } from "./system/index.ts";
import { writingAgent } from "./writing/index.ts";

/** All ten agents. */
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
