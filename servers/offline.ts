/**
 * Agents composed in one process without servers, for work that runs offline (the directory's
 * offline build in the CLI, the Lighthouse sample script, tests): generated clients over an
 * in-process transport, so calls pass the same validation and error mapping as over the network.
 */
import type { Client } from "@connectrpc/connect";
import { createOfflineSeoService } from "../agents/seo/index.ts";
import { SeoService } from "../gen/mesh/seo/v1/seo_service_pb.ts";
import { createCatalog } from "../lib/registry/index.ts";
import { createInProcessClient } from "../lib/server/index.ts";

/** A client of the SEO agent's offline skills (schema markup, sitemap, robots.txt) in this process. */
export function offlineSeoClient(now?: () => Date): Client<typeof SeoService> {
  return createInProcessClient(SeoService, createOfflineSeoService(createCatalog(), now));
}
