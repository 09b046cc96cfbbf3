/**
 * Lighthouse on a sample of the directory's pages, offline: builds the site, serves it from a
 * temporary folder on 127.0.0.1 exactly as the technical server does (`createSiteFileRoute`: gzip,
 * cache lifetimes, ETags), audits a deterministic sample in headless Chromium and prints a table
 * against the targets (performance ≥ 95, SEO = 100, accessibility ≥ 95, LCP < 1 s).
 *
 * `node scripts/lighthouse-sample.ts [--pages N] [--desktop]` (default 10 pages, mobile emulation;
 * Chromium from CHROME_PATH, else /usr/bin/chromium). Writes bench/results/lighthouse-<timestamp>.json
 * and lighthouse-latest.json (lighthouse-desktop-… with --desktop). Like the benchmarks it measures
 * and does not fail on a number: the exit code is 1 only when a page could not be audited.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import {
  findChromium,
  type LighthouseFormFactor,
  type LighthousePageResult,
  runLighthouseBatch,
} from "../agents/seo/crawl/lighthouse.ts";
import {
  buildSite,
  cityPath,
  createDirectoryData,
  createSiteFileRoute,
  statePath,
  writeSite,
} from "../directory/index.ts";
import { offlineSeoClient } from "../servers/offline.ts";

/** The targets, on Lighthouse's 0–100 scale. */
const TARGETS = { performance: 95, seo: 100, accessibility: 95, lcpMs: 1000 } as const;

/**
 * The site served as the technical server serves it (`createSiteFileRoute`: gzip, cache lifetimes,
 * ETags), with a 204 stand-in for the beacon endpoint so the page's own beacon does not log a
 * failed request.
 */
function createStaticServer(siteDir: string): Server {
  const files = createSiteFileRoute(siteDir);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method === "POST" && req.url?.split("?")[0] === "/v1/events") {
      req.resume();
      res.writeHead(204, { "cache-control": "no-store" }).end();
      return;
    }
    if (!(await files(req, res))) res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found");
  };
  return createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
      else res.destroy();
    });
  });
}

/** One page of the sample and why it was chosen. */
interface SamplePage {
  path: string;
  label: string;
  communities: number | undefined;
}

/**
 * The national index, the largest state hub, the city pages with the fewest, the median and the
 * most communities, then city pages at a fixed stride through the city order until `n` pages.
 */
function pickSample(
  cityPages: readonly { path: string; communities: number }[],
  statePaths: readonly { path: string; cities: number }[],
  n: number,
): SamplePage[] {
  const out: SamplePage[] = [];
  const add = (p: SamplePage): void => {
    if (out.length < n && !out.some((o) => o.path === p.path)) out.push(p);
  };
  add({ path: "/", label: "national index", communities: undefined });
  const hub = [...statePaths].sort((a, b) => b.cities - a.cities || a.path.localeCompare(b.path))[0];
  if (hub !== undefined)
    add({ path: hub.path, label: `largest state hub (${hub.cities} cities)`, communities: undefined });
  const byCount = [...cityPages].sort((a, b) => a.communities - b.communities || a.path.localeCompare(b.path));
  const pick = (i: number, label: string): void => {
    const c = byCount[i];
    if (c !== undefined) add({ path: c.path, label, communities: c.communities });
  };
  pick(0, "fewest communities");
  pick(Math.floor((byCount.length - 1) / 2), "median communities");
  pick(byCount.length - 1, "most communities");
  const stride = Math.max(1, Math.floor(cityPages.length / Math.max(1, n - out.length)));
  for (let i = Math.floor(stride / 2); i < cityPages.length && out.length < n; i += stride) {
    const c = cityPages[i] as { path: string; communities: number };
    add({ path: c.path, label: `stride #${i}`, communities: c.communities });
  }
  return out;
}

