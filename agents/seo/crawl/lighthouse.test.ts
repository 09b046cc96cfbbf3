import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChromiumNotFoundError,
  createLighthouseRunner,
  findChromium,
  type LighthouseBatchRunner,
  LighthouseRunError,
} from "./lighthouse.ts";

/** A small, well-formed page (Lighthouse wants an absolute canonical URL). */
const page = (origin: string): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Senior living in Testville</title>
<meta name="description" content="Three sample senior-living communities in Testville, with care types and prices.">
<link rel="canonical" href="${origin}/">
<link rel="icon" href="data:,">
</head>
<body><main><h1>Senior living in Testville</h1><p>Three communities. <a href="/about/">About this directory</a></p></main></body>
</html>`;

const chromium = findChromium({ env: process.env });

describe("findChromium", () => {
  it("names CHROME_PATH when it is not an executable, and treats an empty one as unset", () => {
    expect(() => findChromium({ env: { CHROME_PATH: "/nonexistent/chromium" } })).toThrow(/CHROME_PATH=\/nonexistent/);
    expect(findChromium({ env: { CHROME_PATH: "" } })).toBe(findChromium());
  });

  it("rejects an audit with a clear error when the Chromium binary is missing", async () => {
    const runner = createLighthouseRunner({ chromePath: "/nonexistent/chromium" });
    await expect(runner.audit("http://127.0.0.1:9/")).rejects.toBeInstanceOf(ChromiumNotFoundError);
    await runner.close();
  });
});

describe.skipIf(chromium === undefined)("Lighthouse runner (skipped: no Chromium binary found)", () => {
  let server: Server;
  let origin: string;
  let runner: LighthouseBatchRunner;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === "/robots.txt")
        res.writeHead(200, { "content-type": "text/plain" }).end("User-agent: *\nAllow: /\n");
      else if (req.url === "/") res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page(origin));
      else res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    runner = createLighthouseRunner({ chromePath: chromium });
  });

  afterAll(async () => {
    await runner?.close();
    server?.close();
  });

  it("scores a well-formed page: SEO 100, every category 0–100, metrics in ms", { timeout: 60_000 }, async () => {
    const r = await runner.audit(`${origin}/`);
    expect(r.url).toBe(`${origin}/`);
    expect(r.formFactor).toBe("mobile");
    expect(r.failingAudits.filter((a) => a.category === "seo")).toEqual([]);
    expect(r.scores.seo).toBe(100);
    for (const s of Object.values(r.scores)) expect(s).toBeGreaterThanOrEqual(0);
    for (const s of Object.values(r.scores)) expect(s).toBeLessThanOrEqual(100);
    expect(r.metrics.lcpMs).toBeGreaterThan(0);
    expect(r.metrics.fcpMs).toBeGreaterThan(0);
    expect(Number.isFinite(r.metrics.cls) && Number.isFinite(r.metrics.tbtMs)).toBe(true);
    expect(r.lighthouseVersion).toBe("13.5.0");

    // The technical audit's interface, on the same Chromium.
    const scores = await runner.score(`${origin}/`, AbortSignal.timeout(60_000));
    expect(Object.keys(scores).sort()).toEqual(["accessibility", "bestPractices", "performance", "seo"]);
  });

  it("rejects a page that answers 404 with Lighthouse's error code", { timeout: 60_000 }, async () => {
    const err = await runner.audit(`${origin}/missing/`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LighthouseRunError);
    expect((err as LighthouseRunError).code).toBe("ERRORED_DOCUMENT_REQUEST");
  });
});
