/**
 * Extension point for local copy: the titles and meta descriptions of city pages come from the
 * Optimization agent's `content.meta_tags` skill (keyword-led, pixel-width-aware candidates) when it
 * is implemented. Until then it answers UNIMPLEMENTED and the build keeps the renderer's built-in
 * copy, written from the city's data; the build summary says which source was used.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { OptimizationService } from "../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import type { Logger } from "../../lib/log/index.ts";
import type { MeshClient } from "../../lib/transport/index.ts";
import type { PageCopy } from "./render.ts";
import type { PlannedPage } from "./site.ts";

/** The built-in copy source: the renderer's own titles and descriptions. */
export const BUILT_IN_COPY = "built-in";

/** Supplies page copy for a build. */
export interface PageCopyProvider {
  /** Copy by page file for the pages that have it, and where it came from. */
  copyFor(pages: readonly PlannedPage[]): Promise<{ source: string; copy: Map<string, PageCopy> }>;
}

/** The requests per `GenerateMetaTags` call (the contract's limit). */
const metaTagsBatch = 5000;

/** Copy from `content.meta_tags` through the mesh, falling back to the built-in copy. */
export function metaTagsCopy(client: MeshClient, log: Logger): PageCopyProvider {
  const optimization = client.agent(OptimizationService);
  return {
    async copyFor(pages) {
      const wanted = pages.filter((p) => p.metaTags !== undefined);
      const copy = new Map<string, PageCopy>();
      if (wanted.length === 0) return { source: BUILT_IN_COPY, copy };
      try {
        for (let i = 0; i < wanted.length; i += metaTagsBatch) {
          const batch = wanted.slice(i, i + metaTagsBatch);
          const res = await optimization.generateMetaTags({
            pages: batch.map((p) => p.metaTags ?? {}),
            brandName: "Senior Living Directory",
            candidatesPerPage: 1,
          });
          res.pages.forEach((tags, j) => {
            const title = tags.titleCandidates[0]?.text;
            const description = tags.descriptionCandidates[0]?.text;
            const page = batch[j];
            if (page && title && description) copy.set(page.file, { title, description });
          });
        }
        return { source: "content.meta_tags", copy };
      } catch (err) {
        const e = ConnectError.from(err);
        if (e.code === Code.Unimplemented) {
          log.debug("content.meta_tags is not implemented; city pages keep the built-in copy");
        } else {
          log.warn("content.meta_tags failed; city pages keep the built-in copy", {
            code: Code[e.code],
            error: e.rawMessage,
          });
        }
        return { source: BUILT_IN_COPY, copy: new Map() };
      }
    },
  };
}