const fmt = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toFixed(digits) : "–");

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { pages: { type: "string", default: "10" }, desktop: { type: "boolean", default: false } },
  });
  const pages = Number(values.pages);
  if (!Number.isInteger(pages) || pages < 1 || pages > 200) throw new Error("--pages must be an integer 1–200");
  const formFactor: LighthouseFormFactor = values.desktop ? "desktop" : "mobile";
  const chromePath = findChromium({ env: process.env });
  if (chromePath === undefined) {
    throw new Error("no Chromium found: apt-get install chromium, or set CHROME_PATH to a Chromium binary");
  }

  const work = await mkdtemp(join(tmpdir(), "mesh-lighthouse-site-"));
  const siteDir = join(work, "site");
  const server = createStaticServer(siteDir);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const origin = `http://127.0.0.1:${port}`;
  try {
    const t0 = performance.now();
    const data = createDirectoryData();
    const site = await buildSite(data, { origin, skills: offlineSeoClient() });
    const written = await writeSite(site, siteDir);
    process.stdout.write(
      `built ${written.files} files (${(written.bytes / 1e6).toFixed(1)} MB) in ${fmt(performance.now() - t0)} ms; serving ${origin} with gzip\n`,
    );

    const perCity = new Map<string, number>();
    for (const c of data.communities) perCity.set(c.cityId, (perCity.get(c.cityId) ?? 0) + 1);
    const cityPages = data.cities.map((c) => ({
      path: cityPath({ slug: c.id, stateCode: c.stateCode }),
      communities: perCity.get(c.id) ?? 0,
    }));
    const perState = new Map<string, number>();
    for (const c of data.cities) perState.set(c.stateCode, (perState.get(c.stateCode) ?? 0) + 1);
    const statePaths = [...perState].map(([code, cities]) => ({ path: statePath(code), cities }));
    const sample = pickSample(cityPages, statePaths, pages);

    const sizes = new Map<string, { html: number; gzip: number }>();
    for (const p of sample) {
      const html = site.files.get(`${p.path}index.html`) ?? "";
      sizes.set(p.path, { html: Buffer.byteLength(html), gzip: gzipSync(html, { level: 9 }).length });
    }

    process.stdout.write(`auditing ${sample.length} pages (${formFactor}) with ${chromePath}\n`);
    const results = await runLighthouseBatch(
      sample.map((p) => `${origin}${p.path}`),
      { chromePath, formFactor },
      (done, total, r) => {
        const what = "error" in r ? `ERROR ${r.error}` : `${fmt(r.durationMs / 1000, 1)} s`;
        process.stdout.write(`  [${done}/${total}] ${r.url.slice(origin.length)} ${what}\n`);
      },
    );

    const rows = sample.map((p, i) => ({ page: p, result: results[i] as LighthousePageResult | { error: string } }));
    const header = [
      "page",
      "communities",
      "perf",
      "SEO",
      "a11y",
      "best pr.",
      "LCP ms",
      "CLS",
      "TBT ms",
      "FCP ms",
      "gzip KB",
    ];
    const table = rows.map(({ page, result }) => {
      const size = sizes.get(page.path);
      const base = [page.path, page.communities === undefined ? "" : String(page.communities)];
      if ("error" in result) return [...base, "error", "", "", "", "", "", "", "", ""];
      const { scores: s, metrics: m } = result;
      return [
        ...base,
        fmt(s.performance),
        fmt(s.seo),
        fmt(s.accessibility),
        fmt(s.bestPractices),
        fmt(m.lcpMs),
        fmt(m.cls, 3),
        fmt(m.tbtMs),
        fmt(m.fcpMs),
        size === undefined ? "" : fmt(size.gzip / 1024, 1),
      ];
    });
    const widths = header.map((h, c) => Math.max(h.length, ...table.map((r) => (r[c] ?? "").length)));
    const line = (cells: readonly string[]): string =>
      cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join("  ");
    process.stdout.write(`\n${line(header)}\n${table.map(line).join("\n")}\n\n`);

    const ok = rows.flatMap(({ result }) => ("error" in result ? [] : [result]));
    const min = (f: (r: LighthousePageResult) => number): number => Math.min(...ok.map(f));
    const max = (f: (r: LighthousePageResult) => number): number => Math.max(...ok.map(f));
    const summary = {
      audited: ok.length,
      errors: rows.length - ok.length,
      minPerformance: min((r) => r.scores.performance),
      minSeo: min((r) => r.scores.seo),
      minAccessibility: min((r) => r.scores.accessibility),
      minBestPractices: min((r) => r.scores.bestPractices),
      maxLcpMs: max((r) => r.metrics.lcpMs),
      maxCls: max((r) => r.metrics.cls),
      maxTbtMs: max((r) => r.metrics.tbtMs),
    };
    const verdicts = {
      performance: summary.minPerformance >= TARGETS.performance,
      seo: summary.minSeo >= TARGETS.seo,
      accessibility: summary.minAccessibility >= TARGETS.accessibility,
      lcp: summary.maxLcpMs < TARGETS.lcpMs,
    };
    const verdict = (pass: boolean): string => (pass ? "met" : "MISSED");
    process.stdout.write(
      `targets (${formFactor}): performance ≥ ${TARGETS.performance}: ${verdict(verdicts.performance)} (min ${fmt(summary.minPerformance)}); ` +
        `SEO = ${TARGETS.seo}: ${verdict(verdicts.seo)} (min ${fmt(summary.minSeo)}); ` +
        `accessibility ≥ ${TARGETS.accessibility}: ${verdict(verdicts.accessibility)} (min ${fmt(summary.minAccessibility)}); ` +
        `LCP < ${TARGETS.lcpMs} ms: ${verdict(verdicts.lcp)} (max ${fmt(summary.maxLcpMs)} ms)\n`,
    );
    const failing = new Map<string, { category: string; title: string; pages: string[]; worst: number }>();
    for (const r of ok) {
      for (const a of r.failingAudits) {
        const f = failing.get(a.id) ?? { category: a.category, title: a.title, pages: [], worst: 1 };
        f.pages.push(r.url.slice(origin.length));
        f.worst = Math.min(f.worst, a.score);
        failing.set(a.id, f);
      }
    }
    if (failing.size > 0) {
      process.stdout.write("audits below 1 (category, id, worst score, pages):\n");
      for (const [id, f] of [...failing].sort((a, b) => a[1].category.localeCompare(b[1].category))) {
        process.stdout.write(`  ${f.category}  ${id}  ${f.worst}  ${f.pages.length}/${ok.length}  ${f.title}\n`);
      }
    }

    const at = new Date().toISOString();
    const report = {
      scenario: "lighthouse",
      at,
      node: process.version,
      cpus: cpus().length,
      formFactor,
      chromePath,
      lighthouseVersion: ok[0]?.lighthouseVersion ?? "",
      server: "node:http static server on 127.0.0.1, gzip level 9 (as a real server or CDN compresses)",
      targets: TARGETS,
      summary,
      verdicts,
      pages: rows.map(({ page, result }) => ({ ...page, ...sizes.get(page.path), ...result })),
    };
    const outDir = join(import.meta.dirname, "..", "bench", "results");
    await mkdir(outDir, { recursive: true });
    const scenario = formFactor === "desktop" ? "lighthouse-desktop" : "lighthouse";
    const stamp = at.replace(/[:.]/g, "-");
    const json = `${JSON.stringify(report, null, 2)}\n`;
    await writeFile(join(outDir, `${scenario}-${stamp}.json`), json);
    await writeFile(join(outDir, `${scenario}-latest.json`), json);
    process.stdout.write(`written bench/results/${scenario}-${stamp}.json\n`);
    if (summary.errors > 0) process.exitCode = 1;
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(work, { recursive: true, force: true });
  }
}

await main();
