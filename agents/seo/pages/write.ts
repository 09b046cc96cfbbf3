/** Writes a built site to a folder any web server or CDN can serve as is. */
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { BuiltSite } from "./site.ts";

/**
 * Writes every file of `site` under `dir`, replacing its previous contents in one rename (a server
 * reading the folder never sees half a build). `onProgress(done, total)` follows along.
 */
export async function writeSite(
  site: BuiltSite,
  dir: string,
  onProgress: (done: number, total: number) => void = () => {},
): Promise<{ files: number; bytes: number }> {
  const staging = `${dir}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  let done = 0;
  let bytes = 0;
  const total = site.files.size;
  for (const [path, content] of site.files) {
    const file = join(staging, path);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, content);
    bytes += Buffer.byteLength(content);
    done++;
    if (done % 50 === 0 || done === total) onProgress(done, total);
  }
  const old = `${dir}.old-${process.pid}`;
  await rename(dir, old).catch(() => undefined);
  await rename(staging, dir);
  await rm(old, { recursive: true, force: true });
  return { files: total, bytes };
}
