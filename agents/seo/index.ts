/** The SEO agent: audits, page speed, schema markup, sitemaps, robots.txt, local SEO, outreach, rank tracking. */
import { SeoService } from "../../gen/mesh/seo/v1/seo_service_pb.ts";
import { defineAgent } from "../../lib/server/agent.ts";
import { generateSchemaMarkup } from "./skills/schema-markup.ts";
import { trackRankings } from "./skills/track-rankings.ts";

/** SEO agent module. */
export const seoAgent = defineAgent({
  id: "seo",
  service: SeoService,
  implemented: ["TrackRankings", "GenerateSchemaMarkup"],
  create: (deps) => ({
    trackRankings: (req) => trackRankings(deps, req),
    generateSchemaMarkup: (req) => generateSchemaMarkup(deps, req),
  }),
});
