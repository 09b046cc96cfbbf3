/**
 * Lighthouse in headless Chromium: the {@link LighthouseRunner} the technical audit expects, plus
 * the fuller per-page result (metrics, failing audits) that the Lighthouse sample script records.
 *
 * One Chromium serves a batch: it starts on the first audit, with a fresh temporary profile, and
 * stops (profile removed) on `close()` or after `idleCloseMs` without work, so a long-lived server
 * does not keep a browser around. Audits run one at a time — concurrent Lighthouse runs in one
 * browser skew each other's performance numbers. Nothing leaves the machine: Lighthouse's error
 * reporting stays off and Chromium runs with background networking, component updates and sync
 * disabled.
 *
 * Chromium never outlives this process: on Linux it runs under a small shell watchdog (the leader of
 * Chromium's process group) that holds the read end of a pipe from this process and kills the whole
 * group when the pipe closes — which the kernel does however this process ends, SIGKILL included.
 * A caller that gives up on an audit (cancelled, timed out) stops waiting and its queued turn is
 * dropped; a run already in Chromium finishes on its own. Chromium is never stopped under a run:
 * that would end another caller's run, and Lighthouse leaves the "Target closed" rejections of a
 * killed browser unhandled (which ends the process). Every run is bounded: when its navigation
 * outlasts `maxWaitForLoadMs` (Lighthouse waits for `Page.navigate` without a timeout, forever
 * for a server that never answers), loading is stopped in Chromium's pages and Lighthouse reports
 * a page load error.
 */
import { type ChildProcess, type SpawnOptions, type StdioOptions, spawn } from "node:child_process";
import { once } from "node:events";
import { accessSync, constants, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Launcher } from "chrome-launcher";
import lighthouse, { Audit, desktopConfig, type Flags, type Result } from "lighthouse";
import type { LighthouseRunner, LighthouseScores } from "../skills/technical-audit.ts";

/** Where Chromium is looked for when neither an explicit path nor `CHROME_PATH` names one. */
export const DEFAULT_CHROME_PATHS: readonly string[] = [
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome-stable",
  "/usr/bin/google-chrome",
];

/** Chromium flags of every run (chrome-launcher adds its defaults, the debugging port and `--user-data-dir`). */
export const CHROME_FLAGS: readonly string[] = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** The Lighthouse categories a runner scores. */
export type LighthouseCategory = "performance" | "accessibility" | "best-practices" | "seo";

/** Every category, in the order Lighthouse reports them. */
export const LIGHTHOUSE_CATEGORIES: readonly LighthouseCategory[] = [
  "performance",
  "accessibility",
  "best-practices",
  "seo",
];

/** Mobile is Lighthouse's default emulation (Moto G Power, slow 4G, 4× CPU slowdown, simulated). */
export type LighthouseFormFactor = "mobile" | "desktop";

/** No Chromium binary could be found or the configured one does not exist. */
export class ChromiumNotFoundError extends Error {
  override name = "ChromiumNotFoundError";
}

