/**
 * The senior-living directory, a product built on the agents: its data (real US cities, sample
 * communities, their storage), the static site built through the SEO agent's skills, the visitor
 * endpoints that feed CRM and Data, and DirectoryService — mounted as one module.
 */
export {
  createDirectoryData,
  type DirectoryData,
  loadGeoNamesCities,
  selectCities,
} from "./data/index.ts";
export { directoryModule } from "./module.ts";
export { cityPath, statePath } from "./site/render.ts";
export { createSiteFileRoute } from "./site/serve.ts";
export { type BuiltSite, buildSite, type SiteSkills } from "./site/site.ts";
export { writeSite } from "./site/write.ts";
