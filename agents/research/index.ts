/** The Research agent: keyword opportunities, trending topics, competitor gaps. */
import type { EntitySchema } from "@mikro-orm/postgresql";
import { ResearchService } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { feedEntities } from "./feeds/entities.ts";
import { migrations } from "./migrations/index.ts";
import { analyzeCompetitorContent } from "./skills/analyze-competitor-content.ts";
import { ideateTopics } from "./skills/ideate-topics.ts";
import { keywordResearch } from "./skills/keyword-research.ts";

/** Research agent module. */
export const researchAgent = defineAgent({
  id: "research",
  service: ResearchService,
  implemented: ["KeywordResearch", "AnalyzeCompetitorContent", "IdeateTopics"],
  data: { entities: feedEntities as readonly EntitySchema[], migrations },
  create: (deps) => ({
    keywordResearch: (req) => keywordResearch(req),
    ideateTopics: (req, ctx) => ideateTopics(deps, req, ctx),
    analyzeCompetitorContent: (req, ctx) => analyzeCompetitorContent({}, req, ctx),
  }),
});
