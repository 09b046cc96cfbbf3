/**
 * DirectoryService: builds the directory site from the stored data through the SEO agent's skills
 * (streaming progress; only pages whose inputs changed are rendered and written) and reports per-location engagement from Data's
 * conversion counts, flagging locations whose enquiry rate is credibly below the directory's.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Duration, DurationSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { DataService } from "../gen/mesh/data/v1/data_service_pb.ts";
import {
  BuildPhase,
  type BuildSiteResponse,
  BuildSiteResponseSchema,
  BuildSummarySchema,
  type DirectoryService,
  type LocationEngagement,
  LocationEngagementSchema,
} from "../gen/mesh/directory/v1/directory_service_pb.ts";
import { SeoService } from "../gen/mesh/seo/v1/seo_service_pb.ts";
import type { Database } from "../lib/db/index.ts";
import type { Logger } from "../lib/log/index.ts";
import type { MeshClient } from "../lib/transport/index.ts";
import { DirectoryCity, seedDirectory } from "./data/index.ts";
import { buildDirectorySite } from "./site/build.ts";
import { metaTagsCopy } from "./site/copy.ts";

/** Options of {@link createDirectoryService}. */
export interface DirectoryServiceOptions {
  /** The SEO agent's database (technical schema). */
  db: Database;
  client: MeshClient;
  log: Logger;
  siteDir: string;
  siteOrigin: string;
}

/** 95% Wilson score interval upper bound of x successes in n trials. */
export function wilsonUpper(x: number, n: number, z = 1.959964): number {
  if (n === 0) return 1;
  const p = x / n;
  const z2 = z * z;
  return (p + z2 / (2 * n) + z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
}

/** The service. */
export function createDirectoryService(opts: DirectoryServiceOptions): ServiceImpl<typeof DirectoryService> {
  let building: Promise<unknown> | undefined;
  return {
    async *buildSite(req) {
      // One build at a time per process; a second caller waits for the first to finish.
      while (building) await building.catch(() => undefined);
      let release: () => void = () => {};
      building = new Promise<void>((r) => (release = r));
      try {
        const started = performance.now();
        const progress = (phase: BuildPhase, done: number, total: number): BuildSiteResponse =>
          create(BuildSiteResponseSchema, { phase, done, total });
        yield progress(BuildPhase.SEEDING, 0, 1);
        // The stored data is the authority; the sample data is stored on the first build (or when
        // asked), so edits of stored communities show on the next build.
        if (req.reseed || (await opts.db.fork().count(DirectoryCity, {})) === 0) await seedDirectory(opts.db);
        yield progress(BuildPhase.SEEDING, 1, 1);
        const build = buildDirectorySite({
          db: opts.db,
          skills: opts.client.agent(SeoService),
          copy: metaTagsCopy(opts.client, opts.log),
          origin: (req.origin || opts.siteOrigin).replace(/\/$/, ""),
          siteDir: opts.siteDir,
          full: req.full,
        });
        let step = await build.next();
        while (!step.done) {
          const { phase, done, total } = step.value;
          yield progress(phase === "rendering" ? BuildPhase.RENDERING : BuildPhase.WRITING, done, total);
          step = await build.next();
        }
        const r = step.value;
        const elapsed = (performance.now() - started) / 1000;
        const seconds = Math.floor(elapsed);
        const summary = create(BuildSummarySchema, {
          cityPages: r.cityPages,
          statePages: r.statePages,
          communities: r.communities,
          filesWritten: r.written.length,
          filesUnchanged: r.unchanged,
          filesRemoved: r.removed,
          bytes: BigInt(r.bytes),
          elapsed: create(DurationSchema, {
            seconds: BigInt(seconds),
            nanos: Math.round((elapsed - seconds) * 1e9),
          }) as Duration,
          siteDir: opts.siteDir,
          jsonLdErrors: r.jsonLdErrors.size,
          writtenPaths: r.written.slice(0, 100),
          pagesRendered: r.rendered,
          pagesReused: r.reused,
          copySource: r.copySource,
          sitemapFilesChanged: r.sitemapFilesChanged,
        });
        if (r.jsonLdErrors.size > 0) {
          opts.log.warn("directory pages with JSON-LD problems", { pages: [...r.jsonLdErrors.keys()].slice(0, 10) });
        }
        opts.log.info("directory built", {
          cityPages: summary.cityPages,
          rendered: r.rendered,
          reused: r.reused,
          written: r.written.length,
          removed: r.removed,
          copy: r.copySource,
          seconds: elapsed.toFixed(2),
        });
        const total = r.files;
        yield create(BuildSiteResponseSchema, { phase: BuildPhase.DONE, done: total, total, summary });
      } finally {
        building = undefined;
        release();
      }
    },

    async getLocationEngagement(req) {
      const res = await opts.client.agent(DataService).trackConversion({
        requestId: randomUUID(),
        action: {
          case: "query",
          value: { timeRange: req.timeRange, conversionNames: ["page_view", "enquiry"], maxRows: 10_000 },
        },
      });
      const result = res.result.case === "queried" ? res.result.value : undefined;
      const byKey = new Map<string, { city: string; region: string; views: number; enquiries: number }>();
      for (const row of result?.locations ?? []) {
        const key = row.location?.locationKey ?? "";
        if (key === "") continue;
        const e = byKey.get(key) ?? {
          city: row.location?.city ?? "",
          region: row.location?.region ?? "",
          views: 0,
          enquiries: 0,
        };
        if (row.conversionName === "page_view") e.views += Number(row.conversions);
        if (row.conversionName === "enquiry") e.enquiries += Number(row.conversions);
        byKey.set(key, e);
      }
      let views = 0;
      let enquiries = 0;
      for (const e of byKey.values()) {
        views += e.views;
        enquiries += e.enquiries;
      }
      const overall = views === 0 ? 0 : enquiries / views;
      const minViews = req.minViews === 0 ? 30 : req.minViews;
      const locations: LocationEngagement[] = [...byKey.entries()]
        .map(([key, e]) => {
          const upper = wilsonUpper(Math.min(e.enquiries, e.views), e.views);
          return create(LocationEngagementSchema, {
            locationKey: key,
            city: e.city,
            region: e.region,
            views: BigInt(e.views),
            enquiries: BigInt(e.enquiries),
            conversionRate: e.views === 0 ? 0 : e.enquiries / e.views,
            expectedRate: overall,
            rateUpperBound: upper,
            underperforming: e.views >= minViews && upper < overall,
          });
        })
        .sort((a, b) => Number(b.views - a.views) || a.locationKey.localeCompare(b.locationKey))
        .slice(0, req.maxLocations === 0 ? 1000 : req.maxLocations);
      return {
        locations,
        underperforming: locations
          .filter((l) => l.underperforming)
          .sort((a, b) => b.expectedRate - b.rateUpperBound - (a.expectedRate - a.rateUpperBound)),
        overallRate: overall,
        views: BigInt(views),
        enquiries: BigInt(enquiries),
      };
    },
  };
}
