/**
 * The directory build the SEO agent runs through the mesh, incrementally: every page's render
 * inputs (its data, its links, the renderer's code) are hashed and stored in
 * `technical.directory_page`, and only pages whose hash changed (or whose file is missing) are
 * rendered — their JSON-LD from `seo.schema_markup`, their copy from the content agents when they
 * supply it — and written. The sitemap (`seo.sitemap`) gives each page the time its HTML last
 * changed as `lastmod`, and robots.txt comes from `seo.robots_txt`.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Database } from "../../lib/db/index.ts";
import { transaction } from "../../lib/db/index.ts";
import { DirectoryPage, type DirectoryPageRow, loadDirectory } from "../data/index.ts";
import { BUILT_IN_COPY, type PageCopyProvider } from "./copy.ts";
import { sampleSiteImages } from "./images.ts";
import { type PlannedPage, planSite, publishCrawlFiles, renderPages, type SiteSkills } from "./site.ts";
import { removeStaleFiles, writeIfChanged, writeSiteFile } from "./write.ts";

const sha256 = (s: string): string => createHash("sha256").update(s, "utf8").digest("hex");

let fingerprint: string | undefined;
/**
 * SHA-256 of the code that turns data into pages (page templates, styles, beacon, site planner,
 * schema.org builders and the sitemap writer): a deploy that changes any of it re-renders every page.
 */
export function rendererFingerprint(): string {
  if (fingerprint !== undefined) return fingerprint;
  const here = import.meta.dirname;
  const root = join(here, "..", "..");
  // The SEO agent's builders are read as files, not imported: the directory is always placed with
  // the SEO agent, so they are the code answering this build's skill calls.
  const files = [
    ...["render.ts", "style.ts", "beacon.ts", "site.ts"].map((f) => join(here, f)),
    join(root, "agents", "seo", "skills", "schema-markup.ts"),
    join(root, "agents", "seo", "site-files", "sitemap-xml.ts"),
    ...readdirSync(join(root, "lib", "schema-org"))
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
      .sort()
      .map((f) => join(root, "lib", "schema-org", f)),
  ];
  const h = createHash("sha256");
  for (const f of files) h.update(readFileSync(f));
  fingerprint = h.digest("hex");
  return fingerprint;
}

/** The input hash of a page: its render inputs, its schema.org entities and the renderer. */
export function pageInputHash(page: PlannedPage): string {
  return sha256(`${rendererFingerprint()}\n${JSON.stringify({ inputs: page.inputs, entities: page.entities })}`);
}

/** Options of {@link buildDirectorySite}. */
export interface DirectoryBuildOptions {
  /** The SEO agent's database (technical schema): directory data and page hashes. */
  db: Database;
  /** The SEO skills, through the mesh. */
  skills: SiteSkills;
  /** Copy for city pages from the content agents; unset keeps the built-in copy. */
  copy?: PageCopyProvider;
  /** Public origin, no trailing slash. */
  origin: string;
  /** Folder the site is written to. */
  siteDir: string;
  /** Render and write every page, ignoring the stored hashes. */
  full?: boolean;
  /** Clock. */
  now?: () => Date;
}

/** Progress of a build. */
export interface DirectoryBuildProgress {
  phase: "rendering" | "writing";
  done: number;
  total: number;
}

/** What a build did. */
export interface DirectoryBuildResult {
  cityPages: number;
  statePages: number;
  communities: number;
  /** Files in the site. */
  files: number;
  /** Site paths written (changed or new). */
  written: string[];
  /** Files already up to date. */
  unchanged: number;
  /** Files of an earlier build removed. */
  removed: number;
  /** Size of the site, bytes. */
  bytes: number;
  /** Pages rendered; the others were reused. */
  rendered: number;
  reused: number;
  /** Pages whose JSON-LD failed the checks of `seo.schema_markup`. */
  jsonLdErrors: Map<string, string[]>;
  /** Where the city pages' copy came from. */
  copySource: string;
  /** Sitemap files whose content changed. */
  sitemapFilesChanged: number;
}

/** True when the file of a stored page is in place with the stored size. */
async function inPlace(dir: string, row: DirectoryPageRow): Promise<boolean> {
  const s = await stat(join(dir, row.path)).catch(() => undefined);
  return s?.isFile() === true && s.size === row.bytes;
}