/** Lighthouse ran but could not score the page (for example the page answered 404). */
export class LighthouseRunError extends Error {
  override name = "LighthouseRunError";
  /** Lighthouse's error code (`ERRORED_DOCUMENT_REQUEST`, `NO_FCP`, …) or `CATEGORY_NOT_SCORED`. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

const isExecutable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/**
 * The Chromium binary to use: `explicit`, else `CHROME_PATH` from `env`, else the first of
 * {@link DEFAULT_CHROME_PATHS} that exists; `undefined` when there is none. An explicit path or
 * `CHROME_PATH` that is not an executable file is an error naming it (empty values count as unset).
 */
export function findChromium(
  opts: { explicit?: string | undefined; env?: NodeJS.ProcessEnv } = {},
): string | undefined {
  const named: [string, string | undefined][] = [
    ["chromePath", opts.explicit],
    ["CHROME_PATH", opts.env?.CHROME_PATH],
  ];
  for (const [source, path] of named) {
    if (path === undefined || path === "") continue;
    if (!isExecutable(path)) throw new ChromiumNotFoundError(`${source}=${path} is not an executable Chromium binary`);
    return path;
  }
  return DEFAULT_CHROME_PATHS.find(isExecutable);
}

/** Lab metrics of one run (Lighthouse's simulated values for the chosen form factor). */
export interface LighthouseMetrics {
  /** Largest Contentful Paint, ms. */
  readonly lcpMs: number;
  /** Cumulative Layout Shift (unitless). */
  readonly cls: number;
  /** Total Blocking Time, ms. */
  readonly tbtMs: number;
  /** First Contentful Paint, ms. */
  readonly fcpMs: number;
  /** Speed Index, ms. */
  readonly speedIndexMs: number;
  /** Server response time of the main document (time to first byte), ms. */
  readonly serverResponseTimeMs: number;
  /** Bytes transferred over the network for the whole page load. */
  readonly totalByteWeight: number;
}

/** A performance audit that did not pass and estimates what fixing it would save. */
export interface LighthouseOpportunity {
  /** Audit id (`image-delivery-insight`, `render-blocking-insight`, `unused-javascript`, …). */
  readonly id: string;
  /** Audit title. */
  readonly title: string;
  /** Audit description (Markdown, with a "learn more" link). */
  readonly description: string;
  /** Estimated time saved, ms: the largest of its FCP, LCP, TBT and INP savings. */
  readonly savingsMs: number;
  /** Estimated bytes saved. */
  readonly savingsBytes: number;
  /** Lighthouse's savings per metric (`LCP`, `FCP`, `TBT`, `INP` in ms; `CLS` unitless). */
  readonly metricSavings: Readonly<Record<string, number>>;
  /** URLs of the items the audit points at, largest saving first. */
  readonly urls: readonly string[];
}

/** One network request of the page load. */
export interface LighthouseRequest {
  /** Requested URL. */
  readonly url: string;
  /** Chromium's resource type (`Document`, `Image`, `Script`, …). */
  readonly resourceType: string;
  /** Bytes transferred. */
  readonly transferBytes: number;
}

/** How one weighted metric counts towards the performance score (Lighthouse's log-normal curve). */
export interface LighthouseMetricScoring {
  /** Metric audit id (`largest-contentful-paint`, …). */
  readonly id: string;
  /** Weight in the performance category. */
  readonly weight: number;
  /** Value scoring 0.9. */
  readonly p10: number;
  /** Value scoring 0.5. */
  readonly median: number;
  /** Measured value. */
  readonly value: number;
}

/** An audit that counts towards a category and did not pass (score below 1). */
export interface LighthouseFailingAudit {
  /** Category the audit counts towards. */
  readonly category: LighthouseCategory;
  /** Audit id (`color-contrast`, `largest-contentful-paint`, …). */
  readonly id: string;
  /** Audit title. */
  readonly title: string;
  /** Score, 0–1. */
  readonly score: number;
  /** Weight in the category (0: listed but not scored). */
  readonly weight: number;
  /** Lighthouse's short value (`1.2 s`, `3 elements`), empty when none. */
  readonly displayValue: string;
  /** Up to five offending items: element selector and snippet, or URL. */
  readonly items: readonly string[];
}

/** The full result of auditing one page. */
export interface LighthousePageResult {
  /** URL asked for. */
  readonly url: string;
  /** URL after redirects. */
  readonly finalUrl: string;
  /** Emulated form factor. */
  readonly formFactor: LighthouseFormFactor;
  /** Category scores, 0–100 (a category not run scores 0). */
  readonly scores: LighthouseScores;
  /** Lab metrics. */
  readonly metrics: LighthouseMetrics;
  /** Audits scoring below 1 in the categories run. */
  readonly failingAudits: readonly LighthouseFailingAudit[];
  /** Performance opportunities, largest time saving first (empty when performance was not run). */
  readonly opportunities: readonly LighthouseOpportunity[];
  /** Network requests of the page load, in Lighthouse's order. */
  readonly requests: readonly LighthouseRequest[];
  /** The weighted performance metrics and their scoring curves (empty when performance was not run). */
  readonly metricScoring: readonly LighthouseMetricScoring[];
  /** Lighthouse's warnings for the run. */
  readonly warnings: readonly string[];
  /** Lighthouse version. */
  readonly lighthouseVersion: string;
  /** Wall time of the run, ms. */
  readonly durationMs: number;
}

/** Options of {@link createLighthouseRunner}. */
export interface LighthouseRunnerOptions {
  /** Chromium binary (default: {@link findChromium} without environment, so the usual paths). */
  readonly chromePath?: string | undefined;
  /** Emulated device (default mobile). */
  readonly formFactor?: LighthouseFormFactor;
  /** Categories to run (default all four). */
  readonly categories?: readonly LighthouseCategory[];
  /** Stop Chromium after this long without audits (default 30 s; 0 keeps it until `close()`). */
  readonly idleCloseMs?: number;
  /** Longest wait for a page to load (default 45 s, Lighthouse's own). */
  readonly maxWaitForLoadMs?: number;
}

/** Per-audit overrides of the runner's options. */
export interface LighthouseAuditOptions {
  /** Emulated device (default: the runner's). */
  readonly formFactor?: LighthouseFormFactor | undefined;
  /** Categories to run (default: the runner's). */
  readonly categories?: readonly LighthouseCategory[] | undefined;
}

/** A Lighthouse runner that shares one Chromium between audits until closed. */
export interface LighthouseBatchRunner extends LighthouseRunner, AsyncDisposable {
  /** Audits `url`: scores, metrics and failing audits; rejects with a readable error when it cannot. */
  audit(url: string, signal?: AbortSignal, options?: LighthouseAuditOptions): Promise<LighthousePageResult>;
  /**
   * Drops the audits still queued (they reject), waits for the one running, then stops Chromium and
   * removes its profile; a later audit starts a new one.
   */
  close(): Promise<void>;
}

/** Sends one CDP command to a target's debugger WebSocket; best effort, settles within 5 s. */
function cdpCommand(webSocketUrl: string, method: string): Promise<void> {
  return new Promise((resolve) => {
    let ws: WebSocket;
    const done = (): void => {
      clearTimeout(timer);
      try {
        ws?.close();
      } catch {}
      resolve();
    };
    const timer = setTimeout(done, 5000);
    try {
      ws = new WebSocket(webSocketUrl);
    } catch {
      done();
      return;
    }
    ws.addEventListener("open", () => ws.send(JSON.stringify({ id: 1, method })));
    ws.addEventListener("message", done);
    ws.addEventListener("error", done);
    ws.addEventListener("close", done);
  });
}

/**
 * Stops loading in every page of the Chromium listening on `port`: a navigation Lighthouse waits
 * for ends at once (Lighthouse then reports a page load error), without touching Chromium.
 */
async function stopLoading(port: number): Promise<void> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/json/list`, { signal: AbortSignal.timeout(5000) });
    const targets = (await res.json()) as { type?: unknown; webSocketDebuggerUrl?: unknown }[];
    await Promise.all(
      targets
        .filter((t) => t.type === "page" && typeof t.webSocketDebuggerUrl === "string")
        .map((t) => cdpCommand(t.webSocketDebuggerUrl as string, "Page.stopLoading")),
    );
  } catch {
    // Best effort: Chromium may be gone already.
  }
}

/** A running Chromium and its profile. */
interface Browser {
  readonly launcher: Launcher;
  /** Chromium's debugging port. */
  readonly port: number;
  /** The process chrome-launcher started (the watchdog on Linux), leader of Chromium's process group. */
  readonly process: ChildProcess;
  readonly profileDir: string;
  readonly onExit: () => void;
}

/**
 * The watchdog Chromium runs under on Linux (POSIX sh; `$@` is Chromium and its flags). Its stdin is
 * a pipe whose write end only this process holds: a background reader blocks on it and, at EOF
 * (this process ended, however it ended), kills the process group — the watchdog, Chromium and
 * every process Chromium started. When Chromium exits by itself the watchdog takes the group down
 * too, so the process chrome-launcher watches ends with Chromium.
 */
export const CHROMIUM_WATCHDOG_SCRIPT = [
  "exec 3<&0 </dev/null",
  "(read -r _ <&3; kill -KILL 0) &",
  '"$@" 3<&-',
  "kill -KILL 0",
].join("\n");

/**
 * A `spawn` for chrome-launcher that starts Chromium under {@link CHROMIUM_WATCHDOG_SCRIPT}, in its
 * own process group (chrome-launcher's `kill()` signals the group, watchdog included).
 */
const spawnWithWatchdog = ((command: string, args: readonly string[], opts: SpawnOptions): ChildProcess => {
  const stdio = Array.isArray(opts.stdio) ? (opts.stdio as StdioOptions[]) : ["ignore", "ignore", "ignore"];
  const child = spawn("/bin/sh", ["-c", CHROMIUM_WATCHDOG_SCRIPT, "mesh-chromium-watchdog", command, ...args], {
    ...opts,
    detached: true,
    stdio: ["pipe", ...stdio.slice(1)] as StdioOptions,
  });
  // The pipe is only held, never written; it must not keep the event loop alive.
  child.stdin?.on("error", () => {});
  (child.stdin as { unref?: () => void } | null)?.unref?.();
  return child;
}) as typeof spawn;

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Short descriptions of an audit's offending items. */
function auditItems(details: Result["audits"][string]["details"]): string[] {
  if (details === undefined || !("items" in details) || !Array.isArray(details.items)) return [];
  return details.items.slice(0, 5).map((item: unknown) => {
    const it = item as Record<string, unknown>;
    const node = (it.node ?? it) as Record<string, unknown>;
    if (typeof node.selector === "string") {
      const snippet = typeof node.snippet === "string" ? ` ${node.snippet.slice(0, 160)}` : "";
      return `${node.selector}${snippet}`;
    }
    if (typeof it.url === "string") return it.url;
    const where = (it.sourceLocation as { url?: unknown } | undefined)?.url;
    if (typeof it.description === "string") {
      return `${it.description.slice(0, 160)}${typeof where === "string" ? ` (${where})` : ""}`;
    }
    return JSON.stringify(it).slice(0, 160);
  });
}

const finite = (x: unknown): number => (typeof x === "number" && Number.isFinite(x) ? x : 0);

/** Item URLs of an audit's table, largest saving first. */
function savingsUrls(details: Result["audits"][string]["details"]): string[] {
  if (details === undefined || !("items" in details) || !Array.isArray(details.items)) return [];
  const rows = (details.items as unknown[]).map((item) => item as Record<string, unknown>);
  return rows
    .filter((it) => typeof it.url === "string")
    .map((it) => ({ url: it.url as string, bytes: finite(it.wastedBytes), ms: finite(it.wastedMs) }))
    .sort((a, b) => b.bytes - a.bytes || b.ms - a.ms)
    .map((it) => it.url);
}

/** Failing performance audits with estimated savings, largest time saving first. */
function performanceOpportunities(lhr: Result): LighthouseOpportunity[] {
  const out: LighthouseOpportunity[] = [];
  for (const ref of lhr.categories.performance?.auditRefs ?? []) {
    const a = lhr.audits[ref.id];
    if (a === undefined || ref.group === "metrics" || a.score === null || a.score >= 1) continue;
    const metricSavings: Record<string, number> = {};
    for (const [metric, value] of Object.entries(a.metricSavings ?? {})) {
      if (typeof value === "number" && Number.isFinite(value)) metricSavings[metric] = value;
    }
    const details = a.details as Record<string, unknown> | undefined;
    const timeSavings = ["FCP", "LCP", "TBT", "INP"].map((m) => finite(metricSavings[m]));
    const savingsMs = Math.max(0, finite(details?.overallSavingsMs), ...timeSavings);
    const savingsBytes = Math.max(
      0,
      finite(details?.overallSavingsBytes) || finite((details?.debugData as { wastedBytes?: unknown })?.wastedBytes),
    );
    if (savingsMs <= 0 && savingsBytes <= 0) continue;
    out.push({
      id: a.id,
      title: a.title,
      description: a.description,
      savingsMs: round(savingsMs, 0),
      savingsBytes: Math.round(savingsBytes),
      metricSavings,
      urls: savingsUrls(a.details),
    });
  }
  return out.sort((a, b) => b.savingsMs - a.savingsMs || b.savingsBytes - a.savingsBytes || a.id.localeCompare(b.id));
}

/** The page load's requests, from the `network-requests` audit. */
function networkRequests(lhr: Result): LighthouseRequest[] {
  const details = lhr.audits["network-requests"]?.details;
  if (details === undefined || !("items" in details) || !Array.isArray(details.items)) return [];
  return (details.items as unknown[])
    .map((item) => item as Record<string, unknown>)
    .filter((it) => typeof it.url === "string")
    .map((it) => ({
      url: it.url as string,
      resourceType: typeof it.resourceType === "string" ? it.resourceType : "",
      transferBytes: finite(it.transferSize),
    }));
}

/** The weighted metrics of the performance category with their scoring curves. */
function metricScoring(lhr: Result): LighthouseMetricScoring[] {
  const out: LighthouseMetricScoring[] = [];
  for (const ref of lhr.categories.performance?.auditRefs ?? []) {
    const a = lhr.audits[ref.id];
    if (ref.weight <= 0 || a?.scoringOptions === undefined || typeof a.numericValue !== "number") continue;
    out.push({ id: ref.id, weight: ref.weight, ...a.scoringOptions, value: a.numericValue });
  }
  return out;
}

/**
 * The performance score, 0–100, that `scoring`'s metrics would get with the values in `values`
 * (metric audit id → value; metrics not named keep their measured value), by Lighthouse's own
 * curves and weights. `undefined` when there is nothing to score.
 */
export function performanceScoreFor(
  scoring: readonly LighthouseMetricScoring[],
  values: Readonly<Record<string, number>> = {},
): number | undefined {
  let weights = 0;
  let sum = 0;
  for (const m of scoring) {
    const value = values[m.id] ?? m.value;
    sum += m.weight * Audit.computeLogNormalScore({ p10: m.p10, median: m.median }, value);
    weights += m.weight;
  }
  return weights > 0 ? round((sum / weights) * 100, 1) : undefined;
}

/** Reads scores, metrics and failing audits out of a Lighthouse result. */
export function summariseLighthouseResult(
  lhr: Result,
  formFactor: LighthouseFormFactor,
  durationMs: number,
): LighthousePageResult {
  if (lhr.runtimeError !== undefined) {
    throw new LighthouseRunError(
      lhr.runtimeError.code,
      `Lighthouse could not audit ${lhr.requestedUrl ?? "the page"}: ${lhr.runtimeError.message}`,
    );
  }
  const category = (id: LighthouseCategory): number => {
    const c = lhr.categories[id];
    if (c === undefined) return 0;
    if (c.score === null) {
      const errored = c.auditRefs
        .map((r) => lhr.audits[r.id])
        .filter((a) => a?.scoreDisplayMode === "error")
        .map((a) => `${a?.id}: ${a?.errorMessage ?? "error"}`);
      throw new LighthouseRunError(
        "CATEGORY_NOT_SCORED",
        `Lighthouse could not score ${id} for ${lhr.finalDisplayedUrl}${errored.length > 0 ? ` (${errored.join("; ")})` : ""}`,
      );
    }
    return round(c.score * 100, 1);
  };
  const metric = (id: string): number => lhr.audits[id]?.numericValue ?? Number.NaN;
  const failingAudits: LighthouseFailingAudit[] = [];
  for (const id of LIGHTHOUSE_CATEGORIES) {
    for (const ref of lhr.categories[id]?.auditRefs ?? []) {
      const a = lhr.audits[ref.id];
      if (a === undefined || a.score === null || a.score >= 1) continue;
      if (
        a.scoreDisplayMode !== "binary" &&
        a.scoreDisplayMode !== "numeric" &&
        a.scoreDisplayMode !== "metricSavings"
      ) {
        continue;
      }
      failingAudits.push({
        category: id,
        id: a.id,
        title: a.title,
        score: a.score,
        weight: ref.weight,
        displayValue: a.displayValue ?? "",
        items: auditItems(a.details),
      });
    }
  }
  return {
    url: lhr.requestedUrl ?? lhr.mainDocumentUrl ?? lhr.finalDisplayedUrl,
    finalUrl: lhr.mainDocumentUrl ?? lhr.finalDisplayedUrl,
    formFactor,
    scores: {
      performance: category("performance"),
      accessibility: category("accessibility"),
      bestPractices: category("best-practices"),
      seo: category("seo"),
    },
    metrics: {
      lcpMs: round(metric("largest-contentful-paint"), 0),
      cls: round(metric("cumulative-layout-shift"), 3),
      tbtMs: round(metric("total-blocking-time"), 0),
      fcpMs: round(metric("first-contentful-paint"), 0),
      speedIndexMs: round(metric("speed-index"), 0),
      serverResponseTimeMs: round(metric("server-response-time"), 0),
      totalByteWeight: Math.round(metric("total-byte-weight")),
    },
    failingAudits,
    opportunities: performanceOpportunities(lhr),
    requests: networkRequests(lhr),
    metricScoring: metricScoring(lhr),
    warnings: lhr.runWarnings,
    lighthouseVersion: lhr.lighthouseVersion,
    durationMs: Math.round(durationMs),
  };
}

/**
 * Creates a runner. Chromium starts on the first audit (a {@link ChromiumNotFoundError} then when
 * there is none) and is reused until `close()` or `idleCloseMs` of idleness.
 */
export function createLighthouseRunner(options: LighthouseRunnerOptions = {}): LighthouseBatchRunner {
  const formFactor = options.formFactor ?? "mobile";
  const categories = [...(options.categories ?? LIGHTHOUSE_CATEGORIES)];
  const idleCloseMs = options.idleCloseMs ?? 30_000;
  let browser: Promise<Browser> | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let pending = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  /** Bumped by `close()`: turns queued before it and not started yet are dropped. */
  let generation = 0;
  const maxWaitForLoadMs = options.maxWaitForLoadMs ?? 45_000;

  const startBrowser = async (): Promise<Browser> => {
    const chromePath = findChromium({ explicit: options.chromePath });
    if (chromePath === undefined) {
      throw new ChromiumNotFoundError(
        `no Chromium binary found (looked for ${DEFAULT_CHROME_PATHS.join(", ")}): install one (apt-get install chromium) or set CHROME_PATH`,
      );
    }
    const profileDir = await mkdtemp(join(tmpdir(), "mesh-lighthouse-"));
    const launcher = new Launcher(
      { chromePath, chromeFlags: [...CHROME_FLAGS], userDataDir: profileDir, handleSIGINT: false, logLevel: "silent" },
      process.platform === "linux" ? { spawn: spawnWithWatchdog } : {},
    );
    try {
      await launcher.launch();
      const proc = launcher.chromeProcess;
      if (proc === undefined || launcher.port === undefined) throw new Error("chrome-launcher reported no process");
      // A normal exit without close() takes Chromium along at once (the watchdog covers every other end).
      const onExit = (): void => {
        launcher.kill();
        rmSync(profileDir, { recursive: true, force: true });
      };
      process.once("exit", onExit);
      return { launcher, port: launcher.port, process: proc, profileDir, onExit };
    } catch (err) {
      launcher.kill();
      await rm(profileDir, { recursive: true, force: true });
      throw new Error(`Chromium (${chromePath}) did not start: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
  };

  const stopBrowser = async (): Promise<void> => {
    const current = browser;
    browser = undefined;
    if (current === undefined) return;
    const b = await current.catch(() => undefined);
    if (b === undefined) return;
    process.removeListener("exit", b.onExit);
    const proc = b.process;
    const exited = proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : once(proc, "exit");
    b.launcher.kill();
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000).unref())]);
    await rm(b.profileDir, { recursive: true, force: true, maxRetries: 5 });
  };

  const scheduleIdleClose = (): void => {
    clearTimeout(idleTimer);
    if (pending > 0 || idleCloseMs <= 0) return;
    idleTimer = setTimeout(() => {
      if (pending === 0) void stopBrowser();
    }, idleCloseMs);
    idleTimer.unref();
  };

  const runOnce = async (url: string, overrides: LighthouseAuditOptions): Promise<LighthousePageResult> => {
    const runFormFactor = overrides.formFactor ?? formFactor;
    browser ??= startBrowser();
    let b: Browser;
    try {
      b = await browser;
    } catch (err) {
      browser = undefined;
      throw err;
    }
    const flags: Flags = {
      port: b.port,
      logLevel: "silent",
      onlyCategories: [...(overrides.categories ?? categories)],
      output: "json",
      maxWaitForLoad: maxWaitForLoadMs,
    };
    // Lighthouse stops waiting for the load at maxWaitForLoad but not for Page.navigate, which a server
    // that never answers leaves pending forever: stop the loading then.
    const stuck = setTimeout(() => void stopLoading(b.port), maxWaitForLoadMs + 10_000);
    stuck.unref();
    const started = performance.now();
    const result = await lighthouse(url, flags, runFormFactor === "desktop" ? desktopConfig : undefined).finally(() =>
      clearTimeout(stuck),
    );
    if (result === undefined) throw new LighthouseRunError("NO_RESULT", `Lighthouse returned no result for ${url}`);
    return summariseLighthouseResult(result.lhr, runFormFactor, performance.now() - started);
  };

  const audit = (
    url: string,
    signal?: AbortSignal,
    overrides: LighthouseAuditOptions = {},
  ): Promise<LighthousePageResult> => {
    signal?.throwIfAborted();
    pending++;
    clearTimeout(idleTimer);
    const turn = generation;
    const run = queue.then(async () => {
      // A caller that gave up while queued is dropped here, without touching Chromium.
      signal?.throwIfAborted();
      if (turn !== generation) throw new Error(`Lighthouse was not run for ${url}: the runner was closed`);
      return runOnce(url, overrides);
    });
    // The next audit waits for this run to settle, even when its caller gave up on it.
    queue = run.catch(() => undefined);
    void queue.then(() => {
      pending--;
      scheduleIdleClose();
    });
    if (signal === undefined) return run;
    return new Promise<LighthousePageResult>((resolve, reject) => {
      // Only this caller stops waiting: a run cannot be cancelled inside Lighthouse, and Chromium is
      // shared — stopping it would end whichever run is in it, and Lighthouse leaves the "Target
      // closed" rejections of a killed browser unhandled (which ends the process).
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      run.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  };

  const close = async (): Promise<void> => {
    clearTimeout(idleTimer);
    generation++;
    await queue;
    await stopBrowser();
  };

  return {
    audit,
    async score(url: string, signal: AbortSignal): Promise<LighthouseScores> {
      return (await audit(url, signal)).scores;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Audits `urls` in order with one Chromium, then stops it; a page that fails carries its error instead. */
export async function runLighthouseBatch(
  urls: readonly string[],
  options: LighthouseRunnerOptions = {},
  onPage: (
    done: number,
    total: number,
    result: LighthousePageResult | { url: string; error: string },
  ) => void = () => {},
  signal?: AbortSignal,
): Promise<(LighthousePageResult | { url: string; error: string })[]> {
  const runner = createLighthouseRunner({ ...options, idleCloseMs: 0 });
  const out: (LighthousePageResult | { url: string; error: string })[] = [];
  try {
    for (const url of urls) {
      let r: LighthousePageResult | { url: string; error: string };
      try {
        r = await runner.audit(url, signal);
      } catch (err) {
        if (signal?.aborted || err instanceof ChromiumNotFoundError) throw err;
        r = { url, error: err instanceof Error ? err.message : String(err) };
      }
      out.push(r);
      onPage(out.length, urls.length, r);
    }
  } finally {
    await runner.close();
  }
  return out;
}
