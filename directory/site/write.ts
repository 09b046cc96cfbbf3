/**
 * Writes a built site to a folder any web server or CDN can serve as is: only files whose content
 * changed are written (each to a temporary name, then renamed, so a reader never sees half a
 * file), and files of an earlier build that no longer exist are removed.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import type { BuiltSite } from "./site.ts";

/** What a write did. */
export interface SiteWriteResult {
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
}

/** Files under `dir`, as site paths (`/tx/austin-tx/index.html`). */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(`/${relative(dir, p).split("\\").join("/")}`);
    }
  };
  await walk(dir);
  return out;
}

/** Writes one file of the site (to a temporary name, then renamed, so readers never see half a file). */
export async function writeSiteFile(dir: string, path: string, content: string | Buffer): Promise<void> {
  const file = join(dir, path);
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, content);
  await rename(tmp, file);
}

/** Writes one file of the site unless it already holds `content` (`full` always writes); true when written. */
export async function writeIfChanged(
  dir: string,
  path: string,
  content: string | Buffer,
  full = false,
): Promise<boolean> {
  if (!full) {
    const current = await readFile(join(dir, path)).catch(() => undefined);
    if (current?.equals(typeof content === "string" ? Buffer.from(content) : content)) return false;
  }
  await writeSiteFile(dir, path, content);
  return true;
}

/** Removes the files under `dir` that are not in `keep` (site paths); returns how many. */
export async function removeStaleFiles(dir: string, keep: ReadonlySet<string>): Promise<number> {
  let removed = 0;
  for (const path of await listFiles(dir)) {
    if (!keep.has(path)) {
      await rm(join(dir, path), { force: true });
      removed++;
    }
  }
  return removed;
}

/**
 * Writes `site` under `dir`, yielding progress every 100 files; `full` rewrites every file. The
 * generator's return value says what it did.
 */
export async function* syncSite(
  site: BuiltSite,
  dir: string,
  opts: { full?: boolean } = {},
): AsyncGenerator<{ done: number; total: number }, SiteWriteResult> {
  await mkdir(dir, { recursive: true });
  const total = site.files.size;
  const written: string[] = [];
  let done = 0;
  let bytes = 0;
  let unchanged = 0;
  for (const [path, content] of site.files) {
    bytes += Buffer.byteLength(content);
    if (await writeIfChanged(dir, path, content, opts.full)) written.push(path);
    else unchanged++;
    done++;
    if (done % 100 === 0 || done === total) yield { done, total };
  }
  const removed = await removeStaleFiles(dir, new Set(site.files.keys()));
  return { files: total, written, unchanged, removed, bytes };
}

/** Writes `site` under `dir` with a progress callback (the CLI's and scripts' form of {@link syncSite}). */
export async function writeSite(
  site: BuiltSite,
  dir: string,
  onProgress: (done: number, total: number) => void = () => {},
): Promise<SiteWriteResult> {
  const sync = syncSite(site, dir);
  for (;;) {
    const step = await sync.next();
    if (step.done) return step.value;
    onProgress(step.value.done, step.value.total);
  }
}