/** Builds the site, yielding progress; the return value says what it did. */
export async function* buildDirectorySite(
  opts: DirectoryBuildOptions,
): AsyncGenerator<DirectoryBuildProgress, DirectoryBuildResult> {
  const now = opts.now ?? (() => new Date());
  const data = await loadDirectory(opts.db.fork());
  const plan = planSite(data, { origin: opts.origin, images: await sampleSiteImages() });
  const stored = new Map((await opts.db.fork().find(DirectoryPage, {})).map((r) => [r.path, r]));

  // Pages whose inputs are unchanged and whose file is in place are reused as they are.
  const hashes = new Map(plan.pages.map((p) => [p.file, pageInputHash(p)]));
  const stale: PlannedPage[] = [];
  let bytes = 0;
  for (const page of plan.pages) {
    const row = stored.get(page.file);
    if (
      !opts.full &&
      row !== undefined &&
      row.inputHash === hashes.get(page.file) &&
      (await inPlace(opts.siteDir, row))
    ) {
      bytes += row.bytes;
    } else stale.push(page);
  }

  const { source: copySource, copy } = opts.copy
    ? await opts.copy.copyFor(stale)
    : { source: BUILT_IN_COPY, copy: new Map() };
  const total = stale.length;
  let rendered = 0;
  // Progress is reported while the renders run.
  const progress: DirectoryBuildProgress[] = [];
  let wake = (): void => {};
  let finished = false;
  const renders = renderPages(stale, opts.skills, {
    copy,
    onRendered: () => {
      rendered++;
      if (rendered % 50 === 0 || rendered === total) {
        progress.push({ phase: "rendering", done: rendered, total });
        wake();
      }
    },
  }).finally(() => {
    finished = true;
    wake();
  });
  yield { phase: "rendering", done: 0, total };
  while (!finished) {
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    for (const p of progress.splice(0)) yield p;
  }
  const { html, jsonLdErrors } = await renders;

  // Write the pages whose HTML changed; a page re-rendered to the same HTML keeps its lastmod.
  const at = now();
  const rows: DirectoryPageRow[] = [];
  const written: string[] = [];
  let unchanged = plan.pages.length - stale.length;
  let done = 0;
  for (const page of stale) {
    const content = html.get(page.file) as string;
    const contentHash = sha256(content);
    const size = Buffer.byteLength(content);
    const row = stored.get(page.file);
    const same =
      row !== undefined && row.contentHash === contentHash && !opts.full && (await inPlace(opts.siteDir, row));
    if (same) unchanged++;
    else {
      await writeSiteFile(opts.siteDir, page.file, content);
      written.push(page.file);
    }
    bytes += size;
    rows.push({
      path: page.file,
      kind: page.kind,
      inputHash: hashes.get(page.file) as string,
      contentHash,
      bytes: size,
      modifiedAt: row !== undefined && row.contentHash === contentHash ? row.modifiedAt : at,
      renderedAt: at,
    });
    if (++done % 100 === 0 || done === total) yield { phase: "writing", done, total };
  }

  // The crawl files from the SEO skills, with each page's last content change as lastmod.
  const modified = new Map<string, Date>();
  const fresh = new Map(rows.map((r) => [r.path, r]));
  for (const page of plan.pages) {
    const row = fresh.get(page.file) ?? stored.get(page.file);
    if (page.url !== undefined && row) modified.set(page.url, row.modifiedAt);
  }
  const crawl = await publishCrawlFiles(plan, opts.skills, (url) => {
    const d = modified.get(url);
    return d ? timestampFromDate(d) : undefined;
  });
  // Crawl files and images: small, so compared with what is on disk rather than tracked.
  for (const [path, content] of [...crawl.files, ...plan.images]) {
    bytes += Buffer.byteLength(content);
    if (await writeIfChanged(opts.siteDir, path, content, opts.full)) written.push(path);
    else unchanged++;
  }
  const keep = new Set([...plan.pages.map((p) => p.file), ...crawl.files.keys(), ...plan.images.keys()]);
  const removed = await removeStaleFiles(opts.siteDir, keep);

  // The hashes commit after the files are in place: a crash in between re-renders, never skips.
  await transaction(opts.db, async (em) => {
    if (rows.length > 0) await em.upsertMany(DirectoryPage, rows);
    const gone = [...stored.keys()].filter((p) => !keep.has(p));
    if (gone.length > 0) await em.nativeDelete(DirectoryPage, { path: { $in: gone } });
  });
  return {
    cityPages: plan.cityPages.length,
    statePages: plan.statePages,
    communities: data.communities.length,
    files: keep.size,
    written,
    unchanged,
    removed,
    bytes,
    rendered: stale.length,
    reused: plan.pages.length - stale.length,
    jsonLdErrors,
    copySource,
    sitemapFilesChanged: crawl.changed,
  };
}
