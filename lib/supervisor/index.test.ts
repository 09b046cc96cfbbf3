/**
 * The supervisor's restart rules, on real child processes (small scripts that report readiness
 * through the same reportReady the servers use): a start-up failure code is not retried, other
 * failures at start are retried until they repeat the same way, a crash after readiness is always
 * restarted, and giving up on one server stops the others.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type SupervisedServer, supervise } from "./index.ts";

const dir = mkdtempSync(join(tmpdir(), "mesh-supervisor-"));
const readyModule = JSON.stringify(join(import.meta.dirname, "index.ts"));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A script that records each start in `<name>.starts`, then runs `body` (with `n` = this start's number). */
function script(name: string, body: string): SupervisedServer {
  const file = join(dir, `${name}.mjs`);
  const starts = join(dir, `${name}.starts`);
  writeFileSync(starts, "");
  writeFileSync(
    file,
    `import { appendFileSync, readFileSync } from "node:fs";
import { reportReady } from ${readyModule};
appendFileSync(${JSON.stringify(starts)}, "x");
const n = readFileSync(${JSON.stringify(starts)}, "utf8").length;
${body}
`,
  );
  return { name, script: file };
}

const startsOf = (name: string): number => readFileSync(join(dir, `${name}.starts`), "utf8").length;

/** Runs supervise with fast restarts, collecting its output; aborts once `until` holds (if given). */
async function run(
  servers: SupervisedServer[],
  until?: () => boolean,
): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const abort = new AbortController();
  const poll = until
    ? setInterval(() => {
        if (until()) abort.abort();
      }, 20)
    : undefined;
  try {
    const code = await supervise({
      servers,
      stopTimeoutMs: 5000,
      restartDelayMs: 10,
      signal: abort.signal,
      write: {
        out: (t) => {
          out += t;
        },
        err: (t) => {
          err += t;
        },
      },
    });
    return { code, out, err };
  } finally {
    clearInterval(poll);
  }
}

describe("supervise", () => {
  it("does not restart a server that exits with a start-up failure code before it is ready", async () => {
    const s = script(
      "taken",
      `process.stderr.write("taken server cannot listen on 127.0.0.1:1: in use\\n"); process.exit(78);`,
    );
    const r = await run([s]);
    expect(r.code).toBe(78);
    expect(startsOf("taken")).toBe(1);
    expect(r.err).toBe(
      "supervisor: taken failed to start with exit code 78, which a restart does not fix (taken server cannot listen on 127.0.0.1:1: in use); not restarting it\n",
    );
    expect(r.out).not.toMatch(/restarting in/);
  });

  it("gives up after three failures at start the same way, quoting the error rather than the stack", async () => {
    const s = script("crashy", `throw new Error("cannot reach the database");`);
    const r = await run([s]);
    expect(r.code).toBe(1);
    expect(startsOf("crashy")).toBe(3);
    expect(r.err).toBe(
      "supervisor: crashy failed to start 3 times the same way (exit code 1: Error: cannot reach the database); not restarting it\n",
    );
    expect(r.out.match(/exited \(exit code 1\) before it was ready; restarting in/g)).toHaveLength(2);
  });

  it("keeps restarting a server that fails at start differently each time", async () => {
    const s = script("varied", `process.stderr.write("failure number " + n + "\\n"); process.exit(1);`);
    const r = await run([s], () => startsOf("varied") >= 5);
    expect(r.code).toBe(0);
    expect(startsOf("varied")).toBeGreaterThanOrEqual(5);
    expect(r.err).toBe("");
  });

  it("keeps restarting a server that crashes the same way after it was ready", async () => {
    const s = script(
      "served",
      `reportReady(); setTimeout(() => { process.stderr.write("lost the database\\n"); process.exit(78); }, 50);`,
    );
    const r = await run([s], () => startsOf("served") >= 5);
    expect(r.code).toBe(0);
    expect(startsOf("served")).toBeGreaterThanOrEqual(5);
    expect(r.err).toBe("");
    expect(r.out).toMatch(/\[served\] exited \(exit code 78\); restarting in \d+ ms/);
  });

  it("stops the other servers when it gives up on one, and exits with its code", async () => {
    const good = script(
      "good",
      `reportReady(); setInterval(() => {}, 1000); process.on("SIGTERM", () => { process.stdout.write("drained\\n"); process.exit(0); });`,
    );
    const bad = script(
      "bad",
      // Fails once the other one serves, so the other is running when the supervisor gives up.
      `setTimeout(() => { process.stderr.write("configuration error: MESH_X is wrong\\n"); process.exit(2); }, 300);`,
    );
    const r = await run([good, bad]);
    expect(r.code).toBe(2);
    expect(startsOf("bad")).toBe(1);
    expect(startsOf("good")).toBe(1);
    expect(r.err).toContain("supervisor: bad failed to start with exit code 2");
    expect(r.out).toContain("stopping good (bad could not start)");
    expect(r.out).toContain("[good] drained");
    expect(r.out).toContain("[good] stopped");
  });
});
