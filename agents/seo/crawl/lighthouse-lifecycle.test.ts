/**
 * The runner's hold on Chromium: Chromium dies with the process that started it (SIGKILL included),
 * and one caller giving up never ends another caller's run in the shared Chromium.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLighthouseRunner, findChromium, type LighthouseBatchRunner } from "./lighthouse.ts";

const chromium = findChromium({ env: process.env });
const linux = process.platform === "linux";

const page = (title: string): string =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1></body></html>`;

/** A process as /proc shows it. */
interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  cmdline: string;
}

function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
    return { pid, state: rest[0] ?? "", ppid: Number(rest[1]), pgid: Number(rest[2]), cmdline };
  } catch {
    return undefined;
  }
}

function allProcs(): Proc[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map((d) => readProc(Number(d)))
    .filter((p): p is Proc => p !== undefined);
}

/** Live (not zombie) descendants of `root`. */
function descendants(root: number): Proc[] {
  const procs = allProcs();
  const out: Proc[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        out.push(p);
        grew = true;
      }
    }
  }
  return out.filter((p) => p.state !== "Z");
}

/** Still running: present in /proc and not a zombie (this sandbox's init may not reap orphans). */
const alive = (pid: number): boolean => {
  const p = readProc(pid);
  return p !== undefined && p.state !== "Z" && p.state !== "X";
};

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(chromium === undefined || !linux)("Lighthouse runner's Chromium lifecycle", () => {
  let server: Server;
  let origin: string;
  /** Requests seen, by path. */
  const seen = new Map<string, number>();
  /** Responses held open (pages that never load), ended at the end. */
  const held: ServerResponse[] = [];
  const children: ChildProcess[] = [];
  const runners: LighthouseBatchRunner[] = [];

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      seen.set(path, (seen.get(path) ?? 0) + 1);
      const html = { "content-type": "text/html; charset=utf-8" };
      if (path.startsWith("/hang")) held.push(res);
      else if (path === "/slow") setTimeout(() => res.writeHead(200, html).end(page("Slow")), 2500);
      else if (path === "/") res.writeHead(200, html).end(page("Home"));
      else res.writeHead(404).end("not found");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    for (const r of runners) await r.close();
    for (const res of held) res.destroy();
    server?.closeAllConnections();
    server?.close();
  });

  it("Chromium dies with the process that started it, even on SIGKILL", { timeout: 90_000 }, async () => {
    const lighthouseModule = new URL("./lighthouse.ts", import.meta.url).href;
    const code = `
      const { createLighthouseRunner } = await import(${JSON.stringify(lighthouseModule)});
      const runner = createLighthouseRunner({ chromePath: ${JSON.stringify(chromium)}, categories: ["seo"] });
      runner.audit(${JSON.stringify(`${origin}/hang-orphan`)}).catch((err) => console.error(err));
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    children.push(child);
    const pid = child.pid as number;

    // Chromium is up and loading the page (so its renderers exist too).
    await until("Chromium to request the page", () => (seen.get("/hang-orphan") ?? 0) > 0, 60_000);
    const started = descendants(pid);
    const browsers = started.filter((p) => /chrom/i.test(p.cmdline));
    expect(browsers.length).toBeGreaterThan(0);
    const groups = new Set(started.map((p) => p.pgid));

    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;

    // Every process the child started, and everything left in their process groups, is gone.
    await until(
      "Chromium to exit after its parent was killed",
      () => started.every((p) => !alive(p.pid)) && !allProcs().some((p) => groups.has(p.pgid) && alive(p.pid)),
      15_000,
    ).catch((err: Error) => {
      const left = allProcs().filter(
        (p) => (groups.has(p.pgid) || started.some((s) => s.pid === p.pid)) && alive(p.pid),
      );
      for (const p of left) process.kill(p.pid, "SIGKILL");
      throw new Error(
        `${err.message}: still running ${left.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`).join("; ")}`,
      );
    });
  });

  it("a caller cancelled while waiting for its turn leaves the running audit alone", { timeout: 90_000 }, async () => {
    const runner = createLighthouseRunner({ chromePath: chromium, categories: ["seo"] });
    runners.push(runner);
    const before = seen.get("/slow") ?? 0;
    const first = runner.audit(`${origin}/slow`);
    await until("the first audit to load its page", () => (seen.get("/slow") ?? 0) > before, 60_000);

    const controller = new AbortController();
    const second = runner.audit(`${origin}/`, controller.signal);
    const reason = new Error("caller went away");
    controller.abort(reason);
    await expect(second).rejects.toBe(reason);

    const r = await first;
    expect(r.finalUrl).toBe(`${origin}/slow`);
    expect(r.scores.seo).toBeGreaterThan(0);
  });

  it("a caller cancelled during its own run stops waiting; its run ends and the next caller gets its result", {
    timeout: 90_000,
  }, async () => {
    const runner = createLighthouseRunner({ chromePath: chromium, categories: ["seo"], maxWaitForLoadMs: 5000 });
    runners.push(runner);
    const controller = new AbortController();
    // The page never answers: Lighthouse alone would wait for it forever; the runner ends the run.
    const first = runner.audit(`${origin}/hang-own`, controller.signal).catch((e: unknown) => e);
    const second = runner.audit(`${origin}/`);
    await until("the first audit to load its page", () => (seen.get("/hang-own") ?? 0) > 0, 60_000);

    const reason = new Error("timed out");
    const t0 = Date.now();
    controller.abort(reason);
    expect(await first).toBe(reason);
    expect(Date.now() - t0).toBeLessThan(1000);

    const r = await second;
    expect(r.finalUrl).toBe(`${origin}/`);
    expect(r.scores.seo).toBeGreaterThan(0);
    expect(Date.now() - t0).toBeLessThan(45_000);
  });

  it("a page that never answers fails the audit after maxWaitForLoadMs instead of holding Chromium", {
    timeout: 90_000,
  }, async () => {
    const runner = createLighthouseRunner({ chromePath: chromium, categories: ["seo"], maxWaitForLoadMs: 3000 });
    runners.push(runner);
    const t0 = Date.now();
    const err = await runner.audit(`${origin}/hang-stuck`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(Date.now() - t0).toBeLessThan(45_000);
    const r = await runner.audit(`${origin}/`);
    expect(r.scores.seo).toBeGreaterThan(0);
  });

  it("close() drops the audits still queued and waits for the running one", { timeout: 90_000 }, async () => {
    const runner = createLighthouseRunner({ chromePath: chromium, categories: ["seo"] });
    runners.push(runner);
    const before = seen.get("/slow") ?? 0;
    const first = runner.audit(`${origin}/slow`);
    const queued = runner.audit(`${origin}/`).catch((e: unknown) => e);
    await until("the first audit to load its page", () => (seen.get("/slow") ?? 0) > before, 60_000);
    const homeBefore = seen.get("/") ?? 0;
    await runner.close();
    expect((await first).finalUrl).toBe(`${origin}/slow`);
    expect(String(await queued)).toMatch(/runner was closed/);
    expect(seen.get("/") ?? 0).toBe(homeBefore);
  });
});
