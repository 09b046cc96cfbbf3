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
  /**
   * One page of the paths of a site's stored files that start with `prefix`, in code-point order:
   * at most `page.limit` (default and most {@link LIST_PAGE_SIZE}) after `page.after`. An empty page
   * is the end; callers pass the last path of a page as the next `after`.
   */
  list(origin: string, prefix: string, page?: ListPage): Promise<string[]>;
}

/** Where a page of {@link SiteFileStore.list} starts and how long it is. */
export interface ListPage {
  /** The last path of the previous page; the page starts after it. */
  readonly after?: string | undefined;
  /** Paths per page, at most {@link LIST_PAGE_SIZE}. */
  readonly limit?: number | undefined;
}

/** Most paths one {@link SiteFileStore.list} call returns: a read is bounded however many files a site has. */
export const LIST_PAGE_SIZE = 1000;

/** The page length a {@link ListPage} asks for, within 1…{@link LIST_PAGE_SIZE}. */
export function pageLimit(page: ListPage | undefined): number {
  return Math.max(1, Math.min(LIST_PAGE_SIZE, Math.floor(page?.limit ?? LIST_PAGE_SIZE)));
}

/** Code-point order (what PostgreSQL's "C" collation gives for UTF-8), not UTF-16 order. */
export function byCodePoint(a: string, b: string): number {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return Buffer.compare(x, y);
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
    async list(origin, prefix, page) {
      const after = page?.after;
      return [...(sites.get(origin)?.keys() ?? [])]
        .filter((p) => p.startsWith(prefix) && (after === undefined || byCodePoint(p, after) > 0))
        .sort(byCodePoint)
        .slice(0, pageLimit(page));
    },
  };
}
