/** The SEO agent: audits, page speed, schema markup, sitemaps, robots.txt, local SEO, outreach, rank tracking. */
import { SeoService } from "../../gen/mesh/seo/v1/seo_service_pb.ts";
import { defineAgent } from "../../lib/server/agent.ts";
import { trackRankings } from "./skills/track-rankings.ts";

/** SEO agent module. */
export const seoAgent = defineAgent({
  id: "seo",
  service: SeoService,
  implemented: ["TrackRankings"],
  create: (deps) => ({
    trackRankings: (req) => trackRankings(deps, req),
  }),
});
