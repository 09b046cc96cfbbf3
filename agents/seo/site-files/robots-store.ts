/**
 * Where the SEO agent keeps the files it publishes for a site: robots.txt and the sitemap files.
 *
 * The skills only need this small interface. `createMemorySiteFileStore` keeps the files for the
 * life of the process; a durable store (a table in the technical schema, written through
 * `transaction(db, …)` so the files commit with the idempotency record of the call) plugs in here.
 */
import { createHash } from "node:crypto";

/** One stored file. */
export interface SiteFile {
  /** The file's text. */
  readonly content: string;
  /** SHA-256 of the UTF-8 content, in hex. */
  readonly sha256: string;
}

/** Files per site origin (`https://example.com`) and absolute path (`/robots.txt`). */
export interface SiteFileStore {
  /** The stored file, or undefined when there is none. */
  get(origin: string, path: string): Promise<SiteFile | undefined>;
  /** Stores (creates or replaces) a file. */
  put(origin: string, path: string, content: string): Promise<void>;
  /** Removes a file; true when there was one. */
  delete(origin: string, path: string): Promise<boolean>;
  /** Paths of the stored files of a site that start with `prefix`, sorted. */
  list(origin: string, prefix: string): Promise<string[]>;
}

/** SHA-256 of a string's UTF-8 bytes, in hex. */
export function sha256Hex(content: string): string {
  return createHash("sha256").update(content, "utf8").digest("hex");
}

/** A store that keeps files in memory for the life of the process. */
export function createMemorySiteFileStore(): SiteFileStore {
  const sites = new Map<string, Map<string, SiteFile>>();
  const site = (origin: string): Map<string, SiteFile> => {
    let files = sites.get(origin);
    if (files === undefined) {
      files = new Map();
      sites.set(origin, files);
    }
    return files;
  };
  return {
    async get(origin, path) {
      return sites.get(origin)?.get(path);
    },
    async put(origin, path, content) {
      site(origin).set(path, { content, sha256: sha256Hex(content) });
    },
    async delete(origin, path) {
      return sites.get(origin)?.delete(path) ?? false;
    },
    async list(origin, prefix) {
      return [...(sites.get(origin)?.keys() ?? [])].filter((p) => p.startsWith(prefix)).sort();
    },
  };
}
