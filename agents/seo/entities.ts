/** Tables of the SEO agent (technical schema). */
import { defineEntity, p } from "@mikro-orm/postgresql";

/** A file the SEO agent publishes for a site: robots.txt, sitemaps. */
export const SeoSiteFile = defineEntity({
  name: "SeoSiteFile",
  tableName: "seo_site_file",
  properties: {
    /** Site origin, e.g. `https://example.com`. */
    origin: p.string().length(255).primary(),
    /** Absolute path, e.g. `/robots.txt`. */
    path: p.string().length(2048).primary(),
    content: p.text(),
    sha256: p.string().length(64),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
    version: p.integer().version(),
  },
});

/** SEO entities. */
export const seoEntities = [SeoSiteFile] as const;
