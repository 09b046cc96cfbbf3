/** The SEO agent: audits, page speed, schema markup, sitemaps, robots.txt, local SEO, outreach, rank tracking. */
import type { EntitySchema } from "@mikro-orm/postgresql";
import { SeoService } from "../../gen/mesh/seo/v1/seo_service_pb.ts";
import type { Catalog } from "../../lib/registry/index.ts";
import { type AgentDeps, completeService, defineAgent, type PartialServiceImpl } from "../../lib/server/index.ts";
import { createLighthouseRunner, findChromium, type LighthouseBatchRunner } from "./crawl/lighthouse.ts";
import { seoEntities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { outreachEntities } from "./outreach-entities.ts";
import { createMemorySiteFileStore } from "./site-files/robots-store.ts";
import { createDatabaseSiteFileStore } from "./site-files/site-file-store.ts";
import { manageLinkOutreach } from "./skills/link-outreach.ts";
import { analyzeLocalSeo } from "./skills/local-seo.ts";
import { optimizePageSpeed } from "./skills/page-speed.ts";
import { manageRobotsTxt } from "./skills/robots-txt.ts";
import { generateSchemaMarkup } from "./skills/schema-markup.ts";
import { generateSitemap } from "./skills/sitemap.ts";
import { auditTechnicalSeo } from "./skills/technical-audit.ts";
import { trackRankings } from "./skills/track-rankings.ts";

/** The Lighthouse runner `create` made for a server start, for `background` to stop on close. */
const lighthouseRunners = new WeakMap<AgentDeps, LighthouseBatchRunner>();

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
  data: { entities: [...seoEntities, ...outreachEntities] as readonly EntitySchema[], migrations },
  // Outreach claims its emails in short transactions of its own and sends outside them.
  selfTransacted: ["ManageLinkOutreach"],
  create: (deps) => {
    // One store for both: GenerateSitemap's Sitemap: line lands in the robots.txt ManageRobotsTxt manages.
    const files = createDatabaseSiteFileStore(deps.db);
    // One Chromium per process for both skills that run Lighthouse: started on the first audit,
    // stopped when idle, one audit at a time (concurrent runs would skew each other's timings).
    const lighthouse = createLighthouseRunner({
      chromePath: findChromium({ env: { CHROME_PATH: deps.config.chromePath } }),
    });
    lighthouseRunners.set(deps, lighthouse);
    return {
      trackRankings: (req) => trackRankings(deps, req),
      generateSchemaMarkup: (req) => generateSchemaMarkup(req),
      generateSitemap: (req) => generateSitemap({ files, now: deps.now }, req),
      manageRobotsTxt: (req) => manageRobotsTxt({ files }, req),
      analyzeLocalSeo: (req) => analyzeLocalSeo(deps, req),
      auditTechnicalSeo: (req, ctx) => auditTechnicalSeo({ ...deps, lighthouse }, req, ctx),
      optimizePageSpeed: (req, ctx) => optimizePageSpeed({ lighthouse }, req, ctx),
      manageLinkOutreach: (req, ctx) => manageLinkOutreach(deps, req, ctx),
    };
  },
  // Stopped with the server, after the drain: Chromium goes with it (the runner's watchdog covers crashes).
  background: (deps) => {
    const lighthouse = lighthouseRunners.get(deps);
    lighthouseRunners.delete(deps);
    return lighthouse === undefined ? [] : [{ stop: () => lighthouse.close() }];
  },
});

/**
 * The SEO skills a site build needs that need neither database nor network — schema markup,
 * sitemap and robots.txt — over an in-memory file store, for builds run offline in one process
 * (served through an in-process transport, so requests pass the contract's validation).
 */
export function createOfflineSeoService(catalog: Catalog, now: () => Date = () => new Date()) {
  const files = createMemorySiteFileStore();
  const impl: PartialServiceImpl<typeof SeoService> = {
    generateSchemaMarkup: (req) => generateSchemaMarkup(req),
    generateSitemap: (req) => generateSitemap({ files, now }, req),
    manageRobotsTxt: (req) => manageRobotsTxt({ files }, req),
  };
  return completeService(
    { id: "seo", service: SeoService, implemented: ["GenerateSchemaMarkup", "GenerateSitemap", "ManageRobotsTxt"] },
    impl,
    catalog,
  );
}
