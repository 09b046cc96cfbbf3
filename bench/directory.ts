/**
 * The directory build through the mesh on the three real servers (real PostgreSQL and NATS,
 * isolated database and prefix): DirectoryService.BuildSite on the technical server seeds the
 * sample data, renders all 1,030 pages with their JSON-LD from `seo.schema_markup`, and publishes
 * the sitemap and robots.txt through `seo.sitemap` and `seo.robots_txt`. Then the incremental
 * rebuilds: with nothing changed, after renaming one community (its city page), and after removing
 * one (its city, the state hub, the index and the neighbours that link to it). Times are from the
 * call until the streamed summary, as a client sees them.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { BuildPhase, type BuildSummary, DirectoryService } from "../gen/mesh/directory/v1/directory_service_pb.ts";
import { startHarness } from "../test/support/harness.ts";

/** One timed build. */
export interface DirectoryBuildResult {
  scenario: string;
  seconds: number;
  pagesRendered: number;
  filesWritten: number;
  /** Rendered pages per second. */
  pagesPerSecond: number;
}

/** Options of {@link benchDirectory}. */
export interface DirectoryBenchOptions {
  /** Full builds to time (each with `full` set, so every page is rendered and written). */
  fullBuilds: number;
}

/** Runs the scenarios. */
export async function benchDirectory(opts: DirectoryBenchOptions): Promise<DirectoryBuildResult[]> {
  const siteDir = join(mkdtempSync(join(tmpdir(), "mesh-bench-site-")), "site");
  const h = await startHarness({
    env: {
      MESH_SITE_DIR: siteDir,
      MESH_LOG_LEVEL: "warn",
      MESH_RATE_LIMIT_RPS: "10000000",
      MESH_RATE_LIMIT_BURST: "10000000",
    },
  });
  const db = new pg.Client({ connectionString: h.databaseUrl });
  await db.connect();
  try {
    const results: DirectoryBuildResult[] = [];
    const build = async (scenario: string, full: boolean): Promise<BuildSummary> => {
      const started = performance.now();
      let summary: BuildSummary | undefined;
      const client = h.client("technical", DirectoryService);
      for await (const p of client.buildSite(
        { origin: "https://seniorliving.example", full },
        { timeoutMs: 600_000 },
      )) {
        if (p.phase === BuildPhase.DONE) summary = p.summary;
      }
      const seconds = (performance.now() - started) / 1000;
      if (summary === undefined) throw new Error(`${scenario}: no summary`);
      if (summary.jsonLdErrors > 0) throw new Error(`${scenario}: ${summary.jsonLdErrors} pages with JSON-LD errors`);
      results.push({
        scenario,
        seconds: Math.round(seconds * 1000) / 1000,
        pagesRendered: summary.pagesRendered,
        filesWritten: summary.filesWritten,
        pagesPerSecond: Math.round(summary.pagesRendered / seconds),
      });
      return summary;
    };
    await build("first build (seeds 977 cities and 4,757 communities, renders every page)", false);
    for (let i = 0; i < opts.fullBuilds; i++) await build("full build (every page rendered and written)", true);
    await build("incremental: nothing changed", false);
    const one = await db.query<{ id: string }>(
      "select id from technical.directory_community where city_id = 'austin-tx' order by id limit 1",
    );
    await db.query("update technical.directory_community set name = name || ' II' where id = $1", [one.rows[0]?.id]);
    await build("incremental: one community renamed", false);
    await db.query("delete from technical.directory_community where id = $1", [one.rows[0]?.id]);
    await build("incremental: one community removed", false);
    return results;
  } finally {
    await db.end();
    await h.close();
    rmSync(join(siteDir, ".."), { recursive: true, force: true });
  }
}
