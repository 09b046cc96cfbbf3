/**
 * Serves the built site as a CDN would: `index.html` for directory paths (a directory path without
 * its trailing slash redirects), content types, ETag revalidation, gzip for text when the client
 * accepts it (compressed once per file version, kept in a bounded cache), a one-year `immutable`
 * lifetime for the content-hashed images under `/img/` and five minutes for everything else. The
 * technical server and the Lighthouse sample script both serve the site through this one route.
 */
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import type http from "node:http";
import type http2 from "node:http2";
import { extname, join, normalize } from "node:path";
import { gzipSync } from "node:zlib";
import { LRUCache } from "lru-cache";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** A route: answers and returns true when it handled the request. */
export type HttpRoute = (req: Req, res: Res) => Promise<boolean>;

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".xml": "application/xml; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".webp": "image/webp",
};
/** Text files are gzipped for clients that accept it; images are compressed already. */
const compressible = new Set([".html", ".xml", ".txt"]);
/** Images are named by the hash of their content, so they never change under their name. */
const immutablePrefix = "/img/";
/** Bytes of gzipped files kept in memory. */
const GZIP_CACHE_BYTES = 32 * 1024 * 1024;

/** True when Accept-Encoding allows gzip (a `q=0` refuses it). */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  for (const part of String(header ?? "").split(",")) {
    const [name, ...params] = part.trim().split(";");
    const coding = name?.trim().toLowerCase();
    if (coding !== "gzip" && coding !== "*") continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

/** The route serving the site under `siteDir` for GET and HEAD; anything else falls through. */
export function createSiteFileRoute(siteDir: string): HttpRoute {
  const gzipped = new LRUCache<string, Buffer>({ maxSize: GZIP_CACHE_BYTES, sizeCalculation: (b) => b.length || 1 });
  return async (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    let url: URL;
    let path: string;
    try {
      url = new URL(req.url ?? "/", "http://x");
      path = decodeURIComponent(url.pathname);
    } catch {
      return false;
    }
    if (path.includes("\0")) return false;
    const rel = normalize(path.endsWith("/") ? `${path}index.html` : path);
    if (rel.startsWith("..") || rel.includes("/../")) return false;
    const file = join(siteDir, rel);
    const info = await stat(file).catch(() => undefined);
    if (info?.isDirectory()) {
      const index = await stat(join(file, "index.html")).catch(() => undefined);
      if (!index?.isFile()) return false;
      (res as http.ServerResponse).writeHead(301, { location: `${url.pathname}/${url.search}` });
      res.end();
      return true;
    }
    if (!info?.isFile()) return false;
    const ext = extname(file);
    const etag = `"${info.size.toString(16)}-${info.mtimeMs.toString(16)}"`;
    const headers = {
      "content-type": contentTypes[ext] ?? "application/octet-stream",
      "cache-control": path.startsWith(immutablePrefix) ? "public, max-age=31536000, immutable" : "public, max-age=300",
      etag,
      vary: "accept-encoding",
      "x-content-type-options": "nosniff",
    };
    if (req.headers["if-none-match"] === etag) {
      (res as http.ServerResponse).writeHead(304, headers);
      res.end();
      return true;
    }
    // Pages compress about 5×: gzip them when the client accepts it, as a CDN would.
    if (compressible.has(ext) && info.size > 1024 && acceptsGzip(req.headers["accept-encoding"])) {
      const key = `${file}\n${etag}`;
      let body = gzipped.get(key);
      if (body === undefined) {
        body = gzipSync(await readFile(file), { level: 9 });
        gzipped.set(key, body);
      }
      (res as http.ServerResponse).writeHead(200, {
        ...headers,
        "content-encoding": "gzip",
        "content-length": String(body.length),
      });
      if (req.method === "HEAD") res.end();
      else res.end(body);
      return true;
    }
    (res as http.ServerResponse).writeHead(200, { ...headers, "content-length": String(info.size) });
    if (req.method === "HEAD") {
      res.end();
      return true;
    }
    await new Promise<void>((resolve, reject) => {
      const s = createReadStream(file);
      s.on("error", reject);
      s.on("end", () => resolve());
      s.pipe(res as http.ServerResponse);
    });
    return true;
  };
}
