/** The SEO agent: audits, page speed, schema markup, sitemaps, robots.txt, local SEO, outreach, rank tracking. */
import { SeoService } from "../../gen/mesh/seo/v1/seo_service_pb.ts";
import { defineAgent } from "../../lib/server/agent.ts";
import { createLighthouseRunner, findChromium } from "./skills/lighthouse.ts";
import { manageLinkOutreach } from "./skills/link-outreach.ts";
import { analyzeLocalSeo } from "./skills/local-seo.ts";
import { optimizePageSpeed } from "./skills/page-speed.ts";
import { manageRobotsTxt } from "./skills/robots-txt.ts";
import { generateSchemaMarkup } from "./skills/schema-markup.ts";
import { createDatabaseSiteFileStore } from "./skills/site-file-store.ts";
import { generateSitemap } from "./skills/sitemap.ts";
import { auditTechnicalSeo } from "./skills/technical-audit.ts";
import { trackRankings } from "./skills/track-rankings.ts";

/** SEO agent module. */
export const seoAgent = defineAgent({
  id: "seo",
  service: SeoService,
  implemented: [
    "TrackRankings",
    "GenerateSchemaMarkup",
    "GenerateSitemap",
    "ManageRobotsTxt",
    "AnalyzeLocalSeo",
    "AuditTechnicalSeo",
    "OptimizePageSpeed",
    "ManageLinkOutreach",
  ],
  create: (deps) => {
    // One store for both: GenerateSitemap's Sitemap: line lands in the robots.txt ManageRobotsTxt manages.
    const files = createDatabaseSiteFileStore(deps.db);
    // One Chromium per process for both skills that run Lighthouse: started on the first audit,
    // stopped when idle, one audit at a time (concurrent runs would skew each other's timings).
    const lighthouse = createLighthouseRunner({ chromePath: findChromium({ env: process.env }) });
    return {
      trackRankings: (req) => trackRankings(deps, req),
      generateSchemaMarkup: (req) => generateSchemaMarkup(req),
      generateSitemap: (req) => generateSitemap({ files, now: deps.now }, req),
      manageRobotsTxt: (req) => manageRobotsTxt({ files }, req),
      analyzeLocalSeo: (req) => analyzeLocalSeo(deps, req),
      auditTechnicalSeo: (req) => auditTechnicalSeo({ ...deps, lighthouse }, req),
      optimizePageSpeed: (req) => optimizePageSpeed({ lighthouse }, req),
      manageLinkOutreach: (req) => manageLinkOutreach(deps, req),
    };
  },
});
