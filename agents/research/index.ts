/** The Research agent: keyword opportunities, trending topics, competitor gaps. */
import { ResearchService } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { keywordResearch } from "./skills/keyword-research.ts";

/** Research agent module. */
export const researchAgent = defineAgent({
  id: "research",
  service: ResearchService,
  implemented: ["KeywordResearch"],
  create: () => ({
    keywordResearch: (req) => keywordResearch(req),
  }),
});
